//! Scenarios 3 and 4 (accepts): against the Linux kernel, each system under test in its own network namespace.
//!
//! The kernel peer (the traffic generator) always lives in a namespace at 198.18.0.1; the system under test
//! answers at 198.18.0.2:
//! - ustack's `NetStack` runtime on a TAP (driver thread + blocking handles, one thread per service);
//! - ustack's sans-IO `Stack` in a single-threaded loop on a TAP;
//! - smoltcp in the same loop on a TAP;
//! - the kernel itself at the far end of a veth pair into a second namespace (the ceiling), with offloads as
//!   they come and with them off (every frame 1500 bytes, as on the TAP).
//!
//! Services of every system under test: 5001 reads to end of stream then closes (kernel→stack bulk), 5003
//! echoes (request/response), 5004 accepts, waits for the client's FIN and closes (accept rate); on command it connects to the kernel's
//! 198.18.0.1:5002 and sends N bytes (stack→kernel bulk).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as KListener, TcpStream as KStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as WallInstant};

use ustack::runtime::{NetStack, NetStackOptions, TcpListener as UListener, TcpStream as UStream};
use ustack::wire::ethernet::MacAddr;
use ustack::{Instant, StackConfig};
use ustack_netdev::namespace::{kernel_peer_available, Namespace};
use ustack_netdev::packet_socket::PacketSocket;
use ustack_netdev::tap::Tap;
use ustack_netdev::wait::{wait_readable, EventFd};
use ustack_netdev::{Device, FrameBatch};

use crate::node::{ConnOpts, Node, SmolNode, UstackNode};
use crate::procfs::named_threads_cpu_ns;
use crate::report::{summarize, Report, Row};
use crate::Plan;

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SUT_MAC: [u8; 6] = [0x02, 0x75, 0x73, 0x00, 0x00, 0x02];
const SINK_PORT: u16 = 5001;
const SOURCE_PORT: u16 = 5002;
const ECHO_PORT: u16 = 5003;
const ACCEPT_PORT: u16 = 5004;
/// Ethernet + IPv4 + TCP with timestamps: what a full-sized data frame carries besides payload.
const FRAME: usize = 1514;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The congestion control of every kernel socket that sends bulk data here: Linux's default. A namespace
/// inherits the host's default, which on some hosts (this VM's included) is BBR; without the `fq` qdisc BBR
/// paces inside TCP with a high-resolution timer per burst, and that made the kernel's *sender* the
/// bottleneck of every kernel→stack row (15–20 Gbit/s whoever received; with CUBIC the kernel over veth got
/// 32–42).
const KERNEL_CONGESTION_CONTROL: &str = "cubic";

fn sut_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(SUT_IP, port))
}

/// A system under test with its kernel peer.
struct Sut {
    name: &'static str,
    /// The kernel peer's namespace.
    peer: Namespace,
    /// Extra namespaces to keep alive (the veth far end).
    _others: Vec<Namespace>,
    /// Starts the stack→kernel transfer of N bytes.
    source: Sender<u64>,
    /// Rung after a command is queued (loops wait on it).
    bell: Option<Arc<EventFd>>,
    /// Thread-name prefixes whose CPU time is the system's (empty: not measured).
    cpu_threads: &'static [&'static str],
    /// The kernel's listener for stack→kernel transfers, in the peer namespace.
    source_listener: KListener,
    stop: Box<dyn FnOnce()>,
}

impl Sut {
    fn cpu_ns(&self) -> Option<u64> {
        (!self.cpu_threads.is_empty()).then(|| named_threads_cpu_ns(self.cpu_threads))
    }

    fn start_source(&self, bytes: u64) {
        let _ = self.source.send(bytes);
        if let Some(b) = &self.bell {
            b.notify();
        }
    }
}

/// A namespace with `tap0` at 198.18.0.1/24 and the TAP opened for the system under test.
fn tap_peer(prefix: &str) -> io::Result<(Namespace, Tap)> {
    tap_peer_with(prefix, false)
}

/// [`tap_peer`], optionally with checksum and segmentation offload on the TAP.
fn tap_peer_with(prefix: &str, offloads: bool) -> io::Result<(Namespace, Tap)> {
    let ns = Namespace::create(prefix)?;
    ns.add_tap("tap0", &format!("{KERNEL_IP}/24"))?;
    let tap = ns.enter(|| if offloads { Tap::open_with_offloads("tap0") } else { Tap::open("tap0") })??;
    Ok((ns, tap))
}

