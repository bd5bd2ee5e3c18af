//! Helpers for the TCP tests against the Linux kernel (`tests/kernel_tcp.rs`): kernel-side sockets made inside
//! the peer's namespace, accepts with deadlines on both sides, a netem qdisc that goes away with its guard, and
//! [`RawTcp`], a ustack TCP socket driven through the core calls for what the `std::net`-shaped handles do not
//! offer (binding a client to a fixed port, taking a whole accept queue at one instant).
//!
//! Nothing here waits without a bound: every loop has a deadline and a count.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener as KernelTcpListener, TcpStream as KernelTcpStream};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ustack::runtime::{NetStack, TcpListener, TcpStream};
use ustack::{Domain, Errno, Fd, MsgFlags, Readiness, Shutdown, SockOpt, SockType};
use ustack_netdev::fault::Rng;
use ustack_netdev::{Device, FrameBatch};

use crate::kernel::{KernelPeer, XorShift};

/// How long a polling loop sleeps between two looks.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The value of the environment variable `name` as a number, or `default` when it is unset or empty; panics on
/// anything else so that a typo does not silently run the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().unwrap_or_else(|e| panic!("{name}={v:?} is not a non-negative integer: {e}"))
        }
        _ => default,
    }
}

/// A reproducible stream of pseudo-random bytes: the same seed gives the same bytes whatever the chunk sizes
/// they are taken in.
#[derive(Debug, Clone)]
pub struct PatternStream {
    rng: XorShift,
    /// Bytes of the current 8-byte word not yet handed out.
    word: [u8; 8],
    used: usize,
}

impl PatternStream {
    pub fn new(seed: u64) -> PatternStream {
        PatternStream { rng: XorShift::new(seed), word: [0; 8], used: 8 }
    }

    /// Fills `buf` with the next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        // Finish a partly used word, then whole words, then start a new word for the tail.
        while at < buf.len() && self.used < 8 {
            buf[at] = self.word[self.used];
            self.used += 1;
            at += 1;
        }
        let whole = (buf.len() - at) / 8 * 8;
        self.rng.fill(&mut buf[at..at + whole]);
        at += whole;
        while at < buf.len() {
            if self.used == 8 {
                self.word = self.rng.next_u64().to_le_bytes();
                self.used = 0;
            }
            buf[at] = self.word[self.used];
            self.used += 1;
            at += 1;
        }
    }
}

/// Sleeps in short steps until `done()` holds or `deadline` passes; returns whether it held. At most
/// `timeout / POLL_INTERVAL + 1` looks.
pub fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let max_looks = deadline.saturating_duration_since(Instant::now()).as_millis() as u64 / 2 + 2;
    for _ in 0..max_looks {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    done()
}

/// A kernel TCP connection to `addr` made inside the peer's namespace, with read and write timeouts of
/// `io_timeout`. The socket stays in the namespace whichever thread uses it afterwards.
pub fn kernel_connect(
    peer: &KernelPeer,
    addr: SocketAddr,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> io::Result<KernelTcpStream> {
    let stream = peer.namespace().enter(|| KernelTcpStream::connect_timeout(&addr, connect_timeout))??;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    Ok(stream)
}

/// A kernel TCP listener inside the peer's namespace on the kernel's address and `port` (0: ephemeral).
pub fn kernel_listen(peer: &KernelPeer, port: u16) -> io::Result<KernelTcpListener> {
    let addr = peer.kernel_addr(port);
    peer.namespace().enter(|| KernelTcpListener::bind(addr))?
}

/// Accepts one connection on a kernel listener, polling it non-blocking until `deadline`. The accepted stream
/// is blocking with read and write timeouts of `io_timeout`.
pub fn kernel_accept(
    listener: &KernelTcpListener,
    deadline: Instant,
    io_timeout: Duration,
) -> io::Result<(KernelTcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let (stream, from) = poll_accept(deadline, "kernel", || listener.accept())?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    Ok((stream, from))
}

/// Accepts one connection on a ustack listener, polling it non-blocking until `deadline`. The accepted stream
/// is blocking with read and write timeouts of `io_timeout`.
pub fn ustack_accept(
    listener: &TcpListener,
    deadline: Instant,
    io_timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let (stream, from) = poll_accept(deadline, "ustack", || listener.accept())?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    Ok((stream, from))
}

/// Calls a non-blocking `accept` every [`POLL_INTERVAL`] until it yields a connection or `deadline` passes
/// (bounded by count as well as by time). `whose` names the listener in the timeout error.
fn poll_accept<S>(
    deadline: Instant,
    whose: &str,
    mut accept: impl FnMut() -> io::Result<(S, SocketAddr)>,
) -> io::Result<(S, SocketAddr)> {
    let max_looks = deadline.saturating_duration_since(Instant::now()).as_millis() as u64 / 2 + 2;
    for _ in 0..max_looks {
        match accept() {
            Ok(accepted) => return Ok(accepted),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("no connection reached the {whose} listener in time")))
}

/// A netem qdisc on a device inside the peer's namespace (it shapes what the kernel sends on it), removed
/// when dropped. The namespace's deletion would remove it too; this only makes a test's intent explicit.
#[derive(Debug)]
pub struct Netem<'a> {
    peer: &'a KernelPeer,
    dev: String,
}

