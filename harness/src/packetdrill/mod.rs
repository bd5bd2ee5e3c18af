//! An interpreter for packetdrill's script language (<https://github.com/google/packetdrill>) that runs a
//! script against one of two systems under test ([`Backend`]):
//!
//! * [`Backend::Ustack`] (the default): in-process against a ustack [`ustack::Stack`], on a virtual clock: no
//!   kernel, no TUN device, no wall clock. A 30-second script runs in milliseconds.
//! * [`Backend::Kernel`] ([`Config::kernel`]): against the Linux kernel, the way packetdrill itself runs: real
//!   kernel sockets in a private network namespace, the script's packets written to and read from a TAP
//!   device there, on the wall clock with a tolerance of 25 ms ([`KERNEL_TOLERANCE_USECS`]). Needs root. The
//!   namespace's setup (addresses in 198.18.0.0/15, sysctls) is described in [`kernel`]. This is what shows that
//!   a script describes Linux.
//!
//! Everything below holds for both, with the kernel's addresses and clock where they differ.
//!
//! ```no_run
//! use ustack_harness::packetdrill::{run_file, Config};
//! let report = run_file("tests/scripts/handshake-passive.pkt", &Config::default());
//! assert!(report.passed(), "{report}");
//! ```
//!
//! # The setup
//!
//! The stack is at 192.168.0.1/16 (`--local_ip`, `--netmask_ip`) and the script plays the remote host
//! 192.0.2.1 (`--remote_ip`), reached through the gateway 192.168.0.2 (`--gateway_ip`), whose ARP entry is
//! primed and whose replies to later ARP requests are immediate. `bind(fd, ..., ...)` binds 192.168.0.1:8080
//! (`--bind_port`), `connect(fd, ..., ...)` connects to 192.0.2.1:8080 (`--connect_port`). Connections the
//! script opens come from remote ports 47001, 47002, ... (packetdrill picks an unused ephemeral port). The
//! stack runs [`Profile::Linux`], ustack's defaults, which are Linux's (see [`Profile`]). The script's time 0
//! is the virtual instant [`run::START`].
//!
//! # What runs as packetdrill runs it
//!
//! * **Time.** Absolute (`0.100`), relative (`+0.1`), any (`*`, outbound packets only), ranges (`0.1~0.2`,
//!   `+0.1~+0.2`, outbound packets only) and blocking calls with an end time (`0...0.100 accept(...)`). A
//!   relative time counts from the moment the previous event finished, except that consecutive inbound
//!   packets are anchored to each other's script times. Every event is checked against its time with a
//!   tolerance of `--tolerance_usecs` (4000) or `--tolerance_percent` (12.5 %) of the time since the previous
//!   event, whichever is larger. Inbound packets and system calls happen at their script time; an outbound
//!   packet is waited for (the clock jumps from one stack deadline to the next) until its latest acceptable
//!   time, and must then have come inside its window.
//! * **Outbound packets.** The *next* packet the stack sent on the connection under test must match the line:
//!   flags (all eight), sequence number relative to the stack's ISN (learnt from its SYN or SYN-ACK, the
//!   script's number for it being the line's), acknowledgment number (when the line has the ACK flag or an
//!   `ack`), window (when the line gives `win`), options one by one in order (kind, length, value; a line
//!   without `<...>` expects no options, `<...>` does not check them), payload length and bytes (zeros, as
//!   packetdrill writes). TS val is rebased on the first one seen and checked only with
//!   `--tcp_ts_tick_usecs`; TS ecr is checked exactly (packetdrill does not check it: see
//!   [`Config::check_ts_ecr`]). Packets of other connections are left aside, as packetdrill's sniffer ignores
//!   them. An expected data segment of N bytes may be satisfied by consecutive segments of the stack covering
//!   it (same ACK, contiguous sequence numbers, no FIN before the last), the simple form of packetdrill's
//!   TSO/GSO aggregation; `--strict_segments` turns that off.
//! * **Inbound packets** are built from the line: sequence numbers as written (the script's ISN is the live
//!   one), acknowledgment numbers and SACK blocks moved into the stack's sequence space, TS ecr mapped back
//!   to the TS val the stack really sent for the script's value (or interpolated from the first one), options
//!   in the order written, zero payload. The first inbound packet after `listen()` opens a new connection from
//!   a new remote port, and later lines without ports go to it (packetdrill's "socket under test"). Lines may
//!   name ports explicitly (`< 47010>8080 S ...`) to drive several connections.
//! * **System calls** run with packetdrill's argument syntax; results and errno names are checked; file
//!   descriptors in the script are mapped to the stack's through the results of `socket()` and `accept()`.
//!   Sockets block unless made non-blocking (`fcntl(F_SETFL, O_NONBLOCK)`, `SOCK_NONBLOCK`, `MSG_DONTWAIT`).
//!   A call with an end time that blocks lets the script go on and returns when the stack lets it. A call
//!   without one that blocks holds the script, as it holds packetdrill's main thread: only the stack's timers
//!   run until it returns (a `poll` with a timeout, a connect that times out), and if nothing can wake it the
//!   script fails instead of hanging.
//!
//! # Supported
//!
//! System calls: `socket`, `bind`, `listen`, `accept`, `connect`, `read`, `readv`, `recv`, `recvfrom` (MSG_PEEK,
//! MSG_DONTWAIT, MSG_TRUNC), `write`, `writev`, `send`, `sendto`, `close`, `shutdown`, `setsockopt` and
//! `getsockopt` (SO_REUSEADDR, SO_RCVBUF, SO_SNDBUF, SO_KEEPALIVE, SO_BROADCAST, SO_LINGER `{onoff=1,
//! linger=0}`, SO_ERROR, SO_TYPE, SO_ACCEPTCONN, IP_TTL, IP_TOS, TCP_NODELAY, TCP_MAXSEG, TCP_KEEPIDLE,
//! TCP_KEEPINTVL, TCP_KEEPCNT, TCP_LINGER2, TCP_CONGESTION `"reno"` or `"cubic"`; values like `[1]`,
//! `[ECONNREFUSED]`), `fcntl` (F_GETFL, F_SETFL)
//! and `poll` (`[{fd=4, events=POLLIN, revents=POLLIN}]`, revents checked). Packets: TCP with any of
//! `F S R P . U E W` and `-`, options `nop`, `eol`, `mss`, `wscale`, `sackOK`, `sack a:b ...`, `TS val .. ecr
//! ..`; `udp (len)`; `icmp unreachable <code> [mtu N] [[a:b(n)] | [udp (n)]]` inbound and the type and code
//! of an outbound ICMP message. Options: `--tolerance_usecs`, `--tolerance_percent`, `--tcp_ts_tick_usecs`,
//! `--tcp_ts_ecr_scaled`, `--strict_segments`, `--local_ip`, `--remote_ip`, `--gateway_ip`, `--netmask_ip`,
//! `--bind_port`, `--connect_port`, `--mtu`, `--ip_version=ipv4`.
//!
//! # Not supported: the script is SKIPPED, never passed
//!
//! On the kernel backend also `TCP_LINGER2` (no safe wrapper for it; this crate has no `unsafe`).
//!
//! Shell commands in backquotes (init, cleanup or events, so also `sysctl` settings), `%{ python }%` blocks,
//! IPv6 and `--ip_version=ipv6`, IP header fields on packet lines (`[ect0]`, `(tos ..)`, `ttl`), explicit IP
//! or encapsulation headers, AccECN flags, Fast Open and MD5 options, fuzzing, `sendmsg`, `recvmsg`,
//! `epoll_*`, `ioctl`, `sendfile`, `TCP_INFO` and every other symbol or option not listed above.
//! [`check_support`] lists them before anything runs.

