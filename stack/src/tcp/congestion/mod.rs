//! Congestion control: how much a connection may have in flight.
//!
//! Two parts with separate jobs. Loss recovery is shared by every algorithm and lives here: slow start (RFC
//! 5681 section 3.1, with RFC 3465's byte counting), counting duplicate acknowledgments, fast retransmit and
//! fast recovery with NewReno's partial acknowledgments and `recover` (RFC 5681 section 3.2, RFC 6582), the
//! retransmission timeout, and the initial window of RFC 6928. What differs by algorithm is only how the window
//! grows in congestion avoidance and how far it drops on a loss: [`Reno`] (RFC 5681) and [`Cubic`] (RFC 9438,
//! the default, as on Linux), chosen per socket with [`CongestionAlgorithm`].
//!
//! The controller only does arithmetic on windows; the sender decides what to (re)send. It is told about
//! acknowledgments, duplicate acknowledgments and timeouts, with the time they happened, and answers with the
//! windows to obey. It never reads a clock.

mod cubic;
mod hystart;
mod reno;

pub use cubic::Cubic;
pub use hystart::HyStart;
pub use reno::Reno;

use super::seq::SeqNum;
use crate::time::{Duration, Instant};

/// The congestion control algorithms a socket can choose (`TCP_CONGESTION`). The discriminants are the values
/// `setsockopt`/`getsockopt` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CongestionAlgorithm {
    /// NewReno (RFC 5681, RFC 6582): halve on a loss, one segment per round trip after.
    Reno = 0,
    /// CUBIC (RFC 9438): Linux's default, which shares a path fairly with the Linux, Windows and Apple
    /// stacks around it.
    #[default]
    Cubic = 1,
}

impl CongestionAlgorithm {
    /// The name Linux gives the algorithm (`net.ipv4.tcp_congestion_control`, `TCP_CONGESTION`).
    pub fn name(self) -> &'static str {
        match self {
            CongestionAlgorithm::Reno => "reno",
            CongestionAlgorithm::Cubic => "cubic",
        }
    }

    /// The algorithm Linux calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reno" => Some(CongestionAlgorithm::Reno),
            "cubic" => Some(CongestionAlgorithm::Cubic),
            _ => None,
        }
    }
}

impl TryFrom<i32> for CongestionAlgorithm {
    type Error = ();

    /// The option value `setsockopt(TCP_CONGESTION)` takes: 0 for Reno, 1 for CUBIC.
    fn try_from(value: i32) -> Result<Self, ()> {
        match value {
            0 => Ok(CongestionAlgorithm::Reno),
            1 => Ok(CongestionAlgorithm::Cubic),
            _ => Err(()),
        }
    }
}

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

/// What an acknowledgment tells of the round trip: the smoothed estimate (if measured yet), and the sample
/// this acknowledgment itself gave, in nanoseconds, if it gave one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckRtt {
    pub srtt: Option<Duration>,
    pub sample_nanos: Option<u64>,
}

impl AckRtt {
    /// The smoothed estimate alone, without a sample.
    pub fn smoothed(srtt: Option<Duration>) -> AckRtt {
        AckRtt { srtt, sample_nanos: None }
    }
}

/// RFC 5681 section 3.2: the number of duplicate acknowledgments that signals a loss.
pub const DUP_THRESHOLD: u32 = 3;

/// The state an algorithm keeps of its own, beside the windows.
#[derive(Debug, Clone)]
enum Algorithm {
    Reno(Reno),
    Cubic(Cubic),
}

impl Algorithm {
    fn new(which: CongestionAlgorithm) -> Self {
        match which {
            CongestionAlgorithm::Reno => Algorithm::Reno(Reno::default()),
            CongestionAlgorithm::Cubic => Algorithm::Cubic(Cubic::default()),
        }
    }

    fn kind(&self) -> CongestionAlgorithm {
        match self {
            Algorithm::Reno(_) => CongestionAlgorithm::Reno,
            Algorithm::Cubic(_) => CongestionAlgorithm::Cubic,
        }
    }
}

