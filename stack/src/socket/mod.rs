//! The BSD socket layer: descriptors, calls and options, with Linux's semantics and errno values.
//!
//! Every call is a plain method on [`crate::Stack`] that never blocks: where Linux would sleep it returns
//! `EAGAIN`, and a runtime turns that into waiting. A socket moves through the states Linux gives a datagram
//! socket: *detached* (after `socket()`), *bound* (after `bind()`, or implicitly on the first `sendto()`), and
//! *connected* (after `connect()`; `connect(AF_UNSPEC)` goes back to bound).

mod calls;
pub mod epoll;
mod epoll_calls;
mod ports;
mod snapshot;
mod table;
pub(crate) mod tcp;
mod tcp_calls;
pub(crate) mod udp;
mod udp_calls;

pub(crate) use ports::PortTable;
pub use snapshot::{format_duration, SocketInfo};
pub use table::Fd;
pub(crate) use table::{Socket, SocketTable};

/// Address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// `AF_INET`.
    Inet,
    /// `AF_INET6` (not supported yet: `socket()` answers `EAFNOSUPPORT`).
    Inet6,
}

/// Socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockType {
    /// `SOCK_STREAM` (TCP).
    Stream,
    /// `SOCK_DGRAM` (UDP).
    Dgram,
}

/// `MSG_*` flags of send and receive calls, with Linux's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgFlags(pub u32);

impl MsgFlags {
    pub const NONE: MsgFlags = MsgFlags(0);
    /// Look at the data without taking it.
    pub const PEEK: MsgFlags = MsgFlags(0x2);
    /// On receive: return the datagram's real length even when the buffer was shorter.
    pub const TRUNC: MsgFlags = MsgFlags(0x20);
    /// Do not wait: the caller is non-blocking for this call.
    pub const DONTWAIT: MsgFlags = MsgFlags(0x40);
    /// Wait for the whole buffer (stream sockets).
    pub const WAITALL: MsgFlags = MsgFlags(0x100);
    /// Do not raise SIGPIPE (there are no signals here; accepted for compatibility).
    pub const NOSIGNAL: MsgFlags = MsgFlags(0x4000);

    pub fn contains(self, other: MsgFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

impl core::ops::BitOr for MsgFlags {
    type Output = MsgFlags;
    fn bitor(self, rhs: MsgFlags) -> MsgFlags {
        MsgFlags(self.0 | rhs.0)
    }
}

/// What a receive call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes placed in the buffer, or with `MSG_TRUNC` the datagram's full length (as `recvfrom` returns).
    pub len: usize,
    /// The sender.
    pub from: std::net::SocketAddr,
    /// The datagram was longer than the buffer and the rest was discarded (`MSG_TRUNC` in `msg_flags`).
    pub truncated: bool,
}

/// `how` of `shutdown()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Read,
    Write,
    Both,
}

/// Socket options by name (level and option together), as `setsockopt`/`getsockopt` take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOpt {
    /// `SOL_SOCKET, SO_REUSEADDR`.
    ReuseAddr,
    /// `SOL_SOCKET, SO_BROADCAST`.
    Broadcast,
    /// `SOL_SOCKET, SO_RCVBUF`.
    RcvBuf,
    /// `SOL_SOCKET, SO_SNDBUF`.
    SndBuf,
    /// `SOL_SOCKET, SO_ERROR` (read-only; reading clears it).
    Error,
    /// `SOL_SOCKET, SO_TYPE` (read-only).
    Type,
    /// `SOL_SOCKET, SO_ACCEPTCONN` (read-only).
    AcceptConn,
    /// `SOL_SOCKET, SO_KEEPALIVE`.
    KeepAlive,
    /// `IPPROTO_IP, IP_TTL`.
    IpTtl,
    /// `IPPROTO_IP, IP_TOS`.
    IpTos,
    /// `IPPROTO_TCP, TCP_NODELAY`.
    TcpNoDelay,
    /// `IPPROTO_TCP, TCP_MAXSEG`.
    TcpMaxSeg,
    /// `IPPROTO_TCP, TCP_KEEPIDLE` (seconds).
    TcpKeepIdle,
    /// `IPPROTO_TCP, TCP_KEEPINTVL` (seconds).
    TcpKeepIntvl,
    /// `IPPROTO_TCP, TCP_KEEPCNT`.
    TcpKeepCnt,
    /// `IPPROTO_TCP, TCP_LINGER2` (seconds).
    TcpLinger2,
    /// `IPPROTO_TCP, TCP_CONGESTION`: Linux takes the algorithm's name; here the value is a
    /// [`CongestionAlgorithm`](crate::CongestionAlgorithm) as `i32` (0 Reno, 1 CUBIC).
    TcpCongestion,
}

impl SockOpt {
    /// The option's name as C spells it.
    pub fn name(self) -> &'static str {
        match self {
            SockOpt::ReuseAddr => "SO_REUSEADDR",
            SockOpt::Broadcast => "SO_BROADCAST",
            SockOpt::RcvBuf => "SO_RCVBUF",
            SockOpt::SndBuf => "SO_SNDBUF",
            SockOpt::Error => "SO_ERROR",
            SockOpt::Type => "SO_TYPE",
            SockOpt::AcceptConn => "SO_ACCEPTCONN",
            SockOpt::KeepAlive => "SO_KEEPALIVE",
            SockOpt::IpTtl => "IP_TTL",
            SockOpt::IpTos => "IP_TOS",
            SockOpt::TcpNoDelay => "TCP_NODELAY",
            SockOpt::TcpMaxSeg => "TCP_MAXSEG",
            SockOpt::TcpKeepIdle => "TCP_KEEPIDLE",
            SockOpt::TcpKeepIntvl => "TCP_KEEPINTVL",
            SockOpt::TcpKeepCnt => "TCP_KEEPCNT",
            SockOpt::TcpLinger2 => "TCP_LINGER2",
            SockOpt::TcpCongestion => "TCP_CONGESTION",
        }
    }
}

/// `poll(2)` event bits, with Linux's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness(pub u16);

impl Readiness {
    pub const IN: Readiness = Readiness(0x001);
    pub const OUT: Readiness = Readiness(0x004);
    pub const ERR: Readiness = Readiness(0x008);
    pub const HUP: Readiness = Readiness(0x010);
    pub const RDHUP: Readiness = Readiness(0x2000);

    pub fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, rhs: Readiness) -> Readiness {
        Readiness(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Readiness {
    fn bitor_assign(&mut self, rhs: Readiness) {
        self.0 |= rhs.0;
    }
}

/// Linux's `SOCK_MIN_RCVBUF`-like floor and the doubling `setsockopt(SO_RCVBUF)` applies (socket(7): "the
/// kernel doubles this value ... to allow space for bookkeeping overhead").
pub(crate) fn buffer_size_from_user(requested: i32, max: usize, min: usize) -> usize {
    let requested = usize::try_from(requested).unwrap_or(0);
    (requested.min(max) * 2).max(min)
}
