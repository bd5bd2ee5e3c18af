//! The transmission control block (RFC 9293 section 3.3.1) of one synchronizing or synchronized connection,
//! in the RFC's own names. Segment processing lives in `input.rs`, sending in `output.rs`, timers here.

use super::assembler::Assembler;
use super::config::TcpConfig;
use super::congestion::{CongestionAlgorithm, CongestionControl};
use super::idle_rings::Listed;
use super::rack::Rack;
use super::rcv_autotune::RcvAutotune;
use super::resent::ResentBytes;
use super::rtt::RttEstimator;
use super::sack_scoreboard::Scoreboard;
use super::seq::SeqNum;
use crate::errno::Errno;
use crate::iface::counters::TcpCounters;
use crate::socket::Fd;
use crate::storage::ring_buffer::RingBuffer;
use crate::storage::slab::SlabKey;
use crate::time::{Duration, Instant};
use crate::timer::TimerHandle;
use std::net::SocketAddrV4;

/// Zero-window probes (counted by backoff) after which an orphaned connection gives up (Linux's default
/// tcp_orphan_retries, 8).
const ORPHAN_RETRIES: u32 = 8;

/// The connection states of RFC 9293 section 3.3.2 (LISTEN belongs to the listener, CLOSED to no TCB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl State {
    /// The name `ss` and netstat print.
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECV",
            State::Established => "ESTAB",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
            State::Closed => "CLOSED",
        }
    }

    /// States in which the connection is synchronized (RFC 9293 section 3.5.2's "synchronized states").
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }

    /// States in which we may still send data.
    pub fn can_send(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }

    /// States in which our data may still go out (including data queued before a close).
    pub fn can_send_data(self) -> bool {
        matches!(self, State::Established | State::CloseWait | State::FinWait1 | State::LastAck | State::Closing)
    }

    /// States in which arriving data is accepted (RFC 9293 section 3.10.7.4, "seventh, process the segment text").
    pub fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }
}

/// RFC 7323 timestamp state.
#[derive(Debug, Clone, Copy)]
pub struct Timestamps {
    /// TS.Recent: the peer's timestamp to echo.
    pub recent: u32,
    /// When TS.Recent was last updated (RFC 7323 section 5.5: it goes stale after 24 days).
    pub recent_at: Instant,
    /// Added to our millisecond clock so that connections do not reveal a shared clock (Linux does the same).
    pub offset: u32,
}

/// Per-socket options that shape a connection.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    pub nodelay: bool,
    pub keepalive: bool,
    pub keep_idle: Duration,
    pub keep_interval: Duration,
    pub keep_count: u32,
    /// FIN_WAIT_2 timeout of an orphaned connection (TCP_LINGER2); `None` uses the stack's default.
    pub linger2: Option<Duration>,
    /// `TCP_MAXSEG` set by the user: caps the MSS.
    pub user_mss: Option<u16>,
    /// `IP_TTL` (`None`: the stack's default) and `IP_TOS` of this socket's segments.
    pub ttl: Option<u8>,
    pub tos: u8,
    /// `TCP_CONGESTION`: the congestion control algorithm.
    pub congestion: CongestionAlgorithm,
    /// The application set `SO_SNDBUF`: the send buffer keeps that size (Linux's `SOCK_SNDBUF_LOCK`) rather
    /// than growing with the congestion window.
    pub sndbuf_locked: bool,
    /// The application set `SO_RCVBUF`: the receive buffer keeps that size (Linux's `SOCK_RCVBUF_LOCK`)
    /// rather than growing with what the application reads per round trip.
    pub rcvbuf_locked: bool,
}

impl ConnOptions {
    pub fn new(config: &TcpConfig) -> Self {
        ConnOptions {
            nodelay: false,
            keepalive: false,
            keep_idle: config.keepalive_idle,
            keep_interval: config.keepalive_interval,
            keep_count: config.keepalive_probes,
            linger2: None,
            user_mss: None,
            ttl: None,
            tos: 0,
            congestion: config.congestion,
            sndbuf_locked: false,
            rcvbuf_locked: false,
        }
    }
}

