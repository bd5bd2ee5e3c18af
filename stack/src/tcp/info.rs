//! What a connection's sender knows, in one snapshot: Linux's `struct tcp_info` (`getsockopt(TCP_INFO)`,
//! `ss -i`), for watching a transfer from outside — the window, the round-trip estimates, what is in
//! flight, SACKed and lost, and how much reordering RACK allows for.
//!
//! ustack's units, not Linux's: windows and queues in bytes where Linux counts segments, times as
//! [`Duration`]s.

use super::congestion::CongestionAlgorithm;
use super::connection::Connection;
use crate::time::Duration;

/// A connection's TCP state and estimates at one moment (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// The state as `ss` names it (`ESTAB`, `FIN-WAIT-1`, ...).
    pub state: &'static str,
    /// The sender's loss state, as Linux's `tcpi_ca_state` names it: `open`; `disorder` (SACKs show holes,
    /// nothing declared lost yet); `recovery` (fast recovery); `loss` (after a retransmission timeout).
    pub ca_state: &'static str,
    /// The congestion control algorithm (`cubic`, `reno`).
    pub congestion: &'static str,
    /// The largest segment this side sends (MSS, after options).
    pub send_mss: usize,
    /// The retransmission timeout now, back-off included (RFC 6298).
    pub rto: Duration,
    /// Retransmission timeouts in a row without an acknowledgment (Linux's `tcpi_retransmits`).
    pub timeouts: u32,
    /// SRTT and RTTVAR (RFC 6298); no SRTT before the first sample.
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    /// The smallest round trip RACK has seen (RFC 8985's min_RTT).
    pub min_rtt: Option<Duration>,
    /// The congestion window and slow-start threshold, in bytes; no threshold before the first loss.
    pub cwnd: usize,
    pub ssthresh: Option<usize>,
    /// Bytes sent and not cumulatively acknowledged (SND.MAX − SND.UNA).
    pub unacked: usize,
    /// Of those, bytes the peer reported by SACK, and bytes RACK declared lost and not yet resent.
    pub sacked: usize,
    pub lost: usize,
    /// The sender's estimate of bytes in the network (RFC 6675's pipe).
    pub pipe: usize,
    /// Whether RACK has seen the network reorder this connection's segments, and the reordering window it
    /// would wait now before declaring a segment lost (RFC 8985 section 6.2; see `rack.rs`).
    pub reordering_seen: bool,
    pub reo_wnd: Duration,
    /// The peer's receive window, and the window we last advertised that is still open.
    pub snd_wnd: usize,
    pub rcv_wnd: usize,
}

impl TcpInfo {
    /// A TCP socket without a connection (unbound, bound or listening) in `state`: nothing measured yet, the
    /// window and timeout a connection would start with (Linux reports such sockets too).
    pub fn unconnected(state: &'static str, congestion: CongestionAlgorithm, mss: usize, rto: Duration) -> Self {
        TcpInfo {
            state,
            ca_state: "open",
            congestion: congestion.name(),
            send_mss: mss,
            rto,
            timeouts: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            cwnd: 0,
            ssthresh: None,
            unacked: 0,
            sacked: 0,
            lost: 0,
            pipe: 0,
            reordering_seen: false,
            reo_wnd: Duration::ZERO,
            snd_wnd: 0,
            rcv_wnd: 0,
        }
    }
}

impl Connection {
    /// The connection's [`TcpInfo`].
    pub fn info(&self) -> TcpInfo {
        let ca_state = if self.retries > 0 {
            "loss"
        } else if self.cc.in_recovery() {
            "recovery"
        } else if !self.sacked.is_empty() || self.rack.lost_bytes() > 0 {
            "disorder"
        } else {
            "open"
        };
        let ssthresh = self.cc.ssthresh();
        TcpInfo {
            state: self.state.name(),
            ca_state,
            congestion: self.cc.algorithm().name(),
            send_mss: self.negotiated.send_mss,
            rto: self.rtt.rto(),
            timeouts: self.retries,
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            min_rtt: self.rack.min_rtt(),
            cwnd: self.cc.cwnd(),
            ssthresh: (ssthresh != usize::MAX).then_some(ssthresh),
            unacked: self.snd_max.since(self.snd_una),
            sacked: self.sacked.sacked_bytes(),
            lost: self.rack.lost_bytes(),
            pipe: self.pipe(),
            reordering_seen: self.rack.reordering_seen(),
            reo_wnd: self.rack.reo_wnd(&self.rtt, self.cc.in_recovery(), self.sacked_segments()),
            snd_wnd: self.snd_wnd,
            rcv_wnd: if self.rcv_nxt.lt(self.rcv_adv) { self.rcv_adv.since(self.rcv_nxt) } else { 0 },
        }
    }
}
