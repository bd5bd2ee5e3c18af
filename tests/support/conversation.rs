//! A conversation with the stack's TCP, one segment at a time, in the style of packetdrill scripts and
//! smoltcp's `send!`/`recv!` tests: the test plays the peer at 198.18.0.1, sends segments it describes with
//! [`Seg`], and pops the segments the stack sent in reply ([`Out`]), asserting their fields.
//!
//! - Sequence numbers are relative, as tcpdump prints them: the peer's to its ISN ([`Conversation::peer_isn`]),
//!   the stack's to the ISN it chose, which the harness learns from the stack's SYN or SYN-ACK (per
//!   four-tuple). Before the stack has sent a SYN on a four-tuple its numbers are shown raw.
//! - Once both SYNs of a four-tuple carried timestamps, every segment the peer sends gets a timestamp option
//!   from the peer's clock, echoing the stack's latest TSval, unless the segment says otherwise.
//! - The clock is virtual: it moves only in [`Conversation::advance`], which polls the stack at every deadline
//!   on the way and collects what it sends, stamped with the time it was sent.
//! - Everything that happens is printed (`>` the peer sent, `<` the stack sent), so a failing test shows the
//!   whole exchange.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ustack::tcp::SeqNum;
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::ethernet::{self, ethertype, MacAddr};
use ustack::wire::ip_proto;
use ustack::wire::tcp::{TcpHeader, TcpOptions};
use ustack::{Domain, Duration, Errno, Fd, Instant, MsgFlags, SockOpt, SockType, Stack, StackConfig};

use crate::frames::{arp_request, ipv4_frame, parse_arp, parse_ipv4};

pub use ustack::wire::tcp::TcpFlags;

/// The stack under test.
pub const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The fake peer the test plays.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
pub const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// The peer's port unless a segment says otherwise.
pub const PEER_PORT: u16 = 40000;
/// The peer's initial sequence number unless the test sets [`Conversation::peer_isn`].
pub const PEER_ISN: u32 = 0x1234_5678;
/// Where the peer's timestamp clock starts (it ticks once a millisecond).
const PEER_TS_BASE: u32 = 500_000;

pub const FIN: TcpFlags = TcpFlags::FIN;
pub const SYN: TcpFlags = TcpFlags::SYN;
pub const RST: TcpFlags = TcpFlags::RST;
pub const PSH: TcpFlags = TcpFlags::PSH;
pub const ACK: TcpFlags = TcpFlags::ACK;

/// The bytes the peer sends at relative sequence numbers `seq..seq + len` when a segment is filled with
/// [`Seg::fill`] (never a run of equal bytes, so a misplaced byte shows).
pub fn pattern(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize + i).wrapping_mul(7).wrapping_add((seq as usize + i) >> 8) as u8).collect()
}

/// How the timestamp option of a peer segment is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ts {
    /// Added when the four-tuple negotiated timestamps: TSval from the peer's clock, TSecr the stack's latest.
    Auto,
    /// Always added, from the peer's clock and the stack's latest TSval (0 when none): for SYNs.
    Clock,
    /// Exactly these `(TSval, TSecr)`.
    Value(u32, u32),
    /// Never.
    Off,
}

/// A segment the peer sends, in the peer's relative sequence space (`seq`) and the stack's (`ack`, SACK).
#[derive(Debug, Clone)]
pub struct Seg {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    /// `None`: the conversation's [`Conversation::peer_window`].
    pub window: Option<u16>,
    /// MSS, window scale, SACK-permitted and SACK blocks (relative to the stack's ISN); timestamps come from
    /// `ts`.
    pub options: TcpOptions,
    pub ts: Ts,
    pub payload: Vec<u8>,
    /// `None`: [`PEER_PORT`] (or the conversation's current peer port).
    pub from_port: Option<u16>,
    /// `None`: the conversation's current local port.
    pub to_port: Option<u16>,
}

/// A segment with `flags` at relative sequence number 0, acknowledging 0; refine it with the builder methods.
pub fn seg(flags: TcpFlags) -> Seg {
    Seg {
        flags,
        seq: 0,
        ack: 0,
        window: None,
        options: TcpOptions::default(),
        ts: Ts::Auto,
        payload: Vec::new(),
        from_port: None,
        to_port: None,
    }
}

/// The SYN a Linux peer sends: `[S] seq 0 win 64240 <mss 1460,sackOK,TS val .. ecr 0,nop,wscale 7>`.
pub fn linux_syn() -> Seg {
    seg(SYN).win(64240).mss(1460).sack_perm().ts().wscale(7)
}

