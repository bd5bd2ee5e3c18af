//! `ustack demo`: the stack's main job, shown step by step to a newcomer.
//!
//! As root, the peer is the Linux kernel itself, in a private network namespace joined to ustack by a TAP
//! device: the kernel pings ustack, sends it UDP datagrams to echo, learns from it that a port is closed, then
//! fetches a file from ustack's HTTP server and has ustack's TCP echo service return its bytes. Without root
//! the same conversation plays between two ustack stacks over an in-memory link on virtual time, so everyone
//! can run it. Either way every frame lands in a pcap file to open in Wireshark afterwards.

mod kernel;
mod kernel_tcp;
mod report;
mod sim;
mod sim_tcp;

use crate::cli_util::{self, Failure};
use crate::signals::Interrupt;
use clap::Args;
use report::Report;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use ustack_netdev::namespace::{self, Namespace};

/// Arguments of `ustack demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the capture of the whole conversation.
    #[arg(long, value_name = "FILE", default_value = "ustack-demo.pcap")]
    pcap: PathBuf,
    /// Play the conversation between two ustack stacks in memory, even as root.
    #[arg(long, hide = true)]
    simulated: bool,
}

/// The peer's side of the link (the kernel, or stack A in the simulation).
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// ustack's side of the link (stack B in the simulation).
const USTACK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PREFIX_LEN: u8 = 24;
/// The echo service's port (RFC 862).
const ECHO_PORT: u16 = 7;
/// A port nobody listens on (the discard port, left closed on purpose).
const CLOSED_PORT: u16 = 9;
/// The link MTU of both setups: the TAP's default and the in-memory pipe's default.
const LINK_MTU: usize = 1500;
/// ustack's HTTP server.
const HTTP_PORT: u16 = 80;
/// What the peer fetches from it: `/bytes/HTTP_BYTES`, about 70 full-sized TCP segments.
const HTTP_BYTES: usize = 100_000;

/// What the reader is about to see.
const INTRO: &str = "ustack is a TCP/IP stack that runs as an ordinary program: it reads and writes whole Ethernet \
frames\nand does ARP, IPv4 (with fragmentation), ICMP, UDP and TCP itself. This demo puts it on a link and talks \
to it.";

/// Runs the demo with the kernel as peer when it can, in memory otherwise.
pub fn run(args: DemoArgs, interrupt: &Interrupt) -> Result<(), Failure> {
    let mut report = Report::new();
    println!("{INTRO}");
    match kernel_peer(&args) {
        Ok(ns) => kernel::run(&ns, &args.pcap, &mut report, interrupt)?,
        Err(why) => {
            println!("{why}: playing the same conversation between two ustack stacks over the in-memory link");
            sim::run(&args.pcap, &mut report, interrupt)?;
        }
    }
    show_capture(&args.pcap, &mut report);
    report.finish()
}

/// A fresh namespace for the kernel peer, or why there cannot be one here.
fn kernel_peer(args: &DemoArgs) -> Result<Namespace, String> {
    if args.simulated {
        return Err("simulated run requested".into());
    }
    if !namespace::is_root() {
        return Err("not root".into());
    }
    if !namespace::kernel_peer_available() {
        return Err("no /dev/net/tun or no iproute2 `ip` here".into());
    }
    Namespace::create("ustdemo").map_err(|e| format!("cannot create a network namespace ({e})"))
}

/// Where the capture went and how to read it.
fn show_capture(pcap: &Path, report: &mut Report) {
    report.step("The capture");
    let shown = std::path::absolute(pcap).unwrap_or_else(|_| pcap.to_path_buf());
    match ustack_netdev::pcap::read_file(pcap) {
        Ok(capture) => {
            report.pass(format!("{} frames recorded in {}", capture.packets.len(), shown.display()));
            report.say(format!("Read it with:  tshark -r {}", pcap.display()));
            report.say("or open it in Wireshark; try the display filter  arp || icmp || udp || tcp");
        }
        Err(e) => report.fail(format!("cannot read the capture back: {e}")),
    }
}

