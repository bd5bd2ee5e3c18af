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

use super::connection::Timestamps;
use super::rtt::RttEstimator;
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
    /// RACK.rtt: the round trip of the most recently sent bytes the latest ACK delivered, in nanoseconds
    /// (see [`Instant::nanos_since`]). Not necessarily `newest_delivered`'s: see [`Rack::on_ack`].
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
    /// The round trip of `newest_delivered`, in nanoseconds.
    newest_rtt: u64,
    /// The reordering measured (nanoseconds): the most by which a segment's round trip exceeded that of a
    /// segment sent after it and delivered before it. See [`Rack::reo_wnd`].
    reordering_extent: u64,
}

/// Where an ACK's timestamp echo (RFC 7323's TSecr) can be read: the ACK's timestamp option and the
/// connection's timestamp state. Only references, read only for resent bytes (RFC 8985 section 6.2 step 2
/// asks which of their transmissions the ACK answers), so the common ACK pays nothing for it.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a> {
    option: &'a Option<(u32, u32)>,
    negotiated: &'a Option<Timestamps>,
}

impl<'a> Echo<'a> {
    /// The ACK's timestamp option (TSval, TSecr) on a connection with `negotiated` timestamps, if any.
    pub fn new(option: &'a Option<(u32, u32)>, negotiated: &'a Option<Timestamps>) -> Echo<'a> {
        Echo { option, negotiated }
    }

    /// No timestamps at all: the round-trip test alone decides (for tests).
    #[cfg(test)]
    const NONE: Echo<'static> = Echo { option: &None, negotiated: &None };

    /// The echoed timestamp was taken before the millisecond of `sent_at`: it belongs to an earlier
    /// transmission. Our timestamps are [`Instant::as_millis`] plus the connection's offset; the comparison is
    /// modulo 2^32 ms (RFC 7323 section 5.2). A zero echo counts as none, as for RTT samples (Linux's rule
    /// too: zero is what a peer with nothing to echo sends).
    fn is_older_than(self, sent_at: Instant) -> bool {
        let (Some((_, tsecr)), Some(ts)) = (*self.option, self.negotiated) else { return false };
        let sent = (sent_at.as_millis() as u32).wrapping_add(ts.offset);
        tsecr != 0 && (tsecr.wrapping_sub(sent) as i32) < 0
    }
}

