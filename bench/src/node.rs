//! One TCP/IP stack behind a common face, so that every workload and every link below drives ustack and smoltcp
//! through exactly the same code: frames in from a [`FrameBatch`], frames out into one, and a few socket calls.
//!
//! Frames are never copied by the glue: ustack writes straight into the transmit batch through its
//! [`FrameSink`], and smoltcp gets a device whose receive tokens borrow the received batch's slots and whose
//! transmit tokens are the transmit batch's slots.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::{Domain, Errno, Fd, FrameSink, Instant, MsgFlags, Readiness, SockOpt, SockType, Stack, StackConfig};
use ustack_netdev::FrameBatch;

/// Options of a connection (or of the connections a listener accepts).
#[derive(Debug, Clone, Copy)]
pub struct ConnOpts {
    /// smoltcp's receive and send buffer sizes (smoltcp needs the application to provide them). ustack keeps its
    /// defaults (256 KiB each, allocated on first use, growing with the flow) unless `ustack_buffers` is set.
    pub smol_rx: usize,
    pub smol_tx: usize,
    /// `SO_RCVBUF`/`SO_SNDBUF` for ustack (Linux semantics: the stack doubles the value), when set.
    pub ustack_buffers: Option<usize>,
    /// Nagle off (TCP_NODELAY on ustack, `set_nagle_enabled(false)` on smoltcp).
    pub nodelay: bool,
    /// smoltcp's CUBIC instead of its default, no congestion control (only with the bench's `smoltcp-cubic`
    /// feature, which compiles it in). ustack always runs its default, CUBIC.
    #[cfg_attr(not(feature = "smoltcp-cubic"), allow(dead_code))] // read only with the feature
    pub smol_cubic: bool,
}

impl ConnOpts {
    /// Bulk transfer: 256 KiB buffers on both. ustack's are set with `SO_RCVBUF`/`SO_SNDBUF` (128 KiB,
    /// doubled as on Linux), which also stops them growing as they would by default: the comparison is of
    /// protocol cost with equal buffers, and the in-memory link's batches hold 256 KiB windows, not 6 MiB.
    pub fn bulk() -> ConnOpts {
        ConnOpts {
            smol_rx: 256 * 1024,
            smol_tx: 256 * 1024,
            ustack_buffers: Some(128 * 1024),
            nodelay: false,
            smol_cubic: false,
        }
    }

    /// Request/response: Nagle off.
    pub fn rpc() -> ConnOpts {
        ConnOpts { nodelay: true, ..ConnOpts::bulk() }
    }

    /// Idle connections: small smoltcp buffers (smoltcp allocates them up front).
    pub fn idle() -> ConnOpts {
        ConnOpts { smol_rx: 4096, smol_tx: 4096, ustack_buffers: None, nodelay: false, smol_cubic: false }
    }
}

/// A stack seen as frames in, frames out and socket calls. Connections are named by small integers.
pub trait Node {
    /// Hands the stack every frame of `rx`; frames it answers with go into `tx`.
    fn input(&mut self, now: Instant, rx: &FrameBatch, tx: &mut FrameBatch);
    /// Runs timers and sends what the sockets have queued.
    fn output(&mut self, now: Instant, tx: &mut FrameBatch);
    /// When `output` next has work (`None`: only when a frame arrives or a call is made).
    fn poll_at(&mut self, now: Instant) -> Option<Instant>;
    /// Listens on `port`. ustack: one listener with a backlog of `count`. smoltcp: `count` listening sockets,
    /// each replaced by a fresh one when it is accepted if `rearm` (a listener that keeps listening).
    fn listen(&mut self, port: u16, count: usize, rearm: bool, opts: ConnOpts);
    /// Starts a connection to `remote`.
    fn connect(&mut self, remote: SocketAddrV4, opts: ConnOpts) -> usize;
    /// An established connection accepted on `port`, if any.
    fn accept(&mut self, port: u16) -> Option<usize>;
    /// The connection has completed its handshake.
    fn established(&mut self, c: usize) -> bool;
    /// Queues some of `data`; 0 when there is no room.
    fn send(&mut self, c: usize, data: &[u8]) -> usize;
    /// Reads into `buf`: `Some(0)` when nothing is there, `None` at end of stream or on error.
    fn recv(&mut self, c: usize, buf: &mut [u8]) -> Option<usize>;
    /// Closes the connection (FIN).
    fn close(&mut self, c: usize);
    /// Frames the stack produced that did not fit in a transmit batch.
    fn tx_drops(&self) -> u64;
    /// Bytes of socket buffers the stack holds for its connections, and spare (ustack's own accounting;
    /// `None` where the stack cannot tell).
    fn buffer_bytes(&self) -> Option<(usize, usize)> {
        None
    }
}