fn kernel_listener(ns: &Namespace, addr: SocketAddr) -> io::Result<KListener> {
    ns.enter(|| KListener::bind(addr))?
}

/// Sets [`KERNEL_CONGESTION_CONTROL`] on a kernel socket (`TCP_CONGESTION`; root may pick any algorithm).
fn pin_congestion_control(s: &KStream) -> io::Result<()> {
    socket2::SockRef::from(s).set_tcp_congestion(KERNEL_CONGESTION_CONTROL.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set the kernel's congestion control to {KERNEL_CONGESTION_CONTROL}: {e}"),
        )
    })
}

/// Something that accepts connections, so the same service code runs on ustack's runtime and on the kernel.
trait Accept: Send + 'static {
    type S: Read + Write + Send + 'static;
    fn accept_one(&self) -> io::Result<Self::S>;
    fn nodelay(s: &Self::S);
    fn read_timeout(s: &Self::S, d: Duration);
}

impl Accept for UListener {
    type S = UStream;
    fn accept_one(&self) -> io::Result<UStream> {
        self.accept().map(|(s, _)| s)
    }
    fn nodelay(s: &UStream) {
        let _ = s.set_nodelay(true);
    }
    fn read_timeout(s: &UStream, d: Duration) {
        let _ = s.set_read_timeout(Some(d));
    }
}

impl Accept for KListener {
    type S = KStream;
    fn accept_one(&self) -> io::Result<KStream> {
        self.accept().map(|(s, _)| s)
    }
    fn nodelay(s: &KStream) {
        let _ = s.set_nodelay(true);
    }
    fn read_timeout(s: &KStream, d: Duration) {
        let _ = s.set_read_timeout(Some(d));
    }
}

/// Blocking services on three listeners, one thread each (names start with `prefix`). They end when accept
/// fails (the stack was shut down) or `stop` is set and they are woken.
fn blocking_services<A: Accept>(
    prefix: &str,
    sink: A,
    echo: A,
    acceptor: A,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    let s1 = Arc::clone(&stop);
    threads.push(spawn(&format!("{prefix}sink"), move || {
        let mut buf = vec![0_u8; 64 * 1024];
        while let Ok(mut s) = sink.accept_one() {
            if s1.load(Ordering::Relaxed) {
                break;
            }
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    }));
    let s2 = Arc::clone(&stop);
    threads.push(spawn(&format!("{prefix}echo"), move || {
        let mut buf = [0_u8; 64];
        while let Ok(mut s) = echo.accept_one() {
            if s2.load(Ordering::Relaxed) {
                break;
            }
            A::nodelay(&s);
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }));
    // The client closes first; the server closes once it has read the client's FIN (a passive close, so the
    // TIME-WAIT stays with the client, which then never reuses the port while it lasts).
    threads.push(spawn(&format!("{prefix}accept"), move || {
        let mut buf = [0_u8; 64];
        while let Ok(mut s) = acceptor.accept_one() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            A::read_timeout(&s, Duration::from_secs(3));
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    }));
    threads
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.to_string()).spawn(f).expect("spawn thread")
}

/// Sends `bytes` of zeros on `w`, then closes it.
fn send_all(mut w: impl Write, bytes: u64) -> io::Result<()> {
    let data = vec![0x5a_u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        w.write_all(&data[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// How a NetStack runtime row runs.
#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    /// A plain TAP, default options.
    Plain,
    /// The TAP's offloads (TSO/GSO and checksums), default options.
    Offloads,
    /// The TAP's offloads and `NetStackOptions::prefer_busy_poll`.
    OffloadsPreferBusyPoll,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Plain => "ustack (NetStack runtime)",
            Runtime::Offloads => "ustack (NetStack runtime, TAP offloads)",
            Runtime::OffloadsPreferBusyPoll => "ustack (NetStack runtime, TAP offloads, prefer busy poll)",
        }
    }

    /// The prefix of its threads' names (the namespace's, and the services').
    fn prefix(self) -> &'static str {
        match self {
            Runtime::Plain => "rt-",
            Runtime::Offloads => "ro-",
            Runtime::OffloadsPreferBusyPoll => "rp-",
        }
    }
}

/// ustack's NetStack runtime on a TAP, optionally with the TAP's offloads (TSO/GSO and checksums).
fn ustack_runtime(kind: Runtime) -> io::Result<Sut> {
    let offloads = kind != Runtime::Plain;
    let prefix = kind.prefix();
    let (peer, tap) = tap_peer_with(&format!("ub-{}", &prefix[..2]), offloads)?;
    let source_listener = kernel_listener(&peer, SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT)))?;
    let mut config = StackConfig::new(MacAddr(SUT_MAC), format!("{SUT_IP}/24").parse().expect("cidr"));
    config.mtu = 1500;
    let options = NetStackOptions {
        prefer_busy_poll: kind == Runtime::OffloadsPreferBusyPoll,
        // Each runtime's driver has its own name, so that only this row's threads count for its CPU time.
        thread_name: format!("{prefix}driver"),
        ..NetStackOptions::default()
    };
    let net = NetStack::spawn_with(tap, config, options)?;
    let sink = UListener::bind(&net, sut_addr(SINK_PORT))?;
    let echo = UListener::bind(&net, sut_addr(ECHO_PORT))?;
    let acceptor = UListener::bind(&net, sut_addr(ACCEPT_PORT))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = blocking_services(prefix, sink, echo, acceptor, stop);
    let (tx, rx) = mpsc::channel::<u64>();
    let n2 = net.clone();
    threads.push(spawn(&format!("{prefix}source"), move || {
        while let Ok(bytes) = rx.recv() {
            let target = SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT));
            match UStream::connect_timeout(&n2, target, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                    if let Err(e) = send_all(&s, bytes) {
                        eprintln!("ustack runtime source: {e}");
                    }
                }
                Err(e) => eprintln!("ustack runtime source: connect: {e}"),
            }
        }
    }));
    let stop = Box::new(move || {
        net.shutdown();
        for t in threads {
            let _ = t.join();
        }
    });
    Ok(Sut {
        name: kind.name(),
        peer,
        _others: Vec::new(),
        source: tx,
        bell: None,
        cpu_threads: match kind {
            Runtime::Plain => &["rt-"],
            Runtime::Offloads => &["ro-"],
            Runtime::OffloadsPreferBusyPoll => &["rp-"],
        },
        source_listener,
        stop,
    })
}

