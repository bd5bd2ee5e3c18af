//! RACK (RFC 8985 section 6): loss detection by time instead of by counting duplicate acknowledgments.
//!
//! A segment is lost when a segment sent *after* it has been delivered and more than a round trip plus a
//! reordering window has passed since it was sent. This finds losses that three duplicate ACKs never
//! announce — in a flight of fewer than four segments, or a retransmission lost again — and tolerates
//! reordering by time rather than by a packet count.
//!
//! The sender keeps a log of what it sent and when, in sequence order. Entries for bytes sent in the same
//! instant and contiguous merge, so a burst costs one entry and the steady state (nothing lost) looks at the
//! first entry only. The log needs SACK: without it nothing above a hole is known to be delivered.

use super::sack_scoreboard::Scoreboard;
use super::seq::SeqNum;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// RFC 8985 section 6.2 step 4 (and Linux): after a DSACK widened the window, keep it for 16 recoveries.
const REO_WND_PERSIST: u8 = 16;
/// Entries kept at most; beyond, new bytes join the last entry, which only makes RACK coarser there.
const MAX_ENTRIES: usize = 4096;

/// Bytes sent at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    start: SeqNum,
    end: SeqNum,
    /// When these bytes were last sent (Segment.xmit_ts).
    sent_at: Instant,
    retransmitted: bool,
    /// Selectively acknowledged: delivered.
    sacked: bool,
    /// Marked lost and not yet retransmitted.
    lost: bool,
}

impl Sent {
    fn len(&self) -> usize {
        self.end.since(self.start)
    }
}

/// RACK's state for one connection.
#[derive(Debug, Clone, Default)]
pub struct Rack {
    log: VecDeque<Sent>,
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent bytes known to be delivered.
    newest_delivered: Option<(Instant, SeqNum)>,
    /// RACK.rtt: the round trip of those bytes, in nanoseconds (taken on every ACK: see
    /// [`Instant::nanos_since`]).
    rtt: u64,
    /// The lowest round trip seen (RACK.min_RTT), in nanoseconds.
    min_rtt: Option<u64>,
    /// RACK.fack: the highest sequence number delivered.
    fack: Option<SeqNum>,
    /// RACK.reordering_seen: bytes were delivered below `fack` without having been retransmitted.
    reordering_seen: bool,
    /// RACK.reo_wnd_mult, RACK.reo_wnd_persist and RACK.dsack_round (section 6.2 step 4).
    reo_wnd_mult: u8,
    reo_wnd_persist: u8,
    dsack_round: Option<SeqNum>,
    /// Bytes marked lost and not yet retransmitted (they leave the pipe, RFC 6675 section 2).
    lost_bytes: usize,
}

/// `t1, s1` was sent after `t2, s2` (RFC 8985 section 6.2, RACK_sent_after): later, or at the same time
/// with a higher sequence number.
fn sent_after(t1: Instant, s1: SeqNum, t2: Instant, s2: SeqNum) -> bool {
    t1 > t2 || (t1 == t2 && s1.gt(s2))
}

impl Rack {
    /// Bytes `[start, end)` went out at `now`: new data appends to the log, a retransmission restamps its
    /// bytes (splitting entries at its edges) and clears their lost mark.
    pub fn on_sent(&mut self, start: SeqNum, end: SeqNum, now: Instant, retransmission: bool) {
        if !start.lt(end) {
            return;
        }
        if !retransmission {
            let full = self.log.len() >= MAX_ENTRIES;
            if let Some(last) = self.log.back_mut() {
                let fresh = !last.retransmitted && !last.sacked && !last.lost;
                if last.end == start && fresh && (last.sent_at == now || full) {
                    last.end = end;
                    last.sent_at = now;
                    return;
                }
            }
            let entry = Sent { start, end, sent_at: now, retransmitted: false, sacked: false, lost: false };
            self.log.push_back(entry);
            return;
        }
        self.split_at(start);
        self.split_at(end);
        for e in self.log.iter_mut().filter(|e| !e.start.lt(start) && !end.lt(e.end)) {
            if e.lost {
                self.lost_bytes -= e.len();
            }
            e.sent_at = now;
            e.retransmitted = true;
            e.lost = false;
        }
    }

    /// Splits the entry containing `seq` (not at its start) in two at `seq` — unless the log is full: a
    /// receiver SACKing every other byte must not grow it without bound. RACK is then coarser there (a
    /// partly SACKed entry counts as not delivered).
    fn split_at(&mut self, seq: SeqNum) {
        if self.log.len() >= MAX_ENTRIES {
            return;
        }
        let Some(i) = self.log.iter().position(|e| e.start.lt(seq) && seq.lt(e.end)) else { return };
        let mut tail = self.log[i];
        tail.start = seq;
        self.log[i].end = seq;
        self.log.insert(i + 1, tail);
    }

