//! Time as the core sees it: a value handed in by whoever drives the stack.
//!
//! The core never reads a clock. A runtime passes wall-clock time, a simulator or a pcap replay passes virtual
//! time; both are just numbers here, which is what makes every test deterministic.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
pub use core::time::Duration;

/// A point in time, in nanoseconds from an origin chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant { nanos: 0 };

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { nanos: millis.saturating_mul(1_000_000) }
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant { nanos: secs.saturating_mul(1_000_000_000) }
    }

    /// An instant at `d` after the origin.
    pub fn from_duration(d: Duration) -> Self {
        Instant { nanos: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) }
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.nanos / 1_000_000
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// `self - earlier` in nanoseconds, or zero when `earlier` is later. For per-segment arithmetic: a
    /// `Duration` is a pair of seconds and nanoseconds, and each conversion to or from one costs a division
    /// or a wide multiplication.
    pub const fn nanos_since(self, earlier: Instant) -> u64 {
        self.nanos.saturating_sub(earlier.nanos)
    }

    /// The instant `nanos` nanoseconds later, saturating (see [`Instant::nanos_since`] for why not a
    /// `Duration`).
    pub const fn plus_nanos(self, nanos: u64) -> Instant {
        Instant { nanos: self.nanos.saturating_add(nanos) }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos.saturating_add(duration_nanos(d)) }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant { nanos: self.nanos.saturating_sub(duration_nanos(d)) }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{:06}s", self.nanos / 1_000_000_000, (self.nanos % 1_000_000_000) / 1000)
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(1500);
        assert_eq!(t + Duration::from_millis(500), Instant::from_secs(2));
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t.to_string(), "1.500000s");
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(t.nanos_since(Instant::from_millis(500)), 1_000_000_000);
        assert_eq!(Instant::ZERO.nanos_since(t), 0);
        assert_eq!(t.plus_nanos(500_000_000), Instant::from_secs(2));
        assert_eq!(t.plus_nanos(u64::MAX), Instant::from_nanos(u64::MAX));
    }
}
