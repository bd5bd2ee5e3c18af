//! The ARP cache (RFC 826) with a bounded queue of packets waiting for resolution (RFC 1122 section 2.3.2.2:
//! "the link layer SHOULD save (rather than discard) at least one packet").
//!
//! States follow Linux's neighbour table in a reduced form: an *incomplete* entry sends requests once a
//! second and holds packets; a *reachable* entry is used for `reachable_time`; after that it is still used but
//! *stale*: it is refreshed with unicast requests and dropped if they go unanswered.

use crate::storage::flow_map::{flow_map, FlowMap};
use crate::time::{earliest, Duration, Instant};
use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::Ipv4Header;
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Tunables of the cache.
#[derive(Debug, Clone)]
pub struct ArpConfig {
    /// How long a reply keeps an entry fresh (Linux: base_reachable_time, 30 s).
    pub reachable_time: Duration,
    /// Gap between requests for an unresolved or stale address (Linux: retrans_time, 1 s).
    pub retransmit_interval: Duration,
    /// Requests sent before giving up (Linux: mcast_solicit and ucast_solicit, 3).
    pub max_requests: u8,
    /// Bytes of IP payload held per unresolved neighbour (Linux: unres_qlen_bytes).
    pub queue_bytes_per_neighbor: usize,
    /// Entries in the table, at most.
    pub max_entries: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            reachable_time: Duration::from_secs(30),
            retransmit_interval: Duration::from_secs(1),
            max_requests: 3,
            queue_bytes_per_neighbor: 212_992,
            max_entries: 1024,
        }
    }
}

/// An IP datagram waiting for its next hop's address.
#[derive(Debug)]
pub struct PendingPacket {
    pub header: Ipv4Header,
    /// The IP payload (the whole transport segment).
    pub payload: Vec<u8>,
    /// Whether the sender asked for DF when the datagram fits the MTU.
    pub dont_fragment: bool,
    /// The datagram must not be fragmented at all (TCP).
    pub never_fragment: bool,
}

#[derive(Debug)]
enum State {
    Incomplete { requests_sent: u8, next_request: Instant, queue: VecDeque<PendingPacket>, queued_bytes: usize },
    Reachable { mac: MacAddr, confirmed: Instant, probes_sent: u8, next_probe: Instant },
}

/// What the owner of the cache must do after a timer pass.
#[derive(Debug, Default)]
pub struct NeighborActions {
    /// Broadcast a request for each address (resolution in progress).
    pub broadcast_requests: Vec<Ipv4Addr>,
    /// Send a unicast request to refresh a stale entry.
    pub unicast_probes: Vec<(Ipv4Addr, MacAddr)>,
    /// Resolution failed: these packets are dropped and their senders told EHOSTUNREACH.
    pub failed: Vec<PendingPacket>,
}

/// The ARP cache.
#[derive(Debug)]
pub struct NeighborCache {
    config: ArpConfig,
    entries: FlowMap<Ipv4Addr, State>,
    /// No entry has a timer due before this (it may be earlier than the true next deadline, never later), so
    /// that `poll` and `poll_at`, called on every pass of the driver, need not scan the table.
    next_due: Option<Instant>,
    /// The last address looked up and found resolved: a flow's segments go to one neighbour, and comparing an
    /// address is cheaper than hashing it for every segment. Forgotten whenever an entry changes or goes.
    last_found: Cell<Option<(Ipv4Addr, MacAddr)>>,
}

/// The result of queuing a packet behind an unresolved address.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Queued; a first request must go out now.
    QueuedSendRequest,
    /// Queued behind a resolution already in progress.
    Queued,
    /// Queued, but the oldest queued packet was dropped to make room.
    QueuedDroppedOldest,
    /// The table is full of unresolved entries; the packet is dropped.
    Dropped,
}

impl NeighborCache {
    pub fn new(config: ArpConfig, seed: u64) -> Self {
        NeighborCache { config, entries: flow_map(seed), next_due: None, last_found: Cell::new(None) }
    }