impl<'a> Netem<'a> {
    /// `tc qdisc add dev DEV root netem ARGS...` in the namespace.
    pub fn add(peer: &'a KernelPeer, dev: &str, args: &[&str]) -> io::Result<Netem<'a>> {
        let mut all = vec!["qdisc", "add", "dev", dev, "root", "netem"];
        all.extend_from_slice(args);
        peer.namespace().run("tc", &all).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot add netem ({e}); needs tc (iproute2) and the sch_netem module"))
        })?;
        Ok(Netem { peer, dev: dev.to_string() })
    }

    /// What `tc -s qdisc show dev DEV` prints (the netem statistics: sent, dropped, ...).
    pub fn stats(&self) -> String {
        match self.peer.namespace().exec("tc", &["-s", "qdisc", "show", "dev", &self.dev]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(tc -s qdisc show failed: {e})"),
        }
    }
}

impl Drop for Netem<'_> {
    fn drop(&mut self) {
        let _ = self.peer.namespace().exec("tc", &["qdisc", "del", "dev", &self.dev, "root"]);
    }
}

/// The core call's error as an `io::Error` with the errno Linux would give.
fn os_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// A ustack TCP socket used through the stack's core socket calls (`NetStack::with_stack`), for what the
/// blocking handles lack. Blocking operations poll with short sleeps until a deadline. Closed when dropped.
#[derive(Debug)]
pub struct RawTcp {
    net: NetStack,
    fd: Fd,
}

impl RawTcp {
    /// A fresh TCP socket, with SO_REUSEADDR set when `reuse_addr`.
    pub fn socket(net: &NetStack, reuse_addr: bool) -> io::Result<RawTcp> {
        let fd = net.with_stack(|s| s.socket(Domain::Inet, SockType::Stream)).map_err(os_err)?;
        let raw = RawTcp { net: net.clone(), fd };
        if reuse_addr {
            net.with_stack(|s| s.setsockopt(fd, SockOpt::ReuseAddr, 1)).map_err(os_err)?;
        }
        Ok(raw)
    }

