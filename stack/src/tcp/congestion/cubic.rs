//! CUBIC's window arithmetic (RFC 9438): after a loss the window grows along a cubic function of the time since
//! the reduction, quickly back toward the window where the loss happened (W_max), slowly near it, then faster
//! again to probe beyond it; never slower than Reno would grow in the same conditions. Its loss recovery is the
//! shared one in `mod.rs`; slow start is the standard one (RFC 9438 section 4.10).
//!
//! Windows are kept in bytes; the cubic term is computed in segments, the unit of C, with `f64`. Every input
//! (times, RTTs, windows) is clamped or saturated so that no event sequence yields NaN, infinity or overflow.

use crate::time::{Duration, Instant};

/// C of RFC 9438 section 5.1: how aggressively the window grows, in segments per second cubed.
const C: f64 = 0.4;
/// β_cubic of RFC 9438 section 4.6: the window keeps 70% of the flight on a loss.
const BETA: f64 = 0.7;
/// α_cubic of RFC 9438 section 4.3, 3(1 − β)/(1 + β): the additive increase that makes the average window
/// equal Reno's under the same loss rate.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC's own state.
#[derive(Debug, Clone, Default)]
pub struct Cubic {
    /// W_max (bytes): the window just before the last reduction, lowered by fast convergence (RFC 9438
    /// section 4.7). `None` when there is none to return to: before any loss, after a timeout (section 4.8) or
    /// after switching algorithm.
    w_max: Option<f64>,
    /// cwnd_prior (bytes): the window when ssthresh was last set (RFC 9438 section 4.3 uses it to decide when
    /// the Reno-friendly estimate has caught up).
    cwnd_prior: f64,
    /// The current congestion avoidance stage; `None` until its first acknowledgment.
    epoch: Option<Epoch>,
    /// When the flow stopped being limited by the window during the epoch (RFC 9438 section 5.8).
    app_limited_since: Option<Instant>,
    /// Growth earned (bytes) and not yet added to the window, which grows by whole segments.
    credit: f64,
}

/// One congestion avoidance stage (RFC 9438 section 4.2).
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// t_epoch: the first acknowledgment in congestion avoidance, moved later by application-limited time.
    start: Instant,
    /// K (seconds): when W_cubic reaches `w_max`.
    k: f64,
    /// The W_max this stage's curve is centred on (bytes), never below cwnd_epoch.
    w_max: f64,
    /// W_est (bytes): the window Reno would have reached since the stage began (RFC 9438 section 4.3).
    w_est: f64,
}

impl Epoch {
    /// RFC 9438 section 4.2: K = cbrt((W_max − cwnd_epoch) / C), in segments. Without a W_max above
    /// cwnd_epoch (after a timeout, section 4.8; or a window that grew past the last loss) the curve starts at
    /// its inflection point: W_max = cwnd_epoch and K = 0, as Linux does.
    fn begin(now: Instant, cwnd_epoch: f64, w_max: Option<f64>, mss: f64) -> Epoch {
        let w_max = w_max.unwrap_or(cwnd_epoch).max(cwnd_epoch);
        let k = ((w_max - cwnd_epoch) / mss / C).cbrt();
        // Section 4.3: "W_est is set equal to cwnd_epoch at the start of the congestion avoidance stage".
        Epoch { start: now, k, w_max, w_est: cwnd_epoch }
    }

    /// RFC 9438 section 4.2, figure 1: W_cubic(t) = C·(t − K)³ + W_max, in bytes, `t` in seconds.
    fn w_cubic(&self, t: f64, mss: f64) -> f64 {
        C * (t - self.k).powi(3) * mss + self.w_max
    }
}

impl Cubic {
    /// W_max in bytes, once a loss set it.
    pub fn w_max(&self) -> Option<f64> {
        self.w_max
    }

    /// K in seconds, while a congestion avoidance stage runs.
    pub fn k(&self) -> Option<f64> {
        self.epoch.map(|e| e.k)
    }

    /// t_epoch, while a congestion avoidance stage runs.
    pub fn epoch_start(&self) -> Option<Instant> {
        self.epoch.map(|e| e.start)
    }

