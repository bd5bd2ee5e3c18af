//! A hierarchical timing wheel: the stack's timers, with O(1) schedule and cancel.
//!
//! Every TCP connection keeps a few timers (retransmission, delayed ACK, keepalive, TIME-WAIT), and most of them
//! are re-armed or cancelled long before they fire: each ACK moves the retransmission deadline. A binary heap
//! costs O(log n) per change and cannot cancel in place; a timing wheel (Varghese and Lauck, "Hashed and
//! Hierarchical Timing Wheels", 1987, the design of the Linux kernel's and tokio's timers) buckets deadlines by
//! millisecond, so that the cost of a timer event does not depend on how many other timers exist: 100,000
//! connections cost no more per event than ten.
//!
//! Layout: six levels of 64 slots. A slot of level `L` spans 64^L milliseconds, so level 0 covers 64 ms with
//! 1 ms slots, level 1 covers 4.096 s with 64 ms slots, and level 5 covers about 2.2 years. A timer is filed by
//! the highest base-64 digit in which its deadline (in milliseconds) differs from the wheel's current time: a
//! deadline 3 ms away usually lands in level 0, one 10 s away in level 2. When time reaches the start of a
//! higher-level slot, that slot's timers are filed again ("cascade") relative to the new time, which moves each
//! of them at least one level down; a timer therefore cascades at most five times before it fires from level 0.
//! Deadlines further than the whole wheel sit in the top level and go round it again until they are in range.
//!
//! Timers live in a slab (a `Vec` with a free list) and each slot is a doubly linked list threaded through the
//! slab, which is what makes cancelling O(1). A [`TimerHandle`] carries the slab index and a generation number
//! bumped whenever the entry is released, so a handle kept after its timer fired or was cancelled is harmless.
//!
//! Deadlines keep their full nanosecond precision: the slot only decides *when to look* at a timer, the stored
//! deadline decides whether it is due. Time is handed in by the driver (see [`crate::time`]).

use crate::time::Instant;

/// Bits of the deadline consumed by one level: 64 slots.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// The mask selecting a slot number out of a tick count.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Levels of the wheel: 64^6 ms, about 2.2 years, in all.
const LEVELS: usize = 6;
/// Ticks (milliseconds) spanned by the whole wheel.
const WHEEL_SPAN: u64 = 1 << (SLOT_BITS as usize * LEVELS);
/// The wheel's granularity: one tick is a millisecond.
const NANOS_PER_TICK: u64 = 1_000_000;
/// "No entry", ending a slot's list or the free list. A `Vec` never holds `usize::MAX` elements.
const NIL: usize = usize::MAX;

/// Names a scheduled timer so that it can be cancelled. Copy it freely: once the timer fired or was cancelled,
/// the handle is stale and [`TimerWheel::cancel`] ignores it, even if the wheel reused the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

/// A pending timer, linked into the list of one wheel slot.
#[derive(Debug)]
struct Timer<K> {
    deadline: Instant,
    key: K,
    level: u8,
    slot: u8,
    prev: usize,
    next: usize,
}

/// One element of the slab: a pending timer, or a link in the free list.
#[derive(Debug)]
enum State<K> {
    Free { next_free: usize },
    Pending(Timer<K>),
}

#[derive(Debug)]
struct Node<K> {
    /// Bumped each time the node is released, so that handles to the previous occupant go stale.
    generation: u32,
    state: State<K>,
}

/// Timers carrying keys `K` (for example a connection's index and which of its timers this is).
///
/// Memory: one slab entry per pending timer (the slab keeps its high-water mark), plus a fixed table of
/// 6 x 64 list heads. The caller bounds the number of pending timers (a few per connection).
#[derive(Debug)]
pub struct TimerWheel<K> {
    nodes: Vec<Node<K>>,
    free_head: usize,
    /// `heads[level][slot]`: the first timer of each slot's list, or `NIL`.
    heads: [[usize; SLOTS]; LEVELS],
    /// One bit per non-empty slot, so that finding the next occupied slot is a rotate and a count of zeros.
    occupied: [u64; LEVELS],
    /// The wheel's current time in ticks: every slot before it has been processed. Timers are filed relative
    /// to it.
    elapsed: u64,
    /// The latest time handed to `new` or `expire`.
    now: Instant,
    /// The earliest deadline in the current tick's slot, or a lower bound of it after a cancel. That slot is
    /// looked at again on every `expire` (it holds timers due later in the current millisecond), so
    /// `next_deadline` reports this exact value rather than the tick's start, which would have the driver spin.
    current_min: Option<Instant>,
    len: usize,
    /// Timers fired from one slot, sorted by deadline before they are handed out (kept to reuse its memory).
    batch: Vec<(Instant, K)>,
}

