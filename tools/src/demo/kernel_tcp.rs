//! The demo's TCP part against the Linux kernel: a kernel TCP socket fetches a file from ustack's HTTP server
//! and has ustack's TCP echo service send its bytes back; then ustack's socket table shows what is left.

use super::report::Report;
use super::{
    compare_echo, http_addr, http_request, http_time_waits, show_sockets, tcp_echo_payloads, ECHO_PORT, HTTP_BYTES,
    HTTP_PORT, USTACK_IP,
};
use crate::cli_util::Failure;
use crate::http;
use crate::signals::Interrupt;
use crate::tcp_services::{Service, TcpServices};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};
use ustack::runtime::NetStack;
use ustack_netdev::namespace::Namespace;

/// How long the kernel's TCP sockets wait for ustack before the check fails.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the final ACK may take to turn ustack's closed HTTP connection into a TIME-WAIT entry.
const SETTLE: Duration = Duration::from_secs(2);

/// Starts ustack's HTTP and TCP echo services (stopped by the caller through the returned value).
pub fn start_services(net: &NetStack, report: &Report) -> Result<TcpServices, Failure> {
    let services = TcpServices::start(net, &[(Service::Http, HTTP_PORT), (Service::Echo, ECHO_PORT)])?;
    report.say(format!(
        "ustack also listens on TCP port {HTTP_PORT} (HTTP: /bytes/N is N bytes where byte i is i % 251) \
         and TCP port {ECHO_PORT} (echo)"
    ));
    Ok(services)
}

/// The TCP steps; the services must be running.
pub fn run(ns: &Namespace, net: &NetStack, report: &mut Report, interrupt: &Interrupt) -> Result<(), Failure> {
    let before = net.counters().tcp;
    report.step(&format!("A kernel TCP socket fetches http://{USTACK_IP}/bytes/{HTTP_BYTES} from ustack"));
    report.say("the kernel connects (SYN, SYN-ACK, ACK), sends one GET request and reads until ustack closes");
    report.check(fetch(ns));
    interrupt.check()?;

    let echo = SocketAddr::V4(SocketAddrV4::new(USTACK_IP, ECHO_PORT));
    report.step(&format!("A kernel TCP socket sends bytes to ustack's TCP echo service at {echo}"));
    tcp_echo(ns, echo, report);
    interrupt.check()?;

    report.step("ustack's socket table, as `ss -tuano` shows it");
    let deadline = Instant::now() + SETTLE;
    let mut rows = net.sockets_snapshot();
    while http_time_waits(&rows).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        rows = net.sockets_snapshot();
    }
    show_sockets(report, &rows);
    report.check(match http_time_waits(&rows).first() {
        Some(tw) => Ok(format!(
            "ustack closed the HTTP connection first (the request said Connection: close), so it keeps \
             {} in TIME-WAIT for 60 s, as Linux does",
            tw.peer.map_or_else(String::new, |p| p.to_string())
        )),
        None => Err("ustack closed the HTTP connection first, yet no TIME-WAIT entry for it appeared".into()),
    });
    let tcp = net.counters().tcp;
    let opens = tcp.passive_opens - before.passive_opens;
    report.check(if opens == 2 {
        Ok("ustack counted both connections: TcpPassiveOpens went up by 2".to_string())
    } else {
        Err(format!("ustack's TcpPassiveOpens went up by {opens}, expected 2"))
    });
    let resets = tcp.out_rsts - before.out_rsts;
    report.check(if resets == 0 {
        Ok("both connections ended with FIN; ustack sent no RST (TcpOutRsts did not move)".to_string())
    } else {
        Err(format!("ustack sent {resets} RST segment(s); both connections should have ended with FIN"))
    });
    Ok(())
}

/// A kernel TCP socket connected to `to` from inside the namespace (it stays there).
fn kernel_connect(ns: &Namespace, to: SocketAddr) -> Result<TcpStream, String> {
    let stream = ns
        .enter(|| TcpStream::connect_timeout(&to, TCP_TIMEOUT))
        .map_err(|e| format!("cannot enter namespace {}: {e}", ns.name()))?
        .map_err(|e| format!("the kernel could not connect to {to}: {e}"))?;
    stream.set_read_timeout(Some(TCP_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TCP_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// GET /bytes/HTTP_BYTES with `Connection: close`, read until ustack closes, and check every byte.
fn fetch(ns: &Namespace) -> Result<String, String> {
    let started = Instant::now();
    let mut stream = kernel_connect(ns, http_addr())?;
    stream.write_all(http_request().as_bytes()).map_err(|e| format!("sending the request failed: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("ustack did not finish the response within {TCP_TIMEOUT:?} ({} bytes arrived)", raw.len())
        }
        _ => format!("reading the response failed after {} bytes: {e}", raw.len()),
    })?;
    let elapsed = started.elapsed();
    http::check_bytes_response(&raw, HTTP_BYTES).map(|what| format!("{what} ({:.1} ms)", elapsed.as_secs_f64() * 1e3))
}

/// Each payload out and back over one connection; then the kernel half-closes and ustack must close too.
fn tcp_echo(ns: &Namespace, to: SocketAddr, report: &mut Report) {
    let mut stream = match kernel_connect(ns, to) {
        Ok(stream) => stream,
        Err(e) => return report.fail(e),
    };
    for (what, payload) in tcp_echo_payloads() {
        let outcome = echo_once(&mut stream, &payload).map(|()| format!("{what}: echoed back byte for byte"));
        let failed = outcome.is_err();
        report.check(outcome);
        if failed {
            return;
        }
    }
    let closed = stream.shutdown(std::net::Shutdown::Write).and_then(|()| stream.read(&mut [0u8; 16]));
    report.check(match closed {
        Ok(0) => Ok("the kernel sent FIN; ustack's service saw end of file and closed its side too".into()),
        Ok(n) => Err(format!("after the kernel's FIN, {n} more bytes came back instead of end of file")),
        Err(e) => Err(format!("after the kernel's FIN, ustack did not close its side: {e}")),
    });
}

/// One payload out and its echo back (a writer thread, so that neither side's buffers can fill up).
fn echo_once(stream: &mut TcpStream, payload: &[u8]) -> Result<(), String> {
    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    let echoed = std::thread::scope(|scope| {
        let sending = scope.spawn(|| (&writer).write_all(payload));
        let mut echoed = vec![0u8; payload.len()];
        let read = stream.read_exact(&mut echoed);
        let sent = sending.join().unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        sent.map_err(|e| format!("sending {} bytes failed: {e}", payload.len()))?;
        read.map_err(|e| format!("the echo of {} bytes did not come back whole: {e}", payload.len()))?;
        Ok::<_, String>(echoed)
    })?;
    compare_echo(payload, &echoed)
}
