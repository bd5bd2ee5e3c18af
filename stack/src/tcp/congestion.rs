//! Congestion control: slow start and congestion avoidance (RFC 5681 section 3.1), fast retransmit and fast
//! recovery with NewReno's handling of partial acknowledgments (RFC 5681 section 3.2, RFC 6582), and the
//! initial window of RFC 6928.
//!
//! The algorithm only does arithmetic on windows; the sender decides what to (re)send. It is told about
//! acknowledgments, duplicate acknowledgments and timeouts, and answers with the windows to obey.

use super::seq::SeqNum;

/// What the sender should do after a duplicate acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DupAckAction {
    /// Nothing yet (fewer than three duplicates; or already recovering, with the window inflated).
    None,
    /// Third duplicate: retransmit the first unacknowledged segment now (RFC 5681 section 3.2 step 4).
    FastRetransmit,
}

/// What the sender should do after an acknowledgment that advanced SND.UNA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    None,
    /// A partial acknowledgment during recovery: retransmit the next unacknowledged segment now
    /// (RFC 6582 section 3.2 step 3).
    RetransmitNext,
}

/// NewReno state for one connection.
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    dup_acks: u32,
    /// `recover` of RFC 6582: the highest sequence number sent when recovery began; `Some` while recovering.
    recover: Option<SeqNum>,
    /// Bytes acknowledged in congestion avoidance not yet turned into window growth.
    ca_acked: usize,
    /// `recover` as RFC 6582 keeps it after recovery ends, so that duplicate acknowledgments for data sent
    /// before the last loss do not start a second recovery ("the Fast Retransmit ... MUST NOT be entered").
    last_recover: Option<SeqNum>,
}

/// RFC 5681 section 3.2: the number of duplicate acknowledgments that signals a loss.
pub const DUP_THRESHOLD: u32 = 3;

impl NewReno {
    /// A connection's controller with `mss`-byte segments and an initial window of `initial_segments`
    /// (RFC 6928: 10; RFC 5681: 2 to 4 depending on the MSS).
    pub fn new(mss: usize, initial_segments: usize) -> Self {
        let mss = mss.max(1);
        // RFC 6928 section 2: IW = min(10*MSS, max(2*MSS, 14600)) for IW10; fewer segments are taken as given.
        let iw =
            if initial_segments >= 10 { (10 * mss).min((2 * mss).max(14_600)) } else { initial_segments.max(1) * mss };
        NewReno { mss, cwnd: iw, ssthresh: usize::MAX, dup_acks: 0, recover: None, ca_acked: 0, last_recover: None }
    }

    pub fn cwnd(&self) -> usize {
        self.cwnd
    }

    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    pub fn mss(&self) -> usize {
        self.mss
    }

