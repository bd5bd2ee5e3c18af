//! Support code shared by the integration tests: fixtures, hand-built frames from a fake peer, and (in
//! `kernel`) a Linux kernel peer in a private network namespace. The pcap replay library lives in the
//! `ustack-harness` crate (`ustack_harness::replay`).

pub mod fixtures;
pub mod frames;

pub mod conversation;
pub mod kernel;
pub mod kernel_tcp_util;
pub mod poll_conns;
pub mod smol;
pub mod tcp_app;
