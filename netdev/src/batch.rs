//! A fixed set of reusable frame slots, filled by a device on receive and by the stack on transmit.

/// A batch of up to `capacity` frames of at most `slot_size` bytes each, in one preallocated buffer.
///
/// Allocation happens once, in [`FrameBatch::new`]; pushing and clearing never allocate.
#[derive(Debug, Clone)]
pub struct FrameBatch {
    storage: Vec<u8>,
    lens: Vec<usize>,
    /// Per frame: its transport checksum needs no verifying (see [`FrameBatch::checksum_trusted`]).
    trusted: Vec<bool>,
    slot_size: usize,
    capacity: usize,
}

impl FrameBatch {
    /// A batch of `capacity` slots of `slot_size` bytes (use at least MTU + 14 for Ethernet).
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        assert!(capacity > 0 && slot_size > 0, "a batch needs at least one non-empty slot");
        FrameBatch {
            storage: vec![0; capacity * slot_size],
            lens: Vec::with_capacity(capacity),
            trusted: Vec::with_capacity(capacity),
            slot_size,
            capacity,
        }
    }

    /// The largest frame one slot holds.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// How many frames the batch can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many frames the batch holds now.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when the batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// True when no slot is free.
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.capacity
    }

    /// Forgets every frame (the slots stay allocated).
    pub fn clear(&mut self) {
        self.lens.clear();
        self.trusted.clear();
    }

    /// Reserves the next slot with room for `len` bytes and returns it for the caller to fill. `None` when the
    /// batch is full or `len` exceeds the slot size.
    pub fn push_with_len(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.is_full() || len > self.slot_size {
            return None;
        }
        let start = self.lens.len() * self.slot_size;
        self.lens.push(len);
        self.trusted.push(false);
        Some(&mut self.storage[start..start + len])
    }

    /// Copies `frame` into the next slot. Returns false (and copies nothing) when it does not fit.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        match self.push_with_len(frame.len()) {
            Some(slot) => {
                slot.copy_from_slice(frame);
                true
            }
            None => false,
        }
    }

    /// The whole next free slot, for devices that learn a frame's length only after reading it; follow with
    /// [`FrameBatch::commit`]. `None` when full.
    pub fn spare_slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let start = self.lens.len() * self.slot_size;
        Some(&mut self.storage[start..start + self.slot_size])
    }

    /// Marks the slot returned by [`FrameBatch::spare_slot`] as holding a frame of `len` bytes.
    pub fn commit(&mut self, len: usize) {
        assert!(!self.is_full() && len <= self.slot_size, "commit without a spare slot");
        self.lens.push(len);
        self.trusted.push(false);
    }

    /// Every free slot, in order (the first is the one [`FrameBatch::spare_slot`] returns), for devices that fill
    /// several slots with one system call (`recvmmsg`). Follow with [`FrameBatch::commit_spare`] for each slot
    /// that received a frame, in increasing order.
    pub fn spare_slots(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        let start = self.lens.len() * self.slot_size;
        self.storage[start..].chunks_exact_mut(self.slot_size)
    }

    /// Marks the `len` bytes written into spare slot `spare_index` (0 is the next free slot, counted at the time
    /// of this call) as the next frame, moving them down when earlier spare slots are to stay unused. Returns
    /// false, changing nothing, when there is no such slot or `len` exceeds the slot size.
    pub fn commit_spare(&mut self, spare_index: usize, len: usize) -> bool {
        let free = self.capacity - self.lens.len();
        if spare_index >= free || len > self.slot_size {
            return false;
        }
        let dst = self.lens.len() * self.slot_size;
        let src = dst + spare_index * self.slot_size;
        if src != dst {
            self.storage.copy_within(src..src + len, dst);
        }
        self.lens.push(len);
        self.trusted.push(false);
        true
    }

    /// Shortens frame `index` to `len` bytes (used when trimming padding or partial reads).
    pub fn truncate_frame(&mut self, index: usize, len: usize) {
        if let Some(l) = self.lens.get_mut(index) {
            *l = (*l).min(len);
        }
    }

    /// Frame `index`, if present.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let len = *self.lens.get(index)?;
        let start = index * self.slot_size;
        Some(&self.storage[start..start + len])
    }

    /// Frame `index`, mutable, if present.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        let len = *self.lens.get(index)?;
        let start = index * self.slot_size;
        Some(&mut self.storage[start..start + len])
    }

    /// Marks frame `index` as one whose transport checksum needs no verifying: it came from the local kernel
    /// with the checksum left to offload (virtio-net `NEEDS_CSUM`), so its bytes never crossed a wire —
    /// Linux treats such a packet (`CHECKSUM_PARTIAL`) as verified, too. The checksum field is then left as
    /// the kernel wrote it, holding only the pseudo-header sum.
    pub fn mark_checksum_trusted(&mut self, index: usize) {
        if let Some(t) = self.trusted.get_mut(index) {
            *t = true;
        }
    }

    /// True when frame `index` was marked with [`FrameBatch::mark_checksum_trusted`].
    pub fn checksum_trusted(&self, index: usize) -> bool {
        self.trusted.get(index).copied().unwrap_or(false)
    }

    /// The frames in order, each with whether its checksum is trusted.
    pub fn iter_with_trust(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        self.iter().zip(self.trusted.iter().copied())
    }

    /// The frames in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.lens.iter().enumerate().map(move |(i, &len)| &self.storage[i * self.slot_size..i * self.slot_size + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_clear() {
        let mut b = FrameBatch::new(2, 8);
        assert!(b.push(b"abc"));
        assert!(b.push(b"12345678"));
        assert!(!b.push(b"x"), "full");
        assert_eq!(b.get(0), Some(&b"abc"[..]));
        assert_eq!(b.iter().count(), 2);
        b.clear();
        assert!(b.is_empty());
        assert!(!b.push(b"123456789"), "larger than a slot");
        let slot = b.spare_slot().unwrap();
        slot[..2].copy_from_slice(b"hi");
        b.commit(2);
        assert_eq!(b.get(0), Some(&b"hi"[..]));
    }

    #[test]
    fn checksum_trust_is_per_frame_and_cleared_with_the_batch() {
        let mut b = FrameBatch::new(3, 8);
        assert!(b.push(b"a") && b.push(b"b"));
        b.mark_checksum_trusted(1);
        b.mark_checksum_trusted(7); // no such frame: ignored
        assert_eq!(b.iter_with_trust().map(|(_, t)| t).collect::<Vec<_>>(), [false, true]);
        b.clear();
        assert!(b.push(b"c"));
        assert!(!b.checksum_trusted(0), "a new frame starts untrusted");
    }

    #[test]
    fn spare_slots_and_commit_spare() {
        let mut b = FrameBatch::new(4, 4);
        assert!(b.push(b"a"));
        for (i, slot) in b.spare_slots().enumerate() {
            slot.fill(b'0' + i as u8);
        }
        assert_eq!(b.spare_slots().count(), 3);
        // Keep spare slots 0 and 2, skipping 1: the third frame moves down.
        assert!(b.commit_spare(0, 2));
        assert!(b.commit_spare(1, 3)); // originally spare slot 2, now 1 past the next free slot
        assert!(!b.commit_spare(1, 1), "only one free slot left");
        assert!(!b.commit_spare(0, 5), "larger than a slot");
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"00", b"222"]);
    }
}
