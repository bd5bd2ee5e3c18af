//! NewReno's window arithmetic (RFC 5681 section 3.1): one segment per round trip in congestion avoidance, and
//! half the flight on a loss. Its loss recovery (RFC 6582) is the shared one in `mod.rs`.

/// Reno's own state: the acknowledged bytes not yet turned into growth.
#[derive(Debug, Clone, Default)]
pub struct Reno {
    ca_acked: usize,
}

impl Reno {
    /// Congestion avoidance: about one MSS per window of acknowledged data (RFC 5681 equation 3, counted in
    /// bytes as RFC 3465 section 2.1 suggests). Returns the bytes to add to `cwnd`.
    pub(super) fn avoidance_growth(&mut self, cwnd: usize, mss: usize, acked: usize) -> usize {
        self.ca_acked = self.ca_acked.saturating_add(acked);
        if self.ca_acked >= cwnd {
            self.ca_acked -= cwnd;
            mss
        } else {
            0
        }
    }

    /// RFC 5681 equation 4: ssthresh = max(FlightSize / 2, 2*SMSS) after a loss.
    pub(super) fn on_loss(&mut self, flight: usize, mss: usize) -> usize {
        self.ca_acked = 0;
        (flight / 2).max(mss.saturating_mul(2))
    }

    /// A timeout sets ssthresh as a loss does and forgets the partial growth.
    pub(super) fn on_timeout(&mut self, flight: usize, mss: usize) -> usize {
        self.ca_acked = 0;
        self.on_loss(flight, mss)
    }
}
