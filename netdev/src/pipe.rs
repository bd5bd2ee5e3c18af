//! An in-memory Ethernet link between two endpoints, with seeded faults, for simulations and tests.
//!
//! Time on the pipe is *virtual*: the simulator moves a shared clock forward with [`PipeEnd::set_now`], and a
//! frame becomes receivable once its delivery time is not after that clock. A pipe whose directions have no
//! delay, jitter or rate limit delivers at once, so it also works without anyone driving the clock (as long as
//! reordering, which holds frames back for [`REORDER_HOLD`], is off).
//!
//! Every random decision of a direction comes from that direction's own generator, seeded from
//! [`PipeConfig::seed`], so the same seed and the same sequence of calls give the same deliveries, whatever the
//! other direction does.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::fault::{FaultConfig, Rng};
use crate::{sys, Device, FrameBatch};

/// How long a frame picked for reordering waits for a later frame to overtake it before it is sent anyway.
pub const REORDER_HOLD: Duration = Duration::from_millis(1);

/// Reused frame buffers kept per direction, so that a steady flow allocates nothing.
const POOL_LIMIT: usize = 256;

/// The two directions of a pipe and its endpoints' options.
#[derive(Debug, Clone)]
pub struct PipeConfig {
    /// The IP MTU of the link; frames longer than `mtu + 14` bytes are dropped.
    pub mtu: usize,
    /// Faults of frames sent by end A towards end B.
    pub a_to_b: FaultConfig,
    /// Faults of frames sent by end B towards end A.
    pub b_to_a: FaultConfig,
    /// Seed of all random decisions.
    pub seed: u64,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig { mtu: 1500, a_to_b: FaultConfig::default(), b_to_a: FaultConfig::default(), seed: 0 }
    }
}

impl PipeConfig {
    /// A link with the same faults in both directions.
    pub fn symmetric(mtu: usize, faults: FaultConfig, seed: u64) -> Self {
        PipeConfig { mtu, a_to_b: faults.clone(), b_to_a: faults, seed }
    }
}

/// What happened to the frames one end sent (see [`PipeEnd::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Frames offered to the link by this end.
    pub sent: u64,
    /// Frames (copies included) handed to the other end's `recv_batch`.
    pub delivered: u64,
    /// Frames lost on purpose (the `loss` fault).
    pub dropped_loss: u64,
    /// Frames dropped because `queue_limit` frames were already in flight.
    pub dropped_queue: u64,
    /// Frames longer than `mtu + 14`, or longer than the receiver's batch slots.
    pub dropped_oversize: u64,
    /// Extra copies delivered (the `duplicate` fault).
    pub duplicated: u64,
    /// Frames with a flipped bit (the `corrupt` fault).
    pub corrupted: u64,
    /// Frames held back to arrive after a later one (the `reorder` fault).
    pub reordered: u64,
    /// Frames that went without the delay (the `skip_delay` fault).
    pub skipped_delay: u64,
}

/// Constructor of linked [`PipeEnd`] pairs.
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends, A and B. Whatever A sends, B receives (subject to `config.a_to_b`), and back.
    pub fn pair(config: PipeConfig) -> (PipeEnd, PipeEnd) {
        let mut master = Rng::new(config.seed);
        let fds = [new_eventfd(), new_eventfd()];
        let raw = [fds[0].as_ref().map(|f| f.as_raw_fd()), fds[1].as_ref().map(|f| f.as_raw_fd())];
        let shared = Arc::new(Mutex::new(Shared {
            now: Duration::ZERO,
            mtu: config.mtu,
            dirs: [
                Direction::new(config.a_to_b, Rng::new(master.next_u64())),
                Direction::new(config.b_to_a, Rng::new(master.next_u64())),
            ],
            _fds: fds,
            raw_fds: raw,
        }));
        let a = PipeEnd { shared: Arc::clone(&shared), side: 0, event_fd: raw[0] };
        let b = PipeEnd { shared, side: 1, event_fd: raw[1] };
        (a, b)
    }
}

/// An eventfd for an end; a pipe without one still works, it just cannot be polled.
fn new_eventfd() -> Option<OwnedFd> {
    match sys::eventfd() {
        Ok(fd) => Some(fd),
        Err(err) => {
            tracing::warn!(%err, "pipe end has no eventfd; it cannot be polled");
            None
        }
    }
}

/// One end of a [`Pipe`]. Ends are `Send`; both share the link state behind a mutex.
#[derive(Debug)]
pub struct PipeEnd {
    shared: Arc<Mutex<Shared>>,
    /// 0 for end A, 1 for end B. This end sends on `dirs[side]` and receives from `dirs[1 - side]`.
    side: usize,
    event_fd: Option<RawFd>,
}

