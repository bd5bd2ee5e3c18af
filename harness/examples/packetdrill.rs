//! Runs packetdrill scripts against ustack and prints each report:
//! `cargo run -p ustack-harness --example packetdrill -- tests/scripts/*.pkt` (`-v` prints passing traces too).

use ustack_harness::packetdrill::{run_file, Config};

fn main() {
    let mut verbose = false;
    let mut failed = 0;
    for arg in std::env::args().skip(1) {
        if arg == "-v" {
            verbose = true;
            continue;
        }
        let report = run_file(&arg, &Config::default());
        println!("{report}");
        if verbose && report.passed() {
            print!("{}", report.trace_text());
        }
        if report.failed() {
            failed += 1;
        }
    }
    std::process::exit(i32::from(failed > 0));
}
