//! The socket calls on UDP sockets. Each rule cites the Linux behaviour (udp(7), socket(7), ip(7)) it
//! reproduces; errno values are Linux's.

use super::udp::UdpSocket;
use super::{buffer_size_from_user, Fd, MsgFlags, RecvMeta, Shutdown, SockOpt, Socket};
use crate::errno::{Errno, SysResult};
use crate::iface::{OrphanDatagram, Stack};
use crate::wire::ipv4::MIN_HEADER_LEN;
use crate::wire::udp;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The largest UDP payload an IPv4 datagram can carry: 65535 - 20 - 8.
pub const UDP_MAX_PAYLOAD: usize = 65535 - MIN_HEADER_LEN - udp::HEADER_LEN;

/// Linux's floors for buffer sizes (SOCK_MIN_RCVBUF and SOCK_MIN_SNDBUF on x86-64).
const MIN_RCVBUF: usize = 2304;
const MIN_SNDBUF: usize = 4608;

/// `SOCK_DGRAM`, as `SO_TYPE` reports it.
const SOCK_DGRAM: i32 = 2;

fn v4(addr: SocketAddr) -> SysResult<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        // An AF_INET6 address given to an AF_INET socket (Linux: inet_bind and udp_sendmsg).
        SocketAddr::V6(_) => Err(Errno::EAFNOSUPPORT),
    }
}

impl Stack {
    /// A new UDP socket.
    pub(crate) fn udp_socket(&mut self) -> SysResult<Fd> {
        let mut udp = Box::new(UdpSocket::new(self.config.udp.rcvbuf_default, self.config.udp.sndbuf_default));
        udp.ttl = self.config.ttl;
        self.sockets.insert(Socket::Udp(udp))
    }