    /// An acknowledgment arrived at `now`: everything below `snd_una` and everything `sacked` holds is
    /// delivered. RFC 8985 section 6.2 steps 1 to 3: remember the most recently sent delivered bytes and
    /// their round trip, and whether delivery revealed reordering.
    #[link_section = ".text.hot.ustack"]
    pub fn on_ack(&mut self, now: Instant, snd_una: SeqNum, sacked: &Scoreboard) {
        while let Some(front) = self.log.front().copied() {
            if !front.end.gt(snd_una) {
                self.log.pop_front();
                if front.lost {
                    self.lost_bytes -= front.len();
                }
                if !front.sacked {
                    self.delivered(now, &front);
                }
                continue;
            }
            if front.start.lt(snd_una) {
                // Acknowledged in part: the rest stays, still awaiting delivery.
                if front.lost {
                    self.lost_bytes -= snd_una.since(front.start);
                }
                if let Some(f) = self.log.front_mut() {
                    f.start = snd_una;
                }
            }
            break;
        }
        // RFC 8985 section 6.2 step 4's DSACK round ends once SND.UNA reaches it (and so cannot wrap later).
        if self.dsack_round.is_some_and(|r| !snd_una.lt(r)) {
            self.dsack_round = None;
        }
        if sacked.is_empty() {
            return;
        }
        // One pass over the log and the (sorted) SACKed ranges together.
        let ranges = sacked.ranges();
        let (mut i, mut j) = (0, 0);
        while i < self.log.len() {
            let e = self.log[i];
            while j < ranges.len() && !e.start.lt(ranges[j].1) {
                j += 1;
            }
            let Some(&(sack_start, sack_end)) = ranges.get(j) else { break };
            if e.sacked || !sack_start.lt(e.end) {
                i += 1;
                continue;
            }
            if e.start.lt(sack_start) {
                // The SACKed range begins inside this entry: its later part is looked at next.
                self.split_at(sack_start);
                i += 1;
                continue;
            }
            if sack_end.lt(e.end) {
                self.split_at(sack_end);
            }
            let e = self.log[i];
            if e.end.le(sack_end) {
                if e.lost {
                    self.lost_bytes -= e.len();
                }
                self.log[i].sacked = true;
                self.log[i].lost = false;
                self.delivered(now, &e);
            }
            i += 1;
        }
    }

    /// After a second timeout the receiver's SACKs are no longer trusted (RFC 2018 section 8): nothing in the
    /// log counts as delivered any more.
    pub fn forget_sacks(&mut self) {
        for e in self.log.iter_mut() {
            e.sacked = false;
        }
    }

    /// RFC 8985 section 6.2 steps 2 and 3 for delivered bytes `e`.
    fn delivered(&mut self, now: Instant, e: &Sent) {
        let rtt = now.nanos_since(e.sent_at);
        if !e.retransmitted {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            // Step 3: delivered below the highest delivered sequence, never resent: the network reordered.
            if self.fack.is_some_and(|f| e.end.lt(f)) {
                self.reordering_seen = true;
            }
        } else if self.min_rtt.is_some_and(|m| rtt < m) {
            // Step 2: an ACK for a retransmission sooner than any round trip is for the original: ambiguous.
            return;
        }
        self.fack = Some(self.fack.map_or(e.end, |f| f.max(e.end)));
        let newer = self.newest_delivered.is_none_or(|(t, s)| sent_after(e.sent_at, e.end, t, s));
        if newer {
            self.newest_delivered = Some((e.sent_at, e.end));
            self.rtt = rtt;
        }
    }

    /// A DSACK arrived (RFC 8985 section 6.2 step 4): a retransmission was spurious, so the reordering
    /// window widens by a quarter of the minimum RTT, once per round trip, and stays wider for a while.
    pub fn on_dsack(&mut self, snd_una: SeqNum, snd_nxt: SeqNum) {
        if self.dsack_round.is_some_and(|r| !snd_una.lt(r)) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = self.reo_wnd_mult.max(1).saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// A recovery ended: after 16 without a DSACK the reordering window returns to its base.
    pub fn on_recovery_end(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
        }
    }

    /// RACK.reo_wnd (RFC 8985 section 6.2 step 4): none until reordering is seen, while recovering, or once
    /// as many segments were SACKed as three duplicate ACKs would count (so RACK is never slower than
    /// DupThresh); otherwise a quarter of the minimum RTT per step of the multiplier, at most SRTT.
    fn reo_wnd(&self, srtt: Option<Duration>, recovering: bool, sacked_segments: usize) -> Duration {
        if !self.reordering_seen && (recovering || sacked_segments >= 3) {
            return Duration::ZERO;
        }
        let base = Duration::from_nanos(self.min_rtt.unwrap_or_default() / 4);
        let wnd = base.saturating_mul(u32::from(self.reo_wnd_mult.max(1)));
        srtt.map_or(wnd, |s| wnd.min(s))
    }

