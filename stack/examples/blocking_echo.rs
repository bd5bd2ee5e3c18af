//! A blocking TCP echo server on ustack, one thread per connection, written as one would with `std::net`.
//!
//! Whatever a client sends comes back; when the client shuts down its sending side, the server sends the rest
//! and closes. Try it with a TAP whose kernel side is 198.18.0.1/24:
//!
//! ```text
//! ip tuntap add dev tap0 mode tap && ip addr add 198.18.0.1/24 dev tap0 && ip link set tap0 up
//! cargo run -p ustack --example blocking_echo -- --tap tap0 --ip 198.18.0.2/24 --port 7
//! echo hello | nc -q1 198.18.0.2 7
//! ```

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;
use ustack::runtime::{TcpListener, TcpStream};

const USAGE: &str = "\
blocking_echo: a TCP echo server on ustack with a thread per connection

usage: blocking_echo --tap NAME [--netns NAME] [--ip CIDR] [--port PORT] [--exit-after N]

  --port PORT         the port to listen on [default: 7]
  --exit-after N      stop after N connections have been served [default: run until killed]";

/// A connection that sends nothing for this long is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let opts = common::Options::parse(&format!("{USAGE}\n\n{}", common::STACK_USAGE), &options());
    let port: u16 = opts.get_or("port", 7);
    let exit_after: Option<usize> = opts.get("exit-after");
    let net = common::start_stack(&opts);

    let addr = SocketAddr::new(common::stack_ip(&opts), port);
    let listener = TcpListener::bind_with_backlog(&net, addr, 1024)
        .unwrap_or_else(|e| common::fail(format!("cannot listen on {addr}: {e}")));
    println!("blocking echo server listening on {addr}");

    let mut handlers: Vec<JoinHandle<io::Result<u64>>> = Vec::new();
    let mut accepted = 0usize;
    let mut echoed = 0u64;
    let mut failed = 0usize;
    while exit_after.is_none_or(|n| accepted < n) {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => common::fail(format!("accept failed: {e}")),
        };
        accepted += 1;
        handlers.push(std::thread::spawn(move || serve(stream, peer)));
        // Collect the threads that have finished, so that a long-running server does not pile them up.
        let (done, running): (Vec<_>, Vec<_>) = handlers.into_iter().partition(|h| h.is_finished());
        handlers = running;
        for handler in done {
            tally(handler, &mut echoed, &mut failed);
        }
    }
    drop(listener);
    for handler in handlers {
        tally(handler, &mut echoed, &mut failed);
    }
    println!("served {accepted} connections ({failed} failed), echoed {echoed} bytes");
    common::finish(&net);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn options() -> Vec<&'static str> {
    let mut known = common::STACK_OPTIONS.to_vec();
    known.extend(["port", "exit-after"]);
    known
}

/// Echoes one connection until the client is done sending, then closes it. Returns the bytes echoed.
fn serve(stream: TcpStream, peer: SocketAddr) -> io::Result<u64> {
    let result = echo(&stream);
    match &result {
        Ok(n) => println!("{peer}: echoed {n} bytes"),
        Err(e) => println!("{peer}: failed: {e}"),
    }
    result
}

fn echo(stream: &TcpStream) -> io::Result<u64> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    // `&TcpStream` implements Read and Write, as `&std::net::TcpStream` does.
    let (mut reader, mut writer) = (stream, stream);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(total)
}

fn tally(handler: JoinHandle<io::Result<u64>>, echoed: &mut u64, failed: &mut usize) {
    match handler.join() {
        Ok(Ok(n)) => *echoed += n,
        _ => *failed += 1,
    }
}