pub mod ast;
pub mod config;
pub mod kernel;
pub mod parse;
pub mod run;
pub mod sut;
pub mod symbols;
pub mod trace;

pub use ast::{Script, Unsupported};
pub use config::{Backend, Config, Profile, KERNEL_TOLERANCE_USECS};
pub use parse::{parse, ParseError};
pub use run::Failure;

use ast::{Action, Expr};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(Failure),
    /// The script uses constructs the interpreter does not support; nothing was run.
    Skipped(Vec<Unsupported>),
    /// The script does not parse (or could not be read).
    Error(String),
}

/// The result of running one script, with a trace of everything that happened.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub outcome: Outcome,
    /// One line per packet injected or sent and per system call, times in seconds since the script's start;
    /// `<` is a packet into the stack, `>` one from it, in script notation (sequence numbers relative).
    pub trace: Vec<String>,
    /// Time the script took: virtual time on ustack, wall-clock time on the kernel.
    pub virtual_time: Duration,
    /// What it ran against.
    pub backend: Backend,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    pub fn skipped(&self) -> bool {
        matches!(self.outcome, Outcome::Skipped(_))
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_) | Outcome::Error(_))
    }

    /// The trace as one string.
    pub fn trace_text(&self) -> String {
        self.trace.iter().map(|l| format!("  {l}\n")).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let t = self.virtual_time.as_secs_f64();
        let clock = match self.backend {
            Backend::Ustack => "virtual time on ustack",
            Backend::Kernel => "wall-clock time on the Linux kernel",
        };
        match &self.outcome {
            Outcome::Passed => write!(f, "PASS {} ({t:.3} s of {clock})", self.name),
            Outcome::Skipped(list) => {
                writeln!(f, "SKIPPED {}: unsupported constructs:", self.name)?;
                for u in list {
                    writeln!(f, "  {u}")?;
                }
                Ok(())
            }
            Outcome::Error(e) => write!(f, "ERROR {}: {e}", self.name),
            Outcome::Failed(fail) => {
                write!(f, "FAIL {}:{fail}", self.name)?;
                writeln!(f, "trace ({t:.6} s of {clock}):")?;
                f.write_str(&self.trace_text())
            }
        }
    }
}

