//! The symbolic constants scripts use, with Linux's values (packetdrill's `symbols_linux.c`), and the socket
//! options this interpreter can hand to ustack.

use ustack::{Errno, SockOpt};

/// Constants with Linux's values. Errno names are looked up in [`Errno`] separately.
const SYMBOLS: &[(&str, i64)] = &[
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_UNSPEC", 0),
    ("PF_INET", 2),
    ("PF_INET6", 10),
    ("SOCK_STREAM", 1),
    ("SOCK_DGRAM", 2),
    ("SOCK_NONBLOCK", 0o4000),
    ("SOCK_CLOEXEC", 0o2000000),
    ("IPPROTO_IP", 0),
    ("IPPROTO_TCP", 6),
    ("IPPROTO_UDP", 17),
    ("SOL_SOCKET", 1),
    ("SOL_TCP", 6),
    ("SOL_IP", 0),
    ("SO_REUSEADDR", 2),
    ("SO_TYPE", 3),
    ("SO_ERROR", 4),
    ("SO_BROADCAST", 6),
    ("SO_SNDBUF", 7),
    ("SO_RCVBUF", 8),
    ("SO_KEEPALIVE", 9),
    ("SO_LINGER", 13),
    ("SO_ACCEPTCONN", 30),
    ("IP_TOS", 1),
    ("IP_TTL", 2),
    ("TCP_NODELAY", 1),
    ("TCP_MAXSEG", 2),
    ("TCP_KEEPIDLE", 4),
    ("TCP_KEEPINTVL", 5),
    ("TCP_KEEPCNT", 6),
    ("TCP_LINGER2", 8),
    ("TCP_CONGESTION", 13),
    ("F_GETFL", 3),
    ("F_SETFL", 4),
    ("O_RDONLY", 0),
    ("O_WRONLY", 1),
    ("O_RDWR", 2),
    ("O_NONBLOCK", 0o4000),
    ("MSG_OOB", 0x1),
    ("MSG_PEEK", 0x2),
    ("MSG_TRUNC", 0x20),
    ("MSG_DONTWAIT", 0x40),
    ("MSG_WAITALL", 0x100),
    ("MSG_NOSIGNAL", 0x4000),
    ("SHUT_RD", 0),
    ("SHUT_WR", 1),
    ("SHUT_RDWR", 2),
    ("POLLIN", 0x1),
    ("POLLPRI", 0x2),
    ("POLLOUT", 0x4),
    ("POLLERR", 0x8),
    ("POLLHUP", 0x10),
    ("POLLNVAL", 0x20),
    ("POLLRDNORM", 0x40),
    ("POLLRDBAND", 0x80),
    ("POLLWRNORM", 0x100),
    ("POLLWRBAND", 0x200),
    ("POLLRDHUP", 0x2000),
];

/// The value of a symbol: a constant above or an errno name.
pub fn lookup(name: &str) -> Option<i64> {
    SYMBOLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .or_else(|| Errno::ALL.iter().find(|e| e.name() == name).map(|e| i64::from(e.code())))
}

/// The errno with this number.
pub fn errno_from_code(code: i64) -> Option<Errno> {
    Errno::ALL.iter().copied().find(|e| i64::from(e.code()) == code)
}

