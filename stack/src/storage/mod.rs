//! Buffers that sockets keep data in.

pub mod datagram_queue;
pub mod ring_buffer;
pub mod slab;

pub use datagram_queue::DatagramQueue;