/// The constructs of `script` this interpreter cannot run (see the module documentation), with the options
/// `config` cannot honour.
pub fn check_support(script: &Script, config: &Config) -> Vec<Unsupported> {
    let mut out = script.unsupported.clone();
    let mut cfg = config.clone();
    out.extend(cfg.apply_options(&script.options));
    for ev in &script.events {
        let mut bad = |what: String| out.push(Unsupported { line: ev.line, what });
        match &ev.action {
            Action::Command(c) => bad(format!("shell command `{c}`")),
            Action::Code(_) => bad("%{ python }% code block".to_string()),
            Action::Packet(p) => {
                if let ast::PacketBody::Icmp(i) = &p.body {
                    if trace::icmp_numbers(&i.ty, i.code.as_deref()).is_none() {
                        bad(format!("ICMP type/code {} {}", i.ty, i.code.clone().unwrap_or_default()));
                    }
                }
            }
            Action::Syscall(s) => {
                if !symbols::SYSCALLS.contains(&s.name.as_str()) {
                    bad(format!("system call {}()", s.name));
                    continue;
                }
                let mut words = Vec::new();
                for a in &s.args {
                    collect_words(a, &mut words);
                }
                collect_words(&s.result, &mut words);
                for w in words {
                    if symbols::lookup(&w).is_none() {
                        bad(format!("symbol {w} in {}()", s.name));
                    }
                }
                if let Some(e) = &s.errno {
                    if e != "EWOULDBLOCK" && symbols::lookup(e).is_none() {
                        bad(format!("errno {e}"));
                    }
                }
                if s.name == "socket" && matches!(s.args.first(), Some(Expr::Word(w)) if w == "AF_INET6") {
                    bad("IPv6 sockets".to_string());
                }
                if s.name == "setsockopt" || s.name == "getsockopt" {
                    let level = s.args.get(1).and_then(eval_int);
                    let name = s.args.get(2).and_then(eval_int);
                    if let (Some(l), Some(n)) = (level, name) {
                        if symbols::sockopt(l, n).is_none() && (l, n) != symbols::SO_LINGER {
                            bad(format!("socket option {} in {}()", s.args[2], s.name));
                        } else if cfg.backend == Backend::Kernel && (l, n) == symbols::TCP_LINGER2 {
                            bad(format!(
                                "socket option TCP_LINGER2 in {}() on the kernel backend (no safe wrapper for it)",
                                s.name
                            ));
                        }
                    }
                }
                if s.name == "fcntl" {
                    let cmd = s.args.get(1).and_then(eval_int);
                    if !matches!(cmd, Some(symbols::F_GETFL | symbols::F_SETFL)) {
                        bad(format!("fcntl command {}", s.args.get(1).map(|e| e.to_string()).unwrap_or_default()));
                    }
                }
            }
        }
    }
    out
}