    pub fn fd(&self) -> Fd {
        self.fd
    }

    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.net.with_stack(|s| s.bind(self.fd, addr)).map_err(os_err)
    }

    /// Starts a connect; `Ok` once the handshake is under way (`EINPROGRESS`), or the immediate error (for
    /// example `EADDRNOTAVAIL` when the four-tuple is taken).
    pub fn start_connect(&self, addr: SocketAddr) -> io::Result<()> {
        match self.net.with_stack(|s| s.connect(self.fd, Some(addr))) {
            Ok(()) | Err(Errno::EINPROGRESS) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Connects to `addr` and waits for the outcome until `deadline`, as a non-blocking connect followed by
    /// poll and a second connect does on Linux.
    pub fn connect(&self, addr: SocketAddr, deadline: Instant) -> io::Result<()> {
        self.start_connect(addr)?;
        let fd = self.fd;
        let ready = wait_until(deadline, || {
            self.net.with_stack(|s| s.readiness(fd)).is_ok_and(|r| r.intersects(Readiness::OUT | Readiness::ERR))
        });
        if !ready {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect did not complete in time"));
        }
        match self.net.with_stack(|s| s.connect(fd, Some(addr))) {
            Ok(()) | Err(Errno::EISCONN) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.net.with_stack(|s| s.getsockname(self.fd)).map_err(os_err)
    }

    /// Sends all of `data`, waiting for room until `deadline`.
    pub fn send_all(&self, data: &[u8], deadline: Instant) -> io::Result<()> {
        let mut at = 0;
        // Each round either sends at least one byte or sleeps; bounded by the deadline's number of sleeps.
        let max_rounds = data.len() as u64 + deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        for _ in 0..=max_rounds {
            if at == data.len() {
                return Ok(());
            }
            match self.net.with_stack(|s| s.send(self.fd, &data[at..], MsgFlags::DONTWAIT)) {
                Ok(n) => at += n,
                Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(os_err(e)),
            }
        }
        if at == data.len() {
            return Ok(());
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("sent {at} of {} bytes before the deadline", data.len())))
    }

    /// Reads until end of file (at most `limit` bytes: more is an error) or `deadline`.
    pub fn read_to_eof(&self, limit: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let max_rounds = limit as u64 + deadline.saturating_duration_since(Instant::now()).as_millis() as u64 + 1;
        for _ in 0..=max_rounds {
            match self.net.with_stack(|s| s.recv(self.fd, &mut buf, MsgFlags::DONTWAIT)) {
                Ok(0) => return Ok(got),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() > limit {
                        return Err(io::Error::other(format!("more than {limit} bytes before end of file")));
                    }
                }
                Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(os_err(e)),
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("no end of file after {} bytes", got.len())))
    }

    /// Reads exactly `n` bytes, or fails at end of file or `deadline`.
    pub fn read_exact(&self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut got = vec![0u8; n];
        let mut at = 0;
        let max_rounds = n as u64 + deadline.saturating_duration_since(Instant::now()).as_millis() as u64 + 1;
        for _ in 0..=max_rounds {
            if at == n {
                return Ok(got);
            }
            match self.net.with_stack(|s| s.recv(self.fd, &mut got[at..], MsgFlags::DONTWAIT)) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("end of file after {at} of {n}")))
                }
                Ok(k) => at += k,
                Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(os_err(e)),
            }
        }
        if at == n {
            return Ok(got);
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("read {at} of {n} bytes before the deadline")))
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.net.with_stack(|s| s.shutdown(self.fd, Shutdown::Write)).map_err(os_err)
    }

    /// Every connection waiting in the accept queue of the listener `listener_fd`, taken under one hold of the
    /// stack's lock, so that none can join the queue while it is being emptied (at most `max`).
    pub fn drain_accept_queue(net: &NetStack, listener_fd: Fd, max: usize) -> Vec<(RawTcp, SocketAddr)> {
        let taken = net.with_stack(|s| {
            let mut taken = Vec::new();
            while taken.len() < max {
                match s.accept(listener_fd) {
                    Ok(conn) => taken.push(conn),
                    Err(_) => break,
                }
            }
            taken
        });
        taken.into_iter().map(|(fd, from)| (RawTcp { net: net.clone(), fd }, from)).collect()
    }
}

impl Drop for RawTcp {
    fn drop(&mut self) {
        let fd = self.fd;
        let _ = self.net.with_stack(|s| s.close(fd));
    }
}

/// What [`Impaired`] does to the frames of each direction, as netem's `loss L reorder R duplicate D delay T`
/// does: a frame is lost with probability `loss`, else sent twice with probability `duplicate`; each copy waits
/// `delay`, except that with probability `reorder` it goes at once, ahead of the delayed frames before it.
#[derive(Debug, Clone)]
pub struct Impairment {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub delay: Duration,
    /// Frames waiting in one direction, at most (netem's default `limit` is 1000); more are dropped.
    pub limit: usize,
    pub seed: u64,
}

/// What [`Impaired`] did, per direction (`[to the stack, from the stack]`), readable while the stack runs.
#[derive(Debug, Default)]
pub struct ImpairStats {
    pub frames: [AtomicU64; 2],
    pub lost: [AtomicU64; 2],
    pub duplicated: [AtomicU64; 2],
    pub reordered: [AtomicU64; 2],
    pub overflowed: [AtomicU64; 2],
}

impl ImpairStats {
    fn bump(counter: &[AtomicU64; 2], dir: usize) {
        counter[dir].fetch_add(1, Ordering::Relaxed);
    }

    /// One line per direction, for messages.
    pub fn summary(&self) -> String {
        let get = |c: &[AtomicU64; 2], d: usize| c[d].load(Ordering::Relaxed);
        ["to ustack", "from ustack"]
            .iter()
            .enumerate()
            .map(|(d, name)| {
                format!(
                    "{name}: {} frames, {} lost, {} duplicated, {} reordered, {} over the limit\n",
                    get(&self.frames, d),
                    get(&self.lost, d),
                    get(&self.duplicated, d),
                    get(&self.reordered, d),
                    get(&self.overflowed, d)
                )
            })
            .collect()
    }

    pub fn lost(&self, dir: usize) -> u64 {
        self.lost[dir].load(Ordering::Relaxed)
    }

    pub fn reordered(&self, dir: usize) -> u64 {
        self.reordered[dir].load(Ordering::Relaxed)
    }

    pub fn duplicated(&self, dir: usize) -> u64 {
        self.duplicated[dir].load(Ordering::Relaxed)
    }
}

