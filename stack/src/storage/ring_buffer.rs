//! A fixed-size byte ring, the send and receive buffer of a TCP connection.
//!
//! A stream socket's buffer is a queue of bytes with a hard size: the send buffer holds what the application
//! wrote until the peer acknowledges it (and must be read again, at any offset, for retransmission); the receive
//! buffer holds what arrived in order until the application reads it, and its free space is the window we
//! advertise. A ring gives both without moving data: bytes are appended at the end and removed from the front,
//! wrapping around the end of the storage, so every read hands out at most two slices.
//!
//! The free space past the queued bytes is useful too: TCP data that arrives out of order is written there, at
//! its distance from RCV.NXT, with [`RingBuffer::write_at`], and made part of the queue with
//! [`RingBuffer::commit`] once the gap before it fills (the bookkeeping of which parked bytes are valid is
//! [`crate::tcp::assembler::Assembler`]'s). Because that parked data is positioned relative to the *end* of the
//! queue, removing bytes from the front never moves the end.
//!
//! Where the queue starts in the storage is the ring's own business, and it is chosen on purpose
//! ([`RingBuffer::with_start`]): a ring keeps its position within a page when its storage is given back and
//! lent again, and connections start their rings at different offsets. Pooled storage is page-aligned, so rings that all
//! started at offset 0 would hold the same stream bytes at the same address modulo 4 KiB — the sender's send
//! ring and the receiver's receive ring in lockstep, and every message of a ping-pong at the start of
//! whichever buffer was lent. The CPU's memory disambiguation compares only the low 12 bits of addresses: a
//! load from one ring shortly after a store to another at the same offset waits as if it depended on it
//! ("4K aliasing"). Measured on the in-memory benchmark: a 64-byte round trip took 1,050–1,150 ns with every
//! ring starting at 0, 670–700 ns with staggered starts. A ring given back moves its position to the same
//! offset in the storage's first page, so that a ring that empties after every message (a request, its
//! answer) writes the same few cache lines each time instead of a cold one: 650–665 → 621–640 ns.
//!
//! Memory: nothing until the first write, then exactly `capacity` bytes; the buffer never grows by itself.
//! An idle listener's many accepted-but-silent connections thus cost no buffer memory, and an empty ring can
//! give its storage back ([`RingBuffer::detach`]) to be lent again ([`RingBuffer::attach`]) from a
//! [`crate::storage::buffer_pool::BufferPool`].

/// The page size: 4K aliasing compares addresses within one, and [`RingBuffer::detach`] keeps a ring's offset
/// within one.
pub(crate) const PAGE: usize = 4096;

/// A byte queue of fixed capacity with random-access reads and writes into its free space.
#[derive(Debug, Clone)]
pub struct RingBuffer {
    /// Empty until the first write, then exactly `capacity` bytes.
    storage: Vec<u8>,
    capacity: usize,
    /// Index in `storage` of the first queued byte.
    head: usize,
    /// Bytes queued, starting at `head` and wrapping around.
    len: usize,
}

impl RingBuffer {
    /// An empty buffer that will hold up to `capacity` bytes. Allocates nothing yet.
    pub fn new(capacity: usize) -> Self {
        Self::with_start(capacity, 0)
    }

    /// An empty buffer whose queue will start `start` bytes (modulo the capacity) into its storage.
    pub fn with_start(capacity: usize, start: usize) -> Self {
        RingBuffer { storage: Vec::new(), capacity, head: start.checked_rem(capacity).unwrap_or(0), len: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes that can still be pushed (for a receive buffer, the window to advertise).
    pub fn free(&self) -> usize {
        self.capacity - self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken.
    #[link_section = ".text.hot.ustack"]
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 || !self.allocate() {
            return 0;
        }
        self.copy_in(self.len, &data[..n]);
        self.len += n;
        n
    }

    /// Removes up to `out.len()` bytes from the front into `out` and returns how many.
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let (first, second) = self.peek(0, out.len());
        let n = copy_pieces(out, first, second);
        self.discard(n)
    }

    /// Up to `len` queued bytes starting `offset` bytes past the front, as two slices (the second is empty
    /// unless the bytes wrap around the end of the storage). Clamped to what is queued.
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        self.slices(offset, len.min(self.len - offset))
    }

