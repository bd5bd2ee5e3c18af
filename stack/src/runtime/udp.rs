//! A blocking UDP socket handle shaped like `std::net::UdpSocket`.

use super::driver::{NetStack, Wait};
use crate::socket::{Domain, Fd, MsgFlags, SockOpt, SockType};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A UDP socket on a [`NetStack`]. Closed when dropped.
#[derive(Debug)]
pub struct UdpSocket {
    net: NetStack,
    fd: Fd,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
}

impl UdpSocket {
    /// Creates a socket bound to `addr` (port 0 picks an ephemeral port).
    pub fn bind(net: &NetStack, addr: SocketAddr) -> io::Result<UdpSocket> {
        let sock = Self::unbound(net)?;
        net.call(Wait::Never, false, |s| s.bind(sock.fd, addr))?;
        Ok(sock)
    }

    /// Creates a socket that is not bound yet (the first `send_to` binds it).
    pub fn unbound(net: &NetStack) -> io::Result<UdpSocket> {
        let fd = net.call(Wait::Never, false, |s| s.socket(Domain::Inet, SockType::Dgram))?;
        Ok(UdpSocket {
            net: net.clone(),
            fd,
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
        })
    }

    /// The descriptor in the stack's socket table.
    pub fn fd(&self) -> Fd {
        self.fd
    }

    fn nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    fn flags(&self) -> MsgFlags {
        if self.nonblocking() {
            MsgFlags::DONTWAIT
        } else {
            MsgFlags::NONE
        }
    }

    fn read_timeout(&self) -> Option<Duration> {
        *self.read_timeout.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_timeout(&self) -> Option<Duration> {
        *self.write_timeout.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let flags = self.flags();
        self.net.call(Wait::on(&[self.fd], self.nonblocking(), self.write_timeout()), true, |s| {
            s.sendto(self.fd, buf, flags, Some(addr))
        })
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let flags = self.flags();
        let meta = self.net.call(Wait::on(&[self.fd], self.nonblocking(), self.read_timeout()), true, |s| {
            s.recvfrom(self.fd, buf, flags)
        })?;
        Ok((meta.len, meta.from))
    }

    /// Like `recv_from` but leaves the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let flags = self.flags() | MsgFlags::PEEK;
        let meta = self.net.call(Wait::on(&[self.fd], self.nonblocking(), self.read_timeout()), false, |s| {
            s.recvfrom(self.fd, buf, flags)
        })?;
        Ok((meta.len, meta.from))
    }

    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.net.call(Wait::Never, false, |s| s.connect(self.fd, Some(addr)))
    }

    /// Dissolves the association (`connect` with `AF_UNSPEC`).
    pub fn disconnect(&self) -> io::Result<()> {
        self.net.call(Wait::Never, false, |s| s.connect(self.fd, None))
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = self.flags();
        self.net.call(Wait::on(&[self.fd], self.nonblocking(), self.write_timeout()), true, |s| {
            s.sendto(self.fd, buf, flags, None)
        })
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.net.call(Wait::Never, false, |s| s.getsockname(self.fd))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.net.call(Wait::Never, false, |s| s.getpeername(self.fd))
    }

    /// `None` blocks indefinitely. A zero duration is refused, as std refuses it.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        *self.read_timeout.lock().unwrap_or_else(|p| p.into_inner()) = timeout;
        Ok(())
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        *self.write_timeout.lock().unwrap_or_else(|p| p.into_inner()) = timeout;
        Ok(())
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.net.call(Wait::Never, false, |s| s.setsockopt(self.fd, SockOpt::Broadcast, i32::from(on)))
    }

    /// Reads and clears the pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let code = self.net.call(Wait::Never, false, |s| s.getsockopt(self.fd, SockOpt::Error))?;
        Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.net.close_quietly(self.fd);
    }
}