/// The kernel at the far end of a veth pair; `offloads` false turns TSO/GSO/GRO and checksum offload off.
fn kernel_veth(offloads: bool) -> io::Result<Sut> {
    let peer = Namespace::create("ub-kp")?;
    let far = Namespace::create("ub-ks")?;
    peer.run("ip", &["link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", far.name()])?;
    peer.run("ip", &["addr", "add", &format!("{KERNEL_IP}/24"), "dev", "veth0"])?;
    far.run("ip", &["addr", "add", &format!("{SUT_IP}/24"), "dev", "veth1"])?;
    for (ns, dev) in [(&peer, "veth0"), (&far, "veth1")] {
        if !offloads {
            let out =
                ns.exec("ethtool", &["-K", dev, "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off"]);
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                return Err(io::Error::other("ethtool is needed to turn veth offloads off"));
            }
        }
        ns.run("ip", &["link", "set", dev, "up"])?;
    }
    let source_listener = kernel_listener(&peer, SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT)))?;
    let sink = kernel_listener(&far, sut_addr(SINK_PORT))?;
    let echo = kernel_listener(&far, sut_addr(ECHO_PORT))?;
    let acceptor = kernel_listener(&far, sut_addr(ACCEPT_PORT))?;
    let stop = Arc::new(AtomicBool::new(false));
    let prefix = if offloads { "kv-" } else { "ko-" };
    let mut threads = blocking_services(prefix, sink, echo, acceptor, Arc::clone(&stop));
    let (tx, rx) = mpsc::channel::<u64>();
    let far_name = far.name().to_string();
    threads.push(spawn(&format!("{prefix}source"), move || {
        while let Ok(bytes) = rx.recv() {
            let target = SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT));
            let s = ustack_netdev::netns::run_in_namespace(&far_name, || {
                KStream::connect_timeout(&target, Duration::from_secs(5))
            });
            match s {
                Ok(Ok(s)) => {
                    if let Err(e) = pin_congestion_control(&s) {
                        // Not measured rather than measured on another algorithm: the transfer then fails.
                        eprintln!("kernel source: {e}");
                        continue;
                    }
                    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                    if let Err(e) = send_all(&s, bytes) {
                        eprintln!("kernel source: {e}");
                    }
                }
                Ok(Err(e)) | Err(e) => eprintln!("kernel source: connect: {e}"),
            }
        }
    }));
    let peer_name = peer.name().to_string();
    let stop_fn = Box::new(move || {
        stop.store(true, Ordering::Relaxed);
        // Wake the three accepting threads.
        let _ = ustack_netdev::netns::run_in_namespace(&peer_name, || {
            for port in [SINK_PORT, ECHO_PORT, ACCEPT_PORT] {
                let _ = KStream::connect_timeout(&sut_addr(port), Duration::from_secs(1));
            }
        });
        for t in threads {
            let _ = t.join();
        }
    });
    Ok(Sut {
        name: if offloads { "kernel (veth)" } else { "kernel (veth, offloads off)" },
        peer,
        _others: vec![far],
        source: tx,
        bell: None,
        cpu_threads: &[],
        source_listener,
        stop: stop_fn,
    })
}