    /// The hardware address for `ip` if known (fresh or stale).
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        if let Some((last, mac)) = self.last_found.get() {
            if last == ip {
                return Some(mac);
            }
        }
        match self.entries.get(&ip)? {
            State::Reachable { mac, .. } => {
                self.last_found.set(Some((ip, *mac)));
                Some(*mac)
            }
            State::Incomplete { .. } => None,
        }
    }

    /// Number of entries, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Holds `packet` until `ip` resolves.
    pub fn queue(&mut self, now: Instant, ip: Ipv4Addr, packet: PendingPacket) -> QueueOutcome {
        if !self.entries.contains_key(&ip) && !self.make_room() {
            return QueueOutcome::Dropped;
        }
        let interval = self.config.retransmit_interval;
        let limit = self.config.queue_bytes_per_neighbor;
        let entry = self.entries.entry(ip).or_insert_with(|| State::Incomplete {
            requests_sent: 0,
            next_request: now,
            queue: VecDeque::new(),
            queued_bytes: 0,
        });
        match entry {
            State::Reachable { .. } => QueueOutcome::Dropped, // callers look up first; never reached in practice
            State::Incomplete { requests_sent, next_request, queue, queued_bytes } => {
                let first = *requests_sent == 0;
                let mut outcome = if first { QueueOutcome::QueuedSendRequest } else { QueueOutcome::Queued };
                *queued_bytes += packet.payload.len();
                queue.push_back(packet);
                // Like Linux, the oldest packets make way for the newest when the queue is over its budget.
                while *queued_bytes > limit && queue.len() > 1 {
                    if let Some(old) = queue.pop_front() {
                        *queued_bytes -= old.payload.len();
                        outcome = QueueOutcome::QueuedDroppedOldest;
                    }
                }
                if first {
                    *requests_sent = 1;
                    *next_request = now + interval;
                    self.next_due = earliest(self.next_due, Some(now + interval));
                }
                outcome
            }
        }
    }

    /// Records `ip` at `mac` (RFC 826 "Packet Reception"). An existing entry is always updated (the merge
    /// flag); a new one is created only when `create` (the packet was addressed to us). Returns the packets
    /// that were waiting for this address.
    pub fn learn(&mut self, now: Instant, ip: Ipv4Addr, mac: MacAddr, create: bool) -> Vec<PendingPacket> {
        if !mac.is_unicast() || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Vec::new();
        }
        let fresh = State::Reachable { mac, confirmed: now, probes_sent: 0, next_probe: now };
        self.last_found.set(None);
        self.next_due = earliest(self.next_due, Some(now + self.config.reachable_time));
        match self.entries.get_mut(&ip) {
            Some(state) => match std::mem::replace(state, fresh) {
                State::Incomplete { queue, .. } => queue.into(),
                State::Reachable { .. } => Vec::new(),
            },
            None => {
                if create && self.make_room() {
                    self.entries.insert(ip, fresh);
                }
                Vec::new()
            }
        }
    }

    /// Runs the timers due at `now`.
    pub fn poll(&mut self, now: Instant) -> NeighborActions {
        let mut actions = NeighborActions::default();
        if self.next_due.is_none_or(|due| now < due) {
            return actions;
        }
        let (interval, max, reachable) =
            (self.config.retransmit_interval, self.config.max_requests, self.config.reachable_time);
        let mut dead = Vec::new();
        for (&ip, state) in self.entries.iter_mut() {
            match state {
                State::Incomplete { requests_sent, next_request, queue, .. } => {
                    if now < *next_request {
                        continue;
                    }
                    if *requests_sent >= max {
                        actions.failed.extend(queue.drain(..));
                        dead.push(ip);
                    } else {
                        *requests_sent += 1;
                        *next_request = now + interval;
                        actions.broadcast_requests.push(ip);
                    }
                }
                State::Reachable { mac, confirmed, probes_sent, next_probe } => {
                    if now < *confirmed + reachable || now < *next_probe {
                        continue;
                    }
                    if *probes_sent >= max {
                        dead.push(ip);
                    } else {
                        *probes_sent += 1;
                        *next_probe = now + interval;
                        actions.unicast_probes.push((ip, *mac));
                    }
                }
            }
        }
        for ip in dead {
            self.entries.remove(&ip);
            self.last_found.set(None);
        }
        self.next_due = self.scan_next_due();
        actions
    }

    /// When [`NeighborCache::poll`] next has work (possibly a little early: then it finds nothing to do).
    pub fn poll_at(&self) -> Option<Instant> {
        self.next_due
    }

    /// The earliest timer of any entry, by scanning the table.
    fn scan_next_due(&self) -> Option<Instant> {
        let reachable = self.config.reachable_time;
        self.entries.values().fold(None, |acc, state| {
            let t = match state {
                State::Incomplete { next_request, .. } => *next_request,
                State::Reachable { confirmed, next_probe, .. } => (*confirmed + reachable).max(*next_probe),
            };
            earliest(acc, Some(t))
        })
    }

    /// Frees a slot when the table is full: the entry confirmed longest ago goes. False when every entry is
    /// unresolved (those are never evicted, so their queued packets are not lost silently).
    fn make_room(&mut self) -> bool {
        if self.entries.len() < self.config.max_entries {
            return true;
        }
        let oldest = self
            .entries
            .iter()
            .filter_map(|(ip, s)| match s {
                State::Reachable { confirmed, .. } => Some((*confirmed, *ip)),
                State::Incomplete { .. } => None,
            })
            .min();
        match oldest {
            Some((_, ip)) => {
                self.entries.remove(&ip);
                self.last_found.set(None);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn packet(len: usize) -> PendingPacket {
        PendingPacket {
            header: Ipv4Header::new(Ipv4Addr::new(198, 18, 0, 2), IP, 17, 64, len),
            payload: vec![0; len],
            dont_fragment: true,
            never_fragment: false,
        }
    }

    #[test]
    fn the_remembered_last_lookup_follows_changes_to_the_table() {
        let mut cache = NeighborCache::new(ArpConfig::default(), 1);
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        let (old, new) = (MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 0, 3]));
        cache.learn(Instant::ZERO, ip, old, true);
        assert_eq!(cache.lookup(ip), Some(old));
        assert_eq!(cache.lookup(ip), Some(old), "from the remembered lookup");
        cache.learn(Instant::from_secs(1), ip, new, false);
        assert_eq!(cache.lookup(ip), Some(new), "a moved neighbour is not looked up at its old address");
        // Unconfirmed past the reachable time, then unanswered probes: the entry goes.
        for s in 31..40 {
            cache.poll(Instant::from_secs(s));
        }
        assert_eq!(cache.lookup(ip), None, "a dropped entry is not remembered");
    }

    #[test]
    fn queue_resolve_release() {
        let mut c = NeighborCache::new(ArpConfig::default(), 7);
        let t = Instant::from_secs(1);
        assert_eq!(c.queue(t, IP, packet(10)), QueueOutcome::QueuedSendRequest);
        assert_eq!(c.queue(t, IP, packet(20)), QueueOutcome::Queued);
        assert_eq!(c.lookup(IP), None);
        let released = c.learn(t, IP, MAC, false);
        assert_eq!(released.iter().map(|p| p.payload.len()).collect::<Vec<_>>(), vec![10, 20]);
        assert_eq!(c.lookup(IP), Some(MAC));
    }

    #[test]
    fn unanswered_requests_fail_after_three() {
        let mut c = NeighborCache::new(ArpConfig::default(), 7);
        let t = Instant::from_secs(1);
        c.queue(t, IP, packet(10));
        let mut requests = 1;
        let mut failed = 0;
        for s in 1..10 {
            let a = c.poll(t + Duration::from_secs(s));
            requests += a.broadcast_requests.len();
            failed += a.failed.len();
        }
        assert_eq!(requests, 3);
        assert_eq!(failed, 1);
        assert!(c.is_empty());
    }

    #[test]
    fn queue_is_bounded_dropping_oldest() {
        let config = ArpConfig { queue_bytes_per_neighbor: 100, ..ArpConfig::default() };
        let mut c = NeighborCache::new(config, 7);
        let t = Instant::ZERO;
        c.queue(t, IP, packet(60));
        assert_eq!(c.queue(t, IP, packet(60)), QueueOutcome::QueuedDroppedOldest);
        assert_eq!(c.learn(t, IP, MAC, false).len(), 1);
    }

    #[test]
    fn stale_entries_are_probed_then_dropped() {
        let mut c = NeighborCache::new(ArpConfig::default(), 7);
        c.learn(Instant::ZERO, IP, MAC, true);
        assert!(c.poll(Instant::from_secs(10)).unicast_probes.is_empty());
        let mut probes = 0;
        for s in 30..40 {
            probes += c.poll(Instant::from_secs(s)).unicast_probes.len();
        }
        assert_eq!(probes, 3);
        assert_eq!(c.lookup(IP), None);
    }

    #[test]
    fn learn_without_create_ignores_strangers_and_bad_addresses() {
        let mut c = NeighborCache::new(ArpConfig::default(), 7);
        c.learn(Instant::ZERO, IP, MAC, false);
        assert_eq!(c.lookup(IP), None);
        c.learn(Instant::ZERO, IP, MacAddr::BROADCAST, true);
        assert_eq!(c.lookup(IP), None);
    }

    #[test]
    fn full_table_evicts_oldest_resolved() {
        let config = ArpConfig { max_entries: 2, ..ArpConfig::default() };
        let mut c = NeighborCache::new(config, 7);
        c.learn(Instant::from_secs(1), Ipv4Addr::new(198, 18, 0, 10), MAC, true);
        c.learn(Instant::from_secs(2), Ipv4Addr::new(198, 18, 0, 11), MAC, true);
        c.learn(Instant::from_secs(3), Ipv4Addr::new(198, 18, 0, 12), MAC, true);
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup(Ipv4Addr::new(198, 18, 0, 10)), None);
    }
}
