//! The four-tuple table that finds a segment's connection, half-open entry or TIME-WAIT entry, with the last
//! lookup kept in front of it.
//!
//! Consecutive segments nearly always belong to the same connection: a bulk transfer's, or the one
//! request/response exchange in flight. 4.4BSD kept the last connection found (`tcp_last_inpcb`) and checked
//! it before the hash chain; so does this table. A hit costs one comparison of twelve bytes, where a hash
//! lookup is a chain of dependent steps (hash, control bytes, bucket, key) that the CPU cannot overlap:
//! on the benchmark machine, about a tenth of the receive path's time in a bulk transfer. A miss costs the
//! comparison more than before. Every insertion and removal forgets the remembered entry, so it can never
//! outlive what it points to.

use crate::storage::flow_map::{flow_map, FlowMap};
use crate::storage::slab::SlabKey;
use std::cell::Cell;
use std::net::SocketAddrV4;

/// A connection's identity: (local address, remote address).
pub type FourTuple = (SocketAddrV4, SocketAddrV4);

/// What a four-tuple leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demuxed {
    Conn(SlabKey),
    HalfOpen(SlabKey),
    TimeWait(SlabKey),
}

/// The four-tuple table (see the module docs).
#[derive(Debug)]
pub struct DemuxTable {
    map: FlowMap<FourTuple, Demuxed>,
    /// The entry the last successful lookup found.
    last: Cell<Option<(FourTuple, Demuxed)>>,
}

impl DemuxTable {
    /// An empty table whose hash is keyed from `seed` (see `storage::flow_map`).
    pub fn new(seed: u64) -> DemuxTable {
        DemuxTable { map: flow_map(seed), last: Cell::new(None) }
    }

    /// What `tuple` leads to, if anything.
    #[inline]
    pub fn get(&self, tuple: &FourTuple) -> Option<Demuxed> {
        if let Some((last, found)) = self.last.get() {
            if last == *tuple {
                return Some(found);
            }
        }
        let found = self.map.get(tuple).copied();
        if let Some(found) = found {
            self.last.set(Some((*tuple, found)));
        }
        found
    }

    /// Whether `tuple` leads anywhere.
    pub fn contains(&self, tuple: &FourTuple) -> bool {
        self.get(tuple).is_some()
    }

    /// Makes `tuple` lead to `to`, in place of whatever it led to.
    pub fn insert(&mut self, tuple: FourTuple, to: Demuxed) {
        self.last.set(None);
        self.map.insert(tuple, to);
    }

    /// Removes `tuple` if it still leads to `to` (and not to an entry that has taken its place since).
    /// Returns whether it did.
    pub fn remove_if(&mut self, tuple: &FourTuple, to: Demuxed) -> bool {
        if self.get(tuple) != Some(to) {
            return false;
        }
        self.last.set(None);
        self.map.remove(tuple);
        true
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        ("198.18.0.2:80".parse().unwrap(), SocketAddrV4::new([198, 18, 0, 1].into(), port))
    }

    #[test]
    fn the_remembered_entry_never_outlives_a_change_to_the_table() {
        let mut slab = crate::storage::slab::Slab::new();
        let keys: Vec<SlabKey> = (0..4).map(|i| slab.insert(i)).collect();
        let key = |i: usize| keys[i];
        let mut table = DemuxTable::new(7);
        let (a, b) = (tuple(1000), tuple(1001));
        assert_eq!(table.get(&a), None);
        table.insert(a, Demuxed::Conn(key(1)));
        table.insert(b, Demuxed::HalfOpen(key(2)));
        assert_eq!(table.get(&a), Some(Demuxed::Conn(key(1))));
        assert_eq!(table.get(&a), Some(Demuxed::Conn(key(1))), "from the remembered entry");
        assert_eq!(table.get(&b), Some(Demuxed::HalfOpen(key(2))));

        // Replaced while remembered: the new value is found, not the old.
        table.insert(b, Demuxed::Conn(key(3)));
        assert_eq!(table.get(&b), Some(Demuxed::Conn(key(3))));
        // Removal only of what the caller expects: a stale removal leaves the newer entry.
        table.remove_if(&b, Demuxed::HalfOpen(key(2)));
        assert_eq!(table.get(&b), Some(Demuxed::Conn(key(3))));
        table.remove_if(&b, Demuxed::Conn(key(3)));
        assert_eq!(table.get(&b), None, "removed while remembered");
        assert!(!table.contains(&b));
        assert!(table.contains(&a));
        assert_eq!(table.len(), 1);
        table.remove_if(&a, Demuxed::Conn(key(1)));
        assert!(table.is_empty());
    }
}
