//! The async face (feature `tokio`): `TcpListener`, `TcpStream` and `UdpSocket` mirroring `tokio::net`, so
//! that code written for tokio switches to ustack by changing an import.
//!
//! Each operation is one non-blocking core call; when it would block, the task's waker is registered for the
//! socket's descriptor (under the stack lock, so no readiness change can be missed) and the driver wakes it
//! when that descriptor's readiness may have changed. An operation either completes under the lock or
//! changes nothing, so dropping a pending future loses nothing (cancellation safety as tokio's own types).

use super::driver::NetStack;
use crate::errno::Errno;
use crate::socket::{Domain, Fd, MsgFlags, Readiness, Shutdown, SockOpt, SockType};
use crate::tcp::info::TcpInfo;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An owned descriptor that is closed when the last handle to it goes.
#[derive(Debug)]
struct Owned {
    net: NetStack,
    fd: Fd,
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.net.close_quietly(self.fd);
    }
}

impl Owned {
    fn new(net: &NetStack, ty: SockType) -> io::Result<Owned> {
        let fd = net.call(super::driver::Wait::Never, false, |s| s.socket(Domain::Inet, ty))?;
        Ok(Owned { net: net.clone(), fd })
    }

    fn call<T>(&self, f: impl FnMut(&mut crate::Stack) -> Result<T, Errno>) -> io::Result<T> {
        self.net.call(super::driver::Wait::Never, true, f)
    }

    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        rings: bool,
        op: impl FnOnce(&mut crate::Stack) -> Result<T, Errno>,
    ) -> Poll<io::Result<T>> {
        self.net.poll_call(cx, self.fd, rings, op)
    }
}

/// An async TCP listener.
#[derive(Debug)]
pub struct TcpListener {
    inner: Owned,
}

impl TcpListener {
    /// Binds and listens (backlog 1024, SO_REUSEADDR as tokio sets it).
    pub async fn bind(net: &NetStack, addr: SocketAddr) -> io::Result<TcpListener> {
        let inner = Owned::new(net, SockType::Stream)?;
        inner.call(|s| s.setsockopt(inner.fd, SockOpt::ReuseAddr, 1))?;
        inner.call(|s| s.bind(inner.fd, addr))?;
        inner.call(|s| s.listen(inner.fd, 1024))?;
        Ok(TcpListener { inner })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, peer) = poll_fn(|cx| self.inner.poll(cx, false, |s| s.accept(self.inner.fd))).await?;
        Ok((TcpStream::from_owned(Owned { net: self.inner.net.clone(), fd }), peer))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s| s.getsockname(self.inner.fd))
    }
}

/// An async TCP stream.
#[derive(Debug)]
pub struct TcpStream {
    inner: Arc<Owned>,
}

impl TcpStream {
    fn from_owned(inner: Owned) -> TcpStream {
        TcpStream { inner: Arc::new(inner) }
    }

    /// Connects, waiting for the handshake.
    pub async fn connect(net: &NetStack, addr: SocketAddr) -> io::Result<TcpStream> {
        let inner = Owned::new(net, SockType::Stream)?;
        match inner.call(|s| s.connect(inner.fd, Some(addr))) {
            Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS.code()) => {}
            other => other?,
        }
        poll_fn(|cx| {
            inner.poll(cx, false, |s| {
                if s.readiness(inner.fd)?.intersects(Readiness::OUT | Readiness::ERR) {
                    Ok(())
                } else {
                    Err(Errno::EAGAIN)
                }
            })
        })
        .await?;
        inner.call(|s| s.connect(inner.fd, Some(addr)))?;
        Ok(TcpStream::from_owned(inner))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s| s.getpeername(self.inner.fd))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s| s.getsockname(self.inner.fd))
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.call(|s| s.setsockopt(self.inner.fd, SockOpt::TcpNoDelay, i32::from(nodelay)))
    }

    /// The connection's state and the sender's estimates (`getsockopt(TCP_INFO)`; see [`TcpInfo`]).
    pub fn tcp_info(&self) -> io::Result<TcpInfo> {
        self.inner.call(|s| s.tcp_info(self.inner.fd))
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.call(|s| s.getsockopt(self.inner.fd, SockOpt::TcpNoDelay)).map(|v| v != 0)
    }

    /// Splits into halves that can move to different tasks (tokio's `into_split`).
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (OwnedReadHalf { inner: Arc::clone(&self.inner) }, OwnedWriteHalf { inner: self.inner })
    }

    /// Borrowed halves (tokio's `split`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf { inner: &self.inner }, WriteHalf { inner: &self.inner })
    }
}

fn poll_read(inner: &Owned, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let dst = buf.initialize_unfilled();
    if dst.is_empty() {
        return Poll::Ready(Ok(()));
    }
    match inner.poll(cx, true, |s| s.recv(inner.fd, dst, MsgFlags::DONTWAIT)) {
        Poll::Ready(Ok(n)) => {
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

fn poll_write(inner: &Owned, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
    inner.poll(cx, true, |s| s.send(inner.fd, data, MsgFlags::DONTWAIT))
}

fn poll_shutdown(inner: &Owned) -> Poll<io::Result<()>> {
    Poll::Ready(inner.call(|s| s.shutdown(inner.fd, Shutdown::Write)))
}

impl AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read(&self.inner, cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.inner, cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown(&self.inner)
    }
}

/// The reading half from [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: Arc<Owned>,
}

/// The writing half from [`TcpStream::into_split`]; dropping it does not shut the connection down (as in
/// tokio, call `shutdown`).
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: Arc<Owned>,
}

/// A borrowed reading half.
#[derive(Debug)]
pub struct ReadHalf<'a> {
    inner: &'a Owned,
}

/// A borrowed writing half.
#[derive(Debug)]
pub struct WriteHalf<'a> {
    inner: &'a Owned,
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read(&self.inner, cx, buf)
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read(self.inner, cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(&self.inner, cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown(&self.inner)
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write(self.inner, cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown(self.inner)
    }
}

/// An async UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    inner: Owned,
}

impl UdpSocket {
    pub async fn bind(net: &NetStack, addr: SocketAddr) -> io::Result<UdpSocket> {
        let inner = Owned::new(net, SockType::Dgram)?;
        inner.call(|s| s.bind(inner.fd, addr))?;
        Ok(UdpSocket { inner })
    }

    pub async fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.call(|s| s.connect(self.inner.fd, Some(addr)))
    }

    pub async fn send_to(&self, data: &[u8], addr: SocketAddr) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll(cx, true, |s| s.sendto(self.inner.fd, data, MsgFlags::DONTWAIT, Some(addr)))).await
    }

    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let meta =
            poll_fn(|cx| self.inner.poll(cx, false, |s| s.recvfrom(self.inner.fd, buf, MsgFlags::DONTWAIT))).await?;
        Ok((meta.len, meta.from))
    }

    pub async fn send(&self, data: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll(cx, true, |s| s.send(self.inner.fd, data, MsgFlags::DONTWAIT))).await
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll(cx, false, |s| s.recv(self.inner.fd, buf, MsgFlags::DONTWAIT))).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s| s.getsockname(self.inner.fd))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s| s.getpeername(self.inner.fd))
    }
}
