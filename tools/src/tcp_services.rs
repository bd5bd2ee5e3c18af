//! TCP services on a running stack: echo (RFC 862), discard (RFC 863) and a small HTTP/1.1 server (see
//! [`crate::http`]). One thread accepts for each listening port and one thread serves each connection, with
//! blocking sockets whose read and write timeouts are short, so that every thread notices a stop quickly.

use crate::http;
use crate::service_threads::ServiceThreads;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ustack::runtime::{NetStack, TcpListener, TcpStream};

/// How often a waiting thread looks at the stop flag (the read and write timeouts of every connection).
const STOP_POLL: Duration = Duration::from_millis(200);
/// How often an idle accept thread looks for a new connection. The runtime's `accept` cannot be woken by
/// anything but a connection, so it is polled without blocking; 10 ms is unnoticeable next to a handshake.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// Connections served at once across every service; more are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 512;
/// An HTTP connection with no request in progress for this long is closed (a keep-alive idle timeout).
const HTTP_IDLE: Duration = Duration::from_secs(30);
/// A peer that takes nothing from a full send buffer for this long is given up on.
const WRITE_STALL: Duration = Duration::from_secs(60);
/// After sending a closing response, how long the rest of the peer's input is read and dropped, so that
/// the close sends FIN rather than a RST that could destroy the response in flight (RFC 9112 section 9.6).
const LINGER: Duration = Duration::from_secs(2);
/// Read buffer of a connection.
const READ_BUF: usize = 64 * 1024;

/// What a listening port offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Everything read is written back (RFC 862).
    Echo,
    /// Everything read is dropped (RFC 863).
    Discard,
    /// HTTP/1.1 with keep-alive.
    Http,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Echo => "TCP echo",
            Service::Discard => "TCP discard",
            Service::Http => "HTTP",
        })
    }
}

/// Accept threads (which own their connections' threads) that stop together.
pub struct TcpServices {
    threads: ServiceThreads,
}

impl TcpServices {
    /// Listens on `0.0.0.0:PORT` for each service, here on the caller's thread so that a refused port (given
    /// twice) is reported before anything runs, then starts one accept thread per port.
    pub fn start(net: &NetStack, services: &[(Service, u16)]) -> io::Result<TcpServices> {
        let active = Arc::new(AtomicUsize::new(0));
        let mut listeners = Vec::new();
        for &(service, port) in services {
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
            let listener = TcpListener::bind(net, addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen for the {service} service on {addr}: {e}"))
            })?;
            listener.set_nonblocking(true)?;
            listeners.push((service, port, listener));
        }
        let mut threads = ServiceThreads::new();
        for (service, port, listener) in listeners {
            let active = Arc::clone(&active);
            threads.spawn(format!("tcp-{port}"), move |stop| accept_loop(&listener, service, port, stop, &active))?;
            tracing::debug!(port, %service, "TCP service listening");
        }
        Ok(TcpServices { threads })
    }

    /// Stops every thread and waits for them; open connections are closed.
    pub fn stop(self) {
        self.threads.stop();
    }
}

