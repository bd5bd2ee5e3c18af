//! Buffers that sockets keep data in.

pub mod buffer_pool;
pub mod datagram_queue;
pub mod flow_map;
pub mod ring_buffer;
pub mod slab;

pub use datagram_queue::DatagramQueue;