/// What the options of the handshake settled.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// Payload bytes per segment we send (the peer's MSS, capped by ours, less the timestamp option).
    pub send_mss: usize,
    /// The MSS we announced.
    pub our_mss: u16,
    /// The peer's shift, applied to windows it sends (RFC 7323 section 2.3).
    pub snd_wscale: u8,
    /// Our shift, applied to windows we send.
    pub rcv_wscale: u8,
    /// Both sides sent a window scale option.
    pub scaling: bool,
    pub ts: Option<Timestamps>,
    pub sack_ok: bool,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Connection {
    pub state: State,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The descriptor that owns the connection; `None` once the application closed it (an orphan).
    pub fd: Option<Fd>,
    /// The listener whose accept queue holds this connection, until it is accepted.
    pub listener: Option<SlabKey>,

    // Send sequence variables (RFC 9293 section 3.3.1).
    pub iss: SeqNum,
    pub snd_una: SeqNum,
    pub snd_nxt: SeqNum,
    /// The highest sequence number sent plus one: SND.NXT moves back on a timeout, this does not.
    pub snd_max: SeqNum,
    pub snd_wnd: usize,
    pub snd_wl1: SeqNum,
    pub snd_wl2: SeqNum,
    /// The largest window the peer ever offered (for RFC 5961 section 5.2 and sender SWS avoidance).
    pub max_snd_wnd: usize,

    // Receive sequence variables.
    pub irs: SeqNum,
    pub rcv_nxt: SeqNum,
    /// The right edge of the window we last advertised (RCV.NXT + RCV.WND at that time).
    pub rcv_adv: SeqNum,
    /// The acknowledgment number we last sent (Last.ACK.sent of RFC 7323 section 4.3).
    pub last_ack_sent: SeqNum,
    /// The ceiling of the window we offer, growing as data arrives (Linux's rcv_ssthresh).
    pub rcv_ssthresh: usize,
    /// Where data was last marked with PSH (Linux's pushed_seq, for forced pushes).
    pub pushed_seq: SeqNum,

    pub negotiated: Negotiated,

    /// Bytes from SND.UNA on: sent but unacknowledged, then not yet sent.
    pub tx: RingBuffer,
    /// Bytes received in order and not yet read; out-of-order bytes sit in its free space.
    pub rx: RingBuffer,
    /// Which out-of-order bytes are held.
    pub ooo: Assembler,
    /// Receive-buffer autotuning's measurement of what the application reads per round trip.
    pub rcv_tune: RcvAutotune,
    /// When we last answered an out-of-window segment without data (rate limit against ACK loops).
    pub last_oow_ack: Option<Instant>,
    /// A duplicate range to report in the first SACK block of the next ACK (RFC 2883 D-SACK).
    pub dsack: Option<(SeqNum, SeqNum)>,
    /// Sequence number of a FIN that arrived ahead of missing data.
    pub ooo_fin: Option<SeqNum>,
    /// Sequence number of our FIN, once the application closed its sending side.
    pub fin_seq: Option<SeqNum>,
    /// The peer's FIN arrived in order: reads reach end of file.
    pub peer_fin: bool,
    /// Which of the two rings are on the stack's list of idle rings, keeping their storage.
    pub idle_listed: Listed,

    // Timers, as absolute deadlines; the wheel holds one entry for the earliest.
    pub rto_at: Option<Instant>,
    pub persist_at: Option<Instant>,
    pub delack_at: Option<Instant>,
    pub keepalive_at: Option<Instant>,
    /// FIN_WAIT_2 timeout of an orphan.
    pub linger_at: Option<Instant>,
    pub timer: Option<(TimerHandle, Instant)>,

    pub rtt: RttEstimator,
    /// The segment being timed for an RTT sample when timestamps are off (Karn's algorithm: never a
    /// retransmitted one).
    pub rtt_probe: Option<(SeqNum, Instant)>,
    /// Consecutive retransmission timeouts.
    pub retries: u32,
    /// Unanswered zero-window or keepalive probes.
    pub probes: u32,
    pub cc: CongestionControl,
    /// Retransmit the segment at SND.UNA on the next transmit (fast retransmit, partial ACK).
    pub retransmit_now: bool,
    /// The end of the last less-than-full segment sent (Minshall's variant of Nagle: hold a small segment only
    /// while an earlier small one is unacknowledged; Linux's `snd_sml`).
    pub snd_sml: SeqNum,
    /// The last send stopped because the congestion window was full (RFC 7661: grow the window only then).
    pub cwnd_limited: bool,
    /// What the peer has selectively acknowledged (when SACK was negotiated).
    pub sacked: Scoreboard,
    /// During fast recovery: the next sequence number whose hole may be retransmitted, and the bytes
    /// retransmitted so far (they count as in flight, keeping recovery within the congestion window).
    pub recovery_next: SeqNum,
    pub recovery_rexmit_bytes: usize,
    /// RACK's record of what was sent when, for loss detection by time (RFC 8985 section 6; with SACK).
    pub rack: Rack,
    /// How fast SACK recovery may send (RFC 6937).
    pub prr: super::prr::Prr,
    /// RACK's reordering timer: bytes not yet overdue become so then (RFC 8985 section 6.2 step 5).
    pub rack_at: Option<Instant>,
    /// The tail loss probe timer (PTO, RFC 8985 section 7.2), and the probe it is to send now.
    pub pto_at: Option<Instant>,
    pub tlp_probe_now: bool,
    /// TLP.end_seq and TLP.is_retrans (RFC 8985 section 7): the probe in flight, if any, and whether it
    /// resent data (rather than sending new data).
    pub tlp_end: Option<SeqNum>,
    pub tlp_retrans: bool,
    /// New data went out or was acknowledged: the PTO starts again from now (RFC 8985 section 7.2).
    pub pto_restart: bool,
    /// The TSval of the first retransmission of the current recovery (Linux's `retrans_stamp`): an ACK echoing
    /// an older one was sent for an original segment, so the loss was spurious (RFC 3522, Eifel).
    pub retrans_stamp: Option<u32>,
    /// The bytes the current recovery resent that no DSACK has reported yet (what Linux counts in
    /// `undo_retrans`): once every one is, every retransmission was spurious.
    pub resent: ResentBytes,

    /// An ACK must go out now.
    pub ack_now: bool,
    /// A zero-window or keepalive probe must go out now: a segment one byte behind SND.UNA, which the
    /// peer cannot accept and so must answer (Linux's `tcp_xmit_probe_skb`).
    pub probe_now: bool,
    /// Full-sized segments received since the last ACK (RFC 9293 section 3.8.6.3: ACK every second one).
    pub unacked_segments: u32,
    /// Segments still to be acknowledged at once (quick-ack mode at the start of a connection).
    pub quick_acks: u16,
    /// Bytes by which autotuning grew this connection's buffers, charged to the stack-wide budget
    /// (`TcpConfig::autotune_total_max`) until the connection ends.
    pub autotuned: u32,
    pub last_recv: Instant,

    /// The pending error (SO_ERROR).
    pub error: Option<Errno>,
    /// The last soft ICMP error, reported if the connection then times out (RFC 1122 section 4.2.3.9).
    pub soft_error: Option<Errno>,
    pub opts: ConnOptions,
    /// The application shut down its receiving side.
    pub shut_rd: bool,
}

