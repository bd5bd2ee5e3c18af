//! The socket calls, as methods of [`Stack`]: each finds the socket and hands the call to its protocol
//! (`udp_calls.rs`, `tcp_calls.rs`). Errno values are Linux's.

use super::{Domain, Fd, MsgFlags, Readiness, RecvMeta, Shutdown, SockOpt, SockType, Socket};
use crate::errno::{Errno, SysResult};
use crate::iface::Stack;
use crate::tcp::info::TcpInfo;
use crate::time::Duration;
use std::net::SocketAddr;

/// Which protocol a descriptor speaks.
#[derive(Clone, Copy)]
enum Proto {
    Udp,
    Tcp,
}

impl Stack {
    /// The protocol of a socket descriptor; an epoll descriptor is not a socket (`ENOTSOCK`).
    fn socket_proto(&self, fd: Fd) -> SysResult<Proto> {
        match self.sockets.get(fd)? {
            Socket::Udp(_) => Ok(Proto::Udp),
            Socket::Tcp(_) => Ok(Proto::Tcp),
            Socket::Epoll(_) => Err(Errno::ENOTSOCK),
        }
    }

    /// `socket(domain, type, 0)`.
    pub fn socket(&mut self, domain: Domain, ty: SockType) -> SysResult<Fd> {
        match (domain, ty) {
            (Domain::Inet, SockType::Dgram) => self.udp_socket(),
            (Domain::Inet, SockType::Stream) => self.tcp_socket(),
            (Domain::Inet6, _) => Err(Errno::EAFNOSUPPORT),
        }
    }

