//! The state of one UDP socket (RFC 768; semantics of Linux's udp(7)).

use super::Readiness;
use crate::errno::Errno;
use crate::storage::DatagramQueue;
use std::net::SocketAddrV4;

/// A UDP socket.
#[derive(Debug)]
pub(crate) struct UdpSocket {
    /// The bound address; `None` while detached. The IP may be unspecified (bound to every address).
    pub local: Option<SocketAddrV4>,
    /// The connected peer.
    pub remote: Option<SocketAddrV4>,
    /// `bind()` named an address, so `connect(AF_UNSPEC)` keeps it (Linux's SOCK_BINDADDR_LOCK).
    pub addr_locked: bool,
    /// `bind()` named a port, so `connect(AF_UNSPEC)` keeps it (Linux's SOCK_BINDPORT_LOCK).
    pub port_locked: bool,
    /// Datagrams received, with their senders.
    pub rx: DatagramQueue<SocketAddrV4>,
    /// Datagrams waiting to go out, with their destinations.
    pub tx: DatagramQueue<SocketAddrV4>,
    /// The pending error reported by `SO_ERROR` and by the next call (then cleared).
    pub error: Option<Errno>,
    pub reuse_addr: bool,
    pub broadcast: bool,
    pub ttl: u8,
    pub tos: u8,
    pub shut_rd: bool,
    pub shut_wr: bool,
    /// Datagrams dropped because the receive buffer was full.
    pub drops: u64,
    /// Already on the stack's list of sockets with output.
    pub tx_scheduled: bool,
}

impl UdpSocket {
    pub fn new(rcvbuf: usize, sndbuf: usize) -> Self {
        UdpSocket {
            local: None,
            remote: None,
            addr_locked: false,
            port_locked: false,
            rx: DatagramQueue::new(rcvbuf),
            tx: DatagramQueue::new(sndbuf),
            error: None,
            reuse_addr: false,
            broadcast: false,
            ttl: 64,
            tos: 0,
            shut_rd: false,
            shut_wr: false,
            drops: 0,
            tx_scheduled: false,
        }
    }

    /// How well this socket matches a datagram from `src` to `dst`, or `None` if it must not receive it:
    /// a socket bound to a specific address or connected to a peer takes only matching datagrams, and among
    /// candidates the most specific wins (Linux's `compute_score`).
    pub fn match_score(&self, src: SocketAddrV4, dst: SocketAddrV4) -> Option<u8> {
        let local = self.local?;
        if local.port() != dst.port() {
            return None;
        }
        let mut score = 1;
        if !local.ip().is_unspecified() {
            if local.ip() != dst.ip() {
                return None;
            }
            score += 2;
        }
        if let Some(remote) = self.remote {
            if remote != src {
                return None;
            }
            score += 4;
        }
        Some(score)
    }

    /// `poll(2)` readiness as Linux's `datagram_poll` computes it.
    pub fn readiness(&self) -> Readiness {
        let mut r = Readiness::default();
        if !self.rx.is_empty() || self.shut_rd {
            r |= Readiness::IN;
        }
        if self.shut_rd {
            r |= Readiness::RDHUP;
        }
        if self.shut_rd && self.shut_wr {
            r |= Readiness::HUP;
        }
        if self.error.is_some() {
            r |= Readiness::ERR;
        }
        if !self.tx.is_full() {
            r |= Readiness::OUT;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    }

    #[test]
    fn specific_beats_wildcard_and_connected_filters() {
        let (src, dst) = (addr([198, 18, 0, 1], 5000), addr([198, 18, 0, 2], 53));
        let mut wild = UdpSocket::new(1000, 1000);
        wild.local = Some(addr([0, 0, 0, 0], 53));
        let mut specific = UdpSocket::new(1000, 1000);
        specific.local = Some(dst);
        assert!(specific.match_score(src, dst) > wild.match_score(src, dst));
        let mut connected = UdpSocket::new(1000, 1000);
        connected.local = Some(dst);
        connected.remote = Some(addr([198, 18, 0, 9], 5000));
        assert_eq!(connected.match_score(src, dst), None);
        connected.remote = Some(src);
        assert!(connected.match_score(src, dst) > specific.match_score(src, dst));
        assert_eq!(wild.match_score(src, addr([198, 18, 0, 2], 54)), None);
    }

    #[test]
    fn readiness_bits() {
        let mut s = UdpSocket::new(1000, 1000);
        assert_eq!(s.readiness(), Readiness::OUT);
        s.error = Some(Errno::ECONNREFUSED);
        s.shut_rd = true;
        s.shut_wr = true;
        let r = s.readiness();
        assert!(r.contains(Readiness::IN | Readiness::ERR | Readiness::HUP | Readiness::RDHUP));
    }
}
