//! Many kernel TCP connections at once, each driven by `poll(2)` from a single thread: the client side of a
//! thousand-connection echo test ([`connect_many`], [`run_echo_clients`]) and a kernel echo server
//! ([`KernelEchoServer`]), both with their sockets inside a peer's network namespace.
//!
//! Nothing waits without a bound: every loop ends by its deadline, and `poll` wakes at least every 200 ms.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ustack_netdev::namespace::Namespace;

use crate::kernel_tcp_util::PatternStream;

/// Bytes moved per read or write call.
const CHUNK: usize = 16 * 1024;
/// Longest single `poll` sleep, so that deadlines and stop flags are looked at often.
const POLL_MS: i32 = 200;

/// Raises this process's open-file limit to its hard limit (a thousand kernel sockets need more than the
/// common soft limit of 1,024).
pub fn raise_fd_limit() {
    ustack_netdev::host::raise_fd_limit();
}

/// Opens `count` kernel TCP connections to `addr` from inside `ns`, one after another (each connect bounded by
/// `connect_timeout`, the whole by `deadline`), and makes them non-blocking.
pub fn connect_many(
    ns: &Namespace,
    addr: SocketAddr,
    count: usize,
    connect_timeout: Duration,
    deadline: Instant,
) -> Result<Vec<TcpStream>, String> {
    raise_fd_limit();
    ns.enter(|| {
        let mut streams = Vec::with_capacity(count);
        for i in 0..count {
            if Instant::now() >= deadline {
                return Err(format!("deadline passed after {i} of {count} connections"));
            }
            let stream = TcpStream::connect_timeout(&addr, connect_timeout)
                .map_err(|e| format!("connection {i} of {count} to {addr} failed: {e}"))?;
            stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            streams.push(stream);
        }
        Ok(streams)
    })
    .map_err(|e| format!("cannot enter the namespace: {e}"))?
}

/// What [`run_echo_clients`] saw.
#[derive(Debug, Clone, Copy)]
pub struct EchoStats {
    pub connections: usize,
    /// Bytes sent (and verified coming back) over all connections.
    pub bytes: u64,
    pub seconds: f64,
}

/// One client connection of [`run_echo_clients`].
struct Client {
    stream: TcpStream,
    data: Vec<u8>,
    sent: usize,
    received: usize,
    done: bool,
}

/// The bytes connection `index` sends: its own reproducible pattern.
pub fn client_data(seed: u64, index: usize, bytes: usize) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    PatternStream::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).fill(&mut data);
    data
}

/// Drives every stream at once: each sends `bytes` of its own pattern, shuts down its sending side, and must
/// read back exactly what it sent and then end of file. All streams are in flight together (one `poll` over
/// them all); fails on the first corrupted, short or failed connection, or when `deadline` passes.
pub fn run_echo_clients(
    streams: Vec<TcpStream>,
    bytes: usize,
    seed: u64,
    deadline: Instant,
) -> Result<EchoStats, String> {
    let started = Instant::now();
    let count = streams.len();
    let mut clients: Vec<Client> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| Client { stream, data: client_data(seed, i, bytes), sent: 0, received: 0, done: false })
        .collect();
    if bytes == 0 {
        for c in &clients {
            c.stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown failed: {e}"))?;
        }
    }
    let mut buf = vec![0u8; CHUNK];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(count);
    let mut which: Vec<usize> = Vec::with_capacity(count);
    let mut finished = 0;
    while finished < count {
        if Instant::now() >= deadline {
            return Err(unfinished_report(&clients, bytes));
        }
        fds.clear();
        which.clear();
        for (i, c) in clients.iter().enumerate().filter(|(_, c)| !c.done) {
            let mut events = libc::POLLIN;
            if c.sent < bytes {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
            which.push(i);
        }
        poll(&mut fds)?;
        for (pfd, &i) in fds.iter().zip(&which) {
            if pfd.revents == 0 {
                continue;
            }
            let c = &mut clients[i];
            let fail = |what: &str, e: &dyn std::fmt::Display, c: &Client| {
                format!(
                    "connection {i}: {what} after sending {} and receiving {} of {bytes} bytes: {e}",
                    c.sent, c.received
                )
            };
            if pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 && c.sent < bytes {
                let end = (c.sent + CHUNK).min(bytes);
                match c.stream.write(&c.data[c.sent..end]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(fail("write failed", &e, c)),
                }
                if c.sent == bytes {
                    c.stream.shutdown(Shutdown::Write).map_err(|e| fail("shutdown failed", &e, c))?;
                }
            }
            if pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
                match c.stream.read(&mut buf) {
                    Ok(0) if c.received == bytes => {
                        c.done = true;
                        finished += 1;
                    }
                    Ok(0) => return Err(fail("early end of file", &"the echo stopped short", c)),
                    Ok(n) if c.received + n > bytes => return Err(fail("too much data", &n, c)),
                    Ok(n) => {
                        if buf[..n] != c.data[c.received..c.received + n] {
                            let at = (0..n).find(|&k| buf[k] != c.data[c.received + k]).unwrap_or(0);
                            return Err(fail("corrupted echo", &format!("byte {} differs", c.received + at), c));
                        }
                        c.received += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(fail("read failed", &e, c)),
                }
            }
        }
    }
    Ok(EchoStats { connections: count, bytes: (bytes * count) as u64, seconds: started.elapsed().as_secs_f64() })
}