impl Seg {
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }
    pub fn win(mut self, window: u16) -> Self {
        self.window = Some(window);
        self
    }
    pub fn mss(mut self, mss: u16) -> Self {
        self.options.mss = Some(mss);
        self
    }
    pub fn wscale(mut self, shift: u8) -> Self {
        self.options.window_scale = Some(shift);
        self
    }
    pub fn sack_perm(mut self) -> Self {
        self.options.sack_permitted = true;
        self
    }
    /// A timestamp option from the peer's clock, whether or not the four-tuple negotiated them.
    pub fn ts(mut self) -> Self {
        self.ts = Ts::Clock;
        self
    }
    /// A timestamp option with exactly these values.
    pub fn ts_val(mut self, tsval: u32, tsecr: u32) -> Self {
        self.ts = Ts::Value(tsval, tsecr);
        self
    }
    /// No timestamp option, even on a connection that negotiated them.
    pub fn no_ts(mut self) -> Self {
        self.ts = Ts::Off;
        self
    }
    /// SACK blocks, relative to the stack's ISN.
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Self {
        let blocks: Vec<(SeqNum, SeqNum)> = blocks.iter().map(|&(l, r)| (SeqNum(l), SeqNum(r))).collect();
        self.options.set_sack_blocks(&blocks);
        self
    }
    /// These payload bytes.
    pub fn data(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }
    /// `len` payload bytes of [`pattern`] for this segment's sequence numbers (set `seq` first).
    pub fn fill(mut self, len: usize) -> Self {
        self.payload = pattern(self.seq, len);
        self
    }
    /// From this peer port instead of the conversation's.
    pub fn from(mut self, port: u16) -> Self {
        self.from_port = Some(port);
        self
    }
    /// To this local port instead of the conversation's.
    pub fn to(mut self, port: u16) -> Self {
        self.to_port = Some(port);
        self
    }
}

/// A segment the stack sent, with its numbers made relative.
#[derive(Debug, Clone)]
pub struct Out {
    /// When it was sent, from the start of the conversation.
    pub at: Duration,
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: TcpFlags,
    /// Relative to the stack's ISN (raw when the stack has not sent a SYN on this four-tuple).
    pub seq: u32,
    /// Relative to the peer's ISN.
    pub ack: u32,
    pub raw_seq: u32,
    pub raw_ack: u32,
    /// As carried, unscaled.
    pub window: u16,
    pub options: TcpOptions,
    /// The option bytes exactly as sent.
    pub raw_options: Vec<u8>,
    /// SACK blocks relative to the peer's ISN.
    pub sack: Vec<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl Out {
    pub fn tsval(&self) -> Option<u32> {
        self.options.timestamps.map(|t| t.0)
    }
    pub fn tsecr(&self) -> Option<u32> {
        self.options.timestamps.map(|t| t.1)
    }
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

fn fmt_options(f: &mut fmt::Formatter, o: &TcpOptions, sack: &[(u32, u32)]) -> fmt::Result {
    let mut parts = Vec::new();
    if let Some(mss) = o.mss {
        parts.push(format!("mss {mss}"));
    }
    if o.sack_permitted {
        parts.push("sackOK".to_string());
    }
    if let Some((val, ecr)) = o.timestamps {
        parts.push(format!("TS val {val} ecr {ecr}"));
    }
    if let Some(shift) = o.window_scale {
        parts.push(format!("wscale {shift}"));
    }
    if !sack.is_empty() {
        let blocks: Vec<String> = sack.iter().map(|(l, r)| format!("{{{l}:{r}}}")).collect();
        parts.push(format!("sack {}", blocks.join("")));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        write!(f, " <{}>", parts.join(","))
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} > {} [{}] seq {}", self.src_port, self.dst_port, self.flags, self.seq)?;
        if self.flags.contains(ACK) {
            write!(f, " ack {}", self.ack)?;
        }
        write!(f, " win {}", self.window)?;
        fmt_options(f, &self.options, &self.sack)?;
        write!(f, " len {}", self.payload.len())
    }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "[{}] seq {}", self.flags, self.seq)?;
        if self.flags.contains(ACK) {
            write!(f, " ack {}", self.ack)?;
        }
        if let Some(w) = self.window {
            write!(f, " win {w}")?;
        }
        let sack: Vec<(u32, u32)> = self.options.sack_blocks().iter().map(|(l, r)| (l.0, r.0)).collect();
        fmt_options(f, &self.options, &sack)?;
        write!(f, " len {}", self.payload.len())
    }
}

