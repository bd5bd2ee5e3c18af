//! A queue of datagrams with a byte budget, the receive (and send) buffer of a datagram socket.
//!
//! Message boundaries are kept: each datagram is one entry. Buffers of popped datagrams are kept for reuse,
//! so a socket in steady state does not allocate per datagram.

use std::collections::VecDeque;

/// Bytes charged per datagram on top of its payload, so that a flood of empty datagrams is bounded too (Linux
/// charges each datagram's `truesize`, which includes its metadata).
pub const DATAGRAM_OVERHEAD: usize = 256;

/// Spare buffers kept for reuse, at most.
const MAX_SPARE: usize = 64;

/// A FIFO of datagrams, each with metadata `M` (for example the sender's address).
#[derive(Debug)]
pub struct DatagramQueue<M> {
    queue: VecDeque<(M, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
    charged: usize,
    budget: usize,
}

/// The queue was over its budget; the datagram was not taken.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl<M> DatagramQueue<M> {
    /// An empty queue that admits datagrams while fewer than `budget` bytes are charged.
    pub fn new(budget: usize) -> Self {
        DatagramQueue { queue: VecDeque::new(), spare: Vec::new(), charged: 0, budget }
    }

    /// Changes the budget; datagrams already queued stay.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes charged now (payloads plus per-datagram overhead).
    pub fn charged(&self) -> usize {
        self.charged
    }

    /// Payload bytes of the datagram at the head, if any.
    pub fn front_len(&self) -> Option<usize> {
        self.queue.front().map(|(_, d)| d.len())
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when the next datagram would be refused.
    pub fn is_full(&self) -> bool {
        self.charged >= self.budget
    }

    /// Appends a copy of `data`. Like Linux, a datagram is admitted while the charge is below the budget, even
    /// if it then goes over: the budget bounds memory without refusing the one large datagram a small buffer
    /// can take.
    pub fn push(&mut self, meta: M, data: &[u8]) -> Result<(), QueueFull> {
        if self.is_full() {
            return Err(QueueFull);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.charged += data.len() + DATAGRAM_OVERHEAD;
        self.queue.push_back((meta, buf));
        Ok(())
    }

    /// The datagram at the head.
    pub fn front(&self) -> Option<(&M, &[u8])> {
        self.queue.front().map(|(m, d)| (m, d.as_slice()))
    }

    /// Removes the datagram at the head, keeping its buffer for reuse.
    pub fn pop(&mut self) -> Option<M> {
        let (meta, buf) = self.queue.pop_front()?;
        self.charged -= buf.len() + DATAGRAM_OVERHEAD;
        if self.spare.len() < MAX_SPARE {
            self.spare.push(buf);
        }
        Some(meta)
    }

    /// Removes every datagram, returning them (for handing a closing socket's output to the stack).
    pub fn drain(&mut self) -> impl Iterator<Item = (M, Vec<u8>)> + '_ {
        self.charged = 0;
        self.queue.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_boundaries() {
        let mut q = DatagramQueue::new(10_000);
        q.push(1, b"one").unwrap();
        q.push(2, b"").unwrap();
        q.push(3, b"three").unwrap();
        assert_eq!(q.front(), Some((&1, &b"one"[..])));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.front_len(), Some(0));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
        assert_eq!(q.charged(), 0);
    }

    #[test]
    fn budget_admits_while_below() {
        let mut q = DatagramQueue::new(1000);
        q.push((), &[0; 900]).unwrap();
        assert_eq!(q.push((), &[0; 10]), Err(QueueFull), "900 + overhead is over 1000");
        q.pop();
        q.push((), &[0; 5000]).unwrap();
        assert!(q.is_full());
    }

    #[test]
    fn empty_datagrams_are_bounded_too() {
        let mut q = DatagramQueue::new(10 * DATAGRAM_OVERHEAD);
        let mut taken = 0;
        while q.push((), b"").is_ok() {
            taken += 1;
            assert!(taken <= 10);
        }
        assert_eq!(taken, 10);
    }
}