fn unfinished_report(clients: &[Client], bytes: usize) -> String {
    let left: Vec<usize> = (0..clients.len()).filter(|&i| !clients[i].done).collect();
    let sample: Vec<String> = left
        .iter()
        .take(5)
        .map(|&i| format!("#{i} sent {} received {}", clients[i].sent, clients[i].received))
        .collect();
    format!(
        "deadline passed with {} of {} connections unfinished ({bytes} bytes each); e.g. {}",
        left.len(),
        clients.len(),
        sample.join(", ")
    )
}

/// `poll(2)` for at most [`POLL_MS`]; EINTR counts as nothing ready.
fn poll(fds: &mut [libc::pollfd]) -> Result<usize, String> {
    ustack_netdev::host::poll(fds, Duration::from_millis(POLL_MS as u64)).map_err(|e| format!("poll failed: {e}"))
}

/// What a [`KernelEchoServer`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoServerStats {
    pub accepted: usize,
    /// Connections echoed to the end and closed.
    pub completed: usize,
    pub failed: usize,
    pub bytes: u64,
}

/// A kernel TCP echo server inside a namespace, on its own thread: one `poll` loop over the listener and every
/// connection. Each connection gets back what it sent and, after the client's end of file, an end of file.
/// Runs until [`KernelEchoServer::stop`] (or drop) or its time limit.
#[derive(Debug)]
pub struct KernelEchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<EchoServerStats>>,
}

struct ServerConn {
    stream: TcpStream,
    pending: Vec<u8>,
    written: usize,
    eof: bool,
    echoed: u64,
}

impl KernelEchoServer {
    /// Listens on `addr` inside `ns` with a backlog of 4,096 and serves until stopped or `max_time` passes.
    pub fn start(ns: &Namespace, addr: SocketAddr, max_time: Duration) -> io::Result<KernelEchoServer> {
        raise_fd_limit();
        let listener = ns.enter(|| TcpListener::bind(addr))??;
        // A second listen() on a listening socket only changes its backlog: room for a thousand connects at once.
        ustack_netdev::host::set_listen_backlog(&listener, 4096)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let deadline = Instant::now() + max_time;
        let thread =
            std::thread::Builder::new().name("kernel-echo".into()).spawn(move || serve(listener, &flag, deadline))?;
        Ok(KernelEchoServer { addr, stop, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and returns what it did.
    pub fn stop(mut self) -> EchoServerStats {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> EchoServerStats {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(stats)) => stats,
            _ => EchoServerStats::default(),
        }
    }
}

impl Drop for KernelEchoServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, deadline: Instant) -> EchoServerStats {
    let mut stats = EchoServerStats::default();
    let mut conns: Vec<ServerConn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        fds.clear();
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let events = if c.written < c.pending.len() { libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
        }
        if poll(&mut fds).is_err() {
            break;
        }
        // Handle the connections polled (before accepting, which changes the list).
        let mut keep = vec![true; conns.len()];
        for (k, c) in conns.iter_mut().enumerate() {
            if fds[k + 1].revents == 0 {
                continue;
            }
            match step(c, &mut buf) {
                Ok(true) => {}
                Ok(false) => {
                    keep[k] = false;
                    stats.completed += 1;
                }
                Err(_) => {
                    keep[k] = false;
                    stats.failed += 1;
                }
            }
        }
        let mut k = 0;
        conns.retain(|c| {
            k += 1;
            if !keep[k - 1] {
                stats.bytes += c.echoed;
            }
            keep[k - 1]
        });
        if fds[0].revents != 0 {
            for _ in 0..4096 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stats.accepted += 1;
                        if stream.set_nonblocking(true).is_ok() {
                            conns.push(ServerConn { stream, pending: Vec::new(), written: 0, eof: false, echoed: 0 });
                        } else {
                            stats.failed += 1;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
    stats
}

/// One step of an echo connection: true while it goes on, false when it has finished.
fn step(c: &mut ServerConn, buf: &mut [u8]) -> io::Result<bool> {
    if c.written == c.pending.len() && !c.eof {
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                c.pending.clear();
                c.written = 0;
                c.pending.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    while c.written < c.pending.len() {
        match c.stream.write(&c.pending[c.written..]) {
            Ok(n) => {
                c.written += n;
                c.echoed += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    if c.eof {
        c.stream.shutdown(Shutdown::Write)?;
        return Ok(false);
    }
    Ok(true)
}
