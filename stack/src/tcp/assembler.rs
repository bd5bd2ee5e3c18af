//! Which bytes beyond RCV.NXT we hold: out-of-order data, and the SACK blocks that report it.
//!
//! RFC 9293 section 3.10.7.4: "Segments with higher beginning sequence numbers may be held for later
//! processing." The bytes themselves are parked in the free space of the receive buffer (see
//! [`crate::storage::ring_buffer::RingBuffer::write_at`]); this module only records which ranges of that space
//! hold data. When the bytes at RCV.NXT arrive and the first range becomes contiguous with the queue, it is
//! handed over ([`Assembler::pop_front`]) and RCV.NXT jumps past it.
//!
//! Offsets are relative to RCV.NXT, so they never wrap like sequence numbers do. Ranges are kept sorted and
//! *isolated* (neither overlapping nor touching), which is exactly what a SACK block must describe (RFC 2018
//! section 3: "the bytes just below the block ... and just above the block ... have not been received").
//!
//! The number of ranges is bounded: each costs a SACK block's worth of bookkeeping and a peer could otherwise
//! make us track one range per byte. A segment that would need one range too many is refused, and its sender
//! will retransmit it.

/// A new range would exceed the limit; nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRanges;

/// A run of held bytes `[start, end)` and when it last grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
    /// The value of the arrival counter when data last landed in this range: the SACK ordering key.
    updated: u64,
}

/// The ranges of out-of-order bytes held past RCV.NXT.
#[derive(Debug, Clone)]
pub struct Assembler {
    /// Sorted by offset, isolated, non-empty; at most `max_ranges` of them.
    ranges: Vec<Range>,
    max_ranges: usize,
    /// Counts the calls to `add` that recorded data; the most recent range has the highest value.
    arrivals: u64,
}

impl Assembler {
    /// Holds nothing; will track at most `max_ranges` separate ranges.
    pub fn new(max_ranges: usize) -> Self {
        Assembler { ranges: Vec::new(), max_ranges, arrivals: 0 }
    }

    /// The limit on separate ranges.
    pub fn max_ranges(&self) -> usize {
        self.max_ranges
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The held ranges as half-open `(start, end)` offsets from RCV.NXT, in offset order.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().map(|r| (r.start, r.end))
    }

    /// Bytes held in all ranges.
    pub fn held_bytes(&self) -> usize {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Records that bytes `[offset, offset + len)` are held, merging with the ranges they overlap or touch.
    /// The range that contains them becomes the most recent one for SACK (even for a duplicate: RFC 2018
    /// section 4 reports the block containing the segment that triggered the ACK). Refuses, changing nothing,
    /// when the bytes touch no range and `max_ranges` are already held.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyRanges> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        // The ranges that overlap or touch [offset, end) are consecutive: from the first that ends at or after
        // `offset` up to (not including) the first that starts after `end`.
        let first = self.ranges.partition_point(|r| r.end < offset);
        let last = self.ranges.partition_point(|r| r.start <= end);
        if first == last && self.ranges.len() >= self.max_ranges {
            return Err(TooManyRanges);
        }
        self.arrivals += 1;
        let mut merged = Range { start: offset, end, updated: self.arrivals };
        if first == last {
            self.ranges.insert(first, merged);
        } else {
            merged.start = merged.start.min(self.ranges[first].start);
            merged.end = merged.end.max(self.ranges[last - 1].end);
            self.ranges[first] = merged;
            self.ranges.drain(first + 1..last);
        }
        Ok(())
    }

    /// If a range starts at RCV.NXT (offset 0), removes it and returns its length: those bytes are now in
    /// order, and RCV.NXT advances past them, so the remaining ranges move down by as much. Otherwise 0.
    pub fn pop_front(&mut self) -> usize {
        match self.ranges.first() {
            Some(front) if front.start == 0 => {
                let n = front.end;
                self.ranges.remove(0);
                for r in &mut self.ranges {
                    // Isolated ranges start past the popped one's end.
                    r.start -= n;
                    r.end -= n;
                }
                n
            }
            _ => 0,
        }
    }

