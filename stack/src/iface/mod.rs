//! The network interface: one Ethernet link with one IPv4 address, and everything between the frames on it
//! and the sockets above (ARP, IPv4 with fragmentation and reassembly, ICMP, UDP demultiplexing).
//!
//! This is the sans-IO core. [`Stack::receive`] takes a frame and the current time, [`Stack::poll`] runs timers
//! and flushes socket output, and [`Stack::poll_at`] says when `poll` next has work. Frames go out through a
//! [`FrameSink`] the caller passes in. Nothing here reads a clock or touches a device.

pub mod counters;
mod icmp;
mod input;
pub mod neighbor;
mod output;
pub mod rate_limit;
pub mod reassembly;
mod tcp_glue;
mod tcp_template;

use crate::socket::{Fd, SocketTable};
use crate::time::{earliest, Instant};
use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::Ipv4Cidr;
use counters::Counters;
use neighbor::{ArpConfig, NeighborCache};
use rate_limit::TokenBucket;
use reassembly::{Reassembler, ReassemblyConfig};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Where the stack writes the frames it sends.
pub trait FrameSink {
    /// A buffer of exactly `len` bytes for the next frame, or `None` when there is no room (the frame is then
    /// dropped and counted, as a full transmit ring drops).
    fn frame(&mut self, len: usize) -> Option<&mut [u8]>;

    /// Sends a frame of `head_len` bytes of headers, which `write_head` writes, followed by `tail` (up to two
    /// slices, a ring buffer's two halves), borrowed for this call only. Returns false when the frame was
    /// dropped (no room).
    ///
    /// This is how a TCP super-segment goes out: a sink whose device gathers (a TAP's `writev`) hands the
    /// payload to the kernel from where it lies in the socket's send buffer, one copy of 64 KiB fewer per
    /// super-segment. The default copies it behind the headers in a [`FrameSink::frame`].
    fn frame_with_tail(
        &mut self,
        head_len: usize,
        tail: (&[u8], &[u8]),
        write_head: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        copy_frame_with_tail(self, head_len, tail, write_head)
    }
}

/// [`FrameSink::frame_with_tail`] by copying: the tail goes into the frame behind the headers.
pub fn copy_frame_with_tail(
    sink: &mut (impl FrameSink + ?Sized),
    head_len: usize,
    tail: (&[u8], &[u8]),
    write_head: &mut dyn FnMut(&mut [u8]),
) -> bool {
    let Some(frame) = sink.frame(head_len + tail.0.len() + tail.1.len()) else { return false };
    let (head, body) = frame.split_at_mut(head_len);
    write_head(head);
    crate::storage::ring_buffer::copy_pieces(body, tail.0, tail.1);
    true
}

/// Collects frames into owned vectors: for tests, simulations and replays.
impl FrameSink for Vec<Vec<u8>> {
    fn frame(&mut self, len: usize) -> Option<&mut [u8]> {
        self.push(vec![0; len]);
        self.last_mut().map(Vec::as_mut_slice)
    }
}

/// Writes frames straight into a device's transmit batch.
impl FrameSink for ustack_netdev::FrameBatch {
    fn frame(&mut self, len: usize) -> Option<&mut [u8]> {
        self.push_with_len(len)
    }
}

/// UDP tunables, with Linux's defaults.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// `SO_RCVBUF` of a new socket (Linux: net.core.rmem_default).
    pub rcvbuf_default: usize,
    /// `SO_SNDBUF` of a new socket (Linux: net.core.wmem_default).
    pub sndbuf_default: usize,
    /// Largest value `setsockopt(SO_RCVBUF)` accepts before doubling (Linux: net.core.rmem_max).
    pub rmem_max: usize,
    /// Largest value `setsockopt(SO_SNDBUF)` accepts before doubling (Linux: net.core.wmem_max).
    pub wmem_max: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig { rcvbuf_default: 212_992, sndbuf_default: 212_992, rmem_max: 212_992, wmem_max: 212_992 }
    }
}

