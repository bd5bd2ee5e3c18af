//! Real-peer TCP tests: the Linux kernel, in a private network namespace, talks TCP to ustack over a TAP device
//! (kernel 198.18.0.1/24, ustack 198.18.0.2/24; see `ustack_tests::kernel`).
//!
//! - bulk transfers both ways, checked end to end with SHA-256 (`USTACK_BULK_MB`, default below);
//! - many concurrent connections through a ustack echo server (`USTACK_CONC_CONNS`, `USTACK_CONC_BYTES`);
//! - a bulk transfer both ways through netem (loss, reordering, duplication, delay) on the kernel's side (skipped
//!   where the kernel has no netem qdisc), and the same impairment applied in both directions by ustack's own
//!   device (`USTACK_LOSSY_MB`, default `USTACK_BULK_MB`);
//! - connection refused both ways; listen backlog overflow; TIME-WAIT and reuse of the local port after 2*MSL.
//!
//! Every test needs root and `/dev/net/tun` and skips otherwise. Nothing waits forever: sockets have read and
//! write timeouts, accepts poll until a deadline, loops are bounded by byte counts and deadlines. No assertion is
//! about how long something took (the suite shares two cores with other work); the throughput seen is printed.

use std::io::{self, Read, Write};
use std::net::{Shutdown as StdShutdown, SocketAddr, TcpStream as KernelTcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ustack::runtime::{NetStackOptions, TcpListener, TcpStream};
use ustack::StackConfig;
use ustack_netdev::{Device, FrameBatch};
use ustack_tests::kernel::{skip_without_kernel_peer, KernelPeer, Link};
use ustack_tests::kernel_tcp_util::{
    env_usize, kernel_accept, kernel_connect, kernel_listen, ustack_accept, wait_until, Impaired, Impairment, Netem,
    PatternStream, RawTcp,
};

/// Longest a single read or write may block (a stall this long is a failure).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes moved per read or write call in the bulk transfers.
const CHUNK: usize = 64 * 1024;
/// Megabytes per bulk transfer unless `USTACK_BULK_MB` says otherwise.
const DEFAULT_BULK_MB: usize = 200;

fn start() -> KernelPeer {
    KernelPeer::tap(None).unwrap_or_else(|e| panic!("cannot start a kernel peer over a TAP device: {e}"))
}

fn start_with(configure: impl FnOnce(&mut StackConfig)) -> KernelPeer {
    KernelPeer::start_with(Link::Tap, None, configure)
        .unwrap_or_else(|e| panic!("cannot start a kernel peer over a TAP device: {e}"))
}

fn bulk_bytes() -> u64 {
    env_usize("USTACK_BULK_MB", DEFAULT_BULK_MB) as u64 * 1_000_000
}

/// A safety net for a whole transfer, far beyond what it should take: a stalled transfer fails much sooner,
/// on `IO_TIMEOUT`.
fn bulk_deadline(bytes: u64) -> Instant {
    Instant::now() + Duration::from_secs(120 + bytes / 250_000)
}

/// The TCP counters that tell how a transfer over a bad link went, on one line.
fn tcp_summary(peer: &KernelPeer) -> String {
    let names = [
        "TcpRetransSegs",
        "TcpExtTCPTimeouts",
        "TcpExtTCPFastRetrans",
        "TcpExtTCPLossProbes",
        "TcpExtTCPLossProbeRecovery",
        "TcpExtTCPFullUndo",
        "TcpExtTCPDSACKUndo",
        "TcpExtPAWSEstab",
        "TcpExtTCPOFOQueue",
        "TcpExtTCPOFODrop",
    ];
    names.iter().map(|n| format!("{n} {}", peer.counter(n))).collect::<Vec<_>>().join(", ")
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets a flag when dropped, so that a failing test body still stops its helper threads.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What one bulk transfer did.
#[derive(Debug)]
struct Transfer {
    /// Bytes the receiver read before end of file.
    received: u64,
    /// SHA-256 of what the sender sent, by the sender.
    sent_digest: [u8; 32],
    /// SHA-256 of what the receiver read, by the receiver.
    received_digest: [u8; 32],
    /// The digest the sender got back over the connection.
    echoed_digest: [u8; 32],
    seconds: f64,
}

impl Transfer {
    fn report(&self, label: &str) {
        let mb = self.received as f64 / 1e6;
        println!("{label}: {mb:.1} MB in {:.1} s = {:.1} MB/s", self.seconds, mb / self.seconds.max(1e-9));
    }

    fn check(&self, label: &str, bytes: u64, dump: &str) {
        assert_eq!(self.received, bytes, "{label}: the receiver read a different number of bytes\n{dump}");
        assert_eq!(
            hex(&self.received_digest),
            hex(&self.sent_digest),
            "{label}: the data arrived altered (SHA-256 differs)\n{dump}"
        );
        assert_eq!(hex(&self.echoed_digest), hex(&self.sent_digest), "{label}: the digest came back altered\n{dump}");
    }
}

/// Sends `bytes` of the seeded pattern on `stream`, then shuts down writing and reads back the receiver's 32-byte
/// digest (then end of file). Returns (digest of what was sent, digest read back).
fn send_pattern<S>(mut stream: S, bytes: u64, seed: u64, deadline: Instant) -> Result<([u8; 32], [u8; 32]), String>
where
    S: Read + Write + ShutdownWrite,
{
    let mut pattern = PatternStream::new(seed);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < bytes {
        if Instant::now() >= deadline {
            return Err(format!("deadline passed after sending {sent} of {bytes} bytes"));
        }
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        pattern.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n]).map_err(|e| format!("write failed after {sent} of {bytes} bytes: {e}"))?;
        sent += n as u64;
    }
    stream.shutdown_write().map_err(|e| format!("shutdown(SHUT_WR) after sending failed: {e}"))?;
    let mut digest = [0u8; 32];
    stream.read_exact(&mut digest).map_err(|e| format!("reading the receiver's digest failed: {e}"))?;
    let mut rest = [0u8; 16];
    match stream.read(&mut rest) {
        Ok(0) => {}
        Ok(n) => return Err(format!("{n} unexpected bytes after the digest")),
        Err(e) => return Err(format!("no end of file after the digest: {e}")),
    }
    Ok((hash.finalize().into(), digest))
}