    /// RCV.NXT advanced by `n` bytes that arrived in order: ranges wholly before it are dropped, a range it
    /// reaches into is trimmed to start at the new RCV.NXT (and is then ready for `pop_front`), and the rest
    /// move down by `n`.
    pub fn shift(&mut self, n: usize) {
        self.ranges.retain_mut(|r| {
            if r.end <= n {
                return false;
            }
            r.start = r.start.saturating_sub(n);
            r.end -= n;
            true
        });
    }

    /// Forgets held bytes at offset `limit` and beyond: the receive buffer's free space shrank to `limit`.
    pub fn truncate(&mut self, limit: usize) {
        self.ranges.retain_mut(|r| {
            r.end = r.end.min(limit);
            r.start < r.end
        });
    }

    /// Fills `out` with SACK blocks, as `(start, end)` offsets from RCV.NXT, and returns how many. RFC 2018
    /// section 4: "The first SACK block ... MUST specify the contiguous block of data containing the segment
    /// which triggered this ACK"; the others follow, most recently updated first, which repeats the blocks
    /// reported most recently as the RFC recommends, so that each block is sent in several ACKs in case some
    /// are lost. Pass 3 slots when the timestamp option takes part of the 40 option bytes, 4 otherwise.
    ///
    /// A selection in O(`out.len()` x ranges), with no allocation: it runs for every ACK sent.
    pub fn sack_blocks_into(&self, out: &mut [(usize, usize)]) -> usize {
        let mut count = 0;
        // Each pass takes the most recent range older than the one taken before (`updated` values are distinct).
        let mut older_than = u64::MAX;
        for slot in out.iter_mut() {
            let Some(next) = self.ranges.iter().filter(|r| r.updated < older_than).max_by_key(|r| r.updated) else {
                break;
            };
            *slot = (next.start, next.end);
            older_than = next.updated;
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(a: &Assembler) -> Vec<(usize, usize)> {
        a.ranges().collect()
    }

    fn sack(a: &Assembler) -> Vec<(usize, usize)> {
        let mut out = [(0, 0); 4];
        let n = a.sack_blocks_into(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn in_order_adds_merge() {
        let mut a = Assembler::new(4);
        assert!(a.is_empty());
        a.add(10, 5).unwrap();
        a.add(15, 5).unwrap();
        a.add(20, 1).unwrap();
        assert_eq!(ranges(&a), [(10, 21)]);
        assert_eq!(a.held_bytes(), 11);
        a.add(3, 0).unwrap();
        assert_eq!(ranges(&a), [(10, 21)], "an empty add records nothing");
    }

    #[test]
    fn reverse_order_adds_merge() {
        let mut a = Assembler::new(4);
        for start in (1..10).rev() {
            a.add(start * 10, 10).unwrap();
        }
        assert_eq!(ranges(&a), [(10, 100)]);
        assert_eq!(a.pop_front(), 0, "nothing at offset 0");
        a.add(0, 10).unwrap();
        assert_eq!(a.pop_front(), 100);
        assert!(a.is_empty());
    }

    #[test]
    fn overlaps_and_duplicates() {
        let mut a = Assembler::new(4);
        a.add(10, 10).unwrap();
        a.add(10, 10).unwrap();
        a.add(12, 3).unwrap();
        assert_eq!(ranges(&a), [(10, 20)]);
        a.add(5, 7).unwrap();
        a.add(18, 7).unwrap();
        assert_eq!(ranges(&a), [(5, 25)]);
        a.add(0, 100).unwrap();
        assert_eq!(ranges(&a), [(0, 100)], "a superset swallows it");
    }

    #[test]
    fn one_add_bridges_several_ranges() {
        let mut a = Assembler::new(8);
        for start in [10, 20, 30, 40, 60] {
            a.add(start, 5).unwrap();
        }
        a.add(12, 30).unwrap();
        assert_eq!(ranges(&a), [(10, 45), (60, 65)]);
        a.add(45, 15).unwrap();
        assert_eq!(ranges(&a), [(10, 65)], "touching at both ends joins all");
    }

    #[test]
    fn refuses_a_range_too_many_without_losing_any() {
        let mut a = Assembler::new(3);
        for start in [10, 20, 30] {
            a.add(start, 5).unwrap();
        }
        let before = ranges(&a);
        let sack_before = sack(&a);
        assert_eq!(a.add(40, 5), Err(TooManyRanges));
        assert_eq!(a.add(0, 5), Err(TooManyRanges));
        assert_eq!(ranges(&a), before);
        assert_eq!(sack(&a), sack_before, "a refused segment does not count as an arrival");
        a.add(15, 2).unwrap();
        assert_eq!(ranges(&a), [(10, 17), (20, 25), (30, 35)], "extending a range is always possible");
        a.add(17, 3).unwrap();
        a.add(40, 5).unwrap();
        assert_eq!(ranges(&a), [(10, 25), (30, 35), (40, 45)]);
        assert_eq!(Assembler::new(0).add(1, 1), Err(TooManyRanges));
    }

    #[test]
    fn pop_front_and_shift() {
        let mut a = Assembler::new(4);
        a.add(10, 10).unwrap();
        a.add(30, 10).unwrap();
        a.shift(5);
        assert_eq!(ranges(&a), [(5, 15), (25, 35)]);
        assert_eq!(a.pop_front(), 0);
        // In-order data overlapping the first range's beginning.
        a.shift(8);
        assert_eq!(ranges(&a), [(0, 7), (17, 27)]);
        assert_eq!(a.pop_front(), 7);
        assert_eq!(ranges(&a), [(10, 20)]);
        // In-order data covering a range entirely, and ending exactly where the next would start.
        a.add(30, 5).unwrap();
        a.shift(20);
        assert_eq!(ranges(&a), [(10, 15)]);
        a.shift(10);
        assert_eq!(a.pop_front(), 5);
        assert!(a.is_empty() && a.held_bytes() == 0);
    }

    #[test]
    fn truncate_forgets_what_no_longer_fits() {
        let mut a = Assembler::new(4);
        a.add(10, 10).unwrap();
        a.add(30, 10).unwrap();
        a.truncate(35);
        assert_eq!(ranges(&a), [(10, 20), (30, 35)]);
        a.truncate(30);
        assert_eq!(ranges(&a), [(10, 20)]);
    }

    /// RFC 2018 section 7, the third case: of eight 500-byte segments starting at 5000, the 2nd, 4th, 6th and
    /// 8th are lost; later the 4th and then the 2nd arrive. Offsets are from RCV.NXT (5500 until the end).
    #[test]
    fn sack_order_of_rfc_2018_example() {
        let rcv_nxt = 5500;
        let blocks = |a: &Assembler, base: usize| -> Vec<(usize, usize)> {
            sack(a).into_iter().map(|(s, e)| (s + base, e + base)).collect()
        };
        let mut a = Assembler::new(8);
        a.add(6000 - rcv_nxt, 500).unwrap();
        assert_eq!(blocks(&a, rcv_nxt), [(6000, 6500)]);
        a.add(7000 - rcv_nxt, 500).unwrap();
        assert_eq!(blocks(&a, rcv_nxt), [(7000, 7500), (6000, 6500)]);
        a.add(8000 - rcv_nxt, 500).unwrap();
        assert_eq!(blocks(&a, rcv_nxt), [(8000, 8500), (7000, 7500), (6000, 6500)]);
        // "the 4th packet is received out of order ... only two SACK blocks to report"
        a.add(6500 - rcv_nxt, 500).unwrap();
        assert_eq!(blocks(&a, rcv_nxt), [(6000, 7500), (8000, 8500)]);
        // "the 2nd segment is received": ACK 7500, one block left.
        a.add(0, 500).unwrap();
        let advanced = a.pop_front();
        assert_eq!(rcv_nxt + advanced, 7500);
        assert_eq!(blocks(&a, 7500), [(8000, 8500)]);
    }

    #[test]
    fn sack_blocks_follow_recency_and_the_slot_count() {
        let mut a = Assembler::new(8);
        for start in [50, 10, 30, 70, 90] {
            a.add(start, 5).unwrap();
        }
        assert_eq!(sack(&a), [(90, 95), (70, 75), (30, 35), (10, 15)], "four of five, newest first");
        a.add(52, 1).unwrap();
        assert_eq!(sack(&a)[0], (50, 55), "a duplicate moves its block to the front");
        let mut three = [(0, 0); 3];
        assert_eq!(a.sack_blocks_into(&mut three), 3);
        assert_eq!(three, [(50, 55), (90, 95), (70, 75)]);
        a.add(55, 15).unwrap();
        assert_eq!(sack(&a), [(50, 75), (90, 95), (30, 35), (10, 15)], "a merged range takes the newest counter");
        assert_eq!(a.sack_blocks_into(&mut []), 0);
    }

    use crate::rng::Rng;

    /// The runs of `true` in the model, as `(start, end)`.
    fn runs(received: &[bool]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < received.len() {
            if received[i] {
                let start = i;
                while i < received.len() && received[i] {
                    i += 1;
                }
                out.push((start, i));
            } else {
                i += 1;
            }
        }
        out
    }

    /// Random adds, shifts and pops against one flag per byte offset from RCV.NXT.
    #[test]
    fn matches_a_per_byte_model() {
        const SPAN: usize = 400;
        let mut rng = Rng::new(0x0123_4567_89ab_cdef);
        for _ in 0..200 {
            let max_ranges = rng.below(7);
            let mut a = Assembler::new(max_ranges);
            let mut received = vec![false; SPAN];
            let mut last_added: Option<usize> = None;
            for _ in 0..300 {
                match rng.below(10) {
                    0..=6 => {
                        let (offset, len) = (rng.below(SPAN - 50), rng.below(30));
                        let before = runs(&received);
                        let result = a.add(offset, len);
                        let touches = before.iter().any(|&(s, e)| s <= offset + len && offset <= e);
                        if len > 0 && !touches && before.len() >= max_ranges {
                            assert_eq!(result, Err(TooManyRanges));
                        } else {
                            assert_eq!(result, Ok(()));
                            received[offset..offset + len].iter_mut().for_each(|b| *b = true);
                            if len > 0 {
                                last_added = Some(offset);
                            }
                        }
                    }
                    7 | 8 => {
                        let n = rng.below(40);
                        a.shift(n);
                        received.drain(..n);
                        received.resize(SPAN, false);
                        last_added = last_added.and_then(|o| o.checked_sub(n));
                    }
                    _ => {
                        let n = a.pop_front();
                        assert_eq!(n, received.iter().take_while(|&&b| b).count());
                        received.drain(..n);
                        received.resize(SPAN, false);
                        last_added = last_added.and_then(|o| o.checked_sub(n));
                    }
                }
                let expected = runs(&received);
                assert_eq!(ranges(&a), expected);
                assert!(expected.len() <= max_ranges);
                assert_eq!(a.held_bytes(), received.iter().filter(|&&b| b).count());
                let blocks = sack(&a);
                assert_eq!(blocks.len(), expected.len().min(4));
                assert!(blocks.iter().all(|b| expected.contains(b)));
                assert!(blocks.iter().enumerate().all(|(i, b)| !blocks[..i].contains(b)), "distinct");
                if let (Some(offset), Some(&(start, end))) = (last_added, blocks.first()) {
                    assert!(start <= offset && offset < end, "the first block holds the latest arrival");
                }
            }
        }
    }
}
