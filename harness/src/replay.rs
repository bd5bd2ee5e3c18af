//! Pcap replay of one TCP connection through a ustack [`Stack`]: the stack plays one host of a real capture
//! (the *host*), the other host's segments (the *peer*'s) are injected, and what the stack sends is paired with
//! what the capture's host sent, field by field, in relative sequence numbers.
//!
//! ```ignore
//! let mut r = Replay::new("03_dns_over_tcp_full_lifecycle.pcap", "192.168.1.11:33779");
//! r.explain(Field::TsVal, "our timestamp clock is our own (RFC 7323 section 5.4)");
//! r.play_until(1); //                      the capture's time of frame 1, nothing played yet
//! let fd = r.connect(); //                 the application acts when the capture shows its host acting
//! r.play_all(); //                         peer frames are injected, host frames paired with ours
//! r.assert_faithful(); //                  every host frame answered, every difference explained
//! ```
//!
//! # What the harness does
//!
//! * **Identity.** The stack gets the host's IPv4 address (as a /24) and MAC. An off-link peer is reached
//!   through a gateway whose ARP entry is primed with the peer's MAC, as the capture's router was; ARP requests
//!   the stack sends later are answered the same way. The peer's MAC, IP address and port are kept.
//! * **Time.** Virtual time follows the capture's own timestamps: frame 1 is at [`ORIGIN`], the stack starts
//!   [`LEAD`] earlier. Before anything happens at time `t` the stack is polled at every deadline up to `t`.
//! * **Sequence numbers.** The stack picks its own ISN (learnt from its SYN or SYN-ACK). The peer's numbers
//!   are injected as captured; the acknowledgment numbers, SACK blocks and echoed timestamps (TSecr) of
//!   injected segments are translated from the capture host's spaces into the stack's, and checksums
//!   recomputed (which also repairs captures taken with checksum offload). Everything else, options included,
//!   goes in byte for byte: a capture's illegal option values reach the stack unaltered.
//! * **Order.** [`Order::Causal`] (the default) moves a segment that acknowledges what the other side has not
//!   yet sent in capture order to just after the segment that sent it: captures merged from two interfaces
//!   can show a SYN-ACK before its SYN. [`Order::Capture`] replays the file's order as it is.
//! * **Pairing.** A host frame is paired with the earliest segment the stack sent that agrees on flags (PSH
//!   aside), relative sequence and acknowledgment numbers and length; the stack may send it up to
//!   `max_lag` after the capture's host did, but not after the peer's next segment. Failing an exact match, the
//!   earliest unpaired segment with the same flags is taken, then any unpaired one: the differences then show
//!   what went wrong. Segments the stack sent before its paired one, or after the last pairing, are *extras*.
//!
//! Differences that are the stack's own choice (its ISN, window, timestamp clock, an option it offers) are
//! declared with [`Replay::explain`] and friends, each with its reason; [`Replay::assert_faithful`] then fails
//! on any difference, missing segment or extra that no explanation covers, printing the whole transcript.
//!
//! # The automatic application
//!
//! [`ReplayBuilder::auto`] plays the application side by itself, as the capture implies, and returns an
//! [`AutoReplay`]: the side-by-side comparison, each difference explained by design where it is one (see
//! [`auto::by_design`]), and every frame that went into or out of the stack, for [`AutoReplay::write_pcap`].
//!
//! ```ignore
//! let replay = Replay::builder("03_dns_over_tcp_full_lifecycle.pcap", "192.168.1.11").auto();
//! assert!(replay.faithful(), "{replay}");
//! ```
//!
//! Captures whose host has no TCP segment (UDP, ICMP, ARP) are replayed frame by frame instead: the peers'
//! frames are injected, UDP ports are bound and datagrams sent as the capture shows, and what the stack
//! answered is paired with what the host sent.

pub mod auto;
mod datagram;
mod rewrite;

pub use auto::{AutoExtra, AutoPair, AutoReplay, Counts, Explained, Plan, Verdict};
pub use rewrite::{first_destination, ipv4_hosts};

use crate::fixtures;
use crate::frames::{arp_request, parse_arp};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use ustack::tcp::SeqNum;
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use ustack::wire::ipv4::{Ipv4Cidr, Ipv4Header};
use ustack::wire::tcp::{TcpFlags, TcpHeader, TcpOptions};
use ustack::wire::{checksum, ip_proto};
use ustack::{Domain, Errno, Fd, Instant, MsgFlags, SockType, Stack, StackConfig};
use ustack_netdev::pcap::{CaptureFile, LinkType};

/// Virtual time of the capture's first packet.
pub const ORIGIN: Instant = Instant::from_secs(10);
/// The stack starts this long before the capture's first packet: room for a synthesized handshake.
pub const LEAD: Duration = Duration::from_secs(1);

/// Which of the capture's two hosts sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The host the stack plays: its segments are what the stack must send.
    Host,
    /// The other host: its segments are injected.
    Peer,
}

/// The order in which the capture is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The file's order.
    Capture,
    /// The file's order, except that a segment acknowledging sequence numbers the other side has not sent yet
    /// waits until it has (each side's own segments keep their order).
    Causal,
}

/// One TCP segment of the replayed connection, as read from the capture.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Frame number in the file (1-based, as Wireshark counts).
    pub number: usize,
    /// Virtual time: [`ORIGIN`] plus the capture time since the file's first packet.
    pub at: Instant,
    pub side: Side,
    /// Ethernet source and destination; for other link types the destination is all zeros and the source
    /// whatever the reader could make of the capture's link-layer address.
    pub macs: (MacAddr, MacAddr),
    /// The IP datagram with both checksums recomputed.
    pub datagram: Vec<u8>,
    /// The IP header and TCP checksums as captured, each when it was wrong (typically a capture taken on the
    /// sending host before its NIC filled them in); `None` when both were right.
    pub bad_checksums: Option<(Option<u16>, Option<u16>)>,
    pub ip: Ipv4Header,
    pub tcp: TcpHeader,
    pub payload: Vec<u8>,
}

/// A segment in relative terms, for comparison and display.
#[derive(Debug, Clone)]
pub struct Seg {
    /// The capture frame it came from (`None` for the stack's own segments and synthesized ones).
    pub frame: Option<usize>,
    pub at: Instant,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// `(source, destination)` MACs, when the capture's link is Ethernet (else they are not comparable).
    pub macs: Option<(MacAddr, MacAddr)>,
    pub flags: TcpFlags,
    /// Relative to the sender's ISN when it is known, else absolute.
    pub seq: u32,
    /// Relative to the receiver's ISN when it is known, else absolute; `None` without the ACK bit.
    pub ack: Option<u32>,
    /// The window field as carried.
    pub window: u16,
    /// The window in bytes: unscaled on a SYN (RFC 7323 section 2.2), else shifted by the sender's scale
    /// once both SYNs are known; `None` when the handshake is not known.
    pub window_bytes: Option<u64>,
    /// The options as carried (timestamps absolute).
    pub options: TcpOptions,
    /// SACK blocks, relative to the receiver's ISN.
    pub sack: Vec<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl Seg {
    /// True for a segment with only the ACK bit and no data.
    pub fn is_pure_ack(&self) -> bool {
        self.flags == TcpFlags::ACK && self.payload.is_empty()
    }

    /// The sequence space the segment occupies (data, SYN, FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags.contains(TcpFlags::SYN))
            + u32::from(self.flags.contains(TcpFlags::FIN))
    }

    fn key(&self) -> (u8, u32, Option<u32>, usize) {
        (self.flags.0 & !TcpFlags::PSH.0, self.seq, self.ack, self.payload.len())
    }

    fn window_str(&self) -> String {
        match self.window_bytes {
            Some(b) if b != u64::from(self.window) => format!("{} ({b} bytes)", self.window),
            _ => self.window.to_string(),
        }
    }
}

impl fmt::Display for Seg {
    /// tcpdump's style, relative numbers: `S. seq 0 ack 1 win 64240 <mss 1460,sackOK,wscale 7> len 0`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:<3} seq {}", self.flags.to_string(), self.seq)?;
        if let Some(ack) = self.ack {
            write!(f, " ack {ack}")?;
        }
        write!(f, " win {}", self.window_str())?;
        let o = &self.options;
        let mut opts = Vec::new();
        if let Some(m) = o.mss {
            opts.push(format!("mss {m}"));
        }
        if o.sack_permitted {
            opts.push("sackOK".to_string());
        }
        if let Some((v, e)) = o.timestamps {
            opts.push(format!("TS val {v} ecr {e}"));
        }
        if let Some(w) = o.window_scale {
            opts.push(format!("wscale {w}"));
        }
        if !self.sack.is_empty() {
            let blocks: Vec<String> = self.sack.iter().map(|(l, r)| format!("{l}:{r}")).collect();
            opts.push(format!("sack {}", blocks.join(" ")));
        }
        if !opts.is_empty() {
            write!(f, " <{}>", opts.join(","))?;
        }
        write!(f, " len {}", self.payload.len())
    }
}