/// Reads to end of file (at most `bytes`), hashing, then writes the digest back and shuts down writing.
/// Returns (bytes read, digest).
fn receive_and_digest<S>(mut stream: S, bytes: u64, deadline: Instant) -> Result<(u64, [u8; 32]), String>
where
    S: Read + Write + ShutdownWrite,
{
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    // Each read returns at least one byte, end of file, or an error (after IO_TIMEOUT at most).
    for _ in 0..=bytes {
        if Instant::now() >= deadline {
            return Err(format!("deadline passed after receiving {total} of {bytes} bytes"));
        }
        let n = stream.read(&mut buf).map_err(|e| format!("read failed after {total} of {bytes} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > bytes {
            return Err(format!("received {total} bytes, more than the {bytes} sent"));
        }
        hash.update(&buf[..n]);
    }
    let digest: [u8; 32] = hash.finalize().into();
    stream.write_all(&digest).map_err(|e| format!("writing the digest failed: {e}"))?;
    stream.shutdown_write().map_err(|e| format!("shutdown(SHUT_WR) after the digest failed: {e}"))?;
    Ok((total, digest))
}

/// `shutdown(SHUT_WR)` on either kind of stream.
trait ShutdownWrite {
    fn shutdown_write(&self) -> io::Result<()>;
}

impl ShutdownWrite for KernelTcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(StdShutdown::Write)
    }
}

impl ShutdownWrite for &TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(StdShutdown::Write)
    }
}

impl ShutdownWrite for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(StdShutdown::Write)
    }
}

/// A kernel client sends `bytes` to a ustack server on `port`, which digests them and answers with the digest.
fn kernel_to_ustack(peer: &KernelPeer, port: u16, bytes: u64, seed: u64) -> Transfer {
    let deadline = bulk_deadline(bytes);
    let listener = TcpListener::bind(peer.net(), peer.stack_addr(port)).expect("bind the ustack listener");
    let client = kernel_connect(peer, peer.stack_addr(port), CONNECT_TIMEOUT, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("kernel connect to ustack port {port}: {e}\n{}", peer.counters_dump()));
    let (server, from) = ustack_accept(&listener, Instant::now() + CONNECT_TIMEOUT, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("ustack accept: {e}\n{}", peer.counters_dump()));
    assert_eq!(Some(from), client.local_addr().ok(), "accept() reported a different peer address");
    let started = Instant::now();
    let (sender, receiver) = std::thread::scope(|scope| {
        let sender = scope.spawn(move || send_pattern(client, bytes, seed, deadline));
        let receiver = scope.spawn(move || receive_and_digest(server, bytes, deadline));
        (sender.join().expect("sender thread panicked"), receiver.join().expect("receiver thread panicked"))
    });
    let seconds = started.elapsed().as_secs_f64();
    let dump = peer.counters_dump();
    let (sent_digest, echoed_digest) = sender.unwrap_or_else(|e| panic!("kernel sender: {e}\ncounters:\n{dump}"));
    let (received, received_digest) = receiver.unwrap_or_else(|e| panic!("ustack receiver: {e}\ncounters:\n{dump}"));
    Transfer { received, sent_digest, received_digest, echoed_digest, seconds }
}

/// A ustack client sends `bytes` to a kernel server on `port`, which digests them and answers with the digest.
fn ustack_to_kernel(peer: &KernelPeer, port: u16, bytes: u64, seed: u64) -> Transfer {
    let deadline = bulk_deadline(bytes);
    let listener = kernel_listen(peer, port).expect("bind the kernel listener in the namespace");
    let (sender, receiver, seconds) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            let (stream, _) = kernel_accept(&listener, Instant::now() + CONNECT_TIMEOUT, IO_TIMEOUT)
                .map_err(|e| format!("kernel accept: {e}"))?;
            receive_and_digest(stream, bytes, deadline)
        });
        let client = TcpStream::connect_timeout(peer.net(), peer.kernel_addr(port), CONNECT_TIMEOUT)
            .unwrap_or_else(|e| panic!("ustack connect to kernel port {port}: {e}\n{}", peer.counters_dump()));
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let started = Instant::now();
        let sender = send_pattern(client, bytes, seed, deadline);
        let receiver = receiver.join().expect("receiver thread panicked");
        (sender, receiver, started.elapsed().as_secs_f64())
    });
    let dump = peer.counters_dump();
    let (sent_digest, echoed_digest) = sender.unwrap_or_else(|e| panic!("ustack sender: {e}\ncounters:\n{dump}"));
    let (received, received_digest) = receiver.unwrap_or_else(|e| panic!("kernel receiver: {e}\ncounters:\n{dump}"));
    Transfer { received, sent_digest, received_digest, echoed_digest, seconds }
}

// ---------------------------------------------------------------------------------------------------------------
// 1 and 2. Bulk transfers, SHA-256 end to end
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn bulk_kernel_client_to_ustack_server() {
    if skip_without_kernel_peer("bulk_kernel_client_to_ustack_server") {
        return;
    }
    let peer = start();
    let bytes = bulk_bytes();
    let passive = peer.counter("TcpPassiveOpens");
    let t = kernel_to_ustack(&peer, 5001, bytes, 0xb01c_0001);
    t.report("kernel -> ustack");
    t.check("kernel -> ustack", bytes, &peer.counters_dump());
    assert_eq!(peer.counter("TcpPassiveOpens"), passive + 1, "{}", peer.counters_dump());
}

#[test]
fn bulk_ustack_client_to_kernel_server() {
    if skip_without_kernel_peer("bulk_ustack_client_to_kernel_server") {
        return;
    }
    let peer = start();
    let bytes = bulk_bytes();
    let active = peer.counter("TcpActiveOpens");
    let t = ustack_to_kernel(&peer, 5002, bytes, 0xb01c_0002);
    t.report("ustack -> kernel");
    t.check("ustack -> kernel", bytes, &peer.counters_dump());
    assert_eq!(peer.counter("TcpActiveOpens"), active + 1, "{}", peer.counters_dump());
}

/// Counts the frames longer than the MTU allows that cross a device, received, sent in a batch and sent in
/// pieces (gathered): the super-segments of segmentation offload.
struct SuperSegments<D> {
    inner: D,
    seen: Arc<[AtomicU64; 3]>,
}

