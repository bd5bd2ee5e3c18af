//! An event-loop TCP echo server on ustack: one thread, non-blocking sockets, and the stack's epoll registry
//! (level-triggered), as one would write it over `epoll(7)`. It serves thousands of clients at once.
//!
//! Each connection is read while it has nothing waiting to go out; what was read is written back, and while
//! some of it is still waiting (the client reads slowly) the connection is watched for room to write instead
//! of for data, so a slow client is never buffered without bound. When the client shuts down its sending side
//! and everything has been echoed, the server closes the connection.
//!
//! ```text
//! cargo run -p ustack --example epoll_echo -- --tap tap0 --ip 198.18.0.2/24 --port 7
//! ```

mod common;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;
use ustack::runtime::{Epoll, TcpListener, TcpStream};
use ustack::socket::epoll::EpollEvent;
use ustack::Readiness;

const USAGE: &str = "\
epoll_echo: a single-threaded TCP echo server on ustack's epoll

usage: epoll_echo --tap NAME [--netns NAME] [--ip CIDR] [--port PORT] [--exit-after N] [--verbose 1]

  --port PORT         the port to listen on [default: 7]
  --exit-after N      stop after N connections have been served [default: run until killed]
  --verbose 1         print a line for every connection, not only every 100th";

/// The token of the listening socket; connections get 0, 1, 2, ...
const LISTENER: u64 = u64::MAX;
/// Bytes read from a connection at a time.
const CHUNK: usize = 16 * 1024;
/// A connection that has shown no readiness for this long is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const IN: u32 = Readiness::IN.0 as u32;
const OUT: u32 = Readiness::OUT.0 as u32;

/// One client connection and what it still has to send back.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back: `pending[written..]`.
    pending: Vec<u8>,
    written: usize,
    /// The client has shut down its sending side.
    eof: bool,
    echoed: u64,
    /// The interest registered with epoll now (IN or OUT).
    interest: u32,
    last_activity: std::time::Instant,
}

/// What a connection wants after handling an event.
enum Next {
    /// Watch it for these events.
    Watch(u32),
    /// Everything has been echoed: close it.
    Done,
}

