//! Two nodes joined by a link.
//!
//! - [`MemLink`]: the cheapest possible in-memory link, on the wall clock: each side's output batch is the
//!   other side's input, with no copy, lock or system call between them, so that the time measured is the
//!   stacks' own.
//! - [`PipeLink`]: netdev's [`Pipe`] with seeded faults, on virtual time (the simulator jumps from one event to
//!   the next, as `ustack::sim::SimNet` does), so that protocol efficiency, not CPU speed, sets the result.

use std::net::SocketAddrV4;
use std::time::Duration;

use ustack::time::earliest;
use ustack::Instant;
use ustack_netdev::pipe::{Pipe, PipeConfig, PipeEnd, PipeStats};
use ustack_netdev::{Device, FrameBatch};

use crate::node::{ConnOpts, Node};

/// Frames per direction a [`MemLink`] holds between two steps.
const MEM_SLOTS: usize = 2048;

/// Which end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    A,
    B,
}

/// The operations workloads need from a link of two nodes.
pub trait Link {
    type N: Node;
    /// The node at `end`.
    fn node(&mut self, end: End) -> &mut Self::N;
    /// Moves the link along: both nodes send, receive and run timers. Returns false when the link is stuck
    /// (a virtual-time link past its deadline).
    fn step(&mut self) -> bool;
    /// Seconds of the link's clock (wall or virtual) since it was made.
    fn clock(&self) -> f64;
}

/// Two nodes on the in-memory link, driven on the wall clock.
pub struct MemLink<N: Node> {
    pub a: N,
    pub b: N,
    to_a: FrameBatch,
    to_b: FrameBatch,
    origin: std::time::Instant,
    now: Instant,
    /// Frames carried, both directions.
    pub frames: u64,
}

impl<N: Node> MemLink<N> {
    pub fn new(a: N, b: N, mtu: usize) -> MemLink<N> {
        MemLink {
            a,
            b,
            to_a: FrameBatch::new(MEM_SLOTS, mtu + 14 + 4),
            to_b: FrameBatch::new(MEM_SLOTS, mtu + 14 + 4),
            origin: std::time::Instant::now(),
            now: Instant::ZERO,
            frames: 0,
        }
    }

    /// Reads the wall clock.
    pub fn tick(&mut self) {
        self.now = Instant::from_duration(self.origin.elapsed());
    }

    /// A sends what it has queued and runs its timers.
    pub fn out_a(&mut self) {
        self.a.output(self.now, &mut self.to_b);
    }

    pub fn out_b(&mut self) {
        self.b.output(self.now, &mut self.to_a);
    }

    /// A receives everything B sent.
    pub fn in_a(&mut self) {
        self.frames += self.to_a.len() as u64;
        self.a.input(self.now, &self.to_a, &mut self.to_b);
        self.to_a.clear();
    }

    pub fn in_b(&mut self) {
        self.frames += self.to_b.len() as u64;
        self.b.input(self.now, &self.to_b, &mut self.to_a);
        self.to_b.clear();
    }

    /// Frames dropped for lack of room in a batch (should stay 0).
    pub fn drops(&self) -> u64 {
        self.a.tx_drops() + self.b.tx_drops()
    }
}

impl<N: Node> Link for MemLink<N> {
    type N = N;

    fn node(&mut self, end: End) -> &mut N {
        match end {
            End::A => &mut self.a,
            End::B => &mut self.b,
        }
    }

    fn step(&mut self) -> bool {
        self.tick();
        self.out_a();
        self.in_b();
        self.out_b();
        self.in_a();
        true
    }

