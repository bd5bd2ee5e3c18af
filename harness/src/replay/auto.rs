//! The automatic application: a replay whose application side plays itself, as the capture implies, and the
//! side-by-side comparison it ends with.
//!
//! For a TCP connection of the host ([`Plan`]):
//!
//! * the host sent the first SYN: `bind()` to its address and port and `connect()` just before that SYN;
//! * the host answered a SYN with a SYN-ACK: `listen()` on its port from the start and `accept()` as soon as a
//!   connection completes; a SYN the host did not accept (it answered with a reset, or not at all) finds no
//!   listener;
//! * the capture starts mid-connection: a handshake is synthesized first ([`Replay::handshake`]), the host
//!   being the server when its port is the lower one;
//! * when the capture shows the host sending bytes it had not sent before, `send()` them just before that
//!   frame (one `send()` for a run of the host's data frames with no peer frame between them and less than
//!   200 ms apart, as one write becomes a burst of segments); bytes the capture lost are sent as zeros;
//! * at the host's FIN, `shutdown(SHUT_WR)` (or `close()` when the peer has already closed); at a reset the
//!   host sent on an open connection, an abortive `close()` (SO_LINGER 0);
//! * whatever arrives is read at once.
//!
//! Captures with no TCP segment of the host are replayed frame by frame (see `datagram.rs`).
//!
//! Every difference between the stack's segment and the host's is then looked up in the "by design" table
//! ([`Replay::by_design`], [`Replay::extra_by_design`], [`Replay::missing_by_design`]): choices that are the
//! stack's own (its ISN is already hidden by relative numbers; its TSval clock, its window, the options it
//! offers, PSH, its ACK timing) are explained with their reason; anything else is reported as a difference.

use super::{
    datagram, rewrite, write_wire_pcap, Difference, Extra, Field, Pair, Replay, ReplayBuilder, Role, Side, WireFrame,
    ORIGIN,
};
use std::fmt;
use std::time::Duration;
use ustack::wire::tcp::{TcpFlags, TcpOptions};
use ustack::{Errno, Fd, Instant, MsgFlags, Shutdown};

/// A run of the host's data frames closer together than this, with no peer frame between them, is one
/// `send()`.
const BURST_GAP: Duration = Duration::from_millis(200);

/// What the automatic application does, as the capture implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The host sent the first SYN (frame `syn_frame`): `connect()` just before it.
    Connect { syn_frame: usize },
    /// The host answered a SYN with a SYN-ACK: `listen()` from the start, `accept()` when it completes.
    Listen,
    /// The host received a SYN and did not accept it (it answered with a reset, or not at all): no listener.
    NoListener,
    /// The capture starts mid-connection: a synthesized handshake first, the host playing `role`.
    MidStream { role: Role },
    /// No TCP: UDP ports bound from the start and datagrams sent as the host sent them; ICMP and ARP are the
    /// stack's own.
    Datagrams,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let rest = "send() what the host sent when it sent it, shutdown(SHUT_WR) or close() at its FIN, read \
                    whatever arrives";
        match self {
            Plan::Connect { syn_frame } => write!(
                f,
                "connect() from the host's address just before #{syn_frame} (the capture's host sent the first SYN); \
                 {rest}"
            ),
            Plan::Listen => write!(
                f,
                "listen() from the start and accept() when the connection completes (the capture's host answered \
                 the SYN); {rest}"
            ),
            Plan::NoListener => {
                write!(f, "nothing listens (the capture's host did not accept the SYN): the stack answers on its own")
            }
            Plan::MidStream { role } => {
                let who = if *role == Role::Client { "client" } else { "server" };
                write!(
                    f,
                    "the capture starts mid-connection: a handshake is synthesized first, the host as the {who}; \
                     {rest}"
                )
            }
            Plan::Datagrams => write!(
                f,
                "UDP ports bound from the start and sendto() what the host sent when it sent it; recvfrom() \
                 whatever arrives; ARP and ICMP are answered by the stack itself"
            ),
        }
    }
}

/// How one frame of the capture's host compares with what the stack sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The stack sent the same.
    Same,
    /// The stack's differs only where it differs by design.
    ByDesign,
    /// The stack's differs in a way the table does not explain.
    Differs,
    /// The stack sent nothing in its place, and it should have.
    Missing,
    /// The stack sent nothing in its place, by design.
    MissingByDesign,
    /// No application can make the stack send this (an ICMP echo request: ustack has no ICMP sockets).
    NotReproducible,
}

/// A difference, with the reason it is by design when it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub difference: Difference,
    pub by_design: Option<String>,
}

/// One frame the capture's host sent and the stack's counterpart.
#[derive(Debug, Clone)]
pub struct AutoPair {
    /// Frame number in the capture (1-based).
    pub frame: usize,
    /// Virtual time of the captured frame.
    pub at: Instant,
    /// The captured frame, tcpdump-style (relative sequence numbers for TCP).
    pub captured: String,
    /// The stack's frame in its place.
    pub ours: Option<String>,
    pub ours_at: Option<Instant>,
    pub differences: Vec<Explained>,
    /// Why nothing in its place is by design, or why it cannot be reproduced.
    pub missing_reason: Option<String>,
    pub verdict: Verdict,
    /// The TCP pairing, for TCP replays.
    pub tcp: Option<Pair>,
}

/// A frame the stack sent that no frame of the capture's host stands for.
#[derive(Debug, Clone)]
pub struct AutoExtra {
    pub at: Instant,
    pub text: String,
    pub by_design: Option<String>,
    /// The host frame it was passed over for, if any.
    pub before_frame: Option<usize>,
    /// The segment, for TCP replays.
    pub seg: Option<super::Seg>,
}

/// One line of the side-by-side table, in the order things happened.
#[derive(Debug, Clone)]
pub(super) enum Row {
    /// A frame of the capture given to the stack.
    Injected { frame: usize, at: Instant, text: String, note: Option<String> },
    /// A host frame: index into the pairs.
    Host(usize),
    /// A socket call of the automatic application.
    App { at: Instant, text: String },
    /// Index into the extras.
    Extra(usize),
}

