//! `ustack`: run the user-space stack on a real interface (`serve`), look at a running one's sockets (`ss`),
//! watch it talk to the Linux kernel (`demo`), run packetdrill scripts against it (`script`) or replay a real
//! capture through it (`replay`).
//!
//! Every failure ends as one sentence on stderr (`ustack: ...`) and a non-zero exit status, never a backtrace:
//! the people who run this are trying the stack out, and a panic message would tell them nothing useful.

#![forbid(unsafe_code)]

mod cli_util;
mod control;
mod demo;
mod echo;
mod http;
mod replay;
mod script;
mod serve;
mod service_threads;
mod signals;
mod tcp_services;

use clap::{Parser, Subcommand};
use cli_util::Failure;
use std::process::ExitCode;

/// A user-space TCP/IP stack: serve it on an interface, or run the demo.
#[derive(Debug, Parser)]
#[command(name = "ustack", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the stack on a TAP device or an AF_PACKET interface: it answers ARP and ping, and serves UDP echo,
    /// TCP echo, discard and HTTP on the ports given.
    Serve(Box<serve::ServeArgs>),
    /// Show a running `ustack serve --control PATH`'s sockets like `ss -tuan` (or its counters like nstat).
    Ss(control::SsArgs),
    /// Show the stack talking to the Linux kernel step by step (or to a second ustack when not root).
    Demo(demo::DemoArgs),
    /// Run packetdrill-syntax scripts against ustack in-process, on virtual time: PASS, FAIL or SKIPPED each,
    /// with a tcpdump-style trace.
    Script(script::ScriptArgs),
    /// Replay a capture through a fresh ustack playing one of its hosts, the application played as the
    /// capture implies; write what the stack sent as a pcap and compare it side by side with the capture.
    Replay(Box<replay::ReplayArgs>),
}

/// Exit status for a command that ran and failed (bad arguments exit with clap's 2).
const EXIT_FAILURE: u8 = 1;
/// Exit status after an interruption that stopped a command before it finished (128 + SIGINT, as shells do).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Interrupted) => {
            eprintln!("ustack: interrupted");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(failure) => {
            eprintln!("ustack: {failure}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Installed before anything that must be undone (namespaces, TAP devices, capture files), so that Ctrl-C
    // unwinds through their destructors instead of killing the process where it stands.
    let interrupt = signals::Interrupt::install()?;
    match cli.command {
        Command::Serve(args) => serve::run(*args, &interrupt),
        Command::Demo(args) => demo::run(args, &interrupt),
        Command::Ss(args) => control::run_ss(args),
        Command::Script(args) => script::run(args),
        Command::Replay(args) => replay::run(*args),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`), so that stdout carries only the report.
/// Colours only on a terminal, so that redirected logs stay plain text.
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
