//! IPv4 fragment reassembly (RFC 791 section 3.2, RFC 815), with limits on memory and time so that a flood
//! of fragments cannot exhaust the host (RFC 1122 section 3.3.2 asks for a timeout; Linux uses 30 s and a
//! memory ceiling, as here).
//!
//! Overlapping fragments are treated as an attack and the whole datagram is discarded, as Linux does and as
//! RFC 5722 requires for IPv6; an exact duplicate of a fragment already held is simply ignored.

use crate::time::{Duration, Instant};
use crate::wire::ipv4::{Ipv4Header, MAX_PACKET_LEN, MIN_HEADER_LEN};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Limits of the reassembler.
#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// How long an incomplete datagram is kept (Linux: ipfrag_time, 30 s).
    pub timeout: Duration,
    /// Bytes held in all incomplete datagrams together (Linux: ipfrag_high_thresh, 4 MiB).
    pub max_bytes: usize,
    /// Fragments per datagram, at most (a bound on the bookkeeping, not on size).
    pub max_fragments: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig { timeout: Duration::from_secs(30), max_bytes: 4 << 20, max_fragments: 64 }
    }
}

/// RFC 791: fragments belong together when source, destination, protocol and identification agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    /// Byte ranges received, sorted and disjoint.
    ranges: Vec<(usize, usize)>,
    /// Known once the fragment with MF clear arrives.
    total_payload: Option<usize>,
    /// The header of the first fragment (offset 0), for the reassembled datagram and for the ICMP error that
    /// reports a timeout (RFC 792: only if fragment zero was received).
    first_header: Option<Ipv4Header>,
    deadline: Instant,
    arrival_order: u64,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// Held; the datagram is not complete yet.
    Held,
    /// The datagram is complete.
    Complete(Ipv4Header, Vec<u8>),
    /// Dropped: an overlap, a datagram too large, or no room.
    Dropped,
}

/// A datagram that timed out; `quote` is the first fragment's header and first 8 payload bytes when fragment
/// zero had arrived.
#[derive(Debug)]
pub struct Expired {
    pub first_header: Option<Ipv4Header>,
    pub first_bytes: Vec<u8>,
}

/// Incomplete datagrams, keyed by RFC 791's four fields.
#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblyConfig,
    partials: HashMap<Key, Partial>,
    bytes_held: usize,
    arrivals: u64,
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler { config, ..Default::default() }
    }

    /// Number of incomplete datagrams.
    pub fn len(&self) -> usize {
        self.partials.len()
    }

    /// True when nothing is being reassembled.
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    /// Bytes currently held.
    pub fn bytes_held(&self) -> usize {
        self.bytes_held
    }

    /// Adds one fragment (`header.is_fragment()` is true) with its payload.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    pub fn add(&mut self, now: Instant, header: &Ipv4Header, payload: &[u8]) -> FragmentOutcome {
        let key = Key { src: header.src, dst: header.dst, protocol: header.protocol, ident: header.ident };
        let start = header.frag_offset;
        let end = start + payload.len();
        if end + MIN_HEADER_LEN > MAX_PACKET_LEN || (header.more_fragments && payload.is_empty()) {
            return FragmentOutcome::Dropped;
        }
        if !self.partials.contains_key(&key) {
            self.make_room(payload.len());
            self.arrivals += 1;
            self.partials.insert(
                key,
                Partial {
                    data: Vec::new(),
                    ranges: Vec::new(),
                    total_payload: None,
                    first_header: None,
                    deadline: now + self.config.timeout,
                    arrival_order: self.arrivals,
                },
            );
        }
        let Some(p) = self.partials.get_mut(&key) else { return FragmentOutcome::Dropped };

        // RFC 791: the fragment with MF clear fixes the total length; a second, different end is an error, and
        // so is data past it.
        let conflicting_end = match p.total_payload {
            Some(total) => end > total || (!header.more_fragments && end != total),
            None => !header.more_fragments && p.ranges.last().is_some_and(|&(_, e)| e > end),
        };
        let duplicate = p.ranges.iter().any(|&(s, e)| s <= start && end <= e)
            && p.ranges.iter().any(|&(s, e)| s == start && e == end);
        let overlaps = p.ranges.iter().any(|&(s, e)| start < e && s < end);
        if duplicate && !conflicting_end {
            return FragmentOutcome::Held;
        }
        if conflicting_end || overlaps || p.ranges.len() >= self.config.max_fragments {
            self.discard(key);
            return FragmentOutcome::Dropped;
        }

        if p.data.len() < end {
            let grow = end - p.data.len();
            if self.bytes_held + grow > self.config.max_bytes {
                self.discard(key);
                return FragmentOutcome::Dropped;
            }
            p.data.resize(end, 0);
            self.bytes_held += grow;
        }
        p.data[start..end].copy_from_slice(payload);
        let at = p.ranges.partition_point(|&(s, _)| s < start);
        p.ranges.insert(at, (start, end));
        merge_adjacent(&mut p.ranges);
        if !header.more_fragments {
            p.total_payload = Some(end);
        }
        if start == 0 {
            p.first_header = Some(*header);
        }

        let complete = matches!((p.total_payload, p.ranges.as_slice()), (Some(total), [(0, e)]) if *e == total);
        if !complete {
            return FragmentOutcome::Held;
        }
        let Some(p) = self.partials.remove(&key) else { return FragmentOutcome::Dropped };
        self.bytes_held -= p.data.len();
        let mut whole = p.first_header.unwrap_or(*header);
        whole.more_fragments = false;
        whole.frag_offset = 0;
        whole.header_len = MIN_HEADER_LEN;
        whole.total_len = MIN_HEADER_LEN + p.data.len();
        FragmentOutcome::Complete(whole, p.data)
    }

    /// Drops datagrams whose time is up.
    pub fn poll(&mut self, now: Instant) -> Vec<Expired> {
        let expired: Vec<Key> = self.partials.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| *k).collect();
        expired
            .into_iter()
            .filter_map(|k| {
                let p = self.partials.remove(&k)?;
                self.bytes_held -= p.data.len();
                let first_bytes = match p.first_header {
                    Some(_) => p.data[..p.data.len().min(8)].to_vec(),
                    None => Vec::new(),
                };
                Some(Expired { first_header: p.first_header, first_bytes })
            })
            .collect()
    }

    /// The earliest deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        self.partials.values().map(|p| p.deadline).min()
    }

    fn discard(&mut self, key: Key) {
        if let Some(p) = self.partials.remove(&key) {
            self.bytes_held -= p.data.len();
        }
    }

    /// Under memory pressure the oldest incomplete datagrams go first (Linux evicts the same way).
    fn make_room(&mut self, incoming: usize) {
        while self.bytes_held + incoming > self.config.max_bytes {
            let Some(oldest) = self.partials.iter().min_by_key(|(_, p)| p.arrival_order).map(|(k, _)| *k) else {
                return;
            };
            self.discard(oldest);
        }
    }
}