/// The congestion state of one connection: the windows, loss recovery, and the algorithm's own state.
#[derive(Debug, Clone)]
pub struct CongestionControl {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    dup_acks: u32,
    /// `recover` of RFC 6582, the highest sequence number sent when recovery began, kept as SND.MAX (one
    /// beyond it) then; `Some` while recovering.
    recover: Option<SeqNum>,
    /// `recover` as RFC 6582 keeps it after recovery ends, so that duplicate acknowledgments for data sent
    /// before the last loss do not start a second recovery ("the Fast Retransmit ... MUST NOT be entered").
    last_recover: Option<SeqNum>,
    /// cwnd and ssthresh before the last reduction for a loss, to restore if the loss proves spurious (kept in
    /// 32 bits, like Linux's: no window reaches 4 GiB, and the TCB stays small).
    prior: Option<(u32, u32)>,
    /// The recovery in progress was started by RACK on a SACK connection (`enter_recovery`), not by duplicate
    /// ACKs: the window is ssthresh throughout (RFC 6675), with no NewReno inflation or deflation.
    sack_recovery: bool,
    /// Slow start after a retransmission timeout, until ssthresh: RFC 3465 section 2.3 takes one MSS per ACK
    /// there, since cumulative ACKs then jump over data the receiver already held.
    after_timeout: bool,
    /// HyStart++ (RFC 9406) on the first slow start.
    hystart: HyStart,
    algorithm: Algorithm,
}

impl CongestionControl {
    /// A connection's controller running `algorithm` with `mss`-byte segments and an initial window of
    /// `initial_segments` (RFC 6928: 10; RFC 5681: 2 to 4 depending on the MSS).
    pub fn new(algorithm: CongestionAlgorithm, mss: usize, initial_segments: usize) -> Self {
        let mss = mss.max(1);
        CongestionControl {
            mss,
            cwnd: initial_window(mss, initial_segments),
            ssthresh: usize::MAX,
            dup_acks: 0,
            recover: None,
            last_recover: None,
            prior: None,
            sack_recovery: false,
            after_timeout: false,
            hystart: HyStart::new(true),
            algorithm: Algorithm::new(algorithm),
        }
    }

    /// The controller a new connection starts with: [`CongestionControl::new`], with HyStart++ unless
    /// `hystart` is false (`TcpConfig::hystart`), when slow start runs until the first loss, as RFC 5681's.
    pub fn for_connection(algorithm: CongestionAlgorithm, mss: usize, initial_segments: usize, hystart: bool) -> Self {
        let mut cc = CongestionControl::new(algorithm, mss, initial_segments);
        if !hystart {
            cc.hystart.stop();
        }
        cc
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

    pub fn algorithm(&self) -> CongestionAlgorithm {
        self.algorithm.kind()
    }

    /// CUBIC's state, when that is the algorithm (for diagnostics and tests).
    pub fn cubic(&self) -> Option<&Cubic> {
        match &self.algorithm {
            Algorithm::Cubic(c) => Some(c),
            Algorithm::Reno(_) => None,
        }
    }

    /// Switches algorithm on a live connection, as Linux's `tcp_set_congestion_control` does: the windows and
    /// any recovery in progress stay, the new algorithm starts from fresh state of its own. Choosing the
    /// algorithm already running changes nothing.
    pub fn set_algorithm(&mut self, algorithm: CongestionAlgorithm) {
        if algorithm != self.algorithm.kind() {
            self.algorithm = Algorithm::new(algorithm);
        }
    }

    /// A smaller MSS learned later (path MTU); windows keep their byte values.
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
        // CUBIC's K was computed in units of the old MSS: its curve starts over.
        if let Algorithm::Cubic(c) = &mut self.algorithm {
            c.restart_epoch();
        }
    }

    pub fn in_recovery(&self) -> bool {
        self.recover.is_some()
    }

    pub fn dup_acks(&self) -> u32 {
        self.dup_acks
    }

