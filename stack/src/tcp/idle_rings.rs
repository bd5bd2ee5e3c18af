//! Rings that just emptied, keeping their storage for a moment.
//!
//! A connection's send and receive rings hold storage only while they hold bytes: once empty, the storage goes
//! back to the stack's [`BufferPool`](crate::storage::buffer_pool::BufferPool), so that an idle connection holds
//! no buffer memory. Giving it back the moment a ring empties costs a request/response exchange two pool round
//! trips per message: the send ring empties when the request is acknowledged and is filled again by the next
//! request a moment later; the receive ring empties when the application reads it dry and fills with the next
//! answer. So an emptied ring keeps its storage and joins a short list of idle rings. When the list outgrows
//! its bounds (rings and bytes), the ring idle longest gives its storage back, if it is still empty: whatever
//! the number of connections, the idle ones hold at most the list's bound between them.
//!
//! Linux charges a socket's buffers to it while they hold data (`sk_wmem_queued`, `sk_rmem_alloc`) and frees
//! each skb as it is consumed; its per-CPU page-fragment caches play the part of this list, keeping recently
//! freed memory at hand for the next allocation.

use std::collections::VecDeque;

use crate::storage::slab::SlabKey;

/// One of a connection's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    Receive,
    Send,
}

impl Ring {
    /// The ring's bit in a connection's [`Listed`] flags.
    const fn bit(self) -> u8 {
        match self {
            Ring::Receive => 1,
            Ring::Send => 2,
        }
    }
}

/// Which of a connection's rings are on the idle list (so that a ring is listed once, however often it is
/// found empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listed(u8);

impl Listed {
    pub fn contains(self, ring: Ring) -> bool {
        self.0 & ring.bit() != 0
    }

    /// Both rings are listed: a request/response connection between messages, the common case.
    pub fn both(self) -> bool {
        self.0 == Ring::Receive.bit() | Ring::Send.bit()
    }

    pub fn set(&mut self, ring: Ring, listed: bool) {
        if listed {
            self.0 |= ring.bit();
        } else {
            self.0 &= !ring.bit();
        }
    }
}

/// A ring on the list: whose, which, and how much storage it held when listed.
#[derive(Debug, Clone, Copy)]
struct Entry {
    conn: SlabKey,
    ring: Ring,
    bytes: usize,
}

/// The idle rings that keep their storage, idle longest first, within a bound on their number and bytes.
#[derive(Debug)]
pub struct IdleRings {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_rings: usize,
    max_bytes: usize,
}

impl IdleRings {
    /// A list of at most `max_rings` rings holding at most `max_bytes` between them (0 rings: every ring gives
    /// its storage back as soon as it empties).
    pub fn new(max_rings: usize, max_bytes: usize) -> Self {
        IdleRings { entries: VecDeque::with_capacity(max_rings), bytes: 0, max_rings, max_bytes }
    }

    /// Lists `ring` of connection `conn`, which just emptied holding `bytes` of storage. Calls `give_back` for
    /// each ring that leaves the list to keep it within its bounds (idle longest first, possibly this one): that
    /// ring must give its storage back if it is still empty, and is no longer listed.
    pub fn push(&mut self, conn: SlabKey, ring: Ring, bytes: usize, mut give_back: impl FnMut(SlabKey, Ring)) {
        if self.max_rings == 0 || bytes > self.max_bytes {
            return give_back(conn, ring);
        }
        self.entries.push_back(Entry { conn, ring, bytes });
        self.bytes += bytes;
        while self.entries.len() > self.max_rings || self.bytes > self.max_bytes {
            let Some(oldest) = self.entries.pop_front() else { break };
            self.bytes -= oldest.bytes;
            give_back(oldest.conn, oldest.ring);
        }
    }

    /// Rings listed now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no ring is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::slab::Slab;

    fn keys(n: usize) -> Vec<SlabKey> {
        let mut slab = Slab::new();
        (0..n).map(|i| slab.insert(i)).collect()
    }

    /// Pushes `rings` in order; returns the rings that had to give their storage back.
    fn push_all(list: &mut IdleRings, rings: &[(SlabKey, Ring, usize)]) -> Vec<(SlabKey, Ring)> {
        let mut left = Vec::new();
        for &(conn, ring, bytes) in rings {
            list.push(conn, ring, bytes, |c, r| left.push((c, r)));
        }
        left
    }

    #[test]
    fn the_ring_idle_longest_leaves_first_once_the_list_is_full() {
        let k = keys(3);
        let mut list = IdleRings::new(2, 1 << 20);
        assert!(push_all(&mut list, &[(k[0], Ring::Send, 100), (k[1], Ring::Receive, 100)]).is_empty(), "two fit");
        assert_eq!(push_all(&mut list, &[(k[2], Ring::Send, 100)]), vec![(k[0], Ring::Send)]);
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn the_byte_bound_holds_whatever_the_count() {
        let k = keys(3);
        let mut list = IdleRings::new(16, 250);
        let three = [(k[0], Ring::Send, 100), (k[1], Ring::Send, 100), (k[2], Ring::Send, 100)];
        assert_eq!(push_all(&mut list, &three), vec![(k[0], Ring::Send)]);
        // A ring larger than the whole bound does not stay, and takes nobody else with it.
        assert_eq!(push_all(&mut list, &[(k[0], Ring::Receive, 1000)]), vec![(k[0], Ring::Receive)]);
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn with_no_room_every_ring_gives_its_storage_back_at_once() {
        let k = keys(1);
        let mut list = IdleRings::new(0, 1 << 20);
        assert_eq!(push_all(&mut list, &[(k[0], Ring::Receive, 10)]), vec![(k[0], Ring::Receive)]);
        assert!(list.is_empty());
    }

    #[test]
    fn listed_flags_are_per_ring() {
        let mut listed = Listed::default();
        listed.set(Ring::Send, true);
        assert!(listed.contains(Ring::Send) && !listed.contains(Ring::Receive) && !listed.both());
        listed.set(Ring::Receive, true);
        assert!(listed.both());
        listed.set(Ring::Receive, false);
        listed.set(Ring::Send, false);
        assert_eq!(listed, Listed::default());
    }
}
