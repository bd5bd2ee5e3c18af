//! `ustack-bench`: ustack against smoltcp and the Linux kernel, side by side in one run.
//!
//! Two ways in, one program: the `ustack-bench` binary (`cargo run --release -p ustack-bench -- ...`) and
//! `cargo bench` (the `suite` bench target), which writes its table and JSON under the target folder unless
//! told where.
//!
//! Scenarios (see BENCHMARKS.md for what each measures and why):
//! 1. in memory, one thread, wall clock: bulk throughput (MTU 1500 and 9000) and 64-byte ping-pong, with 0,
//!    1,000 and 10,000 idle established connections in the same stacks;
//! 2. a link losing 1% each way, and one reordering a tenth of the frames, on virtual time: goodput (with the
//!    `smoltcp-cubic` feature also against smoltcp's CUBIC);
//! 3. over a TAP against the kernel (root only): bulk both ways and 64-byte request/response, with the kernel
//!    over a veth pair as the ceiling and a raw frame pump as the device's limit;
//! 4. connections: accepts per second from kernel clients, and resident memory per idle connection.
//!
//! Every number is reported as the median and range of several repetitions, with ratios; nothing is asserted
//! about timings.

#![forbid(unsafe_code)]

mod link;
mod lossy;
mod mem;
mod node;
mod procfs;
mod report;
mod tap;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use report::Report;

#[derive(Parser, Debug)]
#[command(name = "ustack-bench", about = "ustack vs smoltcp vs the Linux kernel: medians, spread and ratios")]
struct Args {
    /// Smoke mode: every scenario, tiny (seconds, for CI).
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Run only these scenarios (comma-separated: 1,2,3,4).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Scenarios 3 and 4: measure only the systems whose name contains one of these (comma-separated), e.g.
    /// `--sut "TAP offloads),smoltcp"`; for profiling one row.
    #[arg(long, value_delimiter = ',')]
    sut: Vec<String>,
    /// Scenario 3: run only these workloads (comma-separated: k2s, s2k, rtt, pump); for profiling one.
    #[arg(long, value_delimiter = ',')]
    case: Vec<String>,
    /// Repetitions per measurement (overrides the mode's default).
    #[arg(long)]
    reps: Option<usize>,
    /// For profilers: run only one in-memory workload for SECONDS (ustack-bulk, smoltcp-bulk, ustack-rtt,
    /// smoltcp-rtt; with `:N`, beside N idle connections, e.g. ustack-bulk:10000) and print its rate.
    #[arg(long, value_name = "WORKLOAD")]
    solo: Option<String>,
    /// Seconds for --solo.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Internal: measure memory per connection in a fresh process (IMPLEMENTATION CONNS USED).
    #[arg(long, num_args = 3, hide = true)]
    memory_child: Vec<String>,
    /// Passed by `cargo bench` to a bench target; means nothing here.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Sizes and counts for one mode.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub reps: usize,
    /// Longest a single timed run may take (a slow implementation moves fewer bytes instead of taking longer).
    pub cap: Duration,
    pub bulk_bytes: u64,
    pub rtts: u64,
    /// (MTU, idle connections, also ping-pong)
    pub mem_cases: Vec<(usize, usize, bool)>,
    pub lossy_seeds: usize,
    pub lossy_bytes: u64,
    pub mem_conns: Vec<usize>,
    pub mem_used_limit: usize,
    pub mem_reps: usize,
    pub tap_bytes: u64,
    pub tap_rtts: u64,
    pub tap_reps: usize,
    pub seq_conns: usize,
    pub bursts: usize,
    pub pump_secs: f64,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            reps: 5,
            cap: Duration::from_secs(3),
            bulk_bytes: 1 << 30,
            rtts: 200_000,
            mem_cases: vec![(1500, 0, true), (9000, 0, false), (1500, 1_000, true), (1500, 10_000, true)],
            lossy_seeds: 5,
            lossy_bytes: 16 << 20,
            mem_conns: vec![10_000, 100_000],
            mem_used_limit: 1_000,
            mem_reps: 2,
            tap_bytes: 256 << 20,
            tap_rtts: 10_000,
            tap_reps: 5,
            seq_conns: 2_000,
            bursts: 10,
            pump_secs: 1.0,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            reps: 2,
            cap: Duration::from_millis(300),
            bulk_bytes: 8 << 20,
            rtts: 5_000,
            mem_cases: vec![(1500, 0, true), (9000, 0, false), (1500, 200, true)],
            lossy_seeds: 1,
            lossy_bytes: 1 << 20,
            mem_conns: vec![1_000],
            mem_used_limit: 100,
            mem_reps: 1,
            tap_bytes: 8 << 20,
            tap_rtts: 300,
            tap_reps: 1,
            seq_conns: 50,
            bursts: 1,
            pump_secs: 0.2,
        }
    }
}

