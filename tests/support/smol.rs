//! Interop simulations against smoltcp: ustack on one end of a netdev [`Pipe`], smoltcp on the other, both
//! driven on the same virtual clock.
//!
//! The driver works like [`ustack::sim::SimNet`]: every step hands each side the frames that have arrived and
//! lets it run its timers and send, then the application moves both endpoints along; virtual time jumps to the
//! next event (ustack's `poll_at`, smoltcp's `Interface::poll_at`, or the next arrival on the pipe). A run
//! depends only on its seeds.
//!
//! smoltcp sees the pipe through a device that lives only for the duration of one `Interface::poll`: frames
//! that have arrived are moved into a queue before the poll, and frames smoltcp sends are collected and handed
//! to the pipe after it, so both sides' frames go through the same capture and RST accounting.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use ustack::sim::{advance_virtual_time, MAX_STEPS};
use ustack::time::earliest;
use ustack::wire::ethernet::MacAddr;
use ustack::{Domain, Duration, Errno, Fd, Instant, SockOpt, SockType, Stack, StackConfig};
use ustack_netdev::pcap::{LinkType, Writer};
use ustack_netdev::pipe::{Pipe, PipeConfig, PipeEnd, PipeStats};
use ustack_netdev::{Device, FrameBatch};

use crate::tcp_app::{pattern, Endpoint};

/// ustack's address (end A of the pipe).
pub const USTACK_IP: [u8; 4] = [198, 18, 0, 1];
/// smoltcp's address (end B of the pipe).
pub const SMOL_IP: [u8; 4] = [198, 18, 0, 2];
/// The port the server side listens on.
pub const SERVER_PORT: u16 = 80;
/// The connection number used in the byte pattern (see [`pattern`]).
const CONN: usize = 0;
/// Pattern side of ustack's stream; smoltcp's stream uses `1 - USTACK_SIDE`.
const USTACK_SIDE: u8 = 0;
const SMOL_SIDE: u8 = 1;

/// smoltcp's clock, from the simulation's (smoltcp counts microseconds).
pub fn smol_instant(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.since_origin().as_micros()).unwrap_or(i64::MAX))
}

/// The simulation's clock, from smoltcp's (never before the origin).
pub fn from_smol_instant(t: smoltcp::time::Instant) -> Instant {
    Instant::from_nanos(u64::try_from(t.total_micros()).unwrap_or(0).saturating_mul(1000))
}

/// What the driver notes about a frame: whether it is an IPv4 fragment, and the TCP flags of an unfragmented
/// Ethernet/IPv4/TCP frame.
fn inspect(frame: &[u8]) -> (bool, Option<u8>) {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) || frame.len() < 14 + 20 {
        return (false, None);
    }
    let ip = &frame[14..];
    let more_fragments = ip[6] & 0x20 != 0;
    let offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
    if more_fragments || offset != 0 {
        return (true, None);
    }
    if ip[9] != 6 {
        return (false, None);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    (false, ip.get(ihl + 13).copied())
}

const RST: u8 = 0x04;

/// smoltcp's view of the pipe during one `Interface::poll`: frames already taken off the pipe, and a queue for
/// what it sends.
struct PollDevice<'a> {
    rx: &'a mut VecDeque<Vec<u8>>,
    tx: &'a mut Vec<Vec<u8>>,
    mtu: usize,
}

struct SmolRxToken(Vec<u8>);