/// The tick (millisecond) containing `t`.
fn tick_of(t: Instant) -> u64 {
    t.as_nanos() / NANOS_PER_TICK
}

/// The first instant of tick `tick`.
fn tick_start(tick: u64) -> Instant {
    Instant::from_nanos(tick.saturating_mul(NANOS_PER_TICK))
}

/// The slot of level `level` that tick `tick` falls in: its base-64 digit number `level`.
fn digit(tick: u64, level: usize) -> usize {
    ((tick >> (SLOT_BITS as usize * level)) & SLOT_MASK) as usize
}

impl<K: Copy> TimerWheel<K> {
    /// An empty wheel whose current time is `now`.
    pub fn new(now: Instant) -> Self {
        TimerWheel {
            nodes: Vec::new(),
            free_head: NIL,
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            elapsed: tick_of(now),
            now,
            current_min: None,
            len: 0,
            batch: Vec::new(),
        }
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wheel's current time: the latest `now` handed to [`TimerWheel::new`] or [`TimerWheel::expire`].
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Arranges for `key` to be returned by the first [`TimerWheel::expire`] whose `now` is at or after `at`.
    /// A deadline at or before the wheel's current time fires on the next `expire`.
    #[link_section = ".text.hot.ustack"]
    pub fn schedule(&mut self, at: Instant, key: K) -> TimerHandle {
        let (level, slot) = self.position(tick_of(at));
        if level == 0 && slot == digit(self.elapsed, 0) {
            // The current tick's slot: keep its earliest deadline exact (see `current_min`). Should the bound
            // be unknown for an occupied slot, it stays unknown and `next_deadline` falls back to the tick's
            // start, which is early but never late.
            let slot_was_empty = self.occupied[0] & (1 << slot) == 0;
            self.current_min = if slot_was_empty { Some(at) } else { self.current_min.map(|m| m.min(at)) };
        }
        let timer = Timer { deadline: at, key, level: 0, slot: 0, prev: NIL, next: NIL };
        let index = match self.nodes.get_mut(self.free_head) {
            Some(node) => {
                let index = self.free_head;
                if let State::Free { next_free } = node.state {
                    self.free_head = next_free;
                }
                node.state = State::Pending(timer);
                index
            }
            None => {
                self.nodes.push(Node { generation: 0, state: State::Pending(timer) });
                self.nodes.len() - 1
            }
        };
        self.link(index, level, slot);
        self.len += 1;
        let generation = self.nodes.get(index).map_or(0, |n| n.generation);
        // Over 4 billion pending timers cannot happen (each needs a connection's worth of memory); should it,
        // the handle would be stale and the timer would fire uncancelled, which every owner tolerates.
        TimerHandle { index: u32::try_from(index).unwrap_or(u32::MAX), generation }
    }

    /// Cancels a pending timer in O(1). Returns false, doing nothing, when the handle is stale: its timer
    /// already fired or was cancelled (even if its storage now holds another timer).
    pub fn cancel(&mut self, handle: TimerHandle) -> bool {
        let index = handle.index as usize;
        match self.nodes.get(index) {
            Some(node) if node.generation == handle.generation && matches!(node.state, State::Pending(_)) => {}
            _ => return false,
        }
        self.unlink(index);
        self.release(index);
        true
    }

    /// Appends to `out` the keys of all timers with deadline at or before `now`, in deadline order, and
    /// forgets them. Time only moves forward: a `now` earlier than the wheel's current time does nothing.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<K>) {
        if now < self.now {
            return;
        }
        self.now = now;
        let now_tick = tick_of(now);
        // Recomputed below if the current tick's slot is left holding timers.
        self.current_min = None;
        // Visit occupied slots in time order until the next one starts after `now`. Cascading files timers
        // into lower levels, which the next round of the loop finds.
        while let Some((level, slot, start)) = self.next_expiration() {
            if start > now_tick {
                break;
            }
            if level > 0 {
                self.elapsed = start;
                self.cascade(level, slot);
            } else if start < now_tick {
                // A whole millisecond in the past: everything in it is due.
                self.fire_slot(slot, None, out);
            } else {
                // The current millisecond: only what is due by `now`; the rest stays for a later call. No other
                // slot can start at or before this one, so this is the last.
                self.fire_slot(slot, Some(now), out);
                break;
            }
        }
        self.elapsed = now_tick;
    }

