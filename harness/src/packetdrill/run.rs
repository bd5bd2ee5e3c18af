//! The interpreter: runs a parsed script against a system under test ([`Sut`]): ustack on a virtual clock or
//! the Linux kernel on the wall clock.

use super::ast::*;
use super::config::{Config, GATEWAY_MAC};
pub use super::sut::START;
use super::sut::{OptVal, Sut};
use super::symbols;
use super::trace;
use crate::frames;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use ustack::wire::arp::ArpOp;
use ustack::wire::checksum;
use ustack::wire::ipv4::Ipv4Header;
use ustack::{CongestionAlgorithm, Errno, Fd, Instant};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// Why a script failed: the line, what the script expected and what the stack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: usize,
    /// The script's text of that line.
    pub statement: String,
    pub reason: String,
    /// What the stack did, when there is something to show (the packet it sent, the call's result).
    pub actual: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "line {}: {}", self.line, self.reason)?;
        writeln!(f, "  script: {}", self.statement)?;
        if let Some(a) = &self.actual {
            writeln!(f, "  actual: {a}")?;
        }
        Ok(())
    }
}

/// One outbound packet the stack sent and the script has not consumed yet.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    ip: Ipv4Header,
    payload: Vec<u8>,
}

impl Sent {
    fn ports(&self) -> Option<(u16, u16)> {
        if (self.ip.protocol == TCP || self.ip.protocol == UDP) && self.payload.len() >= 4 {
            let p = &self.payload;
            Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
        } else {
            None
        }
    }
}

/// A TCP segment as read from the wire.
#[derive(Debug, Clone)]
struct Seg {
    at: Instant,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_seg(at: Instant, p: &[u8]) -> Option<Seg> {
    if p.len() < 20 {
        return None;
    }
    let hl = usize::from(p[12] >> 4) * 4;
    if hl < 20 || hl > p.len() {
        return None;
    }
    Some(Seg {
        at,
        src_port: be16(p, 0),
        dst_port: be16(p, 2),
        seq: be32(p, 4),
        ack: be32(p, 8),
        flags: p[13],
        window: be16(p, 14),
        urgent: be16(p, 18),
        options: p[20..hl].to_vec(),
        payload: p[hl..].to_vec(),
    })
}

/// Where a connection the script knows about stands (packetdrill's `socket->state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `socket()` was called.
    Init,
    /// `listen()` was called: the next inbound packet opens a new connection.
    Listening,
    /// Opened by an inbound packet.
    Passive,
    /// `connect()` was called; the SYN has not been seen yet.
    Active,
    /// The SYN of a `connect()` was seen.
    ActiveSynSent,
}

/// A connection (or socket) of the script, with the mapping between script and live sequence spaces.
#[derive(Debug, Clone)]
struct Conn {
    proto: u8,
    phase: Phase,
    local_port: Option<u16>,
    remote_port: Option<u16>,
    /// The stack's ISN, learnt from its SYN or SYN-ACK.
    live_isn: Option<u32>,
    /// The ISN the script gave the stack (the sequence number of the expected SYN or SYN-ACK).
    script_isn: u32,
    /// Script TS val -> live TS val of the stack's segments.
    ts_map: HashMap<u32, u32>,
    /// The first (script, live) TS val pair.
    first_ts: Option<(u32, u32)>,
    fd: Option<Fd>,
}

impl Conn {
    fn new(proto: u8, phase: Phase) -> Conn {
        Conn {
            proto,
            phase,
            local_port: None,
            remote_port: None,
            live_isn: None,
            script_isn: 0,
            ts_map: HashMap::new(),
            first_ts: None,
            fd: None,
        }
    }

    /// Live minus script, for the stack's sequence numbers.
    fn local_offset(&self) -> u32 {
        self.live_isn.map_or(0, |l| l.wrapping_sub(self.script_isn))
    }
}

/// An evaluated argument.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Any,
    Int(i64),
    Str(String),
    Ip(Ipv4Addr),
    List(Vec<Value>),
    Struct(Vec<(String, Value)>),
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::List(v) if v.len() == 1 => v[0].int(),
            _ => None,
        }
    }

    fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn eval(e: &Expr) -> Result<Value, String> {
    Ok(match e {
        Expr::Ellipsis => Value::Any,
        Expr::Int(n) => Value::Int(*n),
        Expr::Str(s) => Value::Str(s.clone()),
        Expr::Word(w) => Value::Int(symbols::lookup(w).ok_or_else(|| format!("unknown symbol {w}"))?),
        Expr::Or(a, b) => match (eval(a)?, eval(b)?) {
            (Value::Int(x), Value::Int(y)) => Value::Int(x | y),
            _ => return Err(format!("cannot OR {a} and {b}")),
        },
        Expr::List(items) => Value::List(items.iter().map(eval).collect::<Result<_, _>>()?),
        Expr::Braces(items) => {
            if !items.is_empty() && items.iter().all(|i| matches!(i, Expr::Assign(..))) {
                let mut fields = Vec::new();
                for i in items {
                    if let Expr::Assign(k, v) = i {
                        let key = match &**k {
                            Expr::Word(w) => w.clone(),
                            Expr::Call(w, _) => w.clone(),
                            other => other.to_string(),
                        };
                        fields.push((key, eval(v)?));
                    }
                }
                Value::Struct(fields)
            } else {
                Value::List(items.iter().map(eval).collect::<Result<_, _>>()?)
            }
        }
        Expr::Call(name, args) => match (name.as_str(), args.as_slice()) {
            ("htons" | "htonl" | "ntohs" | "ntohl", [x]) => eval(x)?,
            ("inet_addr", [Expr::Str(s)]) => {
                Value::Ip(s.parse().map_err(|_| format!("inet_addr: {s:?} is not an IPv4 address"))?)
            }
            _ => return Err(format!("unsupported expression {e}")),
        },
        Expr::Assign(..) => return Err(format!("unexpected assignment {e}")),
    })
}

/// A system call being run (perhaps blocked).
#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: Vec<Value>,
    /// Bytes written so far (write), or 1 once a blocking connect has started.
    progress: usize,
    /// When a blocked `poll` gives up.
    wake: Option<Instant>,
    /// A check that failed on an output argument (getsockopt's value, poll's revents).
    check: Option<String>,
    /// Whether the call may block: a blocking socket without MSG_DONTWAIT.
    blocking: bool,
}

enum Attempt {
    Done(Result<i64, Errno>),
    Block,
}

/// A blocking call started with an end time (`0...0.100 accept(...)`) that has not returned yet.
#[derive(Debug, Clone)]
struct Pending {
    event: usize,
    call: Call,
    /// Script time the call should return at, and whether that time is a range-less check.
    end_usecs: i64,
    time: EventTime,
}

#[derive(Debug, Clone, Copy)]
struct LastEvent {
    usecs: i64,
    inbound_packet: bool,
}

