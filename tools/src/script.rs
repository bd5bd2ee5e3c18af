//! `ustack script`: packetdrill-syntax scripts run against ustack in-process, on virtual time
//! (`ustack_harness::packetdrill`), each reported as PASS, FAIL or SKIPPED with a tcpdump-style trace.

use crate::cli_util::{parse_ipv4, Failure};
use clap::Args;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use ustack_harness::packetdrill::{run_file, Config, Outcome, Report};

#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// The scripts (packetdrill's language; see tests/scripts/README.md for what they may assume).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Print the trace of passing scripts too (failing ones always print theirs).
    #[arg(short, long)]
    verbose: bool,

    /// How far an event may be from its script time, in microseconds (default 4000).
    #[arg(long = "tolerance-usecs", alias = "tolerance_usecs", value_name = "USECS")]
    tolerance_usecs: Option<u64>,

    /// The tolerance grows to this share of the time since the previous event when larger (default 12.5).
    #[arg(long = "tolerance-percent", alias = "tolerance_percent", value_name = "PERCENT")]
    tolerance_percent: Option<f64>,

    /// Check outbound TS val too, with this many microseconds per tick (default 0: not checked).
    #[arg(long = "tcp-ts-tick-usecs", alias = "tcp_ts_tick_usecs", value_name = "USECS")]
    tcp_ts_tick_usecs: Option<u64>,

    /// An expected segment must be exactly one segment of the stack (no aggregation of consecutive ones).
    #[arg(long = "strict-segments", alias = "strict_segments")]
    strict_segments: bool,

    /// The stack's address (default 192.168.0.1).
    #[arg(long = "local-ip", alias = "local_ip", value_name = "IP", value_parser = parse_ipv4)]
    local_ip: Option<Ipv4Addr>,

    /// The remote end the script plays (default 192.0.2.1).
    #[arg(long = "remote-ip", alias = "remote_ip", value_name = "IP", value_parser = parse_ipv4)]
    remote_ip: Option<Ipv4Addr>,

    /// The router towards the remote end (default 192.168.0.2).
    #[arg(long = "gateway-ip", alias = "gateway_ip", value_name = "IP", value_parser = parse_ipv4)]
    gateway_ip: Option<Ipv4Addr>,

    /// The stack's netmask (default 255.255.0.0).
    #[arg(long = "netmask-ip", alias = "netmask_ip", value_name = "MASK", value_parser = parse_netmask)]
    netmask_ip: Option<u8>,

    /// Where `bind(fd, ..., ...)` binds (default 8080).
    #[arg(long = "bind-port", alias = "bind_port", value_name = "PORT")]
    bind_port: Option<u16>,

    /// Where `connect(fd, ..., ...)` connects (default 8080).
    #[arg(long = "connect-port", alias = "connect_port", value_name = "PORT")]
    connect_port: Option<u16>,

    /// The MTU of the stack's link (default 1500).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(68..))]
    mtu: Option<u16>,
}

/// A netmask as a prefix length; only contiguous masks are netmasks.
fn parse_netmask(s: &str) -> Result<u8, String> {
    let mask = u32::from(parse_ipv4(s)?);
    let len = mask.leading_ones();
    if mask.checked_shl(len).unwrap_or(0) != 0 || len == 0 {
        return Err(format!("{s} is not a netmask (expected contiguous ones, e.g. 255.255.0.0)"));
    }
    Ok(len as u8)
}

impl ScriptArgs {
    /// The interpreter's settings: its defaults, with what the command line gives. A script's own `--option`
    /// lines still apply on top, as packetdrill applies them.
    fn config(&self) -> Config {
        let mut c = Config::default();
        if let Some(v) = self.tolerance_usecs {
            c.tolerance_usecs = v;
        }
        if let Some(v) = self.tolerance_percent {
            c.tolerance_percent = v;
        }
        if let Some(v) = self.tcp_ts_tick_usecs {
            c.tcp_ts_tick_usecs = v;
        }
        c.strict_segments |= self.strict_segments;
        if let Some(v) = self.local_ip {
            c.local_ip = v;
        }
        if let Some(v) = self.remote_ip {
            c.remote_ip = v;
        }
        if let Some(v) = self.gateway_ip {
            c.gateway_ip = v;
        }
        if let Some(v) = self.netmask_ip {
            c.prefix_len = v;
        }
        if let Some(v) = self.bind_port {
            c.bind_port = v;
        }
        if let Some(v) = self.connect_port {
            c.connect_port = v;
        }
        if let Some(v) = self.mtu {
            c.mtu = usize::from(v);
        }
        c
    }
}

pub fn run(args: ScriptArgs) -> Result<(), Failure> {
    let config = args.config();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, file) in args.files.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let report = run_file(file, &config);
        print!("{}", describe(&report, args.verbose));
        match report.outcome {
            Outcome::Passed => passed += 1,
            Outcome::Skipped(_) => skipped += 1,
            Outcome::Failed(_) | Outcome::Error(_) => failed += 1,
        }
    }
    let total = args.files.len();
    if total > 1 {
        println!("\n{total} scripts: {passed} passed, {failed} failed, {skipped} skipped");
    }
    match failed {
        0 => Ok(()),
        1 if total == 1 => Err(Failure::new(format!("{} failed", args.files[0].display()))),
        n => Err(Failure::new(format!("{n} of {total} scripts failed"))),
    }
}

/// One script's report: its verdict, and for a failure the line, what the script expected and what the stack
/// did, then the trace (also for a pass with `verbose`).
fn describe(r: &Report, verbose: bool) -> String {
    let seconds = r.virtual_time.as_secs_f64();
    let trace = || {
        if r.trace.is_empty() {
            "  (nothing happened)\n".to_string()
        } else {
            r.trace_text()
        }
    };
    match &r.outcome {
        Outcome::Passed => {
            let mut out = format!("PASS {} ({seconds:.3} s of virtual time)\n", r.name);
            if verbose {
                out.push_str(&trace());
            }
            out
        }
        Outcome::Skipped(list) => {
            let mut out = format!("SKIPPED {}: it uses what the interpreter does not support:\n", r.name);
            for u in list {
                out.push_str(&format!("  {u}\n"));
            }
            out
        }
        Outcome::Error(e) => format!("FAIL {}: {e}\n", r.name),
        Outcome::Failed(f) => {
            let mut out = format!("FAIL {} at line {} ({seconds:.3} s of virtual time)\n", r.name, f.line);
            out.push_str(&format!("  line {}: {}\n", f.line, f.reason));
            out.push_str(&format!("  expected: {}\n", f.statement.trim()));
            match &f.actual {
                Some(a) => out.push_str(&format!("  actual:   {a}\n")),
                None => out.push_str("  actual:   (nothing)\n"),
            }
            out.push_str("trace (`<` into the stack, `>` from it, sequence numbers relative):\n");
            out.push_str(&trace());
            out
        }
    }
}