fn eval_int(e: &Expr) -> Option<i64> {
    match e {
        Expr::Int(n) => Some(*n),
        Expr::Word(w) => symbols::lookup(w),
        _ => None,
    }
}

/// Symbols used as values (not the names of fields).
fn collect_words(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Word(w) => out.push(w.clone()),
        Expr::Or(a, b) => {
            collect_words(a, out);
            collect_words(b, out);
        }
        Expr::Assign(_, v) => collect_words(v, out),
        Expr::List(items) | Expr::Braces(items) => items.iter().for_each(|i| collect_words(i, out)),
        Expr::Call(name, args) => {
            if !matches!(name.as_str(), "htons" | "htonl" | "ntohs" | "ntohl" | "inet_addr") {
                out.push(format!("{name}()"));
            }
            args.iter().for_each(|i| collect_words(i, out));
        }
        Expr::Ellipsis | Expr::Int(_) | Expr::Str(_) => {}
    }
}

/// Runs a parsed script.
pub fn run_script(name: &str, script: &Script, config: &Config) -> Report {
    let unsupported = check_support(script, config);
    if !unsupported.is_empty() {
        return Report {
            name: name.to_string(),
            outcome: Outcome::Skipped(unsupported),
            trace: Vec::new(),
            virtual_time: Duration::ZERO,
            backend: config.backend,
        };
    }
    let mut cfg = config.clone();
    cfg.apply_options(&script.options);
    let system: Box<dyn sut::Sut> = match cfg.backend {
        Backend::Ustack => Box::new(sut::UstackSut::new(&cfg)),
        Backend::Kernel => match kernel::KernelSut::new(&cfg) {
            Ok(k) => Box::new(k),
            Err(e) => {
                return Report {
                    name: name.to_string(),
                    outcome: Outcome::Error(format!("cannot set up the kernel under test: {e}")),
                    trace: Vec::new(),
                    virtual_time: Duration::ZERO,
                    backend: cfg.backend,
                }
            }
        },
    };
    let backend = cfg.backend;
    let mut runner = run::Runner::new(cfg, script, system);
    let result = runner.run();
    let virtual_time = runner.now().saturating_since(run::START);
    Report {
        name: name.to_string(),
        outcome: match result {
            Ok(()) => Outcome::Passed,
            Err(f) => Outcome::Failed(f),
        },
        trace: std::mem::take(&mut runner.trace),
        virtual_time,
        backend,
    }
}

/// Parses and runs a script given as text.
pub fn run_str(name: &str, text: &str, config: &Config) -> Report {
    match parse(text) {
        Ok(script) => run_script(name, &script, config),
        Err(e) => Report {
            name: name.to_string(),
            outcome: Outcome::Error(e.to_string()),
            trace: Vec::new(),
            virtual_time: Duration::ZERO,
            backend: config.backend,
        },
    }
}

/// Reads, parses and runs a script file.
pub fn run_file(path: impl AsRef<Path>, config: &Config) -> Report {
    let path = path.as_ref();
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    match std::fs::read_to_string(path) {
        Ok(text) => run_str(&name, &text, config),
        Err(e) => Report {
            name,
            outcome: Outcome::Error(format!("cannot read {}: {e}", path.display())),
            trace: Vec::new(),
            virtual_time: Duration::ZERO,
            backend: config.backend,
        },
    }
}