/// What a connection of a loop-driven stack is for.
enum Role {
    Sink,
    Echo { pending: Vec<u8> },
    Source { left: u64 },
}

/// A stack (ustack's `Stack` or smoltcp) driven by one thread on a TAP: receive a batch, run the services,
/// send, sleep until the TAP is readable, a command arrives or a timer is due.
fn loop_sut<N: Node + Send + 'static>(name: &'static str, thread: &'static str, node: N) -> io::Result<Sut> {
    let (peer, tap) = tap_peer(if thread.ends_with('u') { "ub-lu" } else { "ub-ls" })?;
    let source_listener = kernel_listener(&peer, SocketAddr::V4(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT)))?;
    let (tx, rx) = mpsc::channel::<u64>();
    let bell = Arc::new(EventFd::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let (b2, s2) = (Arc::clone(&bell), Arc::clone(&stop));
    let handle = spawn(thread, move || run_loop(node, tap, rx, &b2, &s2));
    let b3 = Arc::clone(&bell);
    let stop_fn = Box::new(move || {
        stop.store(true, Ordering::Relaxed);
        b3.notify();
        let _ = handle.join();
    });
    let cpu: &'static [&'static str] = if thread.ends_with('u') { &["loop-u"] } else { &["loop-s"] };
    Ok(Sut {
        name,
        peer,
        _others: Vec::new(),
        source: tx,
        bell: Some(bell),
        cpu_threads: cpu,
        source_listener,
        stop: stop_fn,
    })
}

fn run_loop<N: Node>(mut node: N, mut tap: Tap, commands: Receiver<u64>, bell: &EventFd, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    let origin = WallInstant::now();
    let clock = || Instant::from_duration(origin.elapsed());
    node.listen(SINK_PORT, 4, true, ConnOpts::bulk());
    node.listen(ECHO_PORT, 4, true, ConnOpts::rpc());
    node.listen(ACCEPT_PORT, 64, true, ConnOpts::idle());
    let slot = 1500 + 14 + 4;
    let mut rx = FrameBatch::new(64, slot);
    let mut tx = FrameBatch::new(512, slot);
    let fds = [tap.pollable_fd().expect("a TAP can be polled"), bell.as_raw_fd()];
    let mut conns: Vec<(usize, Role)> = Vec::new();
    let data = vec![0x5a_u8; 64 * 1024];
    let mut buf = vec![0_u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let now = clock();
        for _ in 0..8 {
            rx.clear();
            let n = tap.recv_batch(&mut rx).unwrap_or(0);
            if n == 0 {
                break;
            }
            node.input(now, &rx, &mut tx);
            if tx.len() > tx.capacity() / 2 {
                let _ = tap.send_batch(&mut tx);
                tx.clear();
            }
            if n < rx.capacity() {
                break;
            }
        }
        bell.drain();
        while let Ok(bytes) = commands.try_recv() {
            let c = node.connect(SocketAddrV4::new(KERNEL_IP, SOURCE_PORT), ConnOpts::bulk());
            conns.push((c, Role::Source { left: bytes }));
        }
        while let Some(c) = node.accept(SINK_PORT) {
            conns.push((c, Role::Sink));
        }
        while let Some(c) = node.accept(ECHO_PORT) {
            conns.push((c, Role::Echo { pending: Vec::new() }));
        }
        while let Some(c) = node.accept(ACCEPT_PORT) {
            conns.push((c, Role::Sink));
        }
        conns.retain_mut(|(c, role)| {
            let c = *c;
            match role {
                Role::Sink => loop {
                    match node.recv(c, &mut buf) {
                        Some(0) => return true,
                        Some(_) => {}
                        None => {
                            node.close(c);
                            return false;
                        }
                    }
                },
                Role::Echo { pending } => {
                    loop {
                        match node.recv(c, &mut buf[..4096]) {
                            Some(0) => break,
                            Some(n) => pending.extend_from_slice(&buf[..n]),
                            None => {
                                node.close(c);
                                return false;
                            }
                        }
                    }
                    if !pending.is_empty() {
                        let n = node.send(c, pending);
                        pending.drain(..n);
                    }
                    true
                }
                Role::Source { left } => {
                    if !node.established(c) {
                        return true;
                    }
                    while *left > 0 {
                        let n = (*left).min(data.len() as u64) as usize;
                        let k = node.send(c, &data[..n]);
                        if k == 0 {
                            break;
                        }
                        *left -= k as u64;
                    }
                    if *left == 0 {
                        node.close(c);
                        return false;
                    }
                    true
                }
            }
        });
        node.output(now, &mut tx);
        if !tx.is_empty() {
            let _ = tap.send_batch(&mut tx);
            tx.clear();
        }
        let timeout = node.poll_at(now).map(|t| t.saturating_since(clock())).unwrap_or(Duration::from_millis(100));
        let _ = wait_readable(&fds, Some(timeout.min(Duration::from_millis(100))));
    }
}