struct SmolTxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for SmolRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for SmolTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl phy::Device for PollDevice<'_> {
    type RxToken<'b>
        = SmolRxToken
    where
        Self: 'b;
    type TxToken<'b>
        = SmolTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _timestamp: smoltcp::time::Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((SmolRxToken(frame), SmolTxToken(self.tx)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(SmolTxToken(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

/// One side of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ustack,
    Smoltcp,
}

/// An RST segment one side sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rst {
    pub by: Peer,
    pub at: Instant,
}

/// Frames and RSTs each side sent, and the capture.
struct Wire {
    capture: Option<Writer<BufWriter<File>>>,
    /// RST segments sent and not yet collected by [`SmolSim::take_rsts`].
    rsts: Vec<Rst>,
    /// IPv4 fragments sent by ustack / by smoltcp (TCP sizes its segments to the MTU: there should be none).
    fragments: [u64; 2],
}

impl Wire {
    fn record(&mut self, side: usize, now: Instant, frame: &[u8]) {
        if let Some(w) = self.capture.as_mut() {
            let _ = w.write_packet(now.since_origin(), frame);
        }
        let (fragment, flags) = inspect(frame);
        if fragment {
            self.fragments[side] += 1;
        }
        if flags.is_some_and(|f| f & RST != 0) {
            self.rsts.push(Rst { by: if side == 0 { Peer::Ustack } else { Peer::Smoltcp }, at: now });
        }
    }
}

/// ustack (end A) and smoltcp (end B) on the two ends of a [`Pipe`].
pub struct SmolSim {
    pub ustack: Stack,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    end_u: PipeEnd,
    end_s: PipeEnd,
    now: Instant,
    mtu: usize,
    rx: FrameBatch,
    tx: FrameBatch,
    smol_rx: VecDeque<Vec<u8>>,
    smol_tx: Vec<Vec<u8>>,
    wire: Wire,
    steps: usize,
}

impl std::fmt::Debug for SmolSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolSim").field("now", &self.now).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl SmolSim {
    /// ustack at 198.18.0.1/24 on end A, smoltcp at 198.18.0.2/24 on end B of a link with the given faults.
    /// `seed` also seeds smoltcp's random choices (initial sequence numbers).
    pub fn new(link: PipeConfig, seed: u64) -> SmolSim {
        let mtu = link.mtu;
        let mut ucfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), "198.18.0.1/24".parse().unwrap());
        ucfg.mtu = ucfg.mtu.min(mtu);
        ucfg.seed ^= seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Linux gives up on an address after 3 unanswered ARP requests (mcast_solicit), and so does ustack: on a
        // link losing up to 10% of frames each way that fails roughly once in 600 connects (EHOSTUNREACH). The
        // sweeps are about TCP, so ustack asks up to 10 times, as a host with a raised mcast_solicit would.
        ucfg.arp.max_requests = 10;
        let slot = mtu + 14 + 4;
        let (end_u, end_s) = Pipe::pair(link);
        let mut smol_rx = VecDeque::new();
        let mut smol_tx = Vec::new();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 2])));
        config.random_seed = seed;
        let mut dev = PollDevice { rx: &mut smol_rx, tx: &mut smol_tx, mtu };
        let mut iface = Interface::new(config, &mut dev, smol_instant(Instant::ZERO));
        iface.update_ip_addrs(|addrs| {
            let [a, b, c, d] = SMOL_IP;
            addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), 24)).expect("room for one address");
        });
        SmolSim {
            ustack: Stack::new(ucfg),
            iface,
            sockets: SocketSet::new(Vec::new()),
            end_u,
            end_s,
            now: Instant::ZERO,
            mtu,
            rx: FrameBatch::new(64, slot),
            tx: FrameBatch::new(64, slot),
            smol_rx,
            smol_tx,
            wire: Wire { capture: None, rsts: Vec::new(), fragments: [0, 0] },
            steps: 0,
        }
    }

    /// Writes every frame either side sends into a pcap file, stamped with virtual time.
    pub fn capture_to(&mut self, path: impl AsRef<Path>) -> io::Result<()> {
        self.wire.capture = Some(Writer::create(path, LinkType::Ethernet)?);
        Ok(())
    }

    /// Flushes the capture, if any.
    pub fn flush_capture(&mut self) -> io::Result<()> {
        match self.wire.capture.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// RST segments sent since the last call.
    pub fn take_rsts(&mut self) -> Vec<Rst> {
        std::mem::take(&mut self.wire.rsts)
    }

    /// IPv4 fragments sent so far by ustack and by smoltcp.
    pub fn fragments(&self) -> (u64, u64) {
        (self.wire.fragments[0], self.wire.fragments[1])
    }

    /// What the link did to the frames ustack sent and to those smoltcp sent.
    pub fn link_stats(&self) -> (PipeStats, PipeStats) {
        (self.end_u.stats(), self.end_s.stats())
    }

    /// The smoltcp TCP socket behind `handle`.
    pub fn smol_socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Processes everything due at the current time on both sides: arrived frames, timers, output.
    pub fn step(&mut self) {
        self.steps += 1;
        self.end_u.set_now(self.now.since_origin());
        // ustack.
        loop {
            self.rx.clear();
            let n = self.end_u.recv_batch(&mut self.rx).unwrap_or(0);
            for frame in self.rx.iter() {
                self.ustack.receive(self.now, frame, &mut self.tx);
                if self.tx.is_full() {
                    flush(&mut self.end_u, &mut self.tx, &mut self.wire, self.now);
                }
            }
            if n < self.rx.capacity() {
                break;
            }
        }
        self.ustack.poll(self.now, &mut self.tx);
        flush(&mut self.end_u, &mut self.tx, &mut self.wire, self.now);
        // smoltcp.
        loop {
            self.rx.clear();
            let n = self.end_s.recv_batch(&mut self.rx).unwrap_or(0);
            self.smol_rx.extend(self.rx.iter().map(<[u8]>::to_vec));
            if n < self.rx.capacity() {
                break;
            }
        }
        let mut dev = PollDevice { rx: &mut self.smol_rx, tx: &mut self.smol_tx, mtu: self.mtu };
        self.iface.poll(smol_instant(self.now), &mut dev, &mut self.sockets);
        self.flush_smol();
    }

    /// Hands what smoltcp sent to the pipe.
    fn flush_smol(&mut self) {
        if self.smol_tx.is_empty() {
            return;
        }
        self.tx.clear();
        for frame in self.smol_tx.drain(..) {
            self.wire.record(1, self.now, &frame);
            if !self.tx.push(&frame) {
                // Larger than a slot: the pipe would drop it as oversize too; count it by sending alone.
                let mut big = FrameBatch::new(1, frame.len());
                big.push(&frame);
                let _ = self.end_s.send_batch(&mut big);
            }
            if self.tx.is_full() {
                let _ = self.end_s.send_batch(&mut self.tx);
                self.tx.clear();
            }
        }
        let _ = self.end_s.send_batch(&mut self.tx);
        self.tx.clear();
    }

    /// The next moment anything is due.
    fn next_event(&mut self) -> Option<Instant> {
        let arrivals = earliest(
            self.end_u.next_arrival().map(Instant::from_duration),
            self.end_s.next_arrival().map(Instant::from_duration),
        );
        let smol = self.iface.poll_at(smol_instant(self.now), &self.sockets).map(from_smol_instant);
        earliest(arrivals, earliest(self.ustack.poll_at(), smol))
    }

    /// Runs until `done` holds (checked after every step) or virtual time reaches `deadline`. Returns whether
    /// `done` held. Bounded by [`MAX_STEPS`] steps.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&mut SmolSim) -> bool) -> bool {
        let mut stalls = 0;
        for _ in 0..MAX_STEPS {
            self.step();
            if done(self) {
                return true;
            }
            let next = self.next_event();
            if !advance_virtual_time(&mut self.now, next, deadline, &mut stalls) {
                return done(self);
            }
        }
        false
    }
}

