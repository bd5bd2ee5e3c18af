//! `ustack replay`: a real capture replayed through a fresh ustack playing one of its hosts, on the capture's
//! own timestamps (virtual time), with the application side played automatically as the capture implies
//! (`ustack_harness::replay`'s automatic application); then what the stack sent, written as a pcap, and a
//! side-by-side comparison with what the capture's host sent.

use crate::cli_util::Failure;
use clap::{ArgGroup, Args, ValueEnum};
use std::path::{Path, PathBuf};
use ustack_harness::replay::{first_destination, AutoReplay, HostSpec, Order, ReplayBuilder};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("who").args(["host", "local"]).required(true).multiple(true)))]
pub struct ReplayArgs {
    /// The capture (pcap or pcapng; Ethernet, raw IP or Linux cooked).
    #[arg(value_name = "CAPTURE")]
    capture: PathBuf,

    /// The capture's host the stack plays, with its own addresses (its IP and MAC; a gateway stands for the
    /// capture's router). The port picks one of the host's TCP connections; without it, the first.
    #[arg(long = "as", value_name = "HOST_IP[:PORT]", value_parser = parse_host)]
    host: Option<HostSpec>,

    /// The address the stack takes instead: the host's address (and port, if given) is rewritten in every
    /// frame. Without --as, the stack plays the destination of the capture's first packet.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_host)]
    local: Option<HostSpec>,

    /// Where to write the conversation between the capture's peer and the stack (default: CAPTURE.ustack.pcap).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Repair wrong checksums before injecting frames (captures taken on a host with checksum offload carry
    /// its outgoing frames' checksums unfinished); without it they go in as captured, and the stack drops them.
    #[arg(long)]
    fix_checksums: bool,

    /// `causal` moves a segment that acknowledges what the other side has not sent yet (in file order) after
    /// the segment that sends it, as captures merged from two interfaces need; `capture` keeps file order.
    #[arg(long, value_enum, default_value_t = OrderArg::Causal)]
    order: OrderArg,

    /// Show the stack's whole frame next to each of the host's, not only the fields that differ.
    #[arg(long)]
    full: bool,

    /// Print the replay library's transcript too (every frame, translated numbers, pairing decisions).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OrderArg {
    Causal,
    Capture,
}

fn parse_host(s: &str) -> Result<HostSpec, String> {
    s.parse()
}

/// `CAPTURE.ustack.pcap`, next to the capture.
fn default_output(capture: &Path) -> PathBuf {
    let mut name = capture.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".ustack.pcap");
    capture.with_file_name(name)
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let shown = args.capture.display().to_string();
    let capture = ustack_netdev::pcap::read_file(&args.capture).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::new(format!("there is no capture file at {shown}"))
        } else {
            Failure::new(format!("cannot read {shown}: {e}"))
        }
    })?;
    let host = match args.host {
        Some(h) => h,
        None => {
            let ip = first_destination(&capture)
                .ok_or_else(|| Failure::new(format!("{shown} has no IPv4 packet to pick a host from; use --as")))?;
            HostSpec { ip, port: None }
        }
    };
    let order = match args.order {
        OrderArg::Causal => Order::Causal,
        OrderArg::Capture => Order::Capture,
    };
    let mut builder = ReplayBuilder::from_capture(&shown, capture, host).order(order).fix_checksums(args.fix_checksums);
    if let Some(local) = args.local {
        builder = builder.rewrite_host(local);
    }
    let replay = run_guarded(builder)?;

    print!("{}", replay.render(args.full));
    if args.verbose {
        println!("\ntranscript:\n{}", replay.transcript());
    }
    let output = args.output.unwrap_or_else(|| default_output(&args.capture));
    let written = replay
        .write_pcap(&output)
        .map_err(|e| Failure::new(format!("cannot write the replay's capture to {}: {e}", output.display())))?;
    println!("wrote {written} frames (into and out of ustack) to {}", output.display());

    let problems = replay.problems().len();
    if problems > 0 {
        let s = if problems == 1 { "" } else { "s" };
        return Err(Failure::new(format!(
            "ustack differs from the capture's host in {problems} way{s} not explained by design (listed above)"
        )));
    }
    Ok(())
}

/// Runs the replay; a panic inside the harness or the stack (a bug, not a property of the capture) becomes
/// one sentence instead of a backtrace.
fn run_guarded(builder: ReplayBuilder) -> Result<AutoReplay, Failure> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.try_auto()));
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(replay)) => Ok(replay),
        Ok(Err(reason)) => Err(Failure::new(reason)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            let first = what.lines().next().unwrap_or(what);
            Err(Failure::new(format!("the replay stopped on an internal error (a bug worth reporting): {first}")))
        }
    }
}
