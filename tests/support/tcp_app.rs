//! A small TCP application driven step by step over a simulated link: one side connects, the other accepts,
//! both send a known byte pattern, shut down their sending side and read until end of file. Used by the
//! simulation tests to check that every byte arrives, in order, and every connection ends cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use ustack::sim::{Side, SimNet};
use ustack::{Domain, Errno, Fd, MsgFlags, Readiness, Shutdown, SockOpt, SockType, Stack};

/// The byte at `offset` of the stream sent by `side` of connection `conn` (never a run of equal bytes, so a
/// misplaced segment shows).
pub fn pattern(conn: usize, side: u8, offset: usize) -> u8 {
    ((offset.wrapping_mul(131) ^ (offset >> 9) ^ conn.wrapping_mul(7)) as u8).wrapping_add(side)
}

/// One end of one connection.
#[derive(Debug)]
pub struct Endpoint {
    pub fd: Option<Fd>,
    pub conn: usize,
    pub side: u8,
    pub to_send: usize,
    pub sent: usize,
    pub received: usize,
    pub expect: usize,
    pub eof: bool,
    pub shut: bool,
    pub closed: bool,
    pub error: Option<String>,
    /// Half-close only after the peer's FIN (an endpoint with nothing to send that stays ESTABLISHED while
    /// it receives, as an application that answers last would).
    pub shut_after_eof: bool,
}

impl Endpoint {
    pub fn new(conn: usize, side: u8, to_send: usize, expect: usize) -> Self {
        Endpoint {
            fd: None,
            conn,
            side,
            to_send,
            sent: 0,
            received: 0,
            expect,
            eof: false,
            shut: false,
            closed: false,
            error: None,
            shut_after_eof: false,
        }
    }

    pub fn done(&self) -> bool {
        self.closed || self.error.is_some()
    }

    /// Moves the endpoint along as far as the stack allows without blocking.
    pub fn step(&mut self, s: &mut Stack, buf: &mut [u8]) {
        let Some(fd) = self.fd else { return };
        if self.closed || self.error.is_some() {
            return;
        }
        // A connecting socket turns writable when the handshake completes (or fails: then SO_ERROR says why).
        let ready = s.readiness(fd).unwrap_or_default();
        if !ready.intersects(Readiness::OUT | Readiness::ERR) {
            return;
        }
        if ready.contains(Readiness::ERR) && !self.shut {
            if let Ok(code) = s.getsockopt(fd, SockOpt::Error) {
                if code != 0 {
                    self.error = Some(format!("connect: {:?}", Errno::from_code(code)));
                    return;
                }
            }
        }
        // Send.
        while self.sent < self.to_send {
            let n = (self.to_send - self.sent).min(buf.len());
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(self.conn, self.side, self.sent + i);
            }
            match s.send(fd, &buf[..n], MsgFlags::NONE) {
                Ok(k) => self.sent += k,
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    self.error = Some(format!("send: {e}"));
                    return;
                }
            }
        }
        if self.sent == self.to_send && !self.shut && (self.eof || !self.shut_after_eof) {
            match s.shutdown(fd, Shutdown::Write) {
                Ok(()) => self.shut = true,
                Err(e) => {
                    self.error = Some(format!("shutdown: {e}"));
                    return;
                }
            }
        }
        // Receive.
        while !self.eof {
            match s.recv(fd, buf, MsgFlags::DONTWAIT) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    for (i, &b) in buf[..n].iter().enumerate() {
                        let want = pattern(self.conn, 1 - self.side, self.received + i);
                        if b != want {
                            self.error = Some(format!("byte {} is {b}, expected {want}", self.received + i));
                            return;
                        }
                    }
                    self.received += n;
                }
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    self.error = Some(format!("recv: {e}"));
                    return;
                }
            }
        }
        if self.eof && !self.shut && self.shut_after_eof {
            match s.shutdown(fd, Shutdown::Write) {
                Ok(()) => self.shut = true,
                Err(e) => {
                    self.error = Some(format!("shutdown: {e}"));
                    return;
                }
            }
        }
        if self.eof && self.shut {
            if self.received != self.expect {
                self.error = Some(format!("received {} bytes, expected {}", self.received, self.expect));
                return;
            }
            let _ = s.close(fd);
            self.closed = true;
        }
    }
}