    /// RFC 8985 section 6.2 step 5: marks lost every byte sent before the newest delivered ones that has
    /// waited longer than RACK.rtt + reo_wnd. Returns when bytes still inside that time would be due (for
    /// the reordering timer), if any.
    pub fn detect_losses(
        &mut self,
        now: Instant,
        srtt: Option<Duration>,
        recovering: bool,
        sacked_segments: usize,
    ) -> Option<Instant> {
        let (newest_at, newest_end) = self.newest_delivered?;
        // The common case, nothing lost: the oldest bytes outstanding went out after the newest delivered.
        let first = self.log.front()?;
        if !first.retransmitted && !sent_after(newest_at, newest_end, first.sent_at, first.end) {
            return None;
        }
        let wait = Duration::from_nanos(self.rtt).saturating_add(self.reo_wnd(srtt, recovering, sacked_segments));
        let mut due: Option<Instant> = None;
        for e in self.log.iter_mut() {
            if !sent_after(newest_at, newest_end, e.sent_at, e.end) {
                // Sent after the newest delivered bytes: so is every later first transmission.
                if !e.retransmitted {
                    break;
                }
                continue;
            }
            // A retransmission stamped with the very instant of the newest delivered bytes went out after them
            // (a clock tick holds many sends): only an earlier one can be overdue.
            if e.sacked || e.lost || (e.retransmitted && e.sent_at >= newest_at) {
                continue;
            }
            let deadline = e.sent_at + wait;
            if deadline <= now {
                e.lost = true;
                self.lost_bytes += e.len();
            } else {
                // Linux and the RFC wait for the latest of them, so one timer covers all.
                due = Some(due.map_or(deadline, |d| d.max(deadline)));
            }
        }
        due
    }

    /// The first bytes marked lost and not yet retransmitted, at or after `from`.
    pub fn next_lost(&self, from: SeqNum) -> Option<(SeqNum, SeqNum)> {
        self.log.iter().find(|e| e.lost && from.lt(e.end)).map(|e| (e.start.max(from), e.end))
    }

    /// Bytes marked lost and not yet retransmitted.
    pub fn lost_bytes(&self) -> usize {
        self.lost_bytes
    }

    /// The last bytes sent, the candidates for a tail loss probe (`[start, end)` of the log's last entry).
    pub fn last_sent(&self) -> Option<(SeqNum, SeqNum)> {
        self.log.back().map(|e| (e.start, e.end))
    }

    /// A retransmission timeout resends everything from SND.UNA: lost marks no longer mean anything.
    pub fn on_timeout(&mut self) {
        for e in self.log.iter_mut() {
            e.lost = false;
        }
        self.lost_bytes = 0;
    }