    /// A smaller MSS learned later (path MTU); windows keep their byte values.
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
    }

    pub fn in_recovery(&self) -> bool {
        self.recover.is_some()
    }

    pub fn dup_acks(&self) -> u32 {
        self.dup_acks
    }

    /// An acknowledgment covered `acked` new bytes; `ack` is the new SND.UNA and `flight` the bytes that were
    /// outstanding before it. `cwnd_limited` says whether the window was what limited sending: RFC 7661 (and
    /// Linux's `tcp_is_cwnd_limited`) grow the window only then, so that an application-limited or
    /// receive-window-limited flow does not build a window it never tested.
    pub fn on_ack(&mut self, ack: SeqNum, acked: usize, flight: usize, cwnd_limited: bool) -> AckAction {
        self.dup_acks = 0;
        if let Some(recover) = self.recover {
            if ack.gt(recover) {
                // RFC 6582 section 3.2 step 3, full acknowledgment: deflate to min(ssthresh, FlightSize + MSS)
                // and leave recovery.
                let remaining = flight.saturating_sub(acked);
                self.cwnd = self.ssthresh.min(remaining + self.mss).max(self.mss);
                self.recover = None;
                return AckAction::None;
            }
            // Partial acknowledgment: deflate by the amount acknowledged, add back one MSS if at least one
            // MSS was acknowledged, and retransmit the next hole.
            self.cwnd = self.cwnd.saturating_sub(acked);
            if acked >= self.mss {
                self.cwnd += self.mss;
            }
            self.cwnd = self.cwnd.max(self.mss);
            return AckAction::RetransmitNext;
        }
        // Linux counts a slow-start flow as limited while it uses more than half the window.
        let limited = cwnd_limited || (self.cwnd < self.ssthresh && 2 * flight >= self.cwnd);
        if !limited {
            return AckAction::None;
        }
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 section 3.1, equation 2) with appropriate byte counting (RFC 3465, L = 2).
            self.cwnd += acked.min(2 * self.mss);
        } else {
            // Congestion avoidance: about one MSS per window of acknowledged data (RFC 5681 equation 3,
            // counted in bytes as RFC 3465 section 2.1 suggests).
            self.ca_acked += acked;
            if self.ca_acked >= self.cwnd {
                self.ca_acked -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
        AckAction::None
    }

    /// A duplicate acknowledgment (RFC 5681 section 2's definition, checked by the caller). `flight` is the
    /// data outstanding, `snd_max` the highest sequence number sent so far.
    pub fn on_dup_ack(&mut self, flight: usize, snd_max: SeqNum, snd_una: SeqNum) -> DupAckAction {
        self.dup_acks += 1;
        if self.recover.is_some() {
            // RFC 5681 section 3.2 step 5: each further duplicate means a segment left the network.
            self.cwnd += self.mss;
            return DupAckAction::None;
        }
        if self.dup_acks < DUP_THRESHOLD {
            return DupAckAction::None;
        }
        // RFC 6582 section 3.2 step 2: only start a new recovery if this loss is not from the previous window
        // (the ACK covers more than `recover`); the caller resets `recover` tracking through `last_recover`.
        if self.last_recover.is_some_and(|r| !snd_una.gt(r)) {
            return DupAckAction::None;
        }
        // RFC 5681 equation 4 and step 4: halve, then inflate by the three segments that left the network.
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh + (DUP_THRESHOLD as usize) * self.mss;
        self.recover = Some(snd_max);
        self.last_recover = Some(snd_max);
        DupAckAction::FastRetransmit
    }

    /// The retransmission timer expired (RFC 5681 section 3.1 equation 4 and "Loss Window").
    pub fn on_timeout(&mut self, flight: usize, snd_max: SeqNum) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.dup_acks = 0;
        self.ca_acked = 0;
        // RFC 6582 section 3.2 step 4: after a timeout, recover = highest sequence number transmitted.
        self.recover = None;
        self.last_recover = Some(snd_max);
    }

    /// RFC 5681 section 4.1 (restart after idle): an idle connection starts again from the restart window.
    pub fn on_idle_restart(&mut self, initial_segments: usize) {
        let rw = NewReno::new(self.mss, initial_segments).cwnd;
        self.cwnd = self.cwnd.min(rw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn initial_window_follows_rfc6928() {
        assert_eq!(NewReno::new(1460, 10).cwnd(), 14_600);
        assert_eq!(NewReno::new(536, 10).cwnd(), 5_360);
        assert_eq!(NewReno::new(9000, 10).cwnd(), 18_000, "max(2*MSS, 14600) for jumbo segments");
        assert_eq!(NewReno::new(1000, 2).cwnd(), 2_000);
    }

    #[test]
    fn slow_start_then_congestion_avoidance() {
        let mut cc = NewReno::new(MSS, 2);
        cc.on_ack(SeqNum(1000), MSS, 2 * MSS, true);
        assert_eq!(cc.cwnd(), 3 * MSS, "slow start: one MSS per MSS acknowledged");
        cc.ssthresh = 3 * MSS;
        for i in 0..3 {
            cc.on_ack(SeqNum(2000 + i * 1000), MSS, 3 * MSS, true);
        }
        assert_eq!(cc.cwnd(), 4 * MSS, "avoidance: one MSS per window");
    }

    #[test]
    fn three_dup_acks_halve_and_recover() {
        let mut cc = NewReno::new(MSS, 10);
        let (una, max) = (SeqNum(0), SeqNum(10 * MSS as u32));
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::None);
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::None);
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::FastRetransmit);
        assert_eq!(cc.ssthresh(), 5 * MSS);
        assert_eq!(cc.cwnd(), 8 * MSS);
        cc.on_dup_ack(10 * MSS, max, una);
        assert_eq!(cc.cwnd(), 9 * MSS, "inflated by further duplicates");
        assert_eq!(cc.on_ack(SeqNum(2000), 2 * MSS, 10 * MSS, true), AckAction::RetransmitNext, "partial ack");
        assert!(cc.in_recovery());
        assert_eq!(cc.on_ack(SeqNum(10_001), 8 * MSS, 8 * MSS, true), AckAction::None, "full ack");
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), MSS.max(cc.ssthresh().min(MSS)), "deflated to min(ssthresh, flight + MSS)");
    }

    #[test]
    fn no_second_recovery_for_the_same_window() {
        let mut cc = NewReno::new(MSS, 10);
        let max = SeqNum(10_000);
        for _ in 0..3 {
            cc.on_dup_ack(10 * MSS, max, SeqNum(0));
        }
        cc.on_ack(SeqNum(10_001), 10 * MSS, 10 * MSS, true);
        for _ in 0..3 {
            assert_eq!(cc.on_dup_ack(MSS, max, SeqNum(5_000)), DupAckAction::None);
        }
    }

    #[test]
    fn an_application_limited_flow_does_not_grow_the_window() {
        let mut cc = NewReno::new(MSS, 10);
        let before = cc.cwnd();
        // Slow start with one segment in flight out of ten allowed: the application is the limit.
        cc.on_ack(SeqNum(1000), MSS, MSS, false);
        assert_eq!(cc.cwnd(), before, "RFC 7661: not limited by the window, so no growth");
        cc.on_ack(SeqNum(2000), MSS, 10 * MSS, false);
        assert!(cc.cwnd() > before, "more than half the window in flight counts as limited in slow start");
    }

    #[test]
    fn timeout_collapses_to_one_segment() {
        let mut cc = NewReno::new(MSS, 10);
        cc.on_timeout(8 * MSS, SeqNum(8000));
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 4 * MSS));
        cc.on_timeout(MSS, SeqNum(8000));
        assert_eq!(cc.ssthresh(), 2 * MSS, "never below two segments");
    }
}