impl<D: Device> Device for SuperSegments<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }
    fn hardware_addr(&self) -> Option<[u8; 6]> {
        self.inner.hardware_addr()
    }
    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let before = batch.len();
        let n = self.inner.recv_batch(batch)?;
        let big = (before..batch.len()).filter(|&i| batch.get(i).is_some_and(|f| f.len() > self.mtu() + 14)).count();
        self.seen[0].fetch_add(big as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let big = batch.iter().filter(|f| f.len() > self.mtu() + 14).count();
        self.seen[1].fetch_add(big as u64, Ordering::Relaxed);
        self.inner.send_batch(batch)
    }
    fn pollable_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.pollable_fd()
    }
    fn gathers(&self) -> bool {
        self.inner.gathers()
    }
    fn send_gathered(&mut self, pieces: &[&[u8]]) -> io::Result<bool> {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        if len > self.mtu() + 14 {
            self.seen[2].fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send_gathered(pieces)
    }
}

/// Segmentation and checksum offload over the TAP (`IFF_VNET_HDR`, TSO4): the kernel hands ustack TCP
/// super-segments of up to 64 KiB with checksums left to complete, and cuts ustack's super-segments itself.
/// A bulk transfer each way stays intact (SHA-256), and super-segments really crossed in both directions,
/// ustack's sent from the send buffer in pieces (`Device::send_gathered`), not copied into frames.
#[test]
fn bulk_both_ways_with_tap_segmentation_offload() {
    if skip_without_kernel_peer("bulk_both_ways_with_tap_segmentation_offload") {
        return;
    }
    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let counted = seen.clone();
    let peer = KernelPeer::tap_offloads_wrapped(|_| {}, move |tap| SuperSegments { inner: tap, seen: counted })
        .unwrap_or_else(|e| panic!("cannot start a kernel peer over an offloading TAP: {e}"));
    let bytes = bulk_bytes();
    let t = kernel_to_ustack(&peer, 5011, bytes, 0x0ff1_0001);
    t.report("kernel -> ustack, offloads");
    t.check("kernel -> ustack, offloads", bytes, &peer.counters_dump());
    let t = ustack_to_kernel(&peer, 5012, bytes, 0x0ff1_0002);
    t.report("ustack -> kernel, offloads");
    t.check("ustack -> kernel, offloads", bytes, &peer.counters_dump());
    let [received, copied, gathered] = [0, 1, 2].map(|i| seen[i].load(Ordering::Relaxed));
    println!("super-segments: {received} received, {copied} sent copied into frames, {gathered} sent gathered");
    assert!(received > 0, "the kernel sent no super-segment: offloads are not on");
    assert!(gathered > 0, "ustack sent no super-segment from its send buffer");
    assert_eq!(copied, 0, "a super-segment was copied into a frame although the TAP gathers");
}

/// With `prefer_busy_poll` the driver leaves the TAP to a reader that busy-polls it, and takes it back when the
/// reader gives up spinning and parks. A bulk transfer each way stays intact; a 64-byte request/response
/// exchange keeps going, with pauses far longer than any spin or grace period after which the parked server
/// must still be woken for the next request. (A hand-back that never happened would not hang it: the driver
/// looks at the device again within 150 µs whatever the calls do. That bound, and who rings whom, are what
/// `device_watch`'s unit tests check; this test checks that no byte is lost or reordered on the way.)
#[test]
fn prefer_busy_poll_keeps_bulk_and_request_response_intact() {
    if skip_without_kernel_peer("prefer_busy_poll_keeps_bulk_and_request_response_intact") {
        return;
    }
    let options = NetStackOptions { prefer_busy_poll: true, ..NetStackOptions::default() };
    let peer = KernelPeer::tap_offloads_with_options(options)
        .unwrap_or_else(|e| panic!("cannot start a kernel peer over an offloading TAP: {e}"));
    let bytes = bulk_bytes();
    let t = kernel_to_ustack(&peer, 5014, bytes, 0xb05e_0001);
    t.report("kernel -> ustack, prefer busy poll");
    t.check("kernel -> ustack, prefer busy poll", bytes, &peer.counters_dump());
    let t = ustack_to_kernel(&peer, 5015, bytes, 0xb05e_0002);
    t.report("ustack -> kernel, prefer busy poll");
    t.check("ustack -> kernel, prefer busy poll", bytes, &peer.counters_dump());

    const MESSAGES: usize = 2_000;
    const MESSAGE: usize = 64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let listener = TcpListener::bind(peer.net(), peer.stack_addr(5016)).expect("bind the ustack listener");
    let client = kernel_connect(&peer, peer.stack_addr(5016), CONNECT_TIMEOUT, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("kernel connect: {e}\n{}", peer.counters_dump()));
    client.set_nodelay(true).expect("TCP_NODELAY");
    let (server, _) = ustack_accept(&listener, Instant::now() + CONNECT_TIMEOUT, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("ustack accept: {e}\n{}", peer.counters_dump()));
    server.set_nodelay(true).expect("TCP_NODELAY");
    let (echoed, exchanged) = std::thread::scope(|scope| {
        let echo = scope.spawn(move || echo_until_eof(server, MESSAGES * MESSAGE, deadline));
        let mut pattern = PatternStream::new(0xb05e_0003);
        let (mut out, mut back) = ([0u8; MESSAGE], [0u8; MESSAGE]);
        let mut exchanged = 0;
        for i in 0..MESSAGES {
            if Instant::now() >= deadline {
                break;
            }
            if i % 500 == 499 {
                // Long enough for the server to stop spinning and park.
                std::thread::sleep(Duration::from_millis(20));
            }
            pattern.fill(&mut out);
            (&client).write_all(&out).unwrap_or_else(|e| panic!("request {i}: {e}"));
            (&client).read_exact(&mut back).unwrap_or_else(|e| panic!("reply {i}: {e}"));
            assert_eq!(out, back, "reply {i} differs from its request");
            exchanged += 1;
        }
        client.shutdown(StdShutdown::Write).expect("shutdown(SHUT_WR)");
        (echo.join().expect("echo thread panicked"), exchanged)
    });
    assert_eq!(exchanged, MESSAGES, "the exchange stopped at the deadline");
    assert_eq!(echoed, Ok(MESSAGES * MESSAGE), "the server echoed every byte, then saw end of file");
}

