//! Support code shared by the integration tests: fixtures, hand-built frames from a fake peer, and (in
//! `kernel`) a Linux kernel peer in a private network namespace.

pub mod fixtures;
pub mod frames;
pub mod replay;

pub mod conversation;
pub mod kernel;
pub mod kernel_tcp_util;
pub mod smol;
pub mod tcp_app;