/// A [`FrameSink`] over a batch that counts the frames it had no room for.
struct Sink<'a> {
    batch: &'a mut FrameBatch,
    drops: &'a mut u64,
}

impl FrameSink for Sink<'_> {
    fn frame(&mut self, len: usize) -> Option<&mut [u8]> {
        let slot = self.batch.push_with_len(len);
        if slot.is_none() {
            *self.drops += 1;
        }
        slot
    }
}

/// ustack's sans-IO [`Stack`].
pub struct UstackNode {
    pub stack: Stack,
    listeners: HashMap<u16, (Fd, ConnOpts)>,
    drops: u64,
}

impl UstackNode {
    /// A stack at `ip` (with its prefix) with room for `max_sockets` sockets and the whole port range for
    /// ephemeral ports.
    pub fn new(mac: [u8; 6], ip: &str, mtu: usize, max_sockets: usize) -> UstackNode {
        let cidr: Ipv4Cidr = ip.parse().expect("valid CIDR");
        let mut config = StackConfig::new(MacAddr(mac), cidr);
        config.mtu = mtu;
        config.max_sockets = max_sockets;
        config.ephemeral_ports = (1024, 65535);
        UstackNode::with_config(config)
    }

    pub fn with_config(config: StackConfig) -> UstackNode {
        UstackNode { stack: Stack::new(config), listeners: HashMap::new(), drops: 0 }
    }

    fn apply(&mut self, fd: Fd, opts: ConnOpts) {
        if opts.nodelay {
            let _ = self.stack.setsockopt(fd, SockOpt::TcpNoDelay, 1);
        }
        if let Some(size) = opts.ustack_buffers {
            let size = i32::try_from(size).unwrap_or(i32::MAX);
            let _ = self.stack.setsockopt(fd, SockOpt::RcvBuf, size);
            let _ = self.stack.setsockopt(fd, SockOpt::SndBuf, size);
        }
    }
}

fn fd(c: usize) -> Fd {
    Fd(i32::try_from(c).expect("descriptor fits an i32"))
}

impl Node for UstackNode {
    fn input(&mut self, now: Instant, rx: &FrameBatch, tx: &mut FrameBatch) {
        let mut sink = Sink { batch: tx, drops: &mut self.drops };
        self.stack.receive_device_batch(now, rx, &mut sink);
    }

    fn output(&mut self, now: Instant, tx: &mut FrameBatch) {
        self.stack.poll(now, &mut Sink { batch: tx, drops: &mut self.drops });
    }

    fn poll_at(&mut self, _now: Instant) -> Option<Instant> {
        self.stack.poll_at()
    }

    fn listen(&mut self, port: u16, count: usize, _rearm: bool, opts: ConnOpts) {
        let s = &mut self.stack;
        let l = s.socket(Domain::Inet, SockType::Stream).expect("socket");
        s.setsockopt(l, SockOpt::ReuseAddr, 1).expect("SO_REUSEADDR");
        let addr = SocketAddr::V4(SocketAddrV4::new(s.ipv4_addr(), port));
        s.bind(l, addr).expect("bind");
        s.listen(l, i32::try_from(count.max(1)).unwrap_or(i32::MAX)).expect("listen");
        self.listeners.insert(port, (l, opts));
    }

    fn connect(&mut self, remote: SocketAddrV4, opts: ConnOpts) -> usize {
        let fd = self.stack.socket(Domain::Inet, SockType::Stream).expect("socket");
        self.apply(fd, opts);
        match self.stack.connect(fd, Some(SocketAddr::V4(remote))) {
            Err(Errno::EINPROGRESS) | Ok(()) => {}
            Err(e) => panic!("ustack connect to {remote}: {e:?}"),
        }
        fd.0 as usize
    }

    fn accept(&mut self, port: u16) -> Option<usize> {
        let (l, opts) = *self.listeners.get(&port)?;
        let (c, _) = self.stack.accept(l).ok()?;
        self.apply(c, opts);
        Some(c.0 as usize)
    }

    fn established(&mut self, c: usize) -> bool {
        self.stack.readiness(fd(c)).is_ok_and(|r| r.contains(Readiness::OUT) && !r.contains(Readiness::ERR))
    }

    fn send(&mut self, c: usize, data: &[u8]) -> usize {
        self.stack.send(fd(c), data, MsgFlags::NONE).unwrap_or(0)
    }

