//! The system under test: what the interpreter needs from the TCP/IP stack a script runs against, and the
//! ustack implementation of it (on a virtual clock). The Linux kernel's is in [`super::kernel`].
//!
//! Every socket call answers at once, in the terms of a non-blocking call on Linux: `EAGAIN` when a call
//! would block (`EINPROGRESS` then `EALREADY` for `connect`); the interpreter retries it as time passes when the
//! script's socket is blocking. (The kernel backend performs a call on a blocking socket as a real blocking
//! call on a thread, and answers `EAGAIN` until that thread returns.)

use super::config::{Config, Profile, GATEWAY_MAC, LOCAL_MAC};
use super::symbols;
use crate::frames;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::{Domain, Errno, Fd, Instant, MsgFlags, Readiness, Shutdown, SockType, Stack};

/// Time 0 of a script, on the clock of the system under test.
pub const START: Instant = Instant::from_secs(1);

/// The value of a socket option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptVal {
    Int(i32),
    /// `SO_LINGER`: `None` when off.
    Linger(Option<Duration>),
}

/// What a system under test offers the interpreter. Socket descriptors are the system's own.
pub(crate) trait Sut {
    /// The clock, [`START`] being the script's time 0.
    fn now(&self) -> Instant;
    /// True when time only passes when [`Sut::wait`] moves it (a virtual clock).
    fn is_virtual(&self) -> bool;
    /// The next instant the system needs attention on its own (a timer), when it has a virtual clock.
    fn deadline(&self) -> Option<Instant>;
    /// Lets time pass towards `limit`: to the system's next deadline if it comes first (virtual clock), or until
    /// something may have happened (real clock: a frame from the system, a blocking call returning, a short
    /// tick). Returns false when the clock is already at `limit` and nothing is due.
    fn wait(&mut self, limit: Instant) -> bool;
    /// Runs what is due and hands over the frames the system sent since the last call.
    fn poll(&mut self, out: &mut Vec<Vec<u8>>);
    /// Delivers a frame to the system (from the remote end of the script).
    fn receive(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>);
    /// The system's hardware address (frames to it use it).
    fn mac(&self) -> MacAddr;

