//! HyStart++ (RFC 9406): leaving slow start when the round trip grows, before the window overruns the queue.
//!
//! Slow start doubles the window every round trip until a loss says it went too far, by which time up to a
//! window's worth of segments is lost at once. HyStart++ watches the smallest round trip of each round instead:
//! when it rises by a clear margin over the last round's (a queue is building), slow start turns into
//! Conservative Slow Start (CSS), growing at a quarter of the pace for a few rounds. If the round trip falls
//! back meanwhile the rise was jitter and slow start resumes; otherwise congestion avoidance takes over from
//! the window reached (ssthresh = cwnd). Linux's CUBIC leaves slow start on a growing delay the same way (its
//! HyStart).
//!
//! Only the connection's first slow start is watched (RFC 9406 section 4.3): later ones run up to an
//! ssthresh a loss has set. The round trips come from the ACKs' echoed timestamps, one per ACK; without
//! timestamps there are too few samples per round, and slow start runs as it always did.

use super::super::seq::SeqNum;

/// RFC 9406 section 4.3's constants: the margin of a rise is an eighth of the last round's minimum, within
/// 4–16 ms; eight samples make a round's minimum; CSS grows at a quarter of slow start's pace for five rounds.
const MIN_RTT_THRESH_MICROS: u32 = 4_000;
const MAX_RTT_THRESH_MICROS: u32 = 16_000;
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u8 = 8;
pub(super) const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u8 = 5;

/// A round-trip time not measured yet.
const NONE: u32 = u32::MAX;

/// Where the first slow start stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Slow start, watching the round trip.
    SlowStart,
    /// Conservative Slow Start since the round trip rose, for `rounds` completed rounds.
    Conservative { rounds: u8 },
    /// Not watching: turned off, or the first slow start is over.
    Off,
}

/// What the window does on this acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// Slow start's growth.
    SlowStart,
    /// A quarter of it (CSS).
    Conservative,
    /// Slow start ends here: congestion avoidance from the current window.
    Avoidance,
}

/// HyStart++'s state (16 bytes of the TCB). Times are in microseconds, which hold 71 minutes.
#[derive(Debug, Clone)]
pub struct HyStart {
    phase: Phase,
    samples: u8,
    round_open: bool,
    /// The round ends when SND.UNA reaches this (SND.MAX when it began).
    window_end: SeqNum,
    last_round_min_rtt: u32,
    current_round_min_rtt: u32,
    /// The round's minimum when CSS began: a smaller one later means the rise was jitter.
    css_baseline_min_rtt: u32,
}

impl HyStart {
    /// A connection's first slow start, watched when `enabled`.
    pub fn new(enabled: bool) -> HyStart {
        HyStart {
            phase: if enabled { Phase::SlowStart } else { Phase::Off },
            samples: 0,
            round_open: false,
            window_end: SeqNum(0),
            last_round_min_rtt: NONE,
            current_round_min_rtt: NONE,
            css_baseline_min_rtt: NONE,
        }
    }

    /// Stops watching for good: a loss ended the first slow start.
    pub fn stop(&mut self) {
        self.phase = Phase::Off;
    }

    /// True while HyStart++ still decides slow start's pace.
    pub fn watching(&self) -> bool {
        self.phase != Phase::Off
    }

    /// An acknowledgment in the first slow start took SND.UNA to `snd_una` with `snd_max` sent, measuring a
    /// round trip of `rtt_nanos` if it measured one (RFC 9406 section 4.2).
    pub(super) fn on_ack(&mut self, snd_una: SeqNum, snd_max: SeqNum, rtt_nanos: Option<u64>) -> Pace {
        if self.phase == Phase::Off {
            return Pace::SlowStart;
        }
        if !self.round_open || !snd_una.lt(self.window_end) {
            self.start_round(snd_max);
            if let Phase::Conservative { rounds } = &mut self.phase {
                *rounds += 1;
                if *rounds >= CSS_ROUNDS {
                    self.phase = Phase::Off;
                    return Pace::Avoidance;
                }
            }
        }
        if let Some(rtt) = rtt_nanos {
            let micros = u32::try_from(rtt / 1_000).unwrap_or(NONE - 1);
            self.current_round_min_rtt = self.current_round_min_rtt.min(micros);
            self.samples = self.samples.saturating_add(1);
        }
        let measured = self.samples >= N_RTT_SAMPLE && self.current_round_min_rtt != NONE;
        match self.phase {
            Phase::SlowStart if measured && self.last_round_min_rtt != NONE => {
                let margin =
                    (self.last_round_min_rtt / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH_MICROS, MAX_RTT_THRESH_MICROS);
                if self.current_round_min_rtt >= self.last_round_min_rtt.saturating_add(margin) {
                    self.css_baseline_min_rtt = self.current_round_min_rtt;
                    self.phase = Phase::Conservative { rounds: 0 };
                }
            }
            Phase::Conservative { .. } if measured && self.current_round_min_rtt < self.css_baseline_min_rtt => {
                // The rise was jitter: back to slow start (RFC 9406 section 4.2, "spurious exit").
                self.css_baseline_min_rtt = NONE;
                self.phase = Phase::SlowStart;
            }
            _ => {}
        }
        match self.phase {
            Phase::Conservative { .. } => Pace::Conservative,
            _ => Pace::SlowStart,
        }
    }