/// What became of a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still alive.
    Alive,
    /// It just became ESTABLISHED (a connect completed, or a passive open finished).
    Established,
    /// It entered TIME_WAIT: the stack replaces it with a light entry.
    TimeWait,
    /// It is gone: with `Some(errno)` for the application (reset, refused, timed out), `None` for a clean end.
    Gone(Option<Errno>),
    /// It is gone and a RST must be sent (an abort).
    Abort(Option<Errno>),
}

impl Connection {
    /// Milliseconds of our timestamp clock at `now`.
    pub fn ts_now(&self, now: Instant) -> u32 {
        let offset = self.negotiated.ts.map_or(0, |t| t.offset);
        (now.as_millis() as u32).wrapping_add(offset)
    }

    /// Data bytes queued and not yet sent.
    pub fn unsent(&self) -> usize {
        let sent_data = self.snd_nxt.since(self.snd_una).min(self.tx.len());
        self.tx.len() - sent_data
    }

    /// Sequence space in flight (data, and our FIN if sent).
    pub fn in_flight(&self) -> usize {
        self.snd_nxt.since(self.snd_una)
    }

    /// RFC 6675 section 2's *pipe*: the data we estimate to be in the network — what is outstanding, less what
    /// the peer SACKed, plus what recovery retransmitted.
    pub fn pipe(&self) -> usize {
        let sacked = self.sacked.sacked_between(self.snd_una, self.snd_nxt);
        let gone = sacked + self.rack.lost_bytes();
        (self.in_flight() + self.recovery_rexmit_bytes).saturating_sub(gone)
    }

    /// Bytes that may be sent now: within the congestion window measured against the pipe (during SACK
    /// recovery the window is ssthresh, RFC 6675 section 5; NewReno's inflation serves recovery without SACK),
    /// and within the peer's window measured against everything outstanding (flow control, RFC 9293 3.8.6).
    pub fn usable_window(&self) -> usize {
        let by_flow = self.snd_wnd.saturating_sub(self.in_flight());
        self.congestion_room().min(by_flow)
    }