/// The interpreter's state.
pub(crate) struct Runner<'a> {
    cfg: Config,
    script: &'a Script,
    /// The system under test.
    system: Box<dyn Sut>,
    sent: VecDeque<Sent>,
    pub(crate) trace: Vec<String>,
    fds: HashMap<i64, Fd>,
    nonblocking: HashSet<Fd>,
    conns: Vec<Conn>,
    sut: Option<usize>,
    next_remote_port: u16,
    ip_ident: u16,
    pending: Option<Pending>,
    last: Option<LastEvent>,
    failure: Option<Failure>,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(cfg: Config, script: &'a Script, sut: Box<dyn Sut>) -> Runner<'a> {
        Runner {
            next_remote_port: cfg.first_remote_port,
            cfg,
            script,
            system: sut,
            sent: VecDeque::new(),
            trace: Vec::new(),
            fds: HashMap::new(),
            nonblocking: HashSet::new(),
            conns: Vec::new(),
            sut: None,
            ip_ident: 1,
            pending: None,
            last: None,
            failure: None,
        }
    }

    /// The clock of the system under test.
    pub(crate) fn now(&self) -> Instant {
        self.system.now()
    }

    fn now_usecs(&self) -> i64 {
        (self.now().saturating_since(START).as_nanos() / 1000) as i64
    }

    fn at(usecs: i64) -> Instant {
        START + Duration::from_micros(usecs.max(0) as u64)
    }

    fn note(&mut self, text: String) {
        let t = trace::secs(self.now_usecs());
        self.trace.push(format!("{t} {text}"));
    }

    fn fail(ev: &Event, reason: impl Into<String>, actual: Option<String>) -> Failure {
        Failure { line: ev.line, statement: ev.text.clone(), reason: reason.into(), actual }
    }

    // -----------------------------------------------------------------------------------------------------
    // The clock.

    /// Polls the system under test now and collects what it sends.
    fn poll_now(&mut self) {
        let mut out: Vec<Vec<u8>> = Vec::new();
        self.system.poll(&mut out);
        self.collect(out);
        self.retry_pending();
    }

    /// Moves the clock to `target`, polling at every deadline of the system on the way (virtual clock), or
    /// collecting what it sends until then (wall clock).
    fn advance_to(&mut self, target: Instant) {
        let mut same_instant = 0u32;
        let mut last = self.now();
        while self.step_towards(target) {
            if self.now() <= last {
                same_instant += 1;
                if same_instant > 10_000 {
                    self.note("(the stack keeps asking for a poll at the same instant; moving on)".into());
                    break;
                }
            } else {
                same_instant = 0;
                last = self.now();
            }
        }
        self.poll_now();
    }

    /// One step towards `limit` (see [`Sut::wait`]), then a poll. Returns false when the clock is already at
    /// `limit` and nothing is due.
    fn step_towards(&mut self, limit: Instant) -> bool {
        if !self.system.wait(limit) {
            return false;
        }
        self.poll_now();
        true
    }

    fn collect(&mut self, frames_out: Vec<Vec<u8>>) {
        for f in frames_out {
            if let Some(arp) = frames::parse_arp(&f) {
                if arp.op == ArpOp::Request && arp.target_ip != self.cfg.local_ip {
                    let reply = frames::arp_reply(GATEWAY_MAC, arp.target_ip, arp.sender_mac, arp.sender_ip);
                    let mut out = Vec::new();
                    self.system.receive(&reply, &mut out);
                    self.collect(out);
                }
                continue;
            }
            let Some((ip, payload)) = frames::parse_ipv4(&f) else { continue };
            let sent = Sent { at: self.now(), ip, payload };
            let text = self.describe_sent(&sent);
            self.note(format!(">  {text}"));
            self.sent.push_back(sent);
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // Formatting in script space.

    fn conn_for_ports(&self, proto: u8, local: u16, remote: u16) -> Option<usize> {
        self.conns
            .iter()
            .rposition(|c| c.proto == proto && c.local_port == Some(local) && c.remote_port == Some(remote))
    }

    fn describe_sent(&self, s: &Sent) -> String {
        let addrs = |sp: u16, dp: u16| format!("{}:{sp} > {}:{dp}", s.ip.src, s.ip.dst);
        match s.ip.protocol {
            TCP => match parse_seg(s.at, &s.payload) {
                Some(seg) => {
                    let conn = self.conn_for_ports(TCP, seg.src_port, seg.dst_port).map(|i| &self.conns[i]);
                    let offset = match conn {
                        Some(c) if c.live_isn.is_some() => c.local_offset(),
                        _ if seg.flags & 0x02 != 0 => seg.seq,
                        _ => 0,
                    };
                    let ts = conn.and_then(|c| c.first_ts);
                    format!(
                        "{}  {}",
                        addrs(seg.src_port, seg.dst_port),
                        trace::tcp(
                            seg.flags,
                            seg.seq.wrapping_sub(offset),
                            seg.payload.len(),
                            seg.ack,
                            Some(seg.window),
                            &seg.options,
                            ts
                        )
                    )
                }
                None => "TCP (truncated)".to_string(),
            },
            UDP if s.payload.len() >= 8 => {
                let (sp, dp) = s.ports().unwrap_or_default();
                format!("{}  udp ({})", addrs(sp, dp), s.payload.len() - 8)
            }
            ICMP if s.payload.len() >= 2 => {
                format!("{} > {}  {}", s.ip.src, s.ip.dst, trace::icmp(s.payload[0], s.payload[1]))
            }
            p => format!("{} > {}  IP protocol {p}, {} bytes", s.ip.src, s.ip.dst, s.payload.len()),
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // Time checks.

    /// How far an event expected at `expected` may be from it: `--tolerance_usecs`, or `--tolerance_percent` of
    /// the time since the previous event at `last` when that is more.
    fn tolerance(&self, expected: i64, last: Option<i64>) -> i64 {
        let tol = self.cfg.tolerance_usecs as i64;
        match last {
            Some(last) => tol.max((self.cfg.tolerance_percent / 100.0 * (expected - last) as f64) as i64),
            None => tol,
        }
    }

    /// packetdrill's `verify_time`.
    fn verify_time(
        &self,
        time: EventTime,
        expected: i64,
        expected_end: Option<i64>,
        actual: i64,
        last: Option<i64>,
        what: &str,
    ) -> Result<(), String> {
        if time == EventTime::Any {
            return Ok(());
        }
        let tol = self.tolerance(expected, last);
        if let Some(end) = expected_end {
            if actual < expected - tol || actual > end + tol {
                return Err(format!(
                    "timing error: expected {what} in time range {}~{} sec but happened at {} sec",
                    trace::secs(expected),
                    trace::secs(end),
                    trace::secs(actual)
                ));
            }
            return Ok(());
        }
        if actual < expected - tol || actual > expected + tol {
            return Err(format!(
                "timing error: expected {what} at {} sec but happened at {} sec; tolerance {} sec",
                trace::secs(expected),
                trace::secs(actual),
                trace::secs(tol)
            ));
        }
        Ok(())
    }

    /// The event's script time (and end of range), relative times anchored as packetdrill anchors them.
    fn event_times(&self, ev: &Event) -> (i64, Option<i64>, i64) {
        let inbound = matches!(&ev.action, Action::Packet(p) if p.direction == Direction::Inbound);
        let offset = match self.last {
            Some(l) if l.inbound_packet && inbound => l.usecs,
            _ => self.now_usecs(),
        };
        match ev.time {
            EventTime::Absolute(t) => (t, None, 0),
            EventTime::Relative(t) => (offset + t, None, offset),
            EventTime::Any => (offset, None, offset),
            EventTime::AbsoluteRange(a, b) => (a, Some(b), 0),
            EventTime::RelativeRange(a, b) => (offset + a, Some(offset + b), offset),
        }
    }

    /// Waits until the event's time and checks the clock did not already pass it.
    fn wait_for(&mut self, ev: &Event, t: i64, what: &str) -> Result<(), Failure> {
        let target = Self::at(t);
        if target > self.now() {
            self.advance_to(target);
        }
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        let last = self.last.map(|l| l.usecs);
        self.verify_time(ev.time, t, None, self.now_usecs(), last, what).map_err(|e| Self::fail(ev, e, None))
    }

    // -----------------------------------------------------------------------------------------------------
    // The script.

    pub(crate) fn run(&mut self) -> Result<(), Failure> {
        let events = self.script.events.clone();
        for (i, ev) in events.iter().enumerate() {
            let (t, t_end, offset) = self.event_times(ev);
            match &ev.action {
                Action::Packet(p) if p.direction == Direction::Inbound => {
                    self.wait_for(ev, t, "inbound packet")?;
                    self.inject(ev, p)?;
                }
                Action::Packet(p) => self.expect(ev, p, t, t_end)?,
                Action::Syscall(s) => {
                    self.wait_for(ev, t, "system call start")?;
                    let end = s.end.map(|e| if matches!(ev.time, EventTime::Relative(_)) { e + offset } else { e });
                    self.syscall(i, ev, s, end)?;
                }
                Action::Command(_) | Action::Code(_) => {
                    return Err(Self::fail(ev, "shell commands and code blocks are not supported", None));
                }
            }
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            let inbound_packet = matches!(&ev.action, Action::Packet(p) if p.direction == Direction::Inbound);
            self.last = Some(LastEvent { usecs: t, inbound_packet });
        }
        // packetdrill waits up to a second for a blocking call still in progress; here also until the latest
        // time its end time allows.
        if let Some(p) = &self.pending {
            let last = self.last.map(|l| l.usecs);
            let latest = Self::at(p.end_usecs + self.tolerance(p.end_usecs, last));
            let limit = (self.now() + Duration::from_secs(1)).max(latest);
            while self.pending.is_some() && self.step_towards(limit) {}
        }
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        if let Some(p) = self.pending.take() {
            let ev = &self.script.events[p.event];
            return Err(Self::fail(ev, "runtime error: exiting while a blocking system call is in progress", None));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------
    // Inbound packets.

    fn new_remote_port(&mut self) -> u16 {
        let p = self.next_remote_port;
        self.next_remote_port = self.next_remote_port.wrapping_add(1).max(1024);
        p
    }

    /// The connection an inbound packet of `proto` goes to, creating it as packetdrill does for a listener.
    fn conn_for_inbound(&mut self, proto: u8, ports: Option<(u16, u16)>) -> usize {
        if let Some((src, dst)) = ports {
            if let Some(i) = self.conn_for_ports(proto, dst, src) {
                return i;
            }
            let mut c = Conn::new(proto, Phase::Passive);
            c.local_port = Some(dst);
            c.remote_port = Some(src);
            self.conns.push(c);
            let i = self.conns.len() - 1;
            if self.sut.is_none_or(|s| self.conns[s].phase == Phase::Listening) {
                self.sut = Some(i);
            }
            return i;
        }
        let listener_port = match self.sut {
            Some(s) if self.conns[s].proto == proto && self.conns[s].phase != Phase::Listening => return s,
            Some(s) if self.conns[s].phase == Phase::Listening && proto == TCP => self.conns[s].local_port,
            Some(s) if proto == UDP && self.conns[s].proto == UDP => return s,
            _ => None,
        };
        let mut c = Conn::new(proto, Phase::Passive);
        c.local_port = Some(listener_port.unwrap_or(self.cfg.bind_port));
        c.remote_port = Some(self.new_remote_port());
        self.conns.push(c);
        self.sut = Some(self.conns.len() - 1);
        self.conns.len() - 1
    }

    fn send_ip(&mut self, protocol: u8, payload: &[u8]) {
        let frame = frames::ipv4_frame(
            (GATEWAY_MAC, self.system.mac()),
            self.cfg.remote_ip,
            self.cfg.local_ip,
            protocol,
            self.ip_ident,
            payload,
        );
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let mut out = Vec::new();
        self.system.receive(&frame, &mut out);
        self.collect(out);
        self.poll_now();
    }

    fn inject(&mut self, ev: &Event, p: &PacketSpec) -> Result<(), Failure> {
        match &p.body {
            PacketBody::Tcp(spec) => self.inject_tcp(ev, p, spec),
            PacketBody::Udp { len } => {
                let i = self.conn_for_inbound(UDP, p.ports);
                let c = &self.conns[i];
                let local = c.local_port.unwrap_or(self.cfg.bind_port);
                let remote = c.remote_port.unwrap_or(self.cfg.connect_port);
                let mut seg = vec![0u8; 8 + usize::from(*len)];
                ustack::wire::udp::UdpHeader { src_port: remote, dst_port: local }.emit_v4(
                    &mut seg,
                    self.cfg.remote_ip,
                    self.cfg.local_ip,
                );
                self.note(format!("<  {}:{remote} > {}:{local}  udp ({len})", self.cfg.remote_ip, self.cfg.local_ip));
                self.send_ip(UDP, &seg);
                Ok(())
            }
            PacketBody::Icmp(spec) => self.inject_icmp(ev, p, spec),
        }
    }

    fn inject_tcp(&mut self, ev: &Event, p: &PacketSpec, spec: &TcpSpec) -> Result<(), Failure> {
        let i = self.conn_for_inbound(TCP, p.ports);
        let c = self.conns[i].clone();
        let (Some(local), Some(remote)) = (c.local_port, c.remote_port) else {
            return Err(Self::fail(
                ev,
                "no connection to inject this packet into (the stack's SYN was not seen)",
                None,
            ));
        };
        let ack_offset = c.local_offset();
        let has_ack = spec.flags & 0x10 != 0;
        let ack = if has_ack { spec.ack.unwrap_or(0).wrapping_add(ack_offset) } else { spec.ack.unwrap_or(0) };
        let mut opts = Vec::new();
        for o in spec.options.as_deref().unwrap_or(&[]) {
            let o = match o {
                TcpOpt::Sack(blocks) => TcpOpt::Sack(
                    blocks.iter().map(|(l, r)| (l.wrapping_add(ack_offset), r.wrapping_add(ack_offset))).collect(),
                ),
                TcpOpt::Timestamp { val, ecr } if has_ack => {
                    let live = match c.ts_map.get(ecr) {
                        Some(v) => *v,
                        None => match c.first_ts {
                            Some((s, l)) => ecr.wrapping_sub(s).wrapping_add(l),
                            None => *ecr,
                        },
                    };
                    TcpOpt::Timestamp { val: *val, ecr: live }
                }
                other => other.clone(),
            };
            o.encode(&mut opts);
        }
        let hl = 20 + opts.len();
        let mut seg = vec![0u8; hl + usize::from(spec.len)];
        seg[0..2].copy_from_slice(&remote.to_be_bytes());
        seg[2..4].copy_from_slice(&local.to_be_bytes());
        seg[4..8].copy_from_slice(&spec.seq.to_be_bytes());
        seg[8..12].copy_from_slice(&ack.to_be_bytes());
        seg[12] = ((hl / 4) as u8) << 4;
        seg[13] = spec.flags;
        seg[14..16].copy_from_slice(&spec.window.unwrap_or(0).to_be_bytes());
        seg[18..20].copy_from_slice(&spec.urgent.unwrap_or(0).to_be_bytes());
        seg[20..hl].copy_from_slice(&opts);
        let sum = checksum::transport_v4(self.cfg.remote_ip, self.cfg.local_ip, TCP, &seg);
        seg[16..18].copy_from_slice(&sum.to_be_bytes());
        self.note(format!(
            "<  {}:{remote} > {}:{local}  {}",
            self.cfg.remote_ip,
            self.cfg.local_ip,
            trace::tcp(spec.flags, spec.seq, usize::from(spec.len), spec.ack.unwrap_or(0), spec.window, &opts, None)
        ));
        self.send_ip(TCP, &seg);
        Ok(())
    }

    fn inject_icmp(&mut self, ev: &Event, p: &PacketSpec, spec: &IcmpSpec) -> Result<(), Failure> {
        let (ty, code) = trace::icmp_numbers(&spec.ty, spec.code.as_deref())
            .ok_or_else(|| Self::fail(ev, "unknown ICMP type", None))?;
        // The quoted datagram: one the stack sent to the remote end.
        let (proto, quoted_l4) = match spec.echoed {
            Echoed::Tcp { seq, len } => {
                let i = self.sut.filter(|&s| self.conns[s].proto == TCP);
                let i = match (p.ports, i) {
                    (Some((sp, dp)), _) => self.conn_for_ports(TCP, sp, dp),
                    (None, i) => i,
                };
                let Some(c) = i.map(|i| self.conns[i].clone()) else {
                    return Err(Self::fail(ev, "no TCP connection for the ICMP error to quote", None));
                };
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&c.local_port.unwrap_or(0).to_be_bytes());
                h[2..4].copy_from_slice(&c.remote_port.unwrap_or(0).to_be_bytes());
                h[4..8].copy_from_slice(&seq.wrapping_add(c.local_offset()).to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x10;
                let _ = len;
                (TCP, h)
            }
            Echoed::Udp { len } => {
                let c = self.sut.map(|s| self.conns[s].clone());
                let local = c.as_ref().and_then(|c| c.local_port).unwrap_or(self.cfg.bind_port);
                let remote = c.as_ref().and_then(|c| c.remote_port).unwrap_or(self.cfg.connect_port);
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&local.to_be_bytes());
                h[2..4].copy_from_slice(&remote.to_be_bytes());
                h[4..6].copy_from_slice(&(8 + len).to_be_bytes());
                (UDP, h)
            }
        };
        let mut quoted = vec![0u8; 20 + quoted_l4.len()];
        let mut ih = Ipv4Header::new(self.cfg.local_ip, self.cfg.remote_ip, proto, 64, quoted_l4.len());
        ih.dont_fragment = true;
        ih.emit(&mut quoted[..20]);
        quoted[20..].copy_from_slice(&quoted_l4);
        let mut body = vec![0u8; 8 + quoted.len()];
        body[0] = ty;
        body[1] = code;
        if let Some(mtu) = spec.mtu {
            body[6..8].copy_from_slice(&mtu.to_be_bytes());
        }
        body[8..].copy_from_slice(&quoted);
        let sum = checksum::checksum(&body);
        body[2..4].copy_from_slice(&sum.to_be_bytes());
        self.note(format!("<  {} > {}  {}", self.cfg.remote_ip, self.cfg.local_ip, trace::icmp(ty, code)));
        self.send_ip(ICMP, &body);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------
    // Outbound packets.

    /// The connection an outbound packet is expected on.
    fn conn_for_outbound(&mut self, proto: u8, ports: Option<(u16, u16)>) -> Option<usize> {
        if let Some((src, dst)) = ports {
            if let Some(i) = self.conn_for_ports(proto, src, dst) {
                return Some(i);
            }
            let mut c = Conn::new(proto, Phase::Passive);
            c.local_port = Some(src);
            c.remote_port = Some(dst);
            self.conns.push(c);
            return Some(self.conns.len() - 1);
        }
        match self.sut {
            Some(s) if self.conns[s].proto == proto || proto == ICMP => Some(s),
            _ => None,
        }
    }

    /// Whether `s` is a packet of connection `c`.
    fn belongs(&self, c: &Conn, s: &Sent, proto: u8) -> bool {
        if s.ip.protocol != proto || s.ip.src != self.cfg.local_ip || s.ip.dst != self.cfg.remote_ip {
            return false;
        }
        if proto == ICMP {
            return true;
        }
        let Some((sp, dp)) = s.ports() else { return false };
        match (proto, c.phase, c.local_port, c.remote_port) {
            (TCP, Phase::Active, _, Some(rp)) => dp == rp && s.payload.get(13).is_some_and(|f| f & 0x12 == 0x02),
            (_, _, Some(lp), Some(rp)) => sp == lp && dp == rp,
            (UDP, _, None, rp) => dp == rp.unwrap_or(self.cfg.connect_port),
            (UDP, _, Some(lp), None) => sp == lp && dp == self.cfg.connect_port,
            _ => false,
        }
    }

    /// Waits until the stack sends a packet of connection `ci` (or `deadline` passes) and takes it.
    fn sniff(&mut self, ci: usize, proto: u8, deadline: Instant) -> Option<Sent> {
        let mut guard = 0u32;
        loop {
            let c = self.conns[ci].clone();
            if let Some(pos) = self.sent.iter().position(|s| self.belongs(&c, s, proto)) {
                return self.sent.remove(pos);
            }
            if self.failure.is_some() {
                return None;
            }
            guard += 1;
            if guard > 1_000_000 || !self.step_towards(deadline) {
                return None;
            }
        }
    }

    fn expect(&mut self, ev: &Event, p: &PacketSpec, t: i64, t_end: Option<i64>) -> Result<(), Failure> {
        let proto = match p.body {
            PacketBody::Tcp(_) => TCP,
            PacketBody::Udp { .. } => UDP,
            PacketBody::Icmp(_) => ICMP,
        };
        let Some(ci) = self.conn_for_outbound(proto, p.ports) else {
            return Err(Self::fail(ev, "no socket under test for this outbound packet", None));
        };
        let tol = Duration::from_micros(self.cfg.tolerance_usecs);
        let deadline = match ev.time {
            EventTime::Any => self.now() + Duration::from_secs(3600),
            _ => {
                let last = self.last.map_or(0, |l| l.usecs);
                let end = t_end.unwrap_or(t);
                let dynamic = (self.cfg.tolerance_percent / 100.0 * (t - last).max(0) as f64) as u64;
                Self::at(end) + tol.max(Duration::from_micros(dynamic))
            }
        };
        let Some(first) = self.sniff(ci, proto, deadline) else {
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            let others: Vec<String> = self.sent.iter().map(|s| self.describe_sent(s)).collect();
            let actual = if others.is_empty() {
                "nothing".to_string()
            } else {
                format!("only packets of other connections: {}", others.join("; "))
            };
            return Err(Self::fail(
                ev,
                format!(
                    "expected an outbound packet by {} sec, but the stack sent none",
                    trace::secs(self.now_usecs())
                ),
                Some(actual),
            ));
        };
        let last = self.last.map(|l| l.usecs);
        match &p.body {
            PacketBody::Tcp(spec) => self.verify_tcp(ev, ci, spec, first, t, t_end, last, deadline),
            PacketBody::Udp { len } => {
                let actual = format!("{} {}", trace::secs(self.usecs_of(first.at)), self.describe_sent(&first));
                if self.conns[ci].local_port.is_none() {
                    self.conns[ci].local_port = first.ports().map(|p| p.0);
                }
                if first.payload.len() != 8 + usize::from(*len) {
                    return Err(Self::fail(
                        ev,
                        format!(
                            "live packet payload: expected {len} bytes vs actual {} bytes",
                            first.payload.len() - 8
                        ),
                        Some(actual),
                    ));
                }
                self.verify_time(ev.time, t, t_end, self.usecs_of(first.at), last, "outbound packet")
                    .map_err(|e| Self::fail(ev, e, Some(actual)))
            }
            PacketBody::Icmp(spec) => {
                let actual = format!("{} {}", trace::secs(self.usecs_of(first.at)), self.describe_sent(&first));
                let want = trace::icmp_numbers(&spec.ty, spec.code.as_deref());
                let got = (first.payload.first().copied().unwrap_or(0), first.payload.get(1).copied().unwrap_or(0));
                if want != Some(got) {
                    return Err(Self::fail(
                        ev,
                        format!("live packet field icmp_type/icmp_code: expected {want:?} vs actual {got:?}"),
                        Some(actual),
                    ));
                }
                self.verify_time(ev.time, t, t_end, self.usecs_of(first.at), last, "outbound packet")
                    .map_err(|e| Self::fail(ev, e, Some(actual)))
            }
        }
    }

    fn usecs_of(&self, at: Instant) -> i64 {
        (at.saturating_since(START).as_nanos() / 1000) as i64
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_tcp(
        &mut self,
        ev: &Event,
        ci: usize,
        spec: &TcpSpec,
        first: Sent,
        t: i64,
        t_end: Option<i64>,
        last: Option<i64>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let Some(mut seg) = parse_seg(first.at, &first.payload) else {
            return Err(Self::fail(ev, "the stack sent a truncated TCP segment", None));
        };
        // Learn the stack's ISN from its SYN (active open) or SYN-ACK (passive open).
        {
            let c = &mut self.conns[ci];
            if c.phase == Phase::Active && seg.flags & 0x12 == 0x02 {
                c.local_port = Some(seg.src_port);
                c.phase = Phase::ActiveSynSent;
            }
            // Every expected SYN gives the ISN anew: a later connection on the same ports (a SYN that reuses a
            // TIME-WAIT four-tuple) has a new one; a retransmitted SYN has the same.
            if seg.flags & 0x02 != 0 && spec.flags & 0x02 != 0 {
                c.live_isn = Some(seg.seq);
                c.script_isn = spec.seq;
            }
        }
        // An expected segment may be covered by several consecutive smaller ones (packetdrill aggregates them
        // unless --strict_segments).
        let mut frames = 1;
        while seg.payload.len() < usize::from(spec.len) && !self.cfg.strict_segments {
            let Some(next) = self.sniff(ci, TCP, deadline) else { break };
            let Some(n) = parse_seg(next.at, &next.payload) else { break };
            let contiguous = n.seq == seg.seq.wrapping_add(seg.payload.len() as u32)
                && n.ack == seg.ack
                && (n.flags & !0x09) == (seg.flags & !0x09)
                && seg.flags & 0x01 == 0;
            if !contiguous {
                // Not part of this one: leave it for the next expectation.
                self.sent.push_front(next);
                break;
            }
            seg.payload.extend_from_slice(&n.payload);
            seg.flags |= n.flags & 0x09;
            seg.window = n.window;
            frames += 1;
        }
        let c = self.conns[ci].clone();
        let mapped_seq = seg.seq.wrapping_sub(c.local_offset());
        let actual_text = {
            let mut s = format!(
                "{} {}",
                trace::secs(self.usecs_of(seg.at)),
                trace::tcp(
                    seg.flags,
                    mapped_seq,
                    seg.payload.len(),
                    seg.ack,
                    Some(seg.window),
                    &seg.options,
                    c.first_ts
                )
            );
            if frames > 1 {
                s += &format!("  (aggregated from {frames} segments)");
            }
            s
        };
        let fail = |reason: String| Self::fail(ev, reason, Some(actual_text.clone()));
        let field = |name: &str, want: u64, got: u64| -> Result<(), Failure> {
            if want == got {
                Ok(())
            } else {
                Err(fail(format!(
                    "live packet field {name}: expected: {want} (0x{want:x}) vs actual: {got} (0x{got:x})"
                )))
            }
        };
        for (bit, name) in [
            (0x02, "tcp_syn"),
            (0x04, "tcp_rst"),
            (0x10, "tcp_ack"),
            (0x01, "tcp_fin"),
            (0x08, "tcp_psh"),
            (0x20, "tcp_urg"),
            (0x40, "tcp_ece"),
            (0x80, "tcp_cwr"),
        ] {
            field(name, u64::from(spec.flags & bit != 0), u64::from(seg.flags & bit != 0))?;
        }
        field("tcp_seq", u64::from(spec.seq), u64::from(mapped_seq))?;
        if spec.flags & 0x10 != 0 || spec.ack.is_some() {
            field("tcp_ack_seq", u64::from(spec.ack.unwrap_or(0)), u64::from(seg.ack))?;
        }
        if let Some(w) = spec.window {
            field("tcp_window", u64::from(w), u64::from(seg.window))?;
        }
        if let Some(u) = spec.urgent {
            field("tcp_urg_ptr", u64::from(u), u64::from(seg.urgent))?;
        }
        // Options, one by one in order (packetdrill's verify_outbound_live_tcp_options).
        let actual_opts = trace::split_options(&seg.options);
        let actual_ts = actual_opts.iter().find_map(|o| match o {
            trace::RawOpt::Ts(v, e) => Some((*v, *e)),
            _ => None,
        });
        let script_ts = spec.options.as_ref().and_then(|l| {
            l.iter().find_map(|o| match o {
                TcpOpt::Timestamp { val, ecr } => Some((*val, *ecr)),
                _ => None,
            })
        });
        if let (Some((sv, _)), Some((av, _))) = (script_ts, actual_ts) {
            let c = &mut self.conns[ci];
            c.ts_map.insert(sv, av);
            if c.first_ts.is_none() {
                c.first_ts = Some((sv, av));
            }
        }
        let first_ts = self.conns[ci].first_ts;
        if let Some(list) = &spec.options {
            let mut want = Vec::new();
            for o in list {
                o.encode(&mut want);
            }
            let want_opts = trace::split_options(&want);
            if want_opts.len() != actual_opts.len()
                || want_opts
                    .iter()
                    .zip(&actual_opts)
                    .any(|(w, a)| std::mem::discriminant(w) != std::mem::discriminant(a))
            {
                return Err(fail(format!(
                    "bad outbound TCP options: expected <{}> vs actual <{}>",
                    trace::options(&want, None),
                    trace::options(&seg.options, first_ts)
                )));
            }
            for (w, a) in want_opts.iter().zip(&actual_opts) {
                match (w, a) {
                    (trace::RawOpt::Ts(sv, se), trace::RawOpt::Ts(av, ae)) => {
                        let tick = self.cfg.tcp_ts_tick_usecs as i64;
                        if tick != 0 {
                            let (fs, fa) = first_ts.unwrap_or((*sv, *av));
                            let mapped = fs.wrapping_add(av.wrapping_sub(fa));
                            let drift = i64::from(mapped.wrapping_sub(*sv) as i32).abs() * tick;
                            if drift > self.cfg.tolerance_usecs as i64 {
                                return Err(fail(format!(
                                    "bad outbound TCP timestamp value: expected {sv} vs actual {mapped} (rebased), \
                                     tolerance {} usecs",
                                    self.cfg.tolerance_usecs
                                )));
                            }
                        }
                        if self.cfg.check_ts_ecr && se != ae {
                            return Err(fail(format!(
                                "bad outbound TCP timestamp echo reply: expected {se} vs actual {ae}"
                            )));
                        }
                    }
                    (w, a) if w != a => {
                        return Err(fail(format!(
                            "bad value of outbound TCP option: expected <{}> vs actual <{}>",
                            trace::options(&want, None),
                            trace::options(&seg.options, first_ts)
                        )));
                    }
                    _ => {}
                }
            }
        }
        if seg.payload.len() != usize::from(spec.len) {
            return Err(fail(format!(
                "live packet payload: expected {} bytes vs actual {} bytes",
                spec.len,
                seg.payload.len()
            )));
        }
        if seg.payload.iter().any(|&b| b != 0) {
            return Err(fail("incorrect outbound data payload (the script's data is all zeros)".to_string()));
        }
        self.verify_time(ev.time, t, t_end, self.usecs_of(seg.at), last, "outbound packet").map_err(fail)
    }

    // -----------------------------------------------------------------------------------------------------
    // System calls.

    fn live_fd(&self, v: &Value) -> Fd {
        let n = v.int().unwrap_or(-1);
        self.fds.get(&n).copied().unwrap_or(Fd(n as i32))
    }

    fn conn_of_fd(&self, fd: Fd) -> Option<usize> {
        self.conns.iter().rposition(|c| c.fd == Some(fd))
    }

    fn sockaddr(&self, v: Option<&Value>, default: SocketAddrV4) -> SocketAddrV4 {
        match v {
            Some(s @ Value::Struct(_)) => {
                let port = s.field("sin_port").and_then(Value::int).unwrap_or(i64::from(default.port())) as u16;
                let ip = match s.field("sin_addr") {
                    Some(Value::Ip(ip)) => *ip,
                    _ => *default.ip(),
                };
                SocketAddrV4::new(ip, port)
            }
            _ => default,
        }
    }

    fn msg_flags(v: Option<&Value>) -> i64 {
        v.and_then(Value::int).unwrap_or(0)
    }

    fn count_arg(v: Option<&Value>) -> usize {
        match v {
            Some(Value::List(items)) => items
                .iter()
                .map(|i| match i {
                    Value::List(iov) => iov.get(1).and_then(Value::int).unwrap_or(0) as usize,
                    other => other.int().unwrap_or(0) as usize,
                })
                .sum(),
            Some(v) => v.int().unwrap_or(0).max(0) as usize,
            None => 0,
        }
    }

    fn blocking(&self, fd: Fd, flags: i64) -> bool {
        !self.nonblocking.contains(&fd) && flags & symbols::MSG_DONTWAIT == 0
    }

    fn syscall(&mut self, index: usize, ev: &Event, spec: &SyscallSpec, end: Option<i64>) -> Result<(), Failure> {
        let args: Vec<Value> = spec
            .args
            .iter()
            .map(eval)
            .collect::<Result<_, _>>()
            .map_err(|e| Self::fail(ev, format!("bad argument: {e}"), None))?;
        let mut call = Call { name: spec.name.clone(), args, progress: 0, wake: None, check: None, blocking: false };
        if let Some(end_usecs) = end {
            if self.pending.is_some() {
                let limit = self.now() + Duration::from_secs(1);
                while self.pending.is_some() && self.step_towards(limit) {}
                if let Some(f) = self.failure.take() {
                    return Err(f);
                }
                if self.pending.is_some() {
                    return Err(Self::fail(
                        ev,
                        "blocking system call while another blocking system call is already in progress",
                        None,
                    ));
                }
            }
            match self.attempt(&mut call) {
                Attempt::Done(r) => {
                    let checked = self.finish(ev, spec, &call, r, Some((end_usecs, ev.time)));
                    self.poll_now();
                    checked?;
                }
                Attempt::Block => {
                    self.note(format!("   line {}: {} blocks", ev.line, spec.name));
                    self.pending = Some(Pending { event: index, call, end_usecs, time: ev.time });
                    self.poll_now();
                }
            }
            return Ok(());
        }
        // A call without an end time runs on packetdrill's main thread: if it blocks, nothing else in the
        // script happens until it returns; only the stack's own timers move things on.
        let started = self.now();
        loop {
            match self.attempt(&mut call) {
                Attempt::Done(r) => {
                    let checked = self.finish(ev, spec, &call, r, None);
                    self.poll_now();
                    return checked;
                }
                Attempt::Block => {
                    self.poll_now();
                    let limit = started + self.cfg.block_limit;
                    if !self.system.is_virtual() {
                        // On the wall clock the call returns when the kernel lets it; wait for that, bounded.
                        if self.now() >= limit {
                            return Err(Self::fail(
                                ev,
                                format!(
                                    "{} still blocks after {} s (a blocking socket and no `...` end time: \
                                     packetdrill would hang here)",
                                    spec.name,
                                    self.cfg.block_limit.as_secs()
                                ),
                                None,
                            ));
                        }
                        self.step_towards(call.wake.map_or(limit, |w| w.min(limit)));
                        continue;
                    }
                    let wake = match (self.system.deadline(), call.wake) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    match wake {
                        Some(at) if at <= limit => {
                            let at = at.max(self.now());
                            self.advance_to(at);
                        }
                        _ => {
                            return Err(Self::fail(
                                ev,
                                format!(
                                    "{} blocks and nothing can wake it (a blocking socket and no `...` end time: \
                                     packetdrill would hang here)",
                                    spec.name
                                ),
                                None,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Retries the pending blocking call; reports its result when it returns.
    fn retry_pending(&mut self) {
        let Some(mut p) = self.pending.take() else { return };
        match self.attempt(&mut p.call) {
            Attempt::Block => self.pending = Some(p),
            Attempt::Done(r) => {
                let ev = self.script.events[p.event].clone();
                let Action::Syscall(spec) = &ev.action else { return };
                if let Err(f) = self.finish(&ev, spec, &p.call, r, Some((p.end_usecs, p.time))) {
                    self.failure.get_or_insert(f);
                }
            }
        }
    }

    /// Checks a call's result against the script and updates the interpreter's view of the sockets.
    fn finish(
        &mut self,
        ev: &Event,
        spec: &SyscallSpec,
        call: &Call,
        r: Result<i64, Errno>,
        end: Option<(i64, EventTime)>,
    ) -> Result<(), Failure> {
        let shown = match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("-1 {} ({})", e.name(), symbols::strerror(e)),
        };
        let call_text = ev.text.find(&format!("{}(", spec.name)).map_or(ev.text.as_str(), |i| &ev.text[i..]);
        let call_text = call_text.split(" = ").next().unwrap_or(call_text);
        self.note(format!("   line {}: {call_text} = {shown}", ev.line));
        let expected = eval(&spec.result).map_err(|e| Self::fail(ev, format!("bad result expression: {e}"), None))?;
        let actual = Some(format!("returned {shown}"));
        match (&expected, r) {
            (Value::Any, _) => {}
            (Value::Int(-1), Err(e)) => {
                if let Some(name) = &spec.errno {
                    let want = if name == "EWOULDBLOCK" { "EAGAIN" } else { name.as_str() };
                    if e.name() != want {
                        return Err(Self::fail(
                            ev,
                            format!("expected errno {name} but got {} ({})", e.name(), symbols::strerror(e)),
                            actual,
                        ));
                    }
                }
            }
            (Value::Int(want), Ok(got)) if matches!(call.name.as_str(), "socket" | "accept") && *want >= 0 => {
                self.fds.insert(*want, Fd(got as i32));
            }
            (Value::Int(want), Ok(got)) if *want == got => {}
            (Value::Int(want), _) => {
                return Err(Self::fail(ev, format!("expected result {want} but got {shown}"), actual));
            }
            (other, _) => {
                return Err(Self::fail(ev, format!("unsupported result expression {other:?}"), actual));
            }
        }
        if let Some(msg) = &call.check {
            return Err(Self::fail(ev, msg.clone(), actual));
        }
        if let Some((end_usecs, time)) = end {
            // The tolerance grows with the time since the script's previous event, as for any event (a call
            // that returns when a kernel timer fires is as late as the timer).
            let last = self.last.map(|l| l.usecs);
            self.verify_time(time, end_usecs, None, self.now_usecs(), last, "system call return")
                .map_err(|e| Self::fail(ev, e, actual))?;
        }
        Ok(())
    }

    fn attempt(&mut self, call: &mut Call) -> Attempt {
        use Attempt::Done;
        let a = call.args.clone();
        let fd = a.first().map(|v| self.live_fd(v)).unwrap_or(Fd(-1));
        let local = SocketAddrV4::new(self.cfg.local_ip, self.cfg.bind_port);
        let remote = SocketAddrV4::new(self.cfg.remote_ip, self.cfg.connect_port);
        let ok0 = |r: Result<(), Errno>| Done(r.map(|()| 0));
        match call.name.as_str() {
            "socket" => {
                let ty = a.get(1).and_then(Value::int).unwrap_or(1);
                let domain = a.first().and_then(Value::int).unwrap_or(2);
                let proto = if ty & 0xf == 2 { UDP } else { TCP };
                let r = self.system.socket(domain, ty);
                if let Ok(new) = r {
                    if ty & symbols::SOCK_NONBLOCK != 0 {
                        self.nonblocking.insert(new);
                    } else {
                        self.nonblocking.remove(&new);
                    }
                    let mut c = Conn::new(proto, Phase::Init);
                    c.fd = Some(new);
                    self.conns.push(c);
                    self.sut = Some(self.conns.len() - 1);
                }
                Done(r.map(|f| i64::from(f.0)))
            }
            "bind" => {
                let addr = self.sockaddr(a.get(1), local);
                let r = self.system.bind(fd, addr);
                if r.is_ok() {
                    let port = self.system.local_port(fd).unwrap_or(addr.port());
                    if let Some(ci) = self.conn_of_fd(fd) {
                        self.conns[ci].local_port = Some(port);
                    }
                }
                ok0(r)
            }
            "listen" => {
                let backlog = a.get(1).and_then(Value::int).unwrap_or(0) as i32;
                let r = self.system.listen(fd, backlog);
                if r.is_ok() {
                    let port = self.system.local_port(fd);
                    if let Some(ci) = self.conn_of_fd(fd) {
                        self.conns[ci].phase = Phase::Listening;
                        self.conns[ci].local_port = port;
                        self.sut = Some(ci);
                    }
                }
                ok0(r)
            }
            "accept" => {
                call.blocking = self.blocking(fd, 0);
                match self.system.accept(fd, call.blocking) {
                    Ok((new, peer)) => {
                        let local_port = self.system.local_port(new);
                        let ci = match local_port.and_then(|lp| self.conn_for_ports(TCP, lp, peer.port())) {
                            Some(ci) => ci,
                            None => {
                                let mut c = Conn::new(TCP, Phase::Passive);
                                c.local_port = local_port;
                                c.remote_port = Some(peer.port());
                                self.conns.push(c);
                                self.conns.len() - 1
                            }
                        };
                        self.conns[ci].fd = Some(new);
                        self.nonblocking.remove(&new);
                        Done(Ok(i64::from(new.0)))
                    }
                    Err(Errno::EAGAIN) if call.blocking => Attempt::Block,
                    Err(e) => Done(Err(e)),
                }
            }
            "connect" => {
                call.blocking = self.blocking(fd, 0);
                let addr = self.sockaddr(a.get(1), remote);
                let ci = self.conn_of_fd(fd);
                let is_udp = ci.is_some_and(|ci| self.conns[ci].proto == UDP);
                let r = self.system.connect(fd, addr, call.blocking && !is_udp);
                if is_udp {
                    if r.is_ok() {
                        if let Some(ci) = ci {
                            self.conns[ci].remote_port = Some(addr.port());
                            self.conns[ci].local_port = self.system.local_port(fd);
                        }
                    }
                    return ok0(r);
                }
                if call.progress == 0 && r == Err(Errno::EINPROGRESS) {
                    if let Some(ci) = ci {
                        let c = &mut self.conns[ci];
                        c.phase = Phase::Active;
                        c.remote_port = Some(addr.port());
                        c.local_port = None;
                        c.live_isn = None;
                        self.sut = Some(ci);
                    }
                    if call.blocking {
                        call.progress = 1;
                        return Attempt::Block;
                    }
                }
                match r {
                    Err(Errno::EALREADY) if call.progress == 1 => Attempt::Block,
                    r => ok0(r),
                }
            }
            "read" | "recv" | "recvfrom" | "readv" => {
                let flags = if call.name == "recv" || call.name == "recvfrom" { Self::msg_flags(a.get(3)) } else { 0 };
                call.blocking = self.blocking(fd, flags);
                let count = Self::count_arg(a.get(if call.name == "readv" { 1 } else { 2 }));
                match self.system.recv(fd, count, flags, call.blocking) {
                    Ok(n) => Done(Ok(n as i64)),
                    Err(Errno::EAGAIN) if call.blocking => Attempt::Block,
                    Err(e) => Done(Err(e)),
                }
            }
            "write" | "send" | "sendto" | "writev" => {
                let flags = if call.name == "send" || call.name == "sendto" { Self::msg_flags(a.get(3)) } else { 0 };
                call.blocking = self.blocking(fd, flags);
                let count = Self::count_arg(a.get(if call.name == "writev" { 1 } else { 2 }));
                let is_udp = self.conn_of_fd(fd).is_some_and(|ci| self.conns[ci].proto == UDP);
                if is_udp {
                    let dest = match (call.name.as_str(), a.get(4)) {
                        ("sendto", Some(v)) => Some(self.sockaddr(Some(v), remote)),
                        _ => None,
                    };
                    let r = self.system.send(fd, count, flags, dest, false);
                    if r.is_ok() {
                        if let Some(ci) = self.conn_of_fd(fd) {
                            if self.conns[ci].local_port.is_none() {
                                self.conns[ci].local_port = self.system.local_port(fd);
                            }
                        }
                    }
                    return Done(r.map(|n| n as i64));
                }
                // Bounded: each round either takes bytes, blocks or returns.
                for _ in 0..1_000_000 {
                    let left = count - call.progress;
                    if left == 0 && (count > 0 || call.progress > 0) {
                        return Done(Ok(count as i64));
                    }
                    match self.system.send(fd, left, flags, None, call.blocking) {
                        Ok(0) if count == 0 => return Done(Ok(0)),
                        Ok(n) => {
                            call.progress += n;
                            if call.progress < count && !call.blocking {
                                return Done(Ok(call.progress as i64));
                            }
                        }
                        Err(Errno::EAGAIN) if call.blocking => return Attempt::Block,
                        Err(_) if call.progress > 0 => return Done(Ok(call.progress as i64)),
                        Err(e) => return Done(Err(e)),
                    }
                }
                Done(Ok(call.progress as i64))
            }
            "close" => {
                let r = self.system.close(fd);
                if r.is_ok() {
                    self.fds.retain(|_, v| *v != fd);
                    self.nonblocking.remove(&fd);
                    for c in self.conns.iter_mut().filter(|c| c.fd == Some(fd)) {
                        c.fd = None;
                    }
                }
                ok0(r)
            }
            "shutdown" => {
                let how = a.get(1).and_then(Value::int).unwrap_or(2);
                ok0(self.system.shutdown(fd, how))
            }
            "setsockopt" => {
                let level = a.get(1).and_then(Value::int).unwrap_or(-1);
                let name = a.get(2).and_then(Value::int).unwrap_or(-1);
                let value = a.get(3);
                let v = if (level, name) == symbols::SO_LINGER {
                    let on = value.and_then(|v| v.field("onoff")).and_then(Value::int).unwrap_or(0);
                    let secs = value.and_then(|v| v.field("linger")).and_then(Value::int).unwrap_or(0);
                    OptVal::Linger((on != 0).then(|| Duration::from_secs(secs.max(0) as u64)))
                } else if let (symbols::TCP_CONGESTION, Some(Value::Str(ca))) = ((level, name), value) {
                    // Linux's tcp_set_congestion_control: an algorithm it does not know is ENOENT.
                    match CongestionAlgorithm::from_name(ca) {
                        Some(alg) => OptVal::Int(alg as i32),
                        None => return Done(Err(Errno::ENOENT)),
                    }
                } else {
                    OptVal::Int(value.and_then(Value::int).unwrap_or(0) as i32)
                };
                ok0(self.system.setsockopt(fd, level, name, v))
            }
            "getsockopt" => {
                let level = a.get(1).and_then(Value::int).unwrap_or(-1);
                let name = a.get(2).and_then(Value::int).unwrap_or(-1);
                let want = a.get(3).cloned().unwrap_or(Value::Any);
                match self.system.getsockopt(fd, level, name) {
                    Ok(OptVal::Linger(got)) => {
                        let (on, secs) = got.map_or((0, 0), |d| (1, d.as_secs() as i64));
                        let want_on = want.field("onoff").and_then(Value::int);
                        let want_secs = want.field("linger").and_then(Value::int);
                        if want_on.is_some_and(|w| w != on) || want_secs.is_some_and(|w| w != secs) {
                            call.check = Some(format!(
                                "getsockopt SO_LINGER: expected {want:?} but got onoff={on}, linger={secs}"
                            ));
                        }
                        Done(Ok(0))
                    }
                    Ok(OptVal::Int(v)) => {
                        if let (symbols::TCP_CONGESTION, Value::Str(w)) = ((level, name), &want) {
                            // The script names the algorithm; ustack answers with its number.
                            let got = CongestionAlgorithm::try_from(v).map_or("?", CongestionAlgorithm::name);
                            if w != got {
                                call.check =
                                    Some(format!("getsockopt TCP_CONGESTION: expected \"{w}\" but got \"{got}\""));
                            }
                        } else if let Some(w) = want.int() {
                            if w != i64::from(v) {
                                let opt = symbols::sockopt(level, name).map_or("option", |o| o.name());
                                call.check = Some(format!("getsockopt {opt}: expected value {w} but got {v}"));
                            }
                        }
                        Done(Ok(0))
                    }
                    Err(e) => Done(Err(e)),
                }
            }
            "fcntl" => match a.get(1).and_then(Value::int) {
                Some(symbols::F_SETFL) => {
                    let flags = a.get(2).and_then(Value::int).unwrap_or(0);
                    let r = self.system.set_flags(fd, flags);
                    if r.is_ok() {
                        if flags & symbols::O_NONBLOCK != 0 {
                            self.nonblocking.insert(fd);
                        } else {
                            self.nonblocking.remove(&fd);
                        }
                    }
                    ok0(r)
                }
                Some(symbols::F_GETFL) => {
                    let r = self.system.get_flags(fd);
                    let nb = if self.nonblocking.contains(&fd) { symbols::O_NONBLOCK } else { 0 };
                    Done(r.map(|f| f | nb))
                }
                _ => Done(Err(Errno::EINVAL)),
            },
            "poll" => {
                let Some(Value::List(items)) = a.first() else { return Done(Err(Errno::EFAULT)) };
                let timeout = a.get(2).and_then(Value::int).unwrap_or(0);
                let mut count = 0;
                let mut mismatches = Vec::new();
                for item in items {
                    let pfd = self.live_fd(item.field("fd").unwrap_or(&Value::Int(-1)));
                    let events = item.field("events").and_then(Value::int).unwrap_or(0);
                    let revents = match self.system.poll_events(pfd) {
                        Ok(r) => r & (events | symbols::POLLERR | symbols::POLLHUP),
                        Err(_) => symbols::POLLNVAL,
                    };
                    if revents != 0 {
                        count += 1;
                    }
                    let want = item.field("revents").and_then(Value::int).unwrap_or(0);
                    if want != revents {
                        mismatches.push(format!(
                            "fd {}: expected revents {} but got {}",
                            item.field("fd").and_then(Value::int).unwrap_or(-1),
                            trace::poll_events(want),
                            trace::poll_events(revents)
                        ));
                    }
                }
                if count == 0 && timeout != 0 {
                    if timeout > 0 && call.wake.is_none() {
                        call.wake = Some(self.now() + Duration::from_millis(timeout as u64));
                    }
                    if call.wake.is_none_or(|w| self.now() < w) {
                        call.blocking = true;
                        return Attempt::Block;
                    }
                }
                if !mismatches.is_empty() {
                    call.check = Some(mismatches.join("; "));
                }
                Done(Ok(count))
            }
            other => {
                call.check = Some(format!("system call {other} is not supported"));
                Done(Err(Errno::EINVAL))
            }
        }
    }
}