    fn udp(&self, fd: Fd) -> SysResult<&UdpSocket> {
        match self.sockets.get(fd)? {
            Socket::Udp(s) => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }

    fn udp_mut(&mut self, fd: Fd) -> SysResult<&mut UdpSocket> {
        match self.sockets.get_mut(fd)? {
            Socket::Udp(s) => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }

    /// True when `ip` may be a socket's local address: unspecified, ours, or a broadcast address (Linux lets a
    /// UDP socket bind to a broadcast address to receive only broadcasts).
    fn is_bindable(&self, ip: Ipv4Addr) -> bool {
        ip.is_unspecified() || ip == self.config.ipv4.addr || self.is_broadcast(ip) || ip.is_loopback()
    }

    /// Linux's `udp_lib_lport_inuse`: another socket on the port conflicts unless both set SO_REUSEADDR or
    /// their local addresses differ and neither is the wildcard.
    fn udp_port_conflicts(&self, fd: Fd, local: SocketAddrV4, reuse: bool) -> bool {
        self.udp_ports.on_port(local.port()).iter().any(|&other| {
            if other == fd {
                return false;
            }
            let Ok(Socket::Udp(o)) = self.sockets.get(other) else { return false };
            let Some(olocal) = o.local else { return false };
            let overlap = olocal.ip().is_unspecified() || local.ip().is_unspecified() || olocal.ip() == local.ip();
            overlap && !(reuse && o.reuse_addr)
        })
    }

    /// Gives an unbound socket a free ephemeral port (Linux's `inet_autobind`; `EAGAIN` when none is free).
    fn udp_autobind(&mut self, fd: Fd) -> SysResult<()> {
        if self.udp(fd)?.local.is_some() {
            return Ok(());
        }
        let (first, last) = self.config.ephemeral_ports;
        let random = self.random_u32();
        let port = self.udp_ports.pick_ephemeral(first, last, random).ok_or(Errno::EAGAIN)?;
        self.udp_mut(fd)?.local = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        self.udp_ports.insert(port, fd);
        Ok(())
    }

    /// `bind(fd, addr)`.
    pub(crate) fn udp_bind(&mut self, fd: Fd, addr: SocketAddr) -> SysResult<()> {
        let addr = v4(addr)?;
        let sock = self.udp(fd)?;
        if sock.local.is_some() {
            return Err(Errno::EINVAL); // already bound (inet_bind: "sk->sk_num ... -EINVAL")
        }
        if !self.is_bindable(*addr.ip()) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let reuse = sock.reuse_addr;
        let port = if addr.port() == 0 {
            let (first, last) = self.config.ephemeral_ports;
            let random = self.random_u32();
            self.udp_ports.pick_ephemeral(first, last, random).ok_or(Errno::EADDRINUSE)?
        } else {
            if self.udp_port_conflicts(fd, addr, reuse) {
                return Err(Errno::EADDRINUSE);
            }
            addr.port()
        };
        let sock = self.udp_mut(fd)?;
        sock.local = Some(SocketAddrV4::new(*addr.ip(), port));
        sock.addr_locked = !addr.ip().is_unspecified();
        sock.port_locked = addr.port() != 0;
        self.udp_ports.insert(port, fd);
        Ok(())
    }

    /// `connect(fd, addr)`; `None` is `AF_UNSPEC`, which dissolves the association (udp(7)).
    pub(crate) fn udp_connect(&mut self, fd: Fd, addr: Option<SocketAddr>) -> SysResult<()> {
        let Some(addr) = addr else { return self.udp_disconnect(fd) };
        let addr = v4(addr)?;
        let sock = self.udp(fd)?;
        // ip4_datagram_connect: a broadcast peer needs SO_BROADCAST (EACCES otherwise).
        if self.is_broadcast(*addr.ip()) && !sock.broadcast {
            return Err(Errno::EACCES);
        }
        self.route(*addr.ip())?;
        self.udp_autobind(fd)?;
        let our_ip = self.config.ipv4.addr;
        let sock = self.udp_mut(fd)?;
        if let Some(local) = sock.local.as_mut() {
            if local.ip().is_unspecified() {
                // The source address the route chose becomes the local address (getsockname shows it).
                local.set_ip(if addr.ip().is_loopback() { Ipv4Addr::LOCALHOST } else { our_ip });
            }
        }
        sock.remote = Some(addr);
        self.events.push(fd);
        Ok(())
    }

    /// Linux's `__udp_disconnect`: forget the peer; the local address and port go back to what `bind()` set.
    fn udp_disconnect(&mut self, fd: Fd) -> SysResult<()> {
        let sock = self.udp_mut(fd)?;
        sock.remote = None;
        if !sock.addr_locked {
            if let Some(local) = sock.local.as_mut() {
                local.set_ip(Ipv4Addr::UNSPECIFIED);
            }
        }
        if !sock.port_locked {
            if let Some(local) = sock.local.take() {
                self.udp_ports.remove(local.port(), fd);
            }
        }
        Ok(())
    }

    /// `sendto(fd, buf, flags, addr)`; `None` sends to the connected peer (`send`).
    pub(crate) fn udp_sendto(&mut self, fd: Fd, buf: &[u8], dest: Option<SocketAddr>) -> SysResult<usize> {
        let sock = self.udp_mut(fd)?;
        if let Some(e) = sock.error.take() {
            return Err(e); // sock_alloc_send_pskb reports (and clears) a pending error first
        }
        if sock.shut_wr {
            return Err(Errno::EPIPE);
        }
        let dst = match dest {
            Some(a) => v4(a)?,
            None => sock.remote.ok_or(Errno::EDESTADDRREQ)?,
        };
        if dst.port() == 0 {
            return Err(Errno::EINVAL);
        }
        if buf.len() > UDP_MAX_PAYLOAD {
            return Err(Errno::EMSGSIZE);
        }
        let may_broadcast = sock.broadcast;
        let bound_loopback = sock.local.is_some_and(|l| l.ip().is_loopback());
        if self.is_broadcast(*dst.ip()) && !may_broadcast {
            return Err(Errno::EACCES);
        }
        // Linux's route lookup refuses a loopback source for a destination elsewhere (EINVAL).
        if bound_loopback && !dst.ip().is_loopback() {
            return Err(Errno::EINVAL);
        }
        self.route(*dst.ip())?;
        self.udp_autobind(fd)?;
        let sock = self.udp_mut(fd)?;
        if sock.tx.push(dst, buf).is_err() {
            self.counters.udp.sndbuf_errors += 1;
            return Err(Errno::EAGAIN);
        }
        if !sock.tx_scheduled {
            sock.tx_scheduled = true;
            self.udp_tx_ready.push_back(fd);
        }
        Ok(buf.len())
    }

    /// `recvfrom(fd, buf, flags)`: one datagram, truncated to `buf` (the rest is discarded, udp(7)).
    ///
    /// An empty queue gives `EAGAIN`, except after `shutdown(SHUT_RD)` when a caller that would block gets 0.
    pub(crate) fn udp_recvfrom(&mut self, fd: Fd, buf: &mut [u8], flags: MsgFlags) -> SysResult<RecvMeta> {
        let sock = self.udp_mut(fd)?;
        // __skb_try_recv_datagram checks for a pending error before looking at the queue.
        if let Some(e) = sock.error.take() {
            return Err(e);
        }
        let Some((&from, data)) = sock.rx.front() else {
            if sock.shut_rd && !flags.contains(MsgFlags::DONTWAIT) {
                let from = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                return Ok(RecvMeta { len: 0, from, truncated: false });
            }
            return Err(Errno::EAGAIN);
        };
        let copied = data.len().min(buf.len());
        buf[..copied].copy_from_slice(&data[..copied]);
        let truncated = data.len() > buf.len();
        let len = if flags.contains(MsgFlags::TRUNC) { data.len() } else { copied };
        if !flags.contains(MsgFlags::PEEK) {
            sock.rx.pop();
            self.events.push(fd);
        }
        Ok(RecvMeta { len, from: SocketAddr::V4(from), truncated })
    }

    /// `getsockname(fd)`: an unbound socket reports 0.0.0.0:0, as Linux does.
    pub(crate) fn udp_getsockname(&self, fd: Fd) -> SysResult<SocketAddr> {
        let sock = self.udp(fd)?;
        Ok(SocketAddr::V4(sock.local.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))))
    }

