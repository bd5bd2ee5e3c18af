//! The `ustack-bench` command: see the library's documentation and BENCHMARKS.md.

#![forbid(unsafe_code)]

fn main() {
    ustack_bench::main(ustack_bench::Entry::Binary);
}