    /// `bind(fd, addr)`.
    pub fn bind(&mut self, fd: Fd, addr: SocketAddr) -> SysResult<()> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_bind(fd, addr),
            Proto::Tcp => self.tcp_bind(fd, addr),
        }
    }

    /// `listen(fd, backlog)`; `EOPNOTSUPP` on a datagram socket.
    pub fn listen(&mut self, fd: Fd, backlog: i32) -> SysResult<()> {
        match self.socket_proto(fd)? {
            Proto::Udp => Err(Errno::EOPNOTSUPP),
            Proto::Tcp => self.tcp_listen(fd, backlog),
        }
    }

    /// `accept(fd)`: a connection from the accept queue and its peer; `EAGAIN` when none is waiting.
    pub fn accept(&mut self, fd: Fd) -> SysResult<(Fd, SocketAddr)> {
        match self.socket_proto(fd)? {
            Proto::Udp => Err(Errno::EOPNOTSUPP),
            Proto::Tcp => self.tcp_accept(fd),
        }
    }

    /// `connect(fd, addr)`; `None` is `AF_UNSPEC`. A TCP connect answers `EINPROGRESS` and completes later
    /// (readiness turns writable; `SO_ERROR` tells the result), as a non-blocking connect does on Linux.
    pub fn connect(&mut self, fd: Fd, addr: Option<SocketAddr>) -> SysResult<()> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_connect(fd, addr),
            Proto::Tcp => self.tcp_connect(fd, addr),
        }
    }

    /// `sendto(fd, buf, flags, addr)`; `None` sends to the connected peer.
    #[link_section = ".text.hot.ustack"]
    pub fn sendto(&mut self, fd: Fd, buf: &[u8], flags: MsgFlags, dest: Option<SocketAddr>) -> SysResult<usize> {
        let _ = flags;
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_sendto(fd, buf, dest),
            // tcp(7): the address of a sendto on a connected stream is ignored (Linux: EISCONN only if the
            // socket is not connected and an address is given with MSG_FASTOPEN).
            Proto::Tcp => self.tcp_send(fd, buf),
        }
    }

    /// `send(fd, buf, flags)`.
    pub fn send(&mut self, fd: Fd, buf: &[u8], flags: MsgFlags) -> SysResult<usize> {
        self.sendto(fd, buf, flags, None)
    }

    /// `recvfrom(fd, buf, flags)`.
    #[link_section = ".text.hot.ustack"]
    pub fn recvfrom(&mut self, fd: Fd, buf: &mut [u8], flags: MsgFlags) -> SysResult<RecvMeta> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_recvfrom(fd, buf, flags),
            Proto::Tcp => self.tcp_recv(fd, buf, flags),
        }
    }

    /// `recv(fd, buf, flags)`.
    pub fn recv(&mut self, fd: Fd, buf: &mut [u8], flags: MsgFlags) -> SysResult<usize> {
        self.recvfrom(fd, buf, flags).map(|m| m.len)
    }

    /// `getsockname(fd)`.
    pub fn getsockname(&self, fd: Fd) -> SysResult<SocketAddr> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_getsockname(fd),
            Proto::Tcp => self.tcp_getsockname(fd),
        }
    }

    /// `getpeername(fd)`.
    pub fn getpeername(&self, fd: Fd) -> SysResult<SocketAddr> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_getpeername(fd),
            Proto::Tcp => self.tcp_getpeername(fd),
        }
    }

    /// `shutdown(fd, how)`.
    pub fn shutdown(&mut self, fd: Fd, how: Shutdown) -> SysResult<()> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_shutdown(fd, how),
            Proto::Tcp => self.tcp_shutdown(fd, how),
        }
    }

    /// `close(fd)`, of a socket or an epoll instance. A closed socket leaves every epoll set (Linux does the
    /// same once the last reference to the file goes).
    pub fn close(&mut self, fd: Fd) -> SysResult<()> {
        let result = match self.sockets.get(fd)? {
            Socket::Udp(_) => self.udp_close(fd),
            Socket::Tcp(_) => self.tcp_close(fd),
            Socket::Epoll(_) => self.epoll_close(fd),
        };
        self.epoll_forget(fd);
        result
    }

    /// `setsockopt(fd, level, name, &value)` for the integer options.
    pub fn setsockopt(&mut self, fd: Fd, opt: SockOpt, value: i32) -> SysResult<()> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_setsockopt(fd, opt, value),
            Proto::Tcp => self.tcp_setsockopt(fd, opt, value),
        }
    }

    /// `getsockopt(fd, level, name)` for the integer options. `SO_ERROR` is read-and-clear.
    pub fn getsockopt(&mut self, fd: Fd, opt: SockOpt) -> SysResult<i32> {
        match self.socket_proto(fd)? {
            Proto::Udp => self.udp_getsockopt(fd, opt),
            Proto::Tcp => self.tcp_getsockopt(fd, opt),
        }
    }

    /// `getsockopt(fd, IPPROTO_TCP, TCP_INFO)`: the connection's state and the sender's estimates (see
    /// [`TcpInfo`]). A TCP socket without a connection, unbound or listening, reports its state and nothing
    /// measured, as on Linux; a UDP socket has no TCP options (ENOPROTOOPT).
    pub fn tcp_info(&self, fd: Fd) -> SysResult<TcpInfo> {
        match self.sockets.get(fd)? {
            Socket::Tcp(_) => self.tcp_info_of(fd),
            Socket::Udp(_) => Err(Errno::ENOPROTOOPT),
            Socket::Epoll(_) => Err(Errno::ENOTSOCK),
        }
    }

    /// `setsockopt(fd, SOL_SOCKET, SO_LINGER, {on, seconds})`: `None` is off.
    pub fn set_linger(&mut self, fd: Fd, linger: Option<Duration>) -> SysResult<()> {
        match self.sockets.get_mut(fd)? {
            Socket::Tcp(s) => {
                s.linger = linger;
                Ok(())
            }
            Socket::Udp(_) => Ok(()),
            Socket::Epoll(_) => Err(Errno::ENOTSOCK),
        }
    }

    /// `getsockopt(fd, SOL_SOCKET, SO_LINGER)`.
    pub fn linger(&self, fd: Fd) -> SysResult<Option<Duration>> {
        match self.sockets.get(fd)? {
            Socket::Tcp(s) => Ok(s.linger),
            Socket::Udp(_) => Ok(None),
            Socket::Epoll(_) => Err(Errno::ENOTSOCK),
        }
    }

    /// `poll(2)` readiness of one socket.
    pub fn readiness(&self, fd: Fd) -> SysResult<Readiness> {
        match self.sockets.get(fd)? {
            Socket::Udp(s) => Ok(s.readiness()),
            Socket::Tcp(_) => self.tcp_readiness(fd),
            Socket::Epoll(e) => Ok(if e.has_ready() { Readiness::IN } else { Readiness::default() }),
        }
    }

    /// The socket type, as `SO_TYPE` reports it.
    pub fn socket_type(&self, fd: Fd) -> SysResult<i32> {
        Ok(match self.socket_proto(fd)? {
            Proto::Udp => 2,
            Proto::Tcp => 1,
        })
    }

    /// Open sockets.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}