/// Everything that configures a stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The stack's own hardware address.
    pub mac: MacAddr,
    /// The interface address and prefix.
    pub ipv4: Ipv4Cidr,
    /// The default router, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The link MTU (largest IP packet).
    pub mtu: usize,
    /// Default IP time-to-live (Linux: net.ipv4.ip_default_ttl, 64).
    pub ttl: u8,
    /// Open sockets, at most (`EMFILE` past it).
    pub max_sockets: usize,
    /// Local port range for implicit binds (Linux: net.ipv4.ip_local_port_range).
    pub ephemeral_ports: (u16, u16),
    /// ICMP errors sent per second at most, and the burst allowed (Linux: icmp_msgs_per_sec and
    /// icmp_msgs_burst).
    pub icmp_rate_per_sec: u32,
    pub icmp_burst: u32,
    /// Answer echo requests sent to a broadcast address (Linux: icmp_echo_ignore_broadcasts = 1, so no).
    pub answer_broadcast_echo: bool,
    pub arp: ArpConfig,
    pub reassembly: ReassemblyConfig,
    pub udp: UdpConfig,
    pub tcp: crate::tcp::config::TcpConfig,
    /// Seeds the stack's random choices (ephemeral ports, IP identification) so runs are reproducible.
    pub seed: u64,
}

impl StackConfig {
    /// A configuration with Linux's defaults for the given identity.
    pub fn new(mac: MacAddr, ipv4: Ipv4Cidr) -> Self {
        StackConfig {
            mac,
            ipv4,
            gateway: None,
            mtu: 1500,
            ttl: 64,
            max_sockets: 1024,
            ephemeral_ports: (32768, 60999),
            icmp_rate_per_sec: 1000,
            icmp_burst: 50,
            answer_broadcast_echo: false,
            arp: ArpConfig::default(),
            reassembly: ReassemblyConfig::default(),
            udp: UdpConfig::default(),
            tcp: crate::tcp::config::TcpConfig::default(),
            // Different addresses give different seeds, so two default stacks do not make the same choices.
            seed: 0x7573_7461_636b ^ u64::from(u32::from(ipv4.addr)) << 16 ^ u64::from(mac.0[5]),
        }
    }
}

/// A datagram from a socket that was closed before it went out (Linux has already sent it by then; so do we,
/// on the next poll).
#[derive(Debug)]
pub(crate) struct OrphanDatagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub ttl: u8,
    pub tos: u8,
    pub payload: Vec<u8>,
}

/// Packets addressed to the stack itself wait here for the next poll, at most this many.
const LOOPBACK_QUEUE_LIMIT: usize = 256;

/// A user-space TCP/IP stack on one interface.
#[derive(Debug)]
pub struct Stack {
    pub(crate) config: StackConfig,
    pub(crate) neighbors: NeighborCache,
    pub(crate) reassembler: Reassembler,
    pub(crate) icmp_limiter: TokenBucket,
    pub(crate) counters: Counters,
    pub(crate) sockets: SocketTable,
    pub(crate) udp_ports: crate::socket::PortTable,
    pub(crate) tcp: crate::tcp::layer::TcpLayer,
    /// UDP sockets with datagrams to send, in the order they became ready.
    pub(crate) udp_tx_ready: VecDeque<Fd>,
    pub(crate) orphan_tx: VecDeque<OrphanDatagram>,
    /// Whole IP packets sent to our own address.
    pub(crate) loopback: VecDeque<Vec<u8>>,
    /// Sockets whose readiness may have changed, not yet routed to epoll instances.
    pub(crate) events: Vec<Fd>,
    /// Descriptors (sockets and epoll instances) whose readiness may have changed since the driver last
    /// looked.
    pub(crate) notify: Vec<Fd>,
    /// For each socket, the epoll instances watching it.
    pub(crate) epoll_watchers: std::collections::HashMap<Fd, Vec<Fd>>,
    pub(crate) next_ident: u16,
    /// Prebuilt headers for TCP frames (see `tcp_template`).
    pub(crate) tcp_templates: tcp_template::TemplateCache,
    rng: crate::rng::Rng,
    /// Reused buffer for building transport segments.
    pub(crate) scratch: Vec<u8>,
    /// The latest time handed in by the driver, for socket calls that start timers (`connect`, `close`).
    pub(crate) last_now: Instant,
    /// The frame being received has a checksum its device vouches for (see `Stack::receive_device_batch`).
    pub(crate) rx_checksum_trusted: bool,
}