    /// An acknowledgment covered `acked` new bytes at `now`; `ack` is the new SND.UNA, `flight` the bytes that
    /// were outstanding before it and `srtt` the smoothed round-trip time, if measured yet. `cwnd_limited` says
    /// whether the window was what limited sending: RFC 7661 (and Linux's `tcp_is_cwnd_limited`) grow the
    /// window only then, so that an application-limited or receive-window-limited flow does not build a
    /// window it never tested.
    pub fn on_ack(
        &mut self,
        now: Instant,
        rtt: AckRtt,
        ack: SeqNum,
        acked: usize,
        flight: usize,
        cwnd_limited: bool,
    ) -> AckAction {
        self.dup_acks = 0;
        // Once SND.UNA passes the last `recover`, its rule has nothing left to guard; forgetting it keeps the
        // modular comparison from wrapping 2 GiB later and refusing a recovery.
        if self.last_recover.is_some_and(|r| !ack.lt(r)) {
            self.last_recover = None;
        }
        if let Some(recover) = self.recover {
            if !ack.lt(recover) {
                // RFC 6582 section 3.2 step 3, full acknowledgment ("all of the data up to and including
                // recover", so up to SND.MAX at the loss): deflate to min(ssthresh, FlightSize + MSS) and leave
                // recovery. A SACK recovery ends at ssthresh (RFC 6675 section 5, Linux's
                // tcp_end_cwnd_reduction): it never inflated.
                let remaining = flight.saturating_sub(acked);
                self.cwnd = if self.sack_recovery {
                    self.ssthresh
                } else {
                    self.ssthresh.min(remaining.saturating_add(self.mss)).max(self.mss)
                };
                self.recover = None;
                return AckAction::None;
            }
            if self.sack_recovery {
                return AckAction::RetransmitNext;
            }
            // Partial acknowledgment: deflate by the amount acknowledged, add back one MSS if at least one
            // MSS was acknowledged, and retransmit the next hole.
            self.cwnd = self.cwnd.saturating_sub(acked);
            if acked >= self.mss {
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
            self.cwnd = self.cwnd.max(self.mss);
            return AckAction::RetransmitNext;
        }
        let slow_start = self.cwnd < self.ssthresh;
        // Linux counts a slow-start flow as limited while it uses more than half the window.
        let limited = cwnd_limited || (slow_start && flight.saturating_mul(2) >= self.cwnd);
        if !limited {
            if let Algorithm::Cubic(c) = &mut self.algorithm {
                c.on_app_limited(now);
            }
            return AckAction::None;
        }
        let growth = if slow_start {
            // Slow start (RFC 5681 section 3.1), the same for every algorithm (RFC 9438 section 4.10), counting
            // every byte acknowledged up to ssthresh as Linux's tcp_slow_start does, not RFC 3465's L = 2 MSS
            // per ACK: receivers that coalesce (GRO on Linux, one ACK per receive batch here) send an ACK for
            // dozens of segments, and capped at two per ACK slow start would grow slower than avoidance. (For
            // the same reason HyStart++'s L, RFC 9406 section 4.2, is taken as unbounded.)
            let cap = if self.after_timeout { self.mss } else { self.ssthresh.saturating_sub(self.cwnd).max(1) };
            let growth = acked.min(cap);
            match self.first_slow_start_pace(ack, ack + flight.saturating_sub(acked), rtt.sample_nanos) {
                hystart::Pace::SlowStart => growth,
                hystart::Pace::Conservative => (growth / hystart::CSS_GROWTH_DIVISOR).max(1),
                hystart::Pace::Avoidance => {
                    self.ssthresh = self.cwnd;
                    0
                }
            }
        } else {
            match &mut self.algorithm {
                Algorithm::Reno(r) => r.avoidance_growth(self.cwnd, self.mss, acked),
                Algorithm::Cubic(c) => c.avoidance_growth(self.cwnd, self.mss, acked, now, rtt.srtt),
            }
        };
        self.cwnd = self.cwnd.saturating_add(growth);
        if self.cwnd >= self.ssthresh {
            self.after_timeout = false;
        }
        AckAction::None
    }

    /// HyStart++'s pace for an ACK in slow start, while ssthresh is still at its initial value (RFC 9406
    /// section 4.3: the first slow start only; a loss has set ssthresh for every later one).
    fn first_slow_start_pace(&mut self, ack: SeqNum, snd_max: SeqNum, rtt_nanos: Option<u64>) -> hystart::Pace {
        if !self.hystart.watching() {
            return hystart::Pace::SlowStart;
        }
        if self.ssthresh != usize::MAX {
            self.hystart.stop();
            return hystart::Pace::SlowStart;
        }
        self.hystart.on_ack(ack, snd_max, rtt_nanos)
    }

    /// A duplicate acknowledgment (RFC 5681 section 2's definition, checked by the caller). `flight` is the
    /// data outstanding, `snd_max` the highest sequence number sent so far.
    pub fn on_dup_ack(&mut self, flight: usize, snd_max: SeqNum, snd_una: SeqNum) -> DupAckAction {
        self.dup_acks = self.dup_acks.saturating_add(1);
        if self.recover.is_some() {
            // RFC 5681 section 3.2 step 5: each further duplicate means a segment left the network.
            self.cwnd = self.cwnd.saturating_add(self.mss);
            return DupAckAction::None;
        }
        if self.dup_acks < DUP_THRESHOLD {
            return DupAckAction::None;
        }
        // RFC 6582 section 3.2 step 2: only start a new recovery if this loss is not from the previous window
        // (the ACK covers more than `recover`, i.e. reaches the SND.MAX of then).
        if self.last_recover.is_some_and(|r| snd_una.lt(r)) {
            return DupAckAction::None;
        }
        // RFC 5681 step 4: the algorithm's multiplicative decrease sets ssthresh, then the window is inflated
        // by the three segments that left the network.
        self.prior = Some((saturating_u32(self.cwnd), saturating_u32(self.ssthresh)));
        self.sack_recovery = false;
        self.after_timeout = false;
        self.ssthresh = self.reduced_ssthresh(flight);
        self.cwnd = self.ssthresh.saturating_add(self.mss.saturating_mul(DUP_THRESHOLD as usize));
        self.recover = Some(snd_max);
        self.last_recover = Some(snd_max);
        DupAckAction::FastRetransmit
    }

    /// A loss found by RACK's timing rather than by duplicate ACKs (RFC 8985 section 6.3) starts fast recovery
    /// as the third duplicate would: the same decrease and the same `recover` rule (RFC 6582 section 3.2 step
    /// 2), without the duplicate-ACK inflation. False when this loss belongs to the last recovery's window.
    pub fn enter_recovery(&mut self, flight: usize, snd_max: SeqNum, snd_una: SeqNum) -> bool {
        if self.recover.is_some() || self.last_recover.is_some_and(|r| snd_una.lt(r)) {
            return false;
        }
        self.prior = Some((saturating_u32(self.cwnd), saturating_u32(self.ssthresh)));
        self.sack_recovery = true;
        self.after_timeout = false;
        self.ssthresh = self.reduced_ssthresh(flight);
        self.cwnd = self.ssthresh;
        self.recover = Some(snd_max);
        self.last_recover = Some(snd_max);
        true
    }

    /// A tail loss probe alone repaired a loss (RFC 8985 section 7.4.2): the window answers for it once, as
    /// for any loss, but there is nothing left to recover. By the time the probe is answered little may be in
    /// flight, so the decrease is taken from the window, as Linux's `tcp_process_tlp_ack` does.
    pub fn on_loss_repaired(&mut self, flight: usize) {
        self.prior = None;
        self.ssthresh = self.reduced_ssthresh(flight.max(self.cwnd));
        self.cwnd = self.ssthresh;
    }

    /// The last reduction was for a loss that never happened (the original segments arrived, only late: RFC
    /// 3522's Eifel detection, or DSACKs for every retransmission): the windows go back to what they were,
    /// as Linux's `tcp_undo_cwnd_reduction` restores them. False when there is nothing to undo.
    pub fn undo(&mut self) -> bool {
        let Some((cwnd, ssthresh)) = self.prior.take() else { return false };
        // An ssthresh never set (usize::MAX) was kept as u32::MAX: it comes back as "never set".
        let ssthresh = if ssthresh == u32::MAX { usize::MAX } else { ssthresh as usize };
        self.cwnd = self.cwnd.max(cwnd as usize);
        self.ssthresh = self.ssthresh.max(ssthresh);
        // A recovery still running has nothing left to recover from, or its end would shrink the window again;
        // CUBIC's curve, centred on the spurious loss, starts over from the restored window. Nor does the
        // undone recovery bar the next one: RFC 6582's `recover` rule keeps one loss window from cutting the
        // window twice, but this cut was taken back. (Kept, the rule left a real loss found soon after an undo
        // outside recovery: marked lost by RACK, never resent, repaired only by the retransmission timeout.)
        self.recover = None;
        self.last_recover = None;
        if let Algorithm::Cubic(c) = &mut self.algorithm {
            c.restart_epoch();
        }
        true
    }

    /// Forgets the window saved for an undo: a later duplicate report must not restore it (a spurious tail
    /// probe long after the recovery, say).
    pub fn forget_undo(&mut self) {
        self.prior = None;
    }

    /// The retransmission timer expired (RFC 5681 section 3.1 equation 4 and "Loss Window"; RFC 9438 section
    /// 4.8 for CUBIC): ssthresh as after a loss, the window down to one segment.
    pub fn on_timeout(&mut self, flight: usize, snd_max: SeqNum) {
        self.ssthresh = match &mut self.algorithm {
            Algorithm::Reno(r) => r.on_timeout(flight, self.mss),
            Algorithm::Cubic(c) => c.on_timeout(self.cwnd, flight, self.mss),
        };
        self.cwnd = self.mss;
        self.after_timeout = true;
        self.prior = None;
        self.dup_acks = 0;
        // RFC 6582 section 3.2 step 4: after a timeout, recover = highest sequence number transmitted.
        self.recover = None;
        self.last_recover = Some(snd_max);
    }

    /// RFC 5681 section 4.1 (restart after idle): an idle connection starts again from the restart window.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    pub fn on_idle_restart(&mut self, initial_segments: usize) {
        self.cwnd = self.cwnd.min(initial_window(self.mss, initial_segments));
        // CUBIC's time since the last reduction must not count the idle time either (RFC 9438 section 5.8).
        if let Algorithm::Cubic(c) = &mut self.algorithm {
            c.restart_epoch();
        }
    }