/// What a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// IP addresses and ports (and MACs on Ethernet captures).
    Addresses,
    Flags,
    /// Relative sequence number.
    Seq,
    /// Relative acknowledgment number.
    Ack,
    /// The window, in bytes when both scales are known, else as carried.
    Window,
    Mss,
    WindowScale,
    SackPermitted,
    /// Whether a timestamp option is present.
    Timestamps,
    /// TSval, compared when both carry timestamps.
    TsVal,
    /// TSecr, compared when both carry timestamps (the peer's TSvals are injected as captured, so ours and
    /// the capture's echo the same values).
    TsEcr,
    /// SACK blocks, relative.
    Sack,
    Payload,
    /// IP time to live (datagram replays).
    Ttl,
    /// IP identification (datagram replays).
    IpId,
    /// IP Don't Fragment bit (datagram replays).
    DontFragment,
    /// IP type of service (datagram replays).
    Tos,
    /// IP total length, or the frame's length for ARP (datagram replays).
    Length,
    /// Fragment offset and More Fragments (datagram replays).
    Fragment,
    /// ICMP type, code, identifier and sequence number (datagram replays).
    Icmp,
    /// ARP operation and addresses (datagram replays).
    Arp,
    /// The transport checksum (datagram replays; TCP checksums are always recomputed).
    Checksum,
}

/// One field on which the stack's segment and the capture's differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: Field,
    pub ours: String,
    pub captured: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}: ours {} vs captured {}", self.field, self.ours, self.captured)
    }
}

/// A host frame of the capture and the stack's segment in its place.
#[derive(Debug, Clone)]
pub struct Pair {
    pub frame: usize,
    pub captured: Seg,
    /// `None` when the stack sent nothing that could stand for the frame.
    pub ours: Option<Seg>,
}

impl Pair {
    /// The stack's segment; panics, naming the frame, when it sent none.
    pub fn ours(&self) -> &Seg {
        self.ours.as_ref().unwrap_or_else(|| panic!("frame {}: the stack sent nothing in its place", self.frame))
    }

    /// The fields that differ, in [`Field`] order. Empty when the stack sent nothing (see [`Pair::ours`]).
    pub fn differences(&self) -> Vec<Difference> {
        let Some(o) = &self.ours else { return Vec::new() };
        let c = &self.captured;
        let mut d = Vec::new();
        let mut diff = |field, ours: String, captured: String| {
            if ours != captured {
                d.push(Difference { field, ours, captured });
            }
        };
        let addrs = |s: &Seg| match (s.macs, o.macs.is_some() && c.macs.is_some()) {
            (Some((a, b)), true) => format!("{}>{} {a}>{b}", s.src, s.dst),
            _ => format!("{}>{}", s.src, s.dst),
        };
        diff(Field::Addresses, addrs(o), addrs(c));
        diff(Field::Flags, o.flags.to_string(), c.flags.to_string());
        diff(Field::Seq, o.seq.to_string(), c.seq.to_string());
        diff(Field::Ack, format!("{:?}", o.ack), format!("{:?}", c.ack));
        match (o.window_bytes, c.window_bytes) {
            (Some(a), Some(b)) => diff(Field::Window, a.to_string(), b.to_string()),
            _ => diff(Field::Window, format!("raw {}", o.window), format!("raw {}", c.window)),
        }
        let (oo, co) = (&o.options, &c.options);
        diff(Field::Mss, format!("{:?}", oo.mss), format!("{:?}", co.mss));
        diff(Field::WindowScale, format!("{:?}", oo.window_scale), format!("{:?}", co.window_scale));
        diff(Field::SackPermitted, oo.sack_permitted.to_string(), co.sack_permitted.to_string());
        diff(Field::Timestamps, oo.timestamps.is_some().to_string(), co.timestamps.is_some().to_string());
        if let (Some((ov, oe)), Some((cv, ce))) = (oo.timestamps, co.timestamps) {
            diff(Field::TsVal, ov.to_string(), cv.to_string());
            diff(Field::TsEcr, oe.to_string(), ce.to_string());
        }
        diff(Field::Sack, format!("{:?}", o.sack), format!("{:?}", c.sack));
        if o.payload != c.payload {
            let at = o.payload.iter().zip(&c.payload).position(|(a, b)| a != b);
            let first = at.map_or(String::new(), |i| format!(", first difference at byte {i}"));
            d.push(Difference {
                field: Field::Payload,
                ours: format!("{} bytes{first}", o.payload.len()),
                captured: format!("{} bytes", c.payload.len()),
            });
        }
        d
    }

    /// The fields that differ.
    pub fn differing_fields(&self) -> Vec<Field> {
        self.differences().into_iter().map(|d| d.field).collect()
    }
}

/// A segment the stack sent that no host frame was paired with.
#[derive(Debug, Clone)]
pub struct Extra {
    /// The host frame it was passed over for, or `None` when it came after the last pairing.
    pub before_frame: Option<usize>,
    /// Which of the stack's segments it is (0-based, in the order sent).
    pub index: usize,
    pub seg: Seg,
}

/// Edits to a capture frame (in the capture's numbers, before translation) for [`Replay::step_edited`] and
/// [`Replay::inject_copy`]. Checksums are recomputed afterwards.
pub struct SegmentEdit {
    datagram: Vec<u8>,
}

impl SegmentEdit {
    fn tcp_at(&self) -> usize {
        usize::from(self.datagram[0] & 0x0f) * 4
    }
    fn put32(&mut self, off: usize, v: u32) {
        let at = self.tcp_at() + off;
        self.datagram[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn get32(&self, off: usize) -> u32 {
        let at = self.tcp_at() + off;
        u32::from_be_bytes(self.datagram[at..at + 4].try_into().unwrap())
    }
    pub fn seq(&self) -> u32 {
        self.get32(4)
    }
    pub fn set_seq(&mut self, seq: u32) {
        self.put32(4, seq);
    }
    pub fn ack(&self) -> u32 {
        self.get32(8)
    }
    pub fn set_ack(&mut self, ack: u32) {
        self.put32(8, ack);
    }
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let at = self.tcp_at() + 13;
        self.datagram[at] = flags.0;
    }
    pub fn set_window(&mut self, window: u16) {
        let at = self.tcp_at() + 14;
        self.datagram[at..at + 2].copy_from_slice(&window.to_be_bytes());
    }
    /// Replaces the payload (the IP total length follows).
    pub fn set_payload(&mut self, payload: &[u8]) {
        let header_end = self.tcp_at() + usize::from(self.datagram[self.tcp_at() + 12] >> 4) * 4;
        self.datagram.truncate(header_end);
        self.datagram.extend_from_slice(payload);
        let total = self.datagram.len() as u16;
        self.datagram[2..4].copy_from_slice(&total.to_be_bytes());
    }
    /// Rewrites the shift of the window scale option, which must be present.
    pub fn set_window_scale(&mut self, shift: u8) {
        let t = self.tcp_at();
        let end = t + usize::from(self.datagram[t + 12] >> 4) * 4;
        let at = option_offsets(&self.datagram[t + 20..end], 3).expect("no window scale option to edit");
        self.datagram[t + 20 + at + 2] = shift;
    }
}

/// Offset of the first option of `kind` in an option list.
fn option_offsets(list: &[u8], kind: u8) -> Option<usize> {
    let mut i = 0;
    while i < list.len() {
        match list[i] {
            0 => return None,
            1 => i += 1,
            k => {
                let len = usize::from(*list.get(i + 1)?);
                if len < 2 || i + len > list.len() {
                    return None;
                }
                if k == kind {
                    return Some(i);
                }
                i += len;
            }
        }
    }
    None
}

/// Recomputes the IPv4 header checksum and the TCP checksum of a datagram.
fn fix_checksums(datagram: &mut [u8]) {
    let hl = usize::from(datagram[0] & 0x0f) * 4;
    datagram[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&datagram[..hl]);
    datagram[10..12].copy_from_slice(&sum.to_be_bytes());
    let src = Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]);
    let dst = Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
    let tcp = &mut datagram[hl..];
    tcp[16..18].copy_from_slice(&[0, 0]);
    let sum = checksum::transport_v4(src, dst, ip_proto::TCP, tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// A segment the stack sent on the replayed connection.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    macs: (MacAddr, MacAddr),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    tcp: TcpHeader,
    payload: Vec<u8>,
    consumed: bool,
}

/// Which sequence spaces a segment's numbers are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Ours,
    Host,
    Peer,
}

struct Explanation {
    frame: Option<usize>,
    field: Field,
    reason: String,
}

type ExtraRule = (Box<dyn Fn(&Extra) -> bool>, String);
type Configure = Box<dyn FnOnce(&mut StackConfig)>;

/// Which end opens the connection in [`Replay::handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The stack connects; the peer answers with a synthesized SYN-ACK.
    Client,
    /// The stack listens; the peer opens with a synthesized SYN.
    Server,
}

/// The host a replay plays: an IPv4 address, and the port of the connection when there is a choice. Parses
/// `"192.168.1.11"` and `"192.168.1.11:33779"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSpec {
    pub ip: Ipv4Addr,
    /// `None`: the host's first TCP connection in the capture.
    pub port: Option<u16>,
}

