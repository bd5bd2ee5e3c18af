//! The tokio face against the Linux kernel: a thousand concurrent ustack tokio streams (`USTACK_TOKIO_CONNS`)
//! over a TAP device to a kernel echo server in the peer's namespace, each sending some KB
//! (`USTACK_TOKIO_BYTES`) and reading them back verified, on tokio's multi-thread runtime.
//!
//! Needs root and `/dev/net/tun` and skips otherwise. Bounded by a time limit (a failure, never a timing
//! assertion): on expiry it reports how many streams finished and the stack's state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ustack::runtime::tokio::TcpStream;
use ustack::runtime::NetStack;
use ustack_tests::kernel::{skip_without_kernel_peer, KernelPeer, Link};
use ustack_tests::kernel_tcp_util::env_usize;
use ustack_tests::poll_conns::{client_data, KernelEchoServer};

const SEED: u64 = 0x70c1_0000;

/// One stream: connect, write the pattern and shut down writing while reading everything back.
async fn one_stream(net: NetStack, addr: SocketAddr, index: usize, bytes: usize) -> Result<(), String> {
    let stream = TcpStream::connect(&net, addr).await.map_err(|e| format!("stream {index}: connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let data = client_data(SEED, index, bytes);
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await?;
        wr.shutdown().await
    });
    let mut got = Vec::with_capacity(bytes);
    rd.read_to_end(&mut got).await.map_err(|e| format!("stream {index}: read after {} bytes: {e}", got.len()))?;
    writer
        .await
        .map_err(|e| format!("stream {index}: writer task: {e}"))?
        .map_err(|e| format!("stream {index}: write: {e}"))?;
    if got.len() != bytes {
        return Err(format!("stream {index}: {} bytes came back, {bytes} were sent", got.len()));
    }
    if got != expected {
        let at = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("stream {index}: the echo differs at byte {at}"));
    }
    Ok(())
}

#[test]
fn a_thousand_tokio_streams_to_a_kernel_echo_server() {
    if skip_without_kernel_peer("a_thousand_tokio_streams_to_a_kernel_echo_server") {
        return;
    }
    let conns = env_usize("USTACK_TOKIO_CONNS", 1000);
    let bytes = env_usize("USTACK_TOKIO_BYTES", 32 * 1024);
    let limit = Duration::from_secs(240 + (conns * bytes / 100_000) as u64);
    let peer = KernelPeer::start_with(Link::Tap, None, |c| {
        c.max_sockets = 4 * conns + 64;
        c.tcp.rcvbuf_default = 64 * 1024;
        c.tcp.sndbuf_default = 64 * 1024;
    })
    .unwrap_or_else(|e| panic!("cannot start a kernel peer over a TAP device: {e}"));
    let server = KernelEchoServer::start(peer.namespace(), peer.kernel_addr(7100), limit + Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("cannot start the kernel echo server: {e}"));
    let addr = server.addr();

    let finished = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcome = rt.block_on(async {
        let mut tasks = Vec::with_capacity(conns);
        for index in 0..conns {
            let (net, finished) = (peer.net().clone(), Arc::clone(&finished));
            tasks.push(tokio::spawn(async move {
                let result = one_stream(net, addr, index, bytes).await;
                finished.fetch_add(1, Ordering::Relaxed);
                result
            }));
        }
        tokio::time::timeout(limit, async {
            let mut errors = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(format!("a task failed: {e}")),
                }
            }
            errors
        })
        .await
    });
    let seconds = started.elapsed().as_secs_f64();
    // Stop the runtime (and its unfinished tasks) before the stack and the namespace go.
    rt.shutdown_timeout(Duration::from_secs(5));
    let stats = server.stop();
    let state = || {
        let rows = peer.net().sockets_snapshot();
        let busy = rows.iter().filter(|r| r.state != "TIME-WAIT").count();
        format!("{busy} ustack sockets not in TIME-WAIT; kernel server {stats:?}\n{}", peer.counters_dump())
    };
    let errors = outcome.unwrap_or_else(|_| {
        panic!("{} of {conns} streams finished within {limit:?}; {}", finished.load(Ordering::Relaxed), state())
    });
    assert!(
        errors.is_empty(),
        "{} of {conns} streams failed, e.g. {:?}; {}",
        errors.len(),
        &errors[..errors.len().min(5)],
        state()
    );
    assert_eq!(stats.accepted, conns, "the kernel accepted a different number of connections; {}", state());
    assert_eq!(stats.completed, conns, "{}", state());
    assert_eq!(stats.bytes, (conns * bytes) as u64, "{}", state());
    let mb = (conns * bytes) as f64 / 1e6;
    println!(
        "{conns} tokio streams x {bytes} bytes echoed by the kernel and verified: {mb:.1} MB each way in {seconds:.1} s; \
         kernel server: {stats:?}"
    );
}
