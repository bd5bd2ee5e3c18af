//! Two stacks joined by an in-memory link, driven on virtual time: the base of deterministic simulations.
//!
//! The simulator jumps straight from one event to the next (a timer of either stack, or a frame arriving over
//! the link), so a minute of protocol time with nothing happening costs nothing, and a run depends only on the
//! seeds it was given.

use crate::iface::{FrameSink, Stack, StackConfig};
use crate::time::{earliest, Duration, Instant};
use std::io;
use std::path::Path;
use ustack_netdev::pcap::{LinkType, Writer};
use ustack_netdev::pipe::{Pipe, PipeConfig, PipeEnd};
use ustack_netdev::{Device, FrameBatch};

/// Steps a run may take before it is declared stuck (bounds every simulation loop).
pub const MAX_STEPS: usize = 5_000_000;

/// Moves a simulation's virtual time after one step. Work due now is left to the next step, but an instant
/// that comes back 1,000 times in a row is left 1 ms behind, so a loop never spins on a deadline that does
/// not move. Otherwise time jumps to the next event, or to `deadline` when nothing is due before it.
/// Returns false when time already stands at `deadline` with nothing due: the run is over.
pub fn advance_virtual_time(
    now: &mut Instant,
    next_event: Option<Instant>,
    deadline: Instant,
    stalls: &mut u32,
) -> bool {
    match next_event {
        Some(t) if t <= *now => {
            *stalls += 1;
            if *stalls > 1000 {
                *now += Duration::from_millis(1);
                *stalls = 0;
            }
        }
        Some(t) if t <= deadline => {
            *now = t;
            *stalls = 0;
        }
        _ => {
            if *now >= deadline {
                return false;
            }
            *now = deadline;
        }
    }
    true
}

/// Which of the two stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two stacks, `a` and `b`, on the two ends of a [`Pipe`].
pub struct SimNet {
    pub a: Stack,
    pub b: Stack,
    end_a: PipeEnd,
    end_b: PipeEnd,
    now: Instant,
    rx: FrameBatch,
    tx: FrameBatch,
    capture: Option<Writer<std::io::BufWriter<std::fs::File>>>,
    steps: usize,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet").field("now", &self.now).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl SimNet {
    /// Two stacks on a link with the given faults. The link's MTU caps both stacks' MTUs.
    pub fn new(mut a: StackConfig, mut b: StackConfig, link: PipeConfig) -> SimNet {
        a.mtu = a.mtu.min(link.mtu);
        b.mtu = b.mtu.min(link.mtu);
        let slot = link.mtu + 14 + 4;
        let (end_a, end_b) = Pipe::pair(link);
        SimNet {
            a: Stack::new(a),
            b: Stack::new(b),
            end_a,
            end_b,
            now: Instant::ZERO,
            rx: FrameBatch::new(64, slot),
            tx: FrameBatch::new(64, slot),
            capture: None,
            steps: 0,
        }
    }

    /// Writes every frame either stack sends into a pcap file, stamped with virtual time.
    pub fn capture_to(&mut self, path: impl AsRef<Path>) -> io::Result<()> {
        self.capture = Some(Writer::create(path, LinkType::Ethernet)?);
        Ok(())
    }

    /// Flushes the capture, if any.
    pub fn flush_capture(&mut self) -> io::Result<()> {
        match self.capture.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The stack on `side`.
    pub fn stack(&mut self, side: Side) -> &mut Stack {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// What the link did to the frames `side` sent.
    pub fn link_stats(&self, side: Side) -> ustack_netdev::pipe::PipeStats {
        match side {
            Side::A => self.end_a.stats(),
            Side::B => self.end_b.stats(),
        }
    }

    /// Processes everything due at the current time: frames that have arrived, timers, and output, for both
    /// stacks.
    pub fn step(&mut self) {
        self.steps += 1;
        self.end_a.set_now(self.now.since_origin());
        for side in [Side::A, Side::B] {
            let (stack, end) = match side {
                Side::A => (&mut self.a, &mut self.end_a),
                Side::B => (&mut self.b, &mut self.end_b),
            };
            let mut sink = PipeSink { end, tx: &mut self.tx, capture: &mut self.capture, now: self.now };
            loop {
                self.rx.clear();
                let n = sink.end.recv_batch(&mut self.rx).unwrap_or(0);
                stack.receive_device_batch(self.now, &self.rx, &mut sink);
                if n < self.rx.capacity() {
                    break;
                }
            }
            stack.poll(self.now, &mut sink);
            sink.flush();
        }
    }

    /// The next moment anything is due.
    fn next_event(&self) -> Option<Instant> {
        let arrivals = earliest(
            self.end_a.next_arrival().map(Instant::from_duration),
            self.end_b.next_arrival().map(Instant::from_duration),
        );
        earliest(arrivals, earliest(self.a.poll_at(), self.b.poll_at()))
    }

    /// Runs until `done` holds (checked after every step) or virtual time reaches `deadline`. Returns whether
    /// `done` held.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&mut SimNet) -> bool) -> bool {
        let mut stalls = 0;
        for _ in 0..MAX_STEPS {
            self.step();
            if done(self) {
                return true;
            }
            let next = self.next_event();
            if !advance_virtual_time(&mut self.now, next, deadline, &mut stalls) {
                return done(self);
            }
        }
        false
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline, |_| false);
    }
}

/// A [`FrameSink`] onto one end of the pipe that sends its batch whenever it fills, so a burst of output is
/// never cut short by the batch's size; every frame sent is also written to the capture, if any.
struct PipeSink<'a> {
    end: &'a mut PipeEnd,
    tx: &'a mut FrameBatch,
    capture: &'a mut Option<Writer<std::io::BufWriter<std::fs::File>>>,
    now: Instant,
}

impl PipeSink<'_> {
    fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        if let Some(w) = self.capture.as_mut() {
            for frame in self.tx.iter() {
                let _ = w.write_packet(self.now.since_origin(), frame);
            }
        }
        let _ = self.end.send_batch(self.tx);
        self.tx.clear();
    }
}

impl FrameSink for PipeSink<'_> {
    fn frame(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.tx.is_full() {
            self.flush();
        }
        self.tx.push_with_len(len)
    }
}
