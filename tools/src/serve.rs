//! `ustack serve`: the stack on a real link until Ctrl-C, answering ARP and ping, with UDP echo, TCP echo,
//! discard and HTTP services on the ports asked for, and a control socket for `ustack ss`.

use crate::cli_util::{self, Failure};
use crate::control::ControlServer;
use crate::echo::EchoServers;
use crate::signals::Interrupt;
use crate::tcp_services::{Service, TcpServices};
use clap::Args;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use ustack::runtime::NetStack;
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::StackConfig;
use ustack_netdev::packet_socket::PacketSocket;
use ustack_netdev::pcap::Capture;
use ustack_netdev::tap::Tap;
use ustack_netdev::Device;

/// Arguments of `ustack serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    link: LinkArgs,
    /// With --tap: checksum and TCP segmentation offload (virtio-net headers; the kernel and the stack exchange
    /// TCP super-segments of up to 64 KiB).
    #[arg(long, conflicts_with = "af_packet")]
    offload: bool,
    /// The stack's address and prefix, e.g. 198.18.0.2/24.
    #[arg(long, value_name = "CIDR", value_parser = cli_util::parse_cidr)]
    ip: Ipv4Cidr,
    /// Default router for destinations off the subnet.
    #[arg(long, value_name = "IP", value_parser = cli_util::parse_ipv4)]
    gateway: Option<Ipv4Addr>,
    /// The stack's MAC address [default: 02:75:73 followed by the last three bytes of the IP].
    #[arg(long, value_name = "MAC", value_parser = cli_util::parse_mac)]
    mac: Option<MacAddr>,
    /// Echo UDP datagrams sent to this port (repeat for several ports).
    #[arg(long = "udp-echo", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    udp_echo: Vec<u16>,
    /// Echo TCP connections on this port: whatever arrives goes back (repeat for several ports).
    #[arg(long = "echo", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tcp_echo: Vec<u16>,
    /// Accept TCP connections on this port and drop whatever arrives (repeat for several ports).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    discard: Vec<u16>,
    /// Serve HTTP/1.1 on this port: `/` is a small page, `/bytes/N` is N bytes of a known pattern (repeatable).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    http: Vec<u16>,
    /// Answer `ustack ss --control PATH` on this Unix socket (removed again on exit).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Record every frame the stack receives and sends into this pcap file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Open the device inside this existing network namespace (as created by `ip netns add`).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Maximum segment lifetime in seconds: TIME-WAIT lasts twice this [default: 30, Linux's 60 s TIME-WAIT].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    msl: Option<u64>,
}

/// Exactly one link to run on.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct LinkArgs {
    /// Attach to this existing TAP device (the kernel's side of it should have an address on the subnet).
    #[arg(long, value_name = "NAME")]
    tap: Option<String>,
    /// Run on this interface through an AF_PACKET socket (for example one end of a veth pair).
    #[arg(long = "af-packet", value_name = "IFNAME")]
    af_packet: Option<String>,
}

/// Runs the stack until Ctrl-C or SIGTERM, then stops it cleanly and prints its counters.
pub fn run(args: ServeArgs, interrupt: &Interrupt) -> Result<(), Failure> {
    let mut config = stack_config(&args)?;
    check_tcp_ports(&args)?;
    // Bound before the link opens, so that an unusable path fails first; removed on every way out.
    let control = args.control.as_deref().map(ControlServer::bind).transpose()?;
    let (device, description) = open_link(&args)?;
    let device = with_capture(device, args.pcap.as_ref())?;
    // The link decides the MTU: a TAP or veth set to jumbo frames gets a stack that uses them.
    config.mtu = device.mtu();
    tracing::info!(
        device = %description,
        mac = %config.mac,
        ip = %config.ipv4,
        mtu = config.mtu,
        gateway = %config.gateway.map_or("none".to_string(), |g| g.to_string()),
        pcap = %args.pcap.as_ref().map_or("off".to_string(), |p| p.display().to_string()),
        "ustack serving"
    );
    let net = NetStack::spawn(device, config)?;
    let result = serve_until_interrupted(&net, &args, control, interrupt);
    // Joining the driver thread drops the device, and with it the capture, which flushes the pcap.
    net.shutdown();
    result?;
    println!("ustack stopped; counters that moved:");
    cli_util::print_counter_table(&[("ustack", net.counters().rows())]);
    Ok(())
}

/// Starts the services and the control socket and waits for the signal; everything is stopped (and the
/// control socket removed) before returning, on errors too.
fn serve_until_interrupted(
    net: &NetStack,
    args: &ServeArgs,
    mut control: Option<ControlServer>,
    interrupt: &Interrupt,
) -> Result<(), Failure> {
    let udp_echoes = EchoServers::start(net, &args.udp_echo)?;
    let tcp = TcpServices::start(net, &tcp_services(args))?;
    if let Some(control) = control.as_mut() {
        control.start(net)?;
    }
    tracing::info!("ready: {}; press Ctrl-C to stop", summary(args));
    interrupt.wait();
    tracing::info!("stopping");
    if let Some(control) = control {
        control.stop();
    }
    tcp.stop();
    udp_echoes.stop();
    Ok(())
}