/// What `strerror` says, for messages.
pub fn strerror(e: Errno) -> &'static str {
    const TEXT: &[(&str, &str)] = &[
        ("EPERM", "Operation not permitted"),
        ("EINTR", "Interrupted system call"),
        ("EIO", "Input/output error"),
        ("EBADF", "Bad file descriptor"),
        ("EAGAIN", "Resource temporarily unavailable"),
        ("ENOMEM", "Cannot allocate memory"),
        ("EACCES", "Permission denied"),
        ("EFAULT", "Bad address"),
        ("EINVAL", "Invalid argument"),
        ("EMFILE", "Too many open files"),
        ("EPIPE", "Broken pipe"),
        ("ENOPROTOOPT", "Protocol not available"),
        ("EPROTONOSUPPORT", "Protocol not supported"),
        ("ESOCKTNOSUPPORT", "Socket type not supported"),
        ("EOPNOTSUPP", "Operation not supported"),
        ("EAFNOSUPPORT", "Address family not supported by protocol"),
        ("EADDRINUSE", "Address already in use"),
        ("EADDRNOTAVAIL", "Cannot assign requested address"),
        ("ENETDOWN", "Network is down"),
        ("ENETUNREACH", "Network is unreachable"),
        ("ECONNABORTED", "Software caused connection abort"),
        ("ECONNRESET", "Connection reset by peer"),
        ("ENOBUFS", "No buffer space available"),
        ("EISCONN", "Transport endpoint is already connected"),
        ("ENOTCONN", "Transport endpoint is not connected"),
        ("ETIMEDOUT", "Connection timed out"),
        ("ECONNREFUSED", "Connection refused"),
        ("EHOSTDOWN", "Host is down"),
        ("EHOSTUNREACH", "No route to host"),
        ("EALREADY", "Operation already in progress"),
        ("EINPROGRESS", "Operation now in progress"),
        ("EDESTADDRREQ", "Destination address required"),
        ("EMSGSIZE", "Message too long"),
        ("EPROTOTYPE", "Protocol wrong type for socket"),
        ("ENOTSOCK", "Socket operation on non-socket"),
        ("EPROTO", "Protocol error"),
        ("ENOENT", "No such file or directory"),
        ("EEXIST", "File exists"),
    ];
    TEXT.iter().find(|(n, _)| *n == e.name()).map_or("Unknown error", |(_, t)| t)
}

/// The ustack option for a `(level, name)` pair of integers.
pub fn sockopt(level: i64, name: i64) -> Option<SockOpt> {
    Some(match (level, name) {
        (1, 2) => SockOpt::ReuseAddr,
        (1, 3) => SockOpt::Type,
        (1, 4) => SockOpt::Error,
        (1, 6) => SockOpt::Broadcast,
        (1, 7) => SockOpt::SndBuf,
        (1, 8) => SockOpt::RcvBuf,
        (1, 9) => SockOpt::KeepAlive,
        (1, 30) => SockOpt::AcceptConn,
        (0, 1) => SockOpt::IpTos,
        (0, 2) => SockOpt::IpTtl,
        (6, 1) => SockOpt::TcpNoDelay,
        (6, 2) => SockOpt::TcpMaxSeg,
        (6, 4) => SockOpt::TcpKeepIdle,
        (6, 5) => SockOpt::TcpKeepIntvl,
        (6, 6) => SockOpt::TcpKeepCnt,
        (6, 8) => SockOpt::TcpLinger2,
        (6, 13) => SockOpt::TcpCongestion,
        _ => return None,
    })
}

/// `SOL_SOCKET, SO_LINGER`.
pub const SO_LINGER: (i64, i64) = (1, 13);
/// `SOL_TCP, TCP_LINGER2`.
pub const TCP_LINGER2: (i64, i64) = (6, 8);
/// `SOL_TCP, TCP_CONGESTION`: scripts give the algorithm's name (`"reno"`), ustack takes a
/// [`ustack::CongestionAlgorithm`] as a number.
pub const TCP_CONGESTION: (i64, i64) = (6, 13);

/// The system calls the interpreter runs.
pub const SYSCALLS: &[&str] = &[
    "socket",
    "bind",
    "listen",
    "accept",
    "connect",
    "read",
    "readv",
    "recv",
    "recvfrom",
    "write",
    "writev",
    "send",
    "sendto",
    "close",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "fcntl",
    "poll",
];

pub const O_NONBLOCK: i64 = 0o4000;
pub const O_RDWR: i64 = 2;
pub const SOCK_NONBLOCK: i64 = 0o4000;
pub const MSG_PEEK: i64 = 0x2;
pub const MSG_DONTWAIT: i64 = 0x40;
pub const MSG_TRUNC: i64 = 0x20;
pub const F_GETFL: i64 = 3;
pub const F_SETFL: i64 = 4;
pub const POLLIN: i64 = 0x1;
pub const POLLOUT: i64 = 0x4;
pub const POLLERR: i64 = 0x8;
pub const POLLHUP: i64 = 0x10;
pub const POLLNVAL: i64 = 0x20;
pub const POLLRDNORM: i64 = 0x40;
pub const POLLWRNORM: i64 = 0x100;
pub const POLLRDHUP: i64 = 0x2000;
