//! What the examples share: a small command-line parser, opening the TAP device (inside a network namespace
//! when asked) and starting a stack on it, and letting closing connections finish before the stack stops.
//!
//! Every option can also come from the environment: `--tap tap0` or `USTACK_TAP=tap0`, `--netns NS` or
//! `USTACK_NETNS=NS`, and so on (the option name upper-cased, dashes as underscores, prefixed `USTACK_`).

#![allow(dead_code)] // each example uses a different part of this module

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::process::exit;
use std::str::FromStr;
use std::time::{Duration, Instant};
use ustack::runtime::NetStack;
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::StackConfig;
use ustack_netdev::tap::Tap;

/// The options every example takes to get its stack.
pub const STACK_OPTIONS: &[&str] = &["tap", "netns", "ip", "gateway", "max-sockets"];

/// How the stack options are described in each example's usage text.
pub const STACK_USAGE: &str = "the stack:
  --tap NAME          the TAP device to run on (it must exist, with the kernel's address on its side)
  --netns NAME        open the TAP inside this network namespace (as made by `ip netns add`)
  --ip CIDR           the stack's address and prefix [default: 198.18.0.2/24]
  --gateway IP        the default router for destinations off the subnet
  --max-sockets N     the stack's socket table size [default: 4096]

Every option can also be set in the environment: --tap as USTACK_TAP, --max-sockets as USTACK_MAX_SOCKETS, ...";

/// Stops the program with a message on stderr and exit status 1.
pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    exit(1)
}

/// Parsed `--name value` options and positional words.
#[derive(Debug)]
pub struct Options {
    values: HashMap<String, String>,
    positional: Vec<String>,
}

impl Options {
    /// Parses the program's arguments; `known` lists the option names (without dashes) it accepts. Prints
    /// `usage` and exits on `--help`, and on anything unknown or malformed.
    pub fn parse(usage: &str, known: &[&str]) -> Options {
        let mut values = HashMap::new();
        let mut positional = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                positional.push(arg);
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let value = args.next().unwrap_or_else(|| usage_error(usage, &format!("--{name} needs a value")));
                    (name.to_string(), value)
                }
            };
            if !known.contains(&name.as_str()) {
                usage_error(usage, &format!("unknown option --{name}"));
            }
            values.insert(name, value);
        }
        // The environment fills in what the command line left out.
        for name in known {
            if !values.contains_key(*name) {
                let var = format!("USTACK_{}", name.to_uppercase().replace('-', "_"));
                if let Ok(value) = std::env::var(&var) {
                    if !value.is_empty() {
                        values.insert(name.to_string(), value);
                    }
                }
            }
        }
        Options { values, positional }
    }

    /// The option's value as text, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The option's value parsed as `T`, if given; exits with a message when it does not parse.
    pub fn get<T: FromStr>(&self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        self.text(name).map(|v| v.parse().unwrap_or_else(|e| fail(format!("--{name} {v:?}: {e}"))))
    }

    /// The option's value parsed as `T`, or `default`.
    pub fn get_or<T: FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.get(name).unwrap_or(default)
    }

    /// The option's value parsed as `T`; exits when it is missing.
    pub fn require<T: FromStr>(&self, name: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.get(name).unwrap_or_else(|| fail(format!("--{name} is required (see --help)")))
    }

    /// The words that are not options, in order.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }
}

fn usage_error(usage: &str, message: &str) -> ! {
    eprintln!("error: {message}\n\n{usage}");
    exit(2)
}

/// Opens the TAP device from `--tap` (inside `--netns` when given), brings it up, and starts a stack on it with
/// the address from `--ip`. Exits with a message when it cannot.
pub fn start_stack(opts: &Options) -> NetStack {
    let tap_name: String = opts.require("tap");
    let netns = opts.text("netns");
    let ip = opts.text("ip").unwrap_or("198.18.0.2/24");
    let cidr: Ipv4Cidr =
        ip.parse().unwrap_or_else(|_| fail(format!("--ip {ip:?} is not an address with a prefix, e.g. 198.18.0.2/24")));
    let [_, b, c, d] = cidr.addr.octets();
    // A locally administered MAC made from the address: `02:75:73` ("\x02us") and its last three bytes.
    let mut config = StackConfig::new(MacAddr([0x02, 0x75, 0x73, b, c, d]), cidr);
    config.gateway = opts.get::<Ipv4Addr>("gateway");
    config.max_sockets = opts.get_or("max-sockets", 4096);

    let open = || -> io::Result<Tap> {
        // Tap::open would create a missing device; one that nobody configured has no kernel address behind it.
        if !interface_exists(&tap_name)? {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("there is no device {tap_name:?} here")));
        }
        let tap = Tap::open(&tap_name)?;
        tap.set_up()?;
        Ok(tap)
    };
    let tap = match netns {
        Some(ns) => ustack_netdev::netns::run_in_namespace(ns, open).and_then(|r| r),
        None => open(),
    }
    .unwrap_or_else(|e| fail(format!("cannot open TAP device {tap_name:?}: {e}")));
    let where_ = netns.map_or(String::new(), |ns| format!(" in namespace {ns}"));
    let net = NetStack::spawn(tap, config).unwrap_or_else(|e| fail(format!("cannot start the stack: {e}")));
    println!("ustack {cidr} running on TAP {tap_name}{where_}");
    net
}

/// The stack's own address (from `--ip`).
pub fn stack_ip(opts: &Options) -> IpAddr {
    let ip = opts.text("ip").unwrap_or("198.18.0.2/24");
    let cidr: Ipv4Cidr = ip.parse().unwrap_or_else(|_| fail(format!("--ip {ip:?} is not an address with a prefix")));
    IpAddr::V4(cidr.addr)
}

/// True when the calling thread's network namespace has an interface `name` (`/proc/thread-self/net/dev`
/// follows the thread's namespace).
fn interface_exists(name: &str) -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    Ok(table.lines().skip(2).filter_map(|line| line.split_once(':')).any(|(ifname, _)| ifname.trim() == name))
}

/// Waits (at most `timeout`) until no TCP connection of the stack is still exchanging data or closing, so
/// that the last FINs and ACKs go out before the stack is shut down. Returns how many were left.
pub fn drain(net: &NetStack, timeout: Duration) -> usize {
    let busy = |net: &NetStack| {
        net.sockets_snapshot()
            .iter()
            .filter(|s| {
                s.proto == "tcp"
                    && matches!(
                        s.state,
                        "SYN-SENT" | "SYN-RECV" | "ESTAB" | "CLOSE-WAIT" | "FIN-WAIT-1" | "CLOSING" | "LAST-ACK"
                    )
            })
            .count()
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = busy(net);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lets closing connections finish (up to five seconds), stops the stack, and prints its counters that moved.
pub fn finish(net: &NetStack) {
    let left = drain(net, Duration::from_secs(5));
    if left > 0 {
        println!("{left} connections were still closing when the stack stopped");
    }
    net.shutdown();
    let moved: Vec<String> =
        net.counters().rows().into_iter().filter(|(_, v)| *v != 0).map(|(n, v)| format!("{n} {v}")).collect();
    println!("counters: {}", moved.join(", "));
}
