//! Fuzzing harnesses for ustack, shared by the libFuzzer targets in `fuzz_targets/` and the plain regression
//! tests in `tests/regressions.rs` (which replay every saved input on stable Rust without libFuzzer).
//!
//! - [`frame_parser`]: arbitrary bytes through every wire parser and into a stack as one frame.
//! - [`actions`]: a sequence of frames, clock moves and socket calls against a stack with an established
//!   connection, checking invariants after every step.
//! - [`replay`]: runs a saved input of either target and writes what happened as a pcap.

pub mod actions;
pub mod capture;
pub mod driver;
pub mod frame_parser;
pub mod net;
pub mod replay;
