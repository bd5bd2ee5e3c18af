//! Runs packetdrill scripts and prints each report:
//! `cargo run -p ustack-harness --example packetdrill -- tests/scripts/*.pkt` against ustack on virtual time;
//! `--kernel` runs them against the Linux kernel in a private network namespace instead (needs root); `-v`
//! prints passing traces too.

use ustack_harness::packetdrill::{run_file, Config};

fn main() {
    let mut verbose = false;
    let mut config = Config::default();
    let mut failed = 0;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-v" => verbose = true,
            "--kernel" => config = Config::kernel(),
            _ => {
                let report = run_file(&arg, &config);
                println!("{report}");
                if verbose && report.passed() {
                    print!("{}", report.trace_text());
                }
                if report.failed() {
                    failed += 1;
                }
            }
        }
    }
    std::process::exit(i32::from(failed > 0));
}