/// The kernel's `Tcp:` counter `name` in the peer's namespace (from `/proc/net/snmp`, read inside it).
fn kernel_tcp_counter(peer: &KernelPeer, name: &str) -> u64 {
    let out = peer.namespace().exec("cat", &["/proc/net/snmp"]).expect("read /proc/net/snmp in the namespace");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or_default(), tcp.next().unwrap_or_default());
    let i = names.split_whitespace().position(|n| n == name).unwrap_or_else(|| panic!("no Tcp counter {name}"));
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no value for {name}"))
}

/// The benchmark target "receiving over AF_PACKET, kernel retransmissions < 1% of segments": the socket's
/// receive queue must hold more than the window ustack offers, or a burst at veth speed overflows it and
/// every dropped frame is a retransmission for the kernel.
#[test]
fn bulk_over_af_packet_costs_the_kernel_few_retransmissions() {
    if skip_without_kernel_peer("bulk_over_af_packet_costs_the_kernel_few_retransmissions") {
        return;
    }
    let peer = KernelPeer::af_packet(None).unwrap_or_else(|e| panic!("cannot start a kernel peer over AF_PACKET: {e}"));
    let bytes = bulk_bytes();
    let (sent0, retrans0) = (kernel_tcp_counter(&peer, "OutSegs"), kernel_tcp_counter(&peer, "RetransSegs"));
    let t = kernel_to_ustack(&peer, 5021, bytes, 0xaf_0001);
    t.report("kernel -> ustack over AF_PACKET");
    t.check("kernel -> ustack over AF_PACKET", bytes, &peer.counters_dump());
    let sent = kernel_tcp_counter(&peer, "OutSegs") - sent0;
    let retrans = kernel_tcp_counter(&peer, "RetransSegs") - retrans0;
    println!("kernel: {sent} segments sent, {retrans} retransmitted");
    assert!(retrans * 100 < sent, "{retrans} of {sent} segments retransmitted\n{}", peer.counters_dump());
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Many concurrent connections through a ustack echo server
// ---------------------------------------------------------------------------------------------------------------

/// Bytes a client writes before it reads their echo (small enough that the echo always fits in the buffers on
/// the way back, so the lock-step client cannot deadlock against the echo server).
const ECHO_STEP: usize = 32 * 1024;

/// Echoes what it reads until end of file (at most `expect` bytes), then closes.
fn echo_until_eof(stream: TcpStream, expect: usize, deadline: Instant) -> Result<usize, String> {
    let mut buf = vec![0u8; ECHO_STEP];
    let mut total = 0usize;
    for _ in 0..=expect {
        if Instant::now() >= deadline {
            return Err(format!("deadline passed after echoing {total} bytes"));
        }
        let n = stream.read_bytes(&mut buf).map_err(|e| format!("read failed after {total} bytes: {e}"))?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        if total > expect {
            return Err(format!("read {total} bytes, more than the {expect} expected"));
        }
        (&stream).write_all(&buf[..n]).map_err(|e| format!("write failed after {total} bytes: {e}"))?;
    }
    Err(format!("no end of file after {total} bytes"))
}

/// Writes `bytes` of connection `index`'s pattern in steps, reading each step's echo back before the next and
/// comparing; then shuts down writing and expects end of file.
fn echo_client(stream: KernelTcpStream, index: usize, bytes: usize, deadline: Instant) -> Result<(), String> {
    let mut pattern = PatternStream::new(0xec40_0000 + index as u64);
    let mut out = vec![0u8; ECHO_STEP];
    let mut back = vec![0u8; ECHO_STEP];
    let mut done = 0usize;
    while done < bytes {
        if Instant::now() >= deadline {
            return Err(format!("deadline passed after {done} of {bytes} bytes"));
        }
        let n = (bytes - done).min(ECHO_STEP);
        pattern.fill(&mut out[..n]);
        (&stream).write_all(&out[..n]).map_err(|e| format!("write at {done}: {e}"))?;
        (&stream).read_exact(&mut back[..n]).map_err(|e| format!("reading the echo at {done}: {e}"))?;
        if let Some(at) = out[..n].iter().zip(&back[..n]).position(|(a, b)| a != b) {
            return Err(format!("echo differs at byte {}", done + at));
        }
        done += n;
    }
    stream.shutdown(StdShutdown::Write).map_err(|e| format!("shutdown(SHUT_WR): {e}"))?;
    match (&stream).read(&mut back) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("{n} bytes after the echo, expected end of file")),
        Err(e) => Err(format!("no end of file after the echo: {e}")),
    }
}

