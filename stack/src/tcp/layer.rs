//! The TCP layer of a stack: every connection, listener, half-open and TIME-WAIT entry, the four-tuple table
//! that finds them, the port bindings, and one timer wheel for all of them.
//!
//! Demultiplexing is hierarchical and never scans (STYLE: "demux that does not scan"): the exact four-tuple
//! first (a connection, a half-open entry or a TIME-WAIT entry), then a listener on the exact local address,
//! then a listener on the wildcard address. A segment that reaches nothing is answered with a RST
//! (RFC 9293 section 3.10.7.1).

use super::config::TcpConfig;
use super::connection::{ConnOptions, Connection, Outcome, State};
use super::handshake::{negotiate, syn_ack_options, syn_window, Buffers};
use super::idle_rings::{IdleRings, Ring};
use super::input::InputContext;
use super::isn::{siphash24, IsnGenerator};
use super::listener::{HalfOpen, Listener};
use super::ports::{Binding, Owner, TcpPorts};
use super::segment::{OutSegment, SegmentBuf, SegmentOut, WithFallback};
use super::seq::SeqNum;
use super::time_wait::{TimeWait, TimeWaitVerdict};
use crate::iface::counters::TcpCounters;
use crate::iface::rate_limit::TokenBucket;
use crate::socket::Fd;
use crate::storage::buffer_pool::BufferPool;
use crate::storage::flow_map::{flow_map, FlowMap};
use crate::storage::ring_buffer::RingBuffer;
use crate::storage::slab::{Slab, SlabKey};
use crate::time::Instant;
use crate::timer::TimerWheel;
use crate::wire::tcp::{TcpFlags, TcpHeader, TcpOptions};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

pub use super::demux::{DemuxTable, Demuxed, FourTuple};

/// Spare ring storage kept for reuse, at most this many buffers and bytes: enough for the rings of a few
/// dozen busy connections at the default sizes; beyond that, storage goes back to the allocator.
const SPARE_BUFFERS: usize = 64;
const SPARE_BUFFER_BYTES: usize = 32 << 20;

/// The storage `conn`'s `ring` holds while holding no bytes, in bytes; `None` if it holds bytes or no storage.
/// Out-of-order bytes parked in a receive ring's free space count as bytes.
fn idle_storage(conn: &Connection, ring: Ring) -> Option<usize> {
    let (buffer, parked) = match ring {
        Ring::Receive => (&conn.rx, !conn.ooo.is_empty()),
        Ring::Send => (&conn.tx, false),
    };
    (buffer.is_empty() && !parked && !buffer.is_detached()).then(|| buffer.storage_bytes())
}

/// Connection `k`'s `ring` leaves the idle list: its storage goes back to `pool` if it still holds no bytes.
#[inline(never)]
fn give_back(conns: &mut Slab<Connection>, pool: &mut BufferPool, k: SlabKey, ring: Ring) {
    let Some(conn) = conns.get_mut(k) else { return };
    conn.idle_listed.set(ring, false);
    if idle_storage(conn, ring).is_none() {
        return;
    }
    let storage = match ring {
        Ring::Receive => conn.rx.detach(),
        Ring::Send => conn.tx.detach(),
    };
    if let Some(storage) = storage {
        pool.put(storage);
    }
}

/// Gives `ring` storage from `pool` if it has none and the pool has storage of its size.
#[link_section = ".text.hot.ustack"]
fn lend(pool: &mut BufferPool, ring: &mut RingBuffer) {
    if ring.is_detached() {
        if let Some(storage) = pool.take(ring.capacity()) {
            if let Some(refused) = ring.attach(storage) {
                pool.put(refused);
            }
        }
    }
}

/// Buffer memory of the TCP layer (see `Stack::tcp_memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMemory {
    /// Storage held by connections' send and receive rings.
    pub ring_bytes: usize,
    /// Storage held spare, ready to lend to the next ring that needs some.
    pub spare_bytes: usize,
    /// What autotuning has grown live connections' buffers by (their capacity, held or not).
    pub autotuned_bytes: usize,
}

/// What a timer in the wheel belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKey {
    Conn(SlabKey),
    HalfOpen(SlabKey),
    TimeWait(SlabKey),
}