/// How the program was started: the two entry points differ only in where results go by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The `ustack-bench` binary: results go where `--json` and `--markdown` say, if anywhere.
    Binary,
    /// `cargo bench`: results also go to `<target>/ustack-bench/results.{json,md}` unless given.
    CargoBench,
}

/// Runs the benchmark with the process's command line and exits with its status.
pub fn main(entry: Entry) {
    let mut args = Args::parse();
    if entry == Entry::CargoBench && args.memory_child.is_empty() && args.solo.is_none() {
        if let Some(dir) = results_dir() {
            args.json.get_or_insert_with(|| dir.join("results.json"));
            args.markdown.get_or_insert_with(|| dir.join("results.md"));
        }
    }
    if !args.memory_child.is_empty() {
        let n = args.memory_child[1].parse().expect("connection count");
        let used = args.memory_child[2].parse().expect("used count");
        mem::memory_child(&args.memory_child[0], n, used);
        return;
    }
    if let Some(w) = &args.solo {
        mem::solo(w, Duration::from_secs_f64(args.seconds));
        return;
    }
    remove_namespaces_on_interrupt();
    let mut plan = if args.quick { Plan::quick() } else { Plan::full() };
    if let Some(r) = args.reps {
        plan.reps = r.max(1);
        plan.tap_reps = r.max(1);
    }
    if let Some(bad) = args.case.iter().find(|c| !tap::CASES.contains(&c.as_str())) {
        eprintln!("unknown --case {bad:?}: the cases are {}", tap::CASES.join(", "));
        std::process::exit(2);
    }
    let wanted = |s: u32| args.only.is_empty() || args.only.contains(&s);
    let (nproc, model, kernel) = procfs::machine();
    let mode = if plan.quick { "quick" } else { "full" };
    println!("ustack-bench ({mode} mode) on {nproc} CPUs, {model}, Linux {kernel}");
    if cfg!(debug_assertions) {
        println!("warning: a debug build; timings mean little (use --release)");
    }
    let started = std::time::Instant::now();
    let mut report = Report::default();
    if wanted(1) {
        mem::scenario(&plan, &mut report);
    }
    if wanted(2) {
        lossy::scenario(&plan, &mut report);
    }
    if wanted(3) || wanted(4) {
        let only = tap::Only { suts: args.sut.clone(), cases: args.case.clone() };
        tap::scenarios(&plan, wanted(3), wanted(4), &only, &mut report);
    }
    if wanted(4) {
        mem::memory_scenario(&plan, &mut report);
    }
    let table = report.table();
    println!("\n{table}");
    for n in &report.notes {
        println!("- {n}");
    }
    println!("\ntook {:.1} s", started.elapsed().as_secs_f64());
    let meta = [
        ("mode", mode.to_string()),
        ("nproc", nproc.to_string()),
        ("cpu", model),
        ("kernel", kernel),
        ("build", if cfg!(debug_assertions) { "debug" } else { "release" }.to_string()),
        ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
    ];
    for (path, content) in [(&args.json, report.json(&meta)), (&args.markdown, table.clone())] {
        let Some(path) = path else { continue };
        if let Err(e) = write_creating_dirs(path, &content) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if report.failures > 0 {
        eprintln!("{} measurement(s) failed (see the notes above); timings are never failures", report.failures);
        std::process::exit(1);
    }
}

/// On Ctrl-C or SIGTERM, removes the namespaces of scenarios 3 and 4 (and the TAP devices and veth pairs in
/// them) and exits with 130, as a shell reports SIGINT: dying on the signal would run no destructor.
fn remove_namespaces_on_interrupt() {
    let installed = ctrlc::set_handler(|| {
        let removed = ustack_netdev::namespace::remove_all();
        eprintln!("\ninterrupted: removed {removed} namespace(s) of this run");
        std::process::exit(130);
    });
    if let Err(e) = installed {
        eprintln!("warning: no Ctrl-C handler ({e}): an interrupted run may leave namespaces behind");
    }
}

/// `<target>/ustack-bench`: a bench executable lives in `<target>/<profile>/deps/`.
fn results_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("ustack-bench"))
}

/// Writes `content` to `path`, creating the folders on the way (a fresh checkout has no `target/`).
fn write_creating_dirs(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}
