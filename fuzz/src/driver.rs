//! Drives a [`Stack`] on virtual time the way a runtime does (receive, then poll; sleep until `poll_at`), and
//! checks after every move what must hold whatever the input:
//!
//! - every frame the stack emits re-parses with all checks on ([`crate::net::check_emitted`]);
//! - counters never go down ([`Driver::check_counters`], after every step);
//! - after `poll(now)`, `poll_at()` is in the future (or `None`): a deadline left at or before `now` after
//!   a few polls at `now` would make a driver spin;
//! - time handed to the stack never goes backwards (the driver's own discipline).

use crate::capture::{record, Capture};
use crate::net::{self, Sent};
use ustack::iface::counters::Counters;
use ustack::{Duration, Instant, Stack};

/// Polls at the same instant allowed before a deadline at or before `now` counts as a spin. Each poll moves
/// loopback traffic one round (what a poll queues for itself waits for the next), so a bulk transfer between
/// two local sockets legitimately takes a few dozen polls at one instant; hundreds mean an endless exchange.
pub const SPIN_POLLS: usize = 512;

/// A stack, its virtual clock, and the checks.
pub struct Driver<'c> {
    pub stack: Stack,
    pub now: Instant,
    cap: Option<&'c mut Capture>,
    counters: Counters,
    out: Vec<Vec<u8>>,
    /// Frames the stack sent since the last [`Driver::take_sent`], parsed.
    sent: Vec<Sent>,
}

impl<'c> Driver<'c> {
    /// A stack with the fuzzing configuration ([`net::config`]), at time 1 s.
    pub fn new(cap: Option<&'c mut Capture>) -> Self {
        let stack = Stack::new(net::config());
        let counters = stack.counters();
        Driver { stack, now: Instant::from_secs(1), cap, counters, out: Vec::new(), sent: Vec::new() }
    }

    /// Feeds one frame at the current time (recorded in the capture first, so a crash shows it last).
    pub fn receive(&mut self, frame: &[u8]) {
        record(&mut self.cap, self.now, frame);
        self.stack.receive(self.now, frame, &mut self.out);
        self.drain();
    }

    /// Runs `f` on the stack at the current time and collects what it sent (for socket calls, which may emit
    /// on the next poll only, but are allowed to emit at once too).
    pub fn with_stack<R>(&mut self, f: impl FnOnce(&mut Stack) -> R) -> R {
        let r = f(&mut self.stack);
        self.drain();
        r
    }

    /// `poll(now)`, then the spin check.
    pub fn poll(&mut self) {
        for i in 0..=SPIN_POLLS {
            self.stack.poll(self.now, &mut self.out);
            self.drain();
            match self.stack.poll_at() {
                Some(t) if t <= self.now => {
                    if i == SPIN_POLLS {
                        panic!(
                            "invariant: poll_at() is {t} after {} polls at now = {}: a driver would spin",
                            SPIN_POLLS + 1,
                            self.now
                        );
                    }
                }
                _ => break,
            }
        }
    }

    /// Moves the clock forward by `d` and polls once (a driver that slept through every deadline between).
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.poll();
    }

    /// Sleeps until the next deadline, if there is one before `limit`, and polls. Returns false when there
    /// was none.
    pub fn next_timer(&mut self, limit: Instant) -> bool {
        match self.stack.poll_at() {
            Some(t) if t <= limit => {
                self.now = self.now.max(t);
                self.poll();
                true
            }
            _ => false,
        }
    }

    /// The frames sent since the last call, parsed.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    fn drain(&mut self) {
        for frame in self.out.drain(..) {
            record(&mut self.cap, self.now, &frame);
            match net::check_emitted(&frame) {
                Ok(s) => self.sent.push(s),
                Err(e) => panic!("invariant: {e}\nframe: {frame:02x?}"),
            }
        }
    }

    /// Counters only grow (checked since the last call: the owner calls it after every step).
    pub fn check_counters(&mut self) {
        let now = self.stack.counters();
        if now == self.counters {
            return;
        }
        for ((name, new), (_, old)) in now.rows().iter().zip(&self.counters.rows()) {
            if new < old {
                panic!("invariant: counter {name} went down from {old} to {new}");
            }
        }
        self.counters = now;
    }
}