    fn recv(&mut self, c: usize, buf: &mut [u8]) -> Option<usize> {
        match self.stack.recv(fd(c), buf, MsgFlags::NONE) {
            Ok(0) if !buf.is_empty() => None,
            Ok(n) => Some(n),
            Err(Errno::EAGAIN) => Some(0),
            Err(_) => None,
        }
    }

    fn close(&mut self, c: usize) {
        let _ = self.stack.close(fd(c));
    }

    fn tx_drops(&self) -> u64 {
        self.drops
    }

    fn buffer_bytes(&self) -> Option<(usize, usize)> {
        let m = self.stack.tcp_memory();
        Some((m.ring_bytes, m.spare_bytes))
    }
}

/// smoltcp's clock from ours (smoltcp counts microseconds).
pub fn smol_instant(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.since_origin().as_micros()).unwrap_or(i64::MAX))
}

/// Our clock from smoltcp's.
pub fn from_smol_instant(t: smoltcp::time::Instant) -> Instant {
    Instant::from_nanos(u64::try_from(t.total_micros()).unwrap_or(0).saturating_mul(1000))
}

/// smoltcp's view of a pair of batches during one call: receive tokens borrow the slots of `rx` (from `next`
/// on), transmit tokens are slots of `tx`. A full `tx` makes `transmit` say no, which smoltcp treats as a busy
/// device and retries on the next poll.
pub struct BatchDevice<'a> {
    pub rx: &'a FrameBatch,
    pub next: usize,
    pub tx: &'a mut FrameBatch,
    pub mtu: usize,
}

pub struct RxToken<'a>(&'a [u8]);

pub struct TxToken<'a>(&'a mut FrameBatch);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self.0.push_with_len(len) {
            Some(slot) => f(slot),
            // Only a frame longer than a slot gets here (transmit() checks for room): build it and drop it.
            None => f(&mut vec![0; len]),
        }
    }
}

impl phy::Device for BatchDevice<'_> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _timestamp: smoltcp::time::Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let rx: &FrameBatch = self.rx;
        let frame = rx.get(self.next)?;
        if self.tx.is_full() {
            return None;
        }
        self.next += 1;
        Some((RxToken(frame), TxToken(self.tx)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.is_full() {
            return None;
        }
        Some(TxToken(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

struct SmolListener {
    /// Listening sockets not yet seen established, in the order smoltcp hands out SYNs to them.
    pending: VecDeque<SocketHandle>,
    /// Established ones found by the last scan, not yet accepted.
    ready: VecDeque<SocketHandle>,
    rearm: bool,
    opts: ConnOpts,
}

/// smoltcp's `Interface` and its `SocketSet`.
pub struct SmolNode {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    mtu: usize,
    listeners: HashMap<u16, SmolListener>,
    conns: Vec<Option<SocketHandle>>,
    closing: Vec<usize>,
    next_port: u16,
    drops: u64,
    /// The receive side of the device `output` polls through: always empty, kept so that no call allocates.
    no_frames: FrameBatch,
}

impl SmolNode {
    /// An interface at `ip/prefix` with hardware address `mac`.
    pub fn new(mac: [u8; 6], ip: [u8; 4], prefix: u8, mtu: usize, seed: u64) -> SmolNode {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let empty = FrameBatch::new(1, 1);
        let mut scratch = FrameBatch::new(1, 1);
        let mut dev = BatchDevice { rx: &empty, next: 0, tx: &mut scratch, mtu };
        let mut iface = Interface::new(config, &mut dev, smol_instant(Instant::ZERO));
        iface.update_ip_addrs(|addrs| {
            let [a, b, c, d] = ip;
            addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), prefix)).expect("room for one address");
        });
        SmolNode {
            iface,
            sockets: SocketSet::new(Vec::new()),
            mtu,
            listeners: HashMap::new(),
            conns: Vec::new(),
            closing: Vec::new(),
            next_port: 1024 + (seed % 1000) as u16,
            drops: 0,
            no_frames: FrameBatch::new(1, 1),
        }
    }

    fn new_socket(&mut self, opts: ConnOpts) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; opts.smol_rx]),
            tcp::SocketBuffer::new(vec![0; opts.smol_tx]),
        );
        if opts.nodelay {
            s.set_nagle_enabled(false);
        }
        // Chosen every time: with CUBIC compiled in (the `smoltcp-cubic` feature) it would be the default.
        s.set_congestion_control(tcp::CongestionControl::None);
        #[cfg(feature = "smoltcp-cubic")]
        if opts.smol_cubic {
            s.set_congestion_control(tcp::CongestionControl::Cubic);
        }
        self.sockets.add(s)
    }

    fn handle(&self, c: usize) -> Option<SocketHandle> {
        self.conns.get(c).copied().flatten()
    }

    fn add_conn(&mut self, h: SocketHandle) -> usize {
        self.conns.push(Some(h));
        self.conns.len() - 1
    }
}

