//! Runs every packetdrill script under the workspace's `tests/scripts/` against ustack on virtual time (the
//! same scripts run against the Linux kernel in `kernel_scripts.rs`). The test fails listing
//! the scripts that fail; skipped ones are printed. Scripts describe Linux's behaviour: where ustack is known
//! to differ, the script is listed in [`KNOWN_DIFFERENCES`] with the difference, reported on every run, and
//! the test fails if such a script starts passing (so that the list stays true).

use std::path::PathBuf;
use ustack_harness::packetdrill::{run_file, Config};

/// Scripts that fail because ustack differs from Linux there, and how.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "delayed-ack-interactive.pkt",
        "no interactive (pingpong) mode: after the application has answered the peer's data within the ACK \
         timeout, Linux delays the ACK of the peer's next data segment by 40 ms (TCP_DELACK_MIN); ustack still \
         acknowledges it at once (at 0.310 s instead of 0.350 s)",
    ),
    (
        "fin-with-data.pkt",
        "a segment carrying data and FIN is acknowledged at once; Linux delays that ACK by 40 ms, because \
         tcp_fin() switches the connection to interactive (pingpong) mode on entering CLOSE-WAIT (a bare FIN \
         is still acknowledged at once by both)",
    ),
];

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("scripts")
}

#[test]
fn all_scripts() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("tests/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pkt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 40, "only {} scripts in tests/scripts", paths.len());
    let (mut passed, mut failed, mut skipped, mut differences, mut fixed) = (0, Vec::new(), 0, 0, Vec::new());
    for p in &paths {
        let report = run_file(p, &Config::default());
        let known = KNOWN_DIFFERENCES.iter().find(|(name, _)| *name == report.name);
        match (report.passed(), report.skipped(), known) {
            (true, _, None) => {
                passed += 1;
                println!("{report}");
            }
            (true, _, Some(_)) => fixed.push(report.name.clone()),
            (_, true, _) => {
                skipped += 1;
                println!("{report}");
            }
            (false, false, Some((_, why))) => {
                differences += 1;
                println!("KNOWN DIFFERENCE {}: ustack differs from Linux: {why}", report.name);
                let first = report.to_string();
                println!("  {}", first.lines().next().unwrap_or_default());
            }
            (false, false, None) => {
                println!("{report}");
                failed.push(report.name.clone());
            }
        }
    }
    println!(
        "packetdrill scripts: {passed} passed, {} failed, {skipped} skipped, {differences} known differences from \
         Linux",
        failed.len()
    );
    assert!(failed.is_empty(), "failing scripts: {failed:?}");
    assert!(fixed.is_empty(), "scripts listed as known differences now pass (remove them from the list): {fixed:?}");
}