fn flush(end: &mut PipeEnd, tx: &mut FrameBatch, wire: &mut Wire, now: Instant) {
    if tx.is_empty() {
        return;
    }
    for frame in tx.iter() {
        wire.record(0, now, frame);
    }
    let _ = end.send_batch(tx);
    tx.clear();
}

/// Which side opens the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// ustack connects to smoltcp's listening socket.
    Ustack,
    /// smoltcp connects to ustack's listener.
    Smoltcp,
}

/// The smoltcp end of the exchange: sends its pattern, closes its sending side, reads to end of file.
#[derive(Debug)]
pub struct SmolEndpoint {
    pub handle: SocketHandle,
    pub to_send: usize,
    pub sent: usize,
    pub received: usize,
    pub expect: usize,
    pub established: bool,
    pub eof: bool,
    pub closed: bool,
    pub error: Option<String>,
}

impl SmolEndpoint {
    fn new(handle: SocketHandle, to_send: usize, expect: usize) -> Self {
        SmolEndpoint {
            handle,
            to_send,
            sent: 0,
            received: 0,
            expect,
            established: false,
            eof: false,
            closed: false,
            error: None,
        }
    }

    /// Done: all sent, `close()` called, end of file read, every byte there, and the socket in CLOSED or
    /// TIME-WAIT.
    fn finished(&self, state: tcp::State) -> bool {
        self.eof && self.closed && matches!(state, tcp::State::Closed | tcp::State::TimeWait)
    }