/// The most recently sent bytes one ACK delivered, and their round trip in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct NewestOfAck {
    sent_at: Instant,
    end: SeqNum,
    rtt: u64,
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
    /// delivered. RFC 8985 section 6.2 steps 1 to 3: remember the most recently sent delivered bytes, the
    /// round trip of the most recently sent bytes *this* ACK delivered, and whether delivery revealed
    /// reordering.
    ///
    /// The two differ under deep reordering, and the difference matters: a segment that overtook the ones
    /// sent before it stays the newest delivered, but its short round trip is not theirs. When the ACK for
    /// those comes, RACK.rtt becomes their (longer) round trip, so the segments still missing between them
    /// get as long to arrive as their neighbours took, instead of being declared lost a round trip early.
    ///
    /// `echo` tells, for resent bytes, which transmission the ACK answers ([`Echo`]).
    #[link_section = ".text.hot.ustack"]
    pub fn on_ack(&mut self, now: Instant, snd_una: SeqNum, sacked: &Scoreboard, echo: Echo<'_>) {
        let mut newest_of_ack = None;
        self.deliver_acked(now, snd_una, sacked, echo, &mut newest_of_ack);
        if let Some(NewestOfAck { rtt, .. }) = newest_of_ack {
            self.rtt = rtt;
        }
    }

    /// [`Rack::on_ack`]'s walk over the log, gathering the most recently sent bytes delivered in `newest`.
    #[inline(always)]
    fn deliver_acked(
        &mut self,
        now: Instant,
        snd_una: SeqNum,
        sacked: &Scoreboard,
        echo: Echo<'_>,
        newest: &mut Option<NewestOfAck>,
    ) {
        while let Some(front) = self.log.front().copied() {
            if !front.end.gt(snd_una) {
                self.log.pop_front();
                if front.lost {
                    self.lost_bytes -= front.len();
                }
                if !front.sacked {
                    self.delivered(now, &front, echo, newest);
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
                self.delivered(now, &e, echo, newest);
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

    /// RFC 8985 section 6.2 steps 2 and 3 for delivered bytes `e`; `newest` keeps the most recently sent
    /// bytes of this ACK.
    #[inline(always)] // on the per-segment path, as it was before the echo joined its arguments
    fn delivered(&mut self, now: Instant, e: &Sent, echo: Echo<'_>, newest: &mut Option<NewestOfAck>) {
        let rtt = now.nanos_since(e.sent_at);
        if !e.retransmitted {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            // Step 3: delivered below the highest delivered sequence, never resent: the network reordered.
            if self.fack.is_some_and(|f| e.end.lt(f)) {
                self.reordering_seen = true;
                self.measure_reordering(rtt.saturating_sub(self.newest_rtt));
            }
        } else if !self.answers_retransmission(rtt, e.sent_at, echo) {
            return;
        }
        self.fack = Some(self.fack.map_or(e.end, |f| f.max(e.end)));
        if self.newest_delivered.is_none_or(|(t, s)| sent_after(e.sent_at, e.end, t, s)) {
            self.newest_delivered = Some((e.sent_at, e.end));
            self.newest_rtt = rtt;
        }
        if newest.is_none_or(|n| sent_after(e.sent_at, e.end, n.sent_at, n.end)) {
            *newest = Some(NewestOfAck { sent_at: e.sent_at, end: e.end, rtt });
        }
    }

    /// RFC 8985 section 6.2 step 2: whether the delivery of resent bytes, `rtt` after their last
    /// transmission at `resent_at`, may be taken as that transmission's. Not when the ACK echoes a timestamp
    /// older than the retransmission (a late original got through), nor when it came sooner than any round
    /// trip could (it answers an earlier transmission; this is the only test without timestamps).
    ///
    /// Without the first test a late original's ACK counted as a retransmission's delivery of a few
    /// microseconds, and everything sent before the retransmission then looked as late as the original.
    ///
    /// A SACK of resent bytes echoes the timestamp of the last segment that arrived in order (RFC 7323 section
    /// 4.3), older than the retransmission, so it never moves RACK on: only a cumulative ACK does. That is
    /// the RFC's rule, and the cautious side: RACK then learns of later transmissions from new data.
    #[inline(never)] // only for resent bytes, off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn answers_retransmission(&self, rtt: u64, resent_at: Instant, echo: Echo<'_>) -> bool {
        if echo.is_older_than(resent_at) {
            return false;
        }
        self.min_rtt.is_none_or(|m| rtt >= m)
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

    /// Bytes arrived `lateness` nanoseconds after the round trip of bytes sent after them: had the reordering
    /// window been shorter, RACK would have declared them lost although they were only overtaken. The window
    /// keeps the longest such lateness, for as long as a DSACK would keep it widened.
    fn measure_reordering(&mut self, lateness: u64) {
        if lateness > self.reordering_extent {
            self.reordering_extent = lateness;
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// A recovery ended: after 16 without a DSACK or a longer reordering the window returns to its base.
    pub fn on_recovery_end(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
            self.reordering_extent = 0;
        }
    }

    /// RACK.reo_wnd (RFC 8985 section 6.2 step 4): none until reordering is seen, while recovering, or once
    /// as many segments were SACKed as three duplicate ACKs would count (so RACK is never slower than
    /// DupThresh); otherwise a quarter of the minimum RTT per step of the multiplier, at most SRTT.
    ///
    /// ustack also widens it to the reordering it measured ([`Rack::measure_reordering`]), up to the longest
    /// round trip the RTT estimator expects (SRTT + 4·RTTVAR). The RFC's window grows by a quarter of min_RTT
    /// per round trip with DSACKs, which adapts within a few round trips when min_RTT is near the path's usual
    /// round trip. But the fastest round trip can be far below the usual one (frames that take a shorter path
    /// or skip a queue: with netem's `reorder` and 1 ms of delay each way, min_RTT is some 30 µs), and then
    /// the window needs hundreds of round trips to reach the reordering, each of them marking overtaken
    /// segments lost and cutting the congestion window. Nor is SRTT a bound then: the early frames pull it
    /// below the round trip of those they overtook.
    pub fn reo_wnd(&self, rtt: &RttEstimator, recovering: bool, sacked_segments: usize) -> Duration {
        if !self.reordering_seen && (recovering || sacked_segments >= 3) {
            return Duration::ZERO;
        }
        let base = Duration::from_nanos(self.min_rtt.unwrap_or_default() / 4);
        let by_dsack = base.saturating_mul(u32::from(self.reo_wnd_mult.max(1)));
        let by_dsack = rtt.srtt().map_or(by_dsack, |s| by_dsack.min(s));
        let measured = Duration::from_nanos(self.reordering_extent);
        let measured = rtt.longest_expected().map_or(measured, |l| measured.min(l));
        by_dsack.max(measured)
    }

    /// RFC 8985 section 6.2 step 5: marks lost every byte sent before the newest delivered ones that has
    /// waited longer than RACK.rtt + reo_wnd. Returns when bytes still inside that time would be due (for
    /// the reordering timer), if any.
    pub fn detect_losses(
        &mut self,
        now: Instant,
        rtt: &RttEstimator,
        recovering: bool,
        sacked_segments: usize,
    ) -> Option<Instant> {
        let (newest_at, newest_end) = self.newest_delivered?;
        // The common case, nothing lost: the oldest bytes outstanding went out after the newest delivered.
        let first = self.log.front()?;
        if !first.retransmitted && !sent_after(newest_at, newest_end, first.sent_at, first.end) {
            return None;
        }
        let wait = Duration::from_nanos(self.rtt).saturating_add(self.reo_wnd(rtt, recovering, sacked_segments));
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

    /// RACK.min_RTT, once a round trip was measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(Duration::from_nanos)
    }

    /// RACK.reordering_seen.
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
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

    /// An RTT estimator after one sample of `srtt_ms`: SRTT that, RTTVAR half of it.
    fn estimator(srtt_ms: u64) -> RttEstimator {
        let mut e = RttEstimator::default();
        e.sample(Duration::from_millis(srtt_ms));
        e
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
        r.on_ack(at(105), s(40_000), &Scoreboard::default(), Echo::NONE);
        assert_eq!(r.entries(), 0);
        assert_eq!(r.rtt, 100_000_000, "100 ms");
    }

    /// RFC 8985 section 6.2 step 5: the first segment is lost once the last one is SACKed and RACK.rtt plus
    /// the reordering window has passed — one SACKed segment is enough, no three duplicate ACKs needed.
    #[test]
    fn a_segment_is_lost_when_a_later_one_is_delivered_and_its_time_is_up() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(1000, 2000)], 0), Echo::NONE);
        // RACK.rtt is segment 1's 99 ms. Reordering was never seen, but only one segment is SACKed: the window
        // is a quarter of the minimum RTT.
        let due = r.detect_losses(at(100), &estimator(100), false, 1);
        assert_eq!(r.lost_bytes(), 0, "segment 0 was sent 1 ms before segment 1: not overdue yet");
        assert_eq!(due, Some(at(0) + Duration::from_millis(99) + Duration::from_millis(99) / 4));
        assert_eq!(r.detect_losses(at(125), &estimator(100), false, 1), None);
        assert_eq!(r.lost_bytes(), 1000);
        assert_eq!(r.next_lost(s(0)), Some((s(0), s(1000))));
        assert_eq!(r.next_lost(s(1000)), None, "only bytes sent before the delivered segment can be lost");
    }

    #[test]
    fn a_retransmission_clears_the_mark_and_can_be_lost_again() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(1000, 2000)], 0), Echo::NONE);
        r.detect_losses(at(200), &RttEstimator::default(), true, 1);
        assert_eq!(r.lost_bytes(), 1000);
        r.on_sent(s(0), s(500), at(200), true);
        assert_eq!(r.lost_bytes(), 500, "half retransmitted: the other half is still lost");
        r.on_sent(s(500), s(1000), at(200), true);
        assert_eq!(r.lost_bytes(), 0);
        // Later data is delivered; the retransmission is not, and in time it is lost again.
        r.on_sent(s(10_000), s(11_000), at(201), false);
        r.on_ack(at(301), s(0), &sacked(&[(1000, 2000), (10_000, 11_000)], 0), Echo::NONE);
        r.detect_losses(at(400), &RttEstimator::default(), true, 2);
        assert_eq!(r.next_lost(s(0)), Some((s(0), s(500))), "a lost retransmission is found without a timeout");
    }

    #[test]
    fn reordering_seen_widens_nothing_below_the_min_rtt_quarter() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(5000, 6000)], 0), Echo::NONE);
        r.on_ack(at(101), s(0), &sacked(&[(2000, 3000), (5000, 6000)], 0), Echo::NONE);
        assert!(r.reordering_seen, "segment 2 arrived after segment 5: reordering");
        r.detect_losses(at(110), &estimator(100), false, 2);
        assert_eq!(r.lost_bytes(), 0, "within RACK.rtt + min_rtt/4 of their sending");
        r.detect_losses(at(130), &estimator(100), false, 2);
        assert_eq!(r.lost_bytes(), 4 * 1000, "segments 0, 1, 3 and 4 are overdue; 2 and 5 were delivered");
    }

    #[test]
    fn a_dsack_widens_the_window() {
        let mut r = ten_segments();
        r.reordering_seen = true;
        r.min_rtt = Some(100_000_000);
        assert_eq!(r.reo_wnd(&estimator(1000), false, 0), Duration::from_millis(25));
        r.on_dsack(s(0), s(10_000));
        assert_eq!(r.reo_wnd(&estimator(1000), false, 0), Duration::from_millis(50));
        r.on_dsack(s(0), s(10_000));
        assert_eq!(r.reo_wnd_mult, 2, "once per round trip");
        assert_eq!(r.reo_wnd(&estimator(30), false, 0), Duration::from_millis(30), "at most SRTT");
        for _ in 0..REO_WND_PERSIST {
            r.on_recovery_end();
        }
        assert_eq!(r.reo_wnd_mult, 1);
    }

    /// Segment 9 of ten overtakes the others: SACKed 10 ms after it was sent, where the rest take 100 ms.
    /// Then the cumulative ACK for segment 0 arrives.
    fn overtaken() -> Rack {
        let mut r = ten_segments();
        r.on_ack(at(19), s(0), &sacked(&[(9000, 10_000)], 0), Echo::NONE);
        assert_eq!(r.rtt, 10_000_000);
        r.on_ack(at(100), s(1000), &sacked(&[(9000, 10_000)], 1000), Echo::NONE);
        r
    }

    /// RFC 8985 section 6.2 step 2: RACK.rtt is the round trip of the most recently sent bytes *the latest
    /// ACK* delivered, while RACK.xmit_ts stays with the most recently sent bytes ever delivered. Kept from
    /// segment 9, a 10 ms RACK.rtt would declare segments 1 to 8 lost 90 ms before their time.
    #[test]
    fn rack_rtt_comes_from_the_latest_ack_not_from_the_segment_that_overtook() {
        let r = overtaken();
        assert_eq!(r.rtt, 100_000_000, "segment 0's round trip");
        assert_eq!(r.newest_delivered, Some((at(9), s(10_000))), "segment 9 is still the newest delivered");
    }

    /// Segment 1 is resent at 150 ms, then the cumulative ACK for all ten arrives 15 ms later (min_RTT is 10
    /// ms: the round trip test alone would take it). Which transmission it answers is in its echo.
    fn resent_then_acked(echoed_ms: u32) -> Rack {
        let offset = 7_000;
        let ts = Some(Timestamps { recent: 1, recent_at: at(0), offset });
        let mut r = overtaken();
        r.on_sent(s(1000), s(2000), at(150), true);
        assert!(r.min_rtt.is_some_and(|m| m <= 10_000_000));
        let option = Some((1, echoed_ms.wrapping_add(offset)));
        r.on_ack(at(165), s(10_000), &Scoreboard::default(), Echo::new(&option, &ts));
        r
    }

    /// RFC 8985 section 6.2 step 2: an ACK echoing the timestamp of the original transmission (sent at 1
    /// ms) answers the original, late, not the retransmission: RACK must not take the retransmission's 15 ms
    /// as a round trip, nor its send time as the newest delivered. Echoing the retransmission's timestamp,
    /// it does.
    #[test]
    fn an_echo_older_than_the_retransmission_is_the_original_delivered() {
        let late_original = resent_then_acked(1);
        assert_eq!(late_original.newest_delivered, Some((at(9), s(10_000))));
        assert_eq!(late_original.rtt, 157_000_000, "segment 8's, the newest this ACK delivered that RACK can time");
        let retransmission = resent_then_acked(150);
        assert_eq!(retransmission.newest_delivered, Some((at(150), s(2000))));
        assert_eq!(retransmission.rtt, 15_000_000);
        let no_echo = Some((1, 0));
        let ts = Some(Timestamps { recent: 1, recent_at: at(0), offset: 0 });
        assert!(!Echo::new(&no_echo, &ts).is_older_than(at(150)), "a zero echo is none");
        assert!(!Echo::NONE.is_older_than(at(150)));
        // Modulo 2^32 ms: an echo just before the clock wrapped is older than a send just after.
        let before_wrap = Some((1, u32::MAX));
        assert!(Echo::new(&before_wrap, &ts).is_older_than(at(1)));
    }

    /// Segment 0 arrived 90 ms after the round trip of segment 9, which overtook it: the reordering window
    /// grows to that at once, where DSACKs would add a quarter of min_RTT (2.5 ms) per round trip — 36 round
    /// trips to get there. Bounded by the longest round trip the estimator expects; forgotten as DSACK
    /// widening is.
    #[test]
    fn measured_reordering_widens_the_window_at_once() {
        let mut r = overtaken();
        assert!(r.reordering_seen);
        assert_eq!(r.reo_wnd(&estimator(100), false, 0), Duration::from_millis(90));
        assert_eq!(r.reo_wnd(&estimator(20), false, 0), Duration::from_millis(60), "SRTT + 4 RTTVAR: 20 + 40");
        // Segments 1 to 8 (sent at 1..8 ms) get RACK.rtt + 90 ms before they count as lost.
        let rtt = estimator(100);
        assert_eq!(r.detect_losses(at(120), &rtt, false, 1), Some(at(8) + Duration::from_millis(190)));
        assert_eq!(r.lost_bytes(), 0, "only overtaken so far");
        assert_eq!(r.detect_losses(at(200), &rtt, false, 1), None);
        assert_eq!(r.lost_bytes(), 8 * 1000, "now overdue beyond the reordering ever seen");
        for _ in 0..REO_WND_PERSIST {
            r.on_recovery_end();
        }
        assert_eq!(r.reo_wnd(&rtt, false, 0), Duration::from_micros(2500), "back to min_RTT / 4");
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
            r.on_ack(at(1), s(0), &sacked(&blocks, 0), Echo::NONE);
        }
        for i in 0..10_000u32 {
            r.on_ack(at(2), s(0), &sacked(&[(i * 4 + 1, i * 4 + 2)], 0), Echo::NONE);
        }
        assert!(r.entries() <= MAX_ENTRIES + 1, "{} entries", r.entries());
    }

    #[test]
    fn acknowledged_bytes_leave_the_log_and_the_lost_count() {
        let mut r = ten_segments();
        r.on_ack(at(100), s(0), &sacked(&[(3000, 4000)], 0), Echo::NONE);
        r.detect_losses(at(300), &RttEstimator::default(), true, 1);
        assert_eq!(r.lost_bytes(), 3000);
        r.on_ack(at(301), s(1500), &sacked(&[(3000, 4000)], 1500), Echo::NONE);
        assert_eq!(r.lost_bytes(), 1500, "one lost segment and half of another acknowledged");
        r.on_ack(at(302), s(10_000), &Scoreboard::default(), Echo::NONE);
        assert_eq!((r.lost_bytes(), r.entries()), (0, 0));
        r.on_timeout();
        assert_eq!(r.lost_bytes(), 0);
    }
}
