//! Real-peer tests: the Linux kernel, in a private network namespace, talks UDP and ICMP to ustack over a TAP
//! device and over `AF_PACKET` on a veth pair.
//!
//! Each test runs once per link (`_tap` and `_af_packet`) with a shared body. Every test needs root and
//! `/dev/net/tun` and skips otherwise; `ping` (iputils-ping) and, for the capture tests, `tshark` must be
//! installed. Nothing waits forever on the peer: sockets have read timeouts, loops have counts and deadlines, and
//! ping runs with `-W` and `-w`.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket as KernelUdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ustack::runtime::UdpSocket;
use ustack_tests::kernel::{skip_without_kernel_peer, tshark_available, KernelPeer, Link, TempFile, XorShift};

/// How long a single reply may take before the test fails (generous: the suite runs in parallel on few cores).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The UDP echo port of the ustack echo server.
const ECHO_PORT: u16 = 7;

// ---------------------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------------------

/// Sets a flag when dropped, so that a panicking test body still stops its helper threads.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Echoes every datagram on `sock` back to its sender until `stop` is set, `deadline` passes or `max_rounds`
/// receive calls were made (each either echoes one datagram or times out). Returns how many it echoed.
fn echo_loop(sock: &UdpSocket, stop: &AtomicBool, deadline: Instant, max_rounds: usize) -> Result<u64, String> {
    let mut buf = vec![0u8; 65536];
    let mut echoed = 0u64;
    for _ in 0..max_rounds {
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return Ok(echoed);
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let sent = sock.send_to(&buf[..n], from).map_err(|e| format!("echo send_to {from} failed: {e}"))?;
                if sent != n {
                    return Err(format!("echo send_to {from} sent {sent} of {n} bytes"));
                }
                echoed += 1;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("echo recv_from failed after {echoed} echoes: {e}")),
        }
    }
    Ok(echoed)
}

/// Runs `body` while a ustack echo server (a thread with a blocking socket on 0.0.0.0:7) serves. Returns the
/// body's result and how many datagrams the server echoed (or its error).
fn with_echo_server<R>(peer: &KernelPeer, deadline: Instant, body: impl FnOnce() -> R) -> (R, Result<u64, String>) {
    let server = UdpSocket::bind(peer.net(), SocketAddr::from(([0, 0, 0, 0], ECHO_PORT))).expect("bind echo server");
    server.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    server.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let echo = scope.spawn(|| echo_loop(&server, &stop, deadline, 100_000));
        let guard = StopOnDrop(&stop);
        let result = body();
        drop(guard);
        let echoed = echo.join().unwrap_or_else(|_| Err("echo thread panicked".into()));
        (result, echoed)
    })
}

/// A kernel UDP socket connected to the ustack echo server.
fn kernel_echo_client(peer: &KernelPeer) -> KernelUdpSocket {
    let sock = peer.kernel_udp(0, REPLY_TIMEOUT).expect("kernel UDP socket");
    sock.connect(peer.stack_addr(ECHO_PORT)).expect("connect kernel socket to the echo server");
    sock
}

/// A datagram of `size` random bytes whose first 8 bytes (when it has 8) carry `seq`.
fn datagram(rng: &mut XorShift, seq: u64, size: usize) -> Vec<u8> {
    let mut d = vec![0u8; size];
    rng.fill(&mut d);
    if size >= 8 {
        d[..8].copy_from_slice(&seq.to_be_bytes());
    }
    d
}

/// Sends `sizes.len()` datagrams from `client` to the echo server keeping at most `window` unanswered, and
/// checks that each comes back intact. Datagrams of 8 bytes or more are matched by the sequence number in their
/// first 8 bytes; shorter ones match the oldest unanswered short datagram. Bounded by the count and `deadline`.
fn echo_exchange(
    client: &KernelUdpSocket,
    rng: &mut XorShift,
    sizes: &[usize],
    window: usize,
    deadline: Instant,
) -> Result<usize, String> {
    let mut outstanding: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 65536];
    for received in 0..sizes.len() {
        if Instant::now() >= deadline {
            return Err(format!("deadline passed after {received} of {} echoes", sizes.len()));
        }
        while next < sizes.len() && outstanding.len() < window {
            let d = datagram(rng, next as u64, sizes[next]);
            let n = client.send(&d).map_err(|e| format!("kernel send of datagram #{next} ({} bytes): {e}", d.len()))?;
            if n != d.len() {
                return Err(format!("kernel sent {n} of {} bytes of datagram #{next}", d.len()));
            }
            outstanding.push_back((next as u64, d));
            next += 1;
        }
        let n = client.recv(&mut buf).map_err(|e| {
            let waiting: Vec<String> = outstanding.iter().map(|(s, d)| format!("#{s} ({} B)", d.len())).collect();
            format!("no echo after {received} of {} echoes: {e}; unanswered: {}", sizes.len(), waiting.join(", "))
        })?;
        let got = &buf[..n];
        let at = if n >= 8 {
            let seq = u64::from_be_bytes(got[..8].try_into().unwrap());
            outstanding.iter().position(|(s, d)| *s == seq && d.len() >= 8)
        } else {
            outstanding.iter().position(|(_, d)| d.len() < 8)
        };
        let Some(at) = at else {
            return Err(format!("echo #{received} of {n} bytes matches no unanswered datagram"));
        };
        let (seq, sent) = outstanding.remove(at).unwrap();
        if sent != got {
            let first_diff = sent.iter().zip(got).position(|(a, b)| a != b);
            return Err(format!(
                "echo of datagram #{seq} differs: sent {} bytes, got {n} bytes, first differing byte {first_diff:?}",
                sent.len()
            ));
        }
    }
    if !outstanding.is_empty() || next != sizes.len() {
        return Err(format!("{} datagrams unanswered, {} not sent", outstanding.len(), sizes.len() - next));
    }
    Ok(sizes.len())
}

