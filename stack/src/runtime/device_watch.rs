//! Who watches the device: the driver thread, or the socket calls that are using the stack anyway.
//!
//! The driver sleeps on the device's descriptor and wakes for every frame. Two kinds of call would take those
//! frames a moment later without it, and then a driver that wakes anyway only costs: the kernel pays for the
//! wake-up inside the writer's `write`, and the woken driver fights the call for the stack lock (a futex sleep
//! and wake on each side). So the driver stops watching the device:
//!
//! - **while a call holds the stack** when the driver wakes — a sender in a loop, say. Instead of blocking on
//!   the lock, the driver leaves the frames to the calls, each of which reads the device as it lets go of the
//!   stack, until the driver next finds the stack free ([`DEFERRAL_LIMIT`] at the latest, or at once when a
//!   call parks). This is Linux's socket backlog: a segment that arrives while the application owns the socket
//!   is queued, and `release_sock` processes it in the application's thread.
//! - **while blocking calls busy-poll the device**, when [`prefer_busy_poll`] is on: a call that stops spinning
//!   because it got what it waited for keeps the device for [`GRACE`] (its thread is usually back in a
//!   moment: the next `recv` of a stream), while a call that gives up and parks hands the device back at once.
//!   This is Linux's preferred busy polling (`SO_PREFER_BUSY_POLL`, kernel 5.11): while an application
//!   busy-polls a queue, the device's interrupt stays masked (`napi_defer_hard_irqs`), and a timer
//!   (`gro_flush_timeout`) unmasks it if the application does not come back in time.
//!
//! [`prefer_busy_poll`]: super::NetStackOptions::prefer_busy_poll

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How long the device stays with the busy pollers after the last one stopped, satisfied. The gap between two
/// `recv` calls of a thread that is keeping up is a few microseconds; a frame that arrives while its thread is
/// away longer waits at most this long for the driver.
pub(crate) const GRACE: Duration = Duration::from_micros(50);

/// The longest the driver leaves the device to the calls after it found the stack locked. Calls read the
/// device as they let go of the stack, and one that parks rings the driver back; this bounds the wait of a
/// frame that arrives just after the last call of a burst let go.
pub(crate) const DEFERRAL_LIMIT: Duration = Duration::from_micros(100);

/// The hand-over of the device between the driver and the calls. Times are in nanoseconds of the stack's
/// clock.
#[derive(Debug, Default)]
pub(crate) struct DeviceWatch {
    /// Calls spinning on the device now.
    pollers: AtomicUsize,
    /// Until when the device stays with the busy pollers once none spins.
    grace_until: AtomicU64,
    /// The driver found the stack held by a call, and calls read the device as they let go of the stack.
    deferred_to_calls: AtomicBool,
    /// The driver sleeps without watching the device: a call that parks must ring it.
    driver_away: AtomicBool,
}

impl DeviceWatch {
    /// A call starts spinning on the device.
    pub(crate) fn start_polling(&self) {
        self.pollers.fetch_add(1, Ordering::SeqCst);
    }