    /// `socket(domain, type, 0)`; `ty` may carry `SOCK_NONBLOCK`.
    fn socket(&mut self, domain: i64, ty: i64) -> Result<Fd, Errno>;
    fn bind(&mut self, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno>;
    fn local_port(&self, fd: Fd) -> Option<u16>;
    fn listen(&mut self, fd: Fd, backlog: i32) -> Result<(), Errno>;
    /// `blocking`: the socket is blocking (the call may wait).
    fn accept(&mut self, fd: Fd, blocking: bool) -> Result<(Fd, SocketAddrV4), Errno>;
    fn connect(&mut self, fd: Fd, addr: SocketAddrV4, blocking: bool) -> Result<(), Errno>;
    /// `recv(fd, buf, count, flags)` with Linux's `MSG_*` bits; returns the length.
    fn recv(&mut self, fd: Fd, count: usize, flags: i64, blocking: bool) -> Result<usize, Errno>;
    /// `send` (or `sendto` with `dest`) of `count` zero bytes; returns how many were taken.
    fn send(
        &mut self,
        fd: Fd,
        count: usize,
        flags: i64,
        dest: Option<SocketAddrV4>,
        blocking: bool,
    ) -> Result<usize, Errno>;
    fn close(&mut self, fd: Fd) -> Result<(), Errno>;
    /// `how`: `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`.
    fn shutdown(&mut self, fd: Fd, how: i64) -> Result<(), Errno>;
    fn setsockopt(&mut self, fd: Fd, level: i64, name: i64, value: OptVal) -> Result<(), Errno>;
    fn getsockopt(&mut self, fd: Fd, level: i64, name: i64) -> Result<OptVal, Errno>;
    /// `fcntl(fd, F_GETFL)`.
    fn get_flags(&mut self, fd: Fd) -> Result<i64, Errno>;
    /// `fcntl(fd, F_SETFL, flags)`.
    fn set_flags(&mut self, fd: Fd, flags: i64) -> Result<(), Errno>;
    /// What `poll(2)` would report for `fd` right now, every event bit (`POLLIN|POLLRDNORM`, `POLLOUT|POLLWRNORM`,
    /// `POLLERR`, `POLLHUP`, `POLLRDHUP`); `Err` for a descriptor that is not a socket.
    fn poll_events(&mut self, fd: Fd) -> Result<i64, Errno>;
}

/// ustack on a virtual clock.
pub(crate) struct UstackSut {
    stack: Stack,
    now: Instant,
}

impl UstackSut {
    pub(crate) fn new(cfg: &Config) -> UstackSut {
        let cidr = Ipv4Cidr::new(cfg.local_ip, cfg.prefix_len).unwrap_or_else(|| {
            Ipv4Cidr::new(cfg.local_ip, 16).unwrap_or_else(|| unreachable!("a /16 prefix is always valid"))
        });
        let mut sc = match cfg.profile {
            Profile::Linux => Profile::Linux.stack_config(LOCAL_MAC, cidr),
        };
        sc.gateway = Some(cfg.gateway_ip);
        sc.mtu = cfg.mtu;
        // Keep the gateway's ARP entry for the longest script; requests are answered anyway.
        sc.arp.reachable_time = Duration::from_secs(365 * 24 * 3600);
        if let Some(t) = &cfg.tweak {
            t(&mut sc);
        }
        let mut stack = Stack::new(sc);
        frames::prime_arp(&mut stack, START, cfg.gateway_ip, GATEWAY_MAC);
        UstackSut { stack, now: START }
    }
}

/// poll(2) bits of a readiness, as Linux's `tcp_poll` sets them (POLLRDNORM with POLLIN, POLLWRNORM with
/// POLLOUT).
fn poll_bits(r: Readiness) -> i64 {
    let mut bits = 0;
    if r.contains(Readiness::IN) {
        bits |= symbols::POLLIN | symbols::POLLRDNORM;
    }
    if r.contains(Readiness::OUT) {
        bits |= symbols::POLLOUT | symbols::POLLWRNORM;
    }
    if r.contains(Readiness::ERR) {
        bits |= symbols::POLLERR;
    }
    if r.contains(Readiness::HUP) {
        bits |= symbols::POLLHUP;
    }
    if r.contains(Readiness::RDHUP) {
        bits |= symbols::POLLRDHUP;
    }
    bits
}

impl Sut for UstackSut {
    fn now(&self) -> Instant {
        self.now
    }

    fn is_virtual(&self) -> bool {
        true
    }

    fn deadline(&self) -> Option<Instant> {
        self.stack.poll_at()
    }

    fn wait(&mut self, limit: Instant) -> bool {
        match self.stack.poll_at() {
            Some(at) if at <= self.now => true,
            Some(at) if at <= limit => {
                self.now = at;
                true
            }
            _ if self.now < limit => {
                self.now = limit;
                true
            }
            _ => false,
        }
    }

    fn poll(&mut self, out: &mut Vec<Vec<u8>>) {
        self.stack.poll(self.now, out);
    }

    fn receive(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        self.stack.receive(self.now, frame, out);
    }

    fn mac(&self) -> MacAddr {
        LOCAL_MAC
    }

    fn socket(&mut self, domain: i64, ty: i64) -> Result<Fd, Errno> {
        let domain = if domain == 10 { Domain::Inet6 } else { Domain::Inet };
        let sock_ty = if ty & 0xf == 2 { SockType::Dgram } else { SockType::Stream };
        self.stack.socket(domain, sock_ty)
    }

    fn bind(&mut self, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
        self.stack.bind(fd, SocketAddr::V4(addr))
    }