/// Kernel → system: the kernel client connects to 5001, sends `bytes`, half-closes and waits for the
/// system's close (so every byte was read by the application). Seconds from connected to closed.
fn kernel_to_sut(sut: &Sut, bytes: u64) -> io::Result<f64> {
    sut.peer.enter(|| -> io::Result<f64> {
        let mut s = KStream::connect_timeout(&sut_addr(SINK_PORT), Duration::from_secs(5))?;
        pin_congestion_control(&s)?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let t = WallInstant::now();
        send_all(&s, bytes)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut b = [0_u8; 16];
        while s.read(&mut b)? > 0 {}
        Ok(t.elapsed().as_secs_f64())
    })?
}

/// System → kernel: the system connects to the kernel's 5002 and sends `bytes`. Seconds from the kernel's
/// accept to end of stream.
fn sut_to_kernel(sut: &Sut, bytes: u64) -> io::Result<f64> {
    sut.start_source(bytes);
    let l = &sut.source_listener;
    l.set_nonblocking(true)?;
    let deadline = WallInstant::now() + Duration::from_secs(10);
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && WallInstant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e),
        }
    };
    let t = WallInstant::now();
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0_u8; 256 * 1024];
    let mut got = 0_u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    if got != bytes {
        return Err(io::Error::other(format!("kernel received {got} of {bytes} bytes")));
    }
    Ok(secs)
}