impl Node for SmolNode {
    fn input(&mut self, now: Instant, rx: &FrameBatch, tx: &mut FrameBatch) {
        let mut dev = BatchDevice { rx, next: 0, tx, mtu: self.mtu };
        let t = smol_instant(now);
        while dev.next < rx.len() {
            let before = dev.next;
            let _ = self.iface.poll_ingress_single(t, &mut dev, &mut self.sockets);
            if dev.next == before {
                // The transmit batch is full: the rest of the frames are lost, as on a busy device.
                self.drops += (rx.len() - dev.next) as u64;
                break;
            }
        }
    }

    fn output(&mut self, now: Instant, tx: &mut FrameBatch) {
        let mut dev = BatchDevice { rx: &self.no_frames, next: 0, tx, mtu: self.mtu };
        let t = smol_instant(now);
        while self.iface.poll_egress(t, &mut dev, &mut self.sockets) != smoltcp::iface::PollResult::None {}
        if !self.closing.is_empty() {
            let sockets = &mut self.sockets;
            let conns = &mut self.conns;
            self.closing.retain(|&c| match conns[c] {
                Some(h) if sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed => {
                    sockets.remove(h);
                    conns[c] = None;
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(smol_instant(now), &self.sockets).map(from_smol_instant)
    }

    fn listen(&mut self, port: u16, count: usize, rearm: bool, opts: ConnOpts) {
        let mut pending = VecDeque::with_capacity(count);
        for _ in 0..count.max(1) {
            let h = self.new_socket(opts);
            self.sockets.get_mut::<tcp::Socket>(h).listen(port).expect("smoltcp listen");
            pending.push_back(h);
        }
        self.listeners.insert(port, SmolListener { pending, ready: VecDeque::new(), rearm, opts });
    }

    fn connect(&mut self, remote: SocketAddrV4, opts: ConnOpts) -> usize {
        let h = self.new_socket(opts);
        let port = self.next_port;
        self.next_port = if self.next_port == u16::MAX { 1024 } else { self.next_port + 1 };
        let cx = self.iface.context();
        let remote = IpEndpoint::from(remote);
        self.sockets.get_mut::<tcp::Socket>(h).connect(cx, remote, port).expect("smoltcp connect");
        self.add_conn(h)
    }

    fn accept(&mut self, port: u16) -> Option<usize> {
        let l = self.listeners.get_mut(&port)?;
        if l.ready.is_empty() {
            let sockets = &self.sockets;
            let ready = &mut l.ready;
            l.pending.retain(|&h| {
                let state = sockets.get::<tcp::Socket>(h).state();
                let accepted = !matches!(state, tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed);
                if accepted {
                    ready.push_back(h);
                }
                !accepted
            });
        }
        let h = l.ready.pop_front()?;
        let (rearm, opts) = (l.rearm, l.opts);
        if rearm {
            let fresh = self.new_socket(opts);
            self.sockets.get_mut::<tcp::Socket>(fresh).listen(port).expect("smoltcp listen");
            if let Some(l) = self.listeners.get_mut(&port) {
                l.pending.push_back(fresh);
            }
        }
        Some(self.add_conn(h))
    }

    fn established(&mut self, c: usize) -> bool {
        self.handle(c).is_some_and(|h| {
            !matches!(
                self.sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
            )
        })
    }

    fn send(&mut self, c: usize, data: &[u8]) -> usize {
        let Some(h) = self.handle(c) else { return 0 };
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        if !s.can_send() {
            return 0;
        }
        s.send_slice(data).unwrap_or(0)
    }

    fn recv(&mut self, c: usize, buf: &mut [u8]) -> Option<usize> {
        let h = self.handle(c)?;
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        match s.recv_slice(buf) {
            Ok(n) => Some(n),
            Err(tcp::RecvError::Finished) => None,
            Err(tcp::RecvError::InvalidState) => {
                if matches!(s.state(), tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen) {
                    Some(0)
                } else {
                    None
                }
            }
        }
    }

    fn close(&mut self, c: usize) {
        if let Some(h) = self.handle(c) {
            self.sockets.get_mut::<tcp::Socket>(h).close();
            self.closing.push(c);
        }
    }

    fn tx_drops(&self) -> u64 {
        self.drops
    }
}