fn start(link: Link, capture: Option<&std::path::Path>) -> KernelPeer {
    KernelPeer::start(link, capture).unwrap_or_else(|e| panic!("cannot start a kernel peer over {link:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------------------------
// 1. ping from the kernel, small and fragmented
// ---------------------------------------------------------------------------------------------------------------

fn ping_without_loss(link: Link) {
    let peer = start(link, None);
    for size in [56, 8000] {
        let summary = peer.ping(100, size, "0.01").unwrap();
        assert_eq!(
            (summary.transmitted, summary.received, summary.loss_percent.as_str()),
            (100, 100, "0%"),
            "ping -s {size} over {link:?}: {summary:?}\ncounters:\n{}",
            peer.counters_dump()
        );
    }
    let c = peer.net().counters();
    let dump = peer.counters_dump();
    assert!(c.get("IcmpInEchos").unwrap() >= 200, "{dump}");
    assert!(c.get("IcmpOutEchoReps").unwrap() >= 200, "{dump}");
    // Each 8000-byte request arrives in 6 fragments and each reply leaves in 6.
    assert!(c.get("IpReasmOKs").unwrap() >= 100, "ustack reassembled no fragmented echo request:\n{dump}");
    assert!(c.get("IpFragOKs").unwrap() >= 100, "ustack fragmented no echo reply:\n{dump}");
    assert!(c.get("IpFragCreates").unwrap() >= 600, "ustack fragmented no echo reply:\n{dump}");
    assert_eq!(c.get("IpReasmFails").unwrap(), 0, "{dump}");
}

#[test]
fn ping_without_loss_tap() {
    if skip_without_kernel_peer("ping_without_loss_tap") {
        return;
    }
    ping_without_loss(Link::Tap);
}

#[test]
fn ping_without_loss_af_packet() {
    if skip_without_kernel_peer("ping_without_loss_af_packet") {
        return;
    }
    ping_without_loss(Link::AfPacket);
}

// ---------------------------------------------------------------------------------------------------------------
// 2. 10,000 UDP datagrams of random sizes through a ustack echo server
// ---------------------------------------------------------------------------------------------------------------

const ECHO_COUNT: usize = 10_000;
const ECHO_MAX_SIZE: usize = 8000;
const ECHO_WINDOW: usize = 8;

fn udp_echo_10k(link: Link, seed: u64) {
    let peer = start(link, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rng = XorShift::new(seed);
    let sizes: Vec<usize> = (0..ECHO_COUNT).map(|_| rng.below_or_eq(ECHO_MAX_SIZE)).collect();
    let (result, echoed) = with_echo_server(&peer, deadline, || {
        let client = kernel_echo_client(&peer);
        echo_exchange(&client, &mut rng, &sizes, ECHO_WINDOW, deadline)
    });
    let dump = peer.counters_dump();
    assert_eq!(result, Ok(ECHO_COUNT), "over {link:?} (seed {seed:#x})\ncounters:\n{dump}");
    assert_eq!(echoed, Ok(ECHO_COUNT as u64), "echo server over {link:?}\ncounters:\n{dump}");
    let c = peer.net().counters();
    assert_eq!(c.get("UdpInDatagrams").unwrap(), ECHO_COUNT as u64, "{dump}");
    assert_eq!(c.get("UdpOutDatagrams").unwrap(), ECHO_COUNT as u64, "{dump}");
    assert_eq!(c.get("UdpRcvbufErrors").unwrap(), 0, "{dump}");
    assert!(c.get("IpReasmOKs").unwrap() > 0 && c.get("IpFragCreates").unwrap() > 0, "{dump}");
}

#[test]
fn udp_echo_10k_random_sizes_tap() {
    if skip_without_kernel_peer("udp_echo_10k_random_sizes_tap") {
        return;
    }
    udp_echo_10k(Link::Tap, 0x5eed_0001);
}

#[test]
fn udp_echo_10k_random_sizes_af_packet() {
    if skip_without_kernel_peer("udp_echo_10k_random_sizes_af_packet") {
        return;
    }
    udp_echo_10k(Link::AfPacket, 0x5eed_0002);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. The kernel sees ustack's port unreachable
// ---------------------------------------------------------------------------------------------------------------

fn kernel_sees_port_unreachable(link: Link) {
    let peer = start(link, None);
    let no_ports = peer.counter("UdpNoPorts");
    let unreachs = peer.counter("IcmpOutDestUnreachs");
    let sock = peer.kernel_udp(0, REPLY_TIMEOUT).unwrap();
    sock.connect(peer.stack_addr(9)).unwrap();
    let mut buf = [0u8; 64];
    // A small datagram, then one ustack must reassemble before it can tell nobody listens.
    for (round, size) in [16usize, 8000].into_iter().enumerate() {
        sock.send(&vec![0xa5; size]).unwrap();
        let err = sock.recv(&mut buf).expect_err("recv on a connected socket to a closed port must fail");
        assert_eq!(
            (err.kind(), err.raw_os_error()),
            (io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)),
            "round {round} ({size} bytes) over {link:?}: {err}\ncounters:\n{}",
            peer.counters_dump()
        );
        let dump = peer.counters_dump();
        assert!(peer.counter("UdpNoPorts") > no_ports + round as u64, "UdpNoPorts did not rise:\n{dump}");
        assert!(peer.counter("IcmpOutDestUnreachs") > unreachs + round as u64, "no port unreachable:\n{dump}");
    }
    assert!(peer.counter("IpReasmOKs") >= 1, "{}", peer.counters_dump());
}

#[test]
fn kernel_sees_port_unreachable_tap() {
    if skip_without_kernel_peer("kernel_sees_port_unreachable_tap") {
        return;
    }
    kernel_sees_port_unreachable(Link::Tap);
}

#[test]
fn kernel_sees_port_unreachable_af_packet() {
    if skip_without_kernel_peer("kernel_sees_port_unreachable_af_packet") {
        return;
    }
    kernel_sees_port_unreachable(Link::AfPacket);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. ustack sends first: ARP, a reply from the kernel, and the kernel's port unreachable
// ---------------------------------------------------------------------------------------------------------------

fn ustack_talks_to_kernel(link: Link) {
    let peer = start(link, None);
    let arp_requests = peer.counter("ArpOutRequests");
    let kernel = peer.kernel_udp(0, REPLY_TIMEOUT).unwrap();
    let kernel_addr = kernel.local_addr().unwrap();
    let sock = UdpSocket::bind(peer.net(), SocketAddr::from(([0, 0, 0, 0], 0))).unwrap();
    sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let local_port = sock.local_addr().unwrap().port();
    let mut rng = XorShift::new(0xa11ce);
    let mut buf = vec![0u8; 65536];
    for (i, size) in [12usize, 1472, 1473, 8000].into_iter().enumerate() {
        let request = datagram(&mut rng, i as u64, size);
        assert_eq!(sock.send_to(&request, kernel_addr).unwrap(), size);
        let (n, from) = kernel.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("kernel got nothing ({size} bytes) over {link:?}: {e}\n{}", peer.counters_dump())
        });
        assert_eq!(&buf[..n], &request[..], "kernel received a different datagram ({size} bytes)");
        assert_eq!(from, peer.stack_addr(local_port), "the datagram's source");
        let reply = datagram(&mut rng, 1000 + i as u64, size);
        assert_eq!(kernel.send_to(&reply, from).unwrap(), size);
        let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("ustack got no reply ({size} bytes) over {link:?}: {e}\n{}", peer.counters_dump())
        });
        assert_eq!(&buf[..n], &reply[..], "ustack received a different reply ({size} bytes)");
        assert_eq!(from, kernel_addr, "the reply's source");
    }
    let dump = peer.counters_dump();
    assert!(peer.counter("ArpOutRequests") > arp_requests, "ustack never ARPed for the kernel:\n{dump}");
    assert!(peer.counter("ArpInReplies") >= 1, "{dump}");
    assert!(peer.counter("IpFragCreates") > 0 && peer.counter("IpReasmOKs") > 0, "{dump}");

    // A connected ustack socket learns from the kernel's port unreachable.
    let closed = peer.closed_kernel_port().unwrap();
    let unreachs = peer.counter("IcmpInDestUnreachs");
    let conn = UdpSocket::bind(peer.net(), SocketAddr::from(([0, 0, 0, 0], 0))).unwrap();
    conn.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    conn.connect(peer.kernel_addr(closed)).unwrap();
    conn.send(b"is anybody there?").unwrap();
    let err = conn.recv(&mut buf).expect_err("recv on a socket connected to a closed kernel port must fail");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ECONNREFUSED),
        "over {link:?}: {err} ({:?})\ncounters:\n{}",
        err.kind(),
        peer.counters_dump()
    );
    assert!(peer.counter("IcmpInDestUnreachs") > unreachs, "{}", peer.counters_dump());
    // The error is reported once; the socket then works again (times out, nothing queued).
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let again = conn.recv(&mut buf).expect_err("nothing was sent back");
    assert_eq!(again.kind(), io::ErrorKind::WouldBlock, "{again}");
}