/// 64-byte request/response from a kernel client: median and 99th percentile round trip, microseconds.
fn echo_latency(sut: &Sut, count: u64) -> io::Result<(f64, f64)> {
    sut.peer.enter(|| -> io::Result<(f64, f64)> {
        let mut s = KStream::connect_timeout(&sut_addr(ECHO_PORT), Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let msg = [0x42_u8; 64];
        let mut buf = [0_u8; 64];
        let mut times = Vec::with_capacity(count as usize);
        for i in 0..count + count / 10 + 10 {
            let t = WallInstant::now();
            s.write_all(&msg)?;
            s.read_exact(&mut buf)?;
            if i >= count / 10 + 10 {
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = summarize(&times).map_or(0.0, |s| s.median);
        let p99 = times[((times.len() as f64 * 0.99) as usize).min(times.len() - 1)];
        Ok((median, p99))
    })?
}

/// Connect attempts' outcomes.
#[derive(Debug, Default, Clone, Copy)]
struct Connects {
    ok: u64,
    refused: u64,
    failed: u64,
    /// Succeeded, but only after a SYN retransmission (over 900 ms).
    slow: u64,
}

/// One connect, closed at once; returns how long the connect took (seconds).
fn one_connect(addr: &SocketAddr, tally: &mut Connects) -> f64 {
    let t = WallInstant::now();
    match KStream::connect_timeout(addr, Duration::from_secs(3)) {
        Ok(s) => {
            tally.ok += 1;
            if t.elapsed() > Duration::from_millis(900) {
                tally.slow += 1;
            }
            drop(s);
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => tally.refused += 1,
        Err(_) => tally.failed += 1,
    }
    t.elapsed().as_secs_f64()
}

/// A sequential client: `n` connects, each closed at once. Connects per second over the whole run, the median
/// time of one connect (µs), and the tally.
fn sequential_accepts(sut: &Sut, n: usize) -> io::Result<(f64, f64, Connects)> {
    sut.peer.enter(|| {
        let addr = sut_addr(ACCEPT_PORT);
        let mut tally = Connects::default();
        let mut times = Vec::with_capacity(n);
        let t = WallInstant::now();
        for _ in 0..n {
            times.push(one_connect(&addr, &mut tally) * 1e6);
        }
        let median = summarize(&times).map_or(0.0, |s| s.median);
        (n as f64 / t.elapsed().as_secs_f64(), median, tally)
    })
}

/// `bursts` times, 32 clients connect at once. Connects per second within a burst (median) and the tally.
fn burst_accepts(sut: &Sut, bursts: usize) -> io::Result<(f64, Connects)> {
    sut.peer.enter(|| {
        let addr = sut_addr(ACCEPT_PORT);
        let mut total = Connects::default();
        let mut rates = Vec::new();
        for _ in 0..bursts {
            let barrier = Arc::new(Barrier::new(32));
            let t = WallInstant::now();
            let threads: Vec<_> = (0..32)
                .map(|_| {
                    let b = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        let mut tally = Connects::default();
                        b.wait();
                        one_connect(&addr, &mut tally);
                        tally
                    })
                })
                .collect();
            for th in threads {
                let c = th.join().unwrap_or(Connects { failed: 1, ..Connects::default() });
                total.ok += c.ok;
                total.refused += c.refused;
                total.failed += c.failed;
                total.slow += c.slow;
            }
            rates.push(32.0 / t.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_millis(20));
        }
        (summarize(&rates).map_or(0.0, |s| s.median), total)
    })
}

/// Frames of 1514 bytes written to a TAP as fast as one thread can for `secs` (an EtherType the kernel drops
/// after counting it): the device's ceiling for stack→kernel. Gbit/s of frame bytes.
fn pump_tx(secs: f64) -> io::Result<f64> {
    let (ns, mut tap) = tap_peer("ub-ptx")?;
    let dst = tap.hardware_addr().unwrap_or([0xff; 6]);
    let mut frame = vec![0_u8; FRAME];
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&SUT_MAC);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut batch = FrameBatch::new(64, FRAME);
    let t = WallInstant::now();
    let mut sent = 0_u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            batch.push(&frame);
        }
        sent += tap.send_batch(&mut batch)? as u64;
        batch.clear();
    }
    let elapsed = t.elapsed().as_secs_f64();
    drop(tap);
    drop(ns);
    Ok(sent as f64 * FRAME as f64 * 8.0 / elapsed / 1e9)
}

/// 1514-byte frames sent into `tap0` from the kernel's side through an `AF_PACKET` socket (`sendmmsg`, no
/// protocol work) as fast as one thread can, and one thread reading them off the TAP: the device's ceiling for
/// kernel→stack. Gbit/s of frames read.
fn pump_rx(secs: f64) -> io::Result<f64> {
    let (ns, mut tap) = tap_peer("ub-prx")?;
    let mut sender = ns.enter(|| PacketSocket::open("tap0"))??;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let mut frame = vec![0_u8; FRAME];
    frame[..6].copy_from_slice(&SUT_MAC);
    frame[6..12].copy_from_slice(&sender.hardware_addr().unwrap_or([2, 0, 0, 0, 0, 9]));
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let th = spawn("pump-send", move || {
        let mut batch = FrameBatch::new(64, FRAME);
        while !s2.load(Ordering::Relaxed) {
            while !batch.is_full() {
                batch.push(&frame);
            }
            if sender.send_batch(&mut batch).unwrap_or(0) == 0 {
                std::thread::yield_now();
            }
            batch.clear();
        }
    });
    let fd = tap.pollable_fd().expect("a TAP can be polled");
    let mut batch = FrameBatch::new(64, 1518);
    // Let the sender start, then count.
    let warm = WallInstant::now();
    while warm.elapsed() < Duration::from_millis(50) {
        batch.clear();
        let _ = tap.recv_batch(&mut batch);
    }
    let t = WallInstant::now();
    let mut bytes = 0_u64;
    while t.elapsed().as_secs_f64() < secs {
        batch.clear();
        if tap.recv_batch(&mut batch)? == 0 {
            let _ = wait_readable(&[fd], Some(Duration::from_millis(10)));
            continue;
        }
        bytes += batch.iter().map(|f| f.len() as u64).sum::<u64>();
    }
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(tap);
    let _ = th.join();
    drop(ns);
    Ok(bytes as f64 * 8.0 / elapsed / 1e9)
}

