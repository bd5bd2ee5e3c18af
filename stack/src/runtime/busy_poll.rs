//! Who watches the device: the driver thread, or the blocking calls that busy-poll it.
//!
//! A blocking call about to park first spins for a while, polling the device itself (Linux's `SO_BUSY_POLL`).
//! If the driver thread also sleeps on the device's descriptor, every frame that arrives wakes it — the kernel
//! pays for a wake-up inside the sender's `write`, and the woken driver fights the spinning call for the stack
//! lock — although the spinning call would have taken the frame a moment later. So while calls busy-poll, the
//! driver sleeps on its doorbell and timers only, and the device is theirs; a call that stops spinning because
//! it got what it waited for keeps the device for a short grace period (its thread is usually back in a moment:
//! the next `recv` of a stream), while a call that gives up and parks hands the device back at once.
//!
//! This is Linux's preferred busy polling (`SO_PREFER_BUSY_POLL`, kernel 5.11): while an application busy-polls
//! a queue, the device's interrupt stays masked (`napi_defer_hard_irqs`), and a timer (`gro_flush_timeout`)
//! unmasks it if the application does not come back in time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How long the device stays with the busy pollers after the last one stopped, satisfied. The gap between two
/// `recv` calls of a thread that is keeping up is a few microseconds; a frame that arrives while its thread is
/// away longer waits at most this long for the driver.
pub(crate) const GRACE: Duration = Duration::from_micros(50);

/// The hand-over of the device between the driver and busy-polling calls. Times are in nanoseconds of the
/// stack's clock.
#[derive(Debug, Default)]
pub(crate) struct BusyPollGate {
    /// Calls spinning on the device now.
    pollers: AtomicUsize,
    /// Until when the device stays with the busy pollers once none spins.
    grace_until: AtomicU64,
    /// The driver sleeps without watching the device: a poller that parks must ring it.
    driver_away: AtomicBool,
}

impl BusyPollGate {
    /// A call starts spinning on the device.
    pub(crate) fn start(&self) {
        self.pollers.fetch_add(1, Ordering::SeqCst);
    }

    /// A call stops spinning at `now`. `satisfied`: it got what it waited for, and its thread will likely be
    /// back soon, so the device stays with the pollers for [`GRACE`]; otherwise the call is about to park and
    /// needs the driver to watch the device again. Returns true when the driver must be rung for that (it
    /// sleeps away from the device).
    #[must_use]
    pub(crate) fn stop(&self, now: u64, satisfied: bool) -> bool {
        if satisfied {
            self.grace_until.fetch_max(now.saturating_add(GRACE.as_nanos() as u64), Ordering::SeqCst);
        }
        let last = self.pollers.fetch_sub(1, Ordering::SeqCst) == 1;
        if satisfied || !last {
            return false;
        }
        self.grace_until.store(0, Ordering::SeqCst);
        self.driver_away.load(Ordering::SeqCst)
    }

    /// The driver, about to sleep at `now`: `Some(d)` if it should leave the device to the pollers and look
    /// again within `d` at the latest, `None` if it must watch the device.
    ///
    /// The driver announces that it is away *before* it reads the pollers' state, and a poller that parks
    /// clears its state *before* it reads the driver's: with sequentially consistent atomics one of the two
    /// sees the other, so a parked call is never left with nobody watching the device.
    pub(crate) fn driver_sleeps(&self, now: u64) -> Option<Duration> {
        self.driver_away.store(true, Ordering::SeqCst);
        if self.pollers.load(Ordering::SeqCst) > 0 {
            // Whoever spins stops within the longest spin; then the grace period runs.
            return Some(super::driver::MAX_SPIN + GRACE);
        }
        let until = self.grace_until.load(Ordering::SeqCst);
        if until > now {
            return Some(Duration::from_nanos(until - now));
        }
        self.driver_away.store(false, Ordering::SeqCst);
        None
    }

    /// The driver is awake (and reads the device on every wake-up).
    pub(crate) fn driver_woke(&self) {
        self.driver_away.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    #[test]
    fn with_nobody_polling_the_driver_watches_the_device() {
        let gate = BusyPollGate::default();
        assert_eq!(gate.driver_sleeps(0), None);
    }

    #[test]
    fn while_a_call_spins_the_driver_stays_away() {
        let gate = BusyPollGate::default();
        gate.start();
        assert!(gate.driver_sleeps(10 * US).is_some());
    }

    #[test]
    fn a_satisfied_poller_keeps_the_device_for_the_grace_period() {
        let gate = BusyPollGate::default();
        gate.start();
        assert!(!gate.stop(100 * US, true), "nobody has to be rung");
        assert_eq!(gate.driver_sleeps(120 * US), Some(GRACE - Duration::from_micros(20)));
        assert_eq!(gate.driver_sleeps(100 * US + GRACE.as_nanos() as u64), None, "the grace period is over");
    }

    #[test]
    fn a_poller_that_parks_hands_the_device_back_and_rings_an_absent_driver() {
        let gate = BusyPollGate::default();
        gate.start();
        assert!(!gate.stop(0, true));
        gate.start();
        assert!(gate.driver_sleeps(10 * US).is_some(), "the driver sleeps away from the device");
        assert!(gate.stop(20 * US, false), "the parking call rings the driver");
        gate.driver_woke();
        assert_eq!(gate.driver_sleeps(21 * US), None, "the grace period ended with the park");
    }

    #[test]
    fn a_parking_poller_does_not_ring_a_driver_that_watches_the_device() {
        let gate = BusyPollGate::default();
        gate.start();
        assert!(!gate.stop(0, false));
    }

    #[test]
    fn the_last_of_several_pollers_decides() {
        let gate = BusyPollGate::default();
        gate.start();
        gate.start();
        assert!(gate.driver_sleeps(0).is_some());
        assert!(!gate.stop(0, false), "another call still spins");
        assert!(gate.driver_sleeps(0).is_some());
        assert!(gate.stop(0, false), "the last one parks: ring");
    }
}