/// Counts of an [`AutoReplay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub host_frames: usize,
    pub same: usize,
    pub by_design: usize,
    pub differ: usize,
    pub missing: usize,
    pub missing_by_design: usize,
    pub not_reproducible: usize,
    pub extras: usize,
    pub extras_by_design: usize,
    pub injected: usize,
}

/// The result of a replay with the automatic application: the side-by-side comparison (its `Display`), the
/// verdict, and every frame that went into or out of the stack.
#[derive(Debug, Clone)]
pub struct AutoReplay {
    /// The capture's name or path.
    pub name: String,
    /// The host the stack played (`ip:port` for TCP, `ip` for datagram replays).
    pub host: String,
    /// The other end, for TCP replays.
    pub peer: Option<String>,
    pub plan: Plan,
    pub pairs: Vec<AutoPair>,
    pub extras: Vec<AutoExtra>,
    /// Bytes the application read (TCP), or the datagrams' payloads one after the other.
    pub received: Vec<u8>,
    /// Frames of the capture that were not replayed, and why.
    pub not_replayed: Vec<(usize, String)>,
    /// Injected frames whose checksums were wrong as captured, and were injected so (the stack drops them).
    pub bad_checksums: Vec<usize>,
    /// Injected frames whose wrong checksums were repaired before injection.
    pub fixed_checksums: Vec<usize>,
    /// Remarks on how the replay went (address rewriting, reordering, ...).
    pub notes: Vec<String>,
    pub(super) rows: Vec<Row>,
    pub(super) wire: Vec<WireFrame>,
    pub(super) capture_t0: Duration,
    pub(super) transcript: String,
}

impl AutoReplay {
    /// True when every frame of the host is matched, or differs only by design, and the stack sent nothing
    /// unexplained.
    pub fn faithful(&self) -> bool {
        self.problems().is_empty()
    }

    /// One sentence per unexplained difference, missing frame and extra frame.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.pairs {
            match p.verdict {
                Verdict::Differs => {
                    for e in p.differences.iter().filter(|e| e.by_design.is_none()) {
                        let d = &e.difference;
                        out.push(format!(
                            "#{}: {} is {} where the capture's host sent {}",
                            p.frame,
                            label(d.field),
                            pretty(&d.ours),
                            pretty(&d.captured)
                        ));
                    }
                }
                Verdict::Missing => out.push(format!("#{}: ustack sent nothing for {}", p.frame, p.captured)),
                _ => {}
            }
        }
        for x in self.extras.iter().filter(|x| x.by_design.is_none()) {
            out.push(format!("{}: ustack sent {}, which the capture has no counterpart for", secs(x.at), x.text));
        }
        out
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts { host_frames: self.pairs.len(), extras: self.extras.len(), ..Counts::default() };
        for p in &self.pairs {
            match p.verdict {
                Verdict::Same => c.same += 1,
                Verdict::ByDesign => c.by_design += 1,
                Verdict::Differs => c.differ += 1,
                Verdict::Missing => c.missing += 1,
                Verdict::MissingByDesign => c.missing_by_design += 1,
                Verdict::NotReproducible => c.not_reproducible += 1,
            }
        }
        c.extras_by_design = self.extras.iter().filter(|x| x.by_design.is_some()).count();
        c.injected = self.rows.iter().filter(|r| matches!(r, Row::Injected { .. })).count();
        c
    }

    /// The pairing of host frame `frame`; panics when it is not a frame of the host.
    pub fn pair(&self, frame: usize) -> &AutoPair {
        self.pairs.iter().find(|p| p.frame == frame).unwrap_or_else(|| panic!("#{frame} is not a frame of the host"))
    }

    /// Every frame that went into the stack or came out of it, in order.
    pub fn wire(&self) -> &[WireFrame] {
        &self.wire
    }

    /// Writes [`AutoReplay::wire`] as a pcap (Ethernet, nanosecond timestamps) on the capture's own clock, so
    /// that it opens in Wireshark as the conversation. Returns the number of frames written.
    pub fn write_pcap(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<usize> {
        write_wire_pcap(path.as_ref(), &self.wire, self.capture_t0)
    }

    /// The library's full transcript of the replay (every frame, translated numbers, pairing decisions).
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// The side-by-side table; with `full`, the stack's whole frame is shown for each host frame, not only
    /// the fields that differ.
    pub fn render(&self, full: bool) -> String {
        render(self, full)
    }
}

