//! The `actions` target: a sequence of actions against a stack that starts with a bound UDP socket, a TCP
//! listener and an established connection (set up by injecting a real handshake).
//!
//! An action is a frame built from fuzzed header fields (mostly valid and addressed to the stack, with
//! sequence and acknowledgment numbers chosen relative to what the peer-side model has seen, so that they
//! land in the window; sometimes corrupted or fragmented), a move of the clock, or a socket call with
//! bounded arguments. After every action the checks of [`crate::driver`] run, and [`World::check`] adds:
//!
//! - every descriptor the harness holds is open, and the stack counts exactly those (`socket_count`);
//! - `sockets_snapshot` rows are bounded: queues by the configured buffers, accept queues by the backlog,
//!   TIME-WAIT entries by `max_time_wait`, SYN-RECV entries by the listeners' backlogs, retransmission timers
//!   by `max_rto`;
//! - stream integrity: the peer's payload bytes are a function of their sequence number and the
//!   application's bytes a function of their stream offset, so every byte `recv()` returns and every byte
//!   the stack puts in a segment is checked to be the right one;
//! - the stack never acknowledges sequence space the peer has not sent.

use crate::capture::Capture;
use crate::driver::Driver;
use crate::net::{self, IpFields, Sent, PEERS, STACK_IP, STACK_MAC, SUBNET_BROADCAST, TCP_PORT, UDP_PORT};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ustack::socket::epoll::{EpollEvent, EpollOp, PollFd};
use ustack::tcp::SeqNum;
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::ethernet::{ethertype, MacAddr};
use ustack::wire::ip_proto;
use ustack::wire::tcp::{TcpFlags, TcpHeader, TcpOptions};
use ustack::{Domain, Duration, Fd, Instant, MsgFlags, Readiness, Shutdown, SockOpt, SockType};

/// Actions read from one input, at most.
pub const MAX_ACTIONS: usize = 400;
/// Peer-side connection records kept, at most.
const MAX_TCBS: usize = 64;
/// The port the initial connection comes from.
pub const ESTABLISHED_PEER_PORT: u16 = 40000;

/// `Some` one time in eight: for the fields that should be valid most of the time.
#[derive(Debug, Clone)]
pub struct Rare<T>(pub Option<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Rare<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Rare(if u.ratio(1, 8)? { Some(u.arbitrary()?) } else { None }))
    }
}

/// One step.
#[derive(Debug, Clone)]
pub enum Action {
    Tcp(TcpSeg),
    /// In-order data (`len % 4096` bytes) from the peer of a known connection, with every field right.
    PeerData {
        conn: u8,
        len: u16,
        fin: bool,
    },
    /// An acknowledgment from the peer of a known connection.
    PeerAck {
        conn: u8,
        kind: AckKind,
        sack: bool,
    },
    Udp(UdpDgram),
    Icmp(IcmpMsg),
    Arp(ArpMsg),
    /// An IP datagram of any protocol with an arbitrary payload.
    RawIp {
        env: Envelope,
        protocol: u8,
        payload: Vec<u8>,
    },
    /// Arbitrary bytes; with `to_stack` the first six become the stack's MAC.
    RawFrame {
        to_stack: bool,
        bytes: Vec<u8>,
    },
    Advance(Advance),
    Call(Call),
}

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Weighted: TCP segments and socket calls are where the state is.
        Ok(match u.int_in_range(0u8..=99)? {
            0..=22 => Action::Tcp(u.arbitrary()?),
            23..=29 => Action::PeerData { conn: u.arbitrary()?, len: u.arbitrary()?, fin: u.ratio(1, 8)? },
            30..=36 => Action::PeerAck { conn: u.arbitrary()?, kind: u.arbitrary()?, sack: u.arbitrary()? },
            37..=44 => Action::Udp(u.arbitrary()?),
            45..=50 => Action::Icmp(u.arbitrary()?),
            51..=53 => Action::Arp(u.arbitrary()?),
            54..=55 => Action::RawIp { env: u.arbitrary()?, protocol: u.arbitrary()?, payload: u.arbitrary()? },
            56 => Action::RawFrame { to_stack: u.arbitrary()?, bytes: u.arbitrary()? },
            57..=70 => Action::Advance(u.arbitrary()?),
            _ => Action::Call(u.arbitrary()?),
        })
    }
}

