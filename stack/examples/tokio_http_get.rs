//! A tokio HTTP/1.1 client on ustack: fetches `http://HOST:PORT/PATH`, checks the body against the
//! `Content-Length` header (and, for a path `/bytes/N`, against N), and prints the body's SHA-256.
//!
//! HOST is an IPv4 address (the stack has no resolver). Against a kernel-side server:
//!
//! ```text
//! mkdir -p /tmp/www/bytes && head -c 1000000 /dev/urandom > /tmp/www/bytes/1000000
//! python3 -m http.server 8000 --bind 198.18.0.1 --directory /tmp/www &
//! cargo run -p ustack --features tokio --example tokio_http_get -- --tap tap0 http://198.18.0.1:8000/bytes/1000000
//! sha256sum /tmp/www/bytes/1000000
//! ```

mod common;

use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ustack::runtime::tokio::TcpStream;

const USAGE: &str = "\
tokio_http_get: fetch a URL over ustack with tokio and print the SHA-256 of the body

usage: tokio_http_get --tap NAME [--netns NAME] [--ip CIDR] [--timeout SECONDS] http://HOST[:PORT]/PATH

  --timeout SECONDS   give up when the whole fetch takes longer [default: 120]";

/// The response head may be at most this long.
const MAX_HEAD: usize = 64 * 1024;

#[tokio::main]
async fn main() {
    let opts = common::Options::parse(&format!("{USAGE}\n\n{}", common::STACK_USAGE), &options());
    let [url] = opts.positional() else { common::fail("give exactly one URL (see --help)") };
    let (server, path) = parse_url(url).unwrap_or_else(|e| common::fail(format!("{url}: {e}")));
    let timeout = Duration::from_secs(opts.get_or("timeout", 120));
    let net = common::start_stack(&opts);

    let result = tokio::time::timeout(timeout, fetch(&net, server, &path)).await;
    common::finish(&net);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => common::fail(e),
        Err(_) => common::fail(format!("the fetch took longer than {timeout:?}")),
    }
}

fn options() -> Vec<&'static str> {
    let mut known = common::STACK_OPTIONS.to_vec();
    known.push("timeout");
    known
}

/// `http://198.18.0.1:8000/bytes/10` becomes (198.18.0.1:8000, "/bytes/10").
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?),
        None => (authority, 80),
    };
    let ip: IpAddr = host.parse().map_err(|_| format!("the host {host:?} must be an IPv4 address"))?;
    Ok((SocketAddr::new(ip, port), path))
}

async fn fetch(net: &ustack::runtime::NetStack, server: SocketAddr, path: &str) -> Result<(), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(net, server).await.map_err(|e| format!("cannot connect to {server}: {e}"))?;
    println!("connected to {server} from {}", stream.local_addr().map_err(|e| e.to_string())?);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: ustack-tokio-example\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending the request failed: {e}"))?;

    // Read until the blank line that ends the head; whatever follows it is the start of the body.
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(format!("no end of the response head in the first {MAX_HEAD} bytes"));
        }
        let n = stream.read(&mut buf).await.map_err(|e| format!("reading the response failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before the end of the response head".into());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..body_start]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    println!("{status}");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("the server answered {status:?}"));
    }
    let mut content_length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<u64>().map_err(|_| format!("bad Content-Length {value:?}"))?);
            println!("Content-Length: {value}");
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            return Err(format!("Transfer-Encoding {value:?} is not supported by this small client"));
        }
    }

    // The body: what came with the head, then the rest until Content-Length (or the end of the connection).
    let mut hash = Sha256::new();
    hash.update(&head[body_start..]);
    let mut received = (head.len() - body_start) as u64;
    while content_length.is_none_or(|len| received < len) {
        let n = stream.read(&mut buf).await.map_err(|e| format!("reading the body failed: {e}"))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("received {received} bytes of body in {seconds:.2} s ({:.1} MB/s)", received as f64 / 1e6 / seconds);
    if let Some(len) = content_length {
        if received != len {
            return Err(format!("the body has {received} bytes but Content-Length said {len}"));
        }
    }
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        if received != n {
            return Err(format!("asked for {n} bytes, got {received}"));
        }
    }
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("sha256 {digest}");
    Ok(())
}