/// All TCP state of one stack.
#[derive(Debug)]
pub struct TcpLayer {
    pub config: TcpConfig,
    pub conns: Slab<Connection>,
    pub listeners: Slab<Listener>,
    pub half_open: Slab<HalfOpen>,
    pub time_wait: Slab<TimeWait>,
    pub demux: DemuxTable,
    /// Listeners by local address; the wildcard listener of port P is under 0.0.0.0:P.
    pub listen_index: FlowMap<SocketAddrV4, SlabKey>,
    pub ports: TcpPorts,
    pub timers: TimerWheel<TimerKey>,
    /// Connections with something to send after a socket call, or after a segment of the receive batch in
    /// progress.
    pub ready: VecDeque<SlabKey>,
    /// True while a batch of received frames is processed: output waits for the batch's end (see
    /// [`TcpLayer::end_batch`]).
    pub batching: bool,
    pub isn: IsnGenerator,
    ts_key: [u8; 16],
    pub challenge_acks: TokenBucket,
    pub counters: TcpCounters,
    /// Segments built and waiting for IP.
    pub out: SegmentBuf,
    /// Ring storage that empty rings gave back, lent to the next ring that needs some.
    pub buffers: BufferPool,
    /// Rings that emptied recently and keep their storage a while (see `tcp/idle_rings.rs`).
    idle_rings: IdleRings,
    /// What autotuning has grown live connections' buffers by, together (see `TcpConfig::autotune_total_max`).
    pub autotuned_total: usize,
    /// The lowest ISN the next SYN from a reopened TIME-WAIT four-tuple may use.
    reopen_min_isn: Option<SeqNum>,
    /// Descriptors whose readiness may have changed.
    pub events: Vec<Fd>,
    /// RFC 6056 Algorithm 3's per-stack counter for ephemeral ports.
    next_ephemeral: u32,
    expired: Vec<TimerKey>,
}

impl TcpLayer {
    pub fn new(config: TcpConfig, seed: u64) -> Self {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(&(!seed).to_le_bytes());
        let mut ts_key = key;
        ts_key[0] ^= 0x5a;
        TcpLayer {
            challenge_acks: TokenBucket::new(config.challenge_ack_limit, config.challenge_ack_limit),
            idle_rings: IdleRings::new(config.idle_rings_kept, config.idle_ring_bytes_kept),
            config,
            conns: Slab::new(),
            listeners: Slab::new(),
            half_open: Slab::new(),
            time_wait: Slab::new(),
            demux: DemuxTable::new(seed ^ 0x6465_6d75_785f_6b65),
            listen_index: flow_map(seed ^ 0x6c69_7374_656e_6572),
            ports: TcpPorts::default(),
            timers: TimerWheel::new(Instant::ZERO),
            ready: VecDeque::new(),
            batching: false,
            isn: IsnGenerator::new(key),
            ts_key,
            counters: TcpCounters::default(),
            out: SegmentBuf::default(),
            buffers: BufferPool::new(SPARE_BUFFERS, SPARE_BUFFER_BYTES),
            autotuned_total: 0,
            events: Vec::new(),
            next_ephemeral: (seed >> 7) as u32,
            reopen_min_isn: None,
            expired: Vec::new(),
        }
    }