    /// A new round: the last one's minimum is kept, the new one measures afresh.
    fn start_round(&mut self, snd_max: SeqNum) {
        self.round_open = true;
        self.window_end = snd_max;
        self.last_round_min_rtt = self.current_round_min_rtt;
        self.current_round_min_rtt = NONE;
        self.samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Runs one round of `acks` acknowledgments, each measuring `rtt_ms`; the round ends at `*sent`, and the
    /// next one's data is sent as it starts. Returns the pace of each acknowledgment.
    fn round(h: &mut HyStart, sent: &mut u32, acks: u32, rtt_ms: u64) -> Vec<Pace> {
        let start = *sent;
        *sent += acks * 1000;
        (1..=acks).map(|i| h.on_ack(SeqNum(start + i * 1000 - 1000), SeqNum(*sent), Some(rtt_ms * MS))).collect()
    }

    #[test]
    fn a_steady_round_trip_keeps_slow_start() {
        let mut h = HyStart::new(true);
        let mut sent = 0;
        for _ in 0..10 {
            assert!(round(&mut h, &mut sent, 10, 20).iter().all(|&p| p == Pace::SlowStart));
        }
    }

    #[test]
    fn a_rise_beyond_the_margin_turns_to_conservative_slow_start_then_avoidance() {
        let mut h = HyStart::new(true);
        let mut sent = 0;
        round(&mut h, &mut sent, 10, 40);
        // 40 ms: the margin is 5 ms. Eight samples of 45 ms make the round's minimum a rise.
        let paces = round(&mut h, &mut sent, 10, 45);
        assert_eq!(paces[..7], [Pace::SlowStart; 7], "fewer than eight samples decide nothing");
        assert_eq!(paces[7..], [Pace::Conservative; 3]);
        for _ in 0..CSS_ROUNDS - 1 {
            assert!(round(&mut h, &mut sent, 10, 45).iter().all(|&p| p == Pace::Conservative));
        }
        let paces = round(&mut h, &mut sent, 10, 45);
        assert_eq!(paces[0], Pace::Avoidance, "after five rounds of CSS");
        assert!(!h.watching());
        assert_eq!(paces[1..], [Pace::SlowStart; 9], "no longer HyStart++'s to decide");
    }

    #[test]
    fn a_rise_under_the_margin_is_not_one() {
        let mut h = HyStart::new(true);
        let mut sent = 0;
        round(&mut h, &mut sent, 10, 10);
        // 10 ms: an eighth is under the 4 ms floor, so 13 ms is no rise, 14 ms is.
        assert!(round(&mut h, &mut sent, 10, 13).iter().all(|&p| p == Pace::SlowStart));
        round(&mut h, &mut sent, 10, 13);
        assert_eq!(round(&mut h, &mut sent, 10, 17).last(), Some(&Pace::Conservative));
    }

    #[test]
    fn a_round_trip_back_under_the_baseline_resumes_slow_start() {
        let mut h = HyStart::new(true);
        let mut sent = 0;
        round(&mut h, &mut sent, 10, 40);
        assert_eq!(round(&mut h, &mut sent, 10, 50).last(), Some(&Pace::Conservative));
        assert_eq!(round(&mut h, &mut sent, 10, 41).last(), Some(&Pace::SlowStart), "jitter, not a queue");
        assert!(h.watching());
    }

    #[test]
    fn without_samples_or_when_stopped_slow_start_runs_as_always() {
        let mut h = HyStart::new(true);
        for i in 0..100u32 {
            assert_eq!(h.on_ack(SeqNum(i * 1000), SeqNum(i * 1000 + 5000), None), Pace::SlowStart);
        }
        h.stop();
        assert!(!h.watching());
        let mut off = HyStart::new(false);
        let mut sent = 0;
        round(&mut off, &mut sent, 10, 10);
        assert!(round(&mut off, &mut sent, 10, 100).iter().all(|&p| p == Pace::SlowStart));
    }
}
