//! Sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 section 3.4).
//!
//! "It is essential to remember that the actual sequence number space is finite ... all arithmetic dealing with
//! sequence numbers must be performed modulo 2**32." Two numbers compare by the sign of their wrapping
//! difference, which is meaningful while they are less than 2^31 apart.

use core::fmt;
use core::ops::{Add, AddAssign, Range, Sub};

/// A TCP sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The signed distance `self - other`.
    pub fn distance(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self < other` in sequence space.
    pub fn lt(self, other: SeqNum) -> bool {
        self.distance(other) < 0
    }

    /// `self <= other` in sequence space.
    pub fn le(self, other: SeqNum) -> bool {
        self.distance(other) <= 0
    }

    /// `self > other` in sequence space.
    pub fn gt(self, other: SeqNum) -> bool {
        self.distance(other) > 0
    }

    /// `self >= other` in sequence space.
    pub fn ge(self, other: SeqNum) -> bool {
        self.distance(other) >= 0
    }

    /// The later of two numbers.
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.ge(other) {
            self
        } else {
            other
        }
    }

    /// The earlier of two numbers.
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.le(other) {
            self
        } else {
            other
        }
    }

    /// `start <= self < start + len`.
    pub fn in_window(self, start: SeqNum, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }

    /// The number of bytes from `earlier` up to `self`, which must not be before it.
    pub fn since(self, earlier: SeqNum) -> usize {
        debug_assert!(self.ge(earlier), "{self:?} is before {earlier:?}");
        self.0.wrapping_sub(earlier.0) as usize
    }
}

/// In `ranges` (sorted, disjoint, none touching), the ones `[start, end)` overlaps or touches, and its union
/// with them: inserting `[start, end)` replaces those with the union (`Vec::splice`). An empty span is where
/// a range apart from all the others goes.
pub fn merge_span(ranges: &[(SeqNum, SeqNum)], start: SeqNum, end: SeqNum) -> (Range<usize>, (SeqNum, SeqNum)) {
    let first = ranges.partition_point(|&(_, e)| e.lt(start));
    let (mut last, mut union) = (first, (start, end));
    while let Some(&(s, e)) = ranges.get(last) {
        if end.lt(s) {
            break;
        }
        union = (union.0.min(s), union.1.max(e));
        last += 1;
    }
    (first..last, union)
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    fn add(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }
}

impl AddAssign<usize> for SeqNum {
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl Sub<usize> for SeqNum {
    type Output = SeqNum;
    fn sub(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_sub(n as u32))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_span_takes_every_range_that_overlaps_or_touches() {
        let s = SeqNum;
        let ranges = [(s(100), s(200)), (s(300), s(400)), (s(500), s(600))];
        assert_eq!(merge_span(&ranges, s(200), s(300)), (0..2, (s(100), s(400))), "touching both sides");
        assert_eq!(merge_span(&ranges, s(350), s(550)), (1..3, (s(300), s(600))));
        assert_eq!(merge_span(&ranges, s(410), s(490)), (2..2, (s(410), s(490))), "apart: where it goes");
        assert_eq!(merge_span(&ranges, s(700), s(800)), (3..3, (s(700), s(800))));
        assert_eq!(merge_span(&[], s(1), s(2)), (0..0, (s(1), s(2))));
    }

    #[test]
    fn comparisons_wrap() {
        let a = SeqNum(u32::MAX - 10);
        let b = a + 20; // wraps past zero
        assert_eq!(b, SeqNum(9));
        assert!(a.lt(b) && b.gt(a) && a.le(a) && a.ge(a));
        assert_eq!(b.distance(a), 20);
        assert_eq!(a.distance(b), -20);
        assert_eq!(b.since(a), 20);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert!(SeqNum(5).in_window(a, 20));
        assert!(!b.in_window(a, 20));
        assert_eq!(b - 20, a);
    }
}