/// What the harness knows about one four-tuple (our port, peer port).
#[derive(Debug, Default, Clone, Copy)]
struct Tuple {
    /// The stack's ISN.
    isn: Option<u32>,
    /// The stack's latest TSval.
    tsval: Option<u32>,
    /// The last SYN each side sent carried timestamps.
    peer_syn_ts: bool,
    stack_syn_ts: bool,
}

/// The stack, the fake peer and the virtual clock.
pub struct Conversation {
    pub stack: Stack,
    pub now: Instant,
    start: Instant,
    /// The peer's ISN: the origin of the peer's relative sequence numbers.
    pub peer_isn: u32,
    /// The peer's port for segments that do not name one.
    pub peer_port: u16,
    /// Our port for segments that do not name one: set by [`Conversation::listen`], or learned from the
    /// stack's SYN after a `connect()`.
    pub port: u16,
    /// The window of peer segments that do not give one.
    pub peer_window: u16,
    tuples: HashMap<(u16, u16), Tuple>,
    inbox: VecDeque<Out>,
}

impl Default for Conversation {
    fn default() -> Self {
        Self::new()
    }
}

impl Conversation {
    /// A stack at 198.18.0.2/24 with Linux's defaults, and the peer at 198.18.0.1 already in its ARP cache.
    pub fn new() -> Conversation {
        Self::with(|_| {})
    }

    /// Like [`Conversation::new`], with the configuration adjusted first (TCP tunables are in `config.tcp`).
    pub fn with(tweak: impl FnOnce(&mut StackConfig)) -> Conversation {
        let mut config = StackConfig::new(US_MAC, "198.18.0.2/24".parse().expect("a CIDR"));
        // Keep the peer's ARP entry fresh for the longest test (TIME-WAIT, keepalive); requests are answered
        // anyway.
        config.arp.reachable_time = Duration::from_secs(365 * 24 * 3600);
        tweak(&mut config);
        let start = Instant::from_secs(1);
        let mut c = Conversation {
            stack: Stack::new(config),
            now: start,
            start,
            peer_isn: PEER_ISN,
            peer_port: PEER_PORT,
            port: 80,
            peer_window: 65535,
            tuples: HashMap::new(),
            inbox: VecDeque::new(),
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        c.stack.receive(c.now, &arp_request(PEER_MAC, PEER, US), &mut out);
        c
    }

    /// Time since the conversation started.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_since(self.start)
    }

    /// The peer's timestamp clock now.
    pub fn peer_clock(&self) -> u32 {
        PEER_TS_BASE.wrapping_add(self.elapsed().as_millis() as u32)
    }

    /// The latest TSval the stack sent on the current four-tuple.
    pub fn stack_tsval(&self) -> u32 {
        self.tuples.get(&(self.port, self.peer_port)).and_then(|t| t.tsval).unwrap_or(0)
    }

    /// The stack's ISN on the current four-tuple, once it sent a SYN.
    pub fn stack_isn(&self) -> Option<u32> {
        self.tuples.get(&(self.port, self.peer_port)).and_then(|t| t.isn)
    }

    fn log(&self, dir: &str, text: &dyn fmt::Display) {
        let t = self.elapsed();
        eprintln!("{:>4}.{:03}s {dir} {text}", t.as_secs(), t.subsec_millis());
    }

    /// A remark in the transcript.
    pub fn note(&self, text: &str) {
        self.log("#", &text);
    }

    // -------------------------------------------------------------------------------------------------
    // The wire.

    /// The peer sends `s`; whatever the stack sends in reply is collected.
    pub fn send(&mut self, s: Seg) {
        let frame = self.frame(s);
        let mut out = Vec::new();
        self.stack.receive(self.now, &frame, &mut out);
        self.stack.poll(self.now, &mut out);
        self.collect(out);
    }

    /// The peer's segments arrive together, as one device read hands them over (`Stack::receive_batch`).
    pub fn send_batch(&mut self, segs: Vec<Seg>) {
        let frames: Vec<Vec<u8>> = segs.into_iter().map(|s| self.frame(s)).collect();
        let mut out = Vec::new();
        self.stack.receive_batch(self.now, frames.iter().map(Vec::as_slice), &mut out);
        self.stack.poll(self.now, &mut out);
        self.collect(out);
    }