/// Accepts until stopped, one thread per connection; waits for those threads before returning, and the
/// listener closes with it.
fn accept_loop(listener: &TcpListener, service: Service, port: u16, stop: &Arc<AtomicBool>, active: &Arc<AtomicUsize>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                tracing::warn!(port, %service, err = %e, "accept failed");
                std::thread::sleep(STOP_POLL);
                continue;
            }
        };
        connections.retain(|c| !c.is_finished());
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(port, %service, %peer, "{MAX_CONNECTIONS} connections open already; closing the new one");
            continue;
        }
        tracing::debug!(port, %service, %peer, "accepted TCP connection");
        let (stop, active) = (Arc::clone(stop), Arc::clone(active));
        let spawned = std::thread::Builder::new().name(format!("tcp-{port}-{}", peer.port())).spawn(move || {
            let conn = Conn { stream, peer, port, stop: &stop, bytes_in: 0, bytes_out: 0 };
            conn.serve(service);
            active.fetch_sub(1, Ordering::SeqCst);
        });
        match spawned {
            Ok(thread) => connections.push(thread),
            Err(e) => tracing::warn!(port, %service, err = %e, "cannot start a thread for a connection"),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Why a connection ended early.
enum End {
    Stopped,
    Failed(io::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Stopped => f.write_str("the service is stopping"),
            End::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One accepted connection and what went through it.
struct Conn<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    stop: &'a AtomicBool,
    bytes_in: u64,
    bytes_out: u64,
}

impl Conn<'_> {
    fn serve(mut self, service: Service) {
        let outcome = self
            .stream
            .set_read_timeout(Some(STOP_POLL))
            .and_then(|()| self.stream.set_write_timeout(Some(STOP_POLL)))
            // As HTTP servers do (nginx's tcp_nodelay): the tail of a response must not wait for the client's
            // delayed ACK under Nagle's algorithm. Responses are written in large pieces, so few segments are short.
            .and_then(|()| if service == Service::Http { self.stream.set_nodelay(true) } else { Ok(()) })
            .map_err(End::Failed)
            .and_then(|()| match service {
                Service::Echo => self.echo(true),
                Service::Discard => self.echo(false),
                Service::Http => self.http(),
            });
        let (peer, port, bytes_in, bytes_out) = (self.peer, self.port, self.bytes_in, self.bytes_out);
        let how = match outcome {
            Ok(how) => how.to_string(),
            Err(why) => why.to_string(),
        };
        tracing::debug!(port, %service, %peer, bytes_in, bytes_out, "closed TCP connection: {how}");
        // Dropping the stream closes it: FIN, or RST when unread data is left (as Linux does).
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Reads some bytes; `Ok(None)` when the read timed out and the service is still running.
    fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, End> {
        match self.stream.read_bytes(buf) {
            Ok(n) => {
                self.bytes_in += n as u64;
                Ok(Some(n))
            }
            Err(e) if is_timeout(&e) => {
                if self.stopping() {
                    Err(End::Stopped)
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(End::Failed(e)),
        }
    }

    /// Writes all of `data`, waiting for room as long as the peer keeps taking some.
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), End> {
        let mut progress = Instant::now();
        while !data.is_empty() {
            match self.stream.write_bytes(data) {
                Ok(n) => {
                    self.bytes_out += n as u64;
                    data = &data[n..];
                    progress = Instant::now();
                }
                Err(e) if is_timeout(&e) => {
                    if self.stopping() {
                        return Err(End::Stopped);
                    }
                    if progress.elapsed() > WRITE_STALL {
                        return Err(End::Failed(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the peer took nothing for {WRITE_STALL:?}"),
                        )));
                    }
                }
                Err(e) => return Err(End::Failed(e)),
            }
        }
        Ok(())
    }

    /// Echo (`reply`) or discard until the peer closes.
    fn echo(&mut self, reply: bool) -> Result<&'static str, End> {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match self.read(&mut buf)? {
                Some(0) => return Ok("the peer closed"),
                Some(n) if reply => self.write_all(&buf[..n])?,
                Some(_) | None => {}
            }
        }
    }

    fn http(&mut self) -> Result<&'static str, End> {
        let mut buf = vec![0u8; READ_BUF];
        let mut http = http::Connection::new();
        let mut idle_since = Instant::now();
        loop {
            while let Some(response) = http.next_response() {
                tracing::debug!(port = self.port, peer = %self.peer, status = response.status,
                    body = response.body.len(), close = response.close, "HTTP response");
                let close = response.close;
                self.send(response)?;
                if close {
                    return self.linger_close();
                }
                idle_since = Instant::now();
            }
            match self.read(&mut buf)? {
                Some(0) => return Ok("the peer closed"),
                Some(n) => {
                    http.received(&buf[..n]);
                    idle_since = Instant::now();
                }
                None if idle_since.elapsed() < HTTP_IDLE => {}
                None if http.has_partial_request() => {
                    let response = http.timed_out();
                    self.send(response)?;
                    return self.linger_close();
                }
                None => return Ok("idle for too long"),
            }
        }
    }

    fn send(&mut self, response: http::Response) -> Result<(), End> {
        let mut out = http::Outgoing::new(response);
        while !out.is_done() {
            if self.stopping() {
                return Err(End::Stopped);
            }
            let chunk = out.chunk().into_owned();
            self.write_all(&chunk)?;
            out.advance(chunk.len());
        }
        Ok(())
    }

    /// Sends FIN after the last response, then reads and drops whatever the peer still sends until it closes
    /// too (or [`LINGER`] passes), so that the final close does not turn into a RST.
    fn linger_close(&mut self) -> Result<&'static str, End> {
        self.stream.shutdown(std::net::Shutdown::Write).map_err(End::Failed)?;
        let deadline = Instant::now() + LINGER;
        let mut buf = vec![0u8; READ_BUF];
        while Instant::now() < deadline {
            if let Some(0) = self.read(&mut buf)? {
                return Ok("closed after the response");
            }
        }
        Ok("closed after the response; the peer did not close in time")
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}