    /// W_est in bytes, while a congestion avoidance stage runs.
    pub fn w_est(&self) -> Option<f64> {
        self.epoch.map(|e| e.w_est)
    }

    /// W_cubic(t) in bytes for `t` after t_epoch, while a congestion avoidance stage runs.
    pub fn w_cubic(&self, t: Duration, mss: usize) -> Option<f64> {
        self.epoch.map(|e| e.w_cubic(t.as_secs_f64(), mss.max(1) as f64))
    }

    /// No state is NaN or infinite (for robustness tests).
    pub fn is_finite(&self) -> bool {
        let epoch_ok = self.epoch.is_none_or(|e| e.k.is_finite() && e.w_max.is_finite() && e.w_est.is_finite());
        epoch_ok && self.w_max.is_none_or(f64::is_finite) && self.cwnd_prior.is_finite() && self.credit.is_finite()
    }

    /// The flow was not limited by the window at `now`: it does not grow (the caller skips growth), and the
    /// time until it is limited again is not counted in t (RFC 9438 section 5.8; Linux shifts the epoch the
    /// same way after an idle period).
    pub(super) fn on_app_limited(&mut self, now: Instant) {
        if self.epoch.is_some() && self.app_limited_since.is_none() {
            self.app_limited_since = Some(now);
        }
    }

    /// Congestion avoidance (RFC 9438 sections 4.2 to 4.5) for an ACK of `acked` bytes at `now`. Returns the
    /// bytes to add to `cwnd`, in whole segments.
    pub(super) fn avoidance_growth(
        &mut self,
        cwnd: usize,
        mss: usize,
        acked: usize,
        now: Instant,
        srtt: Option<Duration>,
    ) -> usize {
        let (cwnd, mss_bytes, acked) = (cwnd.max(1) as f64, mss.max(1), acked as f64);
        let mss = mss_bytes as f64;
        // Section 5.8: application-limited time does not count toward t.
        if let (Some(since), Some(epoch)) = (self.app_limited_since.take(), self.epoch.as_mut()) {
            epoch.start += now.saturating_since(since);
        }
        // Section 4.2: the stage starts at its first acknowledgment, with cwnd_epoch the window then.
        let epoch = match self.epoch.as_mut() {
            Some(epoch) => epoch,
            None => self.epoch.insert(Epoch::begin(now, cwnd, self.w_max, mss)),
        };

        // The window the RFC's arithmetic runs on: cwnd plus the growth not yet a whole segment.
        let window = cwnd + self.credit;

        // Section 4.3: W_est grows by α_cubic segments per window acknowledged, and by one (Reno's rate) once
        // it has reached the window of the last reduction.
        let alpha = if epoch.w_est >= self.cwnd_prior { 1.0 } else { ALPHA };
        epoch.w_est += alpha * acked / window * mss;

        // Section 4.2: target = W_cubic(t + RTT), within [cwnd, 1.5·cwnd]. Time is the epoch's, RTT the smoothed
        // one; an unmeasured RTT counts as zero.
        let t = now.saturating_since(epoch.start).as_secs_f64();
        let rtt = srtt.unwrap_or(Duration::ZERO).as_secs_f64();
        let target = epoch.w_cubic(t + rtt, mss).min(1.5 * window).max(window);

        // Sections 4.4 (concave, below W_max) and 4.5 (convex, beyond it): cwnd grows by (target − cwnd)/cwnd
        // per segment acknowledged.
        let cubic = window + (target - window) / window * acked;
        // Section 4.3: where that is below W_est (the Reno-friendly region) cwnd is set to W_est. Comparing
        // after the cubic step, not before, matters: W_est moves first on every ACK, so checking cwnd < W_est
        // beforehand would pick the Reno-friendly region forever and the cubic increase would never apply.
        self.credit = cubic.max(epoch.w_est) - cwnd;
        let segments = (self.credit / mss).floor();
        if segments.is_nan() || segments < 1.0 {
            return 0;
        }
        self.credit -= segments * mss;
        (segments as usize).saturating_mul(mss_bytes)
    }