    /// The frame carrying `s` from the peer (logged as sent).
    fn frame(&mut self, s: Seg) -> Vec<u8> {
        let our_port = s.to_port.unwrap_or(self.port);
        let peer_port = s.from_port.unwrap_or(self.peer_port);
        let key = (our_port, peer_port);
        let peer_clock = self.peer_clock();
        let tuple = self.tuples.entry(key).or_default();
        // A SYN that says how it treats timestamps opens a connection (or answers the stack's SYN); a SYN with
        // `Ts::Auto` is one sent into an existing connection, which changes nothing.
        if s.flags.contains(SYN) && s.ts != Ts::Auto {
            tuple.peer_syn_ts = s.ts != Ts::Off;
            if !s.flags.contains(ACK) {
                tuple.stack_syn_ts = false;
            }
        }
        let echo = tuple.tsval.unwrap_or(0);
        let isn = tuple.isn.unwrap_or(0);
        let mut options = s.options;
        options.timestamps = match s.ts {
            Ts::Auto if tuple.peer_syn_ts && tuple.stack_syn_ts => Some((peer_clock, echo)),
            Ts::Auto | Ts::Off => None,
            // A SYN echoes nothing (RFC 7323 section 3.2: TSecr is zero when ACK is off).
            Ts::Clock if !s.flags.contains(ACK) => Some((peer_clock, 0)),
            Ts::Clock => Some((peer_clock, echo)),
            Ts::Value(val, ecr) => Some((val, ecr)),
        };
        // SACK blocks are in the stack's sequence space.
        let blocks: Vec<(SeqNum, SeqNum)> = options
            .sack_blocks()
            .iter()
            .map(|(l, r)| (SeqNum(l.0.wrapping_add(isn)), SeqNum(r.0.wrapping_add(isn))))
            .collect();
        options.set_sack_blocks(&blocks);
        let header = TcpHeader {
            src_port: peer_port,
            dst_port: our_port,
            seq: SeqNum(self.peer_isn.wrapping_add(s.seq)),
            ack: if s.flags.contains(ACK) { SeqNum(isn.wrapping_add(s.ack)) } else { SeqNum(0) },
            flags: s.flags,
            window: s.window.unwrap_or(self.peer_window),
            urgent: 0,
            options,
        };
        let mut bytes = vec![0u8; header.header_len() + s.payload.len()];
        bytes[header.header_len()..].copy_from_slice(&s.payload);
        header.emit_v4(&mut bytes, PEER, US);
        let frame = ipv4_frame((PEER_MAC, US_MAC), PEER, US, ip_proto::TCP, 1, &bytes);
        let mut shown = s.clone();
        shown.options.timestamps = options.timestamps;
        self.log(">", &format_args!("{peer_port} > {our_port} {shown}"));
        frame
    }

    /// Polls the stack now (output of socket calls goes out on the next poll) and collects what it sends.
    pub fn pump(&mut self) {
        let mut out = Vec::new();
        self.stack.poll(self.now, &mut out);
        self.collect(out);
    }