impl fmt::Display for AutoReplay {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

// -------------------------------------------------------------------------------------------------------------
// Running.

/// Loads the capture and replays it with the automatic application: TCP when the host has a TCP segment
/// (on its given port, if any), frame by frame otherwise.
pub(super) fn run(b: ReplayBuilder) -> Result<AutoReplay, String> {
    let capture = b.source.load()?;
    let name = b.source.name();
    let hosts = rewrite::ipv4_hosts(&capture);
    if !hosts.contains(&b.host.ip) {
        let list: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        return Err(if list.is_empty() {
            format!("{name} has no IPv4 packet, and ustack only speaks IPv4")
        } else {
            format!("{} does not appear in {name} (its IPv4 hosts are {})", b.host.ip, list.join(", "))
        });
    }
    let ports = rewrite::tcp_ports(&capture, b.host.ip);
    let tcp = match b.host.port {
        Some(p) => ports.contains(&p),
        None => !ports.is_empty(),
    };
    if !tcp {
        if let (Some(p), false) = (b.host.port, ports.is_empty()) {
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            return Err(format!(
                "{name} has no TCP segment to or from {}:{p} (the host's TCP ports are {})",
                b.host.ip,
                list.join(", ")
            ));
        }
        return datagram::run(b, capture, name);
    }
    let mut notes = Vec::new();
    if b.host.port.is_none() && ports.len() > 1 {
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        notes.push(format!(
            "the host has {} TCP ports in the capture ({}); the first connection is replayed (give IP:PORT for another)",
            ports.len(),
            list.join(", ")
        ));
    }
    let r = Replay::start_with(b, capture)?;
    Ok(run_tcp(r, notes))
}

/// The application's side of a TCP replay.
#[derive(Default)]
struct App {
    fd: Option<Fd>,
    listener: Option<Fd>,
    /// Bytes handed over but not yet taken by `send()`.
    queue: Vec<u8>,
    /// The end of what the application handed over, in the host's relative sequence numbers.
    stream_end: u32,
    shutdown_pending: bool,
    shut: bool,
    closed: bool,
    eof: bool,
    failed: bool,
    received: Vec<u8>,
}

fn run_tcp(mut r: Replay, mut notes: Vec<String>) -> AutoReplay {
    let plan = r.tcp_plan();
    let mut rows = Vec::new();
    let mut app = App { stream_end: 1, ..App::default() };
    notes.extend(r.moved.iter().cloned());
    match plan {
        Plan::Listen => {
            let fd = r.listen();
            app.listener = Some(fd);
            rows.push(Row::App { at: r.now, text: format!("listen() on {}", r.host) });
        }
        Plan::MidStream { role } => {
            let (options, note) = r.synthesized_options(role);
            notes.push(note);
            rows.push(Row::App {
                at: r.now,
                text: format!(
                    "synthesized handshake, the stack as the {}",
                    if role == Role::Client { "client" } else { "server" }
                ),
            });
            let fd = r.handshake(role, options, 65535);
            rows.push(Row::App { at: r.now, text: "connection established".to_string() });
            app.fd = Some(fd);
        }
        _ => {}
    }
    while r.cursor < r.order.len() {
        let i = r.order[r.cursor];
        let (side, number, at) = (r.segs[i].side, r.segs[i].number, r.segs[i].at);
        r.advance_to(at);
        poll_app(&mut r, &mut app, &mut rows);
        if side == Side::Host {
            host_acts(&mut r, &mut app, &mut rows, plan, number);
            poll_app(&mut r, &mut app, &mut rows);
        }
        let extras_before = r.extras.len();
        let pairs_before = r.pairs.len();
        let injected_text = (side == Side::Peer).then(|| r.captured(number).to_string());
        r.step();
        rows.extend((extras_before..r.extras.len()).map(Row::Extra));
        match injected_text {
            Some(text) => {
                let note = r.frame(number).bad_checksums.map(|_| {
                    if r.fix_checksums {
                        "checksum wrong as captured: repaired".to_string()
                    } else {
                        "checksum wrong as captured: injected so, the stack drops it".to_string()
                    }
                });
                rows.push(Row::Injected { frame: number, at, text, note });
            }
            None => {
                if r.pairs.len() > pairs_before {
                    rows.push(Row::Host(r.pairs.len() - 1));
                }
            }
        }
        if side == Side::Peer {
            zero_window_expects_probes(&mut r, &mut app, &mut rows, number);
        }
        poll_app(&mut r, &mut app, &mut rows);
    }
    // What the stack sends soon after the capture's last frame (an ACK, a retransmission) is part of the story.
    let lag = r.max_lag;
    let before = r.extras.len();
    r.advance(lag);
    poll_app(&mut r, &mut app, &mut rows);
    r.finish();
    rows.extend((before..r.extras.len()).map(Row::Extra));
    r.explain_automatically();
    finish_tcp(r, plan, rows, app.received, notes)
}

impl Replay {
    /// What the automatic application does for this capture.
    pub fn tcp_plan(&self) -> Plan {
        let host = |f: fn(TcpFlags) -> bool| self.segs.iter().find(|s| s.side == Side::Host && f(s.tcp.flags));
        let syn = |f: TcpFlags| f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK);
        let syn_ack = |f: TcpFlags| f.contains(TcpFlags::SYN | TcpFlags::ACK);
        if let Some(s) = host(syn) {
            return Plan::Connect { syn_frame: s.number };
        }
        if host(syn_ack).is_some() {
            return Plan::Listen;
        }
        if self.segs.iter().any(|s| s.side == Side::Peer && syn(s.tcp.flags)) {
            return Plan::NoListener;
        }
        let role = if self.host.port() < self.peer.port() { Role::Server } else { Role::Client };
        Plan::MidStream { role }
    }

    /// The peer's options in a synthesized handshake: MSS 1460, window shift 7 and SACK-permitted; timestamps
    /// when both sides' segments carry them, the peer's TSval chosen so that the last one the stack holds when
    /// the handshake is over is the one the host echoes first in the capture (else just below the peer's first).
    fn synthesized_options(&self, role: Role) -> (TcpOptions, String) {
        let first = |side: Side| self.segs.iter().filter(|s| s.side == side).find_map(|s| s.tcp.options.timestamps);
        let (peer_ts, host_ts) = (first(Side::Peer), first(Side::Host));
        // The server's handshake ends with the peer's ACK, whose TSval is the SYN's plus one.
        let ack_step = if role == Role::Server { 1 } else { 0 };
        let timestamps = match (peer_ts, host_ts) {
            (Some(_), Some((_, ecr))) if ecr != 0 => Some((ecr.wrapping_sub(ack_step), 0)),
            (Some((v, _)), Some(_)) => Some((v.wrapping_sub(1 + ack_step), 0)),
            _ => None,
        };
        let options = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps,
            ..TcpOptions::default()
        };
        let ts = if timestamps.is_some() { ", timestamps" } else { "" };
        let note = format!(
            "the capture starts mid-connection: the peer's side of the synthesized handshake offers MSS 1460, \
             window shift 7 (its captured windows are read as scaled by 7), SACK{ts}"
        );
        (options, note)
    }
}