#[derive(Debug)]
struct Shared {
    now: Duration,
    mtu: usize,
    dirs: [Direction; 2],
    /// Keeps both ends' eventfds open as long as either end exists (the sender signals the receiver's).
    _fds: [Option<OwnedFd>; 2],
    raw_fds: [Option<RawFd>; 2],
}

#[derive(Debug)]
struct Direction {
    config: FaultConfig,
    rng: Rng,
    /// Frames in flight, sorted by (deliver_at, order).
    queue: VecDeque<InFlight>,
    /// A frame picked for reordering, waiting for the next frame to overtake it (or for `release_at`).
    held: Option<Held>,
    /// When the rate-limited link finishes serialising the last frame.
    link_free_at: Duration,
    next_order: u64,
    pool: Vec<Vec<u8>>,
    stats: PipeStats,
}

#[derive(Debug)]
struct InFlight {
    deliver_at: Duration,
    order: u64,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Held {
    deliver_at: Duration,
    release_at: Duration,
    data: Vec<u8>,
}

impl Direction {
    fn new(config: FaultConfig, rng: Rng) -> Self {
        Direction {
            config,
            rng,
            queue: VecDeque::new(),
            held: None,
            link_free_at: Duration::ZERO,
            next_order: 0,
            pool: Vec::new(),
            stats: PipeStats::default(),
        }
    }

    fn in_flight(&self) -> usize {
        self.queue.len() + usize::from(self.held.is_some())
    }

    fn buffer_from(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        buf
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT {
            self.pool.push(buf);
        }
    }

    /// Inserts a frame in delivery order; frames due at the same time keep their enqueue order.
    fn enqueue(&mut self, deliver_at: Duration, data: Vec<u8>) {
        let order = self.next_order;
        self.next_order += 1;
        let pos = self.queue.partition_point(|f| (f.deliver_at, f.order) <= (deliver_at, order));
        self.queue.insert(pos, InFlight { deliver_at, order, data });
    }

    /// When a frame sent at `now` with `len` bytes finishes crossing the link (rate limit, delay and jitter
    /// unless it `skips_delay`).
    fn schedule(&mut self, now: Duration, len: usize, skips_delay: bool) -> Duration {
        let departs = match self.config.rate_bytes_per_sec {
            Some(rate) if rate > 0 => {
                let nanos = (len as u128 * 1_000_000_000) / u128::from(rate);
                let start = self.link_free_at.max(now);
                self.link_free_at =
                    start.saturating_add(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
                self.link_free_at
            }
            _ => now,
        };
        if skips_delay {
            self.stats.skipped_delay += 1;
            return departs;
        }
        let mut at = departs.saturating_add(self.config.delay);
        if !self.config.jitter.is_zero() {
            let offset = self.rng.duration_up_to(self.config.jitter.saturating_mul(2));
            at = at.saturating_add(offset).saturating_sub(self.config.jitter).max(departs);
        }
        at
    }

    /// Puts a held frame whose time has come into the queue.
    fn release_due(&mut self, now: Duration) {
        if self.held.as_ref().is_some_and(|h| h.release_at <= now) {
            if let Some(h) = self.held.take() {
                self.enqueue(h.release_at, h.data);
            }
        }
    }

    /// Sends one frame at virtual time `now`. Returns whether it was handed to the link (lost frames were).
    fn send(&mut self, now: Duration, mtu: usize, frame: &[u8]) -> bool {
        self.stats.sent += 1;
        if frame.len() > mtu.saturating_add(14) {
            self.stats.dropped_oversize += 1;
            return false;
        }
        if self.rng.chance(self.config.loss) {
            self.stats.dropped_loss += 1;
            return true;
        }
        if self.in_flight() >= self.config.queue_limit {
            self.stats.dropped_queue += 1;
            return false;
        }
        let mut data = self.buffer_from(frame);
        if !data.is_empty() && self.rng.chance(self.config.corrupt) {
            let byte = self.rng.below(data.len() as u64) as usize;
            let bit = self.rng.below(8);
            if let Some(b) = data.get_mut(byte) {
                *b ^= 1 << bit;
            }
            self.stats.corrupted += 1;
        }
        let skips_delay = self.rng.chance(self.config.skip_delay);
        let deliver_at = self.schedule(now, data.len(), skips_delay);
        let duplicate = self.rng.chance(self.config.duplicate);
        let reorder = self.rng.chance(self.config.reorder);
        let copy = if duplicate { Some(self.buffer_from(&data)) } else { None };

        if reorder && self.held.is_none() {
            self.stats.reordered += 1;
            let release_at = deliver_at.saturating_add(REORDER_HOLD);
            self.held = Some(Held { deliver_at, release_at, data });
        } else {
            self.enqueue(deliver_at, data);
            // A held frame goes right behind the first frame sent after it: that is the reordering.
            if let Some(h) = self.held.take() {
                self.enqueue(h.deliver_at.max(deliver_at), h.data);
            }
        }
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            self.enqueue(deliver_at, copy);
        }
        true
    }