impl FromStr for HostSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<HostSpec, String> {
        if let Ok(a) = s.parse::<SocketAddrV4>() {
            return Ok(HostSpec { ip: *a.ip(), port: Some(a.port()) });
        }
        s.parse::<Ipv4Addr>().map(|ip| HostSpec { ip, port: None }).map_err(|_| {
            format!("{s:?} is not an IPv4 address with an optional port (expected e.g. 192.168.1.11:33779)")
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// Where a replay's capture comes from.
#[derive(Clone)]
enum Source {
    /// A file under `pcaps/`.
    Fixture(String),
    /// Any file.
    File(PathBuf),
    /// A capture already read, with a name for the reports.
    Loaded(String, Box<CaptureFile>),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Fixture(n) | Source::Loaded(n, _) => n.clone(),
            Source::File(p) => p.display().to_string(),
        }
    }

    fn load(&self) -> Result<CaptureFile, String> {
        match self {
            Source::Fixture(n) => {
                ustack_netdev::pcap::read_file(fixtures::path(n)).map_err(|e| format!("cannot read fixture {n}: {e}"))
            }
            Source::File(p) => ustack_netdev::pcap::read_file(p).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!("there is no capture file at {}", p.display())
                } else {
                    format!("cannot read {}: {e}", p.display())
                }
            }),
            Source::Loaded(_, c) => Ok((**c).clone()),
        }
    }
}

/// Configures a [`Replay`] before it starts.
pub struct ReplayBuilder {
    source: Source,
    host: HostSpec,
    order: Order,
    max_lag: Duration,
    fix_checksums: bool,
    rewrite: Option<HostSpec>,
    configure: Vec<Configure>,
}

impl ReplayBuilder {
    /// A replay of the capture file at `path` (any file, pcap or pcapng) with the stack playing `host`.
    pub fn from_file(path: impl Into<PathBuf>, host: HostSpec) -> ReplayBuilder {
        ReplayBuilder::with_source(Source::File(path.into()), host)
    }

    /// A replay of a capture already read; `name` stands for it in reports.
    pub fn from_capture(name: &str, capture: CaptureFile, host: HostSpec) -> ReplayBuilder {
        ReplayBuilder::with_source(Source::Loaded(name.to_string(), Box::new(capture)), host)
    }

    fn with_source(source: Source, host: HostSpec) -> ReplayBuilder {
        ReplayBuilder {
            source,
            host,
            order: Order::Causal,
            max_lag: Duration::from_millis(500),
            fix_checksums: true,
            rewrite: None,
            configure: Vec::new(),
        }
    }

    /// Whether checksums of injected frames are recomputed (default true). TCP segments of the replayed
    /// connection always get correct checksums after their numbers are translated, unless the capture's
    /// were wrong and this is false: they then stay wrong, and the stack drops them as a real one would.
    pub fn fix_checksums(mut self, fix: bool) -> Self {
        self.fix_checksums = fix;
        self
    }

    /// Rewrites the host's address (and port, when given) everywhere in the capture before the replay: the
    /// stack then plays the host at `to`.
    pub fn rewrite_host(mut self, to: HostSpec) -> Self {
        self.rewrite = Some(to);
        self
    }

