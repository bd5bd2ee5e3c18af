//! Receive-buffer autotuning: "dynamic right-sizing" (Fisher et al., 2003), as Linux's
//! `tcp_rcv_space_adjust` does it.
//!
//! A fixed receive buffer caps a flow at one buffer per round trip: 256 KiB over a 50 ms path is 5 MB/s
//! however fast the link. So, once per round trip, the receiver counts the bytes the application read in
//! that round trip. When that count grew, the buffer is sized so that the window it offers covers twice the
//! count (a loss costs a round trip of data parked out of order) plus the sender's growth in the meantime
//! (slow start doubles a window each round trip, and the window offered now is used during the next one).
//! The buffer only grows; an application that sets `SO_RCVBUF` turns this off (Linux's `SOCK_RCVBUF_LOCK`).
//!
//! The round trip is the receiver's own estimate. A receiver that only acknowledges gets no samples from
//! its sender-side RTT estimator, so, as Linux's `tcp_rcv_rtt_measure_ts`, it times the timestamps the peer
//! echoes (RFC 7323 section 4): a data segment echoing TSval *t* was sent in answer to our segment sent at
//! *t*. Without timestamps the connection's smoothed RTT (the handshake's sample) stands in.

use super::seq::SeqNum;
use crate::time::{Duration, Instant};

/// The segments Linux's initial window holds (`TCP_INIT_CWND`): the first measurement's baseline.
const INITIAL_SEGMENTS: usize = 10;

/// The state of the measurement (Linux's `rcvq_space` and `rcv_rtt_est`).
#[derive(Debug, Clone, Copy)]
pub struct RcvAutotune {
    /// The receiver's round-trip estimate in microseconds, times 8 (a gain of 1/8 per sample needs no
    /// division); 0 until the first sample.
    rtt_us8: u32,
    /// The TSecr of the last sample: a value echoed again is the same measurement.
    last_tsecr: u32,
    /// Bytes the application read during the last measured round trip.
    space: u32,
    /// How far the application had read when this measurement began.
    mark: SeqNum,
    /// When it began: microseconds of the stack's clock, wrapping every 71 minutes.
    started_us: u32,
}

impl RcvAutotune {
    /// A measurement starting at `now` with the application having read up to `read_upto`. The baseline is
    /// what a sender's initial window brings in one round trip, or the whole window if that is smaller.
    pub fn new(now: Instant, read_upto: SeqNum, mss: usize, window: usize) -> Self {
        let space = (INITIAL_SEGMENTS * mss).min(window).min(u32::MAX as usize) as u32;
        RcvAutotune { rtt_us8: 0, last_tsecr: 0, space, mark: read_upto, started_us: micros(now) }
    }

    /// The receiver's round-trip estimate, if it has one.
    pub fn rtt(&self) -> Option<Duration> {
        (self.rtt_us8 > 0).then(|| Duration::from_micros(u64::from(self.rtt_us8 >> 3)))
    }

    /// A full-sized in-order data segment echoed `tsecr`, `elapsed_ms` ago on our timestamp clock. Linux
    /// counts an echo of the current tick as one tick: the clock's resolution is the floor.
    pub fn on_echo(&mut self, tsecr: u32, elapsed_ms: u32) {
        if tsecr == 0 || tsecr == self.last_tsecr || elapsed_ms >= 3_600_000 {
            return;
        }
        self.last_tsecr = tsecr;
        let sample = elapsed_ms.max(1).saturating_mul(1000);
        self.rtt_us8 = if self.rtt_us8 == 0 {
            sample.saturating_mul(8)
        } else {
            // rtt += (sample - rtt) / 8, in eighths (saturating: a peer controls what it echoes).
            (self.rtt_us8 - (self.rtt_us8 >> 3)).saturating_add(sample)
        };
    }

