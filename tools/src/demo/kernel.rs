//! The demo against the Linux kernel: ustack on one side of a TAP device, the kernel of a private network
//! namespace on the other.

use super::report::Report;
use super::{
    closed_addr, compare_echo, echo_addr, echo_payloads, peer_cidr, ustack_cidr, ECHO_PORT, LINK_MTU, PEER_IP,
};
use crate::cli_util::{self, Failure};
use crate::echo::EchoServers;
use crate::signals::Interrupt;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::Duration;
use ustack::runtime::NetStack;
use ustack::StackConfig;
use ustack_netdev::namespace::Namespace;
use ustack_netdev::pcap::Capture;
use ustack_netdev::tap::Tap;
use ustack_netdev::Device;

/// The TAP device's name inside the namespace.
const TAP: &str = "ustap0";
/// The payload of the large pings: far more than one frame, so both directions are fragmented.
const BIG_PING: usize = 8000;
/// How long the kernel's sockets wait for an answer before the check fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Plays the conversation; `ns` is removed by the caller whatever happens here.
pub fn run(ns: &Namespace, pcap: &Path, report: &mut Report, interrupt: &Interrupt) -> Result<(), Failure> {
    let net = start_ustack(ns, pcap, report)?;
    let echo = EchoServers::start(&net, &[ECHO_PORT])?;
    report.say(format!("ustack runs a UDP echo service on port {ECHO_PORT}: whatever arrives goes back to its sender"));
    let tcp = super::kernel_tcp::start_services(&net, report)?;
    interrupt.check()?;

    report.step("The kernel pings ustack: it asks for ustack's MAC with ARP, then sends ICMP echo requests");
    ping(ns, report, interrupt, &["-c", "3", "-i", "0.2", "-W", "2", &super::USTACK_IP.to_string()]);
    interrupt.check()?;

    report.step(&format!(
        "The kernel pings with {BIG_PING}-byte payloads: each request and each reply travels in {} IP fragments",
        cli_util::fragment_count(BIG_PING + 8, LINK_MTU)
    ));
    let size = BIG_PING.to_string();
    ping(ns, report, interrupt, &["-c", "2", "-i", "0.2", "-W", "2", "-s", &size, &super::USTACK_IP.to_string()]);
    interrupt.check()?;

    report.step(&format!("A kernel UDP socket sends datagrams to ustack's echo service at {}", echo_addr()));
    udp_echoes(ns, report)?;
    interrupt.check()?;

    report.step(&format!("A kernel UDP socket sends to {}, where nothing listens", closed_addr()));
    port_unreachable(ns, &net, report)?;
    interrupt.check()?;

    super::kernel_tcp::run(ns, &net, report, interrupt)?;

    report.step("ustack's counters (named as in /proc/net/snmp and /proc/net/netstat; zeros left out)");
    tcp.stop();
    echo.stop();
    cli_util::print_counter_table(&[("ustack", net.counters().rows())]);
    // Joining the driver thread drops the TAP and its capture, which flushes the pcap file.
    net.shutdown();
    Ok(())
}

/// Builds the link (TAP in the namespace, kernel address on it), wraps it in a capture, and starts ustack.
fn start_ustack(ns: &Namespace, pcap: &Path, report: &mut Report) -> Result<NetStack, Failure> {
    report
        .step("Setting up: a private network namespace with a TAP device, the kernel on one side, ustack on the other");
    ns.add_tap(TAP, &peer_cidr().to_string())?;
    let tap = ns.enter(|| Tap::open(TAP))??;
    let kernel_mac = tap.hardware_addr().map(|m| ustack::wire::ethernet::MacAddr(m).to_string());
    let mtu = tap.mtu();
    let device = Capture::with_wall_clock(tap, pcap)?;
    let mut config = StackConfig::new(cli_util::mac_from_ip(ustack_cidr().addr), ustack_cidr());
    config.mtu = mtu;
    report.say(format!("namespace {}", ns.name()));
    report.say(format!("the kernel: {TAP} {} MAC {}", peer_cidr(), kernel_mac.unwrap_or_else(|| "unknown".into())));
    report.say(format!("ustack:     {} MAC {}, MTU {mtu}", config.ipv4, config.mac));
    report.say(format!("every frame on the TAP is recorded in {}", pcap.display()));
    Ok(NetStack::spawn(device, config)?)
}

