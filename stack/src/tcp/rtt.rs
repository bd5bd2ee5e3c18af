//! The retransmission timeout (RFC 6298).
//!
//! The estimator keeps a smoothed round-trip time (SRTT) and its mean deviation (RTTVAR), and from them the
//! retransmission timeout (RTO): long enough not to fire while an acknowledgment is merely late, short enough
//! to recover a lost segment quickly. When the timer does fire, the RTO is doubled for the next try
//! (exponential back-off, section 5.5) until a fresh measurement arrives.
//!
//! Which measurements count is the caller's job. Karn's algorithm (RFC 6298 section 3): "RTT samples MUST NOT
//! be made using segments that were retransmitted", because the acknowledgment cannot be matched to one
//! transmission, unless the timestamp option (RFC 7323 section 4) says which transmission it echoes. A caller
//! feeds [`RttEstimator::sample`] only unambiguous samples.

use crate::time::{Duration, Instant};

/// The initial RTO before any measurement: 1 second (RFC 6298 section 2.1; Linux's `TCP_TIMEOUT_INIT`).
pub const DEFAULT_INITIAL_RTO: Duration = Duration::from_secs(1);
/// The lower bound on the RTO. RFC 6298 section 2.4 says 1 second; like Linux (`TCP_RTO_MIN`) this stack uses
/// 200 ms, which section 4 permits in spirit ("experience has shown that finer clock granularities (<= 100
/// msec) perform somewhat better") and which today's networks have long shown to be safe.
pub const DEFAULT_MIN_RTO: Duration = Duration::from_millis(200);
/// The upper bound on the RTO: 120 seconds (Linux's `TCP_RTO_MAX`; RFC 6298 section 2.5 asks for at least 60).
pub const DEFAULT_MAX_RTO: Duration = Duration::from_secs(120);
/// The clock granularity G of RFC 6298 section 2: the RTO exceeds SRTT by at least one tick.
pub const GRANULARITY: Duration = Duration::from_millis(1);
/// K of RFC 6298 section 2.2: how many mean deviations the RTO allows above SRTT.
const K: u32 = 4;

/// An RFC 6298 retransmission-timeout estimator.
///
/// Its arithmetic is in whole nanoseconds (u64, saturating), not `Duration`: a sample arrives with nearly every
/// ACK, and `Duration`'s second-and-nanosecond pairs cost divisions on each step. The RTO is kept computed, as
/// timers read it far more often than samples change it. `u64::MAX` nanoseconds (584 years) stands for
/// "longer than anything", `Duration::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    /// SRTT, once `sampled`.
    srtt: u64,
    /// RTTVAR; zero until the first sample.
    rttvar: u64,
    /// The RTO before back-off, already within `[min_rto, max_rto]` once computed from samples.
    base_rto: u64,
    /// The current RTO: `base_rto` backed off and bounded (what [`RttEstimator::rto`] returns).
    rto: u64,
    min_rto: u64,
    max_rto: u64,
    /// How many times the timer has been backed off since the last sample.
    backoff: u32,
    /// There has been a sample.
    sampled: bool,
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds back to a `Duration`, the saturated value as `Duration::MAX`.
fn duration(nanos: u64) -> Duration {
    if nanos == u64::MAX {
        Duration::MAX
    } else {
        Duration::from_nanos(nanos)
    }
}

impl Default for RttEstimator {
    /// Linux's values: 1 s initially, within [200 ms, 120 s].
    fn default() -> Self {
        RttEstimator::new(DEFAULT_INITIAL_RTO, DEFAULT_MIN_RTO, DEFAULT_MAX_RTO)
    }
}

