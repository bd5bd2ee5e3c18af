//! A tokio TCP echo server on ustack. `ustack::runtime::tokio` mirrors `tokio::net`, so this is the usual tokio
//! echo server with the stack handed to `bind`: a task per connection, `split` and `tokio::io::copy`.
//!
//! ```text
//! cargo run -p ustack --features tokio --example tokio_echo -- --tap tap0 --ip 198.18.0.2/24 --port 7
//! ```

mod common;

use std::io;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use ustack::runtime::tokio::{TcpListener, TcpStream};

const USAGE: &str = "\
tokio_echo: a tokio TCP echo server on ustack

usage: tokio_echo --tap NAME [--netns NAME] [--ip CIDR] [--port PORT] [--exit-after N] [--verbose 1]

  --port PORT         the port to listen on [default: 7]
  --exit-after N      stop after N connections have been served [default: run until killed]
  --verbose 1         print a line for every connection, not only every 100th";

#[tokio::main]
async fn main() {
    let opts = common::Options::parse(&format!("{USAGE}\n\n{}", common::STACK_USAGE), &options());
    let port: u16 = opts.get_or("port", 7);
    let exit_after: Option<usize> = opts.get("exit-after");
    let verbose = opts.get_or("verbose", 0u8) != 0;
    let net = common::start_stack(&opts);

    let addr = SocketAddr::new(common::stack_ip(&opts), port);
    let listener =
        TcpListener::bind(&net, addr).await.unwrap_or_else(|e| common::fail(format!("cannot listen on {addr}: {e}")));
    println!("tokio echo server listening on {addr}");

    let mut tasks = JoinSet::new();
    let mut report = Report { verbose, ..Report::default() };
    while exit_after.is_none_or(|n| report.accepted < n) {
        let (stream, peer) = listener.accept().await.unwrap_or_else(|e| common::fail(format!("accept failed: {e}")));
        report.accepted += 1;
        tasks.spawn(async move { (peer, echo(stream).await) });
        // Report the connections that have finished meanwhile.
        while let Some(done) = tasks.try_join_next() {
            report.add(done);
        }
    }
    drop(listener);
    while let Some(done) = tasks.join_next().await {
        report.add(done);
    }
    println!("served {} connections ({} failed), echoed {} bytes", report.accepted, report.failed, report.echoed);
    common::finish(&net);
    if report.failed > 0 {
        std::process::exit(1);
    }
}

fn options() -> Vec<&'static str> {
    let mut known = common::STACK_OPTIONS.to_vec();
    known.extend(["port", "exit-after", "verbose"]);
    known
}

/// Echoes until the client is done sending, then shuts down our side. Returns the bytes echoed.
async fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let (mut reader, mut writer) = stream.split();
    let n = tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await?;
    Ok(n)
}

#[derive(Default)]
struct Report {
    verbose: bool,
    accepted: usize,
    finished: usize,
    failed: usize,
    echoed: u64,
}

impl Report {
    fn add(&mut self, done: Result<(SocketAddr, io::Result<u64>), tokio::task::JoinError>) {
        self.finished += 1;
        match done {
            Ok((peer, Ok(n))) => {
                self.echoed += n;
                if self.verbose || self.finished.is_multiple_of(100) {
                    println!("{peer}: echoed {n} bytes ({} connections finished)", self.finished);
                }
            }
            Ok((peer, Err(e))) => {
                self.failed += 1;
                println!("{peer}: failed: {e}");
            }
            Err(e) => {
                self.failed += 1;
                println!("a connection's task failed: {e}");
            }
        }
    }
}