    /// The earliest pending deadline, or a lower bound of it: the driver's poll timeout, so it is never later
    /// than the true earliest deadline. It is exact for timers due in the current millisecond, and at most one
    /// tick early for timers in level 0 (the next 64 ms). Timers further away are reported by the start of
    /// their slot, where the wheel must cascade them anyway; waking there costs one spurious `expire`, after
    /// which the bound tightens. O(levels): it only looks at the occupancy bitmaps.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (level, _, start) = self.next_expiration()?;
        if level == 0 && start == self.elapsed {
            if let Some(earliest) = self.current_min {
                return Some(earliest);
            }
        }
        Some(tick_start(start))
    }

    /// Where a timer due in tick `tick` is filed: the level of the highest base-64 digit in which `tick`
    /// differs from the current tick, and the slot given by that digit of `tick`. Overdue timers go into the
    /// current tick's slot, beyond-the-wheel ones into the top level.
    fn position(&self, tick: u64) -> (usize, usize) {
        if tick <= self.elapsed {
            return (0, digit(self.elapsed, 0));
        }
        // Or-ing in the slot mask makes level 0 the answer when only the lowest digit differs.
        let differing = (self.elapsed ^ tick) | SLOT_MASK;
        let level = if differing >= WHEEL_SPAN {
            LEVELS - 1
        } else {
            ((u64::BITS - 1 - differing.leading_zeros()) / SLOT_BITS) as usize
        };
        (level, digit(tick, level))
    }

    /// The next slot to process: `(level, slot, first tick of the slot)`, or `None` when no timer is pending.
    ///
    /// Lower levels always come first: a level's timers lie within the current slot of the level above, so
    /// before any slot of that level can start.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let current = digit(self.elapsed, level) as u32;
            // Level 0's current slot holds timers due now. Above level 0, timers are filed strictly after the
            // current slot, except at the top level, where a slot at or before the current one is a full
            // turn of the wheel ahead: so search from the slot after the current one.
            let first = if level == 0 { current } else { current + 1 };
            let ahead = first + bits.rotate_right(first % SLOTS as u32).trailing_zeros();
            let slot = (ahead % SLOTS as u32) as usize;
            let distance = u64::from(ahead - current);
            let start = ((self.elapsed >> shift) + distance) << shift;
            return Some((level, slot, start));
        }
        None
    }

    /// Files every timer of a higher-level slot again, relative to the current tick (the slot's start).
    fn cascade(&mut self, level: usize, slot: usize) {
        let mut index = self.heads[level][slot];
        self.heads[level][slot] = NIL;
        self.occupied[level] &= !(1 << slot);
        while let Some(timer) = self.timer(index) {
            let (next, tick) = (timer.next, tick_of(timer.deadline));
            let (new_level, new_slot) = self.position(tick);
            self.link(index, new_level, new_slot);
            index = next;
        }
    }

    /// Fires the timers of level-0 slot `slot`: all of them, or with `Some(now)` only those due by `now`
    /// (the current millisecond's slot), recording the earliest one left.
    #[link_section = ".text.hot.ustack"]
    fn fire_slot(&mut self, slot: usize, due_by: Option<Instant>, out: &mut Vec<K>) {
        let mut index = self.heads[0][slot];
        let mut earliest_left: Option<Instant> = None;
        while let Some(timer) = self.timer(index) {
            let (next, deadline) = (timer.next, timer.deadline);
            if due_by.is_none_or(|now| deadline <= now) {
                self.unlink(index);
                if let Some(fired) = self.release(index) {
                    self.batch.push((fired.deadline, fired.key));
                }
            } else {
                earliest_left = Some(earliest_left.map_or(deadline, |e| e.min(deadline)));
            }
            index = next;
        }
        if due_by.is_some() {
            self.current_min = earliest_left;
        }
        // A slot is a millisecond; sort within it so that keys come out in deadline order. Stable, so equal
        // deadlines keep their list order.
        self.batch.sort_by_key(|&(deadline, _)| deadline);
        out.extend(self.batch.drain(..).map(|(_, key)| key));
    }

    /// The pending timer at `index`, if any.
    fn timer(&self, index: usize) -> Option<&Timer<K>> {
        match self.nodes.get(index) {
            Some(Node { state: State::Pending(timer), .. }) => Some(timer),
            _ => None,
        }
    }

    fn timer_mut(&mut self, index: usize) -> Option<&mut Timer<K>> {
        match self.nodes.get_mut(index) {
            Some(Node { state: State::Pending(timer), .. }) => Some(timer),
            _ => None,
        }
    }

    /// Pushes the timer at `index` onto the front of the list of `heads[level][slot]`.
    fn link(&mut self, index: usize, level: usize, slot: usize) {
        let head = self.heads[level][slot];
        if let Some(timer) = self.timer_mut(index) {
            // Both fit: level < 6 and slot < 64.
            timer.level = level as u8;
            timer.slot = slot as u8;
            timer.prev = NIL;
            timer.next = head;
        }
        if let Some(old_head) = self.timer_mut(head) {
            old_head.prev = index;
        }
        self.heads[level][slot] = index;
        self.occupied[level] |= 1 << slot;
    }

    /// Takes the timer at `index` out of its slot's list.
    fn unlink(&mut self, index: usize) {
        let Some(timer) = self.timer(index) else { return };
        let (level, slot, prev, next) = (usize::from(timer.level), usize::from(timer.slot), timer.prev, timer.next);
        match self.timer_mut(prev) {
            Some(before) => before.next = next,
            None => {
                self.heads[level][slot] = next;
                if next == NIL {
                    self.occupied[level] &= !(1 << slot);
                }
            }
        }
        if let Some(after) = self.timer_mut(next) {
            after.prev = prev;
        }
    }

    /// Returns an unlinked node to the free list, making its handles stale, and hands back its timer.
    fn release(&mut self, index: usize) -> Option<Timer<K>> {
        let node = self.nodes.get_mut(index)?;
        let State::Pending(timer) = core::mem::replace(&mut node.state, State::Free { next_free: self.free_head })
        else {
            return None;
        };
        node.generation = node.generation.wrapping_add(1);
        self.free_head = index;
        self.len -= 1;
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::collections::BTreeSet;

    use crate::rng::Rng;

    /// An origin that is not a round number of milliseconds, so that slot boundaries are exercised.
    fn t0() -> Instant {
        Instant::from_nanos(1_234_567_890_123)
    }

    fn expired(wheel: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.expire(now, &mut out);
        out
    }

    const DELAYS: [Duration; 8] = [
        Duration::from_millis(1),
        Duration::from_millis(63),
        Duration::from_millis(64),
        Duration::from_secs(5),
        Duration::from_secs(300),
        Duration::from_secs(5 * 3600),
        Duration::from_secs(30 * 86_400),
        Duration::from_secs(3 * 365 * 86_400), // beyond the wheel's 2.2 years
    ];

    #[test]
    fn fires_at_the_deadline_on_every_level() {
        for (i, &delay) in DELAYS.iter().enumerate() {
            let mut wheel = TimerWheel::new(t0());
            let at = t0() + delay;
            wheel.schedule(at, 7);
            // Approach in a few steps, as a driver would, never reaching the deadline.
            for step in [delay / 3, delay / 2, delay - Duration::from_nanos(1)] {
                assert_eq!(expired(&mut wheel, t0() + step), [], "delay #{i} fired early at {step:?}");
                assert!(wheel.next_deadline().is_some_and(|d| d <= at), "delay #{i}");
            }
            assert_eq!(expired(&mut wheel, at), [7], "delay #{i}");
            assert!(wheel.is_empty() && wheel.next_deadline().is_none());
        }
    }

    #[test]
    fn fires_when_time_jumps_past_the_deadline() {
        for &delay in &DELAYS {
            let mut wheel = TimerWheel::new(t0());
            wheel.schedule(t0() + delay, 1);
            assert_eq!(expired(&mut wheel, t0() + delay * 2), [1]);
        }
    }

    /// A driver that sleeps exactly until `next_deadline` sees every timer fire exactly at its deadline, and
    /// wakes only a few times per timer (the cascades).
    #[test]
    fn driver_sleeping_until_next_deadline_is_exact() {
        let mut wheel = TimerWheel::new(t0());
        let mut rng = Rng::new(0x1234_5678_9abc_def1);
        let mut deadlines = Vec::new();
        for key in 0..2_000u32 {
            let scale = DELAYS[rng.below_u64(DELAYS.len() as u64) as usize];
            let at = t0() + Duration::from_nanos(rng.below_u64(scale.as_nanos() as u64) + 1);
            deadlines.push(at);
            wheel.schedule(at, key);
        }
        let mut now = t0();
        let mut wakeups = 0;
        let mut fired = 0;
        while let Some(next) = wheel.next_deadline() {
            assert!(next > now, "the bound after an expire is in the future: no spinning");
            now = now.max(next);
            wakeups += 1;
            for key in expired(&mut wheel, now) {
                assert_eq!(deadlines[key as usize], now, "timer {key} fired late or early");
                fired += 1;
            }
        }
        assert_eq!(fired, deadlines.len());
        assert!(wakeups <= deadlines.len() * (LEVELS + 2), "{wakeups} wakeups");
    }

    #[test]
    fn overdue_and_current_millisecond_timers() {
        let now = t0();
        let mut wheel = TimerWheel::new(now);
        wheel.schedule(now - Duration::from_secs(10), 1);
        wheel.schedule(now, 2);
        // t0 is 0.890123 ms into its millisecond: `later` is in the same one, `next_ms` in the next.
        let later = now + Duration::from_micros(50);
        let next_ms = now + Duration::from_micros(300);
        wheel.schedule(later, 3);
        wheel.schedule(next_ms, 4);
        assert_eq!(wheel.next_deadline(), Some(now - Duration::from_secs(10)));
        assert_eq!(expired(&mut wheel, now), [1, 2], "overdue ones fire on the next expire, in order");
        assert_eq!(wheel.next_deadline(), Some(later), "exact within the current millisecond");
        assert_eq!(expired(&mut wheel, now + Duration::from_micros(49)), []);
        assert_eq!(expired(&mut wheel, later), [3]);
        assert_eq!(wheel.next_deadline(), Some(Instant::from_millis(later.as_millis() + 1)), "the next tick's start");
        assert_eq!(expired(&mut wheel, Instant::from_millis(later.as_millis() + 1)), []);
        assert_eq!(wheel.next_deadline(), Some(next_ms), "exact once it is the current millisecond");
        assert_eq!(expired(&mut wheel, next_ms), [4]);
    }

    #[test]
    fn deadline_order_within_and_across_slots() {
        let mut wheel = TimerWheel::new(t0());
        let micros = [900, 100, 5_000, 500, 64_100, 64_050, 4_000_000];
        for (key, &m) in micros.iter().enumerate() {
            wheel.schedule(t0() + Duration::from_micros(m), key as u32);
        }
        assert_eq!(expired(&mut wheel, t0() + Duration::from_secs(10)), [1, 3, 0, 2, 5, 4, 6]);
    }

    #[test]
    fn time_does_not_go_backwards() {
        let mut wheel = TimerWheel::new(t0());
        wheel.schedule(t0() + Duration::from_millis(5), 1);
        assert_eq!(expired(&mut wheel, t0() - Duration::from_secs(1)), []);
        assert_eq!(wheel.now(), t0());
        assert_eq!(expired(&mut wheel, t0() + Duration::from_millis(5)), [1]);
    }

    #[test]
    fn cancel_before_and_after_firing() {
        let mut wheel = TimerWheel::new(t0());
        let a = wheel.schedule(t0() + Duration::from_millis(10), 1);
        let b = wheel.schedule(t0() + Duration::from_millis(10), 2);
        let c = wheel.schedule(t0() + Duration::from_secs(100), 3);
        assert!(wheel.cancel(a));
        assert!(!wheel.cancel(a), "twice");
        assert!(wheel.cancel(c));
        assert_eq!(wheel.len(), 1);
        assert_eq!(expired(&mut wheel, t0() + Duration::from_secs(200)), [2]);
        assert!(!wheel.cancel(b), "already fired");
        assert!(wheel.is_empty());
    }

    #[test]
    fn stale_handle_does_not_cancel_the_next_occupant() {
        let mut wheel = TimerWheel::new(t0());
        let old = wheel.schedule(t0() + Duration::from_millis(1), 1);
        assert_eq!(expired(&mut wheel, t0() + Duration::from_millis(1)), [1]);
        let new = wheel.schedule(t0() + Duration::from_millis(2), 2);
        assert_eq!(old.index, new.index, "the slab reused the entry");
        assert!(!wheel.cancel(old));
        assert_eq!(expired(&mut wheel, t0() + Duration::from_millis(2)), [2]);
    }

    /// Random schedules, cancels (live and stale) and advances of every scale against a sorted set, with
    /// up to about 100,000 timers pending.
    #[test]
    fn matches_a_sorted_reference_model() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let scales = [
            Duration::from_micros(2_000),
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(7_200),
            Duration::from_secs(60 * 86_400),
            Duration::from_secs(5 * 365 * 86_400),
        ];
        let steps = [
            Duration::from_micros(1_000),
            Duration::from_millis(10),
            Duration::from_secs(1),
            Duration::from_secs(600),
            Duration::from_secs(10 * 86_400),
        ];
        let mut now = t0();
        let mut wheel = TimerWheel::new(now);
        let mut timers: Vec<(TimerHandle, Instant)> = Vec::new();
        let mut pending: BTreeSet<(Instant, u32)> = BTreeSet::new();
        let mut out = Vec::new();
        let mut max_pending = 0;
        let check_expire = |wheel: &mut TimerWheel<u32>,
                            pending: &mut BTreeSet<(Instant, u32)>,
                            timers: &[(TimerHandle, Instant)],
                            out: &mut Vec<u32>,
                            now: Instant| {
            out.clear();
            wheel.expire(now, out);
            let mut expected = Vec::new();
            while let Some(&(at, key)) = pending.first().filter(|&&(at, _)| at <= now) {
                pending.pop_first();
                expected.push((at, key));
            }
            let mut got: Vec<(Instant, u32)> = out.iter().map(|&k| (timers[k as usize].1, k)).collect();
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "deadline order");
            got.sort();
            assert_eq!(got, expected, "at {now}");
        };
        for round in 0..500_000u32 {
            // First fill the wheel towards 100,000 timers with small advances, then mix everything.
            let filling = round < 300_000;
            let (schedule_odds, cancel_odds, step_scales) =
                if filling { (14, 1, &steps[..2]) } else { (8, 4, &steps[..]) };
            match rng.below_u64(16) {
                n if n < schedule_odds && pending.len() < 100_000 => {
                    let at = if rng.below_u64(20) == 0 {
                        now - Duration::from_nanos(rng.below_u64(1_000_000_000))
                    } else {
                        let scale = scales[rng.below_u64(scales.len() as u64) as usize];
                        now + Duration::from_nanos(rng.below_u64(scale.as_nanos() as u64))
                    };
                    let key = timers.len() as u32;
                    timers.push((wheel.schedule(at, key), at));
                    pending.insert((at, key));
                }
                n if n < schedule_odds + cancel_odds && !timers.is_empty() => {
                    let key = rng.below_u64(timers.len() as u64) as u32;
                    let (handle, at) = timers[key as usize];
                    assert_eq!(wheel.cancel(handle), pending.remove(&(at, key)), "cancel {key}");
                }
                _ => {
                    let step = step_scales[rng.below_u64(step_scales.len() as u64) as usize];
                    now += Duration::from_nanos(rng.below_u64(step.as_nanos() as u64));
                    check_expire(&mut wheel, &mut pending, &timers, &mut out, now);
                }
            }
            assert_eq!(wheel.len(), pending.len());
            max_pending = max_pending.max(pending.len());
            if round % 7 == 0 {
                let earliest = pending.first().map(|&(at, _)| at);
                let bound = wheel.next_deadline();
                assert_eq!(bound.is_some(), earliest.is_some());
                assert!(bound <= earliest, "next_deadline {bound:?} after the earliest {earliest:?}");
            }
        }
        assert_eq!(max_pending, 100_000, "the wheel held 100,000 timers at once");
        // Everything left fires once time has moved far enough, however far that is.
        now += Duration::from_secs(20 * 365 * 86_400);
        check_expire(&mut wheel, &mut pending, &timers, &mut out, now);
        assert!(wheel.is_empty() && pending.is_empty());
    }
}