    fn next_arrival(&self) -> Option<Duration> {
        let queued = self.queue.front().map(|f| f.deliver_at);
        let held = self.held.as_ref().map(|h| h.release_at);
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn has_due(&self, now: Duration) -> bool {
        self.queue.front().is_some_and(|f| f.deliver_at <= now)
    }
}

impl PipeEnd {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is a single step), so a
        // poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the pipe's shared virtual clock to `now` (never backwards: the clock is the max of all calls).
    /// Frames due by then become receivable and the ends they are for are signalled.
    pub fn set_now(&self, now: Duration) {
        let mut s = self.lock();
        s.now = s.now.max(now);
        let now = s.now;
        for side in 0..2 {
            s.dirs[side].release_due(now);
            if s.dirs[side].has_due(now) {
                if let Some(fd) = s.raw_fds[1 - side] {
                    sys::eventfd_signal(fd);
                }
            }
        }
    }

    /// The pipe's virtual clock.
    pub fn now(&self) -> Duration {
        self.lock().now
    }

    /// When the next frame for this end becomes receivable (possibly already, if it is not after
    /// [`PipeEnd::now`]); `None` when nothing is in flight towards this end.
    pub fn next_arrival(&self) -> Option<Duration> {
        self.lock().dirs[1 - self.side].next_arrival()
    }

    /// What happened so far to the frames this end sent.
    pub fn stats(&self) -> PipeStats {
        self.lock().dirs[self.side].stats
    }