    /// Called as in-order data arrives, with how far the application has read now (RCV.NXT less the unread
    /// bytes). Once a round trip (`rtt`, when the receiver has no estimate of its own) has passed since the
    /// measurement began, ends it and starts the next; returns the buffer size the flow needs, if the
    /// application read more than during the round trip before.
    pub fn on_data(&mut self, now: Instant, read_upto: SeqNum, mss: usize, rtt: Duration) -> Option<usize> {
        let round_trip = self.rtt().unwrap_or(rtt);
        if round_trip.is_zero() {
            return None;
        }
        let now_us = micros(now);
        if u64::from(now_us.wrapping_sub(self.started_us)) < round_trip.as_micros() as u64 {
            return None;
        }
        let read = read_upto.since(self.mark);
        self.mark = read_upto;
        self.started_us = now_us;
        let before = self.space as usize;
        if read <= before {
            return None;
        }
        self.space = read.min(u32::MAX as usize) as u32;
        // Twice what was read, plus sixteen segments of cushion; then the growth seen in this round trip,
        // twice over (the window offered now is used during the next round trip).
        let window = read.saturating_mul(2).saturating_add(16 * mss);
        let growth = u128::from(window as u64) * u128::from((read - before) as u64) / u128::from(before.max(1) as u64);
        Some(window.saturating_add(usize::try_from(growth.saturating_mul(2)).unwrap_or(usize::MAX)))
    }
}

/// Microseconds of the stack's clock, truncated to 32 bits (intervals are taken with wrapping arithmetic).
fn micros(now: Instant) -> u32 {
    (now.as_nanos() / 1000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1448;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn nothing_is_decided_before_a_round_trip_has_passed() {
        let mut t = RcvAutotune::new(at_ms(0), SeqNum(0), MSS, 65_535);
        assert_eq!(t.on_data(at_ms(5), SeqNum(1_000_000), MSS, Duration::from_millis(10)), None);
    }

    #[test]
    fn an_application_reading_more_each_round_trip_gets_a_buffer_for_twice_that_and_the_growth() {
        let mut t = RcvAutotune::new(at_ms(0), SeqNum(0), MSS, 65_535);
        // 14,480 bytes was the baseline; 100,000 were read in the first 10 ms round trip.
        let want = t.on_data(at_ms(10), SeqNum(100_000), MSS, Duration::from_millis(10)).expect("grows");
        let window = 2 * 100_000 + 16 * MSS;
        let growth = window * (100_000 - 10 * MSS) / (10 * MSS);
        assert_eq!(want, window + 2 * growth);
        // The same amount in the next round trip: no growth asked for.
        assert_eq!(t.on_data(at_ms(20), SeqNum(200_000), MSS, Duration::from_millis(10)), None);
    }

    #[test]
    fn an_application_that_does_not_read_asks_for_nothing() {
        let mut t = RcvAutotune::new(at_ms(0), SeqNum(0), MSS, 65_535);
        for ms in (10..100).step_by(10) {
            assert_eq!(t.on_data(at_ms(ms), SeqNum(5_000), MSS, Duration::from_millis(10)), None);
        }
    }

    #[test]
    fn the_receivers_own_round_trip_comes_from_echoed_timestamps() {
        let mut t = RcvAutotune::new(at_ms(0), SeqNum(0), MSS, 65_535);
        assert_eq!(t.rtt(), None);
        t.on_echo(500, 40);
        assert_eq!(t.rtt(), Some(Duration::from_millis(40)));
        t.on_echo(500, 90); // the same echo again: not a new sample
        assert_eq!(t.rtt(), Some(Duration::from_millis(40)));
        t.on_echo(501, 0); // an echo of the current tick counts as one tick
        assert_eq!(t.rtt(), Some(Duration::from_micros(40_000 - 5_000 + 125)));
        t.on_echo(502, u32::MAX); // from the future: no sample
        assert_eq!(t.rtt(), Some(Duration::from_micros(35_125)));
        // Its estimate, not the fallback, sets the measurement's length.
        assert_eq!(t.on_data(at_ms(20), SeqNum(1_000_000), MSS, Duration::from_millis(1)), None);
        assert!(t.on_data(at_ms(36), SeqNum(1_000_000), MSS, Duration::from_millis(1)).is_some());
    }

    #[test]
    fn echoes_from_an_hour_ago_do_not_overflow_the_estimate() {
        let mut t = RcvAutotune::new(at_ms(0), SeqNum(0), MSS, 65_535);
        for tsecr in 1..100 {
            t.on_echo(tsecr, 3_599_999);
        }
        assert!(t.rtt().is_some_and(|rtt| rtt >= Duration::from_secs(500)), "{:?}", t.rtt());
    }

    #[test]
    fn the_clock_wrapping_does_not_stop_measuring() {
        let start = Instant::from_nanos((u64::from(u32::MAX) - 500) * 1000);
        let mut t = RcvAutotune::new(start, SeqNum(0), MSS, 65_535);
        let later = Instant::from_nanos(start.as_nanos() + 20_000_000);
        assert!(t.on_data(later, SeqNum(500_000), MSS, Duration::from_millis(10)).is_some());
    }
}
