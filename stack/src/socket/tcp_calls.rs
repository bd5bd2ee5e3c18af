//! The socket calls on TCP sockets, with Linux's semantics (tcp(7), socket(7), and the kernel's
//! `inet_stream_connect`, `tcp_sendmsg`, `tcp_recvmsg`, `inet_shutdown`, `tcp_close`).

use super::tcp::{TcpSocket, TcpSocketKind};
use super::{buffer_size_from_user, Fd, MsgFlags, Readiness, RecvMeta, Shutdown, SockOpt, Socket};
use crate::errno::{Errno, SysResult};
use crate::iface::Stack;
use crate::storage::ring_buffer::copy_pieces;
use crate::storage::slab::SlabKey;
use crate::tcp::congestion::CongestionAlgorithm;
use crate::tcp::connection::{Outcome, State};
use crate::tcp::handshake::Buffers;
use crate::tcp::info::TcpInfo;
use crate::tcp::listener::Listener;
use crate::tcp::ports::{Binding, Owner};
use crate::time::{Duration, Instant};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

const MIN_RCVBUF: usize = 2304;
const MIN_SNDBUF: usize = 4608;
/// tcp(7): TCP_MAXSEG outside 88..=32767 is EINVAL.
const MIN_USER_MSS: i32 = 88;
const MAX_USER_MSS: i32 = 32767;
/// TCP_MAXSEG before a connection exists reports the default MSS (Linux's TCP_MSS_DEFAULT).
const DEFAULT_MSS: i32 = 536;

fn v4(addr: SocketAddr) -> SysResult<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(Errno::EAFNOSUPPORT),
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