    /// A per-connection offset for timestamps, so that TSval does not reveal one clock shared by all
    /// connections (RFC 7323 section 5.4; Linux randomizes per connection too).
    pub fn ts_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut data = [0u8; 12];
        data[..4].copy_from_slice(&local.ip().octets());
        data[4..6].copy_from_slice(&local.port().to_be_bytes());
        data[6..10].copy_from_slice(&remote.ip().octets());
        data[10..].copy_from_slice(&remote.port().to_be_bytes());
        siphash24(&self.ts_key, &data) as u32
    }

    /// An ephemeral port for `connect()` from `local_ip` to `remote` (RFC 6056 section 3.3.3, Algorithm 3: a
    /// keyed hash of the destination picks where to start, a counter moves on): never a port that `bind()`
    /// took, never a four-tuple in use.
    pub fn pick_connect_port(&mut self, local_ip: Ipv4Addr, remote: SocketAddrV4, range: (u16, u16)) -> Option<u16> {
        let (first, last) = range;
        if first > last {
            return None;
        }
        let count = u32::from(last - first) + 1;
        let mut data = [0u8; 10];
        data[..4].copy_from_slice(&local_ip.octets());
        data[4..8].copy_from_slice(&remote.ip().octets());
        data[8..].copy_from_slice(&remote.port().to_be_bytes());
        let offset = siphash24(&self.ts_key, &data) as u32;
        for i in 0..count {
            let port = first + (offset.wrapping_add(self.next_ephemeral).wrapping_add(i) % count) as u16;
            if self.ports.explicitly_bound(local_ip, port) {
                continue;
            }
            if self.demux.contains(&(SocketAddrV4::new(local_ip, port), remote)) {
                continue;
            }
            self.next_ephemeral = self.next_ephemeral.wrapping_add(i + 1);
            return Some(port);
        }
        None
    }

    /// When the layer next needs a poll.
    pub fn poll_at(&self) -> Option<Instant> {
        // Connections to flush, or segments a socket call already built (the RST of an abortive close).
        if !self.ready.is_empty() || !self.out.is_empty() {
            return Some(Instant::ZERO);
        }
        self.timers.next_deadline()
    }

    fn ctx<'a>(
        config: &'a TcpConfig,
        counters: &'a mut TcpCounters,
        challenge: &'a mut TokenBucket,
        our_mss: u16,
        autotuned_total: &'a mut usize,
    ) -> InputContext<'a> {
        InputContext { config, counters, challenge_acks: challenge, our_mss, autotuned_total }
    }

    // ---------------------------------------------------------------------------------------------------
    // Segments in.

    /// Processes a segment from `remote` to `local` that passed the checksum.
    pub fn receive(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpHeader,
        payload: &[u8],
        our_mss: u16,
    ) {
        self.counters.in_segs += 1;
        match self.demux.get(&(local, remote)) {
            Some(Demuxed::Conn(k)) => return self.receive_conn(now, k, seg, payload, our_mss),
            Some(Demuxed::HalfOpen(k)) => return self.receive_half_open(now, k, seg, payload, our_mss),
            // A SYN that may reopen the four-tuple removes the entry and goes on to the listener.
            Some(Demuxed::TimeWait(k)) if !self.receive_time_wait(now, k, seg, payload) => return,
            Some(Demuxed::TimeWait(_)) | None => {}
        }
        let listener = self
            .listen_index
            .get(&local)
            .or_else(|| self.listen_index.get(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port())))
            .copied();
        match listener {
            Some(lk) => self.receive_listen(now, lk, local, remote, seg, payload, our_mss),
            None => self.reset_unknown(local, remote, seg, payload.len()),
        }
        self.reopen_min_isn = None;
    }

    #[link_section = ".text.hot.ustack"]
    fn receive_conn(&mut self, now: Instant, k: SlabKey, seg: &TcpHeader, payload: &[u8], our_mss: u16) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        if !payload.is_empty() {
            lend(&mut self.buffers, &mut conn.rx);
        }
        let mut ctx =
            Self::ctx(&self.config, &mut self.counters, &mut self.challenge_acks, our_mss, &mut self.autotuned_total);
        let mut processed = conn.on_segment(now, seg, payload, &mut ctx);
        if processed.outcome == Outcome::Alive || processed.outcome == Outcome::Established {
            if let Some(fin) = conn.take_pending_fin(now, &mut ctx) {
                if fin.outcome != Outcome::Alive {
                    processed.outcome = fin.outcome;
                }
            }
        }
        if let Some(fd) = conn.fd {
            self.events.push(fd);
        }
        let tuple = (conn.local, conn.remote);
        let dsack_due = conn.dsack.is_some();
        if let Some(seq) = processed.reset_reply {
            self.send_reset_to(tuple.0, tuple.1, seq, None);
        }
        self.note_emptied_rings(k);
        // A D-SACK goes out at once, not with the batch's ACK: an ACK carries one D-SACK block, and the batch's
        // next duplicate would replace it (RFC 2883 section 4; Linux answers every duplicate at once,
        // `tcp_send_dupack`).
        if dsack_due && self.batching {
            self.transmit(now, k);
        }
        self.after_event(now, k, processed.outcome);
    }

    /// What the connections' buffers occupy now.
    pub fn memory(&self) -> TcpMemory {
        let ring_bytes = self.conns.iter().map(|(_, c)| c.rx.storage_bytes() + c.tx.storage_bytes()).sum();
        TcpMemory { ring_bytes, spare_bytes: self.buffers.bytes(), autotuned_bytes: self.autotuned_total }
    }

    /// Lends spare storage to connection `k`'s send ring before the application writes into it.
    #[link_section = ".text.hot.ustack"]
    pub fn lend_send_buffer(&mut self, k: SlabKey) {
        if let Some(conn) = self.conns.get_mut(k) {
            lend(&mut self.buffers, &mut conn.tx);
        }
    }

    /// Lists connection `k`'s rings that hold storage but no bytes as idle: a receive ring the application has
    /// read dry (with no out-of-order data parked in it), a send ring whose bytes were all acknowledged. They
    /// keep their storage until the list is full, then give it back to the pool (`tcp/idle_rings.rs`).
    #[link_section = ".text.hot.ustack"]
    pub fn note_emptied_rings(&mut self, k: SlabKey) {
        let Some(conn) = self.conns.get(k) else { return };
        if !conn.idle_listed.both() {
            self.list_idle_rings(k);
        }
    }

    /// [`TcpLayer::note_emptied_rings`] for a connection with a ring not listed yet.
    // off the per-segment path: see "Code placement" in docs/DESIGN.md
    #[inline(never)]
    fn list_idle_rings(&mut self, k: SlabKey) {
        for ring in [Ring::Receive, Ring::Send] {
            let Some(conn) = self.conns.get_mut(k) else { return };
            if conn.idle_listed.contains(ring) {
                continue;
            }
            let Some(bytes) = idle_storage(conn, ring) else { continue };
            conn.idle_listed.set(ring, true);
            let (conns, pool) = (&mut self.conns, &mut self.buffers);
            self.idle_rings.push(k, ring, bytes, |k, ring| give_back(conns, pool, k, ring));
        }
    }

    /// Acts on what an event did to connection `k`: send what it has to send, and retire it if it ended.
    #[link_section = ".text.hot.ustack"]
    pub fn after_event(&mut self, now: Instant, k: SlabKey, outcome: Outcome) {
        match outcome {
            Outcome::Alive | Outcome::Established => {
                if outcome == Outcome::Established {
                    if let Some(fd) = self.conns.get(k).and_then(|c| c.fd) {
                        self.events.push(fd);
                    }
                }
                if self.batching {
                    self.defer_transmit(k);
                } else {
                    self.transmit(now, k);
                }
            }
            Outcome::TimeWait => {
                self.transmit(now, k);
                self.enter_time_wait(now, k);
            }
            Outcome::Gone(errno) => self.retire(k, errno),
            Outcome::Abort(errno) => {
                if let Some(conn) = self.conns.get_mut(k) {
                    conn.send_reset(now, &mut self.out, &mut self.counters);
                }
                self.retire(k, errno);
            }
        }
    }

    /// Queues connection `k` to send at the end of the receive batch or the next poll. Segments of one
    /// connection arrive back to back, so a repeat is caught by looking at the last entry.
    fn defer_transmit(&mut self, k: SlabKey) {
        if self.ready.back() != Some(&k) {
            self.ready.push_back(k);
        }
    }

    /// The receive batch is over: every connection it touched sends now, once. Like Linux's GRO, which hands
    /// TCP one super-segment for many frames, this answers the batch's segments with one ACK and lets the
    /// ACKs of a batch release data in one burst instead of frame by frame. RFC 9293 section 3.8.6.3 asks for
    /// an ACK at least every second full-sized segment; within a batch each such ACK would be superseded
    /// before it left, since nothing reaches the peer until the batch's output is flushed.
    ///
    /// A connection with nothing to send but that ACK keeps it for the next `poll`, which a loop calls after its
    /// application has read: the ACK then offers the window the reading freed, the same whole-buffer window in
    /// every ACK of a steady transfer, and no window update has to follow it. Linux gets there the same way — a
    /// reader waiting in `recv` acknowledges after its copy (`tcp_cleanup_rbuf`) — and a Linux sender takes
    /// the fast path (header prediction) only for ACKs whose window did not change. Over a TAP, a kernel
    /// sender took 3,453 of ustack's 4,227 ACKs on its slow path before, 11 of 1,487 after (smoltcp's: 6 of 1,778).
    pub fn end_batch(&mut self, now: Instant, out: &mut dyn SegmentOut) {
        self.batching = false;
        for _ in 0..self.ready.len() {
            let Some(k) = self.ready.pop_front() else { break };
            match self.conns.get(k) {
                Some(conn) if conn.has_only_an_ack_to_send() => self.ready.push_back(k),
                Some(_) => self.transmit_one(now, k, out),
                None => {}
            }
        }
    }

    /// Every connection with output pending sends it to `out` (segments `out` declines go to `self.out`).
    fn transmit_ready(&mut self, now: Instant, out: &mut dyn SegmentOut) {
        while let Some(k) = self.ready.pop_front() {
            self.transmit_one(now, k, out);
        }
    }

    /// Connection `k` sends what it has to `out` (segments `out` declines go to `self.out`).
    fn transmit_one(&mut self, now: Instant, k: SlabKey, out: &mut dyn SegmentOut) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let mut out = WithFallback { first: out, fallback: &mut self.out };
        conn.transmit(now, &self.config, &mut out, &mut self.counters);
        self.reschedule(k);
    }

    /// Sends what connection `k` has to send, built into `self.out`, and re-arms its timer.
    #[link_section = ".text.hot.ustack"]
    pub fn transmit(&mut self, now: Instant, k: SlabKey) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        conn.transmit(now, &self.config, &mut self.out, &mut self.counters);
        self.reschedule(k);
    }

    /// Keeps the wheel's single entry for a connection no later than its earliest deadline. An entry that
    /// would fire early is left alone: every acknowledgment pushes the retransmission deadline back, and
    /// moving the entry each time would cost a cancel and an insert per segment. Fired early, the timer finds
    /// nothing due and is set again here (Linux's timers work the same way: `sk_reset_timer` on a pending
    /// timer only when it must fire sooner).
    #[link_section = ".text.hot.ustack"]
    fn reschedule(&mut self, k: SlabKey) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let want = conn.next_deadline();
        let have = conn.timer.map(|(_, at)| at);
        let fires_in_time = match (want, have) {
            (_, None) => want.is_none(),
            (None, Some(_)) => true,
            (Some(w), Some(h)) => h <= w,
        };
        if fires_in_time {
            return;
        }
        if let Some((handle, _)) = conn.timer.take() {
            self.timers.cancel(handle);
        }
        if let Some(at) = want {
            conn.timer = Some((self.timers.schedule(at, TimerKey::Conn(k)), at));
        }
    }

    /// The connection ended. An application still holding its descriptor keeps the TCB (closed, with unread
    /// data and the error) until `close()`; otherwise it is freed now.
    pub fn retire(&mut self, k: SlabKey, errno: Option<crate::errno::Errno>) {
        let Some(conn) = self.conns.get_mut(k) else { return };
        let tuple = (conn.local, conn.remote);
        if let Some((handle, _)) = conn.timer.take() {
            self.timers.cancel(handle);
        }
        if self.demux.remove_if(&tuple, Demuxed::Conn(k)) {
            self.ports.remove(tuple.0.port(), Owner::Conn(k));
        }
        conn.state = State::Closed;
        conn.rto_at = None;
        conn.persist_at = None;
        conn.delack_at = None;
        conn.keepalive_at = None;
        conn.linger_at = None;
        conn.rack_at = None;
        conn.pto_at = None;
        if errno.is_some() {
            conn.error = errno;
        }
        match conn.fd {
            Some(fd) => self.events.push(fd),
            None => {
                if let Some(lk) = conn.listener {
                    if let Some(l) = self.listeners.get_mut(lk) {
                        l.accept_queue.retain(|&c| c != k);
                    }
                }
                if let Some(conn) = self.conns.remove(k) {
                    self.autotuned_total = self.autotuned_total.saturating_sub(conn.autotuned as usize);
                    self.buffers.put(conn.rx.into_storage());
                    self.buffers.put(conn.tx.into_storage());
                }
            }
        }
    }

    /// RFC 9293 section 3.6.1: the active closer keeps the four-tuple for 2*MSL, here in a light entry.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn enter_time_wait(&mut self, now: Instant, k: SlabKey) {
        let Some(conn) = self.conns.get(k) else { return };
        if self.time_wait.len() >= self.config.max_time_wait {
            self.counters.time_wait_overflow += 1;
            return self.retire(k, None);
        }
        let tuple = (conn.local, conn.remote);
        let deadline = now + self.config.msl * 2;
        let tw = TimeWait {
            local: conn.local,
            remote: conn.remote,
            snd_nxt: conn.snd_max,
            rcv_nxt: conn.rcv_nxt,
            rcv_wscale: conn.negotiated.rcv_wscale,
            window: (conn.window_to_advertise() >> conn.negotiated.rcv_wscale).min(u16::MAX as usize) as u16,
            ts: conn.negotiated.ts,
            deadline,
            timer: None,
        };
        let tk = self.time_wait.insert(tw);
        let handle = self.timers.schedule(deadline, TimerKey::TimeWait(tk));
        if let Some(tw) = self.time_wait.get_mut(tk) {
            tw.timer = Some(handle);
        }
        self.ports.transfer(tuple.0.port(), Owner::Conn(k), Owner::TimeWait(tk));
        self.demux.insert(tuple, Demuxed::TimeWait(tk));
        self.retire(k, None);
    }

    /// Returns true when the segment should go on to a listener (a SYN reopening the four-tuple).
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn receive_time_wait(&mut self, now: Instant, tk: SlabKey, seg: &TcpHeader, payload: &[u8]) -> bool {
        let Some(tw) = self.time_wait.get_mut(tk) else { return false };
        match tw.judge(seg, payload.len(), now) {
            TimeWaitVerdict::Ignore => false,
            TimeWaitVerdict::Ack { restart } => {
                let mut options = TcpOptions::default();
                if let Some(ts) = tw.ts.as_mut() {
                    if let Some((tsval, _)) = seg.options.timestamps {
                        if (tsval.wrapping_sub(ts.recent) as i32) >= 0 {
                            ts.recent = tsval;
                            ts.recent_at = now;
                        }
                    }
                    options.timestamps = Some(((now.as_millis() as u32).wrapping_add(ts.offset), ts.recent));
                }
                let header = TcpHeader {
                    src_port: tw.local.port(),
                    dst_port: tw.remote.port(),
                    seq: tw.snd_nxt,
                    ack: tw.rcv_nxt,
                    flags: TcpFlags::ACK,
                    window: tw.window,
                    urgent: 0,
                    options,
                };
                self.out.push(&OutSegment::bare(tw.local, tw.remote, &header));
                self.counters.out_segs += 1;
                if restart {
                    let deadline = now + self.config.msl * 2;
                    tw.deadline = deadline;
                    if let Some(h) = tw.timer.take() {
                        self.timers.cancel(h);
                    }
                    tw.timer = Some(self.timers.schedule(deadline, TimerKey::TimeWait(tk)));
                }
                false
            }
            TimeWaitVerdict::Reopen => {
                // RFC 1122 section 4.2.2.13: the new incarnation's ISN must be above anything the old one used
                // (Linux: old SND.NXT + 65537).
                self.reopen_min_isn = Some(tw.snd_nxt + 65537);
                self.counters.time_wait_recycled += 1;
                self.remove_time_wait(tk);
                true
            }
        }
    }

    fn remove_time_wait(&mut self, tk: SlabKey) {
        if let Some(tw) = self.time_wait.remove(tk) {
            if let Some(h) = tw.timer {
                self.timers.cancel(h);
            }
            self.demux.remove_if(&(tw.local, tw.remote), Demuxed::TimeWait(tk));
            self.ports.remove(tw.local.port(), Owner::TimeWait(tk));
        }
    }

    /// RFC 9293 section 3.10.7.2, LISTEN: a RST is ignored, an ACK is answered with RST, a SYN starts a
    /// half-open connection in the SYN queue and gets a SYN-ACK.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn receive_listen(
        &mut self,
        now: Instant,
        lk: SlabKey,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpHeader,
        payload: &[u8],
        our_mss: u16,
    ) {
        let flags = seg.flags;
        if flags.contains(TcpFlags::RST) {
            return;
        }
        if flags.contains(TcpFlags::ACK) {
            return self.reset_unknown(local, remote, seg, payload.len());
        }
        if !flags.contains(TcpFlags::SYN) {
            return;
        }
        let Some(listener) = self.listeners.get_mut(lk) else { return };
        if listener.accept_queue_full() {
            // Linux's tcp_conn_request: a full accept queue drops new SYNs.
            self.counters.listen_overflows += 1;
            self.counters.listen_drops += 1;
            return;
        }
        if listener.syn_queue_full() {
            self.counters.syn_queue_drops += 1;
            self.counters.listen_drops += 1;
            return;
        }
        listener.syn_queue_len += 1;
        let buffers = listener.buffers;
        let user_mss = listener.opts.user_mss;
        let our_mss = user_mss.map_or(our_mss, |m| m.min(our_mss));
        let mut iss = self.isn.isn(now, local, remote);
        if let Some(min) = self.reopen_min_isn.take() {
            if iss.lt(min) {
                iss = min;
            }
        }
        let offered = super::handshake::syn_options(&self.config, our_mss, 0);
        let ts_offset = self.ts_offset(local, remote);
        let negotiated = negotiate(&self.config, our_mss, &seg.options, now, ts_offset, &offered);
        let rto = self.config.initial_rto;
        let half = HalfOpen {
            listener: lk,
            local,
            remote,
            iss,
            irs: seg.seq,
            negotiated,
            // Linux's tcp_openreq_init_rwin: with timestamps agreed, whole segments of MSS less the option.
            syn_window: syn_window(
                buffers.rcvbuf,
                if negotiated.ts.is_some() { our_mss - super::handshake::TIMESTAMP_OPTION_LEN as u16 } else { our_mss },
            ),
            retries: 0,
            rto,
            deadline: now + rto,
            timer: None,
            synack_sent_at: now,
            acked_while_full: false,
        };
        let hk = self.half_open.insert(half);
        let handle = self.timers.schedule(now + rto, TimerKey::HalfOpen(hk));
        if let Some(h) = self.half_open.get_mut(hk) {
            h.timer = Some(handle);
        }
        self.demux.insert((local, remote), Demuxed::HalfOpen(hk));
        self.send_syn_ack(now, hk);
    }

    fn send_syn_ack(&mut self, now: Instant, hk: SlabKey) {
        let Some(h) = self.half_open.get(hk) else { return };
        let tsval = (now.as_millis() as u32).wrapping_add(h.negotiated.ts.map_or(0, |t| t.offset));
        let header = TcpHeader {
            src_port: h.local.port(),
            dst_port: h.remote.port(),
            seq: h.iss,
            ack: h.irs + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: h.syn_window,
            urgent: 0,
            options: syn_ack_options(&h.negotiated, tsval),
        };
        self.out.push(&OutSegment::bare(h.local, h.remote, &header));
        self.counters.out_segs += 1;
        if h.retries > 0 {
            self.counters.retrans_segs += 1;
        }
    }

    /// A segment for a half-open connection (SYN-RECEIVED of a passive open, RFC 9293 section 3.10.7.4).
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn receive_half_open(&mut self, now: Instant, hk: SlabKey, seg: &TcpHeader, payload: &[u8], our_mss: u16) {
        let Some(h) = self.half_open.get_mut(hk) else { return };
        let flags = seg.flags;
        if flags.contains(TcpFlags::RST) {
            // RFC 9293: a RST in SYN-RECEIVED of a passive open returns to LISTEN (the entry goes); RFC 5961
            // section 3.2: only at exactly RCV.NXT.
            if seg.seq == h.irs + 1 {
                self.drop_half_open(hk);
            }
            return;
        }
        if flags.contains(TcpFlags::SYN) {
            if !flags.contains(TcpFlags::ACK) && seg.seq == h.irs {
                // The peer did not get our SYN-ACK: send it again.
                return self.send_syn_ack(now, hk);
            }
            self.counters.syn_challenges += 1;
            return;
        }
        if !flags.contains(TcpFlags::ACK) {
            return;
        }
        if seg.ack != h.iss + 1 {
            let (local, remote) = (h.local, h.remote);
            return self.send_reset_to(local, remote, seg.ack, None);
        }
        if seg.seq != h.irs + 1 {
            return; // not the next byte: not the handshake's ACK
        }
        let lk = h.listener;
        let Some(listener) = self.listeners.get_mut(lk) else { return self.drop_half_open(hk) };
        if listener.accept_queue_full() {
            // Linux (tcp_abort_on_overflow = 0): drop the ACK and keep the entry; the SYN-ACK timer makes the
            // peer send its ACK again, by when there may be room.
            h.acked_while_full = true;
            self.counters.listen_overflows += 1;
            self.counters.listen_drops += 1;
            return;
        }
        let (opts, buffers, reuse, listener_fd) =
            (listener.opts.clone(), listener.buffers, listener.reuse_addr, listener.fd);
        let Some(h) = self.half_open.remove(hk) else { return };
        if let Some(t) = h.timer {
            self.timers.cancel(t);
        }
        if let Some(l) = self.listeners.get_mut(lk) {
            l.syn_queue_len = l.syn_queue_len.saturating_sub(1);
        }
        let mut conn = Connection::new_passive(
            now,
            &self.config,
            h.local,
            h.remote,
            h.iss,
            h.irs,
            h.negotiated,
            h.syn_window,
            seg.window,
            seg.seq,
            opts,
            buffers,
        );
        if let (Some(ts), Some((tsval, tsecr))) = (conn.negotiated.ts, seg.options.timestamps) {
            conn.negotiated.ts =
                Some(super::connection::Timestamps { recent: tsval, recent_at: now, offset: ts.offset });
            let elapsed = conn.ts_now(now).wrapping_sub(tsecr);
            if tsecr != 0 && elapsed < 3_600_000 {
                conn.rtt.sample(crate::time::Duration::from_millis(u64::from(elapsed)));
            }
        } else if h.retries == 0 {
            // Without timestamps, time the SYN-ACK if it was not retransmitted (Karn; Linux's tcp_synack_rtt_meas).
            conn.rtt.sample(now.saturating_since(h.synack_sent_at));
        }
        conn.listener = Some(lk);
        let (local, remote) = (h.local, h.remote);
        let k = self.conns.insert(conn);
        self.demux.insert((local, remote), Demuxed::Conn(k));
        self.ports.add(
            local.port(),
            Binding { owner: Owner::Conn(k), ip: *local.ip(), reuse_addr: reuse, listening: false, explicit: true },
        );
        if let Some(l) = self.listeners.get_mut(lk) {
            l.accept_queue.push_back(k);
        }
        self.counters.passive_opens += 1;
        self.events.push(listener_fd);
        // Timers the connection starts with (keepalive inherited from the listener) go into the wheel now.
        self.reschedule(k);
        // The ACK may carry data (and even a FIN): process it as an ESTABLISHED segment.
        if !payload.is_empty() || flags.contains(TcpFlags::FIN) {
            self.receive_conn(now, k, seg, payload, our_mss);
        }
    }

    fn drop_half_open(&mut self, hk: SlabKey) {
        if let Some(h) = self.half_open.remove(hk) {
            if let Some(t) = h.timer {
                self.timers.cancel(t);
            }
            self.demux.remove_if(&(h.local, h.remote), Demuxed::HalfOpen(hk));
            if let Some(l) = self.listeners.get_mut(h.listener) {
                l.syn_queue_len = l.syn_queue_len.saturating_sub(1);
            }
        }
    }

    /// RFC 9293 section 3.10.7.1 (CLOSED): a segment that reaches nothing is answered with a reset, unless it is
    /// one. With ACK: `<SEQ=SEG.ACK><CTL=RST>`; without: `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
    pub fn reset_unknown(&mut self, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpHeader, payload_len: usize) {
        if seg.flags.contains(TcpFlags::RST) {
            return;
        }
        if seg.flags.contains(TcpFlags::ACK) {
            self.send_reset_to(local, remote, seg.ack, None);
        } else {
            let seg_len = payload_len
                + usize::from(seg.flags.contains(TcpFlags::SYN))
                + usize::from(seg.flags.contains(TcpFlags::FIN));
            self.send_reset_to(local, remote, SeqNum(0), Some(seg.seq + seg_len));
        }
    }

    #[cold]
    fn send_reset_to(&mut self, local: SocketAddrV4, remote: SocketAddrV4, seq: SeqNum, ack: Option<SeqNum>) {
        let mut flags = TcpFlags::RST;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        let header = TcpHeader {
            src_port: local.port(),
            dst_port: remote.port(),
            seq,
            ack: ack.unwrap_or(SeqNum(0)),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
        };
        self.out.push(&OutSegment::bare(local, remote, &header));
        self.counters.out_segs += 1;
        self.counters.out_rsts += 1;
    }

    // ---------------------------------------------------------------------------------------------------
    // Timers and output.

    /// Runs every timer due at `now` and flushes connections with pending output.
    #[link_section = ".text.hot.ustack"]
    pub fn poll(&mut self, now: Instant, out: &mut dyn SegmentOut) {
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        self.timers.expire(now, &mut expired);
        // What the timers make connections send goes out below with the rest, once per connection.
        self.batching = true;
        for key in expired.drain(..) {
            match key {
                TimerKey::Conn(k) => {
                    let Some(conn) = self.conns.get_mut(k) else { continue };
                    conn.timer = None;
                    let outcome = conn.on_timer(now, &self.config, &mut self.counters);
                    if let Some(fd) = conn.fd {
                        self.events.push(fd);
                    }
                    self.after_event(now, k, outcome);
                }
                TimerKey::HalfOpen(hk) => self.half_open_timeout(now, hk),
                TimerKey::TimeWait(tk) => {
                    // Linux's TcpExtTW counts TIME-WAIT entries that ran their full course.
                    self.counters.time_waits += 1;
                    self.remove_time_wait(tk);
                }
            }
        }
        self.batching = false;
        self.expired = expired;
        self.transmit_ready(now, out);
    }

    /// A SYN-ACK went unanswered: resend it with the timeout doubled, or give up after `synack_retries`.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn half_open_timeout(&mut self, now: Instant, hk: SlabKey) {
        let Some(h) = self.half_open.get_mut(hk) else { return };
        h.timer = None;
        if h.retries >= self.config.synack_retries {
            return self.drop_half_open(hk);
        }
        h.retries += 1;
        h.rto = (h.rto * 2).min(self.config.max_rto);
        h.deadline = now + h.rto;
        let deadline = h.deadline;
        h.timer = Some(self.timers.schedule(deadline, TimerKey::HalfOpen(hk)));
        self.send_syn_ack(now, hk);
    }

    /// Marks a connection as having output to flush on the next poll. A call right after a receive batch
    /// finds the connection last in the queue, where the batch's deferred ACK left it (a request answered
    /// in the same poll): it is not queued twice, as a second turn would find nothing to send.
    #[link_section = ".text.hot.ustack"]
    pub fn wake(&mut self, k: SlabKey) {
        self.defer_transmit(k);
    }

    /// `connect()` from an explicitly bound port whose four-tuple is in TIME-WAIT: Linux (tcp_twsk_unique)
    /// lets it reuse the entry when timestamps protect the new incarnation (PAWS rejects the old one's
    /// segments). Returns the lowest ISN the new connection may use, or `None` when the tuple is not free.
    pub fn reuse_time_wait_for_connect(&mut self, tuple: FourTuple) -> Option<Option<SeqNum>> {
        match self.demux.get(&tuple) {
            None => Some(None),
            Some(Demuxed::TimeWait(tk)) => {
                let tw = self.time_wait.get(tk)?;
                tw.ts?;
                let min_isn = tw.snd_nxt + 65537;
                self.counters.time_wait_recycled += 1;
                self.remove_time_wait(tk);
                Some(Some(min_isn))
            }
            Some(_) => None,
        }
    }

    /// A new active open: the TCB is created in SYN-SENT, registered, and its SYN sent on the next poll.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        our_mss: u16,
        opts: ConnOptions,
        buffers: Buffers,
        fd: Fd,
        binding: Binding,
        min_isn: Option<SeqNum>,
    ) -> SlabKey {
        let mut iss = self.isn.isn(now, local, remote);
        if let Some(min) = min_isn.filter(|m| iss.lt(*m)) {
            iss = min;
        }
        let ts_offset = self.ts_offset(local, remote);
        let mut conn = Connection::new_active(now, &self.config, local, remote, iss, our_mss, ts_offset, opts, buffers);
        conn.fd = Some(fd);
        let k = self.conns.insert(conn);
        self.demux.insert((local, remote), Demuxed::Conn(k));
        self.ports.add(local.port(), Binding { owner: Owner::Conn(k), ..binding });
        self.wake(k);
        k
    }
}
