//! Deterministic interop simulations against smoltcp: ustack on one end of an in-memory link with seeded
//! faults, smoltcp on the other, both on virtual time (the driver is `ustack_tests::smol`). Every transfer must
//! arrive intact and every connection end cleanly: both sides read end of file, ustack's connection is closed or
//! in TIME-WAIT, smoltcp's socket CLOSED or TIME-WAIT, no RST from a side whose connection was not over yet, no
//! abort, and no IPv4 fragment (TCP must size its segments, options included, to the MTU; smoltcp is built
//! without reassembly, so a fragmented segment is lost to it). A failing seed is reproducible with
//! `replay_one_seed`, which also writes a pcap.

use std::collections::BTreeMap;
use std::time::Instant as WallInstant;
use ustack::Duration;
use ustack_netdev::fault::{FaultConfig, Rng};
use ustack_netdev::pipe::PipeConfig;
use ustack_tests::smol::{Opener, Outcome, Scenario, SmolBuffers};

fn perfect(opener: Opener, seed: u64, ustack_bytes: usize, smol_bytes: usize) -> Scenario {
    Scenario {
        opener,
        link: PipeConfig::symmetric(1500, FaultConfig::default(), seed),
        seed,
        ustack_bytes,
        smol_bytes,
        buffers: SmolBuffers::default(),
        limit: Duration::from_secs(60),
    }
}

fn check(what: &str, s: &Scenario, o: &Outcome) {
    assert!(o.errors.is_empty(), "{what}: {:#?}\nscenario {s:#?}", o.errors);
}

/// Random sizes (from a fixed seed) both ways, one connection, ustack connecting.
#[test]
fn ustack_client_smoltcp_server() {
    let mut r = Rng::new(0x5eed_0001);
    for i in 0..4 {
        let s = perfect(Opener::Ustack, i, r.below(300_000) as usize, r.below(300_000) as usize);
        check("ustack client", &s, &s.run(None));
    }
}

/// Random sizes (from a fixed seed) both ways, one connection, smoltcp connecting.
#[test]
fn smoltcp_client_ustack_server() {
    let mut r = Rng::new(0x5eed_0002);
    for i in 0..4 {
        let s = perfect(Opener::Smoltcp, i, r.below(300_000) as usize, r.below(300_000) as usize);
        check("smoltcp client", &s, &s.run(None));
    }
}

/// Empty, one-byte and segment-boundary transfers, both directions, both openers.
#[test]
fn small_and_empty_transfers() {
    let sizes = [(0, 0), (1, 0), (0, 1), (1460, 1461), (65535, 0), (0, 65536), (7, 131_072)];
    for opener in [Opener::Ustack, Opener::Smoltcp] {
        for (i, &(u, m)) in sizes.iter().enumerate() {
            let s = perfect(opener, 100 + i as u64, u, m);
            check("small", &s, &s.run(None));
        }
    }
}

/// One seed of the sweep: a faulty link, the sizes and which side connects, all drawn from the seed.
fn sweep_scenario(seed: u64) -> Scenario {
    let mut r = Rng::new(seed ^ 0x0073_6d6f_6c74_6370);
    let faults = FaultConfig {
        loss: r.below(101) as f64 / 1000.0, // up to 10%
        duplicate: r.below(31) as f64 / 1000.0,
        reorder: r.below(51) as f64 / 1000.0,
        corrupt: r.below(11) as f64 / 1000.0,
        delay: Duration::from_micros(r.below(20_000)),
        jitter: Duration::from_micros(r.below(2_000)),
        ..FaultConfig::default()
    };
    Scenario {
        opener: if seed & 1 == 0 { Opener::Ustack } else { Opener::Smoltcp },
        link: PipeConfig::symmetric(1500, faults, seed),
        seed,
        ustack_bytes: r.below(200_001) as usize,
        smol_bytes: r.below(200_001) as usize,
        buffers: SmolBuffers::default(),
        limit: Duration::from_secs(3600),
    }
}

/// One seed of the small-window sweep: like [`sweep_scenario`], but smoltcp's buffers are drawn between 536
/// bytes and 16 KiB, so ustack meets windows smaller than a segment, windows that close and reopen, and window
/// updates reordered by the link.
fn small_window_scenario(seed: u64) -> Scenario {
    let mut s = sweep_scenario(seed);
    let mut r = Rng::new(seed ^ 0x7769_6e64_6f77);
    s.buffers =
        SmolBuffers { rx: 536 + r.below(16 * 1024 - 536) as usize, tx: 536 + r.below(16 * 1024 - 536) as usize };
    s.ustack_bytes %= 60_001;
    s.smol_bytes %= 60_001;
    s
}