impl RttEstimator {
    /// An estimator with no samples yet, whose RTO is `initial_rto` (RFC 6298 section 2.1) and will stay within
    /// `[min_rto, max_rto]`. Should `min_rto` exceed `max_rto`, the maximum wins.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let mut e = RttEstimator {
            srtt: 0,
            rttvar: 0,
            base_rto: nanos(initial_rto),
            rto: 0,
            min_rto: nanos(min_rto),
            max_rto: nanos(max_rto),
            backoff: 0,
            sampled: false,
        };
        e.recompute_rto();
        e
    }

    /// Takes a round-trip measurement `rtt`, which must satisfy Karn's algorithm (see the module
    /// documentation), and recomputes the RTO. A valid sample also ends any back-off: the doubled RTO holds
    /// only "until an acknowledgment is received for a segment that was not retransmitted" (Karn and Partridge;
    /// RFC 6298 section 5 leaves the RTO to be recomputed from SRTT and RTTVAR).
    pub fn sample(&mut self, rtt: Duration) {
        self.sample_nanos(nanos(rtt));
    }

    /// [`RttEstimator::sample`] of `rtt` nanoseconds.
    pub fn sample_nanos(&mut self, rtt: u64) {
        if self.sampled {
            // RFC 6298 section 2.3, with alpha = 1/8 and beta = 1/4, RTTVAR first since it uses the old SRTT:
            //   RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|
            //   SRTT <- (1 - alpha) * SRTT + alpha * R'
            // Each product is taken as `x - x/n` or `x/n`, which cannot overflow.
            let deviation = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar - self.rttvar / 4).saturating_add(deviation / 4);
            self.srtt = (self.srtt - self.srtt / 8).saturating_add(rtt / 8);
        } else {
            // RFC 6298 section 2.2: "SRTT <- R, RTTVAR <- R/2".
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.sampled = true;
        }
        // RFC 6298 section 2.2/2.3: "RTO <- SRTT + max (G, K*RTTVAR)", then bounded (sections 2.4 and 2.5).
        let spread = self.rttvar.saturating_mul(u64::from(K)).max(nanos(GRANULARITY));
        self.base_rto = self.bounded(self.srtt.saturating_add(spread));
        self.backoff = 0;
        self.recompute_rto();
    }

    /// The current RTO: the computed value doubled once per back-off, never above the maximum (RFC 6298
    /// section 5.5: "The maximum value discussed in (2.5) above may be used to provide an upper bound to this
    /// doubling operation").
    pub fn rto(&self) -> Duration {
        duration(self.rto)
    }

    /// When a timer started at `start` with the current RTO fires.
    pub fn rto_after(&self, start: Instant) -> Instant {
        start.plus_nanos(self.rto)
    }

    /// Whether more than an RTO passed between `since` and `now`.
    pub fn rto_elapsed(&self, since: Instant, now: Instant) -> bool {
        now.nanos_since(since) > self.rto
    }

    fn recompute_rto(&mut self) {
        let backed_off = match 1u64.checked_shl(self.backoff) {
            Some(factor) => self.base_rto.saturating_mul(factor),
            None => u64::MAX,
        };
        self.rto = self.bounded(backed_off);
    }

    /// Doubles the RTO after the retransmission timer expires: "The host MUST set RTO <- RTO * 2 ('back off
    /// the timer')" (RFC 6298 section 5.5).
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
        self.recompute_rto();
    }

    /// Returns to the un-backed-off RTO. [`RttEstimator::sample`] does this itself; a caller may also do it
    /// when it learns by other means that the path works again.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
        self.recompute_rto();
    }

    /// SRTT, once there has been a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.sampled.then(|| duration(self.srtt))
    }

    /// SRTT in nanoseconds, once there has been a sample.
    pub fn srtt_nanos(&self) -> Option<u64> {
        self.sampled.then_some(self.srtt)
    }

    /// SRTT + 4·RTTVAR, once there has been a sample: the longest a round trip is expected to take (the RTO of
    /// RFC 6298 section 2.3 before its floor and back-off).
    pub fn longest_expected(&self) -> Option<Duration> {
        let spread = self.rttvar.saturating_mul(u64::from(K));
        self.sampled.then(|| duration(self.srtt.saturating_add(spread)))
    }

    /// RTTVAR; zero before the first sample.
    pub fn rttvar(&self) -> Duration {
        duration(self.rttvar)
    }

    /// How many times the timer has been backed off since the last sample or reset.
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// `rto` within `[min_rto, max_rto]` (RFC 6298 sections 2.4 and 2.5); the maximum wins a conflict.
    fn bounded(&self, rto: u64) -> u64 {
        rto.max(self.min_rto).min(self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn before_any_sample() {
        let e = RttEstimator::default();
        assert_eq!((e.srtt(), e.rttvar(), e.rto(), e.backoff_count()), (None, Duration::ZERO, ms(1000), 0));
    }

    #[test]
    fn rfc6298_formulas_on_a_sequence_of_samples() {
        // Bounds wide enough not to interfere. Each row: sample, then SRTT, RTTVAR and RTO worked by hand.
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(120_000));
        let table = [
            // First sample (2.2): SRTT = R, RTTVAR = R/2, RTO = 100 + 4 * 50.
            (ms(100), us(100_000), us(50_000), us(300_000)),
            // RTTVAR = 3/4 * 50 + 1/4 * |100 - 120| = 42.5; SRTT = 7/8 * 100 + 1/8 * 120 = 102.5.
            (ms(120), us(102_500), us(42_500), us(272_500)),
            // RTTVAR = 3/4 * 42.5 + 1/4 * 22.5 = 37.5; SRTT = 7/8 * 102.5 + 10 = 99.6875.
            (ms(80), Duration::from_nanos(99_687_500), us(37_500), Duration::from_nanos(249_687_500)),
            // A spike: RTTVAR = 28.125 + 1/4 * 400.3125 = 128.203125; SRTT = 87.2265625 + 62.5 = 149.7265625,
            // which in whole nanoseconds is 99_687_500 - 12_460_937 + 62_500_000.
            (
                ms(500),
                Duration::from_nanos(149_726_563),
                Duration::from_nanos(128_203_125),
                Duration::from_nanos(149_726_563 + 4 * 128_203_125),
            ),
        ];
        for (i, (rtt, srtt, rttvar, rto)) in table.into_iter().enumerate() {
            e.sample(rtt);
            assert_eq!((e.srtt(), e.rttvar(), e.rto()), (Some(srtt), rttvar, rto), "row {i}");
        }
    }

    #[test]
    fn granularity_floor_when_rttvar_vanishes() {
        // Identical samples shrink RTTVAR towards zero; the RTO stays at least G above SRTT.
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(120_000));
        for _ in 0..40 {
            e.sample(ms(10));
        }
        assert_eq!(e.srtt(), Some(ms(10)));
        assert!(e.rttvar() * K < GRANULARITY);
        assert_eq!(e.rto(), ms(11));
    }

    #[test]
    fn clamped_to_min_and_max() {
        let mut e = RttEstimator::default();
        e.sample(ms(1)); // 1 + 4 * 0.5 = 3 ms
        assert_eq!(e.rto(), ms(200));
        let mut e = RttEstimator::default();
        e.sample(ms(100_000)); // 100 s + 200 s
        assert_eq!(e.rto(), ms(120_000));
        // Conflicting bounds: the maximum wins.
        let mut e = RttEstimator::new(ms(1000), ms(500), ms(300));
        assert_eq!(e.rto(), ms(300));
        e.sample(ms(1));
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn backoff_doubles_up_to_max_and_a_sample_resets_it() {
        let mut e = RttEstimator::default();
        e.sample(ms(100)); // RTO 300 ms
        let expected = [600, 1200, 2400, 4800, 9600, 19_200, 38_400, 76_800, 120_000, 120_000];
        for want in expected {
            e.back_off();
            assert_eq!(e.rto(), ms(want));
        }
        assert_eq!(e.backoff_count(), 10);
        e.reset_backoff();
        assert_eq!((e.backoff_count(), e.rto()), (0, ms(300)));
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), ms(1200));
        e.sample(ms(100));
        assert_eq!(e.backoff_count(), 0);
        assert!(e.rto() < ms(600));
        // The initial RTO backs off too (RFC 6298 section 5.7 territory: SYN retransmissions).
        let mut e = RttEstimator::default();
        e.back_off();
        assert_eq!(e.rto(), ms(2000));
    }

    #[test]
    fn no_overflow_on_huge_samples_or_many_backoffs() {
        let mut e = RttEstimator::new(Duration::MAX, Duration::ZERO, Duration::MAX);
        assert_eq!(e.rto(), Duration::MAX);
        e.back_off();
        assert_eq!(e.rto(), Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(Duration::ZERO);
        e.sample(Duration::MAX);
        assert_eq!(e.rto(), Duration::MAX);
        let mut e = RttEstimator::default();
        e.sample(Duration::MAX);
        assert_eq!(e.rto(), DEFAULT_MAX_RTO);
        for _ in 0..100 {
            e.back_off();
        }
        assert_eq!((e.backoff_count(), e.rto()), (100, DEFAULT_MAX_RTO));
        e.backoff = u32::MAX;
        e.recompute_rto();
        e.back_off();
        assert_eq!((e.backoff_count(), e.rto()), (u32::MAX, DEFAULT_MAX_RTO));
    }
}
