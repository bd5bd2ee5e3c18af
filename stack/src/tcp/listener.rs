//! LISTEN: a listening socket with its two queues, as Linux keeps them.
//!
//! - The **SYN queue** holds half-open connections as light [`HalfOpen`] entries — the handshake's numbers and
//!   negotiated options, not a full TCB with buffers — so a flood of SYNs costs little.
//! - The **accept queue** holds established connections that `accept()` has not taken yet.
//!
//! Both are sized from `listen()`'s backlog. When the accept queue is full, new SYNs are dropped and so is
//! the final ACK of a handshake (the peer's retransmission tries again later); both count as ListenOverflows
//! and ListenDrops.

use super::connection::{ConnOptions, Negotiated};
use super::handshake::Buffers;
use super::seq::SeqNum;
use crate::socket::Fd;
use crate::storage::slab::SlabKey;
use crate::time::{Duration, Instant};
use crate::timer::TimerHandle;
use std::collections::VecDeque;
use std::net::SocketAddrV4;

/// A listening socket.
#[derive(Debug)]
pub struct Listener {
    pub fd: Fd,
    pub local: SocketAddrV4,
    /// `listen()`'s backlog, capped at somaxconn.
    pub backlog: usize,
    /// Half-open connections of this listener (in the layer's half-open table).
    pub syn_queue_len: usize,
    /// Established connections waiting for `accept()`, oldest first.
    pub accept_queue: VecDeque<SlabKey>,
    /// What accepted connections inherit.
    pub opts: ConnOptions,
    pub buffers: Buffers,
    pub reuse_addr: bool,
}

impl Listener {
    /// Linux's `sk_acceptq_is_full`: more than `backlog` waiting.
    pub fn accept_queue_full(&self) -> bool {
        self.accept_queue.len() > self.backlog
    }

    /// Linux's `inet_csk_reqsk_queue_is_full` (without SYN cookies): as many half-open as the backlog.
    pub fn syn_queue_full(&self) -> bool {
        self.syn_queue_len >= self.backlog.max(1)
    }
}

/// A half-open connection: our SYN-ACK is out, the peer's ACK has not come (SYN-RECEIVED of a passive open).
#[derive(Debug)]
pub struct HalfOpen {
    pub listener: SlabKey,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub iss: SeqNum,
    pub irs: SeqNum,
    pub negotiated: Negotiated,
    /// The window our SYN-ACK offered.
    pub syn_window: u16,
    /// SYN-ACKs retransmitted so far.
    pub retries: u32,
    /// The current SYN-ACK timeout (doubling with each retransmission).
    pub rto: Duration,
    pub deadline: Instant,
    pub timer: Option<TimerHandle>,
    /// When the first SYN-ACK went out (an RTT sample when the handshake completes without retransmission).
    pub synack_sent_at: Instant,
    /// The final ACK came but the accept queue was full; it was dropped (Linux keeps the entry so that the
    /// peer's next ACK completes the handshake).
    pub acked_while_full: bool,
}