    /// Entries in the log (for tests and bounds checks).
    pub fn entries(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    fn sacked(blocks: &[(u32, u32)], una: u32) -> Scoreboard {
        let mut sb = Scoreboard::default();
        let blocks: Vec<_> = blocks.iter().map(|&(a, b)| (s(a), s(b))).collect();
        sb.update(s(una), s(1_000_000), &blocks);
        sb
    }

    /// Ten segments sent one millisecond apart, a round trip of 100 ms.
    fn ten_segments() -> Rack {
        let mut r = Rack::default();
        for i in 0..10 {
            r.on_sent(s(i * 1000), s(i * 1000 + 1000), at(u64::from(i)), false);
        }
        r
    }

    #[test]
    fn a_burst_sent_at_once_is_one_entry() {
        let mut r = Rack::default();
        for i in 0..40 {
            r.on_sent(s(i * 1000), s(i * 1000 + 1000), at(5), false);
        }
        assert_eq!(r.entries(), 1);
        r.on_ack(at(105), s(40_000), &Scoreboard::default());
        assert_eq!(r.entries(), 0);
        assert_eq!(r.rtt, 100_000_000, "100 ms");
    }

    /// RFC 8985 section 6.2 step 5: the first segment is lost once the last one is SACKed and RACK.rtt plus
    /// the reordering window has passed — one SACKed segment is enough, no three duplicate ACKs needed.
    #[test]
    fn a_segment_is_lost_when_a_later_one_is_delivered_and_its_time_is_up() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(1000, 2000)], 0));
        // RACK.rtt is segment 1's 99 ms. Reordering was never seen, but only one segment is SACKed: the window
        // is a quarter of the minimum RTT.
        let due = r.detect_losses(at(100), Some(Duration::from_millis(100)), false, 1);
        assert_eq!(r.lost_bytes(), 0, "segment 0 was sent 1 ms before segment 1: not overdue yet");
        assert_eq!(due, Some(at(0) + Duration::from_millis(99) + Duration::from_millis(99) / 4));
        assert_eq!(r.detect_losses(at(125), Some(Duration::from_millis(100)), false, 1), None);
        assert_eq!(r.lost_bytes(), 1000);
        assert_eq!(r.next_lost(s(0)), Some((s(0), s(1000))));
        assert_eq!(r.next_lost(s(1000)), None, "only bytes sent before the delivered segment can be lost");
    }

    #[test]
    fn a_retransmission_clears_the_mark_and_can_be_lost_again() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(1000, 2000)], 0));
        r.detect_losses(at(200), None, true, 1);
        assert_eq!(r.lost_bytes(), 1000);
        r.on_sent(s(0), s(500), at(200), true);
        assert_eq!(r.lost_bytes(), 500, "half retransmitted: the other half is still lost");
        r.on_sent(s(500), s(1000), at(200), true);
        assert_eq!(r.lost_bytes(), 0);
        // Later data is delivered; the retransmission is not, and in time it is lost again.
        r.on_sent(s(10_000), s(11_000), at(201), false);
        r.on_ack(at(301), s(0), &sacked(&[(1000, 2000), (10_000, 11_000)], 0));
        r.detect_losses(at(400), None, true, 2);
        assert_eq!(r.next_lost(s(0)), Some((s(0), s(500))), "a lost retransmission is found without a timeout");
    }

    #[test]
    fn reordering_seen_widens_nothing_below_the_min_rtt_quarter() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(5000, 6000)], 0));
        r.on_ack(at(101), s(0), &sacked(&[(2000, 3000), (5000, 6000)], 0));
        assert!(r.reordering_seen, "segment 2 arrived after segment 5: reordering");
        r.detect_losses(at(110), Some(Duration::from_millis(100)), false, 2);
        assert_eq!(r.lost_bytes(), 0, "within RACK.rtt + min_rtt/4 of their sending");
        r.detect_losses(at(130), Some(Duration::from_millis(100)), false, 2);
        assert_eq!(r.lost_bytes(), 4 * 1000, "segments 0, 1, 3 and 4 are overdue; 2 and 5 were delivered");
    }

    #[test]
    fn a_dsack_widens_the_window() {
        let mut r = ten_segments();
        r.reordering_seen = true;
        r.min_rtt = Some(100_000_000);
        assert_eq!(r.reo_wnd(Some(Duration::from_secs(1)), false, 0), Duration::from_millis(25));
        r.on_dsack(s(0), s(10_000));
        assert_eq!(r.reo_wnd(Some(Duration::from_secs(1)), false, 0), Duration::from_millis(50));
        r.on_dsack(s(0), s(10_000));
        assert_eq!(r.reo_wnd_mult, 2, "once per round trip");
        assert_eq!(r.reo_wnd(Some(Duration::from_millis(30)), false, 0), Duration::from_millis(30), "at most SRTT");
        for _ in 0..REO_WND_PERSIST {
            r.on_recovery_end();
        }
        assert_eq!(r.reo_wnd_mult, 1);
    }

    /// A receiver SACKing every other byte cannot grow the log past its bound.
    #[test]
    fn hostile_sacks_cannot_grow_the_log_without_bound() {
        let mut r = Rack::default();
        r.on_sent(s(0), s(1_000_000), at(0), false);
        for round in 0..200u32 {
            let blocks: Vec<(u32, u32)> = (0..4)
                .map(|k| {
                    let b = (round * 4 + k) * 2 + 1;
                    (b, b + 1)
                })
                .collect();
            r.on_ack(at(1), s(0), &sacked(&blocks, 0));
        }
        for i in 0..10_000u32 {
            r.on_ack(at(2), s(0), &sacked(&[(i * 4 + 1, i * 4 + 2)], 0));
        }
        assert!(r.entries() <= MAX_ENTRIES + 1, "{} entries", r.entries());
    }

    #[test]
    fn acknowledged_bytes_leave_the_log_and_the_lost_count() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(3000, 4000)], 0));
        r.detect_losses(at(300), None, true, 1);
        assert_eq!(r.lost_bytes(), 3000);
        r.on_ack(at(301), s(1500), &sacked(&[(3000, 4000)], 1500));
        assert_eq!(r.lost_bytes(), 1500, "one lost segment and half of another acknowledged");
        r.on_ack(at(302), s(10_000), &Scoreboard::default());
        assert_eq!((r.lost_bytes(), r.entries()), (0, 0));
        r.on_timeout();
        assert_eq!(r.lost_bytes(), 0);
    }
}