/// After peer frame `number`: when it closes the window and the host then probes it (segments at SND.NXT - 1
/// with no data, as Linux's persist timer sends them) before sending anything new, the host's application had
/// more to send than the window allowed. One more byte, which the capture never shows, stands for it, written
/// now, so that the stack's persist timer runs from the same moment.
fn zero_window_expects_probes(r: &mut Replay, app: &mut App, rows: &mut Vec<Row>, number: usize) {
    if app.fd.is_none()
        || r.frame(number).tcp.window != 0
        || !app.queue.is_empty()
        || app.shutdown_pending
        || app.closed
    {
        return;
    }
    let mut probes = false;
    for &j in &r.order[r.cursor..] {
        let s = &r.segs[j];
        if s.side != Side::Host {
            continue;
        }
        let c = r.captured(s.number);
        if !c.payload.is_empty() || c.flags.intersects(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) {
            break;
        }
        if c.seq == app.stream_end.wrapping_sub(1) {
            probes = true;
            break;
        }
    }
    if !probes {
        return;
    }
    app.queue.push(0);
    app.stream_end = app.stream_end.wrapping_add(1);
    rows.push(Row::App {
        at: r.now,
        text: "one more byte to send: the host's probes of the zero window show its application had more".into(),
    });
    poll_app(r, app, rows);
}

/// What the application does when the capture shows the host sending frame `number`.
fn host_acts(r: &mut Replay, app: &mut App, rows: &mut Vec<Row>, plan: Plan, number: usize) {
    let seg = r.captured(number);
    if plan == (Plan::Connect { syn_frame: number }) && app.fd.is_none() {
        let fd = r.stack.socket(ustack::Domain::Inet, ustack::SockType::Stream).expect("a socket in a fresh stack");
        let bound = r.stack.bind(fd, std::net::SocketAddr::V4(r.host));
        let result = r.stack.connect(fd, Some(std::net::SocketAddr::V4(r.peer)));
        let text = match (bound, result) {
            (Err(e), _) => format!("bind() to {} failed: {e}", r.host),
            (Ok(()), Err(Errno::EINPROGRESS)) => format!("connect() from {} to {} = EINPROGRESS", r.host, r.peer),
            (Ok(()), other) => format!("connect() from {} to {} = {other:?}", r.host, r.peer),
        };
        rows.push(Row::App { at: r.now, text });
        app.fd = Some(fd);
        r.settle();
        return;
    }
    if seg.flags.contains(TcpFlags::SYN) {
        return;
    }
    // The host's new bytes: this frame's, and those of the burst it starts.
    if seg.seq_len() > 0 && !seg.payload.is_empty() {
        let start = r.order.iter().position(|&j| r.segs[j].number == number).unwrap_or(r.cursor);
        let mut last_at = r.segs[r.order[start]].at;
        let mut burst = vec![number];
        for &j in &r.order[start + 1..] {
            let s = &r.segs[j];
            if s.side != Side::Host || s.payload.is_empty() || s.at.saturating_since(last_at) > BURST_GAP {
                break;
            }
            last_at = s.at;
            burst.push(s.number);
        }
        let mut zeros = 0usize;
        for f in burst {
            let s = r.captured(f);
            let len = s.payload.len() as u32;
            let ahead = s.seq.wrapping_sub(app.stream_end) as i32;
            if ahead > 0 && (ahead as u32) < (1 << 30) {
                app.queue.resize(app.queue.len() + ahead as usize, 0);
                zeros += ahead as usize;
                app.stream_end = s.seq;
            }
            let skip = app.stream_end.wrapping_sub(s.seq);
            if skip < len {
                app.queue.extend_from_slice(&s.payload[skip as usize..]);
                app.stream_end = s.seq.wrapping_add(len);
            }
        }
        if zeros > 0 {
            rows.push(Row::App {
                at: r.now,
                text: format!("{zeros} bytes of the host's stream are not in the capture: sent as zeros"),
            });
        }
    }
    if seg.flags.contains(TcpFlags::FIN) {
        app.shutdown_pending = true;
    }
    if seg.flags.contains(TcpFlags::RST) {
        if let Some(fd) = app.fd.filter(|_| !app.closed && r.state().is_some()) {
            let _ = r.stack.set_linger(fd, Some(Duration::ZERO));
            let _ = r.stack.close(fd);
            app.closed = true;
            rows.push(Row::App {
                at: r.now,
                text: "close() with SO_LINGER 0: an abort, as the host's reset shows".into(),
            });
            r.settle();
        }
    }
}

/// Accepts, reads, sends what is queued and closes, as far as the stack lets it now.
fn poll_app(r: &mut Replay, app: &mut App, rows: &mut Vec<Row>) {
    if let (Some(l), None) = (app.listener, app.fd) {
        if let Ok((fd, from)) = r.stack.accept(l) {
            app.fd = Some(fd);
            rows.push(Row::App { at: r.now, text: format!("accept() = the connection from {from}") });
        }
    }
    let Some(fd) = app.fd else { return };
    if app.closed || app.failed {
        return;
    }
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    let mut eof_now = false;
    loop {
        match r.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT) {
            Ok(0) => {
                eof_now = !app.eof;
                app.eof = true;
                break;
            }
            Ok(n) => {
                app.received.extend_from_slice(&buf[..n]);
                got += n;
            }
            Err(Errno::EAGAIN) | Err(Errno::ENOTCONN) => break,
            Err(e) => {
                rows.push(Row::App { at: r.now, text: format!("recv() = {e}") });
                app.failed = true;
                break;
            }
        }
    }
    if got > 0 {
        rows.push(Row::App { at: r.now, text: format!("recv() {}", plural(got, "byte", "bytes")) });
    }
    if eof_now {
        rows.push(Row::App { at: r.now, text: "recv() = 0: end of stream".to_string() });
    }
    let mut sent = 0;
    while !app.queue.is_empty() && !app.failed {
        match r.stack.send(fd, &app.queue, MsgFlags::DONTWAIT) {
            Ok(n) => {
                app.queue.drain(..n);
                sent += n;
            }
            Err(Errno::EAGAIN) | Err(Errno::ENOTCONN) => break,
            Err(e) => {
                rows.push(Row::App { at: r.now, text: format!("send() = {e}") });
                app.failed = true;
            }
        }
    }
    if sent > 0 {
        let left = if app.queue.is_empty() {
            String::new()
        } else {
            format!(" ({} more wait for room in the send buffer)", app.queue.len())
        };
        rows.push(Row::App { at: r.now, text: format!("send() {}{left}", plural(sent, "byte", "bytes")) });
    }
    if app.shutdown_pending && app.queue.is_empty() && !app.shut && !app.failed {
        app.shut = true;
        if app.eof {
            let _ = r.stack.close(fd);
            app.closed = true;
            rows.push(Row::App { at: r.now, text: "close()".to_string() });
        } else {
            let result = r.stack.shutdown(fd, Shutdown::Write);
            let text = match result {
                Ok(()) => "shutdown(SHUT_WR)".to_string(),
                Err(e) => format!("shutdown(SHUT_WR) = {e}"),
            };
            rows.push(Row::App { at: r.now, text });
        }
    } else if app.shut && app.eof && !app.closed {
        let _ = r.stack.close(fd);
        app.closed = true;
        rows.push(Row::App { at: r.now, text: "close(): both directions are finished".to_string() });
    }
    r.settle();
}