/// Runs `seeds` cases and reports the failures grouped by kind, with the wall time.
fn sweep(name: &str, seeds: u64, case: impl Fn(u64) -> Scenario) {
    let started = WallInstant::now();
    let mut failures = Vec::new();
    let mut kinds: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut virtual_max = Duration::ZERO;
    let mut steps = 0;
    for seed in 0..seeds {
        let s = case(seed);
        let o = s.run(None);
        virtual_max = virtual_max.max(o.now.since_origin());
        steps += o.steps;
        if !o.errors.is_empty() {
            kinds.entry(kind(&o.errors)).or_default().push(seed);
            failures.push(format!(
                "seed {seed} ({:?}, {:?}, smoltcp buffers {:?}, ustack {} / smoltcp {} bytes): {:#?}",
                s.opener, s.link.a_to_b, s.buffers, s.ustack_bytes, s.smol_bytes, o.errors
            ));
        }
    }
    println!(
        "{name}: {seeds} seeds in {:?} wall time, {steps} steps, longest run {virtual_max:?} virtual, {} failed",
        started.elapsed(),
        failures.len()
    );
    for (k, seeds) in &kinds {
        println!("  {} x {k}: seeds {:?}", seeds.len(), &seeds[..seeds.len().min(20)]);
    }
    assert!(failures.is_empty(), "{} failures, first: {:#?}", failures.len(), &failures[..failures.len().min(3)]);
}

/// The kind of a failure, for the sweep's summary: its messages (but the last, which describes the ends) with the
/// numbers taken out.
fn kind(errors: &[String]) -> String {
    let messages = &errors[..errors.len().saturating_sub(1).max(1)];
    let short: Vec<String> =
        messages.iter().map(|e| e.chars().filter(|c| !c.is_ascii_digit()).take(80).collect()).collect();
    short.join(" | ")
}

#[test]
fn seeded_fault_sweep() {
    let seeds: u64 = std::env::var("USTACK_SMOL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    sweep("smoltcp sweep", seeds, sweep_scenario);
}

/// The sweep again with small smoltcp windows (`USTACK_SMOL_SMALL_SEEDS`, 300 by default).
#[test]
fn small_window_fault_sweep() {
    let seeds: u64 = std::env::var("USTACK_SMOL_SMALL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    sweep("smoltcp small-window sweep", seeds, small_window_scenario);
}

/// Small smoltcp buffers: windows below one segment and barely above, so ustack's sender must respect a tiny
/// window, probe it when it closes and avoid silly-window syndrome; smoltcp's small send buffer makes it send in
/// small pieces. On a clean and on a lossy link, both openers.
fn small_window_cases() -> Vec<Scenario> {
    let mut cases = Vec::new();
    for (i, &(rx, tx)) in [(536, 536), (1024, 4096), (2000, 1000), (4096, 4096), (3000, 65536)].iter().enumerate() {
        for loss in [0.0, 0.03] {
            for opener in [Opener::Ustack, Opener::Smoltcp] {
                let seed = 7000 + i as u64 * 10 + u64::from(opener == Opener::Smoltcp) + if loss > 0.0 { 5 } else { 0 };
                let faults = FaultConfig {
                    loss,
                    delay: Duration::from_millis(2),
                    jitter: Duration::from_micros(300),
                    ..FaultConfig::default()
                };
                cases.push(Scenario {
                    opener,
                    link: PipeConfig::symmetric(1500, faults, seed),
                    seed,
                    ustack_bytes: 40_000 + i * 7,
                    smol_bytes: 30_000 + i * 13,
                    buffers: SmolBuffers { rx, tx },
                    limit: Duration::from_secs(3600),
                });
            }
        }
    }
    cases
}

#[test]
fn small_smoltcp_windows() {
    let mut failures = Vec::new();
    for s in small_window_cases() {
        let o = s.run(None);
        if !o.errors.is_empty() {
            failures.push(format!(
                "seed {} buffers {:?} loss {} {:?}: {:#?}",
                s.seed, s.buffers, s.link.a_to_b.loss, s.opener, o.errors
            ));
        }
    }
    assert!(failures.is_empty(), "{} failures: {failures:#?}", failures.len());
}

/// Re-runs one seed of the sweep with a capture, for investigation: `USTACK_SMOL_SEED=18 cargo test -p
/// ustack-tests --test smoltcp_sim replay_one_seed -- --nocapture` writes `target/smol-seed-18.pcap`
/// (ustack is 198.18.0.1, smoltcp 198.18.0.2). Seeds of `small_smoltcp_windows` (7000 and up) replay those
/// cases; with `USTACK_SMOL_SMALL=1` the seed is one of `small_window_fault_sweep`.
#[test]
fn replay_one_seed() {
    let Some(seed) = std::env::var("USTACK_SMOL_SEED").ok().and_then(|s| s.parse::<u64>().ok()) else { return };
    let s = if std::env::var("USTACK_SMOL_SMALL").is_ok() {
        small_window_scenario(seed)
    } else {
        small_window_cases().into_iter().find(|c| c.seed == seed).unwrap_or_else(|| sweep_scenario(seed))
    };
    let path = format!("{}/../target/smol-seed-{seed}.pcap", env!("CARGO_MANIFEST_DIR"));
    let o = s.run(Some(path.as_ref()));
    println!("scenario {s:#?}\noutcome {o:#?}\ncapture={path}");
}
