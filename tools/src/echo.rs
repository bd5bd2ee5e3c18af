//! A UDP echo service (RFC 862) on a running stack: one thread per port, each with a blocking socket.

use crate::service_threads::ServiceThreads;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use ustack::runtime::{NetStack, UdpSocket};

/// How often an idle echo thread looks at the stop flag: short enough that stopping feels immediate.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Room for the largest UDP payload, so that no datagram is echoed truncated.
const MAX_DATAGRAM: usize = 65_535;

/// Echo threads that stop together.
pub struct EchoServers {
    threads: ServiceThreads,
}

impl EchoServers {
    /// Binds `0.0.0.0:PORT` for each port, here on the caller's thread so that a refused bind (a port given
    /// twice) is reported before anything runs, then starts one thread per socket.
    pub fn start(net: &NetStack, ports: &[u16]) -> io::Result<EchoServers> {
        let mut threads = ServiceThreads::new();
        for &port in ports {
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
            let socket = UdpSocket::bind(net, addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind the UDP echo service to {addr}: {e}")))?;
            socket.set_read_timeout(Some(STOP_POLL))?;
            threads.spawn(format!("udp-echo-{port}"), move |stop| serve_echo(&socket, port, stop))?;
            tracing::debug!(port, "UDP echo service listening");
        }
        Ok(EchoServers { threads })
    }

    /// Stops every thread and waits for them (at most one [`STOP_POLL`] each); their sockets close with them.
    pub fn stop(self) {
        self.threads.stop();
    }
}

/// The loop of one echo thread: each datagram goes back to its sender unchanged.
fn serve_echo(socket: &UdpSocket, port: u16, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                tracing::debug!(port, %from, len, "echoing UDP datagram");
                if let Err(err) = socket.send_to(&buf[..len], from) {
                    tracing::warn!(port, %from, %err, "UDP echo reply failed");
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            // ICMP errors for earlier replies (the sender has gone) are reported once and do not stop the service.
            Err(e) if e.raw_os_error().is_some() => tracing::debug!(port, err = %e, "UDP echo socket error"),
            Err(e) => {
                // The stack is shutting down; nothing more will arrive.
                tracing::debug!(port, err = %e, "UDP echo service stopped");
                return;
            }
        }
    }
}
