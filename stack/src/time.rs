//! Time as the core sees it: a value handed in by whoever drives the stack.
//!
//! The core never reads a clock. A runtime passes wall-clock time, a simulator or a pcap replay passes virtual
//! time; both are just numbers here, which is what makes every test deterministic.

use core::fmt;
use core::num::NonZeroU64;
use core::ops::{Add, AddAssign, Sub};
pub use core::time::Duration;

/// A point in time, in nanoseconds from an origin chosen by the driver.
///
/// It is kept as the nanoseconds plus one, which is never zero: an `Option<Instant>` — a deadline that may
/// be unset, of which every TCB holds several — then takes eight bytes, not sixteen. (The latest instant,
/// some 584 years after the origin, is one nanosecond earlier than a plain `u64` would allow.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    nanos_plus_one: NonZeroU64,
}

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant::new(0);

    /// The instant `nanos` after the origin, saturating at the latest one.
    const fn new(nanos: u64) -> Instant {
        Instant { nanos_plus_one: NonZeroU64::MIN.saturating_add(nanos) }
    }

    /// Nanoseconds since the origin.
    const fn nanos(self) -> u64 {
        self.nanos_plus_one.get() - 1
    }

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant::new(nanos)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant::new(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant::new(secs.saturating_mul(1_000_000_000))
    }

    /// An instant at `d` after the origin.
    pub fn from_duration(d: Duration) -> Self {
        Instant::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos()
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.nanos() / 1_000_000
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.nanos())
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// `self - earlier` in nanoseconds, or zero when `earlier` is later. For per-segment arithmetic: a
    /// `Duration` is a pair of seconds and nanoseconds, and each conversion to or from one costs a division
    /// or a wide multiplication.
    pub const fn nanos_since(self, earlier: Instant) -> u64 {
        self.nanos_plus_one.get().saturating_sub(earlier.nanos_plus_one.get())
    }

    /// The instant `nanos` nanoseconds later, saturating (see [`Instant::nanos_since`] for why not a
    /// `Duration`).
    pub const fn plus_nanos(self, nanos: u64) -> Instant {
        Instant { nanos_plus_one: self.nanos_plus_one.saturating_add(nanos) }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.plus_nanos(duration_nanos(d))
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
        Instant::new(self.nanos().saturating_sub(duration_nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl Default for Instant {
    fn default() -> Self {
        Instant::ZERO
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Instant").field("nanos", &self.nanos()).finish()
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{:06}s", self.nanos() / 1_000_000_000, (self.nanos() % 1_000_000_000) / 1000)
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
        assert_eq!(Instant::from_nanos(u64::MAX).as_nanos(), u64::MAX - 1, "the latest instant");
        assert_eq!(Instant::ZERO.as_nanos(), 0);
        assert_eq!(Instant::default(), Instant::ZERO);
        assert_eq!(format!("{:?}", Instant::from_nanos(7)), "Instant { nanos: 7 }");
    }

    #[test]
    fn an_unset_deadline_costs_no_room() {
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
    }
}