fn finish_tcp(r: Replay, plan: Plan, mut rows: Vec<Row>, received: Vec<u8>, mut notes: Vec<String>) -> AutoReplay {
    let mut pairs = Vec::new();
    for p in &r.pairs {
        let differences: Vec<Explained> =
            p.differences().into_iter().map(|d| Explained { by_design: r.by_design(p, &d), difference: d }).collect();
        let missing_reason = p.ours.is_none().then(|| r.missing_by_design(p)).flatten();
        let verdict = match (&p.ours, &missing_reason) {
            (None, Some(_)) => Verdict::MissingByDesign,
            (None, None) => Verdict::Missing,
            _ if differences.is_empty() => Verdict::Same,
            _ if differences.iter().all(|e| e.by_design.is_some()) => Verdict::ByDesign,
            _ => Verdict::Differs,
        };
        pairs.push(AutoPair {
            frame: p.frame,
            at: p.captured.at,
            captured: p.captured.to_string(),
            ours: p.ours.as_ref().map(|o| o.to_string()),
            ours_at: p.ours.as_ref().map(|o| o.at),
            differences,
            missing_reason,
            verdict,
            tcp: Some(p.clone()),
        });
    }
    let mut extras: Vec<AutoExtra> = r
        .extras
        .iter()
        .map(|x| AutoExtra {
            at: x.seg.at,
            text: x.seg.to_string(),
            by_design: r.extra_by_design(x),
            before_frame: x.before_frame,
            seg: Some(x.seg.clone()),
        })
        .collect();
    for (at, frame) in &r.other_frames {
        if crate::frames::parse_arp(frame).is_none() {
            rows.push(Row::Extra(extras.len()));
            let text = datagram::describe(frame);
            extras.push(AutoExtra { at: *at, text, by_design: None, before_frame: None, seg: None });
        }
    }
    let bad: Vec<usize> =
        r.segs.iter().filter(|s| s.side == Side::Peer && s.bad_checksums.is_some()).map(|s| s.number).collect();
    let (bad_checksums, fixed_checksums) = if r.fix_checksums { (Vec::new(), bad) } else { (bad, Vec::new()) };
    if !bad_checksums.is_empty() {
        notes.push(format!(
            "{} injected frames carry the wrong checksums they were captured with (checksum offload on the \
             capturing host?): the stack drops them; repairing them (--fix-checksums) replays what was meant",
            bad_checksums.len()
        ));
    }
    AutoReplay {
        name: r.fixture.clone(),
        host: r.host.to_string(),
        peer: Some(r.peer.to_string()),
        plan,
        pairs,
        extras,
        received,
        not_replayed: r.skipped.clone(),
        bad_checksums,
        fixed_checksums,
        notes,
        rows,
        wire: r.wire.clone(),
        capture_t0: r.capture_t0,
        transcript: r.report(),
    }
}

// -------------------------------------------------------------------------------------------------------------
// The "by design" table.

const TSVAL: &str = "TSval comes from our own clock and a per-connection offset (RFC 7323 section 5.4)";
const AFTER_CAPTURE: &str = "sent after the capture's last frame: the capture cannot show what its host did then";

