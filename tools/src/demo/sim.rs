//! The demo without root: two ustack stacks on an in-memory link, driven on virtual time. Stack A plays the
//! kernel's part and stack B plays ustack's, using the sans-IO socket calls directly.

use super::report::Report;
use super::{
    closed_addr, compare_echo, echo_addr, echo_payloads, peer_cidr, ustack_cidr, ECHO_PORT, HTTP_PORT, LINK_MTU,
};
use crate::cli_util::{self, Failure};
use crate::signals::Interrupt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use ustack::sim::SimNet;
use ustack::{Domain, Duration, Errno, Fd, MsgFlags, SockType, Stack, StackConfig};
use ustack_netdev::pipe::PipeConfig;

/// How much virtual time an answer may take before the check fails (a perfect link needs microseconds).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Room for the largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// What A's socket got back: a datagram and its sender, or an error.
type Answer = Result<(Vec<u8>, SocketAddr), Errno>;

/// Plays the conversation in memory.
pub fn run(pcap: &Path, report: &mut Report, interrupt: &Interrupt) -> Result<(), Failure> {
    let mut sim = build_link(pcap, report)?;
    let echo_fd =
        bind_echo(&mut sim.b).map_err(|e| Failure::new(format!("stack B cannot bind UDP port {ECHO_PORT}: {e}")))?;
    report
        .say(format!("stack B runs a UDP echo service on port {ECHO_PORT}: whatever arrives goes back to its sender"));
    let mut tcp = super::sim_tcp::Services::listen(&mut sim.b)
        .map_err(|e| Failure::new(format!("stack B cannot listen on its TCP ports: {e}")))?;
    report.say(format!(
        "stack B also listens on TCP port {HTTP_PORT} (HTTP: /bytes/N is N bytes where byte i is i % 251) \
         and TCP port {ECHO_PORT} (echo)"
    ));

    report.step("Ping");
    report.skip("ustack has no ping program of its own, so this run leaves ping out; as root the kernel pings ustack");
    interrupt.check()?;

    report.step(&format!("Stack A sends UDP datagrams to stack B's echo service at {}", echo_addr()));
    udp_echoes(&mut sim, echo_fd, report)?;
    interrupt.check()?;

    report.step(&format!("Stack A sends to {}, where nothing listens", closed_addr()));
    port_unreachable(&mut sim, echo_fd, report)?;
    interrupt.check()?;

    super::sim_tcp::run(&mut sim, &mut tcp, report)?;

    report.step("The counters of both stacks (named as in /proc/net/snmp and /proc/net/netstat; zeros left out)");
    cli_util::print_counter_table(&[("A (peer)", sim.a.counters().rows()), ("B (ustack)", sim.b.counters().rows())]);
    sim.flush_capture()?;
    Ok(())
}

/// Two stacks on a perfect in-memory link, recording into `pcap`.
fn build_link(pcap: &Path, report: &mut Report) -> Result<SimNet, Failure> {
    report.step("Setting up: two ustack stacks joined by an in-memory Ethernet link, on virtual time");
    let mut a = StackConfig::new(cli_util::mac_from_ip(peer_cidr().addr), peer_cidr());
    // Two hosts do not share a random generator: a seed of its own gives A its own IP IDs and ports.
    a.seed ^= 0x4141;
    let b = StackConfig::new(cli_util::mac_from_ip(ustack_cidr().addr), ustack_cidr());
    report.say(format!("stack A (in the kernel's part): {} MAC {}", a.ipv4, a.mac));
    report.say(format!("stack B (in ustack's part):     {} MAC {}, MTU {LINK_MTU}", b.ipv4, b.mac));
    let mut sim = SimNet::new(a, b, PipeConfig::default());
    sim.capture_to(pcap)?;
    report.say(format!("every frame on the link is recorded in {} (timestamps are virtual time)", pcap.display()));
    Ok(sim)
}

/// `socket()` + `bind(0.0.0.0:7)` on stack B.
fn bind_echo(b: &mut Stack) -> Result<Fd, Errno> {
    let fd = b.socket(Domain::Inet, SockType::Dgram)?;
    b.bind(fd, SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ECHO_PORT)))?;
    Ok(fd)
}

/// Sends each demo payload from a socket on A to B's echo service and checks what comes back.
fn udp_echoes(sim: &mut SimNet, echo_fd: Fd, report: &mut Report) -> Result<(), Failure> {
    let client =
        sim.a.socket(Domain::Inet, SockType::Dgram).map_err(|e| Failure::new(format!("socket() on A: {e}")))?;
    report.say("A does not know B's MAC yet: its first datagram waits for an ARP request and reply");
    for (what, payload) in echo_payloads() {
        let outcome = match sim.a.sendto(client, &payload, MsgFlags::NONE, Some(echo_addr())) {
            Ok(_) => check_echo(&payload, run_until_answer(sim, client, echo_fd)),
            Err(e) => Err(format!("sendto of {} bytes failed with {e}", payload.len())),
        };
        report.check(outcome.map(|()| format!("{what}: echoed back byte for byte")));
    }
    Ok(())
}