#[test]
fn many_concurrent_connections_echo() {
    if skip_without_kernel_peer("many_concurrent_connections_echo") {
        return;
    }
    let conns = env_usize("USTACK_CONC_CONNS", 500);
    let bytes = env_usize("USTACK_CONC_BYTES", 1 << 20);
    let peer = start();
    let port = 5003;
    let passive = peer.counter("TcpPassiveOpens");
    let listener =
        TcpListener::bind_with_backlog(peer.net(), peer.stack_addr(port), 1024).expect("bind the ustack listener");
    let deadline = Instant::now() + Duration::from_secs(300 + (conns * bytes) as u64 / 500_000);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (served, clients) = std::thread::scope(|scope| {
        let _stop_helpers = StopOnDrop(&stop);
        // ustack: an acceptor that gives each connection its own echo thread.
        let acceptor = scope.spawn(|| {
            let mut echoes = Vec::new();
            for _ in 0..conns * 100 {
                if echoes.len() == conns || stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    break;
                }
                match ustack_accept(&listener, Instant::now() + Duration::from_millis(500), IO_TIMEOUT) {
                    Ok((stream, _)) => {
                        let echo = std::thread::Builder::new()
                            .stack_size(256 * 1024)
                            .spawn_scoped(scope, move || echo_until_eof(stream, bytes, deadline))
                            .expect("spawn an echo thread");
                        echoes.push(echo);
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(format!("accept failed after {} connections: {e}", echoes.len())),
                }
            }
            let accepted = echoes.len();
            let results: Vec<Result<usize, String>> =
                echoes.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("echo thread panicked".into()))).collect();
            Ok((accepted, results))
        });
        // The kernel: every connection is opened first (all then stay open together), then each runs in its
        // own thread.
        let addr = peer.stack_addr(port);
        let opened = peer.namespace().enter(|| {
            let mut streams = Vec::with_capacity(conns);
            for i in 0..conns {
                let s = KernelTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                    .map_err(|e| format!("kernel connect #{i} of {conns}: {e}"))?;
                streams.push(s);
            }
            Ok::<_, String>(streams)
        });
        let streams = match opened {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => panic!("{e}\ncounters:\n{}", peer.counters_dump()),
            Err(e) => panic!("cannot enter the namespace: {e}"),
        };
        println!("{conns} kernel connections open after {:.1} s", started.elapsed().as_secs_f64());
        let clients: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || echo_client(s, i, bytes, deadline))
                    .expect("spawn a client thread")
            })
            .collect();
        let clients: Vec<Result<(), String>> =
            clients.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("client thread panicked".into()))).collect();
        (acceptor.join().expect("acceptor panicked"), clients)
    });
    let seconds = started.elapsed().as_secs_f64();
    let dump = peer.counters_dump();
    let failed: Vec<String> =
        clients.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| format!("#{i}: {e}"))).collect();
    assert!(failed.is_empty(), "{} of {conns} clients failed:\n{}\ncounters:\n{dump}", failed.len(), failed.join("\n"));
    let (accepted, served) = served.unwrap_or_else(|e| panic!("ustack acceptor: {e}\ncounters:\n{dump}"));
    assert_eq!(accepted, conns, "{dump}");
    let bad: Vec<String> = served
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref() != Ok(&bytes))
        .map(|(i, r)| format!("echo #{i}: {r:?}"))
        .collect();
    assert!(bad.is_empty(), "echo servers that did not echo {bytes} bytes:\n{}\n{dump}", bad.join("\n"));
    assert_eq!(peer.counter("TcpPassiveOpens"), passive + conns as u64, "{dump}");
    let mb = (conns * bytes * 2) as f64 / 1e6;
    println!(
        "{conns} concurrent connections x {bytes} bytes echoed: {mb:.1} MB through ustack in {seconds:.1} s = {:.1} MB/s",
        mb / seconds
    );
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Bulk transfers through netem
// ---------------------------------------------------------------------------------------------------------------

const NETEM: &[&str] = &["loss", "2%", "reorder", "10%", "50%", "duplicate", "1%", "delay", "1ms"];