/// One repetition of a bulk transfer of `bytes` (`transfer` returns its seconds) on `sut`: goodput and the
/// system's CPU time per GB go into `row`, a failure into `report`.
fn bulk_rep(
    report: &mut Report,
    row: &mut Row,
    sut: &Sut,
    rep: usize,
    bytes: u64,
    direction: &str,
    transfer: fn(&Sut, u64) -> io::Result<f64>,
) {
    let cpu_before = sut.cpu_ns();
    match transfer(sut, bytes) {
        Ok(secs) => {
            let series = row.series(sut.name);
            series.samples.push(gbit(bytes, secs));
            if let (Some(a), Some(b)) = (cpu_before, sut.cpu_ns()) {
                series.cpu_s_per_gb.push((b - a) as f64 / 1e9 / (bytes as f64 / 1e9));
            }
            println!("[3] rep {rep} {}: {direction} {:.2} Gbit/s", sut.name, gbit(bytes, secs));
        }
        Err(e) => report.fail(format!("{} {direction} rep {rep}: {e}", sut.name)),
    }
}

fn gbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

/// Scenario 3's workloads, as `--case` names them.
pub const CASES: [&str; 4] = ["k2s", "s2k", "rtt", "pump"];

/// Which systems and workloads to measure (empty: all); for profiling one row.
pub struct Only {
    /// Systems whose name contains one of these.
    pub suts: Vec<String>,
    /// Scenario 3's workloads: `k2s`, `s2k`, `rtt`, `pump`.
    pub cases: Vec<String>,
}

impl Only {
    fn sut(&self, name: &str) -> bool {
        self.suts.is_empty() || self.suts.iter().any(|want| name.contains(want.as_str()))
    }

    fn case(&self, case: &str) -> bool {
        self.cases.is_empty() || self.cases.iter().any(|want| want == case)
    }
}