impl Replay {
    /// Why `d`, a difference in `pair`, is the stack's own choice, or `None` when it is not one: the automatic
    /// "by design" table. Covered: TSval (our clock), the window (our buffer, as long as it is not zero), in
    /// a SYN or SYN-ACK the MSS (our link's), the window shift and the options we offer or accept where the
    /// peer allows them, whether later segments carry timestamps (as each handshake agreed), PSH (the
    /// sender's choice) and a pure ACK acknowledging more than the capture's (ACK timing).
    pub fn by_design(&self, pair: &Pair, d: &Difference) -> Option<String> {
        let ours = pair.ours.as_ref()?;
        let c = &pair.captured;
        let config = self.stack.config();
        let syn = ours.flags.contains(TcpFlags::SYN);
        let syn_ack = syn && ours.flags.contains(TcpFlags::ACK);
        let peer_offered = |f: fn(&TcpOptions) -> bool| self.peer_syn.as_ref().is_some_and(f);
        let buffer_kib = config.tcp.rcvbuf_default / 1024;
        match d.field {
            Field::TsVal => Some(TSVAL.to_string()),
            Field::Window if ours.window_bytes == Some(0) && c.window_bytes != Some(0) => None,
            Field::Window if syn => Some(format!(
                "the window of a SYN is our own choice: a whole number of segments within 64 KiB of our {buffer_kib} \
                 KiB buffer, as Linux does (RFC 9293 section 3.8.6); the capture's host had its own buffer"
            )),
            Field::Window => Some(format!(
                "the receive window is our own: our {buffer_kib} KiB buffer less what is unread (the automatic \
                 application reads at once), in units of our window shift (RFC 9293 section 3.8.6, RFC 7323); the \
                 capture's host had its own buffer and reader"
            )),
            Field::Mss if syn && ours.options.mss == Some((config.mtu - 40) as u16) => Some(format!(
                "we announce our link's MTU less 40 = {} (RFC 9293 section 3.7.1, MUST-14); the capture's host \
                 announced its own",
                config.mtu - 40
            )),
            Field::WindowScale if syn => match (ours.options.window_scale, c.options.window_scale) {
                (Some(o), _) if !syn_ack || peer_offered(|p| p.window_scale.is_some()) => Some(format!(
                    "we offer window shift {o} for our {buffer_kib} KiB buffer (RFC 7323 section 2.3: each receiver \
                     picks its own shift)"
                )),
                (None, Some(_)) if syn_ack && !peer_offered(|p| p.window_scale.is_some()) => Some(
                    "the peer did not offer window scaling, so a SYN-ACK must not carry it (RFC 7323 section 1.3); \
                     the capture's host sent it anyway"
                        .to_string(),
                ),
                _ => None,
            },
            Field::SackPermitted if syn => match (ours.options.sack_permitted, syn_ack) {
                (true, false) => Some("we offer SACK (RFC 2018), as Linux does; the capture's host did not".into()),
                (true, true) if peer_offered(|p| p.sack_permitted) => {
                    Some("the peer offered SACK and we accept it (RFC 2018); the capture's host declined".into())
                }
                (false, true) if !peer_offered(|p| p.sack_permitted) => Some(
                    "the peer did not offer SACK, so a SYN-ACK must not carry SACK-permitted (RFC 2018 section 2); \
                     the capture's host sent it anyway"
                        .into(),
                ),
                _ => None,
            },
            Field::Timestamps if syn => match (ours.options.timestamps.is_some(), syn_ack) {
                (true, false) => Some(
                    "we offer timestamps (RFC 7323; net.ipv4.tcp_timestamps = 1, as on Linux); the capture's host \
                     did not"
                        .into(),
                ),
                (true, true) if peer_offered(|p| p.timestamps.is_some()) => Some(
                    "the peer offered timestamps and we accept them (RFC 7323 section 3.2); the capture's host \
                     declined"
                        .into(),
                ),
                (false, true) if !peer_offered(|p| p.timestamps.is_some()) => Some(
                    "the peer did not offer timestamps, so a SYN-ACK must not carry them (RFC 7323 section 3.2); \
                     the capture's host sent them anyway"
                        .into(),
                ),
                _ => None,
            },
            Field::Timestamps | Field::TsEcr if self.mid_stream() => None,
            Field::Timestamps => {
                let agreed = |own: Option<TcpOptions>| {
                    own.is_some_and(|o| o.timestamps.is_some()) && peer_offered(|p| p.timestamps.is_some())
                };
                (agreed(self.our_syn) != agreed(self.host_syn)).then(|| {
                    "whether segments carry timestamps follows from the handshake, and ours agreed otherwise than \
                     the capture's (RFC 7323 section 3.2)"
                        .to_string()
                })
            }
            Field::Flags if (ours.flags.0 ^ c.flags.0) == TcpFlags::PSH.0 => Some(
                "PSH is the sender's choice (RFC 9293 section 3.9.1): we set it on the segment that empties what \
                 the application wrote"
                    .into(),
            ),
            Field::Sack if self.sack_gap_before_capture(ours, c) => Some(
                "the capture's host had received more before the capture began (its SACK blocks start lower): \
                 bytes the capture does not contain, so the replay cannot give them to the stack"
                    .into(),
            ),
            Field::Ack if ours.is_pure_ack() && c.is_pure_ack() => match (ours.ack, c.ack) {
                (Some(o), Some(k)) if (o.wrapping_sub(k) as i32) > 0 => Some(
                    "we acknowledged more at once: ACK timing is our own (quick ACKs, then delayed ACKs of at most \
                     40 ms, RFC 9293 section 3.8.6.3)"
                        .into(),
                ),
                _ => None,
            },
            _ => None,
        }
    }

    /// True when the capture has no SYN: it starts mid-connection.
    fn mid_stream(&self) -> bool {
        !self.segs.iter().any(|s| s.tcp.flags.contains(TcpFlags::SYN))
    }

    /// True when the captured SACK blocks are ours but reach further down, over bytes no peer segment in the
    /// capture carries (they arrived before it began).
    fn sack_gap_before_capture(&self, ours: &super::Seg, c: &super::Seg) -> bool {
        if ours.sack.len() != c.sack.len() || c.sack.is_empty() {
            return false;
        }
        let peer: Vec<(u32, u32)> = self
            .segs
            .iter()
            .filter(|s| s.side == Side::Peer)
            .map(|s| self.captured(s.number))
            .map(|s| (s.seq, s.seq.wrapping_add(s.payload.len() as u32)))
            .collect();
        ours.sack.iter().zip(&c.sack).all(|(&(ol, or), &(cl, cr))| {
            let lower = (ol.wrapping_sub(cl) as i32) >= 0;
            let gap_unseen =
                peer.iter().all(|&(l, r)| (r.wrapping_sub(cl) as i32) <= 0 || (l.wrapping_sub(ol) as i32) >= 0);
            or == cr && lower && gap_unseen
        })
    }