impl Conn {
    /// Makes whatever progress the socket allows now, without blocking.
    fn progress(&mut self, buf: &mut [u8]) -> io::Result<Next> {
        self.last_activity = std::time::Instant::now();
        // First send back what is waiting; while some is left, wait for room rather than read more.
        if !self.flush()? {
            return Ok(Next::Watch(OUT));
        }
        // Then read once (not until empty, so that one busy client cannot starve the others; level-triggered
        // epoll reports the connection again while data is left) and echo what came.
        if !self.eof {
            match self.stream.read_bytes(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    if !self.flush()? {
                        return Ok(Next::Watch(OUT));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if self.eof {
            // The client is done sending and everything has gone back: finish our side too.
            self.stream.shutdown(Shutdown::Write)?;
            return Ok(Next::Done);
        }
        Ok(Next::Watch(IN))
    }

    /// Writes what is pending until done (true) or the send buffer is full (false).
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.pending.len() {
            match self.stream.write_bytes(&self.pending[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    self.echoed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.written = 0;
        Ok(true)
    }
}

fn main() {
    let opts = common::Options::parse(&format!("{USAGE}\n\n{}", common::STACK_USAGE), &options());
    let port: u16 = opts.get_or("port", 7);
    let exit_after: Option<usize> = opts.get("exit-after");
    let verbose = opts.get_or("verbose", 0u8) != 0;
    let net = common::start_stack(&opts);

    let addr = SocketAddr::new(common::stack_ip(&opts), port);
    let mut listener = Some(
        TcpListener::bind_with_backlog(&net, addr, 1024)
            .unwrap_or_else(|e| common::fail(format!("cannot listen on {addr}: {e}"))),
    );
    let epoll = Epoll::new(&net).unwrap_or_else(|e| common::fail(format!("cannot create an epoll instance: {e}")));
    if let Some(l) = &listener {
        l.set_nonblocking(true).and_then(|()| epoll.add(l.fd(), IN, LISTENER)).unwrap_or_else(|e| common::fail(e));
    }
    println!("epoll echo server listening on {addr}");

    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = 0u64;
    let (mut accepted, mut served, mut failed, mut echoed, mut most) = (0usize, 0usize, 0usize, 0u64, 0usize);
    let mut events = vec![EpollEvent { events: 0, data: 0 }; 1024];
    let mut buf = vec![0u8; CHUNK];
    let mut last_sweep = std::time::Instant::now();
    while listener.is_some() || !conns.is_empty() {
        let n = epoll.wait(&mut events, Some(Duration::from_secs(1))).unwrap_or_else(|e| common::fail(e));
        for event in &events[..n] {
            if event.data == LISTENER {
                let Some(l) = &listener else { continue };
                // Take every connection waiting in the accept queue.
                loop {
                    let (stream, peer) = match l.accept() {
                        Ok(conn) => conn,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => common::fail(format!("accept failed: {e}")),
                    };
                    accepted += 1;
                    let token = next_token;
                    next_token += 1;
                    let registered = stream.set_nonblocking(true).and_then(|()| epoll.add(stream.fd(), IN, token));
                    if let Err(e) = registered {
                        println!("{peer}: cannot watch the connection: {e}");
                        failed += 1;
                        continue;
                    }
                    let now = std::time::Instant::now();
                    let conn = Conn {
                        stream,
                        peer,
                        pending: Vec::new(),
                        written: 0,
                        eof: false,
                        echoed: 0,
                        interest: IN,
                        last_activity: now,
                    };
                    conns.insert(token, conn);
                    most = most.max(conns.len());
                    if exit_after.is_some_and(|max| accepted >= max) {
                        // Stop listening: later clients are refused, and the loop ends once these are served.
                        let _ = epoll.delete(l.fd());
                        listener = None;
                        break;
                    }
                }
                continue;
            }
            let token = event.data;
            let Some(conn) = conns.get_mut(&token) else { continue };
            let outcome = match conn.progress(&mut buf) {
                Ok(Next::Watch(interest)) if interest == conn.interest => continue,
                Ok(Next::Watch(interest)) => epoll.modify(conn.stream.fd(), interest, token).map(|()| {
                    conn.interest = interest;
                    false
                }),
                Ok(Next::Done) => Ok(true),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(false) => {}
                Ok(true) => {
                    let conn = conns.remove(&token).expect("present");
                    served += 1;
                    echoed += conn.echoed;
                    if verbose || served.is_multiple_of(100) {
                        println!("{}: echoed {} bytes ({served} connections served)", conn.peer, conn.echoed);
                    }
                    // Dropping the stream closes it; epoll forgets a closed descriptor by itself.
                }
                Err(e) => {
                    let conn = conns.remove(&token).expect("present");
                    println!("{}: failed after echoing {} bytes: {e}", conn.peer, conn.echoed);
                    failed += 1;
                }
            }
        }
        // Once a second, give up on connections that went quiet (a client that vanished without a trace).
        let now = std::time::Instant::now();
        if now.duration_since(last_sweep) < Duration::from_secs(1) {
            continue;
        }
        last_sweep = now;
        conns.retain(|_, c| {
            let alive = now.duration_since(c.last_activity) < IDLE_TIMEOUT;
            if !alive {
                println!("{}: idle for {IDLE_TIMEOUT:?}, closing", c.peer);
                failed += 1;
            }
            alive
        });
    }
    println!(
        "served {served} connections ({failed} failed), echoed {echoed} bytes, at most {most} connections at once"
    );
    drop(epoll);
    common::finish(&net);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn options() -> Vec<&'static str> {
    let mut known = common::STACK_OPTIONS.to_vec();
    known.extend(["port", "exit-after", "verbose"]);
    known
}