/// netem on the kernel's side of the TAP: what the kernel sends is lost, reordered, duplicated and delayed.
/// Kernels without `sch_netem` skip this test; the next one impairs both directions inside ustack's device.
#[test]
fn bulk_through_netem_on_kernel_side() {
    if skip_without_kernel_peer("bulk_through_netem_on_kernel_side") {
        return;
    }
    let peer = start();
    let bytes = bulk_bytes();
    let netem = match Netem::add(&peer, "tap0", NETEM) {
        Ok(netem) => netem,
        Err(e) if e.to_string().contains("qdisc kind is unknown") => {
            println!("SKIPPED: bulk_through_netem_on_kernel_side: this kernel has no netem qdisc ({e})");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // The kernel's data is lost, reordered and duplicated on its way to ustack.
    let ofo = peer.counter("TcpExtTCPOFOQueue");
    let t = kernel_to_ustack(&peer, 5004, bytes, 0xb01c_0004);
    t.report("kernel -> ustack through netem");
    t.check("kernel -> ustack through netem", bytes, &format!("{}\n{}", peer.counters_dump(), netem.stats()));
    assert!(
        peer.counter("TcpExtTCPOFOQueue") > ofo,
        "ustack queued nothing out of order: did netem act?\n{}\n{}",
        peer.counters_dump(),
        netem.stats()
    );
    // ustack's data goes out clean, its acknowledgments come back lost, reordered and duplicated.
    let t = ustack_to_kernel(&peer, 5005, bytes, 0xb01c_0005);
    t.report("ustack -> kernel through netem (on the ACKs)");
    t.check("ustack -> kernel through netem", bytes, &format!("{}\n{}", peer.counters_dump(), netem.stats()));
    println!("netem:\n{}", netem.stats());
}

/// Receive-buffer autotuning with the kernel as the sender, over a 20 ms round trip (ustack's device holds
/// each frame 10 ms each way; this machine's kernel may lack netem). A window fixed at the default 256 KiB
/// allows at most 13 MB/s; ustack's buffer, and the window it offers, must grow with what its application
/// reads per round trip. The second transfer caps autotuning at the default size, for comparison
/// (throughputs are printed, not asserted: the machine's speed varies).
#[test]
fn the_receive_buffer_grows_for_a_kernel_sender_on_a_20ms_path() {
    if skip_without_kernel_peer("the_receive_buffer_grows_for_a_kernel_sender_on_a_20ms_path") {
        return;
    }
    const DEFAULT: i32 = 262_144;
    let bytes = 24_000_000;
    let delay = Impairment {
        loss: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
        delay: Duration::from_millis(10),
        limit: 100_000,
        seed: 0x20,
    };
    for cap in [6 << 20, DEFAULT as usize] {
        let mut stats = None;
        let peer = KernelPeer::tap_wrapped(
            None,
            |c| c.tcp.rcvbuf_autotune_max = cap,
            |tap| {
                let (dev, s) = Impaired::new(tap, delay.clone());
                stats = Some(s);
                dev
            },
        )
        .unwrap_or_else(|e| panic!("cannot start a kernel peer over a delaying TAP device: {e}"));
        let stats = stats.expect("the device was built");
        let deadline = bulk_deadline(bytes);
        let listener = TcpListener::bind(peer.net(), peer.stack_addr(5010)).expect("bind the ustack listener");
        let client = kernel_connect(&peer, peer.stack_addr(5010), CONNECT_TIMEOUT, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("kernel connect: {e}\n{}", peer.counters_dump()));
        let (server, _) = ustack_accept(&listener, Instant::now() + CONNECT_TIMEOUT, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("ustack accept: {e}\n{}", peer.counters_dump()));
        let started = Instant::now();
        let (sent, received) = std::thread::scope(|scope| {
            let sender = scope.spawn(move || send_pattern(client, bytes, 0xb01c_0010, deadline));
            let received = receive_and_digest(&server, bytes, deadline);
            (sender.join().expect("sender thread panicked"), received)
        });
        let seconds = started.elapsed().as_secs_f64();
        let dump = format!("{}\n{}", peer.counters_dump(), stats.summary());
        let (sent_digest, echoed_digest) = sent.unwrap_or_else(|e| panic!("kernel sender: {e}\n{dump}"));
        let (received, received_digest) = received.unwrap_or_else(|e| panic!("ustack receiver: {e}\n{dump}"));
        let t = Transfer { received, sent_digest, received_digest, echoed_digest, seconds };
        let rcvbuf = peer.net().with_stack(|s| s.getsockopt(server.fd(), ustack::SockOpt::RcvBuf)).unwrap();
        t.report(&format!("kernel -> ustack, 20 ms RTT, autotuning up to {cap} bytes (SO_RCVBUF now {rcvbuf})"));
        t.check("kernel -> ustack, 20 ms RTT", bytes, &dump);
        if cap > DEFAULT as usize {
            assert!(rcvbuf >= 4 * DEFAULT, "the receive buffer did not grow: {rcvbuf}\n{dump}");
        } else {
            assert_eq!(rcvbuf, DEFAULT, "capped at the default\n{dump}");
        }
    }
}

/// The netem parameters applied inside ustack's device, in both directions: ustack's own data and ACKs are
/// lost, reordered, duplicated and delayed too, which netem on the kernel's egress cannot do.
#[test]
fn bulk_through_lossy_reordering_link() {
    if skip_without_kernel_peer("bulk_through_lossy_reordering_link") {
        return;
    }
    let impairment = Impairment {
        loss: 0.02,
        reorder: 0.10,
        duplicate: 0.01,
        delay: Duration::from_millis(1),
        limit: 1000,
        seed: 0x10557,
    };
    let mut stats = None;
    let peer = KernelPeer::tap_wrapped(
        None,
        |_| {},
        |tap| {
            let (dev, s) = Impaired::new(tap, impairment);
            stats = Some(s);
            dev
        },
    )
    .unwrap_or_else(|e| panic!("cannot start a kernel peer over an impaired TAP device: {e}"));
    let stats = stats.expect("the device was built");
    let bytes = env_usize("USTACK_LOSSY_MB", env_usize("USTACK_BULK_MB", DEFAULT_BULK_MB)) as u64 * 1_000_000;
    let dump = || format!("{}\n{}", peer.counters_dump(), stats.summary());

    let ofo = peer.counter("TcpExtTCPOFOQueue");
    let t = kernel_to_ustack(&peer, 5004, bytes, 0xb01c_0014);
    t.report("kernel -> ustack, impaired both ways");
    // The namespace inherits the host's default: with BBR, which does not take loss for congestion, the
    // kernel's time is no yardstick for ustack's CUBIC (with CUBIC the kernel took 20-30 s for 50 MB here).
    let kernel_cc = peer.namespace().enter(|| std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control"));
    println!(
        "  the kernel sender's congestion control: {}",
        kernel_cc.ok().and_then(Result::ok).unwrap_or_default().trim()
    );
    println!("  ustack: {}", tcp_summary(&peer));
    t.check("kernel -> ustack, impaired", bytes, &dump());
    assert!(peer.counter("TcpExtTCPOFOQueue") > ofo, "ustack queued nothing out of order\n{}", dump());

    let retrans = peer.counter("TcpRetransSegs");
    let t = ustack_to_kernel(&peer, 5005, bytes, 0xb01c_0015);
    t.report("ustack -> kernel, impaired both ways");
    println!("  ustack (both transfers): {}", tcp_summary(&peer));
    t.check("ustack -> kernel, impaired", bytes, &dump());
    assert!(peer.counter("TcpRetransSegs") > retrans, "ustack lost data but retransmitted nothing\n{}", dump());
    // The link did what it claims, both ways.
    for dir in 0..2 {
        assert!(stats.lost(dir) > 0 && stats.reordered(dir) > 0 && stats.duplicated(dir) > 0, "{}", dump());
    }
    println!("impaired link:\n{}", stats.summary());
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Connection refused, both ways
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn connect_to_closed_port_is_refused() {
    if skip_without_kernel_peer("connect_to_closed_port_is_refused") {
        return;
    }
    let peer = start();
    // The kernel connects to a ustack port nobody listens on: ustack answers the SYN with RST.
    let rsts = peer.counter("TcpOutRsts");
    let err = kernel_connect(&peer, peer.stack_addr(5999), CONNECT_TIMEOUT, IO_TIMEOUT)
        .expect_err("a kernel connect to a ustack port without a listener must fail");
    assert_eq!(
        (err.kind(), err.raw_os_error()),
        (io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)),
        "kernel -> ustack closed port: {err}\n{}",
        peer.counters_dump()
    );
    assert!(peer.counter("TcpOutRsts") > rsts, "ustack sent no RST:\n{}", peer.counters_dump());

    // ustack connects to a kernel port nobody listens on (bound once, then closed again).
    let closed = kernel_listen(&peer, 0).unwrap().local_addr().unwrap().port();
    let fails = peer.counter("TcpAttemptFails");
    let err = TcpStream::connect_timeout(peer.net(), peer.kernel_addr(closed), CONNECT_TIMEOUT)
        .expect_err("a ustack connect to a closed kernel port must fail");
    assert_eq!(
        (err.kind(), err.raw_os_error()),
        (io::ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED)),
        "ustack -> kernel closed port {closed}: {err}\n{}",
        peer.counters_dump()
    );
    assert!(peer.counter("TcpAttemptFails") > fails, "{}", peer.counters_dump());
    // The stack is not left in a bad state: a listener on the same ports now works both ways.
    let t = kernel_to_ustack(&peer, 5999, 100_000, 1);
    t.check("kernel -> ustack after a refused connect", 100_000, &peer.counters_dump());
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Listen backlog overflow
// ---------------------------------------------------------------------------------------------------------------

const BACKLOG: usize = 2;
const OVERFLOW_CLIENTS: usize = 8;
const REQUEST_LEN: usize = 1000;

fn request(index: usize) -> Vec<u8> {
    let mut r = vec![0u8; REQUEST_LEN];
    PatternStream::new(0xbac0_0000 + index as u64).fill(&mut r);
    r[..8].copy_from_slice(&(index as u64).to_be_bytes());
    r
}

/// A kernel client: connect (counting completions), send its request, read the echo and compare.
fn backlog_client(peer: &KernelPeer, index: usize, connected: &AtomicUsize) -> Result<(), String> {
    // Long enough for Linux's SYN retransmissions (1, 3, 7, 15, 31 s ...) to get through after accept().
    let stream = kernel_connect(peer, peer.stack_addr(5006), Duration::from_secs(100), Duration::from_secs(100))
        .map_err(|e| format!("client #{index}: connect: {e}"))?;
    connected.fetch_add(1, Ordering::SeqCst);
    let req = request(index);
    (&stream).write_all(&req).map_err(|e| format!("client #{index}: write: {e}"))?;
    let mut back = vec![0u8; REQUEST_LEN];
    (&stream).read_exact(&mut back).map_err(|e| format!("client #{index}: reading the echo: {e}"))?;
    if back != req {
        return Err(format!("client #{index}: the echo differs"));
    }
    Ok(())
}

#[test]
fn listen_backlog_overflow() {
    if skip_without_kernel_peer("listen_backlog_overflow") {
        return;
    }
    let peer = start();
    let net = peer.net();
    let overflows = peer.counter("TcpExtListenOverflows");
    let passive = peer.counter("TcpPassiveOpens");
    let connected = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(150);
    let (results, served) = std::thread::scope(|scope| {
        // Made inside the scope so that a failed assertion closes it before the scope waits for the clients:
        // the kernel's connects and reads then end at once with a reset instead of at their timeouts.
        let listener = TcpListener::bind_with_backlog(net, peer.stack_addr(5006), BACKLOG as i32).unwrap();
        let clients: Vec<_> = (0..OVERFLOW_CLIENTS)
            .map(|i| {
                let (peer, connected) = (&peer, &connected);
                scope.spawn(move || backlog_client(peer, i, connected))
            })
            .collect();
        // Nobody accepts: the accept queue fills (Linux's rule, and ustack's: it is full with more than `backlog`
        // waiting, so backlog + 1 get in) and further handshakes overflow.
        let rose =
            wait_until(Instant::now() + Duration::from_secs(30), || peer.counter("TcpExtListenOverflows") > overflows);
        assert!(rose, "TcpExtListenOverflows never rose with {OVERFLOW_CLIENTS} clients:\n{}", peer.counters_dump());
        // The connections in the accept queue completed their connect() in the kernel (the thread may take a
        // moment to count it).
        assert!(
            wait_until(Instant::now() + Duration::from_secs(10), || connected.load(Ordering::SeqCst) > BACKLOG),
            "only {} kernel connects completed with a full accept queue",
            connected.load(Ordering::SeqCst)
        );
        // From the kernel's side a connect completes on the SYN-ACK, so besides the accept queue those still in
        // the SYN queue (at most `backlog`, each with its final ACK dropped while the queue was full) may count
        // as connected; nothing else can have had a SYN-ACK.
        let kernel_connected = connected.load(Ordering::SeqCst);
        println!(
            "backlog {BACKLOG}: {kernel_connected} of {OVERFLOW_CLIENTS} kernel connects done before any accept(), \
             TcpExtListenOverflows +{}",
            peer.counter("TcpExtListenOverflows") - overflows
        );
        assert!(
            kernel_connected <= 2 * BACKLOG + 1,
            "{kernel_connected} kernel connects completed before any accept(); at most backlog + 1 queued plus \
             backlog half-open can have been answered\n{}",
            peer.counters_dump()
        );
        // Take the whole accept queue at one instant: exactly backlog + 1 connections (it overflowed, so it was
        // full, and nothing leaves it without accept()).
        let first = RawTcp::drain_accept_queue(net, listener.fd(), OVERFLOW_CLIENTS);
        assert_eq!(
            first.len(),
            BACKLOG + 1,
            "the accept queue held {} connections; a listener with backlog {BACKLOG} queues {} (with {kernel_connected} \
             kernel connects done)\n{}",
            first.len(),
            BACKLOG + 1,
            peer.counters_dump()
        );
        let mut served = 0usize;
        let serve = |conn: &RawTcp| -> Result<(), String> {
            let req = conn.read_exact(REQUEST_LEN, deadline).map_err(|e| format!("server read: {e}"))?;
            let index = u64::from_be_bytes(req[..8].try_into().unwrap()) as usize;
            if index >= OVERFLOW_CLIENTS || req != request(index) {
                return Err(format!("request from client #{index} is corrupt"));
            }
            conn.send_all(&req, deadline).map_err(|e| format!("server write: {e}"))
        };
        for (conn, _) in &first {
            serve(conn).unwrap_or_else(|e| panic!("{e}\n{}", peer.counters_dump()));
            served += 1;
        }
        // The rest complete once there is room: the kernel retransmits its SYN, or ustack its SYN-ACK and the
        // kernel answers with the ACK that was dropped.
        let mut later = Vec::new();
        for _ in 0..OVERFLOW_CLIENTS - first.len() {
            let (stream, _) = ustack_accept(&listener, deadline, IO_TIMEOUT).unwrap_or_else(|e| {
                panic!("accept after {served} connections: {e}\n{}", peer.counters_dump());
            });
            let mut req = vec![0u8; REQUEST_LEN];
            (&stream).read_exact(&mut req).unwrap_or_else(|e| panic!("server read: {e}\n{}", peer.counters_dump()));
            let index = u64::from_be_bytes(req[..8].try_into().unwrap()) as usize;
            assert!(index < OVERFLOW_CLIENTS && req == request(index), "request from client #{index} is corrupt");
            (&stream).write_all(&req).unwrap();
            served += 1;
            later.push(stream);
        }
        let results: Vec<Result<(), String>> = clients.into_iter().map(|h| h.join().unwrap()).collect();
        drop(later);
        drop(first);
        (results, served)
    });
    let dump = peer.counters_dump();
    for r in &results {
        assert_eq!(r, &Ok(()), "{dump}");
    }
    assert_eq!(served, OVERFLOW_CLIENTS);
    assert_eq!(peer.counter("TcpPassiveOpens"), passive + OVERFLOW_CLIENTS as u64, "{dump}");
}

// ---------------------------------------------------------------------------------------------------------------
// 7. TIME-WAIT, and the local port free again after 2*MSL
// ---------------------------------------------------------------------------------------------------------------

const MSL: Duration = Duration::from_secs(2);

/// One exchange from a bound ustack socket: connect, send a greeting, shut down writing first (the active
/// close), read the kernel's answer to end of file. Returns the answer.
fn exchange_from(raw: &RawTcp, remote: SocketAddr, deadline: Instant) -> io::Result<Vec<u8>> {
    raw.connect(remote, deadline)?;
    raw.send_all(b"hello from a fixed port", deadline)?;
    raw.shutdown_write()?;
    raw.read_to_eof(1024, deadline)
}

/// The kernel side: answers each connection's request (read to end of file) with "got N bytes", then closes.
/// Gives up at `deadline`, or soon after `stop` is set.
fn answer_requests(
    listener: &std::net::TcpListener,
    count: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<SocketAddr>, String> {
    let mut peers = Vec::new();
    // Each round accepts one connection or waits half a second for one.
    let rounds = count + 2 * deadline.saturating_duration_since(Instant::now()).as_secs() as usize + 2;
    for _ in 0..rounds {
        if peers.len() == count {
            break;
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return Err(format!("only {} of {count} connections reached the kernel", peers.len()));
        }
        let (mut s, from) = match kernel_accept(listener, Instant::now() + Duration::from_millis(500), IO_TIMEOUT) {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(format!("kernel accept: {e}")),
        };
        let mut req = Vec::new();
        (&s).take(4096).read_to_end(&mut req).map_err(|e| format!("kernel read: {e}"))?;
        s.write_all(format!("got {} bytes", req.len()).as_bytes()).map_err(|e| format!("kernel write: {e}"))?;
        peers.push(from);
    }
    if peers.len() < count {
        return Err(format!("only {} of {count} connections reached the kernel", peers.len()));
    }
    Ok(peers)
}

#[test]
fn time_wait_then_port_reuse_after_2msl() {
    if skip_without_kernel_peer("time_wait_then_port_reuse_after_2msl") {
        return;
    }
    let peer = start_with(|c| c.tcp.msl = MSL);
    let net = peer.net();
    let kernel = kernel_listen(&peer, 5007).unwrap();
    let remote = peer.kernel_addr(5007);
    let local = peer.stack_addr(40007);
    let deadline = Instant::now() + Duration::from_secs(60);
    let tw = peer.counter("TcpExtTW");
    let expected = b"got 23 bytes".to_vec();
    let stop = AtomicBool::new(false);
    let (kernel_side, second_local) = std::thread::scope(|scope| {
        let _stop_helpers = StopOnDrop(&stop);
        let kernel_side = scope.spawn(|| answer_requests(&kernel, 2, deadline, &stop));
        // First connection from the fixed port (with SO_REUSEADDR, which its TIME-WAIT entry inherits); ustack
        // closes first and so keeps TIME-WAIT.
        {
            let raw = RawTcp::socket(net, true).unwrap();
            raw.bind(local).unwrap();
            let answer = exchange_from(&raw, remote, deadline)
                .unwrap_or_else(|e| panic!("first exchange: {e}\n{}", peer.counters_dump()));
            assert_eq!(answer, expected);
        }
        let closed_at = Instant::now();
        let in_time_wait = || net.sockets_snapshot().iter().any(|row| row.state == "TIME-WAIT");
        assert!(
            wait_until(Instant::now() + Duration::from_secs(10), in_time_wait),
            "no TIME-WAIT entry after ustack closed first:\n{}",
            peer.counters_dump()
        );
        // During TIME-WAIT the port is held, as on Linux: a bind without SO_REUSEADDR fails with EADDRINUSE, one
        // with SO_REUSEADDR succeeds (both sockets set it). Only judged if the calls certainly ran inside 2*MSL.
        let during = {
            let plain = RawTcp::socket(net, false).unwrap();
            let reuse = RawTcp::socket(net, true).unwrap();
            (plain.bind(local).map_err(|e| e.raw_os_error()), reuse.bind(local).map_err(|e| e.raw_os_error()))
        };
        if closed_at.elapsed() < MSL * 2 {
            assert_eq!(
                during,
                (Err(Some(libc::EADDRINUSE)), Ok(())),
                "(bind, bind with SO_REUSEADDR) to the port of a TIME-WAIT entry\n{}",
                peer.counters_dump()
            );
        } else {
            println!("NOTE: the TIME-WAIT bind checks ran too late to judge (machine busy); skipped them");
        }
        // After 2*MSL the entry is gone: a plain bind to the port succeeds again and the same four-tuple
        // connects.
        let raw = {
            let mut bound = None;
            let ok = wait_until(Instant::now() + MSL * 2 + Duration::from_secs(30), || {
                let raw = RawTcp::socket(net, false).unwrap();
                if raw.bind(local).is_ok() {
                    bound = Some(raw);
                    true
                } else {
                    false
                }
            });
            assert!(ok, "the port stayed taken long after 2*MSL:\n{}", peer.counters_dump());
            bound.unwrap()
        };
        let answer = exchange_from(&raw, remote, deadline)
            .unwrap_or_else(|e| panic!("second exchange from the same port: {e}\n{}", peer.counters_dump()));
        assert_eq!(answer, expected);
        let second_local = raw.local_addr().unwrap();
        (kernel_side.join().unwrap(), second_local)
    });
    let kernel_peers = kernel_side.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kernel_peers, vec![local, local], "both connections came from the fixed local port");
    assert_eq!(second_local, local);
    assert!(
        wait_until(Instant::now() + MSL * 2 + Duration::from_secs(10), || peer.counter("TcpExtTW") >= tw + 2),
        "the second close left no TIME-WAIT:\n{}",
        peer.counters_dump()
    );
}