    /// `getpeername(fd)`: `ENOTCONN` unless connected.
    pub(crate) fn udp_getpeername(&self, fd: Fd) -> SysResult<SocketAddr> {
        self.udp(fd)?.remote.map(SocketAddr::V4).ok_or(Errno::ENOTCONN)
    }

    /// `shutdown(fd, how)`. On an unconnected datagram socket Linux records the shutdown *and* returns
    /// `ENOTCONN` (inet_shutdown's "hack to wake up other listeners").
    pub(crate) fn udp_shutdown(&mut self, fd: Fd, how: Shutdown) -> SysResult<()> {
        let sock = self.udp_mut(fd)?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            sock.shut_rd = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            sock.shut_wr = true;
        }
        let connected = sock.remote.is_some();
        self.events.push(fd);
        if connected {
            Ok(())
        } else {
            Err(Errno::ENOTCONN)
        }
    }

    /// `close(fd)`. Datagrams already accepted by `sendto` still go out: on Linux they were sent during the
    /// call, and nothing accepted into a buffer may be lost.
    pub(crate) fn udp_close(&mut self, fd: Fd) -> SysResult<()> {
        let Ok(Socket::Udp(mut sock)) = self.sockets.remove(fd) else { return Err(Errno::EBADF) };
        if let Some(local) = sock.local {
            self.udp_ports.remove(local.port(), fd);
            let (ttl, tos) = (sock.ttl, sock.tos);
            for (dst, payload) in sock.tx.drain() {
                self.orphan_tx.push_back(OrphanDatagram { src: local, dst, ttl, tos, payload });
            }
        }
        self.udp_tx_ready.retain(|&f| f != fd);
        self.events.push(fd);
        Ok(())
    }

    /// `setsockopt(fd, level, name, &value)` for the integer options.
    pub(crate) fn udp_setsockopt(&mut self, fd: Fd, opt: SockOpt, value: i32) -> SysResult<()> {
        let (rmem_max, wmem_max, default_ttl) = (self.config.udp.rmem_max, self.config.udp.wmem_max, self.config.ttl);
        let sock = self.udp_mut(fd)?;
        match opt {
            SockOpt::ReuseAddr => sock.reuse_addr = value != 0,
            SockOpt::Broadcast => sock.broadcast = value != 0,
            SockOpt::RcvBuf => sock.rx.set_budget(buffer_size_from_user(value, rmem_max, MIN_RCVBUF)),
            SockOpt::SndBuf => sock.tx.set_budget(buffer_size_from_user(value, wmem_max, MIN_SNDBUF)),
            SockOpt::IpTtl => {
                // ip(7): 1..=255, or -1 for the default.
                sock.ttl = match value {
                    -1 => default_ttl,
                    1..=255 => value as u8,
                    _ => return Err(Errno::EINVAL),
                }
            }
            SockOpt::IpTos => sock.tos = (value & 0xff) as u8,
            SockOpt::KeepAlive => {}
            SockOpt::Error | SockOpt::Type | SockOpt::AcceptConn => return Err(Errno::ENOPROTOOPT),
            // IPPROTO_TCP options on a datagram socket.
            SockOpt::TcpNoDelay
            | SockOpt::TcpMaxSeg
            | SockOpt::TcpKeepIdle
            | SockOpt::TcpKeepIntvl
            | SockOpt::TcpKeepCnt
            | SockOpt::TcpLinger2
            | SockOpt::TcpCongestion => return Err(Errno::ENOPROTOOPT),
        }
        self.events.push(fd);
        Ok(())
    }

    /// `getsockopt(fd, level, name)` for the integer options. `SO_ERROR` is read-and-clear.
    pub(crate) fn udp_getsockopt(&mut self, fd: Fd, opt: SockOpt) -> SysResult<i32> {
        let sock = self.udp_mut(fd)?;
        Ok(match opt {
            SockOpt::ReuseAddr => i32::from(sock.reuse_addr),
            SockOpt::Broadcast => i32::from(sock.broadcast),
            SockOpt::RcvBuf => sock.rx.budget() as i32,
            SockOpt::SndBuf => sock.tx.budget() as i32,
            SockOpt::Error => sock.error.take().map_or(0, Errno::code),
            SockOpt::Type => SOCK_DGRAM,
            SockOpt::AcceptConn => 0,
            SockOpt::KeepAlive => 0,
            SockOpt::IpTtl => i32::from(sock.ttl),
            SockOpt::IpTos => i32::from(sock.tos),
            SockOpt::TcpNoDelay
            | SockOpt::TcpMaxSeg
            | SockOpt::TcpKeepIdle
            | SockOpt::TcpKeepIntvl
            | SockOpt::TcpKeepCnt
            | SockOpt::TcpLinger2
            | SockOpt::TcpCongestion => return Err(Errno::ENOPROTOOPT),
        })
    }

    /// Datagrams a socket dropped because its receive buffer was full.
    pub fn socket_drops(&self, fd: Fd) -> SysResult<u64> {
        Ok(self.udp(fd)?.drops)
    }
}
