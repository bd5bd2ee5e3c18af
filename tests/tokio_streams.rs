//! The tokio face under load: 1,000 concurrent streams between two ustack stacks, each running on its own
//! driver thread over the in-memory link, on tokio's multi-thread and current-thread runtimes; data verified.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ustack::runtime::tokio::{TcpListener, TcpStream, UdpSocket};
use ustack::runtime::NetStack;
use ustack::wire::ethernet::MacAddr;
use ustack::StackConfig;
use ustack_netdev::pipe::{Pipe, PipeConfig};

/// Two running stacks joined by a perfect in-memory link: (client side 198.18.0.1, server side 198.18.0.2).
fn two_stacks() -> (NetStack, NetStack) {
    let (a_end, b_end) = Pipe::pair(PipeConfig::default());
    let mut a = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), "198.18.0.1/24".parse().unwrap());
    let mut b = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 2]), "198.18.0.2/24".parse().unwrap());
    // Small buffers: 1,000 connections on each side.
    for c in [&mut a, &mut b] {
        c.tcp.rcvbuf_default = 32 * 1024;
        c.tcp.sndbuf_default = 32 * 1024;
        c.max_sockets = 4096;
    }
    (NetStack::spawn(a_end, a).unwrap(), NetStack::spawn(b_end, b).unwrap())
}

fn byte(conn: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ conn) as u8
}

async fn echo_many(conns: usize, bytes: usize) {
    let (client, server) = two_stacks();
    let addr: SocketAddr = "198.18.0.2:7".parse().unwrap();
    let listener = TcpListener::bind(&server, addr).await.unwrap();
    let acceptor = tokio::spawn(async move {
        let mut handlers = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.unwrap();
            handlers.push(tokio::spawn(async move {
                let (mut rd, mut wr) = stream.split();
                tokio::io::copy(&mut rd, &mut wr).await.unwrap();
                wr.shutdown().await.unwrap();
            }));
        }
        for h in handlers {
            h.await.unwrap();
        }
    });
    let mut clients = Vec::new();
    for conn in 0..conns {
        let client = client.clone();
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&client, addr).await.unwrap();
            let info = stream.tcp_info().unwrap();
            assert_eq!((info.state, info.ca_state), ("ESTAB", "open"), "connection {conn}");
            assert!(info.srtt.is_some(), "connection {conn}: the handshake gave no RTT sample: {info:?}");
            let (mut rd, mut wr) = stream.into_split();
            let writer = tokio::spawn(async move {
                let data: Vec<u8> = (0..bytes).map(|i| byte(conn, i)).collect();
                wr.write_all(&data).await.unwrap();
                wr.shutdown().await.unwrap();
            });
            let mut got = Vec::with_capacity(bytes);
            rd.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got.len(), bytes, "connection {conn}");
            assert!(got.iter().enumerate().all(|(i, &b)| b == byte(conn, i)), "connection {conn}: corrupted");
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    acceptor.await.unwrap();
    client.shutdown();
    server.shutdown();
}

#[test]
fn thousand_streams_on_the_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), echo_many(1000, 16 * 1024)).await.expect("finished in time");
    });
}

#[test]
fn streams_on_the_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), echo_many(200, 64 * 1024)).await.expect("finished in time");
    });
}

#[tokio::test]
async fn udp_request_response() {
    let (client, server) = two_stacks();
    let server_addr: SocketAddr = "198.18.0.2:53".parse().unwrap();
    let srv = UdpSocket::bind(&server, server_addr).await.unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        for _ in 0..100 {
            let (n, from) = srv.recv_from(&mut buf).await.unwrap();
            buf[..n].reverse();
            srv.send_to(&buf[..n], from).await.unwrap();
        }
    });
    let sock = UdpSocket::bind(&client, "0.0.0.0:0".parse().unwrap()).await.unwrap();
    sock.connect(server_addr).await.unwrap();
    for i in 0..100u32 {
        let msg = format!("request {i}");
        sock.send(msg.as_bytes()).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await.expect("a reply").unwrap();
        let want: Vec<u8> = msg.bytes().rev().collect();
        assert_eq!(&buf[..n], &want[..]);
    }
    responder.await.unwrap();
    client.shutdown();
    server.shutdown();
}

#[tokio::test]
async fn a_dropped_accept_loses_nothing() {
    let (client, server) = two_stacks();
    let addr: SocketAddr = "198.18.0.2:8080".parse().unwrap();
    let listener = TcpListener::bind(&server, addr).await.unwrap();
    // An accept that times out (its future dropped while pending) ...
    assert!(tokio::time::timeout(Duration::from_millis(50), listener.accept()).await.is_err());
    // ... must not have taken the connection that arrives later.
    let connector = tokio::spawn(async move { TcpStream::connect(&client, addr).await.unwrap() });
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
    let mut c = connector.await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.shutdown();
}
