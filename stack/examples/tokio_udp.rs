//! A tokio UDP request/response pair on ustack. The server answers each datagram `X` with `re: X`; the client
//! sends `request 0`, `request 1`, ... one at a time, waits for each answer (sending again after a timeout, as
//! UDP clients do), and checks it.
//!
//! ```text
//! cargo run -p ustack --features tokio --example tokio_udp -- server --tap tap0 --port 5353
//! cargo run -p ustack --features tokio --example tokio_udp -- client --tap tap0 --server 198.18.0.1:5353
//! ```

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use ustack::runtime::tokio::UdpSocket;
use ustack::runtime::NetStack;

const USAGE: &str = "\
tokio_udp: UDP request/response over ustack with tokio

usage: tokio_udp server --tap NAME [--netns NAME] [--ip CIDR] [--port PORT] [--exit-after N]
       tokio_udp client --tap NAME [--netns NAME] [--ip CIDR] --server IP:PORT [--count N]

  --port PORT         server: the port to answer on [default: 5353]
  --exit-after N      server: stop after answering N requests [default: run until killed]
  --server IP:PORT    client: where to send the requests
  --count N           client: how many requests to send [default: 10]
  --timeout-ms MS     client: how long to wait for an answer before sending again [default: 1000]
  --tries N           client: how often to send one request before giving up on it [default: 5]";

/// The answer to `request`.
fn answer(request: &[u8]) -> Vec<u8> {
    [b"re: ".as_slice(), request].concat()
}

#[tokio::main]
async fn main() {
    let opts = common::Options::parse(&format!("{USAGE}\n\n{}", common::STACK_USAGE), &options());
    let mode = match opts.positional() {
        [mode] if mode == "server" || mode == "client" => mode.clone(),
        _ => common::fail("say `server` or `client` (see --help)"),
    };
    let net = common::start_stack(&opts);
    let ok = if mode == "server" { server(&net, &opts).await } else { client(&net, &opts).await };
    common::finish(&net);
    if !ok {
        std::process::exit(1);
    }
}

fn options() -> Vec<&'static str> {
    let mut known = common::STACK_OPTIONS.to_vec();
    known.extend(["port", "exit-after", "server", "count", "timeout-ms", "tries"]);
    known
}

async fn server(net: &NetStack, opts: &common::Options) -> bool {
    let addr = SocketAddr::new(common::stack_ip(opts), opts.get_or("port", 5353));
    let exit_after: Option<u64> = opts.get("exit-after");
    let socket = UdpSocket::bind(net, addr).await.unwrap_or_else(|e| common::fail(format!("cannot bind {addr}: {e}")));
    println!("UDP server answering on {addr}");
    let mut answered = 0u64;
    let mut buf = vec![0u8; 65536];
    while exit_after.is_none_or(|n| answered < n) {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                println!("receive failed: {e}");
                return false;
            }
        };
        let reply = answer(&buf[..n]);
        if let Err(e) = socket.send_to(&reply, from).await {
            println!("answering {from} failed: {e}");
            return false;
        }
        answered += 1;
        println!("{from}: {:?} -> {:?}", String::from_utf8_lossy(&buf[..n]), String::from_utf8_lossy(&reply));
    }
    println!("answered {answered} requests");
    true
}

async fn client(net: &NetStack, opts: &common::Options) -> bool {
    let server: SocketAddr = opts.require("server");
    let count: u64 = opts.get_or("count", 10);
    let timeout = Duration::from_millis(opts.get_or("timeout-ms", 1000));
    let tries: u32 = opts.get_or("tries", 5);
    let local = SocketAddr::new(common::stack_ip(opts), 0);
    let socket = UdpSocket::bind(net, local).await.unwrap_or_else(|e| common::fail(format!("cannot bind: {e}")));
    socket.connect(server).await.unwrap_or_else(|e| common::fail(format!("cannot connect to {server}: {e}")));
    println!("UDP client on {} asking {server}", socket.local_addr().map_or("?".into(), |a| a.to_string()));
    let mut answered = 0u64;
    let mut buf = vec![0u8; 65536];
    for i in 0..count {
        let request = format!("request {i}");
        let expected = answer(request.as_bytes());
        let started = Instant::now();
        let mut got = false;
        'tries: for attempt in 1..=tries {
            if let Err(e) = socket.send(request.as_bytes()).await {
                println!("{request}: sending failed (try {attempt}): {e}");
                continue;
            }
            // Wait for the matching answer; late answers to earlier requests are skipped.
            let deadline = tokio::time::Instant::now() + timeout;
            while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                match received {
                    Ok(n) if buf[..n] == expected[..] => {
                        got = true;
                        break 'tries;
                    }
                    Ok(n) => println!("{request}: skipping {:?}", String::from_utf8_lossy(&buf[..n])),
                    // ECONNREFUSED: an ICMP port unreachable came back; the server may not be up yet.
                    Err(e) => println!("{request}: {e} (try {attempt})"),
                }
            }
            println!("{request}: no answer within {timeout:?} (try {attempt})");
        }
        if got {
            answered += 1;
            println!("{request}: answered in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        } else {
            println!("{request}: no answer after {tries} tries");
        }
    }
    println!("{answered} of {count} requests answered");
    answered == count
}