    /// Why the stack's segment `x`, which no host frame stands for, is by design: a pure ACK of new data (ACK
    /// timing is our own), a window update after the application read, the answer to a duplicate or
    /// out-of-order segment of the peer (which RFC 9293 and RFC 5681 require), or anything sent after the
    /// capture's last frame (the capture cannot show what its host did then). `None` otherwise.
    pub fn extra_by_design(&self, x: &Extra) -> Option<String> {
        let seg = &x.seg;
        let after_capture = self.segs.iter().map(|s| s.at).max().is_some_and(|end| seg.at > end);
        if !seg.is_pure_ack() {
            return after_capture.then(|| AFTER_CAPTURE.to_string());
        }
        let earlier: Vec<_> = (0..x.index.min(self.sent.len())).map(|k| self.our_seg(k)).collect();
        let highest = earlier.iter().filter_map(|s| s.ack).max_by(|a, b| (a.wrapping_sub(*b) as i32).cmp(&0));
        let new_data = match (seg.ack, highest) {
            (Some(a), Some(h)) => (a.wrapping_sub(h) as i32) > 0,
            (Some(_), None) => true,
            _ => false,
        };
        if new_data {
            return Some(
                "an acknowledgment at our own pace: quick ACKs at the start of a connection, then at least every \
                 second full-sized segment or within 40 ms (RFC 9293 section 3.8.6.3, RFC 1122 section 4.2.3.2); \
                 the capture's host acknowledged on its own schedule"
                    .into(),
            );
        }
        let last_window = earlier.last().and_then(|s| s.window_bytes);
        if let (Some(now), Some(before)) = (seg.window_bytes, last_window) {
            if now > before {
                return Some("a window update after the application read (RFC 9293 section 3.8.6.2.2)".into());
            }
        }
        // The peer's latest segment before this one: a retransmission of what we had, or beyond a hole.
        let latest = self.segs.iter().filter(|s| s.side == Side::Peer && s.at <= seg.at).max_by_key(|s| s.at);
        if let (Some(p), Some(ack)) = (latest, seg.ack) {
            let p = self.captured(p.number);
            let end = p.seq.wrapping_add(p.seq_len());
            let old = p.seq_len() > 0 && (end.wrapping_sub(ack) as i32) <= 0;
            let probe = p.seq_len() == 0 && (p.seq.wrapping_sub(ack) as i32) < 0;
            if old || probe {
                return Some(
                    "the answer to a segment of the peer's that is old (a retransmission, or a window probe): it is \
                     acknowledged at once (RFC 9293 section 3.10.7.4)"
                        .into(),
                );
            }
            if (p.seq.wrapping_sub(ack) as i32) > 0 {
                return Some(
                    "a duplicate ACK for a segment beyond a hole, sent at once (RFC 5681 section 4.2, RFC 9293 \
                     section 3.10.7.4)"
                        .into(),
                );
            }
        }
        after_capture.then(|| AFTER_CAPTURE.to_string())
    }

    /// Why the stack sent nothing for host frame `pair` by design: a pure ACK whose acknowledgment another
    /// segment of ours carried by then (ACK timing is our own). `None` otherwise.
    pub fn missing_by_design(&self, pair: &Pair) -> Option<String> {
        let c = &pair.captured;
        if pair.ours.is_some() || !c.is_pure_ack() {
            return None;
        }
        let mid_stream = self.mid_stream();
        let first_peer = self.order.iter().map(|&j| &self.segs[j]).position(|s| s.side == Side::Peer);
        let position = self.order.iter().position(|&j| self.segs[j].number == pair.frame);
        if mid_stream && matches!((first_peer, position), (Some(p), Some(me)) if me < p) || first_peer.is_none() {
            return Some(
                "it answers a segment of the peer's from before the capture began, which the replay cannot inject"
                    .into(),
            );
        }
        let wanted = c.ack?;
        // An acknowledgment of data before the capture's start (relative numbers below 1) stands for nothing
        // the replay can show; a zero-window probe (below what the host had sent) is not an acknowledgment.
        if (wanted as i32) < 1 {
            return None;
        }
        let sent_before = self
            .segs
            .iter()
            .filter(|s| s.side == Side::Host && s.at <= c.at && s.number != pair.frame)
            .map(|s| self.captured(s.number))
            .any(|s| (s.seq.wrapping_add(s.seq_len()).wrapping_sub(c.seq) as i32) > 0);
        if sent_before {
            return None;
        }
        let covered = (0..self.sent.len())
            .map(|k| self.our_seg(k))
            .any(|s| s.at <= c.at + self.max_lag && s.ack.is_some_and(|a| (a.wrapping_sub(wanted) as i32) >= 0));
        covered.then(|| {
            "another segment of ours acknowledged this: ACK timing is our own (delayed ACKs of at most 40 ms, RFC \
             9293 section 3.8.6.3)"
                .to_string()
        })
    }
}

// -------------------------------------------------------------------------------------------------------------
// The side-by-side table.

/// A field's name as tcpdump would print it.
pub(super) fn label(field: Field) -> &'static str {
    match field {
        Field::Addresses => "addresses",
        Field::Flags => "flags",
        Field::Seq => "seq",
        Field::Ack => "ack",
        Field::Window => "win",
        Field::Mss => "mss",
        Field::WindowScale => "wscale",
        Field::SackPermitted => "sackOK",
        Field::Timestamps => "TS",
        Field::TsVal => "TS val",
        Field::TsEcr => "TS ecr",
        Field::Sack => "sack",
        Field::Payload => "payload",
        Field::Ttl => "ttl",
        Field::IpId => "id",
        Field::DontFragment => "DF",
        Field::Tos => "tos",
        Field::Length => "length",
        Field::Fragment => "frag",
        Field::Icmp => "icmp",
        Field::Arp => "arp",
        Field::Checksum => "cksum",
    }
}

/// A [`Difference`]'s value without Rust's `Some(..)`.
pub(super) fn pretty(v: &str) -> String {
    match v {
        "None" => "none".to_string(),
        "true" => "yes".to_string(),
        "false" => "no".to_string(),
        _ => v.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')).unwrap_or(v).to_string(),
    }
}

/// Virtual time as seconds from [`ORIGIN`], signed.
pub(super) fn secs(at: Instant) -> String {
    let nanos = i128::from(at.as_nanos()) - i128::from(ORIGIN.as_nanos());
    format!("{:+.6}", nanos as f64 / 1e9)
}

fn lag(ours: Instant, captured: Instant) -> String {
    let d = i128::from(ours.as_nanos()) - i128::from(captured.as_nanos());
    if d.abs() < 1_000_000 {
        return String::new();
    }
    let ms = d as f64 / 1e6;
    if ms > 0.0 {
        format!(" ({ms:.1} ms later)")
    } else {
        format!(" ({:.1} ms earlier)", -ms)
    }
}

