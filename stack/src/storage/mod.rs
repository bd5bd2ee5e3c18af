//! Buffers that sockets keep data in.

pub mod datagram_queue;

pub use datagram_queue::DatagramQueue;