    /// Moves the endpoint along as far as the socket allows.
    fn step(&mut self, s: &mut tcp::Socket<'_>, buf: &mut [u8]) {
        if self.error.is_some() {
            return;
        }
        let state = s.state();
        if !matches!(state, tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived) {
            self.established = true;
        }
        // Send.
        while self.sent < self.to_send && s.can_send() {
            let n = (self.to_send - self.sent).min(buf.len());
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(CONN, SMOL_SIDE, self.sent + i);
            }
            match s.send_slice(&buf[..n]) {
                Ok(0) => break,
                Ok(k) => self.sent += k,
                Err(e) => {
                    self.error = Some(format!("smoltcp send in {state}: {e}"));
                    return;
                }
            }
        }
        if self.sent == self.to_send && !self.closed && s.may_send() {
            s.close();
            self.closed = true;
        }
        // Receive.
        while !self.eof {
            match s.recv_slice(buf) {
                Ok(0) => break,
                Ok(n) => {
                    for (i, &b) in buf[..n].iter().enumerate() {
                        let want = pattern(CONN, USTACK_SIDE, self.received + i);
                        if b != want {
                            self.error = Some(format!("smoltcp: byte {} is {b}, expected {want}", self.received + i));
                            return;
                        }
                    }
                    self.received += n;
                }
                Err(tcp::RecvError::Finished) => {
                    self.eof = true;
                    if self.received != self.expect {
                        self.error =
                            Some(format!("smoltcp received {} bytes, expected {}", self.received, self.expect));
                        return;
                    }
                }
                Err(tcp::RecvError::InvalidState) => break,
            }
        }
        if self.established && s.state() == tcp::State::Closed && !(self.eof && self.closed) {
            self.error = Some(format!(
                "smoltcp socket closed early (reset or timeout): eof={} closed={} sent={}/{} received={}/{}",
                self.eof, self.closed, self.sent, self.to_send, self.received, self.expect
            ));
        }
    }
}

/// One connection between ustack and smoltcp, sending `ustack_bytes` from ustack and `smol_bytes` from
/// smoltcp, each side shutting down its sending side when done and reading to end of file.
pub struct Exchange {
    pub opener: Opener,
    pub listener: Option<Fd>,
    pub ustack: Endpoint,
    pub smol: SmolEndpoint,
    /// RSTs sent by a side whose connection had not yet ended cleanly: failures.
    pub bad_rsts: Vec<String>,
    /// RSTs sent by a side whose connection had already ended cleanly, in answer to a stray segment (a
    /// duplicate or a late retransmission reaching a socket that is gone, as RFC 9293 section 3.10.7.1 says).
    pub late_rsts: usize,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("opener", &self.opener)
            .field("ustack", &self.ustack)
            .field("smol", &self.smol)
            .finish_non_exhaustive()
    }
}

/// smoltcp socket buffer sizes.
#[derive(Debug, Clone, Copy)]
pub struct SmolBuffers {
    pub rx: usize,
    pub tx: usize,
}

impl Default for SmolBuffers {
    fn default() -> Self {
        SmolBuffers { rx: 64 * 1024, tx: 64 * 1024 }
    }
}