    /// Loss found by duplicate acknowledgments: remember W_max (with fast convergence, RFC 9438 section 4.7),
    /// end the stage, and return ssthresh, the multiplicative decrease of section 4.6.
    pub(super) fn on_loss(&mut self, cwnd: usize, flight: usize, mss: usize) -> usize {
        let cwnd = cwnd as f64;
        // Section 4.7: a loss below the last W_max means this flow's share shrank (a new flow arrived): release
        // bandwidth by aiming below the window of this loss, midway between it and its reduction.
        self.w_max = Some(match self.w_max {
            Some(w_max) if cwnd < w_max => cwnd * (1.0 + BETA) / 2.0,
            _ => cwnd,
        });
        self.cwnd_prior = cwnd;
        self.end_epoch();
        reduced_ssthresh(flight, mss)
    }

    /// Retransmission timeout (RFC 9438 section 4.8): ssthresh as on a loss, and the next congestion avoidance
    /// stage grows from its own start (K = 0, W_max = cwnd_epoch) rather than toward the old W_max.
    pub(super) fn on_timeout(&mut self, cwnd: usize, flight: usize, mss: usize) -> usize {
        self.w_max = None;
        self.cwnd_prior = cwnd as f64;
        self.end_epoch();
        reduced_ssthresh(flight, mss)
    }

    /// Starts the curve over at the next acknowledgment (after an undo restored the window, or an MSS change).
    pub(super) fn restart_epoch(&mut self) {
        self.end_epoch();
    }

    fn end_epoch(&mut self) {
        self.epoch = None;
        self.app_limited_since = None;
        self.credit = 0.0;
    }
}