    fn local_port(&self, fd: Fd) -> Option<u16> {
        self.stack.getsockname(fd).map(|a| a.port()).ok()
    }

    fn listen(&mut self, fd: Fd, backlog: i32) -> Result<(), Errno> {
        self.stack.listen(fd, backlog)
    }

    fn accept(&mut self, fd: Fd, _blocking: bool) -> Result<(Fd, SocketAddrV4), Errno> {
        let (new, peer) = self.stack.accept(fd)?;
        let peer = match peer {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => {
                SocketAddrV4::new(a.ip().to_ipv4().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), a.port())
            }
        };
        Ok((new, peer))
    }

    fn connect(&mut self, fd: Fd, addr: SocketAddrV4, _blocking: bool) -> Result<(), Errno> {
        self.stack.connect(fd, Some(SocketAddr::V4(addr)))
    }

    fn recv(&mut self, fd: Fd, count: usize, flags: i64, _blocking: bool) -> Result<usize, Errno> {
        let mut f = MsgFlags::DONTWAIT;
        for (bit, m) in [(symbols::MSG_PEEK, MsgFlags::PEEK), (symbols::MSG_TRUNC, MsgFlags::TRUNC)] {
            if flags & bit != 0 {
                f = f | m;
            }
        }
        let mut buf = vec![0u8; count];
        self.stack.recvfrom(fd, &mut buf, f).map(|m| m.len)
    }

    fn send(
        &mut self,
        fd: Fd,
        count: usize,
        _flags: i64,
        dest: Option<SocketAddrV4>,
        _blocking: bool,
    ) -> Result<usize, Errno> {
        let buf = vec![0u8; count];
        match dest {
            Some(d) => self.stack.sendto(fd, &buf, MsgFlags::NONE, Some(SocketAddr::V4(d))),
            None if self.stack.socket_type(fd) == Ok(2) => self.stack.sendto(fd, &buf, MsgFlags::NONE, None),
            None => self.stack.send(fd, &buf, MsgFlags::NONE),
        }
    }

    fn close(&mut self, fd: Fd) -> Result<(), Errno> {
        self.stack.close(fd)
    }

    fn shutdown(&mut self, fd: Fd, how: i64) -> Result<(), Errno> {
        let how = match how {
            0 => Shutdown::Read,
            1 => Shutdown::Write,
            _ => Shutdown::Both,
        };
        self.stack.shutdown(fd, how)
    }

    fn setsockopt(&mut self, fd: Fd, level: i64, name: i64, value: OptVal) -> Result<(), Errno> {
        match value {
            OptVal::Linger(l) if (level, name) == symbols::SO_LINGER => self.stack.set_linger(fd, l),
            OptVal::Int(v) => match symbols::sockopt(level, name) {
                Some(opt) => self.stack.setsockopt(fd, opt, v),
                None => Err(Errno::ENOPROTOOPT),
            },
            OptVal::Linger(_) => Err(Errno::EINVAL),
        }
    }

    fn getsockopt(&mut self, fd: Fd, level: i64, name: i64) -> Result<OptVal, Errno> {
        if (level, name) == symbols::SO_LINGER {
            return self.stack.linger(fd).map(OptVal::Linger);
        }
        let opt = symbols::sockopt(level, name).ok_or(Errno::ENOPROTOOPT)?;
        self.stack.getsockopt(fd, opt).map(OptVal::Int)
    }

    fn get_flags(&mut self, fd: Fd) -> Result<i64, Errno> {
        // ustack's calls never block; the interpreter keeps the O_NONBLOCK flag itself.
        self.stack.socket_type(fd).map(|_| symbols::O_RDWR)
    }

    fn set_flags(&mut self, fd: Fd, _flags: i64) -> Result<(), Errno> {
        self.stack.socket_type(fd).map(|_| ())
    }

    fn poll_events(&mut self, fd: Fd) -> Result<i64, Errno> {
        self.stack.readiness(fd).map(poll_bits)
    }
}
