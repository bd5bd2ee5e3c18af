//! Proportional Rate Reduction (RFC 6937): how much a sender in SACK-based fast recovery may send as each
//! ACK arrives.
//!
//! Recovery has to bring the data in flight down from where it was at the loss to ssthresh (the reduced
//! window). RFC 6675 alone holds the window at ssthresh and compares it with the pipe: while the pipe is
//! still above ssthresh nothing at all may be sent, so the ACK clock stalls for half a round trip or more, and
//! when many segments are lost the pipe falls far below ssthresh and the difference goes out in one burst.
//! PRR spreads the reduction over the round trip instead:
//!
//! - while the pipe is above ssthresh, each ACK lets out data in proportion to what it reports delivered,
//!   `ssthresh / RecoverFS` of it, so that the reduction ends at ssthresh just as recovery does;
//! - once the pipe is at or below ssthresh, the slow-start reduction bound (PRR-SSRB, section 3.1) lets the
//!   pipe grow back towards ssthresh by at most what was delivered plus one segment per ACK, never in a
//!   burst.
//!
//! Like Linux (`tcp_cwnd_reduction`), the result is applied as a congestion window, `pipe + sndcnt`, fixed
//! until the next ACK: bytes RACK declares lost in between leave the pipe and may be resent within it.

/// PRR's state for one recovery, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prr {
    /// RecoverFS: the data in flight when recovery began.
    recover_fs: u32,
    /// prr_delivered: data the receiver reported delivered (cumulatively or by SACK) since then.
    delivered: u32,
    /// prr_out: data sent since then, new or resent.
    out: u32,
    /// The window until the next ACK: the pipe at the last ACK plus what PRR allowed then.
    cwnd: u32,
}

fn bytes(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Prr {
    /// Recovery begins with `flight` bytes outstanding (RFC 6937 section 3: RecoverFS = snd.nxt - snd.una).
    pub fn start(&mut self, flight: usize) {
        *self = Prr { recover_fs: bytes(flight).max(1), ..Prr::default() };
    }

    /// An ACK in recovery reported `delivered_now` bytes delivered (the advance of SND.UNA plus the change in
    /// SACKed bytes), leaving `pipe` in flight. Sets the window until the next ACK (RFC 6937 section 3.1).
    pub fn on_ack(&mut self, delivered_now: usize, pipe: usize, ssthresh: usize, mss: usize) {
        let delivered_now = u64::from(bytes(delivered_now));
        self.delivered = self.delivered.saturating_add(delivered_now as u32);
        let (delivered, out) = (u64::from(self.delivered), u64::from(self.out));
        let (pipe, ssthresh, mss) = (pipe as u64, ssthresh as u64, mss as u64);
        let mut sndcnt = if pipe > ssthresh {
            // Proportional: sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out.
            (delivered * ssthresh).div_ceil(u64::from(self.recover_fs)).saturating_sub(out)
        } else {
            // PRR-SSRB: sndcnt = MIN(ssthresh - pipe, MAX(prr_delivered - prr_out, DeliveredData) + MSS).
            let limit = delivered.saturating_sub(out).max(delivered_now) + mss;
            (ssthresh - pipe).min(limit)
        };
        // The first ACK of recovery always lets out one segment: the fast retransmit (as Linux forces it).
        if self.out == 0 {
            sndcnt = sndcnt.max(mss);
        }
        self.cwnd = u32::try_from(pipe + sndcnt).unwrap_or(u32::MAX);
    }

    /// `len` bytes were sent (new data or a retransmission) during recovery.
    pub fn on_sent(&mut self, len: usize) {
        self.out = self.out.saturating_add(bytes(len));
    }

    /// The congestion window during recovery, as the last ACK set it.
    pub fn cwnd(&self) -> usize {
        self.cwnd as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn above_ssthresh_the_rate_is_proportional() {
        // 20 segments in flight, 2 lost; CUBIC's ssthresh is 0.7 of the window: 14 segments.
        let mut prr = Prr::default();
        prr.start(20 * MSS);
        // The first ACK (one SACKed segment) lets the fast retransmit out even though the pipe (17) > 14.
        prr.on_ack(MSS, 17 * MSS, 14 * MSS, MSS);
        assert_eq!(prr.cwnd(), 18 * MSS);
        prr.on_sent(MSS);
        // Each later SACK of one segment lets out 0.7 of a segment: none, then one, ...
        let mut sent = MSS;
        let mut pipe = 17 * MSS;
        for _ in 0..10 {
            pipe -= MSS;
            prr.on_ack(MSS, pipe, 14 * MSS, MSS);
            let room = prr.cwnd() - pipe;
            let n = room / MSS * MSS;
            prr.on_sent(n);
            sent += n;
            pipe += n;
        }
        // Proportionally while the pipe is above 14 (every other ACK sends), then one for one at 14.
        assert_eq!(sent, 8 * MSS);
        assert_eq!(pipe, 14 * MSS, "the pipe came down to ssthresh gradually, and stays there");
    }

    #[test]
    fn below_ssthresh_the_pipe_grows_back_by_slow_start_not_a_burst() {
        // Heavy loss: of 20 in flight only 4 remain in the pipe after the first ACK; ssthresh is 14.
        let mut prr = Prr::default();
        prr.start(20 * MSS);
        prr.on_ack(2 * MSS, 4 * MSS, 14 * MSS, MSS);
        // RFC 6675 alone would send 10 segments at once; SSRB allows what was delivered plus one segment.
        assert_eq!(prr.cwnd(), 4 * MSS + 3 * MSS);
        prr.on_sent(3 * MSS);
        prr.on_ack(MSS, 6 * MSS, 14 * MSS, MSS);
        assert_eq!(prr.cwnd(), 6 * MSS + 2 * MSS, "MAX(3 - 3, 1) + 1 segments");
    }

    #[test]
    fn never_past_ssthresh_and_no_overflow() {
        let mut prr = Prr::default();
        prr.start(0);
        prr.on_ack(usize::MAX, 13 * MSS, 14 * MSS, MSS);
        assert_eq!(prr.cwnd(), 14 * MSS, "SSRB stops at ssthresh");
        prr.on_sent(usize::MAX);
        prr.on_ack(usize::MAX, usize::MAX / 2, 14 * MSS, MSS);
        assert!(prr.cwnd() >= 14 * MSS);
    }
}