    /// What the congestion window leaves room for: cwnd less the pipe (during SACK recovery the window PRR
    /// set at the last ACK, which brings the pipe down to ssthresh by the end of recovery).
    pub fn congestion_room(&self) -> usize {
        let cwnd = if self.in_sack_recovery() { self.prr.cwnd() } else { self.cc.cwnd() };
        cwnd.saturating_sub(self.pipe())
    }

    /// Fast recovery driven by SACK and RACK, where PRR (RFC 6937) paces sending; without SACK, NewReno's
    /// window inflation does.
    pub fn in_sack_recovery(&self) -> bool {
        self.cc.in_recovery() && (!self.sacked.is_empty() || self.rack.lost_bytes() > 0)
    }

    /// The window we can offer now: free receive space, no more than the slowly growing clamp, rounded down to
    /// what the scale can express.
    pub fn free_window(&self) -> usize {
        let scale = self.negotiated.rcv_wscale;
        let max = (u16::MAX as usize) << scale;
        (self.rx.free().min(self.rcv_ssthresh).min(max) >> scale) << scale
    }

    /// Linux's receive-window growth (tcp_grow_window): the offered window starts at the SYN's and grows by two
    /// segments for each segment received, so a peer is not invited to burst a whole buffer at a new
    /// connection, and no bare window update follows the handshake.
    pub fn grow_receive_window(&mut self) {
        let step = 2 * usize::from(self.negotiated.our_mss);
        self.rcv_ssthresh = (self.rcv_ssthresh + step).min(self.rx.capacity());
    }

    /// RCV.WND as the peer knows it: what is left of the window we last advertised, past RCV.NXT.
    pub fn receive_window(&self) -> usize {
        self.rcv_adv.distance(self.rcv_nxt).max(0) as usize
    }

    /// The window to advertise: the free space, but an edge that would move right by less than
    /// min(buffer / 2, MSS) is held back (receiver SWS avoidance, RFC 9293 section 3.8.6.2.2), and the right
    /// edge never moves left (RFC 9293 section 3.8.6.2.2, "shrinking the window" is discouraged).
    pub fn window_to_advertise(&self) -> usize {
        let free = self.free_window();
        let current = self.receive_window();
        let threshold = (self.rx.capacity() / 2).min(self.negotiated.send_mss.max(536));
        if free >= current + threshold || free <= current {
            free.max(current)
        } else {
            current
        }
    }

    /// True when the window has opened enough since the last advertisement that the peer should hear of it
    /// now rather than with the next ACK: as Linux's tcp_cleanup_rbuf decides after the application reads,
    /// when what is left of the advertised window is at most half the buffer and the window we could offer
    /// is at least twice that (a closed window that reopens always qualifies).
    pub fn window_update_due(&self) -> bool {
        let remaining = self.receive_window();
        let offer = self.window_to_advertise(); // receiver SWS avoidance holds slivers back
        offer > remaining && 2 * remaining <= self.rx.capacity() && offer >= 2 * remaining
    }

    /// The earliest pending timer. Asked after every segment, so taken without branches: an unset timer
    /// counts as the end of time (`u64::MAX` nanoseconds, 584 years, which no deadline reaches).
    pub fn next_deadline(&self) -> Option<Instant> {
        const NEVER: u64 = u64::MAX;
        let at = |t: Option<Instant>| t.map_or(NEVER, Instant::as_nanos);
        let earliest = [self.persist_at, self.delack_at, self.keepalive_at, self.linger_at, self.rack_at, self.pto_at]
            .into_iter()
            .fold(at(self.rto_at), |min, t| min.min(at(t)));
        (earliest != NEVER).then_some(Instant::from_nanos(earliest))
    }

    /// (Re)arms the retransmission timer from now (RFC 6298 section 5.1 and 5.3).
    pub fn arm_rto(&mut self, now: Instant) {
        self.rto_at = Some(self.rtt.rto_after(now));
    }

    /// The keepalive deadline counted from the last segment received.
    pub fn arm_keepalive(&mut self) {
        self.keepalive_at = self.opts.keepalive.then(|| self.last_recv + self.opts.keep_idle);
    }

    /// Records an error for the application and whether it ends the connection.
    pub fn fail(&mut self, errno: Errno) {
        self.error = Some(errno);
        self.state = State::Closed;
    }