/// Runs `ping ARGS` in the namespace and checks that every request got its reply. A missing `ping` skips the
/// step: that is the machine's gap, not the stack's. A ping cut short by Ctrl-C (it gets the signal too) is not
/// judged: the demo stops right after.
fn ping(ns: &Namespace, report: &mut Report, interrupt: &Interrupt, args: &[&str]) {
    if !on_path("ping") {
        report.skip("`ping` is not installed here (iputils-ping); nothing to ping with");
        return;
    }
    report.say(format!("$ ping {}", args.join(" ")));
    let output = match ns.exec("ping", args) {
        Ok(output) => output,
        Err(e) => return report.fail(format!("cannot run ping in the namespace: {e}")),
    };
    if interrupt.is_raised() {
        return;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| l.contains("packets transmitted") || l.starts_with("rtt")) {
        report.say(format!("  {line}"));
    }
    match ping_counts(&stdout) {
        Some((sent, received)) if sent > 0 && sent == received && output.status.success() => {
            report.pass(format!("{received} of {sent} echo requests answered"))
        }
        Some((sent, received)) => report.fail(format!("only {received} of {sent} echo requests were answered")),
        None => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            report.fail(format!("ping printed no summary ({})", stderr.trim()))
        }
    }
}

/// `(transmitted, received)` from ping's summary line `3 packets transmitted, 3 received, ...`.
fn ping_counts(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line.split(',').map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()));
    Some((numbers.next()??, numbers.next()??))
}

/// True when `program` is an executable file in one of `$PATH`'s directories (what `ip netns exec` will look
/// for).
fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// A kernel UDP socket bound to the kernel's address, created inside the namespace (it stays there).
fn kernel_socket(ns: &Namespace) -> Result<UdpSocket, Failure> {
    let local = SocketAddr::V4(SocketAddrV4::new(PEER_IP, 0));
    let socket = ns.enter(|| UdpSocket::bind(local))?.map_err(|e| {
        Failure::new(format!("cannot create a kernel UDP socket on {local} in namespace {}: {e}", ns.name()))
    })?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(socket)
}

/// Sends each demo payload to the echo service and checks that the very same bytes come back from it.
fn udp_echoes(ns: &Namespace, report: &mut Report) -> Result<(), Failure> {
    let socket = kernel_socket(ns)?;
    report.say(format!("the kernel's socket is {}", socket.local_addr()?));
    for (what, payload) in echo_payloads() {
        report.check(echo_once(&socket, &payload).map(|()| format!("{what}: echoed back byte for byte")));
    }
    Ok(())
}

/// One datagram out and its echo back.
fn echo_once(socket: &UdpSocket, payload: &[u8]) -> Result<(), String> {
    let target = echo_addr();
    socket.send_to(payload, target).map_err(|e| format!("sending {} bytes failed: {e}", payload.len()))?;
    let mut buf = vec![0u8; 65_536];
    let (len, from) = socket.recv_from(&mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no echo of the {}-byte datagram within {ANSWER_TIMEOUT:?}", payload.len())
        }
        _ => format!("receiving the echo failed: {e}"),
    })?;
    if from != target {
        return Err(format!("the answer came from {from}, not from {target}"));
    }
    compare_echo(payload, &buf[..len])
}

/// A connected kernel socket learns from ustack's ICMP port unreachable that nobody listens: its next receive
/// fails with ECONNREFUSED, exactly as against another Linux host.
fn port_unreachable(ns: &Namespace, net: &NetStack, report: &mut Report) -> Result<(), Failure> {
    let socket = kernel_socket(ns)?;
    let no_ports_before = net.counters().udp.no_ports;
    let sent = socket.connect(closed_addr()).and_then(|()| socket.send(b"is anyone listening on port 9?"));
    if let Err(e) = sent {
        report.fail(format!("the kernel socket could not connect and send to {}: {e}", closed_addr()));
        return Ok(());
    }
    report.say("sent 30 bytes; ustack has no socket there, so it answers with ICMP destination unreachable (port)");
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            report.pass(format!("the kernel socket's next recv failed with ECONNREFUSED: {e}"))
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            report.fail(format!("no ICMP port unreachable arrived within {ANSWER_TIMEOUT:?}"))
        }
        Err(e) => report.fail(format!("recv failed, but with {e} instead of ECONNREFUSED")),
        Ok(n) => report.fail(format!("recv returned {n} bytes instead of failing with ECONNREFUSED")),
    }
    let no_ports = net.counters().udp.no_ports.saturating_sub(no_ports_before);
    report.check(if no_ports == 1 {
        Ok("ustack counted it: UdpNoPorts went up by 1".to_string())
    } else {
        Err(format!("ustack's UdpNoPorts went up by {no_ports}, expected 1"))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_is_parsed() {
        let out = "PING 198.18.0.2 ...\n\n--- 198.18.0.2 ping statistics ---\n\
                   3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n";
        assert_eq!(ping_counts(out), Some((3, 2)));
        let errors = "2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1001ms\n";
        assert_eq!(ping_counts(errors), Some((2, 0)));
        assert_eq!(ping_counts("ping: unknown host"), None);
    }
}