    /// Drops up to `n` bytes from the front (for a send buffer, what the peer acknowledged) and returns how
    /// many. The end of the queue stays where it is, and with it any data parked by `write_at`.
    pub fn discard(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        self.head = self.wrap(self.head + n);
        self.len -= n;
        n
    }

    /// Writes `data` into the free space, `offset` bytes past the end of the queue, without queueing it (TCP
    /// data held out of order until the bytes before it arrive). Returns how many bytes were written: what
    /// fits in the free space, none if `offset` is beyond it.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        let free = self.free();
        if offset >= free || data.is_empty() || !self.allocate() {
            return 0;
        }
        let n = data.len().min(free - offset);
        self.copy_in(self.len + offset, &data[..n]);
        n
    }

    /// Makes the first `n` bytes of the free space, previously written with `write_at`, part of the queue
    /// (clamped to the free space).
    pub fn commit(&mut self, n: usize) {
        let n = n.min(self.free());
        if n > 0 && self.allocate() {
            self.len += n;
        }
    }

    /// Changes the capacity, keeping the queued bytes in order, and data parked with `write_at` as far as it
    /// fits (the caller trims its record of parked data to the new free space). Refuses, returning false,
    /// to shrink below the bytes queued, or when the new storage cannot be allocated.
    pub fn set_capacity(&mut self, capacity: usize) -> bool {
        if capacity < self.len {
            return false;
        }
        if capacity == self.capacity {
            return true;
        }
        if self.storage.is_empty() {
            // Nothing written yet: nothing to keep.
            self.capacity = capacity;
            self.head = self.head.checked_rem(capacity).unwrap_or(0);
            return true;
        }
        let mut storage = Vec::new();
        if storage.try_reserve_exact(capacity).is_err() {
            return false;
        }
        let (first, second) = self.slices(0, self.capacity.min(capacity));
        storage.extend_from_slice(first);
        storage.extend_from_slice(second);
        storage.resize(capacity, 0);
        self.storage = storage;
        self.capacity = capacity;
        self.head = 0;
        true
    }

    /// Bytes of storage the ring holds (its capacity, or 0 when it has none).
    pub fn storage_bytes(&self) -> usize {
        self.storage.len()
    }

    /// True when the ring holds no storage (a write would have to allocate it).
    pub fn is_detached(&self) -> bool {
        self.storage.len() != self.capacity
    }

    /// Gives the ring `storage` to use, if it has none and `storage` is exactly its capacity long. Returns the
    /// storage when it is not taken, for the caller to keep.
    pub fn attach(&mut self, storage: Vec<u8>) -> Option<Vec<u8>> {
        if !self.is_detached() || storage.len() != self.capacity || self.capacity == 0 {
            return Some(storage);
        }
        // The queue resumes where it stood (see the module's note on 4K aliasing).
        self.storage = storage;
        None
    }

    /// Takes the storage out of an empty ring (bytes parked by `write_at` are lost: the caller detaches only
    /// when none are). `None` when the ring holds bytes or has no storage. The queue will resume at the same
    /// offset within the first page (see the module's note).
    pub fn detach(&mut self) -> Option<Vec<u8>> {
        if self.len > 0 || self.storage.is_empty() {
            return None;
        }
        self.head %= PAGE;
        Some(std::mem::take(&mut self.storage))
    }

    /// The storage, whatever it holds, for reuse by another ring once this one is gone.
    pub fn into_storage(self) -> Vec<u8> {
        if self.is_detached() {
            return Vec::new();
        }
        self.storage
    }

    /// Allocates the storage on first use. False if it cannot be (an absurd capacity): the buffer then behaves
    /// as if it had no room, rather than aborting. The check is inline (every push makes it); the allocation
    /// is not.
    #[inline]
    fn allocate(&mut self) -> bool {
        self.storage.len() == self.capacity || self.allocate_storage()
    }

    // off the per-segment path: see "Code placement" in docs/DESIGN.md
    #[inline(never)]
    fn allocate_storage(&mut self) -> bool {
        if self.storage.try_reserve_exact(self.capacity).is_err() {
            return false;
        }
        self.storage.resize(self.capacity, 0);
        true
    }

    /// Maps `head + distance` (less than twice the capacity) to an index in the storage.
    fn wrap(&self, position: usize) -> usize {
        if position >= self.capacity {
            position - self.capacity
        } else {
            position
        }
    }

    /// The `len` stored bytes starting `offset` past the front, queued or not; `offset + len` must not exceed
    /// the capacity, and the storage must exist unless `len` is 0.
    fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if len == 0 {
            return (&[], &[]);
        }
        let start = self.wrap(self.head + offset);
        let first = len.min(self.capacity - start);
        (&self.storage[start..start + first], &self.storage[..len - first])
    }

    /// Copies `data` into the storage starting `offset` past the front; `offset + data.len()` must not exceed
    /// the capacity, and the storage must exist.
    fn copy_in(&mut self, offset: usize, data: &[u8]) {
        let start = self.wrap(self.head + offset);
        let first = data.len().min(self.capacity - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        if first < data.len() {
            self.storage[..data.len() - first].copy_from_slice(&data[first..]);
        }
    }
}

