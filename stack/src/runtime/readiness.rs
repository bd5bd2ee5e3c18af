//! Waiting on many sockets at once: `poll`-style over a set, and an epoll-style registry whose `wait` costs
//! O(ready). Both block on the stack's readiness notifications, never in a polling loop.

use super::driver::{NetStack, Wait};
use crate::errno::Errno;
use crate::socket::epoll::{EpollEvent, EpollOp, PollFd};
use crate::socket::Fd;
use std::io;
use std::time::Duration;

impl NetStack {
    /// `poll(2)` over stack descriptors: waits until at least one entry has something or `timeout` passes,
    /// and returns how many entries have something (0 on timeout).
    pub fn poll(&self, fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
        let wait_fds: Vec<Fd> = fds.iter().map(|p| p.fd).collect();
        match self.call(Wait::On { fds: &wait_fds, timeout }, false, |s| match s.poll_fds(fds) {
            0 => Err(Errno::EAGAIN),
            n => Ok(n),
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }
}

/// An epoll instance on a [`NetStack`]. Closed when dropped.
#[derive(Debug)]
pub struct Epoll {
    net: NetStack,
    fd: Fd,
}

impl Epoll {
    pub fn new(net: &NetStack) -> io::Result<Epoll> {
        let fd = net.call(Wait::Never, false, |s| s.epoll_create())?;
        Ok(Epoll { net: net.clone(), fd })
    }

    /// Watches `fd` for `events` (readiness bits, optionally with `EPOLLET` or `EPOLLONESHOT`), reporting
    /// `token` with them.
    pub fn add(&self, fd: Fd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(EpollOp::Add, fd, events, token)
    }

    pub fn modify(&self, fd: Fd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(EpollOp::Modify, fd, events, token)
    }

    pub fn delete(&self, fd: Fd) -> io::Result<()> {
        self.ctl(EpollOp::Delete, fd, 0, 0)
    }

    fn ctl(&self, op: EpollOp, fd: Fd, events: u32, data: u64) -> io::Result<()> {
        let event = EpollEvent { events, data };
        self.net.call(Wait::Never, false, |s| s.epoll_ctl(self.fd, op, fd, event))
    }

    /// Waits until something is ready or `timeout` passes; fills `out` and returns how many (0 on timeout).
    pub fn wait(&self, out: &mut [EpollEvent], timeout: Option<Duration>) -> io::Result<usize> {
        match self.net.call(Wait::On { fds: &[self.fd], timeout }, false, |s| match s.epoll_wait(self.fd, out)? {
            0 => Err(Errno::EAGAIN),
            n => Ok(n),
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        self.net.close_quietly(self.fd);
    }
}