/// Connections from A to B's listener at `server`, connection `i` sending `a_bytes[i]` from A and
/// `b_bytes[i]` back from B.
pub struct Exchange {
    pub server: SocketAddr,
    pub listener: Option<Fd>,
    pub clients: Vec<Endpoint>,
    pub servers: Vec<Endpoint>,
    client_ports: HashMap<u16, usize>,
    a_bytes: Vec<usize>,
    b_bytes: Vec<usize>,
    buf: Vec<u8>,
    quiet_receivers: bool,
}

impl Exchange {
    pub fn new(server: SocketAddr, a_bytes: Vec<usize>, b_bytes: Vec<usize>) -> Self {
        let n = a_bytes.len();
        Exchange {
            server,
            listener: None,
            clients: (0..n).map(|i| Endpoint::new(i, 0, a_bytes[i], b_bytes[i])).collect(),
            servers: Vec::new(),
            client_ports: HashMap::new(),
            a_bytes,
            b_bytes,
            buf: vec![0; 16384],
            quiet_receivers: false,
        }
    }

    /// Endpoints with nothing to send half-close only after the peer's FIN, so that they receive in
    /// ESTABLISHED.
    pub fn with_quiet_receivers(mut self) -> Self {
        self.quiet_receivers = true;
        for c in self.clients.iter_mut() {
            c.shut_after_eof = c.to_send == 0;
        }
        self
    }

    /// Opens the listener on B and starts every client on A.
    pub fn start(&mut self, sim: &mut SimNet) {
        let b = sim.stack(Side::B);
        let l = b.socket(Domain::Inet, SockType::Stream).unwrap();
        b.setsockopt(l, SockOpt::ReuseAddr, 1).unwrap();
        b.bind(l, self.server).unwrap();
        b.listen(l, 1024).unwrap();
        self.listener = Some(l);
        let a = sim.stack(Side::A);
        for (i, c) in self.clients.iter_mut().enumerate() {
            let fd = a.socket(Domain::Inet, SockType::Stream).unwrap();
            assert_eq!(a.connect(fd, Some(self.server)), Err(Errno::EINPROGRESS));
            let port = a.getsockname(fd).unwrap().port();
            self.client_ports.insert(port, i);
            c.fd = Some(fd);
        }
    }

    /// One round of application work on both stacks; true when every endpoint has finished.
    pub fn step(&mut self, sim: &mut SimNet) -> bool {
        let b = sim.stack(Side::B);
        if let Some(l) = self.listener {
            while let Ok((fd, peer)) = b.accept(l) {
                let Some(&i) = self.client_ports.get(&peer.port()) else { panic!("accepted an unknown peer {peer}") };
                let mut e = Endpoint::new(i, 1, self.b_bytes[i], self.a_bytes[i]);
                e.fd = Some(fd);
                e.shut_after_eof = self.quiet_receivers && e.to_send == 0;
                self.servers.push(e);
            }
        }
        for e in self.servers.iter_mut() {
            e.step(b, &mut self.buf);
        }
        let a = sim.stack(Side::A);
        for c in self.clients.iter_mut() {
            c.step(a, &mut self.buf);
        }
        self.servers.len() == self.clients.len()
            && self.clients.iter().all(Endpoint::done)
            && self.servers.iter().all(Endpoint::done)
    }

    /// Every error any endpoint met.
    pub fn errors(&self) -> Vec<String> {
        self.clients
            .iter()
            .map(|e| ("client", e))
            .chain(self.servers.iter().map(|e| ("server", e)))
            .filter_map(|(who, e)| e.error.as_ref().map(|err| format!("{who} {}: {err}", e.conn)))
            .collect()
    }
}