/// Judges A's answer to one datagram sent to the echo service.
fn check_echo(sent: &[u8], answer: Option<Answer>) -> Result<(), String> {
    match answer {
        None => Err(format!("no echo of the {}-byte datagram within {ANSWER_TIMEOUT:?} of virtual time", sent.len())),
        Some(Err(e)) => Err(format!("recvfrom failed with {e}")),
        Some(Ok((_, from))) if from != echo_addr() => Err(format!("the answer came from {from}, not {}", echo_addr())),
        Some(Ok((echoed, _))) => compare_echo(sent, &echoed),
    }
}

/// A connected socket on A sends to B's closed port; B answers with ICMP port unreachable, and A's next
/// `recvfrom` must fail with `ECONNREFUSED`, as the kernel's does.
fn port_unreachable(sim: &mut SimNet, echo_fd: Fd, report: &mut Report) -> Result<(), Failure> {
    let fd = sim.a.socket(Domain::Inet, SockType::Dgram).map_err(|e| Failure::new(format!("socket() on A: {e}")))?;
    if let Err(e) =
        sim.a.connect(fd, Some(closed_addr())).and_then(|()| sim.a.send(fd, b"anyone there?", MsgFlags::NONE))
    {
        report.fail(format!("connect/send on A failed with {e}"));
        return Ok(());
    }
    report.say("sent 13 bytes; B has no socket there, so it answers with ICMP destination unreachable (port)");
    match run_until_answer(sim, fd, echo_fd) {
        Some(Err(Errno::ECONNREFUSED)) => {
            report.pass("A's next recvfrom failed with ECONNREFUSED (Connection refused), as on Linux")
        }
        Some(Err(e)) => report.fail(format!("recvfrom failed, but with {e} instead of ECONNREFUSED")),
        Some(Ok((data, _))) => report.fail(format!("recvfrom returned {} bytes instead of ECONNREFUSED", data.len())),
        None => report.fail(format!("no ICMP port unreachable arrived within {ANSWER_TIMEOUT:?} of virtual time")),
    }
    Ok(())
}

/// Runs the link until A's socket `client` has a datagram or an error, or until [`ANSWER_TIMEOUT`] of
/// virtual time has passed (`None`). B's echo service answers whatever reaches it along the way.
fn run_until_answer(sim: &mut SimNet, client: Fd, echo_fd: Fd) -> Option<Answer> {
    let mut scratch = vec![0u8; MAX_DATAGRAM];
    let mut answer = None;
    let deadline = sim.now() + ANSWER_TIMEOUT;
    sim.run_until(deadline, |net| {
        echo_pending(&mut net.b, echo_fd, &mut scratch);
        answer = match net.a.recvfrom(client, &mut scratch, MsgFlags::NONE) {
            Ok(meta) => Some(Ok((scratch[..meta.len].to_vec(), meta.from))),
            Err(Errno::EAGAIN) => None,
            Err(e) => Some(Err(e)),
        };
        answer.is_some()
    });
    answer
}

/// B's echo service: every queued datagram goes back to its sender (sent on the next step of the link).
fn echo_pending(b: &mut Stack, fd: Fd, buf: &mut [u8]) {
    while let Ok(meta) = b.recvfrom(fd, buf, MsgFlags::NONE) {
        if let Err(e) = b.sendto(fd, &buf[..meta.len], MsgFlags::NONE, Some(meta.from)) {
            tracing::warn!(to = %meta.from, err = %e, "stack B could not echo a datagram");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_conversation_passes() {
        let dir = std::env::temp_dir().join(format!("ustack-sim-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pcap = dir.join("demo.pcap");
        let mut sim = build_link(&pcap, &mut Report::new()).unwrap();
        let echo_fd = bind_echo(&mut sim.b).unwrap();
        let client = sim.a.socket(Domain::Inet, SockType::Dgram).unwrap();
        for (_, payload) in echo_payloads() {
            sim.a.sendto(client, &payload, MsgFlags::NONE, Some(echo_addr())).unwrap();
            check_echo(&payload, run_until_answer(&mut sim, client, echo_fd)).unwrap();
        }
        let closed = sim.a.socket(Domain::Inet, SockType::Dgram).unwrap();
        sim.a.connect(closed, Some(closed_addr())).unwrap();
        sim.a.send(closed, b"x", MsgFlags::NONE).unwrap();
        assert!(matches!(run_until_answer(&mut sim, closed, echo_fd), Some(Err(Errno::ECONNREFUSED))));
        assert_eq!(sim.b.counters().ip.reasm_oks, 1, "the 6000-byte datagram was reassembled on B");
        sim.flush_capture().unwrap();
        assert!(!ustack_netdev::pcap::read_file(&pcap).unwrap().packets.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
