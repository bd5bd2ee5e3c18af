//! Hash maps for the per-packet lookups: the four-tuple demux, listeners by address, the neighbor cache.
//!
//! Their keys are chosen by peers, so the hash is keyed (seeded from the stack's seed) to keep a flood of
//! crafted tuples from landing in one bucket — Linux keys its connection hash the same way (a secret mixed
//! into jhash). The std default, SipHash-1-3, is a cryptographic PRF and cost about a tenth of the
//! receive path's CPU on two lookups per segment; foldhash is a keyed multiply-fold hash built for small keys
//! such as a 12-byte four-tuple. A fixed seed per stack also keeps the maps' order, and so every simulation
//! and replay, deterministic for a given seed.

use std::collections::HashMap;

/// The keyed hasher of [`FlowMap`].
pub type FlowHasher = foldhash::fast::FixedState;

/// A `HashMap` with the keyed per-packet hasher.
pub type FlowMap<K, V> = HashMap<K, V, FlowHasher>;

/// An empty map hashed with a key derived from `seed`.
pub fn flow_map<K, V>(seed: u64) -> FlowMap<K, V> {
    HashMap::with_hasher(FlowHasher::with_seed(seed))
}
