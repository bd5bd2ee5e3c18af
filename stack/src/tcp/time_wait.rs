//! TIME-WAIT as a light entry (RFC 9293 section 3.6.1): after an active close, the four-tuple is remembered
//! for 2*MSL with only what is needed to re-acknowledge a retransmitted FIN and to judge a new SYN — no
//! buffers, no TCB.

use super::connection::Timestamps;
use super::seq::SeqNum;
use crate::time::Instant;
use crate::timer::TimerHandle;
use crate::wire::tcp::{TcpFlags, TcpHeader};
use std::net::SocketAddrV4;

/// A connection in TIME-WAIT.
#[derive(Debug)]
pub struct TimeWait {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub snd_nxt: SeqNum,
    pub rcv_nxt: SeqNum,
    pub rcv_wscale: u8,
    pub window: u16,
    pub ts: Option<Timestamps>,
    pub deadline: Instant,
    pub timer: Option<TimerHandle>,
}

/// What to do with a segment that reached a TIME-WAIT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWaitVerdict {
    /// Nothing (ignore it).
    Ignore,
    /// Send an ACK; with `restart` the 2*MSL timer starts again (a retransmitted FIN).
    Ack { restart: bool },
    /// A new SYN that may open a new incarnation: the entry is dropped and the SYN goes to the listener.
    Reopen,
}

impl TimeWait {
    /// RFC 9293 section 3.10.7.4 for TIME-WAIT, with RFC 1337 (a RST is ignored: TIME-WAIT assassination is
    /// prevented) and RFC 6191 / RFC 9293 section 3.6.1 (a SYN whose sequence number — or, with
    /// timestamps, whose timestamp — is beyond the old connection's may reuse the four-tuple).
    pub fn judge(&self, seg: &TcpHeader, payload_len: usize, now: Instant) -> TimeWaitVerdict {
        let flags = seg.flags;
        if flags.contains(TcpFlags::RST) {
            return TimeWaitVerdict::Ignore;
        }
        if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            let newer = match (self.ts, seg.options.timestamps) {
                (Some(ts), Some((tsval, _))) => (tsval.wrapping_sub(ts.recent) as i32) > 0,
                _ => seg.seq.gt(self.rcv_nxt),
            };
            return if newer { TimeWaitVerdict::Reopen } else { TimeWaitVerdict::Ack { restart: false } };
        }
        if flags.contains(TcpFlags::FIN) && seg.seq + payload_len + 1 == self.rcv_nxt {
            // The peer did not hear our last ACK and sent its FIN again: acknowledge, restart 2*MSL.
            return TimeWaitVerdict::Ack { restart: true };
        }
        let _ = now;
        if payload_len > 0 || flags.contains(TcpFlags::FIN) {
            return TimeWaitVerdict::Ack { restart: false };
        }
        TimeWaitVerdict::Ignore
    }
}