/// Every TCP service asked for, with its port.
fn tcp_services(args: &ServeArgs) -> Vec<(Service, u16)> {
    let each = |service: Service, ports: &[u16]| ports.iter().map(move |&p| (service, p)).collect::<Vec<_>>();
    [each(Service::Echo, &args.tcp_echo), each(Service::Discard, &args.discard), each(Service::Http, &args.http)]
        .concat()
}

/// One service per TCP port: the stack would refuse the second listener anyway, but this names both.
fn check_tcp_ports(args: &ServeArgs) -> Result<(), Failure> {
    let mut seen = std::collections::HashMap::new();
    for (service, port) in tcp_services(args) {
        match seen.insert(port, service) {
            Some(other) if other == service => {
                return Err(Failure::new(format!("TCP port {port} is given twice for the {service} service")))
            }
            Some(other) => {
                return Err(Failure::new(format!(
                    "TCP port {port} is given to both the {other} and {service} services"
                )))
            }
            None => {}
        }
    }
    Ok(())
}

/// What the stack offers, for the log line that says it is ready.
fn summary(args: &ServeArgs) -> String {
    let ports = |ports: &[u16]| {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!("port{} {}", if ports.len() > 1 { "s" } else { "" }, list.join(", "))
    };
    let mut parts = vec!["answering ARP and ping".to_string()];
    for (what, list) in [
        ("UDP echo", &args.udp_echo),
        ("TCP echo", &args.tcp_echo),
        ("TCP discard", &args.discard),
        ("HTTP", &args.http),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} on {}", ports(list)));
        }
    }
    if let Some(path) = &args.control {
        parts.push(format!("control socket {}", path.display()));
    }
    parts.join(", ")
}

/// The stack's configuration from the arguments, with the checks that need more than one argument.
fn stack_config(args: &ServeArgs) -> Result<StackConfig, Failure> {
    let mac = args.mac.unwrap_or_else(|| cli_util::mac_from_ip(args.ip.addr));
    let mut config = StackConfig::new(mac, args.ip);
    if let Some(gateway) = args.gateway {
        if !args.ip.contains(gateway) || gateway == args.ip.addr {
            return Err(Failure::new(format!(
                "the gateway {gateway} must be another host on the stack's subnet {}",
                args.ip
            )));
        }
        config.gateway = Some(gateway);
    }
    if let Some(msl) = args.msl {
        config.tcp.msl = std::time::Duration::from_secs(msl);
    }
    Ok(config)
}

/// Opens the TAP or the packet socket, inside `--netns` when given. Returns the device and a description for
/// the log.
fn open_link(args: &ServeArgs) -> Result<(Box<dyn Device>, String), Failure> {
    let (device, what): (Box<dyn Device>, String) = match (&args.link.tap, &args.link.af_packet) {
        (Some(name), _) => {
            let offload = args.offload;
            let tap = in_namespace(args.netns.as_deref(), || open_tap(name, offload))?;
            let what = if offload { format!("TAP {name} with offloads") } else { format!("TAP {name}") };
            (Box::new(tap), what)
        }
        (None, Some(name)) => (
            Box::new(in_namespace(args.netns.as_deref(), || PacketSocket::open(name))?),
            format!("AF_PACKET on {name}"),
        ),
        (None, None) => return Err(Failure::new("give --tap NAME or --af-packet IFNAME")),
    };
    let what = match &args.netns {
        Some(ns) => format!("{what} in namespace {ns}"),
        None => what,
    };
    Ok((device, what))
}

/// Runs `open` in the named namespace (the descriptor it opens stays there), or right here without one.
fn in_namespace<T: Send>(netns: Option<&str>, open: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    match netns {
        Some(name) => ustack_netdev::netns::run_in_namespace(name, open)?,
        None => open(),
    }
}

/// Attaches to an existing TAP and brings it up. `Tap::open` would create a missing one, but a TAP nobody
/// configured has no kernel address behind it, so serving on it would be silence: refuse with a hint instead.
fn open_tap(name: &str, offload: bool) -> io::Result<Tap> {
    if !interface_exists(name)? {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "there is no TAP device {name:?} here; create it first with \
                 `ip tuntap add dev {name} mode tap` and give the kernel's side an address"
            ),
        ));
    }
    let tap = if offload { Tap::open_with_offloads(name)? } else { Tap::open(name)? };
    tap.set_up()?;
    Ok(tap)
}

/// True when the calling thread's network namespace has an interface called `name`. Reads
/// `/proc/thread-self/net/dev`, which follows the thread's namespace (unlike `/sys/class/net`, which follows
/// the mount namespace), so it answers correctly inside `run_in_namespace`.
fn interface_exists(name: &str) -> io::Result<bool> {
    let table = std::fs::read_to_string("/proc/thread-self/net/dev")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list network interfaces: {e}")))?;
    Ok(table.lines().skip(2).filter_map(|line| line.split_once(':')).any(|(ifname, _)| ifname.trim() == name))
}

/// Wraps the device in a pcap recorder when asked to.
fn with_capture(device: Box<dyn Device>, pcap: Option<&PathBuf>) -> Result<Box<dyn Device>, Failure> {
    match pcap {
        Some(path) => Ok(Box::new(Capture::with_wall_clock(device, path)?)),
        None => Ok(device),
    }
}