/// Frames of one direction waiting for their time, in the order they leave (by time, then arrival).
#[derive(Debug, Default)]
struct Lane {
    queue: VecDeque<(Instant, Vec<u8>)>,
}

impl Lane {
    fn insert(&mut self, at: Instant, frame: Vec<u8>) {
        // After every frame due no later than `at`: equal times keep their order.
        let i = self.queue.partition_point(|(t, _)| *t <= at);
        self.queue.insert(i, (at, frame));
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _)| *t <= now) {
            return self.queue.pop_front().map(|(_, f)| f);
        }
        None
    }
}

/// A device between the stack and another device (a TAP) that loses, duplicates, delays and reorders frames
/// in both directions, seeded and so reproducible in what it decides (not in timing). It offers no pollable
/// descriptor, so the stack's driver looks at it every millisecond, which also releases delayed frames.
pub struct Impaired<D: Device> {
    inner: D,
    config: Impairment,
    rng: Rng,
    lanes: [Lane; 2],
    scratch: FrameBatch,
    stats: Arc<ImpairStats>,
}

const TO_STACK: usize = 0;
const FROM_STACK: usize = 1;

impl<D: Device> Impaired<D> {
    pub fn new(inner: D, config: Impairment) -> (Impaired<D>, Arc<ImpairStats>) {
        let stats = Arc::new(ImpairStats::default());
        let slot = inner.mtu() + 14 + 4;
        let device = Impaired {
            inner,
            rng: Rng::new(config.seed),
            config,
            lanes: [Lane::default(), Lane::default()],
            scratch: FrameBatch::new(64, slot),
            stats: Arc::clone(&stats),
        };
        (device, stats)
    }

    /// Passes one frame through the impairment into lane `dir`.
    fn admit(&mut self, dir: usize, frame: &[u8], now: Instant) {
        ImpairStats::bump(&self.stats.frames, dir);
        if self.rng.chance(self.config.loss) {
            ImpairStats::bump(&self.stats.lost, dir);
            return;
        }
        let copies = if self.rng.chance(self.config.duplicate) {
            ImpairStats::bump(&self.stats.duplicated, dir);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.lanes[dir].queue.len() >= self.config.limit {
                ImpairStats::bump(&self.stats.overflowed, dir);
                continue;
            }
            let at = if self.rng.chance(self.config.reorder) {
                if !self.lanes[dir].queue.is_empty() {
                    ImpairStats::bump(&self.stats.reordered, dir);
                }
                now
            } else {
                now + self.config.delay
            };
            self.lanes[dir].insert(at, frame.to_vec());
        }
    }

    /// Hands the frames from the stack whose time has come to the inner device.
    fn flush_to_inner(&mut self, now: Instant) -> io::Result<usize> {
        let mut sent = 0;
        // Each round moves one batch; the lane holds at most `limit` frames.
        for _ in 0..=self.lanes[FROM_STACK].queue.len() / self.scratch.capacity().max(1) + 1 {
            self.scratch.clear();
            while !self.scratch.is_full() {
                match self.lanes[FROM_STACK].pop_due(now) {
                    Some(frame) => {
                        self.scratch.push(&frame);
                    }
                    None => break,
                }
            }
            if self.scratch.is_empty() {
                return Ok(sent);
            }
            sent += self.inner.send_batch(&mut self.scratch)?;
        }
        Ok(sent)
    }
}

impl<D: Device> Device for Impaired<D> {
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
        let now = Instant::now();
        // Delayed frames from the stack leave on the driver's regular look, too.
        self.flush_to_inner(now)?;
        // Take everything the inner device has (bounded: it stops when nothing is ready).
        for _ in 0..64 {
            self.scratch.clear();
            let n = self.inner.recv_batch(&mut self.scratch)?;
            let frames: Vec<Vec<u8>> = self.scratch.iter().map(<[u8]>::to_vec).collect();
            for frame in &frames {
                self.admit(TO_STACK, frame, now);
            }
            if n < self.scratch.capacity() {
                break;
            }
        }
        let mut delivered = 0;
        while !batch.is_full() {
            match self.lanes[TO_STACK].pop_due(now) {
                Some(frame) => {
                    batch.push(&frame);
                    delivered += 1;
                }
                None => break,
            }
        }
        Ok(delivered)
    }

    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let now = Instant::now();
        let frames: Vec<Vec<u8>> = batch.iter().map(<[u8]>::to_vec).collect();
        batch.clear();
        for frame in &frames {
            self.admit(FROM_STACK, frame, now);
        }
        let _ = self.flush_to_inner(now)?;
        Ok(frames.len())
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        None
    }
}
