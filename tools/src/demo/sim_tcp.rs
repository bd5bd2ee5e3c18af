//! The demo's TCP part between two stacks in memory, with the sans-IO socket calls: stack B runs the HTTP server
//! and the TCP echo service (the same HTTP code as `serve --http`), stack A connects to them the way a
//! non-blocking client does: `connect` answers `EINPROGRESS`, and the socket turning writable says the
//! handshake is done.

use super::report::Report;
use super::{
    compare_echo, http_addr, http_request, http_time_waits, show_sockets, tcp_echo_payloads, ECHO_PORT, HTTP_BYTES,
    HTTP_PORT, USTACK_IP,
};
use crate::cli_util::Failure;
use crate::http;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ustack::sim::SimNet;
use ustack::{Domain, Duration, Errno, Fd, MsgFlags, Readiness, Shutdown, SockOpt, SockType, Stack};

/// How much virtual time one exchange may take before the check fails (a perfect link needs milliseconds).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Virtual time given to the last ACKs after both sides closed.
const SETTLE: Duration = Duration::from_secs(1);
/// Read buffer of either side.
const READ_BUF: usize = 64 * 1024;

/// Stack B's TCP services, moved along by hand between the link's events.
pub struct Services {
    http: Fd,
    echo: Fd,
    conns: Vec<ServerConn>,
    buf: Vec<u8>,
}

impl Services {
    /// Listens on B's HTTP and echo ports.
    pub fn listen(b: &mut Stack) -> Result<Services, Errno> {
        let listen = |b: &mut Stack, port: u16| -> Result<Fd, Errno> {
            let fd = b.socket(Domain::Inet, SockType::Stream)?;
            b.setsockopt(fd, SockOpt::ReuseAddr, 1)?;
            b.bind(fd, SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))?;
            b.listen(fd, 128)?;
            Ok(fd)
        };
        let (http, echo) = (listen(b, HTTP_PORT)?, listen(b, ECHO_PORT)?);
        Ok(Services { http, echo, conns: Vec::new(), buf: vec![0; READ_BUF] })
    }

    /// Accepts what is waiting and moves every connection along as far as it goes without blocking.
    pub fn step(&mut self, b: &mut Stack) {
        for (listener, is_http) in [(self.http, true), (self.echo, false)] {
            while let Ok((fd, peer)) = b.accept(listener) {
                tracing::debug!(%peer, http = is_http, "stack B accepted a TCP connection");
                let role = if is_http {
                    Role::Http { parser: http::Connection::new(), out: None }
                } else {
                    Role::Echo { pending: Vec::new() }
                };
                self.conns.push(ServerConn { fd, role, eof: false, write_shut: false, closed: false });
            }
        }
        for conn in &mut self.conns {
            conn.step(b, &mut self.buf);
        }
        self.conns.retain(|c| !c.closed);
    }
}

enum Role {
    Http { parser: http::Connection, out: Option<http::Outgoing> },
    Echo { pending: Vec<u8> },
}

/// One of B's accepted connections.
struct ServerConn {
    fd: Fd,
    role: Role,
    /// The peer's FIN has been read.
    eof: bool,
    /// Our FIN is queued (after a response that closes the connection).
    write_shut: bool,
    closed: bool,
}

impl ServerConn {
    fn step(&mut self, b: &mut Stack, buf: &mut [u8]) {
        if self.closed {
            return;
        }
        if let Err(e) = self.try_step(b, buf) {
            tracing::warn!(err = %e, "stack B's connection failed");
            let _ = b.close(self.fd);
            self.closed = true;
        }
    }

    fn try_step(&mut self, b: &mut Stack, buf: &mut [u8]) -> Result<(), Errno> {
        while !self.eof {
            match b.recv(self.fd, buf, MsgFlags::DONTWAIT) {
                Ok(0) => self.eof = true,
                Ok(n) => match &mut self.role {
                    Role::Http { parser, .. } => parser.received(&buf[..n]),
                    Role::Echo { pending } => pending.extend_from_slice(&buf[..n]),
                },
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e),
            }
        }
        let flushed = match &mut self.role {
            Role::Echo { pending } => {
                while !pending.is_empty() {
                    match b.send(self.fd, pending, MsgFlags::NONE) {
                        Ok(n) => drop(pending.drain(..n)),
                        Err(Errno::EAGAIN) => break,
                        Err(e) => return Err(e),
                    }
                }
                pending.is_empty()
            }
            Role::Http { parser, out } => loop {
                if out.is_none() && !self.write_shut {
                    *out = parser.next_response().map(http::Outgoing::new);
                }
                let Some(outgoing) = out else { break true };
                while !outgoing.is_done() {
                    match b.send(self.fd, &outgoing.chunk(), MsgFlags::NONE) {
                        Ok(n) => outgoing.advance(n),
                        Err(Errno::EAGAIN) => break,
                        Err(e) => return Err(e),
                    }
                }
                if !outgoing.is_done() {
                    break false;
                }
                let close = outgoing.response().close;
                *out = None;
                if close {
                    // FIN after the response; the descriptor closes once the peer's FIN has been read.
                    b.shutdown(self.fd, Shutdown::Write)?;
                    self.write_shut = true;
                }
            },
        };
        if self.eof && flushed {
            b.close(self.fd)?;
            self.closed = true;
        }
        Ok(())
    }
}