    /// How many frames are in flight towards this end (received by neither loss nor delivery yet).
    pub fn in_flight(&self) -> usize {
        self.lock().dirs[1 - self.side].in_flight()
    }
}

impl Device for PipeEnd {
    fn mtu(&self) -> usize {
        self.lock().mtu
    }

    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut s = self.lock();
        if let Some(fd) = self.event_fd {
            sys::eventfd_drain(fd);
        }
        let now = s.now;
        let dir = &mut s.dirs[1 - self.side];
        dir.release_due(now);
        let mut received = 0;
        while !batch.is_full() && dir.has_due(now) {
            let Some(frame) = dir.queue.pop_front() else {
                break;
            };
            if batch.push(&frame.data) {
                received += 1;
                dir.stats.delivered += 1;
            } else {
                dir.stats.dropped_oversize += 1;
            }
            dir.recycle(frame.data);
        }
        // Frames left over for lack of room must keep the end readable.
        if dir.has_due(now) {
            if let Some(fd) = self.event_fd {
                sys::eventfd_signal(fd);
            }
        }
        Ok(received)
    }

    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut s = self.lock();
        let (now, mtu) = (s.now, s.mtu);
        let peer_fd = s.raw_fds[1 - self.side];
        let dir = &mut s.dirs[self.side];
        dir.release_due(now);
        let mut handed = 0;
        for frame in batch.iter() {
            if dir.send(now, mtu, frame) {
                handed += 1;
            }
        }
        batch.clear();
        if !dir.queue.is_empty() {
            if let Some(fd) = peer_fd {
                sys::eventfd_signal(fd);
            }
        }
        Ok(handed)
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        self.event_fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u32) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..4].copy_from_slice(&n.to_be_bytes());
        f
    }

    fn send(end: &mut PipeEnd, ids: impl IntoIterator<Item = u32>) {
        let mut batch = FrameBatch::new(64, 1514);
        for id in ids {
            assert!(batch.push(&frame(id)));
            if batch.is_full() {
                end.send_batch(&mut batch).unwrap();
            }
        }
        end.send_batch(&mut batch).unwrap();
    }

    fn recv_ids(end: &mut PipeEnd) -> Vec<u32> {
        let mut out = Vec::new();
        let mut batch = FrameBatch::new(16, 1514);
        loop {
            batch.clear();
            if end.recv_batch(&mut batch).unwrap() == 0 {
                return out;
            }
            out.extend(batch.iter().map(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]])));
        }
    }

    /// What `end` receives, checked to hold each of the ids `0..n` exactly once (in any order).
    fn each_id_once(end: &mut PipeEnd, n: u32) -> Vec<u32> {
        let got = recv_ids(end);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "nothing lost or duplicated");
        got
    }

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn perfect_link_round_trip() {
        let (mut a, mut b) = Pipe::pair(PipeConfig::default());
        let bfd = b.pollable_fd().unwrap();
        assert!(!readable(bfd));
        send(&mut a, 0..40);
        assert!(readable(bfd), "eventfd signalled on queueing");
        assert_eq!(recv_ids(&mut b), (0..40).collect::<Vec<_>>());
        assert!(!readable(bfd), "recv drains the eventfd");
        send(&mut b, [7]);
        assert_eq!(recv_ids(&mut a), vec![7]);
        let s = a.stats();
        assert_eq!((s.sent, s.delivered), (40, 40));
        assert_eq!(a.mtu(), 1500);
    }

    #[test]
    fn batch_full_keeps_end_readable() {
        let (mut a, mut b) = Pipe::pair(PipeConfig::default());
        send(&mut a, 0..5);
        let mut small = FrameBatch::new(2, 1514);
        assert_eq!(b.recv_batch(&mut small).unwrap(), 2);
        assert!(readable(b.pollable_fd().unwrap()));
        assert_eq!(recv_ids(&mut b), vec![2, 3, 4]);
    }

    #[test]
    fn total_loss_delivers_nothing() {
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: FaultConfig::lossy(1.0), ..Default::default() });
        send(&mut a, 0..100);
        b.set_now(Duration::from_secs(10));
        assert!(recv_ids(&mut b).is_empty());
        assert_eq!(a.stats().dropped_loss, 100);
        assert_eq!(b.next_arrival(), None);
    }

    #[test]
    fn oversize_and_queue_limit_drop() {
        let faults = FaultConfig { queue_limit: 3, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { mtu: 100, a_to_b: faults, ..Default::default() });
        let mut batch = FrameBatch::new(8, 2000);
        batch.push(&[0u8; 115]);
        batch.push(&[0u8; 114]);
        assert_eq!(a.send_batch(&mut batch).unwrap(), 1);
        assert_eq!(a.stats().dropped_oversize, 1);
        send(&mut a, 0..5);
        assert_eq!(a.stats().dropped_queue, 3);
        assert_eq!(recv_ids(&mut b).len(), 3);
    }

    fn faulty_run(seed: u64) -> (Vec<Vec<u8>>, PipeStats) {
        let faults = FaultConfig {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.1,
            corrupt: 0.05,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            rate_bytes_per_sec: Some(1_000_000),
            ..Default::default()
        };
        let (mut a, mut b) = Pipe::pair(PipeConfig::symmetric(1500, faults, seed));
        let mut got = Vec::new();
        let mut batch = FrameBatch::new(8, 1514);
        for step in 0..200u32 {
            a.set_now(Duration::from_micros(u64::from(step) * 200));
            send(&mut a, [step]);
            batch.clear();
            b.recv_batch(&mut batch).unwrap();
            got.extend(batch.iter().map(|f| f.to_vec()));
        }
        b.set_now(Duration::from_secs(5));
        loop {
            batch.clear();
            if b.recv_batch(&mut batch).unwrap() == 0 {
                break;
            }
            got.extend(batch.iter().map(|f| f.to_vec()));
        }
        (got, a.stats())
    }

    #[test]
    fn seeded_runs_are_reproducible() {
        let (x, sx) = faulty_run(1234);
        let (y, sy) = faulty_run(1234);
        let (z, _) = faulty_run(999);
        assert_eq!(x, y);
        assert_eq!(sx, sy);
        assert_ne!(x, z);
        assert!(sx.dropped_loss > 0 && sx.duplicated > 0 && sx.reordered > 0 && sx.corrupted > 0, "{sx:?}");
        assert_eq!(sx.delivered as usize, x.len());
        assert_eq!(sx.sent - sx.dropped_loss + sx.duplicated, sx.delivered);
    }

    #[test]
    fn delay_holds_frames_until_time_passes() {
        let (mut a, mut b) =
            Pipe::pair(PipeConfig { a_to_b: FaultConfig::delayed(Duration::from_millis(10)), ..Default::default() });
        a.set_now(Duration::from_millis(100));
        send(&mut a, [1, 2]);
        assert_eq!(b.next_arrival(), Some(Duration::from_millis(110)));
        assert!(recv_ids(&mut b).is_empty());
        b.set_now(Duration::from_millis(109));
        assert!(recv_ids(&mut b).is_empty());
        b.set_now(Duration::from_millis(50)); // the clock never goes back
        assert_eq!(a.now(), Duration::from_millis(109));
        b.set_now(Duration::from_millis(110));
        assert_eq!(recv_ids(&mut b), vec![1, 2]);
        assert_eq!(b.next_arrival(), None);
    }

    #[test]
    fn rate_limit_spaces_frames() {
        let faults = FaultConfig { rate_bytes_per_sec: Some(60_000), ..Default::default() };
        let (mut a, b) = Pipe::pair(PipeConfig { a_to_b: faults, ..Default::default() });
        send(&mut a, [1, 2, 3]); // 60 bytes each: 1 ms apiece
        assert_eq!(b.next_arrival(), Some(Duration::from_millis(1)));
        let mut b = b;
        b.set_now(Duration::from_micros(2500));
        assert_eq!(recv_ids(&mut b), vec![1, 2]);
        assert_eq!(b.next_arrival(), Some(Duration::from_millis(3)));
    }

    #[test]
    fn reorder_actually_reorders() {
        let faults = FaultConfig { reorder: 0.3, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: faults, seed: 5, ..Default::default() });
        for id in 0..100 {
            send(&mut a, [id]);
        }
        b.set_now(Duration::from_secs(1));
        let got = each_id_once(&mut b, 100);
        let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 5, "{got:?}");
        // Every held frame is overtaken by the next one, except perhaps the last frame sent.
        let held = a.stats().reordered as usize;
        assert!(held == inversions || held == inversions + 1, "{held} vs {inversions}");
    }

    /// Netem's `reorder`: a frame that skips the delay arrives at once, ahead of the delayed frames sent
    /// before it.
    #[test]
    fn skipping_the_delay_overtakes_the_frames_sent_before() {
        let faults = FaultConfig { delay: Duration::from_millis(10), skip_delay: 0.2, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: faults, seed: 9, ..Default::default() });
        for id in 0..100 {
            a.set_now(Duration::from_micros(100 * u64::from(id)));
            send(&mut a, [id]);
        }
        b.set_now(Duration::from_secs(1));
        let got = each_id_once(&mut b, 100);
        let skipped = a.stats().skipped_delay as usize;
        assert!((5..40).contains(&skipped), "{skipped} of 100 skipped the delay");
        // Each early frame was sent 100 µs after the one before and went 10 ms sooner: up to 100 frames ahead.
        let overtaken = got.iter().enumerate().map(|(pos, &id)| (id as usize).saturating_sub(pos)).max();
        assert!(overtaken > Some(50), "early frames overtook {overtaken:?} frames at most: {got:?}");
    }

    #[test]
    fn held_frame_is_released_after_a_while() {
        let faults = FaultConfig { reorder: 1.0, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: faults, ..Default::default() });
        send(&mut a, [1]);
        assert!(recv_ids(&mut b).is_empty());
        assert_eq!(b.next_arrival(), Some(REORDER_HOLD));
        b.set_now(REORDER_HOLD);
        assert_eq!(recv_ids(&mut b), vec![1]);
    }

    #[test]
    fn corruption_changes_bytes() {
        let faults = FaultConfig { corrupt: 1.0, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: faults, seed: 3, ..Default::default() });
        send(&mut a, 0..20);
        let mut batch = FrameBatch::new(32, 1514);
        assert_eq!(b.recv_batch(&mut batch).unwrap(), 20);
        for (i, f) in batch.iter().enumerate() {
            let original = frame(i as u32);
            let flipped: u32 = f.iter().zip(&original).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert_eq!(flipped, 1, "exactly one bit flipped in frame {i}");
        }
        assert_eq!(a.stats().corrupted, 20);
    }

    #[test]
    fn duplicates_arrive_twice() {
        let faults = FaultConfig { duplicate: 1.0, ..Default::default() };
        let (mut a, mut b) = Pipe::pair(PipeConfig { a_to_b: faults, ..Default::default() });
        send(&mut a, [1, 2]);
        assert_eq!(recv_ids(&mut b), vec![1, 1, 2, 2]);
    }

    #[test]
    fn ends_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<PipeEnd>();
        let (mut a, mut b) = Pipe::pair(PipeConfig::default());
        let t = std::thread::spawn(move || {
            send(&mut a, [9]);
            a
        });
        let _a = t.join().unwrap();
        assert_eq!(recv_ids(&mut b), vec![9]);
    }
}