/// How a frame travels: from which peer, and what goes wrong with it on the way (rarely).
#[derive(Debug, Clone, Arbitrary)]
pub struct Envelope {
    pub peer: u8,
    pub ip: Rare<IpMangle>,
    pub link: Rare<LinkMangle>,
    pub frag: Rare<Frag>,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum IpMangle {
    Ttl(u8),
    Tos(u8),
    NoDf,
    BadChecksum,
    TotalLen(i16),
    Options(Vec<u8>),
    DstBroadcast,
    DstSubnetBroadcast,
    DstOther([u8; 4]),
    Src([u8; 4]),
    Ident(u16),
    FragBits { more: bool, offset: u16 },
}

#[derive(Debug, Clone, Arbitrary)]
pub enum LinkMangle {
    Broadcast,
    OtherHost,
    SrcMac([u8; 6]),
    Pad(u8),
    Truncate(u8),
}

/// The datagram is cut into fragments of `first` and `second` 8-byte units and the rest; `order` bits:
/// 1 reversed, 2 first piece twice, 4 last piece lost, 8 an overlapping piece added.
#[derive(Debug, Clone, Arbitrary)]
pub struct Frag {
    pub first: u8,
    pub second: u8,
    pub order: u8,
}

#[derive(Debug, Clone, Arbitrary)]
pub struct TcpSeg {
    pub env: Envelope,
    pub to: TcpTarget,
    pub flags: FlagSel,
    pub seq: SeqSel,
    pub ack: AckSel,
    pub window: WinSel,
    pub options: OptSel,
    pub payload: PayloadSel,
    pub urgent: Rare<u16>,
    pub bad_checksum: Rare<()>,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum TcpTarget {
    /// A connection the model knows: below 96 the first (the initial connection), below 160 the newest,
    /// else the index modulo their number.
    Tracked(u8),
    /// The listener, from port 40000 + n % 8 of the envelope's peer.
    Listener(u8),
    Ports {
        src: u16,
        dst: u16,
    },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum AckKind {
    /// Everything the stack sent.
    All,
    /// The peer's previous acknowledgment again, `n % 4 + 1` times (duplicate ACKs).
    Dup(u8),
    /// `n` bytes past the peer's previous acknowledgment.
    Partial(u16),
    /// Everything, with this window.
    Window(u16),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum FlagSel {
    Ack,
    PshAck,
    Syn,
    SynAck,
    FinAck,
    Rst,
    RstAck,
    Raw(u8),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SeqSel {
    /// The peer's next sequence number.
    Next,
    /// What the stack last acknowledged.
    Acked,
    Plus(u16),
    Minus(u16),
    /// The right edge of the stack's advertised window, moved by a little.
    WindowEdge(i8),
    Raw(u32),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum AckSel {
    /// All the stack has sent.
    Latest,
    Back(u16),
    Ahead(u16),
    Raw(u32),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum WinSel {
    Open,
    Zero,
    Small(u8),
    Raw(u16),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum OptSel {
    /// What Linux sends: MSS, SACK-permitted, timestamps and window scale on a SYN; timestamps after.
    Auto,
    None,
    Spec(OptSpec),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
pub struct OptSpec {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<TsSel>,
    /// SACK blocks as (offset past the stack's acknowledged data, length).
    pub sack: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum TsSel {
    /// The peer's clock, echoing the stack's latest value.
    Auto,
    /// An old TSval (PAWS).
    Old(u16),
    Raw(u32, u32),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum PayloadSel {
    Empty,
    /// `n % 2048` bytes of the sequence-numbered pattern.
    Pattern(u16),
    /// Arbitrary bytes: the connection's stream can no longer be checked.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
pub struct UdpDgram {
    pub env: Envelope,
    pub src_port: PortSel,
    pub dst_port: PortSel,
    pub len: u16,
    /// 0 correct, 1 none, 2 wrong.
    pub checksum: Rare<u8>,
    pub len_delta: Rare<i16>,
}

#[derive(Debug, Clone, Arbitrary)]
pub struct IcmpMsg {
    pub env: Envelope,
    pub kind: IcmpKind,
    pub bad_checksum: Rare<()>,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum IcmpKind {
    Echo { ident: u16, seq: u16, len: u16 },
    EchoReply { ident: u16, seq: u16, len: u8 },
    Unreach { code: u8, mtu: u16, quote: Quote },
    TimeExceeded { code: u8, quote: Quote },
    ParamProblem { pointer: u8, quote: Quote },
    SourceQuench { quote: Quote },
    Redirect { code: u8, gateway: [u8; 4], quote: Quote },
    Other { ty: u8, code: u8, word: [u8; 4], body: Vec<u8> },
}

/// The datagram quoted in an ICMP error.
#[derive(Debug, Clone, Arbitrary)]
pub struct Quote {
    pub what: QuoteWhat,
    /// Added to the quoted TCP sequence number (the stack's oldest unacknowledged byte).
    pub seq_off: i16,
    /// Quoted bytes kept past the IP header: 8 + cut % 32.
    pub cut: u8,
    /// The quoted IP header carries options.
    pub ip_options: bool,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum QuoteWhat {
    Tracked(u8),
    Udp { src_port: PortSel, dst: u8, dst_port: PortSel },
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum ArpMsg {
    /// A peer asks for the stack (or replies to it), maybe from a new MAC.
    Announce {
        peer: u8,
        new_mac: Rare<[u8; 6]>,
        reply: bool,
        for_other: bool,
    },
    Raw {
        request: bool,
        sender_mac: [u8; 6],
        sender_ip: [u8; 4],
        target_ip: [u8; 4],
        broadcast: bool,
    },
    /// Stop (or resume) answering the stack's ARP requests for the known peers.
    ToggleAnswers,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Advance {
    Millis(u16),
    Seconds(u16),
    Hours(u8),
    NextTimer,
    /// Sleep from deadline to deadline, n % 32 + 1 times (within an hour).
    RunTimers(u8),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum IpSel {
    Stack,
    Any,
    Loopback,
    Peer(u8),
    Broadcast,
    SubnetBroadcast,
    Multicast,
    /// An on-link address nobody answers ARP for.
    Silent(u8),
    Raw([u8; 4]),
    V6,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum PortSel {
    Zero,
    Tcp,
    Udp,
    Peer(u8),
    Ephemeral(u8),
    Raw(u16),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct AddrSel {
    pub ip: IpSel,
    pub port: PortSel,
}

/// A descriptor: mostly one the harness holds, sometimes a raw number (closed, never opened, negative).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct FdSel(pub u8);

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ValSel {
    Zero,
    One,
    Small(u8),
    Medium(u16),
    Negative(u8),
    Raw(i32),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Call {
    Socket { stream: bool, v6: Rare<()> },
    Bind { fd: FdSel, addr: AddrSel },
    Listen { fd: FdSel, backlog: i8 },
    Accept { fd: FdSel },
    Connect { fd: FdSel, addr: Option<AddrSel> },
    Send { fd: FdSel, len: u16, to: Rare<AddrSel>, flags: u8 },
    Recv { fd: FdSel, len: u16, flags: u8 },
    Shutdown { fd: FdSel, how: u8 },
    Close { fd: FdSel },
    SetOpt { fd: FdSel, opt: u8, value: ValSel },
    GetOpt { fd: FdSel, opt: u8 },
    Linger { fd: FdSel, secs: Option<u8> },
    EpollCreate,
    EpollCtl { ep: FdSel, op: u8, fd: FdSel, events: u32 },
    EpollWait { ep: FdSel, max: u8 },
    Poll { fds: Vec<(FdSel, u16)> },
    TakeEvents,
}

const SOCKOPTS: [SockOpt; 16] = [
    SockOpt::ReuseAddr,
    SockOpt::Broadcast,
    SockOpt::RcvBuf,
    SockOpt::SndBuf,
    SockOpt::Error,
    SockOpt::Type,
    SockOpt::AcceptConn,
    SockOpt::KeepAlive,
    SockOpt::IpTtl,
    SockOpt::IpTos,
    SockOpt::TcpNoDelay,
    SockOpt::TcpMaxSeg,
    SockOpt::TcpKeepIdle,
    SockOpt::TcpKeepIntvl,
    SockOpt::TcpKeepCnt,
    SockOpt::TcpLinger2,
];

thread_local! {
    static UNGUARDED_BUGS: std::cell::Cell<u32> = std::cell::Cell::new(unguarded_from_env());
}

/// `USTACK_FUZZ_KNOWN_BUGS`: unset, none guarded off; `all`; or a comma list of bug numbers (`2,3`).
fn unguarded_from_env() -> u32 {
    match std::env::var("USTACK_FUZZ_KNOWN_BUGS") {
        Err(_) => 0,
        Ok(v) if v.trim() == "all" => u32::MAX,
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse::<u32>().ok()).fold(0, |m, n| m | 1 << (n % 32)),
    }
}

/// Whether the harness steers around known stack bug `n` (numbered in `README.md`, "Known bugs"): found,
/// reported, not fixed yet. Steering around them lets fuzzing go on finding new ones. Each guard is on unless
/// the environment's `USTACK_FUZZ_KNOWN_BUGS` names the bug (`all`, or a list like `2,3`), or the calling thread
/// turned it off with [`set_unguarded_bugs`] (the regression tests that pin those bugs).
pub fn avoid_known_bug(n: u32) -> bool {
    UNGUARDED_BUGS.with(|c| c.get() & (1 << (n % 32)) == 0)
}

/// Sets, for the calling thread, which known bugs the harness no longer steers around (a bit per number).
pub fn set_unguarded_bugs(mask: u32) {
    UNGUARDED_BUGS.with(|c| c.set(mask));
}

/// Reads the actions of one input.
pub fn decode(data: &[u8]) -> Vec<Action> {
    let mut u = Unstructured::new(data);
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < MAX_ACTIONS {
        match Action::arbitrary(&mut u) {
            Ok(a) => out.push(a),
            Err(_) => break,
        }
    }
    out
}

/// Runs one input. Panics on any violated invariant.
pub fn run(data: &[u8], cap: Option<&mut Capture>) {
    run_actions(&decode(data), cap);
}

/// Runs decoded actions, then closes everything and checks that the stack drains.
pub fn run_actions(actions: &[Action], cap: Option<&mut Capture>) {
    let mut w = World::new(cap);
    for a in actions {
        w.step(a);
    }
    w.finish();
}

/// The byte a peer sends at sequence number `seq`.
pub fn peer_byte(seq: u32) -> u8 {
    (seq.wrapping_mul(0x9e37_79b1) >> 24) as u8
}

/// The byte an application writes at offset `k` of its stream.
pub fn app_byte(k: u64) -> u8 {
    (k % 251) as u8
}

/// What the peer side knows of one TCP connection (the stack's end is `local`).
#[derive(Debug, Clone)]
pub struct Tcb {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub mac: MacAddr,
    /// The peer's next sequence number.
    pub next: u32,
    /// The sequence number of the peer's SYN.
    pub isn: Option<u32>,
    /// The furthest sequence end the peer sent, relative to `isn`.
    pub sent_max: u32,
    pub stack_iss: Option<u32>,
    pub stack_nxt: u32,
    pub stack_ack: Option<u32>,
    pub stack_wnd: u16,
    pub stack_ws: Option<u8>,
    pub our_ws: Option<u8>,
    pub ts_recent: u32,
    pub stack_ts: bool,
    pub our_ack: u32,
    /// The stream can no longer be checked (arbitrary payload bytes, or a second SYN with another ISN).
    pub tainted: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct FdStream {
    tx_off: u64,
    rx_off: u64,
}

/// The stack, its driver, and the peer-side model.
pub struct World<'c> {
    pub d: Driver<'c>,
    /// Descriptors the harness holds, in the order they were opened.
    pub fds: Vec<Fd>,
    /// The epoll instances among them.
    epolls: Vec<Fd>,
    streams: HashMap<Fd, FdStream>,
    pub tcbs: Vec<Tcb>,
    answer_arp: bool,
    ident: u16,
    pub listener: Fd,
    pub udp: Fd,
    pub established: Fd,
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

fn peer_mac(ip: Ipv4Addr) -> MacAddr {
    PEERS.iter().find(|p| p.1 == ip).map_or(net::GATEWAY_MAC, |p| p.0)
}

fn ahead(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl<'c> World<'c> {
    /// The starting state: peers known by ARP, a UDP socket on port 7, a listener on port 80, and one
    /// established connection from the first peer, accepted.
    pub fn new(cap: Option<&'c mut Capture>) -> Self {
        let mut w = World {
            d: Driver::new(cap),
            fds: Vec::new(),
            epolls: Vec::new(),
            streams: HashMap::new(),
            tcbs: Vec::new(),
            answer_arp: true,
            ident: 1,
            listener: Fd(-1),
            udp: Fd(-1),
            established: Fd(-1),
        };
        for (mac, ip) in &PEERS[..3] {
            w.receive_checked(&net::arp_request_for_stack(*mac, *ip));
        }
        let any = |port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        let s = &mut w.d.stack;
        let udp = s.socket(Domain::Inet, SockType::Dgram).expect("udp socket");
        s.bind(udp, any(UDP_PORT)).expect("udp bind");
        let l = s.socket(Domain::Inet, SockType::Stream).expect("tcp socket");
        s.setsockopt(l, SockOpt::ReuseAddr, 1).expect("SO_REUSEADDR");
        s.bind(l, any(TCP_PORT)).expect("tcp bind");
        s.listen(l, 8).expect("listen");
        w.opened(udp);
        w.opened(l);
        (w.udp, w.listener) = (udp, l);
        w.check();

        // The handshake, as Linux would send it.
        let (mac, ip) = PEERS[0];
        let remote = SocketAddrV4::new(ip, ESTABLISHED_PEER_PORT);
        let local = SocketAddrV4::new(STACK_IP, TCP_PORT);
        let i = w.tcb_index(local, remote, mac).expect("room for a tcb");
        let env = Envelope { peer: 0, ip: Rare(None), link: Rare(None), frag: Rare(None) };
        let mut seg = TcpSeg {
            env,
            to: TcpTarget::Tracked(i as u8),
            flags: FlagSel::Syn,
            seq: SeqSel::Next,
            ack: AckSel::Raw(0),
            window: WinSel::Open,
            options: OptSel::Auto,
            payload: PayloadSel::Empty,
            urgent: Rare(None),
            bad_checksum: Rare(None),
        };
        w.tcp_segment_at(&seg, i);
        w.settle();
        assert!(w.tcbs[i].stack_iss.is_some(), "setup: the stack did not answer the SYN");
        seg.flags = FlagSel::Ack;
        seg.ack = AckSel::Latest;
        w.tcp_segment_at(&seg, i);
        w.settle();
        let (fd, peer) = w.d.with_stack(|s| s.accept(l)).expect("setup: accept after the handshake");
        assert_eq!(peer, SocketAddr::V4(remote));
        w.opened(fd);
        w.established = fd;
        w.check();
        w
    }

    /// One action, then every check.
    pub fn step(&mut self, a: &Action) {
        match a {
            Action::Tcp(seg) => self.tcp_segment(seg),
            Action::PeerData { conn, len, fin } => self.peer_data(*conn, *len, *fin),
            Action::PeerAck { conn, kind, sack } => self.peer_ack(*conn, *kind, *sack),
            Action::Udp(d) => self.udp_datagram(d),
            Action::Icmp(m) => self.icmp(m),
            Action::Arp(m) => self.arp(m),
            Action::RawIp { env, protocol, payload } => {
                let ip = PEERS[usize::from(env.peer) % PEERS.len()].1;
                self.send_ip(env, IpFields::new(ip, STACK_IP, *protocol), payload);
            }
            Action::RawFrame { to_stack, bytes } => {
                let mut f = bytes.clone();
                if *to_stack && f.len() >= 6 {
                    f[..6].copy_from_slice(&STACK_MAC.0);
                }
                self.d.receive(&f);
            }
            Action::Advance(adv) => self.advance(*adv),
            Action::Call(c) => self.call(c),
        }
        self.settle();
        self.check();
    }

    /// Feeds a frame, polls, and runs the checks (for the `frame_parser` target).
    pub fn receive_checked(&mut self, frame: &[u8]) {
        self.d.receive(frame);
        self.settle();
        self.check();
    }

    /// Moves the clock, polls, and runs the checks.
    pub fn advance_checked(&mut self, d: Duration) {
        self.d.advance(d);
        self.settle();
        self.check();
    }

    /// Polls and takes in what the stack sent, answering its ARP requests for known peers (a few rounds).
    fn settle(&mut self) {
        for _ in 0..4 {
            self.d.poll();
            let sent = self.d.take_sent();
            if sent.is_empty() {
                break;
            }
            let mut answers = Vec::new();
            for s in sent {
                self.absorb(&s, &mut answers);
            }
            if answers.is_empty() {
                break;
            }
            for f in answers {
                self.d.receive(&f);
            }
        }
    }

    /// Updates the model from one frame the stack sent, and checks its TCP payload and acknowledgment.
    fn absorb(&mut self, s: &Sent, answers: &mut Vec<Vec<u8>>) {
        match s {
            Sent::Arp(p) => {
                let known = PEERS[..3].iter().find(|(_, ip)| *ip == p.target_ip);
                if let (ArpOp::Request, Some((mac, ip)), true) = (p.op, known, self.answer_arp) {
                    let reply = ArpPacket {
                        op: ArpOp::Reply,
                        sender_mac: *mac,
                        sender_ip: *ip,
                        target_mac: STACK_MAC,
                        target_ip: STACK_IP,
                    };
                    answers.push(net::arp_frame(STACK_MAC, *mac, &reply));
                }
            }
            Sent::Tcp { ip, tcp, payload } => {
                let local = SocketAddrV4::new(ip.src, tcp.src_port);
                let remote = SocketAddrV4::new(ip.dst, tcp.dst_port);
                let Some(i) = self.tcb_index(local, remote, peer_mac(ip.dst)) else { return };
                let t = &mut self.tcbs[i];
                let syn = tcp.flags.contains(TcpFlags::SYN);
                let fin = tcp.flags.contains(TcpFlags::FIN);
                if syn {
                    t.stack_iss = Some(tcp.seq.0);
                    t.stack_nxt = tcp.seq.0;
                    t.stack_ws = tcp.options.window_scale;
                    t.stack_ts = tcp.options.timestamps.is_some();
                }
                if let (Some(iss), false) = (t.stack_iss, syn) {
                    for (j, &b) in payload.iter().enumerate() {
                        let k = tcp.seq.0.wrapping_add(j as u32).wrapping_sub(iss.wrapping_add(1));
                        if k < 1 << 30 && b != app_byte(u64::from(k)) {
                            panic!(
                                "invariant: the stack sent byte {b:#04x} at stream offset {k} of {local}->{remote} \
                                 (seq {}), but the application wrote {:#04x} there",
                                tcp.seq.0.wrapping_add(j as u32),
                                app_byte(u64::from(k))
                            );
                        }
                    }
                }
                let end = tcp.seq.0.wrapping_add(payload.len() as u32 + u32::from(syn) + u32::from(fin));
                if ahead(end, t.stack_nxt) || t.stack_iss.is_none() {
                    t.stack_nxt = end;
                }
                if tcp.flags.contains(TcpFlags::ACK) && !tcp.flags.contains(TcpFlags::RST) {
                    if let (Some(isn), false) = (t.isn, t.tainted) {
                        let rel = tcp.ack.0.wrapping_sub(isn);
                        if rel < 1 << 30 && rel > t.sent_max {
                            panic!(
                                "invariant: the stack acknowledged {} on {local}->{remote}, {} past the peer's \
                                 furthest sequence end {}",
                                tcp.ack.0,
                                rel - t.sent_max,
                                isn.wrapping_add(t.sent_max)
                            );
                        }
                    }
                    t.stack_ack = Some(tcp.ack.0);
                    if ahead(tcp.ack.0, t.next) && t.isn.is_none() {
                        t.next = tcp.ack.0;
                    }
                }
                t.stack_wnd = tcp.window;
                if let Some((val, _)) = tcp.options.timestamps {
                    t.ts_recent = val;
                }
            }
            Sent::Udp { .. } | Sent::Icmp { .. } | Sent::Fragment { .. } => {}
        }
    }

    /// The model's record of a connection, made if new (when there is room).
    fn tcb_index(&mut self, local: SocketAddrV4, remote: SocketAddrV4, mac: MacAddr) -> Option<usize> {
        if let Some(i) = self.tcbs.iter().position(|t| t.local == local && t.remote == remote) {
            return Some(i);
        }
        if self.tcbs.len() >= MAX_TCBS {
            return None;
        }
        let isn = 0x1000_0000u32.wrapping_add(u32::from(remote.port()) << 12).wrapping_add(self.tcbs.len() as u32);
        self.tcbs.push(Tcb {
            local,
            remote,
            mac,
            next: isn,
            isn: None,
            sent_max: 0,
            stack_iss: None,
            stack_nxt: 0,
            stack_ack: None,
            stack_wnd: 0,
            stack_ws: None,
            our_ws: None,
            ts_recent: 0,
            stack_ts: false,
            our_ack: 0,
            tainted: false,
        });
        Some(self.tcbs.len() - 1)
    }

    fn peer_clock(&self) -> u32 {
        (self.d.now.as_millis() as u32).wrapping_add(1_000)
    }

    fn tcp_segment(&mut self, seg: &TcpSeg) {
        let peer = PEERS[usize::from(seg.env.peer) % PEERS.len()];
        let i = match seg.to {
            TcpTarget::Tracked(n) if !self.tcbs.is_empty() => self.pick_tcb(n),
            TcpTarget::Tracked(n) | TcpTarget::Listener(n) => self.tcb_index(
                SocketAddrV4::new(STACK_IP, TCP_PORT),
                SocketAddrV4::new(peer.1, ESTABLISHED_PEER_PORT + u16::from(n % 8)),
                peer.0,
            ),
            TcpTarget::Ports { src, dst } => {
                self.tcb_index(SocketAddrV4::new(STACK_IP, dst), SocketAddrV4::new(peer.1, src), peer.0)
            }
        };
        if let Some(i) = i {
            self.tcp_segment_at(seg, i);
        }
    }

    fn pick_tcb(&self, n: u8) -> Option<usize> {
        let len = self.tcbs.len();
        match n {
            _ if len == 0 => None,
            0..=95 => Some(0),
            96..=159 => Some(len - 1),
            _ => Some(usize::from(n) % len),
        }
    }

    fn plain_segment(flags: FlagSel, seq: SeqSel, ack: AckSel, payload: PayloadSel) -> TcpSeg {
        TcpSeg {
            env: Envelope { peer: 0, ip: Rare(None), link: Rare(None), frag: Rare(None) },
            to: TcpTarget::Tracked(0),
            flags,
            seq,
            ack,
            window: WinSel::Open,
            options: OptSel::Auto,
            payload,
            urgent: Rare(None),
            bad_checksum: Rare(None),
        }
    }

    fn peer_data(&mut self, conn: u8, len: u16, fin: bool) {
        let Some(i) = self.pick_tcb(conn) else { return };
        let flags = if fin { FlagSel::Raw(0x19) } else { FlagSel::PshAck };
        let seg = Self::plain_segment(flags, SeqSel::Next, AckSel::Latest, PayloadSel::Pattern(len % 4096));
        self.tcp_segment_at(&seg, i);
    }

    fn peer_ack(&mut self, conn: u8, kind: AckKind, sack: bool) {
        let Some(i) = self.pick_tcb(conn) else { return };
        let t = &self.tcbs[i];
        let (una, nxt) = (t.our_ack, t.stack_nxt);
        let mut seg = Self::plain_segment(FlagSel::Ack, SeqSel::Next, AckSel::Latest, PayloadSel::Empty);
        let mut times = 1;
        match kind {
            AckKind::All => {}
            AckKind::Dup(n) => {
                seg.ack = AckSel::Raw(una);
                times = n % 4 + 1;
            }
            AckKind::Partial(d) => {
                let room = nxt.wrapping_sub(una);
                let d = if room > 0 && room < 1 << 30 { u32::from(d) % room } else { 0 };
                seg.ack = AckSel::Raw(una.wrapping_add(d));
            }
            AckKind::Window(w) => seg.window = WinSel::Raw(w),
        }
        let acked = match seg.ack {
            AckSel::Raw(a) => a,
            _ => nxt,
        };
        if sack && ahead(nxt, acked) {
            // One block past a lost first segment: the shape that drives SACK recovery.
            let gap = nxt.wrapping_sub(acked).min(1448) as u16;
            let len = nxt.wrapping_sub(acked).saturating_sub(u32::from(gap)).min(8 * 1448) as u16;
            let ts = if self.tcbs[i].stack_ts { Some(TsSel::Auto) } else { None };
            seg.options = OptSel::Spec(OptSpec {
                mss: None,
                window_scale: None,
                sack_permitted: false,
                timestamps: ts,
                sack: vec![(gap.wrapping_add(acked.wrapping_sub(self.tcbs[i].our_ack) as u16), len)],
            });
        }
        for _ in 0..times {
            self.tcp_segment_at(&seg, i);
        }
    }

    fn tcp_segment_at(&mut self, seg: &TcpSeg, i: usize) {
        let now_ts = self.peer_clock();
        let t = &self.tcbs[i];
        let flags = match seg.flags {
            FlagSel::Ack => TcpFlags::ACK,
            FlagSel::PshAck => TcpFlags::ACK | TcpFlags::PSH,
            FlagSel::Syn => TcpFlags::SYN,
            FlagSel::SynAck => TcpFlags::SYN | TcpFlags::ACK,
            FlagSel::FinAck => TcpFlags::FIN | TcpFlags::ACK,
            FlagSel::Rst => TcpFlags::RST,
            FlagSel::RstAck => TcpFlags::RST | TcpFlags::ACK,
            FlagSel::Raw(b) => TcpFlags(b),
        };
        let syn = flags.contains(TcpFlags::SYN);
        let acked = t.stack_ack.unwrap_or(t.next);
        let stack_window = match (t.stack_ws, t.our_ws) {
            (Some(s), Some(_)) => u32::from(t.stack_wnd) << s,
            _ => u32::from(t.stack_wnd),
        };
        let seq = match seg.seq {
            SeqSel::Next => t.next,
            SeqSel::Acked => acked,
            SeqSel::Plus(d) => t.next.wrapping_add(u32::from(d)),
            SeqSel::Minus(d) => t.next.wrapping_sub(u32::from(d)),
            SeqSel::WindowEdge(d) => acked.wrapping_add(stack_window).wrapping_add(d as i32 as u32),
            SeqSel::Raw(x) => x,
        };
        let ack = match seg.ack {
            AckSel::Latest => t.stack_nxt,
            AckSel::Back(d) => t.stack_nxt.wrapping_sub(u32::from(d)),
            AckSel::Ahead(d) => t.stack_nxt.wrapping_add(u32::from(d)),
            AckSel::Raw(x) => x,
        };
        let window = match seg.window {
            WinSel::Open => 65535,
            WinSel::Zero => 0,
            WinSel::Small(x) => u16::from(x),
            WinSel::Raw(x) => x,
        };
        let echo = if flags.contains(TcpFlags::ACK) { t.ts_recent } else { 0 };
        let mut raw_options = None;
        let options = match &seg.options {
            OptSel::Auto if syn => TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((now_ts, echo)),
                ..Default::default()
            },
            OptSel::Auto if t.stack_ts => TcpOptions { timestamps: Some((now_ts, echo)), ..Default::default() },
            OptSel::Auto | OptSel::None => TcpOptions::default(),
            OptSel::Spec(s) => {
                let mut o = TcpOptions {
                    mss: s.mss,
                    window_scale: s.window_scale.map(|w| w.min(14)),
                    sack_permitted: s.sack_permitted,
                    timestamps: s.timestamps.map(|ts| match ts {
                        TsSel::Auto => (now_ts, echo),
                        TsSel::Old(d) => (now_ts.wrapping_sub(u32::from(d) + 1), echo),
                        TsSel::Raw(a, b) => (a, b),
                    }),
                    ..Default::default()
                };
                let blocks: Vec<(SeqNum, SeqNum)> = s
                    .sack
                    .iter()
                    .take(4)
                    .map(|&(off, len)| {
                        let left = t.our_ack.wrapping_add(u32::from(off));
                        (SeqNum(left), SeqNum(left.wrapping_add(u32::from(len))))
                    })
                    .collect();
                o.set_sack_blocks(&blocks);
                o
            }
            OptSel::Raw(bytes) => {
                raw_options = Some(bytes.clone());
                TcpOptions::default()
            }
        };
        let mut tainted = false;
        let payload: Vec<u8> = match &seg.payload {
            PayloadSel::Empty => Vec::new(),
            PayloadSel::Pattern(n) => {
                let first = seq.wrapping_add(u32::from(syn));
                (0..u32::from(*n % 2048)).map(|j| peer_byte(first.wrapping_add(j))).collect()
            }
            PayloadSel::Bytes(b) => {
                tainted = !b.is_empty();
                b.clone()
            }
        };
        let header = TcpHeader {
            src_port: t.remote.port(),
            dst_port: t.local.port(),
            seq: SeqNum(seq),
            ack: SeqNum(ack),
            flags,
            window,
            urgent: seg.urgent.0.unwrap_or(0),
            options,
        };
        let (local, remote, mac) = (t.local, t.remote, t.mac);
        let bytes =
            net::tcp_segment(remote, local, &header, raw_options.as_deref(), &payload, seg.bad_checksum.0.is_some());

        // The model, before the stack answers.
        let t = &mut self.tcbs[i];
        t.tainted |= tainted;
        if syn {
            match t.isn {
                Some(isn) if isn != seq => t.tainted = true,
                Some(_) => {}
                None => {
                    t.isn = Some(seq);
                    t.sent_max = 0;
                }
            }
            if !flags.contains(TcpFlags::RST) {
                t.our_ws = header.options.window_scale;
            }
        }
        let end = seq.wrapping_add(payload.len() as u32 + u32::from(syn) + u32::from(flags.contains(TcpFlags::FIN)));
        if let Some(isn) = t.isn {
            let rel = end.wrapping_sub(isn);
            if rel < 1 << 30 && rel > t.sent_max {
                t.sent_max = rel;
            }
        }
        if ahead(end, t.next) {
            t.next = end;
        }
        if flags.contains(TcpFlags::ACK) {
            t.our_ack = ack;
        }
        let fields = IpFields::new(*remote.ip(), *local.ip(), ip_proto::TCP);
        self.send_ip_via(&seg.env, fields, &bytes, mac);
    }

    fn udp_datagram(&mut self, d: &UdpDgram) {
        let peer = PEERS[usize::from(d.env.peer) % PEERS.len()];
        let src = SocketAddrV4::new(peer.1, self.port(d.src_port));
        let dst = SocketAddrV4::new(STACK_IP, self.port(d.dst_port));
        let payload: Vec<u8> = (0..usize::from(d.len % 4096)).map(|j| (j % 253) as u8).collect();
        let bytes = net::udp_datagram(src, dst, &payload, d.checksum.0.unwrap_or(0), d.len_delta.0.unwrap_or(0));
        self.send_ip(&d.env, IpFields::new(peer.1, STACK_IP, ip_proto::UDP), &bytes);
    }

    fn quote(&mut self, q: &Quote) -> Vec<u8> {
        let mut inner = match &q.what {
            QuoteWhat::Tracked(n) if !self.tcbs.is_empty() => {
                let t = &self.tcbs[usize::from(*n) % self.tcbs.len()];
                let seq = t.stack_ack.map_or(t.stack_nxt, |_| t.our_ack).wrapping_add(q.seq_off as i32 as u32);
                let h = TcpHeader {
                    src_port: t.local.port(),
                    dst_port: t.remote.port(),
                    seq: SeqNum(seq),
                    ack: SeqNum(t.next),
                    flags: TcpFlags::ACK,
                    window: 1000,
                    urgent: 0,
                    options: TcpOptions::default(),
                };
                let seg = net::tcp_segment(t.local, t.remote, &h, None, &[0; 100], false);
                IpFields::new(STACK_IP, *t.remote.ip(), ip_proto::TCP).packet(&seg)
            }
            QuoteWhat::Tracked(_) => Vec::new(),
            QuoteWhat::Udp { src_port, dst, dst_port } => {
                let src = SocketAddrV4::new(STACK_IP, self.port(*src_port));
                let dst = SocketAddrV4::new(PEERS[usize::from(*dst) % PEERS.len()].1, self.port(*dst_port));
                let d = net::udp_datagram(src, dst, &[1; 64], 0, 0);
                IpFields::new(STACK_IP, *dst.ip(), ip_proto::UDP).packet(&d)
            }
            QuoteWhat::Raw(b) => b.clone(),
        };
        if q.ip_options && inner.len() >= 20 {
            // The same datagram with 8 bytes of IP options (NOPs) in its header.
            let mut with = inner[..20].to_vec();
            with[0] = 0x47;
            with.extend_from_slice(&[1; 8]);
            with.extend_from_slice(&inner[20..]);
            inner = with;
        }
        let hl = inner.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
        inner.truncate(hl + 8 + usize::from(q.cut % 32));
        inner
    }

    fn icmp(&mut self, m: &IcmpMsg) {
        let bad = m.bad_checksum.0.is_some();
        let word = |a: u16, b: u16| {
            let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
            [a[0], a[1], b[0], b[1]]
        };
        let msg = match &m.kind {
            IcmpKind::Echo { ident, seq, len } => {
                let body: Vec<u8> = (0..usize::from(*len % 3000)).map(|j| j as u8).collect();
                net::icmp_message(8, 0, word(*ident, *seq), &body, bad)
            }
            IcmpKind::EchoReply { ident, seq, len } => {
                net::icmp_message(0, 0, word(*ident, *seq), &vec![0; usize::from(*len)], bad)
            }
            IcmpKind::Unreach { code, mtu, quote } => {
                net::icmp_message(3, code % 16, word(0, *mtu), &self.quote(quote), bad)
            }
            IcmpKind::TimeExceeded { code, quote } => net::icmp_message(11, code % 2, [0; 4], &self.quote(quote), bad),
            IcmpKind::ParamProblem { pointer, quote } => {
                net::icmp_message(12, 0, [*pointer, 0, 0, 0], &self.quote(quote), bad)
            }
            IcmpKind::SourceQuench { quote } => net::icmp_message(4, 0, [0; 4], &self.quote(quote), bad),
            IcmpKind::Redirect { code, gateway, quote } => {
                net::icmp_message(5, code % 4, *gateway, &self.quote(quote), bad)
            }
            IcmpKind::Other { ty, code, word, body } => net::icmp_message(*ty, *code, *word, body, bad),
        };
        let ip = PEERS[usize::from(m.env.peer) % PEERS.len()].1;
        self.send_ip(&m.env, IpFields::new(ip, STACK_IP, ip_proto::ICMP), &msg);
    }

    fn arp(&mut self, m: &ArpMsg) {
        match m {
            ArpMsg::Announce { peer, new_mac, reply, for_other } => {
                let (mut mac, ip) = PEERS[usize::from(*peer) % 3];
                if let Some(b) = new_mac.0 {
                    mac = MacAddr(b);
                }
                let target_ip = if *for_other { PEERS[1].1 } else { STACK_IP };
                let p = ArpPacket {
                    op: if *reply { ArpOp::Reply } else { ArpOp::Request },
                    sender_mac: mac,
                    sender_ip: ip,
                    target_mac: if *reply { STACK_MAC } else { MacAddr::ZERO },
                    target_ip,
                };
                let dst = if *reply { STACK_MAC } else { MacAddr::BROADCAST };
                self.d.receive(&net::arp_frame(dst, mac, &p));
            }
            ArpMsg::Raw { request, sender_mac, sender_ip, target_ip, broadcast } => {
                let p = ArpPacket {
                    op: if *request { ArpOp::Request } else { ArpOp::Reply },
                    sender_mac: MacAddr(*sender_mac),
                    sender_ip: Ipv4Addr::from(*sender_ip),
                    target_mac: MacAddr::ZERO,
                    target_ip: Ipv4Addr::from(*target_ip),
                };
                let dst = if *broadcast { MacAddr::BROADCAST } else { STACK_MAC };
                self.d.receive(&net::arp_frame(dst, MacAddr(*sender_mac), &p));
            }
            ArpMsg::ToggleAnswers => self.answer_arp = !self.answer_arp,
        }
    }

    fn send_ip(&mut self, env: &Envelope, fields: IpFields, payload: &[u8]) {
        let mac = peer_mac(fields.src);
        self.send_ip_via(env, fields, payload, mac);
    }

    /// Wraps a transport payload in IPv4 and Ethernet, applies the envelope's mangling and fragmentation,
    /// and feeds the frames.
    fn send_ip_via(&mut self, env: &Envelope, mut fields: IpFields, payload: &[u8], mac: MacAddr) {
        self.ident = self.ident.wrapping_add(1);
        fields.ident = self.ident;
        if let Some(m) = &env.ip.0 {
            match m {
                IpMangle::Ttl(t) => fields.ttl = *t,
                IpMangle::Tos(t) => fields.tos = *t,
                IpMangle::NoDf => fields.dont_fragment = false,
                IpMangle::BadChecksum => fields.bad_checksum = true,
                IpMangle::TotalLen(d) => fields.total_len_delta = *d,
                IpMangle::Options(o) => fields.options = o.clone(),
                IpMangle::DstBroadcast => fields.dst = Ipv4Addr::BROADCAST,
                IpMangle::DstSubnetBroadcast => fields.dst = SUBNET_BROADCAST,
                IpMangle::DstOther(a) => fields.dst = Ipv4Addr::from(*a),
                IpMangle::Src(a) => fields.src = Ipv4Addr::from(*a),
                IpMangle::Ident(i) => fields.ident = *i,
                IpMangle::FragBits { more, offset } => {
                    fields.more_fragments = *more;
                    fields.frag_offset = usize::from(offset & 0x1fff) * 8;
                    fields.dont_fragment = false;
                }
            }
        }
        let packets = match &env.frag.0 {
            None => vec![fields.packet(payload)],
            Some(fr) => {
                let first = usize::from(fr.first % 32 + 1) * 8;
                let second = usize::from(fr.second % 32 + 1) * 8;
                let mut p = fields.fragments(payload, first, second);
                if fr.order & 8 != 0 && payload.len() > first {
                    let mut f = fields.clone();
                    f.frag_offset += first / 2 / 8 * 8;
                    f.more_fragments = true;
                    f.dont_fragment = false;
                    let start = first / 2 / 8 * 8;
                    let end = (start + first).min(payload.len());
                    let len = (end - start) / 8 * 8;
                    if len > 0 {
                        p.insert(1, f.packet(&payload[start..start + len]));
                    }
                }
                if fr.order & 2 != 0 {
                    let first = p[0].clone();
                    p.push(first);
                }
                if fr.order & 4 != 0 && p.len() > 1 {
                    p.pop();
                }
                if fr.order & 1 != 0 {
                    p.reverse();
                }
                p
            }
        };
        for packet in packets {
            let mut dst = STACK_MAC;
            let mut src = mac;
            let mut pad = 0;
            let mut cut = None;
            match &env.link.0 {
                Some(LinkMangle::Broadcast) => dst = MacAddr::BROADCAST,
                Some(LinkMangle::OtherHost) => dst = MacAddr([0x02, 0, 0, 0, 0, 0x99]),
                Some(LinkMangle::SrcMac(m)) => src = MacAddr(*m),
                Some(LinkMangle::Pad(n)) => pad = usize::from(*n % 64),
                Some(LinkMangle::Truncate(n)) => cut = Some(usize::from(*n)),
                None => {}
            }
            let mut f = net::eth(dst, src, ethertype::IPV4, &packet);
            f.resize(f.len() + pad, 0);
            if let Some(c) = cut {
                f.truncate(f.len().saturating_sub(c % 64 + 1));
            }
            self.d.receive(&f);
        }
    }

    fn advance(&mut self, a: Advance) {
        match a {
            Advance::Millis(ms) => self.d.advance(Duration::from_millis(u64::from(ms))),
            Advance::Seconds(s) => self.d.advance(Duration::from_secs(u64::from(s % 3600))),
            Advance::Hours(h) => self.d.advance(Duration::from_secs(3600 * u64::from(h % 48))),
            Advance::NextTimer => {
                let limit = self.d.now + Duration::from_secs(3 * 3600);
                self.d.next_timer(limit);
            }
            Advance::RunTimers(n) => {
                let limit = self.d.now + Duration::from_secs(3600);
                for _ in 0..=n % 32 {
                    if !self.d.next_timer(limit) {
                        break;
                    }
                    self.settle();
                }
            }
        }
    }

    fn fd(&self, s: FdSel) -> Fd {
        if s.0 < 224 && !self.fds.is_empty() {
            self.fds[usize::from(s.0) % self.fds.len()]
        } else {
            Fd(i32::from(s.0) - 225)
        }
    }

    fn port(&self, p: PortSel) -> u16 {
        match p {
            PortSel::Zero => 0,
            PortSel::Tcp => TCP_PORT,
            PortSel::Udp => UDP_PORT,
            PortSel::Peer(n) => ESTABLISHED_PEER_PORT + u16::from(n % 8),
            PortSel::Ephemeral(n) => 32768 + u16::from(n % 64),
            PortSel::Raw(x) => x,
        }
    }

    fn addr(&self, a: AddrSel) -> SocketAddr {
        let port = self.port(a.port);
        let ip = match a.ip {
            IpSel::Stack => STACK_IP,
            IpSel::Any => Ipv4Addr::UNSPECIFIED,
            IpSel::Loopback => Ipv4Addr::LOCALHOST,
            IpSel::Peer(n) => PEERS[usize::from(n) % PEERS.len()].1,
            IpSel::Broadcast => Ipv4Addr::BROADCAST,
            IpSel::SubnetBroadcast => SUBNET_BROADCAST,
            IpSel::Multicast => Ipv4Addr::new(224, 0, 0, 1),
            IpSel::Silent(n) => Ipv4Addr::new(198, 18, 0, 100 + n % 50),
            IpSel::Raw(b) => Ipv4Addr::from(b),
            IpSel::V6 => return SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), port),
        };
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    }

    fn opened(&mut self, fd: Fd) {
        assert!(!self.fds.contains(&fd), "invariant: descriptor {fd} handed out while still open");
        self.fds.push(fd);
        self.streams.insert(fd, FdStream::default());
    }

    fn call(&mut self, c: &Call) {
        match *c {
            Call::Socket { stream, ref v6 } => {
                let domain = if v6.0.is_some() { Domain::Inet6 } else { Domain::Inet };
                let ty = if stream { SockType::Stream } else { SockType::Dgram };
                if let Ok(fd) = self.d.with_stack(|s| s.socket(domain, ty)) {
                    self.opened(fd);
                }
            }
            Call::Bind { fd, addr } => {
                let (fd, addr) = (self.fd(fd), self.addr(addr));
                let _ = self.d.with_stack(|s| s.bind(fd, addr));
            }
            Call::Listen { fd, backlog } => {
                let fd = self.fd(fd);
                let _ = self.d.with_stack(|s| s.listen(fd, i32::from(backlog)));
            }
            Call::Accept { fd } => {
                let fd = self.fd(fd);
                if let Ok((new, _)) = self.d.with_stack(|s| s.accept(fd)) {
                    self.opened(new);
                }
            }
            Call::Connect { fd, addr } => {
                let (fd, addr) = (self.fd(fd), addr.map(|a| self.addr(a)));
                let r = self.d.with_stack(|s| s.connect(fd, addr));
                if addr.is_none() || r == Err(ustack::Errno::EINPROGRESS) {
                    // A new stream (or none) on this descriptor: its offsets start again.
                    if let Some(st) = self.streams.get_mut(&fd) {
                        *st = FdStream::default();
                    }
                }
            }
            Call::Send { fd, len, ref to, flags } => {
                let fd = self.fd(fd);
                let to = to.0.map(|a| self.addr(a));
                let off = self.streams.get(&fd).map_or(0, |s| s.tx_off);
                let buf: Vec<u8> = (0..u64::from(len)).map(|j| app_byte(off + j)).collect();
                let r = self.d.with_stack(|s| s.sendto(fd, &buf, msg_flags(flags), to));
                if let Ok(n) = r {
                    assert!(n <= buf.len(), "invariant: send of {} bytes reported {n}", buf.len());
                    if let Some(st) = self.streams.get_mut(&fd) {
                        st.tx_off += n as u64;
                    }
                }
            }
            Call::Recv { fd, len, flags } => self.recv(self.fd(fd), usize::from(len), msg_flags(flags)),
            Call::Shutdown { fd, how } => {
                let fd = self.fd(fd);
                let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(how % 3)];
                let _ = self.d.with_stack(|s| s.shutdown(fd, how));
            }
            Call::Close { fd } => {
                let fd = self.fd(fd);
                if self.d.with_stack(|s| s.close(fd)).is_ok() {
                    self.fds.retain(|&f| f != fd);
                    self.epolls.retain(|&f| f != fd);
                    self.streams.remove(&fd);
                    assert!(self.d.stack.readiness(fd).is_err(), "invariant: descriptor {fd} still open after close");
                }
            }
            Call::SetOpt { fd, opt, value } => {
                let fd = self.fd(fd);
                let opt = SOCKOPTS[usize::from(opt) % SOCKOPTS.len()];
                let value = match value {
                    ValSel::Zero => 0,
                    ValSel::One => 1,
                    ValSel::Small(x) => i32::from(x),
                    ValSel::Medium(x) => i32::from(x),
                    ValSel::Negative(x) => -i32::from(x) - 1,
                    ValSel::Raw(x) => x,
                };
                let _ = self.d.with_stack(|s| s.setsockopt(fd, opt, value));
            }
            Call::GetOpt { fd, opt } => {
                let fd = self.fd(fd);
                let opt = SOCKOPTS[usize::from(opt) % SOCKOPTS.len()];
                let _ = self.d.with_stack(|s| s.getsockopt(fd, opt));
            }
            Call::Linger { fd, secs } => {
                let fd = self.fd(fd);
                let _ = self.d.with_stack(|s| s.set_linger(fd, secs.map(|x| Duration::from_secs(u64::from(x)))));
            }
            Call::EpollCreate => {
                if let Ok(fd) = self.d.with_stack(|s| s.epoll_create()) {
                    self.opened(fd);
                    self.epolls.push(fd);
                }
            }
            Call::EpollCtl { ep, op, fd, events } => {
                let (ep, fd) = (self.fd(ep), self.fd(fd));
                let op = [EpollOp::Add, EpollOp::Modify, EpollOp::Delete][usize::from(op % 3)];
                let _ = self.d.with_stack(|s| s.epoll_ctl(ep, op, fd, EpollEvent { events, data: fd.0 as u64 }));
            }
            Call::EpollWait { ep, max } => {
                let ep = self.fd(ep);
                let mut out = vec![EpollEvent { events: 0, data: 0 }; usize::from(max % 16)];
                if let Ok(n) = self.d.with_stack(|s| s.epoll_wait(ep, &mut out)) {
                    assert!(n <= out.len(), "invariant: epoll_wait returned {n} events for {} slots", out.len());
                }
            }
            Call::Poll { ref fds } => {
                let mut p: Vec<PollFd> = fds
                    .iter()
                    .take(8)
                    .map(|&(f, ev)| PollFd { fd: self.fd(f), events: Readiness(ev), revents: Readiness(0) })
                    .collect();
                let n = self.d.with_stack(|s| s.poll_fds(&mut p));
                assert!(n <= p.len());
            }
            Call::TakeEvents => {
                let mut out = Vec::new();
                self.d.with_stack(|s| s.take_events(&mut out));
            }
        }
    }

    /// `recv`, checking TCP bytes against the peer's pattern.
    fn recv(&mut self, fd: Fd, len: usize, flags: MsgFlags) {
        let mut buf = vec![0u8; len];
        let Ok(meta) = self.d.with_stack(|s| s.recvfrom(fd, &mut buf, flags)) else { return };
        if self.d.stack.socket_type(fd) != Ok(1) {
            if !flags.contains(MsgFlags::TRUNC) {
                assert!(meta.len <= len, "invariant: recvfrom filled {} bytes of a {len}-byte buffer", meta.len);
            }
            return;
        }
        assert!(meta.len <= len, "invariant: TCP recv returned {} bytes for a {len}-byte buffer", meta.len);
        let stream = self.streams.get(&fd).copied().unwrap_or_default();
        let tuple = (self.d.stack.getsockname(fd).ok().and_then(v4), self.d.stack.getpeername(fd).ok().and_then(v4));
        if let (Some(local), Some(remote)) = tuple {
            let t = self.tcbs.iter().find(|t| t.local == local && t.remote == remote);
            if let Some(Tcb { isn: Some(isn), tainted: false, .. }) = t {
                let base = isn.wrapping_add(1).wrapping_add(stream.rx_off as u32);
                for (j, &b) in buf[..meta.len].iter().enumerate() {
                    let want = peer_byte(base.wrapping_add(j as u32));
                    if b != want {
                        panic!(
                            "invariant: recv on {fd} ({remote}->{local}) returned {b:#04x} at stream offset {}, \
                             but the peer sent {want:#04x} at sequence number {}",
                            stream.rx_off + j as u64,
                            base.wrapping_add(j as u32)
                        );
                    }
                }
            }
        }
        if !flags.contains(MsgFlags::PEEK) {
            if let Some(st) = self.streams.get_mut(&fd) {
                st.rx_off += meta.len as u64;
            }
        }
    }

    /// Closes every descriptor, stops answering ARP, and sleeps from deadline to deadline for up to a day of
    /// virtual time: by then every connection must be gone (retransmissions, probes and timeouts all end) and
    /// no timer may be left. A connection or timer that outlives this leaks.
    pub fn finish(&mut self) {
        self.answer_arp = false;
        for fd in self.fds.clone() {
            if let Err(e) = self.d.with_stack(|s| s.close(fd)) {
                panic!("invariant: close({fd}) of an open descriptor failed: {e:?}");
            }
            self.fds.retain(|&f| f != fd);
        }
        self.epolls.clear();
        self.settle();
        self.check();
        let deadline = self.d.now + Duration::from_secs(24 * 3600);
        let mut answers = Vec::new();
        for _ in 0..20_000 {
            if !self.d.next_timer(deadline) {
                break;
            }
            for s in self.d.take_sent() {
                self.absorb(&s, &mut answers);
            }
        }
        self.check();
        let rows = self.d.stack.sockets_snapshot(self.d.now);
        if !rows.is_empty() {
            let lines: Vec<String> = rows.iter().map(|r| r.to_ss_line()).collect();
            panic!("invariant: a day after every descriptor was closed the stack still holds:\n{}", lines.join("\n"));
        }
        if let Some(t) = self.d.stack.poll_at() {
            panic!("invariant: with every socket gone a timer is still set, at {t} (now {})", self.d.now);
        }
    }

    /// The invariants of the whole stack (see the module documentation).
    pub fn check(&mut self) {
        self.d.check_counters();
        let cfg = net::config();
        let now = self.d.now;
        let stack = &mut self.d.stack;
        let count = stack.socket_count();
        assert!(count <= cfg.max_sockets, "invariant: {count} sockets open, over max_sockets {}", cfg.max_sockets);
        for &fd in &self.fds {
            if let Err(e) = stack.readiness(fd) {
                panic!("invariant: descriptor {fd}, never closed, answers {e:?}");
            }
            let _ = (stack.getsockname(fd), stack.getpeername(fd), stack.linger(fd), stack.socket_type(fd));
            for opt in SOCKOPTS {
                if opt != SockOpt::Error {
                    let _ = stack.getsockopt(fd, opt);
                }
            }
        }
        assert_eq!(
            count,
            self.fds.len(),
            "invariant: the stack counts {count} sockets, the harness holds {:?}",
            self.fds
        );

        let rows = stack.sockets_snapshot(now);
        let (mut time_wait, mut syn_recv, mut backlogs) = (0usize, 0usize, 0usize);
        let rto_cap = cfg.tcp.max_rto + Duration::from_secs(1);
        for r in &rows {
            let _ = r.to_ss_line();
            match (r.proto, r.state) {
                ("tcp", "LISTEN") => {
                    // A backlog can shrink under half-open entries already there: bound by the largest one.
                    backlogs += cfg.tcp.somaxconn;
                    // listen() may shrink the backlog under connections already queued: bound by the largest.
                    assert!(r.recv_q <= cfg.tcp.somaxconn + 1, "invariant: accept queue over somaxconn: {r:?}");
                    assert!(r.syn_queue.unwrap_or(0) <= cfg.tcp.somaxconn, "invariant: SYN queue too long: {r:?}");
                }
                ("tcp", "TIME-WAIT") => time_wait += 1,
                // Half-open entries of listeners (a connection in SYN-RECEIVED after a simultaneous open has
                // a congestion window and counts with the connections).
                ("tcp", "SYN-RECV") if r.tcp.is_none() => {
                    syn_recv += 1;
                    if let Some((_, left)) = r.timer {
                        assert!(left <= rto_cap, "invariant: SYN-RECV timer {left:?} over max_rto: {r:?}");
                    }
                }
                ("tcp", _) => {
                    // SO_RCVBUF/SO_SNDBUF allow twice rmem_max/wmem_max; autotuning grows to its own maximum.
                    let rcv_max = (2 * cfg.tcp.rmem_max).max(cfg.tcp.rcvbuf_autotune_max);
                    let snd_max = (2 * cfg.tcp.wmem_max).max(cfg.tcp.sndbuf_autotune_max);
                    assert!(r.recv_q <= rcv_max, "invariant: receive queue over the buffer: {r:?}");
                    assert!(r.send_q <= snd_max, "invariant: send queue over the buffer: {r:?}");
                    if let Some(("on" | "persist", left)) = r.timer {
                        assert!(left <= rto_cap, "invariant: retransmission timer {left:?} over max_rto: {r:?}");
                    }
                }
                ("udp", _) => {
                    let slack = 65_535 + 256;
                    assert!(r.recv_q <= 2 * cfg.udp.rmem_max + slack, "invariant: UDP receive queue: {r:?}");
                    assert!(r.send_q <= 2 * cfg.udp.wmem_max + slack, "invariant: UDP send queue: {r:?}");
                }
                _ => panic!("invariant: unknown snapshot row {r:?}"),
            }
        }
        assert!(time_wait <= cfg.tcp.max_time_wait, "invariant: {time_wait} TIME-WAIT entries");
        assert!(syn_recv <= backlogs, "invariant: {syn_recv} SYN-RECV entries for listeners with backlogs {backlogs}");
        let _ = now.as_nanos();
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.d.now
    }
}

fn msg_flags(b: u8) -> MsgFlags {
    let mut f = MsgFlags::NONE;
    for (bit, flag) in [
        (1, MsgFlags::PEEK),
        (2, MsgFlags::TRUNC),
        (4, MsgFlags::DONTWAIT),
        (8, MsgFlags::WAITALL),
        (16, MsgFlags::NOSIGNAL),
    ] {
        if b & bit != 0 {
            f = f | flag;
        }
    }
    f
}