impl Stack {
    /// A stack with no sockets.
    pub fn new(config: StackConfig) -> Self {
        Stack {
            neighbors: NeighborCache::new(config.arp.clone(), config.seed ^ 0x6e65_6967_6862_6f72),
            reassembler: Reassembler::new(config.reassembly.clone()),
            icmp_limiter: TokenBucket::new(config.icmp_rate_per_sec, config.icmp_burst),
            counters: Counters::default(),
            sockets: SocketTable::new(config.max_sockets),
            udp_ports: Default::default(),
            tcp: crate::tcp::layer::TcpLayer::new(config.tcp.clone(), config.seed),
            udp_tx_ready: VecDeque::new(),
            orphan_tx: VecDeque::new(),
            loopback: VecDeque::new(),
            events: Vec::new(),
            notify: Vec::new(),
            epoll_watchers: std::collections::HashMap::new(),
            next_ident: (config.seed >> 16) as u16,
            tcp_templates: Default::default(),
            rng: crate::rng::Rng::new(config.seed),
            scratch: Vec::with_capacity(65536),
            last_now: Instant::ZERO,
            rx_checksum_trusted: false,
            config,
        }
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// The counters, named as Linux names them.
    /// The memory TCP buffers occupy: held by connections' rings, and spare for reuse. Walks every
    /// connection: for monitoring, not for a per-packet path.
    pub fn tcp_memory(&self) -> crate::tcp::layer::TcpMemory {
        self.tcp.memory()
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.tcp = self.tcp.counters.clone();
        c
    }

    /// The hardware address the stack answers to.
    pub fn mac(&self) -> MacAddr {
        self.config.mac
    }

    /// The interface address.
    pub fn ipv4_addr(&self) -> Ipv4Addr {
        self.config.ipv4.addr
    }

    /// Runs the timers due at `now` and sends what sockets have queued.
    #[link_section = ".text.hot.ustack"]
    pub fn poll(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        self.last_now = self.last_now.max(now);
        if !self.loopback.is_empty() {
            self.poll_loopback(now, tx);
        }
        self.poll_neighbors(now, tx);
        self.poll_reassembly(now, tx);
        self.flush_udp(now, tx);
        self.poll_tcp(now, tx);
    }

    /// Receives what was sent to our own address. Only what was queued before this poll: answers to it wait
    /// for the next poll, so a conversation with itself (a socket connected to itself) cannot keep one poll
    /// from returning. Out of line, like every rare step of `poll`: the common poll stays a few cache lines.
    #[cold]
    #[inline(never)]
    fn poll_loopback(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        for _ in 0..self.loopback.len() {
            let Some(packet) = self.loopback.pop_front() else { break };
            self.receive_ipv4(now, &packet, false, tx);
        }
    }

    /// When [`Stack::poll`] next has work: `None` means "only when a frame arrives or a call is made".
    /// A deadline at or before the current time means "now".
    pub fn poll_at(&self) -> Option<Instant> {
        let mut at = earliest(self.neighbors.poll_at(), self.reassembler.poll_at());
        at = earliest(at, self.tcp.poll_at());
        if !self.udp_tx_ready.is_empty() || !self.orphan_tx.is_empty() || !self.loopback.is_empty() {
            at = Some(Instant::ZERO);
        }
        at
    }

    /// Sockets whose readiness may have changed since the last call, for the driver to wake their waiters.
    pub fn take_events(&mut self, out: &mut Vec<Fd>) {
        self.route_events();
        out.append(&mut self.notify);
    }

    /// True when some socket's readiness may have changed.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || !self.tcp.events.is_empty() || !self.notify.is_empty()
    }

    /// A random number from the stack's seeded generator.
    pub(crate) fn random_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    /// True for the addresses this interface receives as its own: its unicast address, the limited
    /// broadcast and the subnet broadcast.
    pub(crate) fn accepts_destination(&self, ip: Ipv4Addr) -> bool {
        ip == self.config.ipv4.addr || self.is_broadcast(ip)
    }

    pub(crate) fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.config.is_broadcast(ip)
    }
}