    fn clock(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

/// Two nodes on a netdev [`Pipe`] (end A and end B), driven on virtual time.
pub struct PipeLink<N: Node> {
    pub a: N,
    pub b: N,
    end_a: PipeEnd,
    end_b: PipeEnd,
    rx: FrameBatch,
    tx: FrameBatch,
    now: Instant,
    stalls: usize,
    /// Steps in a row with nothing pending.
    idle: usize,
    /// Virtual time past which `step` gives up.
    pub deadline: Instant,
}

impl<N: Node> PipeLink<N> {
    pub fn new(a: N, b: N, config: PipeConfig, deadline: Duration) -> PipeLink<N> {
        let slot = config.mtu + 14 + 4;
        let (end_a, end_b) = Pipe::pair(config);
        PipeLink {
            a,
            b,
            end_a,
            end_b,
            rx: FrameBatch::new(64, slot),
            tx: FrameBatch::new(MEM_SLOTS, slot),
            now: Instant::ZERO,
            stalls: 0,
            idle: 0,
            deadline: Instant::from_duration(deadline),
        }
    }

    /// What the link did to the frames `end` sent.
    pub fn stats(&self, end: End) -> PipeStats {
        match end {
            End::A => self.end_a.stats(),
            End::B => self.end_b.stats(),
        }
    }

    /// Processes everything due now on both ends.
    fn run_due(&mut self) {
        self.end_a.set_now(self.now.since_origin());
        for end in [End::A, End::B] {
            let (node, dev) = match end {
                End::A => (&mut self.a, &mut self.end_a),
                End::B => (&mut self.b, &mut self.end_b),
            };
            loop {
                self.rx.clear();
                let n = dev.recv_batch(&mut self.rx).unwrap_or(0);
                node.input(self.now, &self.rx, &mut self.tx);
                if !self.tx.is_empty() {
                    let _ = dev.send_batch(&mut self.tx);
                    self.tx.clear();
                }
                if n < self.rx.capacity() {
                    break;
                }
            }
            node.output(self.now, &mut self.tx);
            if !self.tx.is_empty() {
                let _ = dev.send_batch(&mut self.tx);
                self.tx.clear();
            }
        }
    }

    fn next_event(&mut self) -> Option<Instant> {
        let arrivals = earliest(
            self.end_a.next_arrival().map(Instant::from_duration),
            self.end_b.next_arrival().map(Instant::from_duration),
        );
        let now = self.now;
        earliest(arrivals, earliest(self.a.poll_at(now), self.b.poll_at(now)))
    }
}

impl<N: Node> Link for PipeLink<N> {
    type N = N;

    fn node(&mut self, end: End) -> &mut N {
        match end {
            End::A => &mut self.a,
            End::B => &mut self.b,
        }
    }

    /// Runs what is due, then moves virtual time to the next event.
    fn step(&mut self) -> bool {
        if self.now >= self.deadline {
            return false;
        }
        self.run_due();
        let ev = self.next_event();
        match ev {
            Some(t) if t <= self.now => {
                // Work is due now; do it, but never spin on a deadline that does not move.
                self.stalls += 1;
                if self.stalls > 1000 {
                    self.now += Duration::from_millis(1);
                    self.stalls = 0;
                }
            }
            Some(t) => {
                self.now = t.min(self.deadline);
                self.stalls = 0;
                self.idle = 0;
            }
            None => {
                // Nothing pending: the application acts next. A link that stays idle is stuck.
                self.idle += 1;
                if self.idle > 1000 {
                    self.now = self.deadline;
                }
            }
        }
        true
    }

    fn clock(&self) -> f64 {
        self.now.since_origin().as_secs_f64()
    }
}

/// Opens `n` connections from A to B's `port` (B listens with room for all of them), `chunk` at a time.
/// Returns A's connections and B's accepted ones. Panics when they do not open.
pub fn open_connections<L: Link>(
    link: &mut L,
    server: SocketAddrV4,
    n: usize,
    chunk: usize,
    opts: ConnOpts,
) -> (Vec<usize>, Vec<usize>) {
    link.node(End::B).listen(server.port(), n, false, opts);
    let mut all_clients = Vec::with_capacity(n);
    let mut all_servers = Vec::with_capacity(n);
    while all_clients.len() < n {
        let k = chunk.min(n - all_clients.len());
        let mut waiting: Vec<usize> = (0..k).map(|_| link.node(End::A).connect(server, opts)).collect();
        all_clients.extend_from_slice(&waiting);
        let target = all_servers.len() + k;
        let mut steps = 0;
        loop {
            assert!(link.step(), "connections did not open before the link's deadline");
            while let Some(c) = link.node(End::B).accept(server.port()) {
                all_servers.push(c);
            }
            let a = link.node(End::A);
            waiting.retain(|&c| !a.established(c));
            if waiting.is_empty() && all_servers.len() >= target {
                break;
            }
            steps += 1;
            assert!(
                steps < 200_000,
                "connections stuck opening: {} waiting, {} accepted",
                waiting.len(),
                all_servers.len()
            );
        }
    }
    (all_clients, all_servers)
}

/// One connection from A to B, both ends known.
pub fn open_one<L: Link>(link: &mut L, server: SocketAddrV4, opts: ConnOpts) -> (usize, usize) {
    link.node(End::B).listen(server.port(), 1, false, opts);
    let c = link.node(End::A).connect(server, opts);
    let mut s = None;
    for _ in 0..200_000 {
        assert!(link.step(), "connection did not open before the link's deadline");
        if s.is_none() {
            s = link.node(End::B).accept(server.port());
        }
        if s.is_some() && link.node(End::A).established(c) {
            return (c, s.unwrap_or(usize::MAX));
        }
    }
    panic!("connection to {server} did not open");
}