    /// A call stops spinning at `now`. `satisfied`: it got what it waited for, and its thread will likely be
    /// back soon, so the device stays with the pollers for [`GRACE`]; otherwise the call is about to park and
    /// needs the driver to watch the device again. Returns true when the driver must be rung for that (it
    /// sleeps away from the device).
    #[must_use]
    pub(crate) fn stop_polling(&self, now: u64, satisfied: bool) -> bool {
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

    /// The driver woke and found the stack held by a call: the calls read the device from now on, until the
    /// driver next holds the stack.
    pub(crate) fn defer_to_calls(&self) {
        self.deferred_to_calls.store(true, Ordering::SeqCst);
    }

    /// Whether a call letting go of the stack should read the device first.
    pub(crate) fn deferred_to_calls(&self) -> bool {
        self.deferred_to_calls.load(Ordering::Relaxed)
    }

    /// The driver holds the stack again and takes the device back.
    pub(crate) fn driver_holds_stack(&self) {
        if self.deferred_to_calls.load(Ordering::Relaxed) {
            self.deferred_to_calls.store(false, Ordering::SeqCst);
        }
    }

    /// A call is about to park: true when the driver must be rung to watch the device for it (it defers to
    /// calls, and this one will not come back). Rung even while the driver is awake: it may be about to sleep
    /// away from the device.
    pub(crate) fn call_parks(&self) -> bool {
        self.deferred_to_calls.load(Ordering::SeqCst)
    }

    /// The driver, about to sleep at `now`: `Some(d)` if it should leave the device to the calls and look
    /// again within `d` at the latest, `None` if it must watch the device.
    ///
    /// The driver announces that it is away *before* it reads the calls' state, and a call that parks changes
    /// that state *before* it reads the driver's: with sequentially consistent atomics one of the two sees the
    /// other, so a parked call is never left with nobody watching the device.
    pub(crate) fn driver_sleeps(&self, now: u64) -> Option<Duration> {
        self.driver_away.store(true, Ordering::SeqCst);
        if self.deferred_to_calls.load(Ordering::SeqCst) {
            return Some(DEFERRAL_LIMIT);
        }
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

    /// The driver is awake (and reads the device on every wake-up on which it gets the stack).
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
        let watch = DeviceWatch::default();
        assert_eq!(watch.driver_sleeps(0), None);
    }

    #[test]
    fn while_a_call_spins_the_driver_stays_away() {
        let watch = DeviceWatch::default();
        watch.start_polling();
        assert!(watch.driver_sleeps(10 * US).is_some());
    }

    #[test]
    fn a_satisfied_poller_keeps_the_device_for_the_grace_period() {
        let watch = DeviceWatch::default();
        watch.start_polling();
        assert!(!watch.stop_polling(100 * US, true), "nobody has to be rung");
        assert_eq!(watch.driver_sleeps(120 * US), Some(GRACE - Duration::from_micros(20)));
        assert_eq!(watch.driver_sleeps(100 * US + GRACE.as_nanos() as u64), None, "the grace period is over");
    }

    #[test]
    fn a_poller_that_parks_hands_the_device_back_and_rings_an_absent_driver() {
        let watch = DeviceWatch::default();
        watch.start_polling();
        assert!(!watch.stop_polling(0, true));
        watch.start_polling();
        assert!(watch.driver_sleeps(10 * US).is_some(), "the driver sleeps away from the device");
        assert!(watch.stop_polling(20 * US, false), "the parking call rings the driver");
        watch.driver_woke();
        assert_eq!(watch.driver_sleeps(21 * US), None, "the grace period ended with the park");
    }

    #[test]
    fn a_parking_poller_does_not_ring_a_driver_that_watches_the_device() {
        let watch = DeviceWatch::default();
        watch.start_polling();
        assert!(!watch.stop_polling(0, false));
    }

    #[test]
    fn the_last_of_several_pollers_decides() {
        let watch = DeviceWatch::default();
        watch.start_polling();
        watch.start_polling();
        assert!(watch.driver_sleeps(0).is_some());
        assert!(!watch.stop_polling(0, false), "another call still spins");
        assert!(watch.driver_sleeps(0).is_some());
        assert!(watch.stop_polling(0, false), "the last one parks: ring");
    }

    #[test]
    fn a_driver_that_found_the_stack_held_defers_to_the_calls_until_it_holds_it() {
        let watch = DeviceWatch::default();
        assert!(!watch.deferred_to_calls());
        watch.defer_to_calls();
        assert!(watch.deferred_to_calls(), "calls read the device as they let go of the stack");
        assert_eq!(watch.driver_sleeps(0), Some(DEFERRAL_LIMIT), "the driver looks again soon");
        watch.driver_woke();
        watch.driver_holds_stack();
        assert!(!watch.deferred_to_calls());
        assert_eq!(watch.driver_sleeps(0), None, "and watches the device again");
    }

    #[test]
    fn a_call_that_parks_while_the_driver_defers_rings_it() {
        let watch = DeviceWatch::default();
        assert!(!watch.call_parks(), "the driver watches the device");
        watch.defer_to_calls();
        assert!(watch.call_parks(), "the driver leaves the device to calls: ring it");
        watch.driver_holds_stack();
        assert!(!watch.call_parks());
    }
}