    /// The replay order (default [`Order::Causal`]).
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// How much later than the capture's host the stack may send a segment (default 500 ms, the longest
    /// delay RFC 9293 section 3.8.6.3 allows an ACK).
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = lag;
        self
    }

    /// Adjusts the stack's configuration (identity and gateway are already set).
    pub fn configure(mut self, f: impl FnOnce(&mut StackConfig) + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Starts the replay; panics with the reason when it cannot (see [`ReplayBuilder::try_build`]).
    pub fn build(self) -> Replay {
        Replay::start(self).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the replay, or says in a sentence why it cannot: the capture cannot be read, or has no TCP
    /// segment to or from the host.
    pub fn try_build(self) -> Result<Replay, String> {
        Replay::start(self)
    }

    /// Plays the whole capture with the application played automatically; panics with the reason when the
    /// capture cannot be replayed (see [`ReplayBuilder::try_auto`]).
    pub fn auto(self) -> AutoReplay {
        self.try_auto().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Plays the whole capture with the application played automatically (see [`auto`]): TCP when the
    /// host has a TCP connection in the capture, else its UDP, ICMP and ARP frames.
    pub fn try_auto(self) -> Result<AutoReplay, String> {
        auto::run(self)
    }
}

/// A replay in progress. The stack is public: the test plays the application with ordinary socket calls
/// between [`Replay::play_until`] steps (the helpers [`Replay::connect`], [`Replay::send`] and so on do the
/// common ones and let the stack send at once).
pub struct Replay {
    pub stack: Stack,
    fixture: String,
    /// The capture time of the file's first packet, which [`ORIGIN`] stands for.
    capture_t0: Duration,
    segs: Vec<Captured>,
    order: Vec<usize>,
    moved: Vec<String>,
    cursor: usize,
    host: SocketAddrV4,
    peer: SocketAddrV4,
    host_mac: MacAddr,
    peer_mac: MacAddr,
    /// The next hop's MAC, as the host addressed it.
    router_mac: MacAddr,
    next_hop: Ipv4Addr,
    now: Instant,
    max_lag: Duration,
    host_isn: Option<SeqNum>,
    peer_isn: Option<SeqNum>,
    our_isn: Option<SeqNum>,
    host_syn: Option<TcpOptions>,
    peer_syn: Option<TcpOptions>,
    our_syn: Option<TcpOptions>,
    sent: Vec<Sent>,
    other_frames: Vec<(Instant, Vec<u8>)>,
    pairs: Vec<Pair>,
    extras: Vec<Extra>,
    ts_map: Vec<(u32, u32)>,
    last_our_tsval: Option<u32>,
    explanations: Vec<Explanation>,
    extra_rules: Vec<ExtraRule>,
    missing_ok: Vec<(usize, String)>,
    log: Vec<String>,
    fix_checksums: bool,
    /// Every frame that went into the stack (`true`) or came out of it, in order.
    wire: Vec<WireFrame>,
    /// Differences, extras and missing segments that [`Replay::by_design`] and friends explain count as
    /// explained (see [`Replay::explain_automatically`]).
    auto_explain: bool,
    /// Frames of the capture that are not segments of the replayed connection, and what they are.
    skipped: Vec<(usize, String)>,
}

/// A frame that went into the stack or came out of it during a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub at: Instant,
    /// True for a frame given to the stack (injected from the capture, or the harness's ARP answers).
    pub into_stack: bool,
    /// The Ethernet frame.
    pub bytes: Vec<u8>,
}

/// The next hop from a stack at `cidr` towards `peer`: the peer itself on the link, else a gateway at the
/// subnet's `.1` (`.254` when the stack is `.1`), standing for the capture's router.
pub(crate) fn next_hop_for(cidr: Ipv4Cidr, peer: Ipv4Addr) -> Ipv4Addr {
    if cidr.contains(peer) {
        return peer;
    }
    let net = u32::from(cidr.addr) & cidr.netmask();
    let gw = Ipv4Addr::from(net | 1);
    if gw == cidr.addr {
        Ipv4Addr::from(net | 254)
    } else {
        gw
    }
}

/// [`crate::frames::prime_arp`], recording the request and the stack's answer.
pub(crate) fn prime_arp_recorded(
    stack: &mut Stack,
    now: Instant,
    ip: Ipv4Addr,
    mac: MacAddr,
    wire: &mut Vec<WireFrame>,
) {
    let request = arp_request(mac, ip, stack.ipv4_addr());
    let mut out: Vec<Vec<u8>> = Vec::new();
    stack.receive(now, &request, &mut out);
    wire.push(WireFrame { at: now, into_stack: true, bytes: request });
    wire.extend(out.into_iter().map(|bytes| WireFrame { at: now, into_stack: false, bytes }));
}

/// Writes `frames` as a classic pcap (Ethernet, nanoseconds), virtual time mapped back onto the capture's clock
/// (`t0` is the capture time [`ORIGIN`] stands for). Returns how many frames were written.
pub fn write_wire_pcap(path: &std::path::Path, frames: &[WireFrame], t0: Duration) -> std::io::Result<usize> {
    let mut w = ustack_netdev::pcap::Writer::create(path, LinkType::Ethernet)?;
    for f in frames {
        let ts = if f.at >= ORIGIN {
            t0 + f.at.saturating_since(ORIGIN)
        } else {
            t0.saturating_sub(ORIGIN.saturating_since(f.at))
        };
        w.write_packet(ts, &f.bytes)?;
    }
    w.flush()?;
    Ok(frames.len())
}

impl Replay {
    /// A replay of `fixture` (a file under `pcaps/`) with the stack playing `host` (`"ip:port"`), in causal
    /// order, with the default configuration.
    pub fn new(fixture: &str, host: &str) -> Replay {
        Replay::builder(fixture, host).build()
    }

    /// A replay of `fixture` (a file under `pcaps/`) with the stack playing `host` (`"ip:port"`, or `"ip"` for
    /// the host's first TCP connection).
    pub fn builder(fixture: &str, host: &str) -> ReplayBuilder {
        let host = host.parse().unwrap_or_else(|e| panic!("host {host:?}: {e}"));
        ReplayBuilder::with_source(Source::Fixture(fixture.to_string()), host)
    }

    /// [`ReplayBuilder::auto`] of `fixture` as `host`, with the defaults.
    pub fn auto(fixture: &str, host: &str) -> AutoReplay {
        Replay::builder(fixture, host).auto()
    }

    fn start(b: ReplayBuilder) -> Result<Replay, String> {
        let capture = b.source.load()?;
        Replay::start_with(b, capture)
    }

    fn start_with(b: ReplayBuilder, mut capture: CaptureFile) -> Result<Replay, String> {
        let name = b.source.name();
        let original = match b.host.port {
            Some(port) => SocketAddrV4::new(b.host.ip, port),
            None => {
                let port = rewrite::first_tcp_port(&capture, b.host.ip)
                    .ok_or_else(|| format!("{name}: no TCP segment to or from {}", b.host.ip))?;
                SocketAddrV4::new(b.host.ip, port)
            }
        };
        let host = match b.rewrite {
            Some(to) => {
                let to = SocketAddrV4::new(to.ip, to.port.unwrap_or(original.port()));
                rewrite::rewrite_host(&mut capture, original, to);
                to
            }
            None => original,
        };
        let t0 = capture.packets.first().map_or(Duration::ZERO, |p| p.ts);
        let mut segs = Vec::new();
        let mut peer: Option<SocketAddrV4> = None;
        let mut skipped = Vec::new();
        for (i, p) in capture.packets.iter().enumerate() {
            let number = i + 1;
            let at = ORIGIN + p.ts.checked_sub(t0).unwrap_or_default();
            let ethernet_link = p.link_type == LinkType::Ethernet;
            let Some(c) = parse_captured(number, at, p.ethernet_frame(), p.data.len() < p.orig_len as usize) else {
                skipped.push((number, rewrite::kind(p).to_string()));
                continue;
            };
            let src = SocketAddrV4::new(c.ip.src, c.tcp.src_port);
            let dst = SocketAddrV4::new(c.ip.dst, c.tcp.dst_port);
            let (side, other) = if src == host {
                (Side::Host, dst)
            } else if dst == host {
                (Side::Peer, src)
            } else {
                skipped.push((number, "TCP, not of this host".to_string()));
                continue;
            };
            if *peer.get_or_insert(other) != other {
                skipped.push((number, "TCP, another connection of the host".to_string()));
                continue;
            }
            // Other link types get a synthesized destination MAC; the source is the capture's when it has one.
            let macs = if ethernet_link { c.macs } else { (c.macs.0, MacAddr::ZERO) };
            segs.push(Captured { side, macs, ..c });
        }
        let Some(peer) = peer else { return Err(format!("{name}: no TCP segment to or from {host}")) };
        let of = |side: Side| segs.iter().filter(move |s| s.side == side);
        let known = |m: MacAddr| m != MacAddr::ZERO;
        let mut host_mac = of(Side::Host)
            .map(|s| s.macs.0)
            .chain(of(Side::Peer).map(|s| s.macs.1))
            .find(|m| known(*m))
            .unwrap_or(MacAddr([2, 0, 0, 0, 0, 2]));
        let mut peer_mac = of(Side::Peer)
            .map(|s| s.macs.0)
            .chain(of(Side::Host).map(|s| s.macs.1))
            .find(|m| known(*m))
            .unwrap_or(MacAddr([2, 0, 0, 0, 0, 1]));
        if host_mac == peer_mac || !host_mac.is_unicast() {
            (host_mac, peer_mac) = (MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 0, 1]));
        }
        // The next hop's MAC is the one the host sent to, which need not be the one the peer's frames came from
        // (a router answering for an HSRP or VRRP virtual address sends from its own).
        let router_mac =
            of(Side::Host).map(|s| s.macs.1).find(|m| m.is_unicast() && *m != host_mac).unwrap_or(peer_mac);

        // ISNs: from the SYNs; a capture without any SYN started mid-connection, and its numbers are taken as
        // relative 1 at the first segment (as Wireshark shows them), for a synthesized handshake.
        let syn_of = |side: Side| of(side).find(|s| s.tcp.flags.contains(TcpFlags::SYN)).cloned();
        let (host_syn, peer_syn) = (syn_of(Side::Host), syn_of(Side::Peer));
        let (host_isn, peer_isn) = if host_syn.is_none() && peer_syn.is_none() {
            let first_seq = |side: Side| of(side).next().map(|s| s.tcp.seq - 1);
            let first_ack = |side: Side| {
                of(side).find(|s| s.tcp.flags.contains(TcpFlags::ACK)).map(|s| SeqNum(s.tcp.ack.0.wrapping_sub(1)))
            };
            // The peer's numbers start at the lowest the capture shows in its space: its own sequence numbers,
            // and the host's acknowledgments and SACK left edges. A receiver captured with a hole in front of
            // it (its ACK below the first data segment captured) then replays with that hole.
            let peer_space = of(Side::Peer)
                .map(|s| s.tcp.seq)
                .chain(of(Side::Host).filter(|s| s.tcp.flags.contains(TcpFlags::ACK)).map(|s| s.tcp.ack))
                .chain(
                    of(Side::Host).flat_map(|s| s.tcp.options.sack_blocks().iter().map(|b| b.0).collect::<Vec<_>>()),
                );
            let lowest = peer_space.reduce(|a, b| if (b.0.wrapping_sub(a.0) as i32) < 0 { b } else { a });
            let peer_isn = lowest.map(|l| SeqNum(l.0.wrapping_sub(1)));
            (first_seq(Side::Host).or(first_ack(Side::Peer)), peer_isn.or(first_seq(Side::Peer)))
        } else {
            (host_syn.as_ref().map(|s| s.tcp.seq), peer_syn.as_ref().map(|s| s.tcp.seq))
        };
        let mid_stream = host_syn.is_none() && peer_syn.is_none();
        let (order, moved) = match b.order {
            Order::Capture => ((0..segs.len()).collect(), Vec::new()),
            Order::Causal => causal_order(&segs, host_isn, peer_isn, mid_stream),
        };

        let cidr = Ipv4Cidr::new(*host.ip(), 24).unwrap();
        let next_hop = next_hop_for(cidr, *peer.ip());
        let mut config = StackConfig::new(host_mac, cidr);
        config.gateway = (next_hop != *peer.ip()).then_some(next_hop);
        for f in b.configure {
            f(&mut config);
        }
        let mut stack = Stack::new(config);
        let start = ORIGIN - LEAD;
        let mut wire = Vec::new();
        prime_arp_recorded(&mut stack, start, next_hop, router_mac, &mut wire);

        let mut log = vec![format!(
            "replay of {name} as {host} (MAC {host_mac}) with {peer} (MAC {peer_mac}, next hop {next_hop} at \
             {router_mac}), order {:?}",
            b.order
        )];
        if host != original {
            log.push(format!("the capture's {original} is rewritten to {host}"));
        }
        if !skipped.is_empty() {
            let list: Vec<usize> = skipped.iter().map(|(f, _)| *f).collect();
            log.push(format!("frames not on this connection or not replayable: {list:?}"));
        }
        log.extend(moved.iter().cloned());
        Ok(Replay {
            stack,
            fixture: name,
            capture_t0: t0,
            order,
            moved,
            cursor: 0,
            host,
            peer,
            host_mac,
            peer_mac,
            router_mac,
            next_hop,
            now: start,
            max_lag: b.max_lag,
            host_isn,
            peer_isn,
            our_isn: None,
            host_syn: host_syn.map(|s| s.tcp.options),
            peer_syn: peer_syn.map(|s| s.tcp.options),
            our_syn: None,
            segs,
            sent: Vec::new(),
            other_frames: Vec::new(),
            pairs: Vec::new(),
            extras: Vec::new(),
            ts_map: Vec::new(),
            last_our_tsval: None,
            explanations: Vec::new(),
            extra_rules: Vec::new(),
            missing_ok: Vec::new(),
            log,
            fix_checksums: b.fix_checksums,
            wire,
            auto_explain: false,
            skipped,
        })
    }

    // ---------------------------------------------------------------------------------------------------
    // Accessors.

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The address the stack plays.
    pub fn host(&self) -> SocketAddrV4 {
        self.host
    }

    /// The other end of the connection.
    pub fn peer(&self) -> SocketAddrV4 {
        self.peer
    }

    /// Frame numbers in replay order.
    pub fn order(&self) -> Vec<usize> {
        self.order.iter().map(|&i| self.segs[i].number).collect()
    }

    /// What [`Order::Causal`] moved, one line each.
    pub fn moved(&self) -> &[String] {
        &self.moved
    }

    fn index_of(&self, frame: usize) -> usize {
        self.segs
            .iter()
            .position(|s| s.number == frame)
            .unwrap_or_else(|| panic!("{}: frame {frame} is not a segment of the connection", self.fixture))
    }

    /// A frame of the capture.
    pub fn frame(&self, frame: usize) -> &Captured {
        &self.segs[self.index_of(frame)]
    }

    /// A frame of the capture in relative terms.
    pub fn captured(&self, frame: usize) -> Seg {
        let c = self.frame(frame);
        let view = if c.side == Side::Host { View::Host } else { View::Peer };
        self.seg(view, Some(frame), c.at, (c.ip.src, c.ip.dst), c.macs, &c.tcp, &c.payload)
    }

    /// The payload of a frame.
    pub fn payload(&self, frame: usize) -> Vec<u8> {
        self.frame(frame).payload.clone()
    }

    /// The pairing of host frame `frame`; panics if it has not been played.
    pub fn pair(&self, frame: usize) -> &Pair {
        self.pairs
            .iter()
            .find(|p| p.frame == frame)
            .unwrap_or_else(|| panic!("frame {frame} has not been paired (is it a host frame, and played?)"))
    }

    /// Every pairing so far, in replay order.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// Segments the stack sent that no host frame was paired with (see [`Replay::finish`] for the last ones).
    pub fn extras(&self) -> &[Extra] {
        &self.extras
    }

    /// Frames the stack sent that are not TCP segments of the connection (ARP, ICMP, ...).
    pub fn other_frames(&self) -> &[(Instant, Vec<u8>)] {
        &self.other_frames
    }

    /// The stack's ISN, once it sent its SYN or SYN-ACK.
    pub fn our_isn(&self) -> Option<SeqNum> {
        self.our_isn
    }

    /// Every frame that went into the stack or came out of it so far, in order: the ARP exchange that primes
    /// the next hop, the injected segments (as translated), the harness's ARP answers and all the stack sent.
    pub fn wire(&self) -> &[WireFrame] {
        &self.wire
    }

    /// Writes [`Replay::wire`] as a pcap on the capture's own clock, so that it opens in Wireshark as the
    /// conversation between the capture's peer and the stack. Returns how many frames were written.
    pub fn write_pcap(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<usize> {
        write_wire_pcap(path.as_ref(), &self.wire, self.capture_t0)
    }

    /// Frames of the capture that are not segments of the replayed connection, and what they are.
    pub fn not_replayed(&self) -> &[(usize, String)] {
        &self.skipped
    }

    /// The capture's name (a fixture name or a path).
    pub fn name(&self) -> &str {
        &self.fixture
    }

    /// Every TCP segment of the replayed connection in the capture, in file order.
    pub fn captured_segments(&self) -> &[Captured] {
        &self.segs
    }

    /// The connection's state as `ss` names it (`ESTAB`, `CLOSE-WAIT`, `TIME-WAIT`, ...), `None` when the
    /// stack holds nothing for the four-tuple (CLOSED).
    pub fn state(&self) -> Option<&'static str> {
        let (local, peer) = (SocketAddr::V4(self.host), Some(SocketAddr::V4(self.peer)));
        self.stack
            .sockets_snapshot(self.now)
            .into_iter()
            .find(|row| row.proto == "tcp" && row.local == local && row.peer == peer)
            .map(|row| row.state)
    }

    /// The transcript so far, then the differences declared by design and their reasons.
    pub fn report(&self) -> String {
        let mut out = self.log.join("\n");
        for e in &self.explanations {
            let at = e.frame.map_or("everywhere".to_string(), |f| format!("at #{f}"));
            out.push_str(&format!("\nby design, {:?} {at}: {}", e.field, e.reason));
        }
        for (_, reason) in &self.extra_rules {
            out.push_str(&format!("\nby design, extra segments: {reason}"));
        }
        for (f, reason) in &self.missing_ok {
            out.push_str(&format!("\nby design, nothing for #{f}: {reason}"));
        }
        if self.auto_explain {
            for pair in &self.pairs {
                for d in pair.differences() {
                    if let Some(reason) = self.by_design(pair, &d) {
                        out.push_str(&format!("\nby design (automatic), {:?} at #{}: {reason}", d.field, pair.frame));
                    }
                }
                if let Some(reason) = pair.ours.is_none().then(|| self.missing_by_design(pair)).flatten() {
                    out.push_str(&format!("\nby design (automatic), nothing for #{}: {reason}", pair.frame));
                }
            }
            for x in &self.extras {
                if let Some(reason) = self.extra_by_design(x) {
                    out.push_str(&format!("\nby design (automatic), extra ours[{}]: {reason}", x.index));
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------------------------------------------
    // Time and stepping.

    /// Polls the stack at every deadline up to `t`, then sets the clock to `t` (time never goes back).
    pub fn advance_to(&mut self, t: Instant) {
        let mut spins = 0;
        while let Some(deadline) = self.stack.poll_at().filter(|d| *d <= t) {
            let at = deadline.max(self.now);
            if at == self.now {
                spins += 1;
                assert!(spins < 10_000, "poll_at() stays at {deadline} after polls at {}", self.now);
            } else {
                spins = 0;
            }
            self.now = at;
            let mut out = Vec::new();
            self.stack.poll(self.now, &mut out);
            self.collect(out);
        }
        self.now = self.now.max(t);
    }

    /// Advances the clock by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// Lets the stack send what socket calls queued, at the current time.
    pub fn settle(&mut self) {
        self.advance_to(self.now);
    }

    /// Plays every frame before `frame` in replay order, then moves the clock to `frame`'s time, so that what
    /// the test does next happens when the capture shows it.
    pub fn play_until(&mut self, frame: usize) {
        let i = self.index_of(frame);
        let pos = self.order.iter().position(|&j| j == i).unwrap();
        assert!(pos >= self.cursor, "frame {frame} has already been played");
        while self.cursor < pos {
            self.step();
        }
        self.advance_to(self.segs[i].at);
    }

    /// Plays every frame up to and including `frame`.
    pub fn play_through(&mut self, frame: usize) {
        self.play_until(frame);
        self.step();
    }

    /// Plays the rest of the capture.
    pub fn play_all(&mut self) {
        while self.cursor < self.order.len() {
            self.step();
        }
    }

    /// True when every frame has been played.
    pub fn done(&self) -> bool {
        self.cursor == self.order.len()
    }

    fn step(&mut self) {
        let i = self.order[self.cursor];
        self.cursor += 1;
        match self.segs[i].side {
            Side::Peer => {
                let datagram = self.segs[i].datagram.clone();
                self.inject_at(self.segs[i].at, Some(self.segs[i].number), datagram);
            }
            Side::Host => self.expect(i),
        }
    }

    /// Plays the next frame, a peer frame `frame`, edited (in the capture's numbers) by `edit`.
    pub fn step_edited(&mut self, frame: usize, edit: impl FnOnce(&mut SegmentEdit)) {
        let i = self.index_of(frame);
        assert_eq!(self.order.get(self.cursor), Some(&i), "frame {frame} is not the next frame");
        assert_eq!(self.segs[i].side, Side::Peer, "frame {frame} is the host's: only peer frames are injected");
        self.cursor += 1;
        let mut e = SegmentEdit { datagram: self.segs[i].datagram.clone() };
        edit(&mut e);
        fix_checksums(&mut e.datagram);
        self.log.push(format!("       #{frame} edited for this test"));
        self.inject_at(self.segs[i].at, Some(frame), e.datagram);
    }

    /// Injects a copy of peer frame `frame`, edited by `edit`, now; the replay's position does not move.
    pub fn inject_copy(&mut self, frame: usize, edit: impl FnOnce(&mut SegmentEdit)) {
        let i = self.index_of(frame);
        assert_eq!(self.segs[i].side, Side::Peer, "frame {frame} is the host's: only peer frames are injected");
        let mut e = SegmentEdit { datagram: self.segs[i].datagram.clone() };
        edit(&mut e);
        fix_checksums(&mut e.datagram);
        self.log.push(format!("       copy of #{frame}"));
        self.inject_at(self.now, None, e.datagram);
    }

    // ---------------------------------------------------------------------------------------------------
    // The application's side.

    /// `socket()`, `bind()` to the host's address and `listen()`.
    pub fn listen(&mut self) -> Fd {
        let fd = self.stack.socket(Domain::Inet, SockType::Stream).unwrap();
        self.stack.bind(fd, SocketAddr::V4(self.host)).unwrap();
        self.stack.listen(fd, 16).unwrap();
        fd
    }

    /// `accept()` on `listener`: the connection, whose peer must be the capture's.
    pub fn accept(&mut self, listener: Fd) -> Fd {
        let (fd, from) = self.stack.accept(listener).unwrap_or_else(|e| panic!("accept: {e}\n{}", self.report()));
        assert_eq!(from, SocketAddr::V4(self.peer), "accepted a connection from another peer");
        fd
    }

    /// `socket()`, `bind()` to the host's address (its port is the capture's ephemeral port) and a
    /// non-blocking `connect()` to the peer; the SYN goes out at once.
    pub fn connect(&mut self) -> Fd {
        let fd = self.stack.socket(Domain::Inet, SockType::Stream).unwrap();
        self.stack.bind(fd, SocketAddr::V4(self.host)).unwrap();
        assert_eq!(self.stack.connect(fd, Some(SocketAddr::V4(self.peer))), Err(Errno::EINPROGRESS));
        self.settle();
        fd
    }

    /// `send()` of all of `data` (which must fit the send buffer); the stack sends at once.
    pub fn send(&mut self, fd: Fd, data: &[u8]) {
        let mut at = 0;
        while at < data.len() {
            match self.stack.send(fd, &data[at..], MsgFlags::NONE) {
                Ok(n) => at += n,
                Err(e) => panic!("send: {e} after {at} of {} bytes", data.len()),
            }
        }
        self.settle();
    }

    /// Reads what is there: `recv()` until it would block or reports end of file. Returns the bytes and
    /// whether end of file was reached.
    pub fn read_available(&mut self, fd: Fd) -> (Vec<u8>, bool) {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT) {
                Ok(0) => break (data, true),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN) => break (data, false),
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    /// `close()`; what it sends goes out at once.
    pub fn close(&mut self, fd: Fd) {
        self.stack.close(fd).unwrap();
        self.settle();
    }

    /// Takes every segment the stack sent and nothing was paired with yet, so that a test can look at what
    /// the capture has no counterpart for; they are then neither paired nor reported as extras.
    pub fn drain_sent(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        for k in 0..self.sent.len() {
            if !self.sent[k].consumed {
                self.sent[k].consumed = true;
                out.push(self.our_seg(k));
            }
        }
        out
    }

    /// Builds the connection a capture that starts mid-connection assumes, with a handshake synthesized from
    /// the capture's numbers: the peer's ISN is its first sequence number less one, the host's likewise (or
    /// the peer's first acknowledgment less one), so the capture's first segments are at relative sequence 1.
    /// The peer's SYN or SYN-ACK carries `peer_options` and `peer_window`; the stack's own SYN or SYN-ACK is
    /// its own choice. Returns the connected descriptor.
    pub fn handshake(&mut self, role: Role, peer_options: TcpOptions, peer_window: u16) -> Fd {
        assert!(self.host_syn.is_none() && self.peer_syn.is_none(), "the capture has a handshake: replay it");
        let (Some(host_isn), Some(peer_isn)) = (self.host_isn, self.peer_isn) else {
            panic!("the capture does not show either side's sequence numbers")
        };
        self.log.push("       synthesized handshake:".to_string());
        self.peer_syn = Some(peer_options);
        let rtt = Duration::from_millis(1);
        let fd = match role {
            Role::Client => {
                let fd = self.connect();
                self.expect_synthesized(TcpFlags::SYN);
                self.advance(rtt);
                let syn_ack = TcpHeader {
                    src_port: self.peer.port(),
                    dst_port: self.host.port(),
                    seq: peer_isn,
                    ack: host_isn + 1,
                    flags: TcpFlags::SYN | TcpFlags::ACK,
                    window: peer_window,
                    urgent: 0,
                    options: peer_options,
                };
                let datagram = self.build_peer_datagram(&syn_ack);
                self.inject_at(self.now, None, datagram);
                self.expect_synthesized(TcpFlags::ACK);
                fd
            }
            Role::Server => {
                let listener = self.listen();
                let syn = TcpHeader {
                    src_port: self.peer.port(),
                    dst_port: self.host.port(),
                    seq: peer_isn,
                    ack: SeqNum(0),
                    flags: TcpFlags::SYN,
                    window: peer_window,
                    urgent: 0,
                    options: peer_options,
                };
                let datagram = self.build_peer_datagram(&syn);
                self.inject_at(self.now, None, datagram);
                self.expect_synthesized(TcpFlags::SYN | TcpFlags::ACK);
                self.advance(rtt);
                let mut options = TcpOptions::default();
                if let (Some((tsval, _)), Some(ours)) = (peer_options.timestamps, self.last_our_tsval) {
                    options.timestamps = Some((tsval.wrapping_add(1), ours));
                }
                let ack = TcpHeader {
                    src_port: self.peer.port(),
                    dst_port: self.host.port(),
                    seq: peer_isn + 1,
                    ack: host_isn + 1,
                    flags: TcpFlags::ACK,
                    window: peer_window,
                    urgent: 0,
                    options,
                };
                let datagram = self.build_peer_datagram(&ack);
                self.inject_at(self.now, None, datagram);
                let fd = self.accept(listener);
                self.stack.close(listener).unwrap();
                fd
            }
        };
        self.log.push("       end of synthesized handshake".to_string());
        fd
    }

    fn expect_synthesized(&mut self, flags: TcpFlags) {
        let sent = self.drain_sent();
        assert!(
            sent.len() == 1 && sent[0].flags == flags,
            "synthesized handshake: expected one {flags} from the stack, got {:?}\n{}",
            sent.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            self.report()
        );
    }

    fn build_peer_datagram(&self, tcp: &TcpHeader) -> Vec<u8> {
        let mut seg = vec![0u8; tcp.header_len()];
        tcp.emit_v4(&mut seg, *self.peer.ip(), *self.host.ip());
        let mut ip = Ipv4Header::new(*self.peer.ip(), *self.host.ip(), ip_proto::TCP, 64, seg.len());
        ip.dont_fragment = true;
        let mut datagram = vec![0u8; 20 + seg.len()];
        ip.emit(&mut datagram);
        datagram[20..].copy_from_slice(&seg);
        datagram
    }

    // ---------------------------------------------------------------------------------------------------
    // Explanations and the verdict.

    /// Declares that `field` may differ anywhere in this replay, and why.
    pub fn explain(&mut self, field: Field, reason: &str) {
        self.explanations.push(Explanation { frame: None, field, reason: reason.to_string() });
    }

    /// Declares that `field` differs in host frame `frame`, and why. [`Replay::assert_faithful`] checks that it
    /// does differ there, so explanations cannot go stale.
    pub fn explain_at(&mut self, frame: usize, field: Field, reason: &str) {
        self.explanations.push(Explanation { frame: Some(frame), field, reason: reason.to_string() });
    }

    /// Declares that extra segments matching `rule` are expected, and why.
    pub fn explain_extras(&mut self, rule: impl Fn(&Extra) -> bool + 'static, reason: &str) {
        self.extra_rules.push((Box::new(rule), reason.to_string()));
    }

    /// Declares that the stack sends nothing in place of host frame `frame`, and why.
    pub fn explain_missing(&mut self, frame: usize, reason: &str) {
        self.missing_ok.push((frame, reason.to_string()));
    }

    /// Lets the automatic "by design" table ([`Replay::by_design`], [`Replay::extra_by_design`],
    /// [`Replay::missing_by_design`]) explain differences, extras and missing segments, in addition to what is
    /// declared with [`Replay::explain`] and friends.
    pub fn explain_automatically(&mut self) {
        self.auto_explain = true;
    }

    /// Ends the pairing: whatever the stack sent that is still unpaired becomes an extra.
    pub fn finish(&mut self) {
        for k in 0..self.sent.len() {
            if !self.sent[k].consumed {
                self.sent[k].consumed = true;
                let seg = self.our_seg(k);
                self.log.push(format!("{}  extra  ours[{k}] {seg}", secs(seg.at)));
                self.extras.push(Extra { before_frame: None, index: k, seg });
            }
        }
    }

    /// Every problem [`Replay::assert_faithful`] would report (call after [`Replay::finish`] to include the
    /// last extras).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.done() {
            problems.push(format!("{} frames not played", self.order.len() - self.cursor));
        }
        for pair in &self.pairs {
            if pair.ours.is_none() {
                let by_design = self.auto_explain && self.missing_by_design(pair).is_some();
                if !by_design && !self.missing_ok.iter().any(|(f, _)| *f == pair.frame) {
                    problems.push(format!("#{}: the stack sent nothing for {}", pair.frame, pair.captured));
                }
                continue;
            }
            let diffs = pair.differences();
            for d in &diffs {
                let explained = self
                    .explanations
                    .iter()
                    .any(|e| e.field == d.field && (e.frame.is_none() || e.frame == Some(pair.frame)))
                    || (self.auto_explain && self.by_design(pair, d).is_some());
                if !explained {
                    problems.push(format!("#{}: unexplained difference {d}", pair.frame));
                }
            }
            for e in self.explanations.iter().filter(|e| e.frame == Some(pair.frame)) {
                if !diffs.iter().any(|d| d.field == e.field) {
                    problems.push(format!(
                        "#{}: {:?} was explained ({}) but does not differ",
                        pair.frame, e.field, e.reason
                    ));
                }
            }
        }
        for e in &self.explanations {
            if let Some(f) = e.frame {
                if !self.pairs.iter().any(|p| p.frame == f) {
                    problems.push(format!("#{f}: explained ({:?}) but never paired", e.field));
                }
            }
        }
        for x in &self.extras {
            let by_design = self.auto_explain && self.extra_by_design(x).is_some();
            if !by_design && !self.extra_rules.iter().any(|(rule, _)| rule(x)) {
                problems.push(format!("unexplained extra segment (before #{:?}): {}", x.before_frame, x.seg));
            }
        }
        for (at, frame) in &self.other_frames {
            if parse_arp(frame).is_none() {
                problems.push(format!("{}: unexpected frame from the stack: {frame:02x?}", secs(*at)));
            }
        }
        problems
    }

    /// Finishes the replay and fails, with the transcript, on any unexplained difference, missing segment or
    /// extra segment. With `USTACK_REPLAY_TRANSCRIPT` set in the environment the transcript is printed anyway
    /// (run with `--nocapture`).
    pub fn assert_faithful(&mut self) {
        self.finish();
        if std::env::var_os("USTACK_REPLAY_TRANSCRIPT").is_some() {
            println!("{}", self.report());
        }
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "{}:\n  {}\n\ntranscript:\n{}",
            self.fixture,
            problems.join("\n  "),
            self.report()
        );
    }

    // ---------------------------------------------------------------------------------------------------
    // Internals.

    fn inject_at(&mut self, at: Instant, frame: Option<usize>, mut datagram: Vec<u8>) {
        self.advance_to(at);
        let view = {
            let hl = usize::from(datagram[0] & 0x0f) * 4;
            let (ip, rest) = Ipv4Header::parse(&datagram).expect("a valid datagram");
            let (tcp, payload) = TcpHeader::parse_v4(rest, ip.src, ip.dst).expect("a valid segment");
            let seg =
                self.seg(View::Peer, frame, self.now, (ip.src, ip.dst), (self.peer_mac, self.host_mac), &tcp, payload);
            let mut note = self.translate(&mut datagram[hl..], &tcp);
            fix_checksums(&mut datagram);
            if let Some(bad) = frame.filter(|_| !self.fix_checksums).and_then(|f| self.frame(f).bad_checksums) {
                restore_bad_checksums(&mut datagram, bad);
                note.push_str("  (injected with its wrong checksum as captured)");
            }
            let tag = frame.map_or("     ".to_string(), |f| format!("#{f:<4}"));
            format!("{}  {tag} peer  {seg}{note}", secs(self.now))
        };
        self.log.push(view);
        let mut frame_bytes = vec![0u8; 14 + datagram.len()];
        ethernet::write_header(&mut frame_bytes, self.host_mac, self.peer_mac, ethertype::IPV4);
        frame_bytes[14..].copy_from_slice(&datagram);
        let mut out = Vec::new();
        self.stack.receive(self.now, &frame_bytes, &mut out);
        self.wire.push(WireFrame { at: self.now, into_stack: true, bytes: frame_bytes });
        self.collect(out);
        self.settle();
    }

    /// Rewrites, in place, the acknowledgment number, SACK blocks and TSecr of a peer segment from the
    /// capture host's numbers into the stack's. Returns a note for the transcript.
    fn translate(&self, tcp_bytes: &mut [u8], tcp: &TcpHeader) -> String {
        let mut note = String::new();
        let delta = match (self.host_isn, self.our_isn) {
            (Some(h), Some(o)) => Some(o.0.wrapping_sub(h.0)),
            _ => None,
        };
        if tcp.flags.contains(TcpFlags::ACK) {
            match delta {
                Some(d) => tcp_bytes[8..12].copy_from_slice(&tcp.ack.0.wrapping_add(d).to_be_bytes()),
                None => note.push_str("  (ack injected untranslated: the stack has no ISN yet)"),
            }
        }
        let end = (usize::from(tcp_bytes[12] >> 4) * 4).min(tcp_bytes.len());
        let list = &mut tcp_bytes[20..end];
        let mut i = 0;
        while i < list.len() {
            match list[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let Some(&len) = list.get(i + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || i + len > list.len() {
                        break;
                    }
                    if kind == 5 && len >= 10 && (len - 2) % 8 == 0 {
                        if let Some(d) = delta {
                            for edge in list[i + 2..i + len].chunks_exact_mut(4) {
                                let v = u32::from_be_bytes(edge.try_into().unwrap()).wrapping_add(d);
                                edge.copy_from_slice(&v.to_be_bytes());
                            }
                        }
                    } else if kind == 8 && len == 10 {
                        let ecr = u32::from_be_bytes(list[i + 6..i + 10].try_into().unwrap());
                        let ours = self.map_tsecr(ecr);
                        list[i + 6..i + 10].copy_from_slice(&ours.to_be_bytes());
                    }
                    i += len;
                }
            }
        }
        note
    }

    /// The stack's TSval standing for the capture host's `ecr`: that of the latest pairing whose host TSval
    /// is not above it (echoing an older value only overestimates the RTT), else the stack's latest.
    fn map_tsecr(&self, ecr: u32) -> u32 {
        if ecr == 0 {
            return 0;
        }
        self.ts_map
            .iter()
            .filter(|(host, _)| (ecr.wrapping_sub(*host) as i32) >= 0)
            .min_by_key(|(host, _)| ecr.wrapping_sub(*host))
            .map(|(_, ours)| *ours)
            .or(self.last_our_tsval)
            .unwrap_or(ecr)
    }

    /// Sorts what the stack sent: TCP segments of the connection are kept for pairing, ARP requests for the
    /// next hop answered as the capture's router would, the rest kept aside.
    fn collect(&mut self, out: Vec<Vec<u8>>) {
        let mut queue = out;
        while !queue.is_empty() {
            let mut replies = Vec::new();
            for frame in queue {
                self.wire.push(WireFrame { at: self.now, into_stack: false, bytes: frame.clone() });
                if let Some(arp) = parse_arp(&frame) {
                    if arp.op == ArpOp::Request && arp.target_ip == self.next_hop {
                        let mut f = vec![0u8; 42];
                        ethernet::write_header(&mut f, arp.sender_mac, self.router_mac, ethertype::ARP);
                        ArpPacket {
                            op: ArpOp::Reply,
                            sender_mac: self.router_mac,
                            sender_ip: self.next_hop,
                            target_mac: arp.sender_mac,
                            target_ip: arp.sender_ip,
                        }
                        .emit(&mut f[14..]);
                        let mut more = Vec::new();
                        self.stack.receive(self.now, &f, &mut more);
                        self.wire.push(WireFrame { at: self.now, into_stack: true, bytes: f });
                        replies.extend(more);
                    }
                    self.other_frames.push((self.now, frame));
                    continue;
                }
                match self.parse_sent(&frame) {
                    Some(sent) => {
                        let k = self.sent.len();
                        if sent.tcp.flags.contains(TcpFlags::SYN) && self.our_isn.is_none() {
                            self.our_isn = Some(sent.tcp.seq);
                            self.our_syn = Some(sent.tcp.options);
                        }
                        if let Some((tsval, _)) = sent.tcp.options.timestamps {
                            self.last_our_tsval = Some(tsval);
                        }
                        self.sent.push(sent);
                        let seg = self.our_seg(k);
                        self.log.push(format!("{}         ours  {seg}   [ours {k}]", secs(self.now)));
                    }
                    None => self.other_frames.push((self.now, frame)),
                }
            }
            queue = replies;
        }
    }

    fn parse_sent(&self, frame: &[u8]) -> Option<Sent> {
        let eth = EthernetFrame::parse(frame).ok()?;
        if eth.ethertype() != ethertype::IPV4 {
            return None;
        }
        let (ip, rest) = Ipv4Header::parse(eth.payload()).expect("the stack sent an IPv4 header it cannot parse");
        if ip.protocol != ip_proto::TCP {
            return None;
        }
        let (tcp, payload) = TcpHeader::parse_v4(rest, ip.src, ip.dst)
            .unwrap_or_else(|e| panic!("the stack sent a bad TCP segment ({e:?}): {frame:02x?}"));
        let src = SocketAddrV4::new(ip.src, tcp.src_port);
        let dst = SocketAddrV4::new(ip.dst, tcp.dst_port);
        (src == self.host && dst == self.peer).then(|| Sent {
            at: self.now,
            macs: (eth.src(), eth.dst()),
            src,
            dst,
            tcp,
            payload: payload.to_vec(),
            consumed: false,
        })
    }

    fn our_seg(&self, k: usize) -> Seg {
        let s = &self.sent[k];
        self.seg(View::Ours, None, s.at, (*s.src.ip(), *s.dst.ip()), s.macs, &s.tcp, &s.payload)
    }

    #[allow(clippy::too_many_arguments)]
    fn seg(
        &self,
        view: View,
        frame: Option<usize>,
        at: Instant,
        ips: (Ipv4Addr, Ipv4Addr),
        macs: (MacAddr, MacAddr),
        tcp: &TcpHeader,
        payload: &[u8],
    ) -> Seg {
        let (seq_base, ack_base, own_syn, other_syn) = match view {
            View::Ours => (self.our_isn, self.peer_isn, self.our_syn, self.peer_syn),
            View::Host => (self.host_isn, self.peer_isn, self.host_syn, self.peer_syn),
            View::Peer => (self.peer_isn, self.host_isn, self.peer_syn, self.host_syn.or(self.our_syn)),
        };
        let rel = |v: SeqNum, base: Option<SeqNum>| base.map_or(v.0, |b| v.0.wrapping_sub(b.0));
        let window_bytes = if tcp.flags.contains(TcpFlags::SYN) {
            Some(u64::from(tcp.window))
        } else {
            match (own_syn, other_syn) {
                (Some(a), Some(b)) => {
                    let shift = if b.window_scale.is_some() { a.window_scale.unwrap_or(0) } else { 0 };
                    Some(u64::from(tcp.window) << shift)
                }
                _ => None,
            }
        };
        Seg {
            frame,
            at,
            src: SocketAddrV4::new(ips.0, tcp.src_port),
            dst: SocketAddrV4::new(ips.1, tcp.dst_port),
            macs: (macs.0 != MacAddr::ZERO && macs.1 != MacAddr::ZERO).then_some(macs),
            flags: tcp.flags,
            seq: rel(tcp.seq, seq_base),
            ack: tcp.flags.contains(TcpFlags::ACK).then(|| rel(tcp.ack, ack_base)),
            window: tcp.window,
            window_bytes,
            options: tcp.options,
            sack: tcp.options.sack_blocks().iter().map(|(l, r)| (rel(*l, ack_base), rel(*r, ack_base))).collect(),
            payload: payload.to_vec(),
        }
    }

    /// Pairs host frame `i` with a segment of the stack's.
    fn expect(&mut self, i: usize) {
        let at = self.segs[i].at;
        let number = self.segs[i].number;
        self.advance_to(at);
        let captured = self.captured(number);
        let next_peer = self.order[self.cursor..].iter().map(|&j| &self.segs[j]).find(|s| s.side == Side::Peer);
        let horizon = next_peer.map_or(at + self.max_lag, |s| s.at.min(at + self.max_lag)).max(self.now);
        let find = |r: &Replay, rank: u8| {
            (0..r.sent.len()).filter(|&k| !r.sent[k].consumed).find(|&k| {
                let ours = r.our_seg(k);
                match rank {
                    0 => ours.key() == captured.key(),
                    1 => ours.key().0 == captured.key().0,
                    _ => true,
                }
            })
        };
        let mut chosen = find(self, 0);
        while chosen.is_none() {
            match self.stack.poll_at() {
                Some(d) if d <= horizon => self.advance_to(d),
                _ => break,
            }
            chosen = find(self, 0);
        }
        let chosen = chosen.or_else(|| find(self, 1)).or_else(|| find(self, 2));
        let ours = chosen.map(|k| {
            for j in 0..k {
                if !self.sent[j].consumed {
                    self.sent[j].consumed = true;
                    let seg = self.our_seg(j);
                    self.log.push(format!("{}  extra  ours[{j}] {seg}", secs(seg.at)));
                    self.extras.push(Extra { before_frame: Some(number), index: j, seg });
                }
            }
            self.sent[k].consumed = true;
            self.our_seg(k)
        });
        if let (Some(o), Some((host_ts, _))) = (&ours, captured.options.timestamps) {
            if let Some((our_ts, _)) = o.options.timestamps {
                self.ts_map.push((host_ts, our_ts));
            }
        }
        let pair = Pair { frame: number, captured, ours };
        let verdict = match (&pair.ours, pair.differences()) {
            (None, _) => "    MISSING".to_string(),
            (Some(o), d) if d.is_empty() => format!("    = ours {}", secs(o.at)),
            (Some(o), d) => format!(
                "    ~ ours {} {o}\n{}",
                secs(o.at),
                d.iter().map(|d| format!("                       {d}")).collect::<Vec<_>>().join("\n")
            ),
        };
        self.log.push(format!("{}  #{number:<4} host  {}{verdict}", secs(at), pair.captured));
        self.pairs.push(pair);
    }
}

