//! `cargo bench -p ustack-bench`: the same suite as the `ustack-bench` binary (arguments after `--` are its
//! flags, e.g. `cargo bench -p ustack-bench -- --quick`), with its table and JSON also written under the
//! target folder.

#![forbid(unsafe_code)]

fn main() {
    ustack_bench::main(ustack_bench::Entry::CargoBench);
}