/// Copies the two pieces a ring hands out (the second empty unless the bytes wrap around the storage's end)
/// to the front of `out`, back to back, and returns how many bytes that was; `out` must hold them. An empty
/// second piece is not copied: a call into `memcpy` for nothing costs a dozen instructions, and the copies of
/// every segment's payload are on the per-segment path.
#[link_section = ".text.hot.ustack"]
pub fn copy_pieces(out: &mut [u8], first: &[u8], second: &[u8]) -> usize {
    out[..first.len()].copy_from_slice(first);
    if !second.is_empty() {
        out[first.len()..first.len() + second.len()].copy_from_slice(second);
    }
    first.len() + second.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn joined((a, b): (&[u8], &[u8])) -> Vec<u8> {
        [a, b].concat()
    }

    /// A buffer of capacity 8 whose front sits at index 6, so that everything wraps soon.
    fn wrapped() -> RingBuffer {
        let mut r = RingBuffer::new(8);
        assert_eq!(r.push(b"xxxxxx"), 6);
        assert_eq!(r.discard(6), 6);
        r
    }

    #[test]
    fn lazy_storage_and_accessors() {
        let mut r = RingBuffer::new(4);
        assert!(r.storage.is_empty() && r.is_empty() && !r.is_full());
        assert_eq!(r.push(b""), 0);
        assert!(r.storage.is_empty(), "an empty push allocates nothing");
        assert_eq!(r.push(b"abcdef"), 4);
        assert_eq!((r.len(), r.free(), r.capacity(), r.is_full()), (4, 0, 4, true));
        assert_eq!(r.storage.len(), 4);
        assert_eq!(r.push(b"g"), 0);
    }

    #[test]
    fn zero_capacity_takes_nothing() {
        let mut r = RingBuffer::new(0);
        assert_eq!(r.push(b"a"), 0);
        assert_eq!(r.write_at(0, b"a"), 0);
        r.commit(3);
        assert_eq!(r.pop(&mut [0; 4]), 0);
        assert_eq!(r.discard(1), 0);
        assert_eq!(r.peek(0, 4), (&[][..], &[][..]));
        assert!(r.is_full() && r.is_empty());
    }

    #[test]
    fn absurd_capacity_does_not_abort() {
        let mut r = RingBuffer::new(usize::MAX);
        assert_eq!(r.push(b"abc"), 0);
        assert_eq!(r.write_at(5, b"abc"), 0);
        r.commit(1);
        assert!(r.is_empty());
    }

    #[test]
    fn push_pop_peek_discard_wrap_around() {
        let mut r = wrapped();
        assert_eq!(r.push(b"abcde"), 5);
        assert_eq!(r.peek(0, 10), (&b"ab"[..], &b"cde"[..]), "two slices across the end");
        assert_eq!(r.peek(1, 3), (&b"b"[..], &b"cd"[..]));
        assert_eq!(r.peek(2, 10), (&b"cde"[..], &[][..]), "past the wrap: one slice");
        assert_eq!(r.peek(5, 1), (&[][..], &[][..]));
        let mut out = [0; 3];
        assert_eq!(r.pop(&mut out), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(r.push(b"fghijk"), 6);
        assert_eq!(joined(r.peek(0, 8)), b"defghijk");
        assert_eq!(r.discard(3), 3);
        let mut out = [0; 10];
        assert_eq!(r.pop(&mut out), 5);
        assert_eq!(&out[..5], b"ghijk");
        assert_eq!(r.discard(1), 0);
    }

    #[test]
    fn write_at_and_commit_across_the_wrap() {
        let mut r = wrapped();
        assert_eq!(r.push(b"a"), 1);
        // Free space starts at index 7; offset 1 is index 0, past the wrap.
        assert_eq!(r.write_at(1, b"cde"), 3);
        assert_eq!(r.len(), 1, "parked bytes are not queued");
        assert_eq!(r.write_at(0, b"b"), 1);
        r.commit(4);
        assert_eq!(joined(r.peek(0, 8)), b"abcde");
        // Clamped to the free space: 3 bytes left, the write at offset 1 takes 2.
        assert_eq!(r.write_at(1, b"xyz"), 2);
        assert_eq!(r.write_at(3, b"x"), 0, "beyond the free space");
        r.commit(100);
        assert!(r.is_full());
        // Free offsets 1 and 2 became queue offsets 6 and 7; offset 5 was never written.
        assert_eq!(joined(r.peek(6, 2)), b"xy");
    }

    #[test]
    fn parked_data_survives_discard() {
        let mut r = RingBuffer::new(6);
        r.push(b"abcd");
        assert_eq!(r.write_at(1, b"f"), 1);
        r.discard(4);
        assert_eq!(r.write_at(0, b"e"), 1);
        r.commit(2);
        assert_eq!(joined(r.peek(0, 6)), b"ef");
    }

    #[test]
    fn a_ring_keeps_its_position_across_storage_lent_and_given_back() {
        let mut r = RingBuffer::with_start(8, 13);
        assert_eq!(r.push(b"abcdef"), 6, "starting at 5 of 8 and wrapping");
        assert_eq!(joined(r.peek(0, 8)), b"abcdef");
        let mut out = [0u8; 6];
        assert_eq!(r.pop(&mut out), 6);
        assert_eq!(&out, b"abcdef");
        let storage = r.detach().expect("an empty ring gives its storage back");
        assert_eq!(r.attach(storage), None);
        assert_eq!(r.push(b"ghijklmn"), 8, "the whole capacity, from where the queue stood");
        assert_eq!(joined(r.peek(0, 8)), b"ghijklmn");
        assert_eq!(r.head, 3, "5 + 6 wrapped: not back to 0");
    }

    #[test]
    fn a_ring_given_back_resumes_at_its_offset_in_the_first_page() {
        let mut r = RingBuffer::with_start(3 * PAGE, 2 * PAGE + 100);
        let data: Vec<u8> = (0..PAGE as u32 + 50).map(|i| (i % 251) as u8).collect();
        assert_eq!(r.push(&data), data.len());
        let mut out = vec![0u8; data.len()];
        assert_eq!(r.pop(&mut out), data.len());
        assert_eq!(out, data, "across the wrap");
        assert_eq!(r.push(&data[..PAGE]), PAGE);
        assert_eq!(r.pop(&mut out[..PAGE]), PAGE);
        assert_eq!(r.head, PAGE + 150, "in the second page");
        let storage = r.detach().expect("an empty ring gives its storage back");
        assert_eq!(r.head, 150, "the same offset within a page, in the first page");
        assert_eq!(r.attach(storage), None);
        assert_eq!(r.push(b"xyz"), 3);
        assert_eq!(joined(r.peek(0, 3)), b"xyz");
    }

    #[test]
    fn set_capacity_keeps_order_and_parked_data() {
        let mut r = wrapped();
        r.push(b"abcd");
        r.write_at(1, b"f");
        assert!(!r.set_capacity(3), "below what is queued");
        assert!(r.set_capacity(20));
        assert_eq!((r.capacity(), r.free()), (20, 16));
        assert_eq!(r.write_at(0, b"e"), 1);
        r.commit(2);
        assert_eq!(r.peek(0, 20), (&b"abcdef"[..], &[][..]));
        assert!(r.set_capacity(6));
        assert!(r.is_full());
        assert_eq!(joined(r.peek(0, 20)), b"abcdef");
        let mut lazy = RingBuffer::new(4);
        assert!(lazy.set_capacity(2) && lazy.storage.is_empty());
        assert_eq!(lazy.push(b"abc"), 2);
    }

    use crate::rng::Rng;

    /// The reference: the queue as a `VecDeque`, and the free space as the bytes parked there relative to the
    /// end of the queue (`None` where nothing defined was written).
    struct Model {
        queued: VecDeque<Option<u8>>,
        parked: VecDeque<Option<u8>>,
    }

    impl Model {
        fn check_bytes(&self, got: &[u8], offset: usize) {
            for (i, &b) in got.iter().enumerate() {
                if let Some(expected) = self.queued[offset + i] {
                    assert_eq!(b, expected, "byte {}", offset + i);
                }
            }
        }
    }

    #[test]
    fn an_empty_ring_lends_its_storage_and_takes_it_back() {
        let mut r = RingBuffer::new(8);
        assert!(r.is_detached(), "nothing allocated before the first write");
        assert_eq!(r.detach(), None);
        assert_eq!(r.attach(vec![0; 7]), Some(vec![0; 7]), "storage of the wrong size is refused");
        assert_eq!(r.attach(vec![9; 8]), None);
        assert!(!r.is_detached());
        r.push(b"abcdef");
        let mut out = [0; 4];
        r.pop(&mut out);
        assert_eq!(r.detach(), None, "a ring holding bytes keeps its storage");
        r.pop(&mut out);
        let storage = r.detach().expect("empty: the storage comes out");
        assert_eq!(storage.len(), 8);
        assert!(r.is_detached());
        assert_eq!(r.attach(storage), None);
        assert_eq!(r.push(b"0123456789"), 8, "the whole capacity, from the front of the lent storage");
        assert_eq!(joined(r.peek(0, 8)), b"01234567");
    }

    #[test]
    fn matches_a_vecdeque_model() {
        let mut rng = Rng::new(0x243f_6a88_85a3_08d3);
        for _ in 0..50 {
            let capacity = 1 + rng.below(40);
            let mut r = RingBuffer::new(capacity);
            let mut m = Model { queued: VecDeque::new(), parked: (0..capacity).map(|_| None).collect() };
            for _ in 0..2_000 {
                let cap = r.capacity();
                match rng.below(8) {
                    0 => {
                        let len = rng.below(cap + 5);
                        let data = rng.bytes(len);
                        let n = r.push(&data);
                        assert_eq!(n, data.len().min(m.parked.len()));
                        m.queued.extend(data[..n].iter().map(|&b| Some(b)));
                        m.parked.drain(..n);
                    }
                    1 => {
                        let mut out = vec![0; rng.below(cap + 5)];
                        let n = r.pop(&mut out);
                        assert_eq!(n, out.len().min(m.queued.len()));
                        m.check_bytes(&out[..n], 0);
                        m.queued.drain(..n);
                        m.parked.extend((0..n).map(|_| None));
                    }
                    2 => {
                        let (offset, len) = (rng.below(cap + 3), rng.below(cap + 3));
                        let got = joined(r.peek(offset, len));
                        assert_eq!(got.len(), len.min(m.queued.len().saturating_sub(offset)));
                        m.check_bytes(&got, offset);
                    }
                    3 => {
                        let n = r.discard(rng.below(cap + 3));
                        assert_eq!(n, m.queued.drain(..n).count());
                        m.parked.extend((0..n).map(|_| None));
                    }
                    4 | 5 => {
                        let offset = rng.below(cap + 3);
                        let len = rng.below(cap);
                        let data = rng.bytes(len);
                        let n = r.write_at(offset, &data);
                        let room = m.parked.len().saturating_sub(offset);
                        assert_eq!(n, if data.is_empty() { 0 } else { data.len().min(room) });
                        for (i, &b) in data[..n].iter().enumerate() {
                            m.parked[offset + i] = Some(b);
                        }
                    }
                    6 => {
                        let n = rng.below(cap + 3);
                        r.commit(n);
                        let n = n.min(m.parked.len());
                        let moved: Vec<_> = m.parked.drain(..n).collect();
                        m.queued.extend(moved);
                    }
                    _ => {
                        let new = rng.below(45);
                        let ok = r.set_capacity(new);
                        assert_eq!(ok, new >= m.queued.len());
                        if ok {
                            let new_free = new - m.queued.len();
                            m.parked.truncate(new_free);
                            m.parked.resize(new_free, None);
                        }
                    }
                }
                assert_eq!(r.len(), m.queued.len());
                assert_eq!(r.free(), m.parked.len());
                assert_eq!(r.capacity(), m.queued.len() + m.parked.len());
                assert!(r.storage.is_empty() || r.storage.len() == r.capacity(), "never grows by itself");
                m.check_bytes(&joined(r.peek(0, r.len())), 0);
            }
        }
    }
}