    /// The algorithm's multiplicative decrease on a loss found by duplicate acknowledgments.
    fn reduced_ssthresh(&mut self, flight: usize) -> usize {
        match &mut self.algorithm {
            Algorithm::Reno(r) => r.on_loss(flight, self.mss),
            Algorithm::Cubic(c) => c.on_loss(self.cwnd, flight, self.mss),
        }
    }
}

/// `n` in 32 bits, capped.
fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// RFC 6928 section 2: IW = min(10*MSS, max(2*MSS, 14600)) for IW10; fewer segments are taken as given.
fn initial_window(mss: usize, initial_segments: usize) -> usize {
    if initial_segments >= 10 {
        mss.saturating_mul(10).min(mss.saturating_mul(2).max(14_600))
    } else {
        initial_segments.max(1).saturating_mul(mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T0: Instant = Instant::ZERO;

    fn reno(initial_segments: usize) -> CongestionControl {
        CongestionControl::new(CongestionAlgorithm::Reno, MSS, initial_segments)
    }

    /// An ACK at time zero without an RTT (Reno uses neither).
    fn ack(cc: &mut CongestionControl, ack: u32, acked: usize, flight: usize, limited: bool) -> AckAction {
        cc.on_ack(T0, AckRtt::smoothed(None), SeqNum(ack), acked, flight, limited)
    }

    #[test]
    fn initial_window_follows_rfc6928() {
        assert_eq!(CongestionControl::new(CongestionAlgorithm::Reno, 1460, 10).cwnd(), 14_600);
        assert_eq!(CongestionControl::new(CongestionAlgorithm::Cubic, 536, 10).cwnd(), 5_360);
        assert_eq!(reno(10).cwnd(), 10_000);
        assert_eq!(CongestionControl::new(CongestionAlgorithm::Reno, 9000, 10).cwnd(), 18_000, "max(2*MSS, 14600)");
        assert_eq!(reno(2).cwnd(), 2_000);
    }

    #[test]
    fn cubic_is_the_default_and_option_values_map_both_ways() {
        assert_eq!(CongestionAlgorithm::default(), CongestionAlgorithm::Cubic);
        for alg in [CongestionAlgorithm::Reno, CongestionAlgorithm::Cubic] {
            assert_eq!(CongestionAlgorithm::try_from(alg as i32), Ok(alg));
            assert_eq!(CongestionAlgorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(CongestionAlgorithm::try_from(2), Err(()));
        assert_eq!(CongestionAlgorithm::try_from(-1), Err(()));
        assert_eq!(CongestionAlgorithm::from_name("bbr"), None);
    }

    #[test]
    fn slow_start_then_congestion_avoidance() {
        let mut cc = reno(2);
        ack(&mut cc, 1000, MSS, 2 * MSS, true);
        assert_eq!(cc.cwnd(), 3 * MSS, "slow start: one MSS per MSS acknowledged");
        cc.ssthresh = 3 * MSS;
        for i in 0..3 {
            ack(&mut cc, 2000 + i * 1000, MSS, 3 * MSS, true);
        }
        assert_eq!(cc.cwnd(), 4 * MSS, "avoidance: one MSS per window");
    }

    #[test]
    fn three_dup_acks_halve_and_recover() {
        let mut cc = reno(10);
        let (una, max) = (SeqNum(0), SeqNum(10 * MSS as u32));
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::None);
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::None);
        assert_eq!(cc.on_dup_ack(10 * MSS, max, una), DupAckAction::FastRetransmit);
        assert_eq!(cc.ssthresh(), 5 * MSS);
        assert_eq!(cc.cwnd(), 8 * MSS);
        cc.on_dup_ack(10 * MSS, max, una);
        assert_eq!(cc.cwnd(), 9 * MSS, "inflated by further duplicates");
        assert_eq!(ack(&mut cc, 2000, 2 * MSS, 10 * MSS, true), AckAction::RetransmitNext, "partial ack");
        assert!(cc.in_recovery());
        assert_eq!(ack(&mut cc, 10_001, 8 * MSS, 8 * MSS, true), AckAction::None, "full ack");
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), MSS.max(cc.ssthresh().min(MSS)), "deflated to min(ssthresh, flight + MSS)");
    }

    /// RFC 6582 section 3.2 step 2 holds for every algorithm (the recovery machinery is shared): after a
    /// timeout, duplicate ACKs for data sent before it start no recovery; once SND.UNA passes that point they
    /// may again, however far the sequence numbers have moved on.
    #[test]
    fn no_second_recovery_for_the_same_window() {
        for alg in [CongestionAlgorithm::Reno, CongestionAlgorithm::Cubic] {
            let mut cc = CongestionControl::new(alg, MSS, 10);
            let max = SeqNum(10_000);
            for _ in 0..3 {
                cc.on_dup_ack(10 * MSS, max, SeqNum(0));
            }
            cc.on_timeout(10 * MSS, max);
            for _ in 0..3 {
                assert_eq!(cc.on_dup_ack(MSS, max, SeqNum(5_000)), DupAckAction::None, "{alg:?}");
            }
            assert!(!cc.enter_recovery(MSS, max, SeqNum(5_000)), "{alg:?}");
            ack(&mut cc, 10_000, 5_000, 5_000, true);
            let far = SeqNum(10_000u32.wrapping_add(3 << 30));
            assert!(cc.enter_recovery(MSS, far + 1000, far), "{alg:?}: 3 GiB later the old point is forgotten");
        }
    }

    #[test]
    fn an_application_limited_flow_does_not_grow_the_window() {
        let mut cc = reno(10);
        let before = cc.cwnd();
        // Slow start with one segment in flight out of ten allowed: the application is the limit.
        ack(&mut cc, 1000, MSS, MSS, false);
        assert_eq!(cc.cwnd(), before, "RFC 7661: not limited by the window, so no growth");
        ack(&mut cc, 2000, MSS, 10 * MSS, false);
        assert!(cc.cwnd() > before, "more than half the window in flight counts as limited in slow start");
    }

    #[test]
    fn timeout_collapses_to_one_segment() {
        let mut cc = reno(10);
        cc.on_timeout(8 * MSS, SeqNum(8000));
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 4 * MSS));
        cc.on_timeout(MSS, SeqNum(8000));
        assert_eq!(cc.ssthresh(), 2 * MSS, "never below two segments");
    }

    /// RFC 6582's `recover` rule keeps a second loss in the same window from cutting the window again; but a
    /// recovery that was undone (spurious) cut nothing, so a real loss right after it starts recovery at once.
    #[test]
    fn an_undone_recovery_does_not_bar_the_next_one() {
        let mut cc = reno(20);
        assert!(cc.enter_recovery(20 * MSS, SeqNum(20_000), SeqNum(0)));
        assert!(!cc.enter_recovery(20 * MSS, SeqNum(20_000), SeqNum(0)), "one recovery at a time");
        assert!(cc.undo());
        assert!(!cc.in_recovery());
        assert!(
            cc.enter_recovery(20 * MSS, SeqNum(21_000), SeqNum(1_000)),
            "a loss below the undone recovery's point must start recovery (and be resent) without a timeout"
        );
        // A recovery that ran its course still bars losses from its own window.
        let mut cc = reno(20);
        assert!(cc.enter_recovery(20 * MSS, SeqNum(20_000), SeqNum(0)));
        ack(&mut cc, 20_000, 20_000, 20 * MSS, false);
        assert!(!cc.in_recovery());
        assert!(cc.enter_recovery(10 * MSS, SeqNum(30_000), SeqNum(20_000)), "snd_una reached `recover`");
    }

    /// Linux's `tcp_set_congestion_control` on a live socket: the windows and the recovery in progress stay,
    /// only the algorithm's own state starts afresh.
    #[test]
    fn switching_algorithm_keeps_the_windows_and_recovery() {
        let mut cc = CongestionControl::new(CongestionAlgorithm::Cubic, MSS, 10);
        for _ in 0..3 {
            cc.on_dup_ack(10 * MSS, SeqNum(10_000), SeqNum(0));
        }
        let (cwnd, ssthresh) = (cc.cwnd(), cc.ssthresh());
        cc.set_algorithm(CongestionAlgorithm::Reno);
        assert_eq!(cc.algorithm(), CongestionAlgorithm::Reno);
        assert_eq!((cc.cwnd(), cc.ssthresh(), cc.in_recovery()), (cwnd, ssthresh, true));
        cc.set_algorithm(CongestionAlgorithm::Cubic);
        assert_eq!((cc.cwnd(), cc.ssthresh(), cc.in_recovery()), (cwnd, ssthresh, true));
        let cubic = cc.cubic().expect("CUBIC again");
        assert!(cubic.w_max().is_none() && cubic.epoch_start().is_none(), "CUBIC's own state is fresh");
    }

    /// Robustness (the stack is fuzzed): any sequence of events, at any times and with any RTT, leaves a finite
    /// window of at least one segment and never panics.
    #[test]
    fn random_events_keep_the_window_sane() {
        use crate::rng::Rng;
        for seed in 1..=20u64 {
            let mut rng = Rng::new(seed);
            let alg = if seed % 2 == 0 { CongestionAlgorithm::Reno } else { CongestionAlgorithm::Cubic };
            let mss = 1 + rng.below(9000);
            let mut cc = CongestionControl::new(alg, mss, 1 + rng.below(12));
            let mut now = Instant::ZERO;
            let mut una = SeqNum(rng.next_u32());
            for _ in 0..5_000 {
                // Time mostly moves forward a little, sometimes by years, sometimes backwards (a fuzzer's clock).
                now = match rng.below(20) {
                    0 => Instant::from_nanos(rng.next_u64()),
                    1 => Instant::ZERO,
                    _ => now + Duration::from_micros(rng.below_u64(200_000)),
                };
                let srtt = match rng.below(4) {
                    0 => None,
                    1 => Some(Duration::ZERO),
                    2 => Some(Duration::from_nanos(rng.next_u64())),
                    _ => Some(Duration::from_millis(rng.below_u64(500))),
                };
                let flight = match rng.below(5) {
                    0 => 0,
                    1 => usize::MAX / (1 + rng.below(4)),
                    _ => rng.below(4 * cc.cwnd().min(1 << 30) + 1),
                };
                let snd_max = una + flight.min(1 << 30);
                match rng.below(10) {
                    0..=4 => {
                        let acked = rng.below(flight.min(1 << 24) + 1);
                        una += acked;
                        cc.on_ack(now, AckRtt::smoothed(srtt), una, acked, flight, rng.below(2) == 0);
                    }
                    5..=7 => {
                        cc.on_dup_ack(flight, snd_max, una);
                    }
                    8 => cc.on_timeout(flight, snd_max),
                    _ => match rng.below(3) {
                        0 => cc.set_algorithm(CongestionAlgorithm::Reno),
                        1 => cc.set_algorithm(CongestionAlgorithm::Cubic),
                        // Path MTU discovery only ever lowers the MSS.
                        _ => cc.set_mss(1 + rng.below(cc.mss())),
                    },
                }
                assert!(cc.cwnd() >= cc.mss(), "seed {seed}: cwnd {} below the MSS {}", cc.cwnd(), cc.mss());
                if let Some(c) = cc.cubic() {
                    assert!(c.is_finite(), "seed {seed}: {c:?}");
                }
            }
        }
    }
}
