//! Arbitrary bytes through every wire parser, and as one Ethernet frame into a stack with a UDP socket, a TCP
//! listener and an established connection. See `ustack_fuzz::frame_parser`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ustack_fuzz::frame_parser::run(data, None);
});