/// Runs the link, with B's services answering, until `f` (given stack A) returns a value, or until
/// `timeout` of virtual time has passed (`None`).
fn drive<T>(
    sim: &mut SimNet,
    services: &mut Services,
    timeout: Duration,
    mut f: impl FnMut(&mut Stack) -> Option<T>,
) -> Option<T> {
    let mut out = None;
    let deadline = sim.now() + timeout;
    sim.run_until(deadline, |net| {
        services.step(&mut net.b);
        out = f(&mut net.a);
        out.is_some()
    });
    out
}

/// The TCP steps: B's services must be listening.
pub fn run(sim: &mut SimNet, services: &mut Services, report: &mut Report) -> Result<(), Failure> {
    let before = sim.b.counters().tcp.clone();
    report.step(&format!("Stack A fetches http://{USTACK_IP}/bytes/{HTTP_BYTES} from stack B's HTTP server"));
    if let Some(fd) = connect(sim, services, http_addr(), report)? {
        report.check(fetch(sim, services, fd));
        let _ = sim.a.close(fd);
    }

    let echo = SocketAddr::V4(SocketAddrV4::new(USTACK_IP, ECHO_PORT));
    report.step(&format!("Stack A sends bytes to stack B's TCP echo service at {echo}"));
    if let Some(fd) = connect(sim, services, echo, report)? {
        tcp_echo(sim, services, fd, report);
        let _ = sim.a.close(fd);
    }

    report.step("Stack B's socket table, as `ss -tuano` shows it");
    drive(sim, services, SETTLE, |_| None::<()>);
    let rows = sim.b.sockets_snapshot(sim.now());
    show_sockets(report, &rows);
    report.check(match http_time_waits(&rows).first() {
        Some(_) => Ok("B closed the HTTP connection first (the request said Connection: close), so B keeps it in \
                       TIME-WAIT for 60 s, as Linux does"
            .to_string()),
        None => Err("B closed the HTTP connection first, yet no TIME-WAIT entry for it appeared".into()),
    });
    let tcp = &sim.b.counters().tcp;
    let opens = tcp.passive_opens - before.passive_opens;
    report.check(if opens == 2 {
        Ok("B counted both connections: TcpPassiveOpens went up by 2".to_string())
    } else {
        Err(format!("B's TcpPassiveOpens went up by {opens}, expected 2"))
    });
    let resets = tcp.out_rsts - before.out_rsts;
    report.check(if resets == 0 {
        Ok("both connections ended with FIN; B sent no RST (TcpOutRsts did not move)".to_string())
    } else {
        Err(format!("B sent {resets} RST segment(s); both connections should have ended with FIN"))
    });
    Ok(())
}

/// A non-blocking connect from A: `EINPROGRESS`, then writable once the handshake is done. `None` (with the
/// failure reported) when it did not complete.
fn connect(
    sim: &mut SimNet,
    services: &mut Services,
    to: SocketAddr,
    report: &mut Report,
) -> Result<Option<Fd>, Failure> {
    let fd = sim.a.socket(Domain::Inet, SockType::Stream).map_err(|e| Failure::new(format!("socket() on A: {e}")))?;
    match sim.a.connect(fd, Some(to)) {
        Err(Errno::EINPROGRESS) => report.say(format!("A's connect() to {to} returned EINPROGRESS: its SYN is queued")),
        other => {
            report.fail(format!("A's connect() to {to} returned {other:?}, expected EINPROGRESS"));
            let _ = sim.a.close(fd);
            return Ok(None);
        }
    }
    let ready = drive(sim, services, TCP_TIMEOUT, |a| {
        let r = a.readiness(fd).unwrap_or(Readiness::ERR);
        r.intersects(Readiness::OUT | Readiness::ERR).then_some(r)
    });
    let error = sim.a.getsockopt(fd, SockOpt::Error).unwrap_or(0);
    match ready {
        Some(r) if r.contains(Readiness::OUT) && error == 0 => {
            report.pass("the socket turned writable (Readiness::OUT): SYN, SYN-ACK and ACK have been exchanged");
            Ok(Some(fd))
        }
        Some(_) => {
            report.fail(format!(
                "the connection to {to} failed: {}",
                Errno::from_code(error).map_or(error.to_string(), |e| e.to_string())
            ));
            let _ = sim.a.close(fd);
            Ok(None)
        }
        None => {
            report.fail(format!("the handshake with {to} did not finish within {TCP_TIMEOUT:?} of virtual time"));
            let _ = sim.a.close(fd);
            Ok(None)
        }
    }
}