impl Exchange {
    /// Opens the listening side and starts the connecting side.
    pub fn start(
        sim: &mut SmolSim,
        opener: Opener,
        ustack_bytes: usize,
        smol_bytes: usize,
        buffers: SmolBuffers,
        smol_port: u16,
    ) -> Exchange {
        let mut socket =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0; buffers.rx]), tcp::SocketBuffer::new(vec![0; buffers.tx]));
        // smoltcp's default, chosen explicitly: built together with the benchmark's `smoltcp-cubic` feature
        // (cargo unifies features across the workspace) the default would become CUBIC.
        socket.set_congestion_control(tcp::CongestionControl::None);
        let handle = sim.sockets.add(socket);
        let smol_addr = SocketAddr::from((SMOL_IP, SERVER_PORT));
        let ustack_addr = SocketAddr::from((USTACK_IP, SERVER_PORT));
        let mut ustack = Endpoint::new(CONN, USTACK_SIDE, ustack_bytes, smol_bytes);
        let mut listener = None;
        match opener {
            Opener::Ustack => {
                sim.smol_socket(handle).listen(SERVER_PORT).expect("smoltcp listen");
                let s = &mut sim.ustack;
                let fd = s.socket(Domain::Inet, SockType::Stream).unwrap();
                assert_eq!(s.connect(fd, Some(smol_addr)), Err(Errno::EINPROGRESS));
                ustack.fd = Some(fd);
            }
            Opener::Smoltcp => {
                let s = &mut sim.ustack;
                let l = s.socket(Domain::Inet, SockType::Stream).unwrap();
                s.setsockopt(l, SockOpt::ReuseAddr, 1).unwrap();
                s.bind(l, ustack_addr).unwrap();
                s.listen(l, 16).unwrap();
                listener = Some(l);
                let remote = smoltcp::wire::IpEndpoint::from(SocketAddrV4::new(USTACK_IP.into(), SERVER_PORT));
                let cx = sim.iface.context();
                sim.sockets.get_mut::<tcp::Socket>(handle).connect(cx, remote, smol_port).expect("smoltcp connect");
            }
        }
        Exchange {
            opener,
            listener,
            ustack,
            smol: SmolEndpoint::new(handle, smol_bytes, ustack_bytes),
            bad_rsts: Vec::new(),
            late_rsts: 0,
            buf: vec![0; 16384],
        }
    }

    /// The ustack connection is over: no connection left but in TIME-WAIT.
    fn ustack_connection_gone(&self, sim: &SmolSim) -> bool {
        sim.ustack.sockets_snapshot(sim.now()).iter().all(|r| matches!(r.state, "LISTEN" | "TIME-WAIT"))
    }

    /// Sorts the RSTs sent during the last step: one from a side whose application had finished (read end of
    /// file, closed) and whose connection is over is an answer to a stray segment; any other is a failure.
    fn check_rsts(&mut self, sim: &mut SmolSim) {
        let rsts = sim.take_rsts();
        if rsts.is_empty() {
            return;
        }
        let smol_state = sim.sockets.get::<tcp::Socket>(self.smol.handle).state();
        let smol_over =
            self.smol.eof && self.smol.closed && matches!(smol_state, tcp::State::Closed | tcp::State::TimeWait);
        let ustack_over = self.ustack.closed && self.ustack_connection_gone(sim);
        for rst in rsts {
            let over = match rst.by {
                Peer::Ustack => ustack_over,
                Peer::Smoltcp => smol_over,
            };
            if over {
                self.late_rsts += 1;
            } else {
                self.bad_rsts.push(format!("{:?} sent an RST at {:?} (smoltcp {smol_state})", rst.by, rst.at));
            }
        }
    }

    /// One round of application work on both sides; true when both ends have finished (or failed).
    pub fn step(&mut self, sim: &mut SmolSim) -> bool {
        self.check_rsts(sim);
        if let Some(l) = self.listener {
            if self.ustack.fd.is_none() {
                if let Ok((fd, peer)) = sim.ustack.accept(l) {
                    assert_eq!(peer.ip(), std::net::IpAddr::from(SMOL_IP), "accepted an unknown peer {peer}");
                    self.ustack.fd = Some(fd);
                }
            }
        }
        self.ustack.step(&mut sim.ustack, &mut self.buf);
        let handle = self.smol.handle;
        let socket = sim.sockets.get_mut::<tcp::Socket>(handle);
        self.smol.step(socket, &mut self.buf);
        if self.ustack.error.is_some() || self.smol.error.is_some() {
            return true;
        }
        let state = sim.sockets.get::<tcp::Socket>(handle).state();
        self.ustack.closed && self.smol.finished(state) && self.ustack_connection_gone(sim)
    }

    /// Every error either end met, plus checks of a clean ending: no resets, no aborts.
    pub fn errors(&self, sim: &SmolSim) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(e) = &self.ustack.error {
            errors.push(format!("ustack: {e}"));
        }
        if let Some(e) = &self.smol.error {
            errors.push(e.clone());
        }
        errors.extend(self.bad_rsts.iter().cloned());
        let (u_frag, s_frag) = sim.fragments();
        if u_frag != 0 || s_frag != 0 {
            errors.push(format!(
                "IPv4 fragments sent (TCP segments larger than the MTU): ustack {u_frag}, smoltcp {s_frag}"
            ));
        }
        let c = sim.ustack.counters().tcp;
        if c.estab_resets != 0
            || c.aborts_on_data != 0
            || c.aborts_on_close != 0
            || c.aborts_on_linger != 0
            || c.aborts_on_timeout != 0
        {
            errors.push(format!(
                "ustack counters: estab_resets {} aborts on data/close/linger/timeout {}/{}/{}/{}",
                c.estab_resets, c.aborts_on_data, c.aborts_on_close, c.aborts_on_linger, c.aborts_on_timeout
            ));
        }
        errors
    }

    /// A one-line summary of where both ends are, for failure messages.
    pub fn describe(&self, sim: &SmolSim) -> String {
        let state = sim.sockets.get::<tcp::Socket>(self.smol.handle).state();
        let rows: Vec<String> = sim.ustack.sockets_snapshot(sim.now()).iter().map(|r| r.to_ss_line()).collect();
        format!(
            "ustack: sent {}/{} received {}/{} eof={} shut={} closed={} sockets {rows:?}; smoltcp {state}: sent {}/{} \
             received {}/{} eof={} closed={}",
            self.ustack.sent,
            self.ustack.to_send,
            self.ustack.received,
            self.ustack.expect,
            self.ustack.eof,
            self.ustack.shut,
            self.ustack.closed,
            self.smol.sent,
            self.smol.to_send,
            self.smol.received,
            self.smol.expect,
            self.smol.eof,
            self.smol.closed
        )
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    /// Empty on success.
    pub errors: Vec<String>,
    /// Virtual time at the end.
    pub now: Instant,
    pub steps: usize,
    /// RSTs sent after a side's connection had ended cleanly (see [`Exchange::late_rsts`]).
    pub late_rsts: usize,
    /// Link statistics of the frames ustack sent and of those smoltcp sent.
    pub link: (PipeStats, PipeStats),
    /// ustack's non-zero counters at the end.
    pub ustack_counters: Vec<(String, u64)>,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub opener: Opener,
    pub link: PipeConfig,
    pub seed: u64,
    pub ustack_bytes: usize,
    pub smol_bytes: usize,
    pub buffers: SmolBuffers,
    /// Virtual time allowed.
    pub limit: Duration,
}

impl Scenario {
    /// Runs the exchange, optionally capturing to `capture`.
    pub fn run(&self, capture: Option<&Path>) -> Outcome {
        let mut sim = SmolSim::new(self.link.clone(), self.seed);
        if let Some(path) = capture {
            sim.capture_to(path).expect("create capture");
        }
        let port = 49152 + (self.seed % 10_000) as u16;
        let mut ex = Exchange::start(&mut sim, self.opener, self.ustack_bytes, self.smol_bytes, self.buffers, port);
        let finished = sim.run_until(Instant::ZERO + self.limit, |sim| ex.step(sim));
        let _ = sim.flush_capture();
        let mut errors = Vec::new();
        if !finished {
            errors.push(format!("not finished after {:?} ({} steps)", sim.now(), sim.steps()));
        }
        errors.extend(ex.errors(&sim));
        if !errors.is_empty() {
            errors.push(ex.describe(&sim));
        }
        let ustack_counters = sim.ustack.counters().rows().into_iter().filter(|(_, v)| *v != 0).collect();
        Outcome {
            errors,
            now: sim.now(),
            steps: sim.steps(),
            late_rsts: ex.late_rsts,
            link: sim.link_stats(),
            ustack_counters,
        }
    }
}
