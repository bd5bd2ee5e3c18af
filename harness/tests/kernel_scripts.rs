//! Runs every packetdrill script under the workspace's `tests/scripts/` against the Linux kernel
//! ([`Backend::Kernel`](ustack_harness::packetdrill::Backend): a private network namespace per script, the
//! kernel behind a TAP device, the wall clock), proving that the scripts describe what Linux really does. The
//! test fails listing the scripts that fail; skipped ones are printed. Needs root (CI is root): without it the
//! test prints SKIPPED and passes.
//!
//! The scripts run a few at a time on threads (each in its own namespace; they mostly sleep), longest first,
//! so the whole set takes about as long as the longest script (about 2.5 minutes).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use ustack_harness::packetdrill::ast::{Action, EventTime};
use ustack_harness::packetdrill::{parse, run_file, Config, Outcome, Report};
use ustack_netdev::namespace::kernel_peer_available;

/// How many scripts run at once.
const PARALLEL: usize = 8;

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("scripts")
}

/// A script's length in script time (seconds), from its event times, to start the long ones first.
fn estimated_secs(path: &Path) -> f64 {
    let Ok(script) =
        std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| parse(&t).map_err(|e| e.to_string()))
    else {
        return 0.0;
    };
    let mut t = 0i64;
    let mut longest = 0i64;
    for ev in &script.events {
        t = match ev.time {
            EventTime::Absolute(a) | EventTime::AbsoluteRange(_, a) => a,
            EventTime::Relative(r) | EventTime::RelativeRange(_, r) => t + r,
            EventTime::Any => t,
        };
        if let Action::Syscall(s) = &ev.action {
            if let Some(end) = s.end {
                longest = longest.max(end);
            }
        }
        longest = longest.max(t);
    }
    longest as f64 / 1e6
}

#[test]
fn all_scripts_against_the_kernel() {
    if !kernel_peer_available() {
        println!("SKIPPED: running the scripts against the kernel needs root, /dev/net/tun and iproute2");
        return;
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("tests/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pkt"))
        .collect();
    paths.sort_by(|a, b| estimated_secs(b).total_cmp(&estimated_secs(a)).then(a.cmp(b)));
    assert!(paths.len() >= 40, "only {} scripts in tests/scripts", paths.len());
    let queue = Arc::new(Mutex::new(VecDeque::from(paths.clone())));
    let reports = Arc::new(Mutex::new(Vec::<Report>::new()));
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (queue, reports) = (Arc::clone(&queue), Arc::clone(&reports));
            std::thread::spawn(move || loop {
                let Some(p) = queue.lock().unwrap().pop_front() else { break };
                let report = run_file(&p, &Config::kernel());
                reports.lock().unwrap().push(report);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let mut reports = std::mem::take(&mut *reports.lock().unwrap());
    // The kernel runs on wall-clock time: on a loaded machine a blocked call or a timer can miss its window
    // through scheduling alone. A failing script gets up to two more runs on its own, one at a time; one that
    // describes Linux wrongly fails every time.
    for r in reports.iter_mut() {
        for attempt in 2..=3 {
            if !matches!(r.outcome, Outcome::Failed(_) | Outcome::Error(_)) {
                break;
            }
            println!("RETRY {} (attempt {attempt}) after:\n{r}", r.name);
            let path = paths.iter().find(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == r.name));
            if let Some(path) = path {
                *r = run_file(path, &Config::kernel());
            }
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(reports.len(), paths.len());
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for r in &reports {
        println!("{r}");
        match r.outcome {
            Outcome::Passed => passed += 1,
            Outcome::Skipped(_) => skipped += 1,
            Outcome::Failed(_) | Outcome::Error(_) => failed.push(r.name.clone()),
        }
    }
    println!(
        "packetdrill scripts against the Linux kernel: {passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
    assert!(failed.is_empty(), "scripts failing against the Linux kernel: {failed:?}");
}
