//! Sequences of frames, clock moves and socket calls with invariants checked after each step. See
//! `ustack_fuzz::actions`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ustack_fuzz::actions::run(data, None);
});