/// Sends the GET request on `fd`, reads until B closes, and checks every byte.
fn fetch(sim: &mut SimNet, services: &mut Services, fd: Fd) -> Result<String, String> {
    let request = http_request();
    let sent = sim.a.send(fd, request.as_bytes(), MsgFlags::NONE).map_err(|e| format!("send on A failed: {e}"))?;
    if sent != request.len() {
        return Err(format!("A's send took {sent} of the request's {} bytes", request.len()));
    }
    let segments_before = sim.b.counters().tcp.out_segs;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let end = drive(sim, services, TCP_TIMEOUT, |a| loop {
        match a.recv(fd, &mut buf, MsgFlags::DONTWAIT) {
            Ok(0) => return Some(Ok(())),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => return None,
            Err(e) => return Some(Err(e)),
        }
    });
    match end {
        None => {
            return Err(format!("B did not finish the response within {TCP_TIMEOUT:?} ({} bytes arrived)", raw.len()))
        }
        Some(Err(e)) => return Err(format!("recv on A failed with {e} after {} bytes", raw.len())),
        Some(Ok(())) => {}
    }
    let segments = sim.b.counters().tcp.out_segs - segments_before;
    http::check_bytes_response(&raw, HTTP_BYTES).map(|what| format!("{what} (B sent {segments} segments)"))
}

/// Each payload out and back; then A half-closes and B must close too.
fn tcp_echo(sim: &mut SimNet, services: &mut Services, fd: Fd, report: &mut Report) {
    let mut buf = vec![0u8; READ_BUF];
    for (what, payload) in tcp_echo_payloads() {
        let (mut sent, mut echoed) = (0, Vec::new());
        let outcome = drive(sim, services, TCP_TIMEOUT, |a| {
            while sent < payload.len() {
                match a.send(fd, &payload[sent..], MsgFlags::NONE) {
                    Ok(n) => sent += n,
                    Err(Errno::EAGAIN) => break,
                    Err(e) => return Some(Err(format!("send on A failed with {e}"))),
                }
            }
            loop {
                match a.recv(fd, &mut buf, MsgFlags::DONTWAIT) {
                    Ok(0) => return Some(Err(format!("B closed after echoing {} bytes", echoed.len()))),
                    Ok(n) => echoed.extend_from_slice(&buf[..n]),
                    Err(Errno::EAGAIN) => break,
                    Err(e) => return Some(Err(format!("recv on A failed with {e}"))),
                }
            }
            (echoed.len() >= payload.len()).then_some(Ok(()))
        });
        let outcome = match outcome {
            None => Err(format!("{} of {} bytes came back within {TCP_TIMEOUT:?}", echoed.len(), payload.len())),
            Some(result) => result.and_then(|()| compare_echo(&payload, &echoed)),
        };
        let failed = outcome.is_err();
        report.check(outcome.map(|()| format!("{what}: echoed back byte for byte")));
        if failed {
            return;
        }
    }
    if let Err(e) = sim.a.shutdown(fd, Shutdown::Write) {
        return report.fail(format!("shutdown(SHUT_WR) on A failed with {e}"));
    }
    let closed = drive(sim, services, TCP_TIMEOUT, |a| match a.recv(fd, &mut buf, MsgFlags::DONTWAIT) {
        Err(Errno::EAGAIN) => None,
        other => Some(other),
    });
    report.check(match closed {
        Some(Ok(0)) => Ok("A sent FIN; B's service saw end of file and closed its side too".into()),
        Some(Ok(n)) => Err(format!("after A's FIN, {n} more bytes came back instead of end of file")),
        Some(Err(e)) => Err(format!("after A's FIN, recv on A failed with {e}")),
        None => Err(format!("B did not close its side within {TCP_TIMEOUT:?} after A's FIN")),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ustack::StackConfig;
    use ustack_netdev::pipe::PipeConfig;

    #[test]
    fn the_simulated_tcp_steps_pass() {
        let a = StackConfig::new(crate::cli_util::mac_from_ip(super::super::PEER_IP), super::super::peer_cidr());
        let mut a = a;
        a.seed ^= 0x4141;
        let b = StackConfig::new(crate::cli_util::mac_from_ip(USTACK_IP), super::super::ustack_cidr());
        let mut sim = SimNet::new(a, b, PipeConfig::default());
        let mut services = Services::listen(&mut sim.b).unwrap();
        let mut report = Report::new();
        run(&mut sim, &mut services, &mut report).unwrap();
        assert!(report.finish().is_ok());
        let now = sim.now();
        assert!(
            sim.b.sockets_snapshot(now).iter().any(|row| row.state == "TIME-WAIT"),
            "B's HTTP connection waits in TIME-WAIT"
        );
    }
}
