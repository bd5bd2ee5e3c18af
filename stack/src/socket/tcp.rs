//! The socket-table side of a TCP socket: what it is attached to (nothing yet, a listener, or a connection)
//! and the options it carries until then.

use crate::errno::Errno;
use crate::storage::slab::SlabKey;
use crate::tcp::config::TcpConfig;
use crate::tcp::connection::ConnOptions;
use crate::tcp::handshake::Buffers;
use crate::time::Duration;
use std::net::SocketAddrV4;

/// What a TCP descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpSocketKind {
    /// Not listening or connected; bound when `local` is set.
    Fresh {
        local: Option<SocketAddrV4>,
    },
    Listener(SlabKey),
    Conn(SlabKey),
}

/// A TCP socket.
#[derive(Debug)]
pub(crate) struct TcpSocket {
    pub kind: TcpSocketKind,
    pub reuse_addr: bool,
    pub opts: ConnOptions,
    pub buffers: Buffers,
    /// `SO_LINGER`: `Some(d)` when on. Only `Some(0)` changes behaviour here: `close()` aborts with RST.
    pub linger: Option<Duration>,
    /// A non-blocking `connect()` is in progress (Linux's SS_CONNECTING).
    pub connecting: bool,
    /// An error for a socket without a connection (a failed connect that was reported and dissolved).
    pub error: Option<Errno>,
}

impl TcpSocket {
    pub fn new(config: &TcpConfig) -> Self {
        TcpSocket {
            kind: TcpSocketKind::Fresh { local: None },
            reuse_addr: false,
            opts: ConnOptions::new(config),
            buffers: Buffers { rcvbuf: config.rcvbuf_default, sndbuf: config.sndbuf_default },
            linger: None,
            connecting: false,
            error: None,
        }
    }
}