/// Numbers the reasons as they are first used.
struct Legend(Vec<String>);

impl Legend {
    fn mark(&mut self, reason: &str) -> String {
        let n = match self.0.iter().position(|r| r == reason) {
            Some(i) => i + 1,
            None => {
                self.0.push(reason.to_string());
                self.0.len()
            }
        };
        format!("[{n}]")
    }
}

fn render(a: &AutoReplay, full: bool) -> String {
    let mut out = String::new();
    let peer = a.peer.as_ref().map_or(String::new(), |p| format!(", the peer is {p}"));
    out.push_str(&format!("replay of {}: ustack plays {}{peer}\n", a.name, a.host));
    out.push_str(&format!("application: {}\n", a.plan));
    for n in &a.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if !a.not_replayed.is_empty() {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (f, why) in &a.not_replayed {
            match groups.iter_mut().find(|(w, _)| w == why) {
                Some((_, list)) => list.push(*f),
                None => groups.push((why.clone(), vec![*f])),
            }
        }
        let parts: Vec<String> = groups.iter().map(|(why, list)| format!("{} ({why})", frame_list(list))).collect();
        out.push_str(&format!("not replayed: {}\n", parts.join("; ")));
    }
    out.push('\n');

    let mut legend = Legend(Vec::new());
    let width = a
        .rows
        .iter()
        .map(|row| match row {
            Row::Injected { text, .. } => text.len(),
            Row::Host(i) => a.pairs[*i].captured.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(20)
        .clamp(20, 96);
    out.push_str(&format!("{:<6} {:>10}    {:<width$}   {}\n", "frame", "time", "capture (> host, < peer)", "ustack"));
    for row in &a.rows {
        let line = match row {
            Row::Injected { frame, at, text, note } => {
                let note = note.as_ref().map_or(String::new(), |n| format!(" ({n})"));
                format!("{:<6} {:>10}  < {text:<width$}   injected{note}", format!("#{frame}"), secs(*at))
            }
            Row::App { at, text } => format!("{:<6} {:>10}    {:<width$}   app: {text}", "", secs(*at), ""),
            Row::Extra(i) => {
                let x = &a.extras[*i];
                let why =
                    x.by_design.as_ref().map_or("  (no counterpart)".to_string(), |r| format!(" {}", legend.mark(r)));
                format!("{:<6} {:>10}    {:<width$}   + {}{why}", "", secs(x.at), "", x.text)
            }
            Row::Host(i) => {
                let p = &a.pairs[*i];
                let right = host_cell(p, full, &mut legend);
                format!("{:<6} {:>10}  > {:<width$}   {right}", format!("#{}", p.frame), secs(p.at), p.captured)
            }
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }

    out.push('\n');
    for (i, reason) in legend.0.iter().enumerate() {
        out.push_str(&format!("[{}] by design: {reason}\n", i + 1));
    }
    let c = a.counts();
    let mut summary = format!(
        "{}: {} identical, {} differ only by design, {} differ, {} missing",
        plural(c.host_frames, "frame of the host", "frames of the host"),
        c.same,
        c.by_design,
        c.differ,
        c.missing
    );
    if c.missing_by_design > 0 {
        summary.push_str(&format!(", {} not sent by design", c.missing_by_design));
    }
    if c.not_reproducible > 0 {
        summary.push_str(&format!(", {} not reproducible", c.not_reproducible));
    }
    summary.push_str(&format!(
        "; {} from ustack ({} by design); {} injected",
        plural(c.extras, "extra frame", "extra frames"),
        c.extras_by_design,
        plural(c.injected, "frame", "frames")
    ));
    out.push_str(&summary);
    out.push('\n');
    let problems = a.problems();
    if problems.is_empty() {
        out.push_str("verdict: faithful, every frame of the host matched or explained\n");
    } else {
        out.push_str(&format!("verdict: {} unexplained:\n", problems.len()));
        for p in problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The ustack column of a host frame.
fn host_cell(p: &AutoPair, full: bool, legend: &mut Legend) -> String {
    let when = match p.ours_at {
        Some(t) => lag(t, p.at),
        None => String::new(),
    };
    match p.verdict {
        Verdict::Missing => "- nothing sent".to_string(),
        Verdict::MissingByDesign => {
            format!("- nothing sent {}", legend.mark(p.missing_reason.as_deref().unwrap_or_default()))
        }
        Verdict::NotReproducible => {
            format!("· not reproducible {}", legend.mark(p.missing_reason.as_deref().unwrap_or_default()))
        }
        Verdict::Same if full => format!("= {}{when}", p.ours.as_deref().unwrap_or_default()),
        Verdict::Same => format!("= same{when}"),
        Verdict::ByDesign | Verdict::Differs => {
            let mark = if p.verdict == Verdict::ByDesign { "~" } else { "!" };
            let fields: Vec<String> = p
                .differences
                .iter()
                .map(|e| {
                    let d = &e.difference;
                    match &e.by_design {
                        Some(r) => format!("{} {} {}", label(d.field), pretty(&d.ours), legend.mark(r)),
                        None => format!(
                            "{} {} (captured {}) UNEXPLAINED",
                            label(d.field),
                            pretty(&d.ours),
                            pretty(&d.captured)
                        ),
                    }
                })
                .collect();
            if full {
                format!("{mark} {}{when}: {}", p.ours.as_deref().unwrap_or_default(), fields.join("; "))
            } else {
                format!("{mark} {}{when}", fields.join("; "))
            }
        }
    }
}

/// `#1-#4, #9` from `[1, 2, 3, 4, 9]`.
fn frame_list(frames: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut j = i;
        while j + 1 < frames.len() && frames[j + 1] == frames[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("#{}-#{}", frames[i], frames[j]) } else { format!("#{}", frames[i]) });
        i = j + 1;
    }
    parts.join(", ")
}
