//! Spare ring storage, so that idle connections hold no buffer memory and busy ones never wait on `malloc`.
//!
//! A connection's send and receive rings need their storage only while they hold bytes. When a ring empties
//! (the application read everything, the peer acknowledged everything) its storage comes back here — after
//! a while on the list of recently emptied rings (`tcp/idle_rings.rs`) — and the next write takes it again.
//! Without the pool, a connection that once moved data kept 2 × 256 KiB for life, and handing storage back
//! to the allocator instead would zero (and page-fault) a fresh 256 KiB for every request of a ping-pong
//! protocol. The pool is bounded: storage beyond its limit is freed.

/// Free ring storages, each exactly as long as the ring it came from.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    max_buffers: usize,
}

/// How far `take` looks for a storage of the right size: most rings share the default size, and a pool of
/// mixed sizes must not make `take` slow.
const SEARCH_DEPTH: usize = 8;

impl BufferPool {
    /// A pool keeping at most `max_buffers` storages and `max_bytes` bytes.
    pub fn new(max_buffers: usize, max_bytes: usize) -> Self {
        BufferPool { free: Vec::new(), bytes: 0, max_bytes, max_buffers }
    }

    /// A spare storage of exactly `len` bytes, if one is near the top of the pool.
    pub fn take(&mut self, len: usize) -> Option<Vec<u8>> {
        let depth = self.free.len().min(SEARCH_DEPTH);
        let at = (self.free.len() - depth..self.free.len()).rev().find(|&i| self.free[i].len() == len)?;
        let storage = self.free.swap_remove(at);
        self.bytes -= storage.len();
        Some(storage)
    }

    /// Keeps `storage` for a later `take`, or frees it when the pool is full.
    pub fn put(&mut self, storage: Vec<u8>) {
        if storage.is_empty() || self.free.len() >= self.max_buffers || self.bytes + storage.len() > self.max_bytes {
            return;
        }
        self.bytes += storage.len();
        self.free.push(storage);
    }

    /// Bytes held spare.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_comes_back_by_size() {
        let mut pool = BufferPool::new(4, 1 << 20);
        pool.put(vec![1; 100]);
        pool.put(vec![2; 200]);
        assert_eq!(pool.take(100).map(|v| v[0]), Some(1));
        assert_eq!(pool.take(100), None, "taken once only");
        assert_eq!(pool.bytes(), 200);
        assert_eq!(pool.take(300), None, "no storage of another size is handed out");
    }

    #[test]
    fn the_pool_is_bounded_by_count_and_bytes() {
        let mut pool = BufferPool::new(2, 250);
        pool.put(vec![0; 100]);
        pool.put(vec![0; 100]);
        pool.put(vec![0; 10]); // over the count
        assert_eq!(pool.bytes(), 200);
        let mut pool = BufferPool::new(10, 250);
        pool.put(vec![0; 200]);
        pool.put(vec![0; 100]); // over the bytes
        assert_eq!(pool.bytes(), 200);
        pool.put(Vec::new());
        assert_eq!(pool.take(0), None, "empty storage is never kept");
    }
}