pub fn scenarios(plan: &Plan, do3: bool, do4: bool, only: &Only, report: &mut Report) {
    if !kernel_peer_available() {
        report.note("scenario 3 and the accept half of scenario 4 skipped: they need root, /dev/net/tun and iproute2");
        return;
    }
    let mut suts = Vec::new();
    type Make = fn() -> io::Result<Sut>;
    let makers: [(&str, Make); 7] = [
        (Runtime::Offloads.name(), || ustack_runtime(Runtime::Offloads)),
        (Runtime::OffloadsPreferBusyPoll.name(), || ustack_runtime(Runtime::OffloadsPreferBusyPoll)),
        (Runtime::Plain.name(), || ustack_runtime(Runtime::Plain)),
        ("ustack (sans-IO loop)", || {
            let mut config = StackConfig::new(MacAddr(SUT_MAC), format!("{SUT_IP}/24").parse().expect("cidr"));
            config.mtu = 1500;
            loop_sut("ustack (sans-IO loop)", "loop-u", UstackNode::with_config(config))
        }),
        ("smoltcp (loop)", || {
            loop_sut("smoltcp (loop)", "loop-s", SmolNode::new(SUT_MAC, [198, 18, 0, 2], 24, 1500, 7))
        }),
        ("kernel (veth)", || kernel_veth(true)),
        ("kernel (veth, offloads off)", || kernel_veth(false)),
    ];
    for (name, make) in makers {
        if !only.sut(name) {
            continue;
        }
        match make() {
            Ok(s) => suts.push(s),
            Err(e) => report.note(format!("{name}: not measured: {e}")),
        }
    }
    // Give the TAP stacks a moment (ARP, carrier).
    std::thread::sleep(Duration::from_millis(200));

    if do3 {
        let mut k2s = Row::new("3 TAP vs kernel", "bulk kernel→stack", "goodput", "Gbit/s", true);
        let mut s2k = Row::new("3 TAP vs kernel", "bulk stack→kernel", "goodput", "Gbit/s", true);
        let mut rtt = Row::new("3 TAP vs kernel", "64 B request/response, kernel client", "median RTT", "µs", false);
        let mut p99 = Row::new("3 TAP vs kernel", "64 B request/response, kernel client", "p99 RTT", "µs", false);
        let mut pump = Row::new("3 TAP vs kernel", "raw frame pump, 1514 B frames", "frame throughput", "Gbit/s", true);
        for rep in 0..plan.tap_reps {
            for sut in &suts {
                if only.case("k2s") {
                    bulk_rep(report, &mut k2s, sut, rep, plan.tap_bytes, "kernel→stack", kernel_to_sut);
                }
                if only.case("s2k") {
                    bulk_rep(report, &mut s2k, sut, rep, plan.tap_bytes, "stack→kernel", sut_to_kernel);
                }
                if only.case("rtt") {
                    match echo_latency(sut, plan.tap_rtts) {
                        Ok((m, p)) => {
                            rtt.series(sut.name).samples.push(m);
                            p99.series(sut.name).samples.push(p);
                            println!("[3] rep {rep} {}: 64 B RTT median {m:.1} µs, p99 {p:.1} µs", sut.name);
                        }
                        Err(e) => report.fail(format!("{} request/response rep {rep}: {e}", sut.name)),
                    }
                }
            }
            if !only.case("pump") {
                continue;
            }
            match pump_rx(plan.pump_secs) {
                Ok(g) => {
                    println!("[3] rep {rep} raw frame pump: TAP read {g:.2} Gbit/s");
                    pump.series("TAP read (kernel→stack)").samples.push(g)
                }
                Err(e) => report.fail(format!("raw frame pump (read) rep {rep}: {e}")),
            }
            match pump_tx(plan.pump_secs) {
                Ok(g) => {
                    println!("[3] rep {rep} raw frame pump: TAP write {g:.2} Gbit/s");
                    pump.series("TAP write (stack→kernel)").samples.push(g)
                }
                Err(e) => report.fail(format!("raw frame pump (write) rep {rep}: {e}")),
            }
        }
        report.push(k2s);
        report.push(s2k);
        report.push(rtt);
        report.push(p99);
        report.push(pump);
    }

    if do4 {
        let mut seq = Row::new("4 connections", "sequential kernel client, connect+close", "accepts", "conn/s", true);
        let mut seq_time =
            Row::new("4 connections", "sequential kernel client, connect+close", "median connect time", "µs", false);
        let mut seq_bad =
            Row::new("4 connections", "sequential kernel client", "refused + failed (+ slow)", "connects", false);
        let mut burst =
            Row::new("4 connections", "bursts of 32 kernel clients", "accepts within a burst", "conn/s", true);
        let mut burst_bad =
            Row::new("4 connections", "bursts of 32 kernel clients", "refused + failed (+ slow)", "connects", false);
        let mut slow: std::collections::BTreeMap<(u8, &str), u64> = Default::default();
        for rep in 0..plan.tap_reps {
            for sut in &suts {
                match sequential_accepts(sut, plan.seq_conns) {
                    Ok((rate, median, c)) => {
                        seq.series(sut.name).samples.push(rate);
                        seq_time.series(sut.name).samples.push(median);
                        seq_bad.series(sut.name).samples.push((c.refused + c.failed) as f64);
                        *slow.entry((0, sut.name)).or_default() += c.slow;
                        println!("[4] rep {rep} {}: sequential {rate:.0} conn/s {c:?}", sut.name);
                    }
                    Err(e) => report.fail(format!("{} sequential accepts rep {rep}: {e}", sut.name)),
                }
                match burst_accepts(sut, plan.bursts) {
                    Ok((rate, c)) => {
                        burst.series(sut.name).samples.push(rate);
                        burst_bad.series(sut.name).samples.push((c.refused + c.failed) as f64);
                        *slow.entry((1, sut.name)).or_default() += c.slow;
                        println!("[4] rep {rep} {}: bursts {rate:.0} conn/s {c:?}", sut.name);
                    }
                    Err(e) => report.fail(format!("{} burst accepts rep {rep}: {e}", sut.name)),
                }
            }
        }
        for ((which, name), n) in slow {
            let row = if which == 0 { &mut seq_bad } else { &mut burst_bad };
            row.series(name).note = format!("{n} slow over all reps");
        }
        report.push(seq);
        report.push(seq_time);
        report.push(seq_bad);
        report.push(burst);
        report.push(burst_bad);
    }
    for sut in suts {
        // The source threads end when their command channel closes.
        let Sut { stop, source, .. } = sut;
        drop(source);
        stop();
    }
}