    /// Moves the clock `ms` milliseconds on, polling at every deadline on the way.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        self.pump();
        let mut rounds = 0u32;
        while let Some(at) = self.stack.poll_at() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.pump();
            rounds += 1;
            assert!(rounds < 1_000_000, "the stack keeps asking for a poll at {at:?}: a timer that never fires");
        }
        self.now = target;
        self.pump();
    }

    fn collect(&mut self, frames: Vec<Vec<u8>>) {
        let mut replies = Vec::new();
        for frame in frames {
            if let Some(arp) = parse_arp(&frame) {
                if arp.op == ArpOp::Request && arp.target_ip == PEER {
                    replies.push(arp_reply());
                }
                continue;
            }
            let Some((ip, payload)) = parse_ipv4(&frame) else { continue };
            if ip.protocol != ip_proto::TCP {
                self.note(&format!("(the stack sent an IP packet of protocol {})", ip.protocol));
                continue;
            }
            let (h, data) = TcpHeader::parse_v4(&payload, ip.src, ip.dst).expect("the stack sends valid TCP");
            let header_len = usize::from(payload[12] >> 4) * 4;
            let raw_options = payload[20..header_len].to_vec();
            let out = self.relative(h, raw_options, data.to_vec());
            self.log("<", &out);
            self.inbox.push_back(out);
        }
        if !replies.is_empty() {
            let mut out = Vec::new();
            for r in replies {
                self.stack.receive(self.now, &r, &mut out);
            }
            self.collect(out);
        }
    }

    fn relative(&mut self, h: TcpHeader, raw_options: Vec<u8>, payload: Vec<u8>) -> Out {
        let key = (h.src_port, h.dst_port);
        let tuple = self.tuples.entry(key).or_default();
        if h.flags.contains(SYN) {
            tuple.isn = Some(h.seq.0);
            tuple.stack_syn_ts = h.options.timestamps.is_some();
            if !h.flags.contains(ACK) {
                // Our active open: from now on the conversation is about this four-tuple.
                tuple.peer_syn_ts = false;
                self.port = h.src_port;
                self.peer_port = h.dst_port;
            }
        }
        if let Some((val, _)) = h.options.timestamps {
            tuple.tsval = Some(val);
        }
        let isn = tuple.isn.unwrap_or(0);
        let sack = h
            .options
            .sack_blocks()
            .iter()
            .map(|(l, r)| (l.0.wrapping_sub(self.peer_isn), r.0.wrapping_sub(self.peer_isn)))
            .collect();
        Out {
            at: self.elapsed(),
            src_port: h.src_port,
            dst_port: h.dst_port,
            flags: h.flags,
            seq: h.seq.0.wrapping_sub(isn),
            ack: h.ack.0.wrapping_sub(self.peer_isn),
            raw_seq: h.seq.0,
            raw_ack: h.ack.0,
            window: h.window,
            options: h.options,
            raw_options,
            sack,
            payload,
        }
    }

    // -------------------------------------------------------------------------------------------------
    // Expectations.

    /// The next segment the stack sent (polling first); panics if there is none.
    pub fn next_seg(&mut self) -> Out {
        self.pump();
        match self.inbox.pop_front() {
            Some(out) => out,
            None => panic!("at {:?}: expected a segment from the stack, but it sent nothing", self.elapsed()),
        }
    }

    /// The next segment the stack sent (polling first), if any.
    pub fn try_next(&mut self) -> Option<Out> {
        self.pump();
        self.inbox.pop_front()
    }

    /// The next segment, checked by `check` (which asserts what it cares about).
    pub fn expect(&mut self, check: impl FnOnce(&Out)) -> Out {
        let out = self.next_seg();
        check(&out);
        out
    }

    /// The next segment, which must have exactly `flags`, sequence number `seq` and (when ACK is among the
    /// flags) acknowledgment number `ack`, all relative.
    pub fn expect_seg(&mut self, flags: TcpFlags, seq: u32, ack: u32) -> Out {
        let out = self.next_seg();
        let ack_ok = !flags.contains(ACK) || out.ack == ack;
        if out.flags != flags || out.seq != seq || !ack_ok {
            let mut want = format!("[{flags}] seq {seq}");
            if flags.contains(ACK) {
                want += &format!(" ack {ack}");
            }
            panic!("at {:?}: expected {want}\n                      got {out}", out.at);
        }
        out
    }

    /// Like [`Conversation::expect_seg`], and the segment carries `len` bytes of data.
    pub fn expect_data(&mut self, flags: TcpFlags, seq: u32, ack: u32, len: usize) -> Out {
        let out = self.expect_seg(flags, seq, ack);
        assert_eq!(out.payload.len(), len, "at {:?}: payload length of {out}", out.at);
        out
    }

    /// The stack has sent nothing that was not expected yet (polling first).
    pub fn expect_nothing(&mut self) {
        self.pump();
        if !self.inbox.is_empty() {
            let list: Vec<String> = self.inbox.iter().map(|o| format!("  at {:?}: {o}", o.at)).collect();
            panic!("at {:?}: expected nothing from the stack, but it sent:\n{}", self.elapsed(), list.join("\n"));
        }
    }

    /// Forgets what the stack sent and was not expected yet.
    pub fn discard(&mut self) {
        self.pump();
        self.inbox.clear();
    }

    // -------------------------------------------------------------------------------------------------
    // Socket calls, with the checks every test would repeat.

    /// A TCP socket.
    pub fn socket(&mut self) -> Fd {
        self.stack.socket(Domain::Inet, SockType::Stream).expect("socket()")
    }

    /// A listener on 0.0.0.0:`port`; `options` are set before `listen()` (accepted connections inherit them).
    pub fn listen_with(&mut self, port: u16, backlog: i32, options: &[(SockOpt, i32)]) -> Fd {
        let fd = self.socket();
        for &(opt, value) in options {
            self.stack.setsockopt(fd, opt, value).unwrap_or_else(|e| panic!("setsockopt({}): {e:?}", opt.name()));
        }
        self.stack.bind(fd, SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))).expect("bind()");
        self.stack.listen(fd, backlog).expect("listen()");
        self.port = port;
        fd
    }

    /// A listener on 0.0.0.0:`port`.
    pub fn listen(&mut self, port: u16, backlog: i32) -> Fd {
        self.listen_with(port, backlog, &[])
    }

    /// `accept()`, which must succeed, checking the peer's address.
    pub fn accept(&mut self, listener: Fd) -> Fd {
        let (fd, from) = self.stack.accept(listener).unwrap_or_else(|e| panic!("accept(): {e:?}"));
        assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(PEER, self.peer_port)), "accept() names the peer");
        fd
    }

    /// A non-blocking `connect()` to the peer's `port`: `EINPROGRESS`, and the SYN goes out on the next poll.
    pub fn connect_with(&mut self, port: u16, options: &[(SockOpt, i32)]) -> Fd {
        let fd = self.socket();
        for &(opt, value) in options {
            self.stack.setsockopt(fd, opt, value).unwrap_or_else(|e| panic!("setsockopt({}): {e:?}", opt.name()));
        }
        let to = SocketAddr::V4(SocketAddrV4::new(PEER, port));
        assert_eq!(self.stack.connect(fd, Some(to)), Err(Errno::EINPROGRESS), "a non-blocking connect()");
        fd
    }

    /// `connect()` to the peer's `port`.
    pub fn connect(&mut self, port: u16) -> Fd {
        self.connect_with(port, &[])
    }

    /// `send()`, which must succeed; returns the bytes taken.
    pub fn write(&mut self, fd: Fd, data: &[u8]) -> usize {
        self.stack.send(fd, data, MsgFlags::NONE).unwrap_or_else(|e| panic!("send(): {e:?}"))
    }

    /// `recv()` of everything available: `Ok` with the bytes (empty at end of file), or the error (`EAGAIN`
    /// when nothing is there yet).
    pub fn read(&mut self, fd: Fd) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; 1 << 20];
        let n = self.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `recv()` of at most `max` bytes.
    pub fn read_some(&mut self, fd: Fd, max: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; max];
        let n = self.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `getsockopt(SO_ERROR)`.
    pub fn so_error(&mut self, fd: Fd) -> i32 {
        self.stack.getsockopt(fd, SockOpt::Error).expect("getsockopt(SO_ERROR)")
    }

    /// A counter by its Linux name (`TcpExtListenDrops`, ...).
    pub fn counter(&self, name: &str) -> u64 {
        self.stack.counters().get(name).unwrap_or_else(|| panic!("no counter {name}"))
    }

    // -------------------------------------------------------------------------------------------------
    // Whole handshakes, for tests about what comes after.

    /// Listens on port 80, then the three-way handshake from the peer with `syn` (whose options decide what
    /// is negotiated); returns the listener and the accepted connection.
    pub fn open_passive(&mut self, syn: Seg) -> (Fd, Fd) {
        let listener = self.listen(80, 128);
        self.open_passive_on(listener, syn)
    }

    /// The three-way handshake from the peer with `syn` to an existing listener; returns both descriptors.
    pub fn open_passive_on(&mut self, listener: Fd, syn: Seg) -> (Fd, Fd) {
        self.send(syn.seq(0));
        self.expect_seg(SYN | ACK, 0, 1);
        self.send(seg(ACK).seq(1).ack(1));
        self.expect_nothing();
        let fd = self.accept(listener);
        (listener, fd)
    }

    /// `connect()` to the peer's port 8080 and the handshake, the peer answering with `syn_ack` (its `seq`
    /// and `ack` are filled in); returns the connected socket.
    pub fn open_active(&mut self, syn_ack: Seg) -> Fd {
        let fd = self.connect(8080);
        self.expect_seg(SYN, 0, 0);
        self.send(syn_ack.seq(0).ack(1));
        self.expect_seg(ACK, 1, 1);
        assert_eq!(self.stack.connect(fd, Some(SocketAddr::V4(SocketAddrV4::new(PEER, 8080)))), Ok(()));
        fd
    }
}

/// The peer's answer to the stack's ARP request.
fn arp_reply() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    ethernet::write_header(&mut f, US_MAC, PEER_MAC, ethertype::ARP);
    ArpPacket { op: ArpOp::Reply, sender_mac: PEER_MAC, sender_ip: PEER, target_mac: US_MAC, target_ip: US }
        .emit(&mut f[14..]);
    f
}