impl Stack {
    fn tcp_sock(&self, fd: Fd) -> SysResult<&TcpSocket> {
        match self.sockets.get(fd)? {
            Socket::Tcp(s) => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }

    fn tcp_sock_mut(&mut self, fd: Fd) -> SysResult<&mut TcpSocket> {
        match self.sockets.get_mut(fd)? {
            Socket::Tcp(s) => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }

    /// The connection a descriptor is attached to, if any.
    fn tcp_conn_key(&self, fd: Fd) -> SysResult<Option<SlabKey>> {
        Ok(match self.tcp_sock(fd)?.kind {
            TcpSocketKind::Conn(k) => Some(k),
            _ => None,
        })
    }

    pub(crate) fn tcp_socket(&mut self) -> SysResult<Fd> {
        let sock = Box::new(TcpSocket::new(&self.tcp.config));
        self.sockets.insert(Socket::Tcp(sock))
    }

    /// A port from the ephemeral range that no TCP binding holds (for `bind(port 0)` and `listen()` unbound).
    fn tcp_free_port(&mut self) -> Option<u16> {
        let (first, last) = self.config.ephemeral_ports;
        if first > last {
            return None;
        }
        let count = u32::from(last - first) + 1;
        let start = self.random_u32() % count;
        (0..count).map(|i| first + ((start + i) % count) as u16).find(|&p| self.tcp.ports.is_free(p))
    }

    pub(crate) fn tcp_bind(&mut self, fd: Fd, addr: SocketAddr) -> SysResult<()> {
        let addr = v4(addr)?;
        let sock = self.tcp_sock(fd)?;
        if sock.kind != (TcpSocketKind::Fresh { local: None }) {
            return Err(Errno::EINVAL);
        }
        let ip = *addr.ip();
        if !(ip.is_unspecified() || ip == self.config.ipv4.addr || ip.is_loopback()) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let reuse = sock.reuse_addr;
        let port = if addr.port() == 0 {
            self.tcp_free_port().ok_or(Errno::EADDRINUSE)?
        } else {
            if self.tcp.ports.bind_conflicts(ip, addr.port(), reuse, None) {
                return Err(Errno::EADDRINUSE);
            }
            addr.port()
        };
        self.tcp
            .ports
            .add(port, Binding { owner: Owner::Socket(fd), ip, reuse_addr: reuse, listening: false, explicit: true });
        self.tcp_sock_mut(fd)?.kind = TcpSocketKind::Fresh { local: Some(SocketAddrV4::new(ip, port)) };
        Ok(())
    }

    pub(crate) fn tcp_listen(&mut self, fd: Fd, backlog: i32) -> SysResult<()> {
        // listen(2) on Linux: a negative or huge backlog is taken as somaxconn.
        let somaxconn = self.tcp.config.somaxconn;
        let backlog = usize::try_from(backlog).map_or(somaxconn, |b| b.min(somaxconn));
        let sock = self.tcp_sock(fd)?;
        let local = match sock.kind {
            TcpSocketKind::Listener(lk) => {
                if let Some(l) = self.tcp.listeners.get_mut(lk) {
                    l.backlog = backlog;
                }
                return Ok(());
            }
            TcpSocketKind::Conn(_) => return Err(Errno::EINVAL),
            TcpSocketKind::Fresh { local } => local,
        };
        let local = match local {
            Some(l) => l,
            None => {
                self.tcp_bind(fd, unspecified())?;
                match self.tcp_sock(fd)?.kind {
                    TcpSocketKind::Fresh { local: Some(l) } => l,
                    _ => return Err(Errno::EINVAL),
                }
            }
        };
        if self.tcp.ports.listen_conflicts(*local.ip(), local.port(), Owner::Socket(fd)) {
            return Err(Errno::EADDRINUSE);
        }
        let sock = self.tcp_sock(fd)?;
        let listener = Listener {
            fd,
            local,
            backlog,
            syn_queue_len: 0,
            accept_queue: VecDeque::new(),
            opts: sock.opts.clone(),
            buffers: sock.buffers,
            reuse_addr: sock.reuse_addr,
        };
        let lk = self.tcp.listeners.insert(listener);
        self.tcp.listen_index.insert(local, lk);
        self.tcp.ports.update(local.port(), Owner::Socket(fd), |b| b.listening = true);
        self.tcp_sock_mut(fd)?.kind = TcpSocketKind::Listener(lk);
        Ok(())
    }

    pub(crate) fn tcp_accept(&mut self, fd: Fd) -> SysResult<(Fd, SocketAddr)> {
        let TcpSocketKind::Listener(lk) = self.tcp_sock(fd)?.kind else { return Err(Errno::EINVAL) };
        let listener = self.tcp.listeners.get(lk).ok_or(Errno::EINVAL)?;
        if listener.accept_queue.is_empty() {
            return Err(Errno::EAGAIN);
        }
        // Linux allocates the descriptor before taking the connection: with no room the connection stays queued.
        if !self.sockets.has_room() {
            return Err(Errno::EMFILE);
        }
        let (opts, buffers, reuse) = (listener.opts.clone(), listener.buffers, listener.reuse_addr);
        let k = self.tcp.listeners.get_mut(lk).and_then(|l| l.accept_queue.pop_front()).ok_or(Errno::EAGAIN)?;
        let mut sock = TcpSocket::new(&self.tcp.config);
        sock.kind = TcpSocketKind::Conn(k);
        sock.opts = opts;
        sock.buffers = buffers;
        sock.reuse_addr = reuse;
        let new_fd = self.sockets.insert(Socket::Tcp(Box::new(sock)))?;
        self.tcp.events.push(fd);
        let conn = self.tcp.conns.get_mut(k).ok_or(Errno::ECONNABORTED)?;
        conn.fd = Some(new_fd);
        conn.listener = None;
        Ok((new_fd, SocketAddr::V4(conn.remote)))
    }

    /// `connect()`, following `__inet_stream_connect`: `EINPROGRESS` to start, `EALREADY` while the handshake
    /// runs, success once for a completed one, `EISCONN` after; a failed attempt reports its error once and
    /// leaves the socket ready for another try.
    pub(crate) fn tcp_connect(&mut self, fd: Fd, addr: Option<SocketAddr>) -> SysResult<()> {
        let sock = self.tcp_sock(fd)?;
        let Some(addr) = addr else { return self.tcp_disconnect(fd) };
        let remote = v4(addr)?;
        match sock.kind {
            TcpSocketKind::Listener(_) => return Err(Errno::EISCONN),
            TcpSocketKind::Conn(k) => {
                let connecting = sock.connecting;
                let state = self.tcp.conns.get(k).map(|c| c.state);
                return match (connecting, state) {
                    (true, Some(State::SynSent | State::SynReceived)) => Err(Errno::EALREADY),
                    (true, Some(State::Closed) | None) => {
                        let err = self.tcp.conns.get_mut(k).and_then(|c| c.error.take()).unwrap_or(Errno::ECONNABORTED);
                        self.tcp_detach(fd, k);
                        Err(err)
                    }
                    (true, Some(_)) => {
                        self.tcp_sock_mut(fd)?.connecting = false;
                        Ok(())
                    }
                    (false, _) => Err(Errno::EISCONN),
                };
            }
            TcpSocketKind::Fresh { .. } => {}
        }
        if remote.ip().is_broadcast() || remote.ip().is_multicast() || self.is_broadcast(*remote.ip()) {
            return Err(Errno::ENETUNREACH);
        }
        if remote.port() == 0 {
            return Err(Errno::ECONNREFUSED);
        }
        self.route(*remote.ip())?;
        let sock = self.tcp_sock(fd)?;
        let TcpSocketKind::Fresh { local: bound } = sock.kind else { return Err(Errno::EINVAL) };
        let (opts, buffers, reuse) = (sock.opts.clone(), sock.buffers, sock.reuse_addr);
        let local_ip = if remote.ip().is_loopback() { *remote.ip() } else { self.config.ipv4.addr };
        // Linux's route lookup refuses a loopback source for a destination elsewhere, and the reverse (EINVAL).
        if bound.is_some_and(|b| !b.ip().is_unspecified() && b.ip().is_loopback() != remote.ip().is_loopback()) {
            return Err(Errno::EINVAL);
        }
        let mut min_isn = None;
        let local = match bound {
            Some(b) => {
                let ip = if b.ip().is_unspecified() { local_ip } else { *b.ip() };
                let local = SocketAddrV4::new(ip, b.port());
                min_isn = self.tcp.reuse_time_wait_for_connect((local, remote)).ok_or(Errno::EADDRNOTAVAIL)?;
                self.tcp.ports.remove(b.port(), Owner::Socket(fd));
                local
            }
            None => {
                let range = self.config.ephemeral_ports;
                let port = self.tcp.pick_connect_port(local_ip, remote, range).ok_or(Errno::EADDRNOTAVAIL)?;
                SocketAddrV4::new(local_ip, port)
            }
        };
        let binding = Binding {
            owner: Owner::Socket(fd),
            ip: *local.ip(),
            reuse_addr: reuse,
            listening: false,
            explicit: bound.is_some(),
        };
        let mss = opts.user_mss.map_or(self.tcp_our_mss(), |m| m.min(self.tcp_our_mss()));
        let now = self.last_now;
        let k = self.tcp.open(now, local, remote, mss, opts, buffers, fd, binding, min_isn);
        let sock = self.tcp_sock_mut(fd)?;
        sock.kind = TcpSocketKind::Conn(k);
        sock.connecting = true;
        Err(Errno::EINPROGRESS)
    }

    /// `connect(AF_UNSPEC)` on a stream socket: Linux's `tcp_disconnect` aborts the connection (RST) and
    /// leaves an unbound socket.
    fn tcp_disconnect(&mut self, fd: Fd) -> SysResult<()> {
        let now = self.last_now;
        match self.tcp_sock(fd)?.kind {
            // A bound socket stays bound (its port was named by bind(): Linux's SOCK_BINDPORT_LOCK).
            TcpSocketKind::Fresh { .. } => return Ok(()),
            // A listener stops listening (inet_csk_listen_stop): its unaccepted connections are reset; the
            // port it was bound to stays bound.
            TcpSocketKind::Listener(lk) => {
                let Some(local) = self.tcp.listeners.get(lk).map(|l| l.local) else { return Ok(()) };
                let reuse = self.tcp_sock(fd)?.reuse_addr;
                self.tcp_close_listener(now, fd, lk);
                self.tcp.ports.add(
                    local.port(),
                    Binding {
                        owner: Owner::Socket(fd),
                        ip: *local.ip(),
                        reuse_addr: reuse,
                        listening: false,
                        explicit: true,
                    },
                );
                self.tcp_sock_mut(fd)?.kind = TcpSocketKind::Fresh { local: Some(local) };
            }
            TcpSocketKind::Conn(k) => {
                if let Some(conn) = self.tcp.conns.get_mut(k) {
                    conn.fd = None;
                    if conn.state.is_synchronized() && conn.state != State::Closed {
                        self.tcp.after_event(now, k, Outcome::Abort(None));
                    }
                }
                self.tcp.retire(k, None);
                self.tcp_sock_mut(fd)?.kind = TcpSocketKind::Fresh { local: None };
            }
        }
        self.tcp_sock_mut(fd)?.connecting = false;
        Ok(())
    }

    /// Drops a closed connection from a descriptor, leaving a fresh unbound socket (after a failed connect).
    fn tcp_detach(&mut self, fd: Fd, k: SlabKey) {
        if let Some(conn) = self.tcp.conns.get_mut(k) {
            conn.fd = None;
        }
        self.tcp.retire(k, None);
        if let Ok(sock) = self.tcp_sock_mut(fd) {
            sock.kind = TcpSocketKind::Fresh { local: None };
            sock.connecting = false;
        }
    }

    /// `send()`: bytes go into the send buffer; `EAGAIN` when it is full or the handshake is still running.
    pub(crate) fn tcp_send(&mut self, fd: Fd, buf: &[u8]) -> SysResult<usize> {
        let Some(k) = self.tcp_conn_key(fd)? else {
            // sk_stream_wait_connect: a socket that is not connecting gets EPIPE.
            return Err(self.tcp_sock_mut(fd)?.error.take().unwrap_or(Errno::EPIPE));
        };
        let conn = self.tcp.conns.get_mut(k).ok_or(Errno::EPIPE)?;
        if let Some(e) = conn.error.take() {
            return Err(e);
        }
        match conn.state {
            State::SynSent | State::SynReceived => return Err(Errno::EAGAIN),
            State::Established | State::CloseWait if conn.fin_seq.is_none() => {}
            _ => return Err(Errno::EPIPE),
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if conn.tx.is_detached() {
            self.tcp.lend_send_buffer(k);
        }
        let conn = self.tcp.conns.get_mut(k).ok_or(Errno::EPIPE)?;
        let n = conn.tx.push(buf);
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        self.tcp.wake(k);
        self.tcp.events.push(fd);
        Ok(n)
    }

    /// `recv()`, following `tcp_recvmsg`: data first; then a pending error; then end of file (0) after the
    /// peer's FIN, a reset already reported, or `shutdown(SHUT_RD)`; `ENOTCONN` if never connected.
    pub(crate) fn tcp_recv(&mut self, fd: Fd, buf: &mut [u8], flags: MsgFlags) -> SysResult<RecvMeta> {
        let Some(k) = self.tcp_conn_key(fd)? else { return Err(Errno::ENOTCONN) };
        let conn = self.tcp.conns.get_mut(k).ok_or(Errno::ENOTCONN)?;
        let from = SocketAddr::V4(conn.remote);
        if !conn.rx.is_empty() && !buf.is_empty() {
            let n = if flags.contains(MsgFlags::PEEK) {
                let (a, b) = conn.rx.peek(0, buf.len());
                copy_pieces(buf, a, b)
            } else {
                let n = conn.rx.pop(buf);
                if conn.window_update_due() {
                    self.tcp.wake(k);
                }
                self.tcp.note_emptied_rings(k);
                // Reading may end readability: edge-triggered watchers must see the fall to see the next rise.
                self.tcp.events.push(fd);
                n
            };
            return Ok(RecvMeta { len: n, from, truncated: false });
        }
        // tcp_recvmsg checks SOCK_DONE (the peer's FIN was read) before the pending error: after end of file a
        // reset is left for SO_ERROR and send().
        if conn.peer_fin {
            return Ok(RecvMeta { len: 0, from, truncated: false });
        }
        if let Some(e) = conn.error.take() {
            return Err(e);
        }
        if conn.state == State::Closed || conn.shut_rd || buf.is_empty() {
            return Ok(RecvMeta { len: 0, from, truncated: false });
        }
        Err(Errno::EAGAIN)
    }

    pub(crate) fn tcp_getsockname(&self, fd: Fd) -> SysResult<SocketAddr> {
        Ok(match self.tcp_sock(fd)?.kind {
            TcpSocketKind::Fresh { local } => local.map_or(unspecified(), SocketAddr::V4),
            TcpSocketKind::Listener(lk) => {
                self.tcp.listeners.get(lk).map_or(unspecified(), |l| SocketAddr::V4(l.local))
            }
            TcpSocketKind::Conn(k) => self.tcp.conns.get(k).map_or(unspecified(), |c| SocketAddr::V4(c.local)),
        })
    }

    /// `getpeername()`: `ENOTCONN` unless the handshake is complete and the connection not closed.
    pub(crate) fn tcp_getpeername(&self, fd: Fd) -> SysResult<SocketAddr> {
        let Some(k) = self.tcp_conn_key(fd)? else { return Err(Errno::ENOTCONN) };
        let conn = self.tcp.conns.get(k).ok_or(Errno::ENOTCONN)?;
        match conn.state {
            State::SynSent | State::Closed => Err(Errno::ENOTCONN),
            _ => Ok(SocketAddr::V4(conn.remote)),
        }
    }

    /// `shutdown()`: SHUT_WR queues our FIN after the data (RFC 9293 section 3.10.4 CLOSE: ESTABLISHED goes to
    /// FIN-WAIT-1, CLOSE-WAIT to LAST-ACK); SHUT_RD makes reads return end of file.
    pub(crate) fn tcp_shutdown(&mut self, fd: Fd, how: Shutdown) -> SysResult<()> {
        let Some(k) = self.tcp_conn_key(fd)? else { return Err(Errno::ENOTCONN) };
        let now = self.last_now;
        let conn = self.tcp.conns.get_mut(k).ok_or(Errno::ENOTCONN)?;
        if matches!(conn.state, State::Closed) {
            return Err(Errno::ENOTCONN);
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            conn.shut_rd = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            if conn.state == State::SynSent {
                // RFC 9293 CLOSE in SYN-SENT: delete the TCB.
                self.tcp.after_event(now, k, Outcome::Gone(None));
                return Ok(());
            }
            Self::queue_fin(conn);
        }
        if let Some(fd) = conn.fd {
            self.tcp.events.push(fd);
        }
        self.tcp.wake(k);
        Ok(())
    }

    /// Queues our FIN after everything in the send buffer, moving to the closing state RFC 9293 section 3.10.4
    /// names.
    fn queue_fin(conn: &mut crate::tcp::connection::Connection) {
        if conn.fin_seq.is_some() {
            return;
        }
        let next = match conn.state {
            State::Established | State::SynReceived => State::FinWait1,
            State::CloseWait => State::LastAck,
            _ => return,
        };
        conn.fin_seq = Some(conn.snd_una + conn.tx.len());
        conn.state = next;
    }

    /// `close()`. A connection with unread data, or with `SO_LINGER {on, 0}`, is aborted with a RST (RFC 2525
    /// section 2.17, RFC 9293 section 3.10.4); otherwise it closes gracefully, orphaned, in the background. A
    /// listener resets every connection it never handed out.
    pub(crate) fn tcp_close(&mut self, fd: Fd) -> SysResult<()> {
        let Ok(Socket::Tcp(sock)) = self.sockets.remove(fd) else { return Err(Errno::EBADF) };
        self.tcp.events.push(fd);
        let now = self.last_now;
        match sock.kind {
            TcpSocketKind::Fresh { local } => {
                if let Some(l) = local {
                    self.tcp.ports.remove(l.port(), Owner::Socket(fd));
                }
            }
            TcpSocketKind::Listener(lk) => self.tcp_close_listener(now, fd, lk),
            TcpSocketKind::Conn(k) => {
                let Some(conn) = self.tcp.conns.get_mut(k) else { return Ok(()) };
                conn.fd = None;
                if conn.state == State::Closed {
                    self.tcp.retire(k, None);
                } else if !conn.rx.is_empty() && conn.state.is_synchronized() {
                    self.tcp.counters.aborts_on_close += 1;
                    self.tcp.after_event(now, k, Outcome::Abort(None));
                } else if sock.linger == Some(Duration::ZERO) && conn.state.is_synchronized() {
                    self.tcp.counters.aborts_on_linger += 1;
                    self.tcp.after_event(now, k, Outcome::Abort(None));
                } else if matches!(conn.state, State::SynSent | State::SynReceived) {
                    self.tcp.after_event(now, k, Outcome::Gone(None));
                } else {
                    Self::queue_fin(conn);
                    if conn.state == State::FinWait2 {
                        conn.linger_at = Some(now + conn.opts.linger2.unwrap_or(self.tcp.config.fin_timeout));
                    }
                    self.tcp.wake(k);
                }
            }
        }
        Ok(())
    }

    fn tcp_close_listener(&mut self, now: Instant, fd: Fd, lk: SlabKey) {
        let Some(listener) = self.tcp.listeners.remove(lk) else { return };
        self.tcp.listen_index.remove(&listener.local);
        self.tcp.ports.remove(listener.local.port(), Owner::Socket(fd));
        for k in listener.accept_queue {
            if let Some(conn) = self.tcp.conns.get_mut(k) {
                conn.listener = None;
                self.tcp.after_event(now, k, Outcome::Abort(None));
            }
        }
        let half: Vec<SlabKey> =
            self.tcp.half_open.iter().filter(|(_, h)| h.listener == lk).map(|(hk, _)| hk).collect();
        for hk in half {
            if let Some(h) = self.tcp.half_open.remove(hk) {
                if let Some(t) = h.timer {
                    self.tcp.timers.cancel(t);
                }
                self.tcp.demux.remove_if(&(h.local, h.remote), crate::tcp::demux::Demuxed::HalfOpen(hk));
            }
        }
    }

    pub(crate) fn tcp_setsockopt(&mut self, fd: Fd, opt: SockOpt, value: i32) -> SysResult<()> {
        let (rmem_max, wmem_max) = (self.tcp.config.rmem_max, self.tcp.config.wmem_max);
        let key = self.tcp_conn_key(fd)?;
        let secs = |v: i32| -> SysResult<Duration> {
            if (1..=32767).contains(&v) {
                Ok(Duration::from_secs(v as u64))
            } else {
                Err(Errno::EINVAL)
            }
        };
        let sock = self.tcp_sock_mut(fd)?;
        match opt {
            SockOpt::ReuseAddr => sock.reuse_addr = value != 0,
            SockOpt::RcvBuf => {
                sock.buffers.rcvbuf = buffer_size_from_user(value, rmem_max, MIN_RCVBUF);
                sock.opts.rcvbuf_locked = true;
            }
            SockOpt::SndBuf => {
                sock.buffers.sndbuf = buffer_size_from_user(value, wmem_max, MIN_SNDBUF);
                sock.opts.sndbuf_locked = true;
            }
            SockOpt::KeepAlive => sock.opts.keepalive = value != 0,
            SockOpt::TcpNoDelay => sock.opts.nodelay = value != 0,
            SockOpt::TcpMaxSeg => {
                if !(MIN_USER_MSS..=MAX_USER_MSS).contains(&value) {
                    return Err(Errno::EINVAL);
                }
                sock.opts.user_mss = Some(value as u16);
            }
            SockOpt::TcpKeepIdle => sock.opts.keep_idle = secs(value)?,
            SockOpt::TcpKeepIntvl => sock.opts.keep_interval = secs(value)?,
            SockOpt::TcpKeepCnt => {
                if !(1..=127).contains(&value) {
                    return Err(Errno::EINVAL);
                }
                sock.opts.keep_count = value as u32;
            }
            SockOpt::TcpLinger2 => {
                sock.opts.linger2 = match value {
                    v if v < 0 => Some(Duration::ZERO),
                    0 => None,
                    v => Some(Duration::from_secs(v as u64)),
                }
            }
            SockOpt::IpTtl => {
                // ip(7): 1..=255, or -1 for the default.
                sock.opts.ttl = match value {
                    -1 => None,
                    1..=255 => Some(value as u8),
                    _ => return Err(Errno::EINVAL),
                }
            }
            SockOpt::IpTos => sock.opts.tos = (value & 0xff) as u8,
            SockOpt::TcpCongestion => {
                // Linux answers an unknown algorithm name with ENOENT; an out-of-range number is EINVAL.
                sock.opts.congestion = CongestionAlgorithm::try_from(value).map_err(|()| Errno::EINVAL)?;
            }
            SockOpt::Broadcast => {}
            SockOpt::Error | SockOpt::Type | SockOpt::AcceptConn => return Err(Errno::ENOPROTOOPT),
        }
        // A connection takes the new options at once; a listener hands them to the connections it completes from
        // now on, as Linux's children copy the listener's options when they are created.
        let (opts, buffers) = (sock.opts.clone(), sock.buffers);
        if let TcpSocketKind::Listener(lk) = sock.kind {
            if let Some(listener) = self.tcp.listeners.get_mut(lk) {
                listener.opts = opts.clone();
            }
        }
        if let Some(k) = key {
            if let Some(conn) = self.tcp.conns.get_mut(k) {
                conn.opts = opts;
                if opt == SockOpt::RcvBuf {
                    conn.rx.set_capacity(buffers.rcvbuf.max(conn.rx.len()));
                    // Out-of-order bytes parked past the new end are gone: forget them, or filling the gap
                    // would acknowledge bytes never kept.
                    conn.ooo.truncate(conn.rx.free());
                }
                if opt == SockOpt::SndBuf {
                    conn.tx.set_capacity(buffers.sndbuf.max(conn.tx.len()));
                }
                if matches!(opt, SockOpt::KeepAlive | SockOpt::TcpKeepIdle) {
                    conn.arm_keepalive();
                }
                if opt == SockOpt::TcpCongestion {
                    conn.cc.set_algorithm(conn.opts.congestion);
                }
                self.tcp.wake(k);
            }
        }
        Ok(())
    }

    /// [`Stack::tcp_info`] of a TCP socket.
    pub(crate) fn tcp_info_of(&self, fd: Fd) -> SysResult<TcpInfo> {
        if let Some(conn) = self.tcp_conn_key(fd)?.and_then(|k| self.tcp.conns.get(k)) {
            return Ok(conn.info());
        }
        let sock = self.tcp_sock(fd)?;
        let state = if matches!(sock.kind, TcpSocketKind::Listener(_)) { "LISTEN" } else { "CLOSE" };
        let mss = sock.opts.user_mss.map_or(DEFAULT_MSS as usize, usize::from);
        Ok(TcpInfo::unconnected(state, sock.opts.congestion, mss, self.tcp.config.initial_rto))
    }

    pub(crate) fn tcp_getsockopt(&mut self, fd: Fd, opt: SockOpt) -> SysResult<i32> {
        let key = self.tcp_conn_key(fd)?;
        let sock = self.tcp_sock(fd)?;
        let listening = matches!(sock.kind, TcpSocketKind::Listener(_));
        let conn = key.and_then(|k| self.tcp.conns.get(k));
        Ok(match opt {
            SockOpt::Error => {
                let from_conn = key.and_then(|k| self.tcp.conns.get_mut(k)).and_then(|c| c.error.take());
                let from_sock = self.tcp_sock_mut(fd)?.error.take();
                from_conn.or(from_sock).map_or(0, Errno::code)
            }
            SockOpt::Type => 1,
            SockOpt::AcceptConn => i32::from(listening),
            SockOpt::ReuseAddr => i32::from(sock.reuse_addr),
            SockOpt::RcvBuf => conn.map_or(sock.buffers.rcvbuf, |c| c.rx.capacity()) as i32,
            SockOpt::SndBuf => conn.map_or(sock.buffers.sndbuf, |c| c.tx.capacity()) as i32,
            SockOpt::KeepAlive => i32::from(sock.opts.keepalive),
            SockOpt::TcpNoDelay => i32::from(sock.opts.nodelay),
            SockOpt::TcpMaxSeg => match conn {
                Some(c) if c.state.is_synchronized() => c.negotiated.send_mss as i32,
                _ => sock.opts.user_mss.map_or(DEFAULT_MSS, i32::from),
            },
            SockOpt::TcpKeepIdle => sock.opts.keep_idle.as_secs() as i32,
            SockOpt::TcpKeepIntvl => sock.opts.keep_interval.as_secs() as i32,
            SockOpt::TcpKeepCnt => sock.opts.keep_count as i32,
            SockOpt::TcpLinger2 => sock.opts.linger2.unwrap_or(self.tcp.config.fin_timeout).as_secs() as i32,
            SockOpt::Broadcast => 0,
            SockOpt::IpTtl => i32::from(sock.opts.ttl.unwrap_or(self.config.ttl)),
            SockOpt::IpTos => i32::from(sock.opts.tos),
            SockOpt::TcpCongestion => sock.opts.congestion as i32,
        })
    }

    /// `poll(2)` readiness, as Linux's `tcp_poll` computes it.
    pub(crate) fn tcp_readiness(&self, fd: Fd) -> SysResult<Readiness> {
        let sock = self.tcp_sock(fd)?;
        let mut r = Readiness::default();
        match sock.kind {
            // A socket never connected: tcp_poll reports HUP (state CLOSE) and writable.
            TcpSocketKind::Fresh { .. } => {
                r |= Readiness::OUT | Readiness::HUP;
                if sock.error.is_some() {
                    r |= Readiness::ERR;
                }
            }
            TcpSocketKind::Listener(lk) => {
                if self.tcp.listeners.get(lk).is_some_and(|l| !l.accept_queue.is_empty()) {
                    r |= Readiness::IN;
                }
            }
            TcpSocketKind::Conn(k) => {
                let Some(c) = self.tcp.conns.get(k) else { return Ok(Readiness::HUP) };
                if c.error.is_some() {
                    r |= Readiness::ERR;
                }
                if matches!(c.state, State::SynSent | State::SynReceived) {
                    return Ok(r);
                }
                let closed = c.state == State::Closed;
                let read_shut = c.peer_fin || c.shut_rd || closed;
                let write_shut = c.fin_seq.is_some() || closed;
                if !c.rx.is_empty() || read_shut {
                    r |= Readiness::IN;
                }
                if read_shut {
                    r |= Readiness::RDHUP;
                }
                if (read_shut && write_shut) || closed {
                    r |= Readiness::HUP;
                }
                // sk_stream_is_writeable: free space of at least half of what is queued; after SHUT_WR, POLLOUT.
                if write_shut || (c.tx.free() > 0 && c.tx.free() >= c.tx.len() / 2) {
                    r |= Readiness::OUT;
                }
            }
        }
        Ok(r)
    }

    /// Buffers a new TCP socket gets (for tests and tools).
    pub fn tcp_default_buffers(&self) -> Buffers {
        Buffers { rcvbuf: self.tcp.config.rcvbuf_default, sndbuf: self.tcp.config.sndbuf_default }
    }
}
