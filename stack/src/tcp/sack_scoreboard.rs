//! The sender's record of what the peer has selectively acknowledged (RFC 2018, RFC 6675 section 2's
//! "scoreboard"): SACKed ranges above SND.UNA, from which RACK learns what was delivered (`rack.rs`), and
//! which a retransmission after a timeout skips.

use super::seq::{merge_span, SeqNum};

/// Ranges held at most, to bound the work a hostile peer's SACK blocks can cause. A flight of a thousand
/// segments through random loss and reordering holds a hundred holes and more; a scoreboard that forgot
/// SACKed ranges (it held 32 once) overstates the pipe, which stalls sending during recovery until the
/// retransmission timer fires — measured against the kernel once send buffers grew with the window.
const MAX_RANGES: usize = 256;

/// SACKed sequence ranges `[start, end)`, sorted and disjoint, all above SND.UNA.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    ranges: Vec<(SeqNum, SeqNum)>,
}

impl Scoreboard {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Records the blocks of an incoming SACK option. Blocks not within (SND.UNA, SND.MAX] are ignored
    /// (RFC 2018 section 4: a D-SACK or a bogus block must not corrupt the scoreboard).
    pub fn update(&mut self, snd_una: SeqNum, snd_max: SeqNum, blocks: &[(SeqNum, SeqNum)]) {
        for &(start, end) in blocks {
            if !start.lt(end) || !snd_una.lt(end) || end.gt(snd_max) {
                continue;
            }
            self.insert(start.max(snd_una), end);
        }
    }

    fn insert(&mut self, start: SeqNum, end: SeqNum) {
        // Merge with every range that overlaps or touches [start, end).
        let (span, union) = merge_span(&self.ranges, start, end);
        if span.is_empty() && self.ranges.len() >= MAX_RANGES {
            // Keep the bookkeeping bounded: forget the highest range (it will be reported again).
            self.ranges.pop();
            let at = span.start.min(self.ranges.len());
            self.ranges.insert(at, union);
            return;
        }
        self.ranges.splice(span, [union]);
    }

    /// SND.UNA moved to `snd_una`: forget what is now cumulatively acknowledged.
    pub fn advance(&mut self, snd_una: SeqNum) {
        self.ranges.retain_mut(|(s, e)| {
            if e.le(snd_una) {
                return false;
            }
            *s = (*s).max(snd_una);
            true
        });
    }

    /// The SACKed ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(SeqNum, SeqNum)] {
        &self.ranges
    }

    /// Bytes SACKed in all.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges.iter().map(|&(s, e)| e.since(s)).sum()
    }

    /// Bytes SACKed within `[from, to)`.
    pub fn sacked_between(&self, from: SeqNum, to: SeqNum) -> usize {
        self.ranges
            .iter()
            .map(|&(s, e)| {
                let (s, e) = (s.max(from), e.min(to));
                if s.lt(e) {
                    e.since(s)
                } else {
                    0
                }
            })
            .sum()
    }

    /// The SACKed range containing `seq`, if any.
    pub fn sacked_range_at(&self, seq: SeqNum) -> Option<(SeqNum, SeqNum)> {
        self.ranges.iter().copied().find(|&(s, e)| s.le(seq) && seq.lt(e))
    }

    /// The start of the first SACKed range after `seq` (a retransmission starting at `seq` stops there).
    pub fn next_sacked_start(&self, seq: SeqNum) -> Option<SeqNum> {
        self.ranges.iter().map(|&(s, _)| s).find(|s| s.gt(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    #[test]
    fn merges_touching_blocks_and_keeps_ranges_sorted() {
        let mut sb = Scoreboard::default();
        sb.update(s(1000), s(10_000), &[(s(3000), s(4000)), (s(5000), s(6000))]);
        sb.update(s(1000), s(10_000), &[(s(4000), s(5000))]);
        assert_eq!(sb.ranges, vec![(s(3000), s(6000))], "touching blocks merge");
        sb.update(s(1000), s(10_000), &[(s(7000), s(8000))]);
        assert_eq!(sb.ranges(), &[(s(3000), s(6000)), (s(7000), s(8000))], "a hole between them stays open");
        assert_eq!(sb.next_sacked_start(s(6500)), Some(s(7000)));
        assert_eq!(sb.sacked_bytes(), 4000);
        assert_eq!(sb.sacked_range_at(s(7500)), Some((s(7000), s(8000))));
    }

    #[test]
    fn ignores_bogus_blocks_and_advances() {
        let mut sb = Scoreboard::default();
        sb.update(s(1000), s(5000), &[(s(500), s(900)), (s(4000), s(6000)), (s(3000), s(2000))]);
        assert!(sb.is_empty(), "below SND.UNA, beyond SND.MAX, inverted: all ignored");
        sb.update(s(1000), s(5000), &[(s(2000), s(3000)), (s(4000), s(5000))]);
        sb.advance(s(2500));
        assert_eq!(sb.ranges, vec![(s(2500), s(3000)), (s(4000), s(5000))]);
        sb.advance(s(5000));
        assert!(sb.is_empty());
    }

    #[test]
    fn wraps_around_zero() {
        let mut sb = Scoreboard::default();
        let una = s(u32::MAX - 1000);
        sb.update(una, una + 5000, &[(una + 2000, una + 3000)]);
        assert_eq!(sb.ranges(), &[(una + 2000, una + 3000)], "a block past zero is in the window");
        assert_eq!(sb.next_sacked_start(una), Some(una + 2000));
    }

    #[test]
    fn stays_bounded() {
        let mut sb = Scoreboard::default();
        for i in 0..100u32 {
            sb.update(s(0), s(1_000_000), &[(s(i * 100 + 10), s(i * 100 + 20))]);
        }
        assert!(sb.ranges.len() <= MAX_RANGES);
    }
}