/// RFC 9438 section 4.6: ssthresh = flight_size · β_cubic, in whole segments (as Linux counts), and at least
/// two (RFC 5681 equation 4's floor).
fn reduced_ssthresh(flight: usize, mss: usize) -> usize {
    let mss = mss.max(1);
    let segments = (flight as f64 * BETA / mss as f64).floor() as usize;
    segments.saturating_mul(mss).max(mss.saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::super::{AckRtt, CongestionAlgorithm, CongestionControl, DupAckAction};
    use super::*;
    use crate::tcp::seq::SeqNum;

    const MSS: usize = 1000;
    const T0: Instant = Instant::ZERO;

    fn segments(bytes: f64) -> f64 {
        bytes / MSS as f64
    }

    /// A CUBIC controller in congestion avoidance right after a fast retransmit at a window of `w_max`
    /// segments, with `flight` (in segments) outstanding, recovery already over.
    fn after_loss(w_max: usize, flight: usize) -> CongestionControl {
        let mut cc = CongestionControl::new(CongestionAlgorithm::Cubic, MSS, 10);
        cc.cwnd = w_max * MSS;
        let snd_max = SeqNum((flight * MSS) as u32);
        for _ in 0..3 {
            cc.on_dup_ack(flight * MSS, snd_max, SeqNum(0));
        }
        // A full acknowledgment ends recovery with the window at ssthresh (RFC 6582 section 3.2 step 3).
        cc.on_ack(T0, AckRtt::smoothed(None), snd_max, MSS, 10 * flight * MSS, true);
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), cc.ssthresh());
        cc
    }

    /// One round trip of a window-limited flow: a whole window acknowledged, one segment per ACK, at `now`.
    fn round(cc: &mut CongestionControl, now: Instant, rtt: Duration) {
        let acks = (cc.cwnd() / MSS).max(1);
        let flight = cc.cwnd();
        for _ in 0..acks {
            cc.on_ack(now, AckRtt::smoothed(Some(rtt)), SeqNum(0), MSS, flight, true);
        }
    }

    /// RFC 9438 section 4.2's K and W_cubic(t), worked for W_max = 100 segments after a reduction to 70:
    /// K = cbrt(30 / 0.4) = cbrt(75) ≈ 4.2172 s; W(0) = 70, W(K) = W_max, W(K + 1 s) = W_max + C.
    #[test]
    fn k_and_w_cubic_follow_section_4_2() {
        let mut cc = after_loss(100, 100);
        assert_eq!(cc.cwnd(), 70 * MSS);
        cc.on_ack(T0, AckRtt::smoothed(None), SeqNum(0), MSS, 70 * MSS, true); // first ACK in avoidance: the epoch starts
        let c = cc.cubic().unwrap();
        let k = c.k().unwrap();
        assert!((k - 75f64.cbrt()).abs() < 1e-9, "K = {k}");
        assert!((k - 4.2172).abs() < 1e-4);
        let w = |secs: f64| segments(c.w_cubic(Duration::from_secs_f64(secs), MSS).unwrap());
        assert!((w(0.0) - 70.0).abs() < 1e-6, "W(0) = cwnd_epoch: {}", w(0.0));
        assert!((w(k) - 100.0).abs() < 1e-6, "W(K) = W_max: {}", w(k));
        assert!((w(k + 1.0) - 100.4).abs() < 1e-6, "W(K+1) = W_max + C: {}", w(k + 1.0));
        assert!((w(1.0) - (0.4 * (1.0 - k).powi(3) + 100.0)).abs() < 1e-6);
        assert_eq!(c.epoch_start(), Some(T0));
    }

    /// RFC 9438 section 4.6: ssthresh = flight_size · β_cubic with β_cubic = 0.7 (Reno halves), in whole
    /// segments and at least two.
    #[test]
    fn a_loss_reduces_to_beta_of_the_flight() {
        let mut cc = CongestionControl::new(CongestionAlgorithm::Cubic, MSS, 10);
        for _ in 0..3 {
            cc.on_dup_ack(10 * MSS, SeqNum(10_000), SeqNum(0));
        }
        assert_eq!(cc.ssthresh(), 7 * MSS, "0.7 of 10 segments");
        assert_eq!(cc.cwnd(), 10 * MSS, "ssthresh plus the three segments that left (RFC 5681 step 4)");
        assert_eq!(cc.cubic().unwrap().w_max(), Some(10_000.0), "W_max is the window before the reduction");
        assert_eq!(reduced_ssthresh(100 * MSS, MSS), 70 * MSS);
        assert_eq!(reduced_ssthresh(10 * MSS + 999, MSS), 7 * MSS, "whole segments, rounded down");
        assert_eq!(reduced_ssthresh(MSS, MSS), 2 * MSS, "never below two segments");
        assert_eq!(reduced_ssthresh(usize::MAX, MSS) % MSS, 0, "saturates without overflow");
    }

    /// RFC 9438 section 4.7: a loss before the window regained the last W_max lowers W_max to
    /// cwnd·(1 + β)/2, leaving room for a newly arrived flow; a loss at or beyond it sets W_max = cwnd.
    #[test]
    fn fast_convergence_lowers_w_max() {
        let mut cc = after_loss(100, 100);
        assert_eq!(cc.cubic().unwrap().w_max(), Some(100_000.0));
        cc.cwnd = 80 * MSS;
        for _ in 0..3 {
            cc.on_dup_ack(80 * MSS, SeqNum(500_000), SeqNum(200_000));
        }
        assert_eq!(cc.on_dup_ack(80 * MSS, SeqNum(500_000), SeqNum(200_000)), DupAckAction::None);
        let w_max = cc.cubic().unwrap().w_max().unwrap();
        assert!((segments(w_max) - 80.0 * 1.7 / 2.0).abs() < 1e-9, "68 segments, not 80: {w_max}");
        assert_eq!(cc.ssthresh(), 56 * MSS, "ssthresh is still 0.7 of the flight");

        let mut cc = after_loss(100, 100);
        cc.cwnd = 120 * MSS;
        for _ in 0..3 {
            cc.on_dup_ack(120 * MSS, SeqNum(500_000), SeqNum(200_000));
        }
        assert_eq!(cc.cubic().unwrap().w_max(), Some(120_000.0), "beyond the old W_max: W_max = cwnd");
    }

    /// RFC 9438 sections 4.4 and 4.5: with a large window and a long RTT (where CUBIC, not Reno, sets the pace)
    /// the window climbs fast toward W_max, slows as it nears it (concave), plateaus around K, then accelerates
    /// past it (convex).
    #[test]
    fn concave_growth_slows_near_w_max_then_convex_growth_accelerates() {
        let rtt = Duration::from_millis(100);
        let mut cc = after_loss(1000, 1000);
        let mut now = T0;
        let mut cwnd = Vec::new(); // segments at the start of each round trip
        for _ in 0..150 {
            cwnd.push(cc.cwnd() as f64 / MSS as f64);
            round(&mut cc, now, rtt);
            now += rtt;
        }
        let c = cc.cubic().unwrap();
        let k = c.k().unwrap();
        assert!((k - 750f64.cbrt()).abs() < 1e-9, "K = cbrt(300 / 0.4) ≈ 9.09 s: {k}");
        // Rounds are 100 ms: round 10 is t = 1 s, round 91 is t ≈ K.
        let growth = |from: usize, to: usize| cwnd[to] - cwnd[from];
        assert!(growth(0, 10) >= 80.0, "fast at first, far below W_max: {}", growth(0, 10));
        assert!(growth(81, 91) <= 2.0, "slow in the last second before K: {}", growth(81, 91));
        assert!(cwnd[..=91].iter().all(|&w| w <= 1001.0), "concave: approaches W_max without passing it");
        assert!(cwnd[91] >= 995.0, "at K the window is about W_max: {}", cwnd[91]);
        assert!(growth(101, 111) < growth(111, 121) && growth(111, 121) < growth(121, 131), "convex: accelerating");
        assert!(cwnd[149] > 1050.0, "probing past W_max: {}", cwnd[149]);
        assert!(c.w_est().unwrap() < 800.0 * MSS as f64, "the cubic curve, not Reno's estimate, set the pace");
    }

    /// RFC 9438 section 4.3: with a small window and a short RTT the cubic curve is slower than Reno; the
    /// Reno-friendly estimate W_est (α_cubic = 3(1 − β)/(1 + β) per RTT, then 1 once past cwnd_prior) sets the
    /// window.
    #[test]
    fn reno_friendly_region_wins_at_small_windows_and_short_rtts() {
        assert!((ALPHA - 0.9 / 1.7).abs() < 1e-12);
        let rtt = Duration::from_millis(10);
        let mut cc = after_loss(20, 20);
        assert_eq!(cc.cwnd(), 14 * MSS);
        let mut now = T0;
        for _ in 0..4 {
            round(&mut cc, now, rtt);
            now += rtt;
        }
        let est = segments(cc.cubic().unwrap().w_est().unwrap());
        assert!((est - (14.0 + 4.0 * ALPHA)).abs() < 0.25, "α_cubic segments per RTT: W_est = {est}");
        for _ in 4..40 {
            round(&mut cc, now, rtt);
            now += rtt;
        }
        let c = cc.cubic().unwrap();
        let est = segments(c.w_est().unwrap());
        let cubic = segments(c.w_cubic(now - Instant::ZERO + rtt, MSS).unwrap());
        let cwnd = cc.cwnd() as f64 / MSS as f64;
        assert!(cubic < 17.0, "the cubic curve is still far below W_max: {cubic}");
        assert!(cwnd > cubic + 15.0 && (cwnd - est).abs() < 1.0, "cwnd {cwnd} follows W_est {est}");
        // 14 + ~11.3 rounds at α_cubic to reach cwnd_prior (20), then ~28.7 rounds at 1.
        assert!((est - 48.7).abs() < 2.0, "W_est = {est}");
    }

    /// RFC 9438 section 4.8: a timeout takes cwnd to one segment and ssthresh to 0.7 of the flight; the next
    /// congestion avoidance stage starts afresh with K = 0 and W_max = cwnd_epoch.
    #[test]
    fn timeout_sets_one_segment_and_restarts_the_epoch() {
        let mut cc = after_loss(100, 100);
        cc.on_ack(T0, AckRtt::smoothed(None), SeqNum(0), MSS, 70 * MSS, true);
        assert!(cc.cubic().unwrap().epoch_start().is_some());
        cc.on_timeout(50 * MSS, SeqNum(1_000_000));
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 35 * MSS));
        let c = cc.cubic().unwrap();
        assert!(c.epoch_start().is_none() && c.w_max().is_none());
        // Slow start up to ssthresh, then the first ACK in avoidance starts the new stage.
        let t1 = Instant::from_secs(5);
        while cc.cwnd() < cc.ssthresh() {
            cc.on_ack(t1, AckRtt::smoothed(None), SeqNum(0), MSS, cc.cwnd(), true);
        }
        let cwnd_epoch = cc.cwnd() as f64;
        cc.on_ack(t1, AckRtt::smoothed(None), SeqNum(0), MSS, cc.cwnd(), true);
        let c = cc.cubic().unwrap();
        assert_eq!((c.epoch_start(), c.k()), (Some(t1), Some(0.0)));
        assert_eq!(c.w_cubic(Duration::ZERO, MSS), Some(cwnd_epoch), "W_max = cwnd_epoch");
    }

    /// RFC 9438 section 5.8: while the application, not the window, limits the flow, cwnd does not grow and
    /// the time does not count in t, so the flow does not come back with a window the curve inflated meanwhile.
    #[test]
    fn an_application_limited_period_neither_grows_cwnd_nor_counts_in_t() {
        let rtt = Duration::from_millis(100);
        let mut cc = after_loss(100, 100);
        cc.on_ack(T0, AckRtt::smoothed(Some(rtt)), SeqNum(0), MSS, 70 * MSS, true);
        let before = cc.cwnd();
        // Ten seconds of acknowledgments for a trickle of data.
        let mut now = T0;
        for _ in 0..100 {
            now += Duration::from_millis(100);
            cc.on_ack(now, AckRtt::smoothed(Some(rtt)), SeqNum(0), MSS, MSS, false);
        }
        assert_eq!(cc.cwnd(), before, "no growth while application-limited");
        // The window fills again: the curve resumes where it stopped, 100 ms after the epoch began.
        let resumed = now + Duration::from_millis(100);
        cc.on_ack(resumed, AckRtt::smoothed(Some(rtt)), SeqNum(0), MSS, cc.cwnd(), true);
        let c = cc.cubic().unwrap();
        assert_eq!(c.epoch_start(), Some(Instant::from_secs(10)), "shifted by the 9.9 s application-limited");
        assert!(cc.cwnd() <= before + MSS, "grown as at t = 0.2 s, not as at t = 10.2 s");
    }

    /// Robustness: inputs at their extremes give finite state and a window of at least one segment.
    #[test]
    fn extreme_inputs_stay_finite() {
        let far = Instant::from_nanos(u64::MAX);
        for rtt in [None, Some(Duration::ZERO), Some(Duration::MAX), Some(Duration::from_nanos(u64::MAX))] {
            for mss in [1, MSS, 65_535] {
                let mut cc = CongestionControl::new(CongestionAlgorithm::Cubic, mss, 10);
                cc.ssthresh = mss; // straight to congestion avoidance
                                   // W_max far below cwnd, then huge t.
                cc.on_dup_ack(mss, SeqNum(1), SeqNum(0));
                cc.on_dup_ack(mss, SeqNum(1), SeqNum(0));
                cc.on_dup_ack(mss, SeqNum(1), SeqNum(0));
                cc.on_ack(T0, AckRtt::smoothed(rtt), SeqNum(2), 1, 1, true);
                cc.cwnd = usize::MAX / 2;
                cc.ssthresh = 0;
                for now in [T0, far, T0, far] {
                    cc.on_ack(now, AckRtt::smoothed(rtt), SeqNum(3), usize::MAX, usize::MAX, true);
                    cc.on_ack(now, AckRtt::smoothed(rtt), SeqNum(3), 0, 0, true);
                    assert!(cc.cubic().unwrap().is_finite(), "{:?}", cc.cubic());
                    assert!(cc.cwnd() >= mss);
                }
                let mut fresh = Cubic::default();
                assert_eq!(fresh.avoidance_growth(0, 0, 0, far, rtt), 0, "zero window, MSS and ACK");
                assert!(fresh.is_finite());
                assert_eq!(fresh.on_loss(0, 0, 0), 2);
                assert_eq!(fresh.on_timeout(usize::MAX, usize::MAX, usize::MAX), usize::MAX);
                assert!(fresh.is_finite());
            }
        }
    }
}
