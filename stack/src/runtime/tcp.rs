//! Blocking TCP handles shaped like `std::net::TcpListener` and `std::net::TcpStream`.

use super::driver::{NetStack, Wait};
use crate::errno::Errno;
use crate::socket::{Domain, Fd, MsgFlags, Readiness, Shutdown, SockOpt, SockType};
use crate::tcp::info::TcpInfo;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A listening TCP socket on a [`NetStack`]. Closed when dropped.
#[derive(Debug)]
pub struct TcpListener {
    net: NetStack,
    fd: Fd,
    nonblocking: AtomicBool,
}

impl TcpListener {
    /// Binds and listens on `addr` with a backlog of 128, setting SO_REUSEADDR first as `std` does on Unix.
    pub fn bind(net: &NetStack, addr: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with_backlog(net, addr, 128)
    }

    /// Binds and listens with an explicit backlog.
    pub fn bind_with_backlog(net: &NetStack, addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        let fd = net.call(Wait::Never, false, |s| s.socket(Domain::Inet, SockType::Stream))?;
        let listener = TcpListener { net: net.clone(), fd, nonblocking: AtomicBool::new(false) };
        net.call(Wait::Never, false, |s| s.setsockopt(fd, SockOpt::ReuseAddr, 1))?;
        net.call(Wait::Never, false, |s| s.bind(fd, addr))?;
        net.call(Wait::Never, false, |s| s.listen(fd, backlog))?;
        Ok(listener)
    }

    pub fn fd(&self) -> Fd {
        self.fd
    }

    /// Waits for a connection (unless non-blocking) and returns it with the peer's address.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        let (fd, peer) = self.net.call(Wait::on(&[self.fd], nonblocking, None), false, |s| s.accept(self.fd))?;
        Ok((TcpStream::from_fd(&self.net, fd), peer))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.net.call(Wait::Never, false, |s| s.getsockname(self.fd))
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// An iterator over incoming connections, like `std::net::TcpListener::incoming`.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.net.close_quietly(self.fd);
    }
}

/// A TCP connection on a [`NetStack`]. Closed when dropped.
#[derive(Debug)]
pub struct TcpStream {
    net: NetStack,
    fd: Fd,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
}

impl TcpStream {
    fn from_fd(net: &NetStack, fd: Fd) -> TcpStream {
        TcpStream {
            net: net.clone(),
            fd,
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
        }
    }

    /// Connects to `addr`, waiting for the handshake to finish.
    pub fn connect(net: &NetStack, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::connect_timeout_opt(net, addr, None)
    }

    /// Connects to `addr`, giving up after `timeout` (ETIMEDOUT is reported as `TimedOut`).
    pub fn connect_timeout(net: &NetStack, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        Self::connect_timeout_opt(net, addr, Some(timeout))
    }

    /// Connects to `addr` from the local address `local` (bound first, with SO_REUSEADDR when `reuse`),
    /// giving up after `timeout` when one is given.
    pub fn connect_from(
        net: &NetStack,
        local: SocketAddr,
        addr: SocketAddr,
        reuse: bool,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        Self::connect_with(net, Some((local, reuse)), addr, timeout)
    }

    fn connect_timeout_opt(net: &NetStack, addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        Self::connect_with(net, None, addr, timeout)
    }

    fn connect_with(
        net: &NetStack,
        local: Option<(SocketAddr, bool)>,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let fd = net.call(Wait::Never, false, |s| s.socket(Domain::Inet, SockType::Stream))?;
        let stream = TcpStream::from_fd(net, fd);
        if let Some((local, reuse)) = local {
            net.call(Wait::Never, false, |s| s.setsockopt(fd, SockOpt::ReuseAddr, i32::from(reuse)))?;
            net.call(Wait::Never, false, |s| s.bind(fd, local))?;
        }
        match net.call(Wait::Never, true, |s| s.connect(fd, Some(addr))) {
            Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS.code()) => {}
            other => other?,
        }
        net.wait_ready(fd, Readiness::OUT | Readiness::ERR, timeout).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
            } else {
                e
            }
        })?;
        // The second connect() reports the outcome, as it does for a non-blocking connect on Linux.
        net.call(Wait::Never, false, |s| s.connect(fd, Some(addr)))?;
        Ok(stream)
    }

    pub fn fd(&self) -> Fd {
        self.fd
    }

    fn nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    fn timeout(slot: &Mutex<Option<Duration>>) -> Option<Duration> {
        *slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_timeout(slot: &Mutex<Option<Duration>>, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = timeout;
        Ok(())
    }

    fn flags(&self) -> MsgFlags {
        if self.nonblocking() {
            MsgFlags::DONTWAIT
        } else {
            MsgFlags::NONE
        }
    }

    /// Reads into `buf`, waiting for data (unless non-blocking); 0 at end of file.
    pub fn read_bytes(&self, buf: &mut [u8]) -> io::Result<usize> {
        let flags = self.flags();
        let timeout = Self::timeout(&self.read_timeout);
        self.net.call(Wait::on(&[self.fd], self.nonblocking(), timeout), true, |s| s.recv(self.fd, buf, flags))
    }

    /// Reads without taking the data.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let flags = self.flags() | MsgFlags::PEEK;
        let timeout = Self::timeout(&self.read_timeout);
        self.net.call(Wait::on(&[self.fd], self.nonblocking(), timeout), false, |s| s.recv(self.fd, buf, flags))
    }

    /// Writes some of `buf`, waiting for room in the send buffer (unless non-blocking).
    pub fn write_bytes(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = self.flags();
        let timeout = Self::timeout(&self.write_timeout);
        self.net.call(Wait::on(&[self.fd], self.nonblocking(), timeout), true, |s| s.send(self.fd, buf, flags))
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => Shutdown::Read,
            std::net::Shutdown::Write => Shutdown::Write,
            std::net::Shutdown::Both => Shutdown::Both,
        };
        self.net.call(Wait::Never, true, |s| s.shutdown(self.fd, how))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.net.call(Wait::Never, false, |s| s.getpeername(self.fd))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.net.call(Wait::Never, false, |s| s.getsockname(self.fd))
    }

    /// The connection's state and the sender's estimates (`getsockopt(TCP_INFO)`; see [`TcpInfo`]).
    pub fn tcp_info(&self) -> io::Result<TcpInfo> {
        self.net.call(Wait::Never, false, |s| s.tcp_info(self.fd))
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.net.call(Wait::Never, true, |s| s.setsockopt(self.fd, SockOpt::TcpNoDelay, i32::from(nodelay)))
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.net.call(Wait::Never, false, |s| s.getsockopt(self.fd, SockOpt::TcpNoDelay)).map(|v| v != 0)
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Self::set_timeout(&self.read_timeout, timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Self::set_timeout(&self.write_timeout, timeout)
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// `SO_LINGER`: `Some(Duration::ZERO)` makes drop abort the connection with RST.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.net.call(Wait::Never, false, |s| s.set_linger(self.fd, linger))
    }

    /// Reads and clears the pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let code = self.net.call(Wait::Never, false, |s| s.getsockopt(self.fd, SockOpt::Error))?;
        Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_bytes(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_bytes(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.net.close_quietly(self.fd);
    }
}
