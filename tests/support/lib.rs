//! Support code shared by the integration tests: fixtures, hand-built frames from a fake peer, and (in
//! `kernel`) a Linux kernel peer in a private network namespace.

pub mod fixtures;
pub mod frames;

pub mod kernel;
pub mod tcp_app;