fn merge_adjacent(ranges: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i + 1 < ranges.len() {
        if ranges[i].1 == ranges[i + 1].0 {
            ranges[i].1 = ranges[i + 1].1;
            ranges.remove(i + 1);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(ident: u16, offset: usize, more: bool, len: usize) -> (Ipv4Header, Vec<u8>) {
        let mut h = Ipv4Header::new(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2), 1, 64, len);
        h.ident = ident;
        h.frag_offset = offset;
        h.more_fragments = more;
        let data = (0..len).map(|i| ((offset + i) % 251) as u8).collect();
        (h, data)
    }

    fn expected(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn in_order_and_reverse_order() {
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::new(ReassemblyConfig::default());
            let frags = [frag(1, 0, true, 1480), frag(1, 1480, true, 1480), frag(1, 2960, false, 48)];
            let mut result = None;
            for (n, &i) in order.iter().enumerate() {
                let (h, d) = &frags[i];
                match r.add(Instant::ZERO, h, d) {
                    FragmentOutcome::Complete(h, data) => result = Some((n, h, data)),
                    FragmentOutcome::Held => {}
                    FragmentOutcome::Dropped => panic!("dropped"),
                }
            }
            let (n, h, data) = result.expect("complete");
            assert_eq!(n, 2, "complete exactly at the last fragment");
            assert_eq!(data, expected(3008));
            assert_eq!(h.total_len, 3028);
            assert!(!h.is_fragment());
            assert_eq!(r.bytes_held(), 0);
        }
    }

    #[test]
    fn duplicates_are_ignored_overlaps_discard() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let (h0, d0) = frag(2, 0, true, 16);
        assert_eq!(r.add(Instant::ZERO, &h0, &d0), FragmentOutcome::Held);
        assert_eq!(r.add(Instant::ZERO, &h0, &d0), FragmentOutcome::Held);
        let (h1, d1) = frag(2, 8, true, 16);
        assert_eq!(r.add(Instant::ZERO, &h1, &d1), FragmentOutcome::Dropped);
        assert!(r.is_empty());
    }

    #[test]
    fn timeout_reports_first_fragment() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let (h0, d0) = frag(3, 0, true, 16);
        r.add(Instant::ZERO, &h0, &d0);
        assert!(r.poll(Instant::from_secs(29)).is_empty());
        assert_eq!(r.poll_at(), Some(Instant::from_secs(30)));
        let expired = r.poll(Instant::from_secs(30));
        assert_eq!(expired.len(), 1);
        assert!(expired[0].first_header.is_some());
        assert_eq!(expired[0].first_bytes.len(), 8);
        assert!(r.is_empty());
    }

    #[test]
    fn memory_limit_evicts_oldest_and_caps_size() {
        let config = ReassemblyConfig { max_bytes: 3000, ..ReassemblyConfig::default() };
        let mut r = Reassembler::new(config);
        for id in 0..10 {
            let (h, d) = frag(id, 0, true, 1480);
            r.add(Instant::ZERO, &h, &d);
            assert!(r.bytes_held() <= 3000);
        }
        assert_eq!(r.len(), 2);
        let (h, d) = frag(99, 65528, false, 8);
        assert_eq!(r.add(Instant::ZERO, &h, &d), FragmentOutcome::Dropped, "past 65535 bytes");
    }

    #[test]
    fn conflicting_last_fragments_discard() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let (h, d) = frag(4, 16, false, 8);
        r.add(Instant::ZERO, &h, &d);
        let (h, d) = frag(4, 32, false, 8);
        assert_eq!(r.add(Instant::ZERO, &h, &d), FragmentOutcome::Dropped);
    }
}