#[test]
fn ustack_talks_to_kernel_tap() {
    if skip_without_kernel_peer("ustack_talks_to_kernel_tap") {
        return;
    }
    ustack_talks_to_kernel(Link::Tap);
}

#[test]
fn ustack_talks_to_kernel_af_packet() {
    if skip_without_kernel_peer("ustack_talks_to_kernel_af_packet") {
        return;
    }
    ustack_talks_to_kernel(Link::AfPacket);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. The capture of a short session opens cleanly in tshark
// ---------------------------------------------------------------------------------------------------------------

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().expect("run tshark");
    assert!(out.status.success(), "tshark {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn capture_is_clean(link: Link) {
    let file = TempFile::new("kernel-capture", "pcap");
    {
        let peer = start(link, Some(file.path()));
        for size in [56, 8000] {
            let summary = peer.ping(4, size, "0.05").unwrap();
            assert_eq!((summary.transmitted, summary.received), (4, 4), "ping -s {size}: {summary:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let sizes = [0, 1, 7, 8, 100, 1472, 1473, 3000, 8000];
        let (result, echoed) = with_echo_server(&peer, deadline, || {
            let client = kernel_echo_client(&peer);
            echo_exchange(&client, &mut XorShift::new(5), &sizes, 1, deadline)
        });
        assert_eq!(result, Ok(sizes.len()), "{}", peer.counters_dump());
        assert_eq!(echoed, Ok(sizes.len() as u64));
        // Dropping the peer shuts the stack down, which drops the device and flushes the capture.
    }
    let path = file.path().to_str().expect("temp path is UTF-8");
    let count = |filter: &str| tshark(&[&["-n", "-r", path, "-Y", filter], CHECKSUM_PREFS].concat()).lines().count();
    let all = tshark(&["-n", "-r", path]);
    let packets = all.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(packets > 0, "tshark shows no packets in {path}");
    assert!(all.contains("Echo (ping) reply"), "no echo reply in the capture:\n{all}");
    // The session had fragments both ways, and tshark verified checksums (ICMP's always; IP's and UDP's by the
    // preferences), so the next filter looked at them.
    let stack_ip = link.stack_ip().to_string();
    assert!(count(&format!("ip.flags.mf == 1 && ip.src == {stack_ip}")) > 0, "no fragments from ustack");
    assert!(count(&format!("ip.flags.mf == 1 && ip.dst == {stack_ip}")) > 0, "no fragments to ustack");
    for proto in ["ip", "udp", "icmp"] {
        assert!(count(&format!("{proto}.checksum.status == 1")) > 0, "tshark verified no {proto} checksum");
    }
    let flagged = tshark(&[&["-n", "-r", path, "-Y", FLAGGED], CHECKSUM_PREFS].concat());
    assert!(flagged.trim().is_empty(), "tshark flags packets of {packets} over {link:?}:\n{flagged}");
}

/// Turns on the checksum checks tshark leaves off by default (ICMP's it always makes).
const CHECKSUM_PREFS: &[&str] = &["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];

/// Packets tshark finds malformed, flags with a warning or worse, or whose checksum it found bad (status 0).
const FLAGGED: &str = "_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == 0 \
                       || udp.checksum.status == 0 || icmp.checksum.status == 0";

#[test]
fn capture_is_clean_tap() {
    if skip_without_kernel_peer("capture_is_clean_tap") {
        return;
    }
    if !tshark_available() {
        println!("SKIPPED: tshark not installed");
        return;
    }
    capture_is_clean(Link::Tap);
}

#[test]
fn capture_is_clean_af_packet() {
    if skip_without_kernel_peer("capture_is_clean_af_packet") {
        return;
    }
    if !tshark_available() {
        println!("SKIPPED: tshark not installed");
        return;
    }
    capture_is_clean(Link::AfPacket);
}