/// Reads one capture frame as a TCP/IPv4 segment, checksums recomputed; `None` for anything else.
fn parse_captured(number: usize, at: Instant, frame: Option<Vec<u8>>, truncated: bool) -> Option<Captured> {
    let frame = frame?;
    if truncated {
        return None;
    }
    let eth = EthernetFrame::parse(&frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let header = Ipv4Header::parse_unchecked(eth.payload()).ok()?;
    if header.protocol != ip_proto::TCP || header.is_fragment() || eth.payload().len() < header.total_len {
        return None;
    }
    let mut datagram = eth.payload()[..header.total_len].to_vec();
    if datagram.len() < header.header_len + 20 {
        return None;
    }
    let as_captured = checksum_fields(&datagram);
    fix_checksums(&mut datagram);
    let right = checksum_fields(&datagram);
    let bad_checksums = (as_captured.0 != right.0, as_captured.1 != right.1);
    let bad_checksums = match bad_checksums {
        (false, false) => None,
        (ip, tcp) => Some((ip.then_some(as_captured.0), tcp.then_some(as_captured.1))),
    };
    let (ip, rest) = Ipv4Header::parse(&datagram).ok()?;
    let (tcp, payload) = TcpHeader::parse_v4(rest, ip.src, ip.dst).ok()?;
    let payload = payload.to_vec();
    let macs = (eth.src(), eth.dst());
    Some(Captured { number, at, side: Side::Peer, macs, datagram, bad_checksums, ip, tcp, payload })
}

/// The IP header checksum and the TCP checksum fields of a datagram.
fn checksum_fields(datagram: &[u8]) -> (u16, u16) {
    let hl = usize::from(datagram[0] & 0x0f) * 4;
    (u16::from_be_bytes([datagram[10], datagram[11]]), u16::from_be_bytes([datagram[hl + 16], datagram[hl + 17]]))
}

/// Puts back a capture's wrong checksums into a datagram whose checksums were recomputed: each field that was
/// wrong as captured gets its captured value again (or, should that now happen to be right, another wrong one).
fn restore_bad_checksums(datagram: &mut [u8], captured: (Option<u16>, Option<u16>)) {
    let hl = usize::from(datagram[0] & 0x0f) * 4;
    let (ip_now, tcp_now) = checksum_fields(datagram);
    let wrong = |now: u16, was: u16| if was == now { now ^ 0x0001 } else { was };
    if let Some(was) = captured.0 {
        datagram[10..12].copy_from_slice(&wrong(ip_now, was).to_be_bytes());
    }
    if let Some(was) = captured.1 {
        datagram[hl + 16..hl + 18].copy_from_slice(&wrong(tcp_now, was).to_be_bytes());
    }
}

/// [`Order::Causal`]: the capture's order, except that a segment whose ACK covers sequence numbers the other
/// side has not sent yet waits for the segment that sends them. Returns the order and what moved.
fn causal_order(
    segs: &[Captured],
    host_isn: Option<SeqNum>,
    peer_isn: Option<SeqNum>,
    mid_stream: bool,
) -> (Vec<usize>, Vec<String>) {
    let isn = |side: Side| if side == Side::Host { host_isn } else { peer_isn };
    // The end of what each side has sent so far; a mid-stream capture starts after its (assumed) handshake, and
    // what a side sent before its first captured segment was sent before the capture began.
    let first_seq = |side: Side| segs.iter().find(|s| s.side == side).map(|s| s.tcp.seq);
    let start = |side: Side| match (isn(side).map(|i| i + 1), first_seq(side)) {
        (Some(a), Some(b)) => Some(if b.0.wrapping_sub(a.0) as i32 > 0 { b } else { a }),
        (a, b) => a.or(b),
    };
    let mut sent_end = [Side::Host, Side::Peer].map(|s| if mid_stream { start(s) } else { None });
    let slot = |side: Side| usize::from(side == Side::Peer);
    let other = |side: Side| if side == Side::Host { Side::Peer } else { Side::Host };
    let mut order: Vec<usize> = Vec::new();
    let mut moved = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for i in 0..segs.len() {
        pending.push(i);
        loop {
            let ready = pending.iter().enumerate().position(|(p, &j)| {
                let s = &segs[j];
                let first_of_side = !pending[..p].iter().any(|&k| segs[k].side == s.side);
                let o = other(s.side);
                let acked_ok = !s.tcp.flags.contains(TcpFlags::ACK)
                    || isn(o).is_none()
                    || sent_end[slot(o)].is_some_and(|end| s.tcp.ack.le(end));
                first_of_side && acked_ok
            });
            let Some(p) = ready else { break };
            let j = pending.remove(p);
            let s = &segs[j];
            let len = s.payload.len()
                + usize::from(s.tcp.flags.contains(TcpFlags::SYN))
                + usize::from(s.tcp.flags.contains(TcpFlags::FIN));
            let end = s.tcp.seq + len;
            let e = &mut sent_end[slot(s.side)];
            *e = Some(e.map_or(end, |x| x.max(end)));
            if let Some(&last) = order.last() {
                if segs[last].number > s.number {
                    moved.push(format!(
                        "causal order: #{} replayed after #{} (it acknowledges what #{} sent)",
                        s.number, segs[last].number, segs[last].number
                    ));
                }
            }
            order.push(j);
        }
    }
    if !pending.is_empty() {
        moved.push(format!(
            "causal order: frames {:?} acknowledge data never seen; replayed last",
            pending.iter().map(|&j| segs[j].number).collect::<Vec<_>>()
        ));
        order.extend(pending);
    }
    (order, moved)
}

/// Virtual time as seconds from [`ORIGIN`], signed.
fn secs(at: Instant) -> String {
    let nanos = i128::from(at.as_nanos()) - i128::from(ORIGIN.as_nanos());
    format!("{:+.6}", nanos as f64 / 1e9)
}