fn ustack_cidr() -> ustack::wire::ipv4::Ipv4Cidr {
    ustack::wire::ipv4::Ipv4Cidr { addr: USTACK_IP, prefix_len: PREFIX_LEN }
}

fn peer_cidr() -> ustack::wire::ipv4::Ipv4Cidr {
    ustack::wire::ipv4::Ipv4Cidr { addr: PEER_IP, prefix_len: PREFIX_LEN }
}

fn echo_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(USTACK_IP, ECHO_PORT))
}

fn closed_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(USTACK_IP, CLOSED_PORT))
}

fn http_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(USTACK_IP, HTTP_PORT))
}

/// The request for `/bytes/HTTP_BYTES`; `Connection: close` makes the server close first, so that it is
/// ustack that keeps the connection in TIME-WAIT afterwards.
fn http_request() -> String {
    format!("GET /bytes/{HTTP_BYTES} HTTP/1.1\r\nHost: {USTACK_IP}\r\nConnection: close\r\n\r\n")
}

/// What the peer sends to the TCP echo service, each with a line saying what it shows.
fn tcp_echo_payloads() -> Vec<(String, Vec<u8>)> {
    let greeting = b"hello over TCP".to_vec();
    let big = 50_000;
    vec![
        (format!("{} bytes {:?}", greeting.len(), String::from_utf8_lossy(&greeting)), greeting),
        (format!("{big} bytes, some 35 segments each way, more than one window's worth at the start"), pattern(big)),
    ]
}

/// The rows of a socket table that are TIME-WAIT entries of ustack's HTTP server.
fn http_time_waits(rows: &[ustack::SocketInfo]) -> Vec<&ustack::SocketInfo> {
    rows.iter().filter(|r| r.state == "TIME-WAIT" && r.local.port() == HTTP_PORT).collect()
}

/// Shows a socket table under the current step, as `ss -tuano` would.
fn show_sockets(report: &Report, rows: &[ustack::SocketInfo]) {
    for line in crate::control::ss_lines(rows) {
        report.say(format!("  {line}"));
    }
}

/// The datagrams sent to the echo service: a greeting, the largest that fits one frame, and one that must
/// be fragmented. Each comes with a line saying what it shows.
fn echo_payloads() -> Vec<(String, Vec<u8>)> {
    let greeting = b"hello, ustack".to_vec();
    let one_frame = LINK_MTU - 20 - 8;
    let fragmented = 6000;
    vec![
        (format!("{} bytes {:?}", greeting.len(), String::from_utf8_lossy(&greeting)), greeting),
        (
            format!("{one_frame} bytes, the most that fits one {LINK_MTU}-byte IP packet (+8 UDP +20 IP)"),
            pattern(one_frame),
        ),
        (
            format!(
                "{fragmented} bytes, sent as {} IP fragments each way and reassembled",
                cli_util::fragment_count(fragmented + 8, LINK_MTU)
            ),
            pattern(fragmented),
        ),
    ]
}

/// Bytes that differ from one fragment to the next (251 is prime), so a misplaced fragment cannot go unseen.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Compares an echo with what was sent, naming the first difference.
fn compare_echo(sent: &[u8], echoed: &[u8]) -> Result<(), String> {
    if sent.len() != echoed.len() {
        return Err(format!("the echo has {} bytes, {} were sent", echoed.len(), sent.len()));
    }
    match sent.iter().zip(echoed).position(|(a, b)| a != b) {
        Some(at) => Err(format!("the echo differs from what was sent at byte {at}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_comparison_names_the_difference() {
        assert!(compare_echo(b"abc", b"abc").is_ok());
        assert!(compare_echo(b"abc", b"ab").unwrap_err().contains("2 bytes"));
        assert!(compare_echo(b"abc", b"abd").unwrap_err().contains("byte 2"));
    }

    #[test]
    fn payloads_cover_one_frame_and_fragments() {
        let sizes: Vec<usize> = echo_payloads().iter().map(|(_, p)| p.len()).collect();
        assert_eq!(sizes, [13, 1472, 6000]);
        assert!(echo_payloads()[2].0.contains("5 IP fragments"));
    }
}