    /// Runs the timers due at `now` (RFC 6298 section 5 for retransmission, RFC 9293 section 3.8.6.1 for
    /// zero-window probes, RFC 1122 section 4.2.3.6 for keepalive, RFC 9293 section 3.8.6.3 for delayed ACKs).
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    pub fn on_timer(&mut self, now: Instant, config: &TcpConfig, counters: &mut TcpCounters) -> Outcome {
        if self.rack_at.is_some_and(|t| t <= now) {
            self.rack_at = None;
            self.detect_losses(now, counters);
        }
        if self.pto_at.is_some_and(|t| t <= now) {
            self.pto_at = None;
            self.tlp_probe_now = true;
        }
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
            counters.delayed_acks += 1;
        }
        if self.linger_at.is_some_and(|t| t <= now) {
            self.linger_at = None;
            if self.state == State::FinWait2 && self.fd.is_none() {
                // Linux silently forgets an orphan that waited too long for the peer's FIN.
                return Outcome::Gone(None);
            }
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            if let Some(outcome) = self.on_retransmission_timeout(now, config, counters) {
                return outcome;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            // Probes the peer never answers end the connection like unanswered retransmissions (Linux's
            // tcp_probe_timer: tcp_retries2); an orphan gives up after its backoff reaches tcp_orphan_retries even
            // while the peer keeps answering with a zero window, or a closed window would hold it forever.
            let orphan_done = self.fd.is_none() && self.rtt.backoff_count() >= ORPHAN_RETRIES;
            if self.probes >= config.retries2 || orphan_done {
                counters.aborts_on_timeout += 1;
                return Outcome::Abort(Some(Errno::ETIMEDOUT));
            }
            self.probes += 1;
            counters.window_probes += 1;
            self.probe_now = true;
            self.rtt.back_off();
            self.persist_at = Some(now + self.rtt.rto());
            return Outcome::Alive;
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            if self.probes >= self.opts.keep_count {
                counters.aborts_on_timeout += 1;
                return Outcome::Abort(Some(Errno::ETIMEDOUT));
            }
            self.probes += 1;
            counters.keepalive_probes += 1;
            self.probe_now = true;
            self.keepalive_at = Some(now + self.opts.keep_interval);
        }
        Outcome::Alive
    }

    /// RFC 6298 section 5.4 to 5.7: retransmit the earliest unacknowledged segment, back the timer off, and
    /// collapse the congestion window (RFC 5681 section 3.1). Gives up after the configured retries.
    fn on_retransmission_timeout(
        &mut self,
        now: Instant,
        config: &TcpConfig,
        counters: &mut TcpCounters,
    ) -> Option<Outcome> {
        let limit = match self.state {
            State::SynSent => config.syn_retries,
            State::SynReceived => config.synack_retries,
            _ => config.retries2,
        };
        if self.retries >= limit {
            // RFC 9293 section 3.10.8 and Linux's tcp_write_err: the connection is dropped without a RST (the
            // peer is presumably unreachable anyway); a soft ICMP error seen meanwhile names the cause.
            counters.aborts_on_timeout += 1;
            if matches!(self.state, State::SynSent | State::SynReceived) {
                counters.attempt_fails += 1;
            }
            return Some(Outcome::Gone(Some(self.soft_error.unwrap_or(Errno::ETIMEDOUT))));
        }
        if self.snd_una == self.snd_max && self.state.is_synchronized() {
            return None; // everything was acknowledged meanwhile
        }
        self.retries += 1;
        counters.timeouts += 1;
        self.recovery_rexmit_bytes = 0;
        if self.retries >= 2 {
            // RFC 2018 section 8: a receiver may discard SACKed data; after a second timeout, trust only ACKs.
            self.sacked.clear();
        }
        self.rtt.back_off();
        self.rtt_probe = None;
        // RACK-TLP: everything from SND.UNA goes again, so no mark or probe stands.
        self.rack.on_timeout();
        if self.retries >= 2 {
            self.rack.forget_sacks();
        }
        self.rack_at = None;
        self.pto_at = None;
        self.tlp_end = None;
        self.tlp_probe_now = false;
        let flight = self.snd_max.since(self.snd_una);
        if self.state.is_synchronized() {
            self.cc.on_timeout(flight, self.snd_max);
        }
        // Go back to SND.UNA: everything after it is resent as the window reopens.
        self.snd_nxt = self.snd_una;
        self.arm_rto(now);
        None
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle established connection costs its TCB (buffers are allocated on first use); keep it small so that
    /// 100,000 idle connections fit in a few hundred megabytes.
    #[test]
    fn the_tcb_stays_small() {
        let size = std::mem::size_of::<Connection>();
        println!("size_of::<Connection>() = {size} bytes");
        assert!(size <= 1024, "the TCB grew to {size} bytes");
    }
}
