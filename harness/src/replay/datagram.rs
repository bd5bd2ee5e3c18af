//! Frame-by-frame replay of a host that has no TCP connection in the capture: its UDP, ICMP and ARP traffic.
//!
//! The peers' frames (to the host, or broadcast) are injected at their capture times; the application binds
//! the UDP ports the host uses from the start, sends each datagram the host sent (with `sendto()`, just before
//! its frame) and reads whatever arrives; ICMP and ARP answers are the stack's own. Each frame the host sent is
//! paired with the stack's frame of the same kind (ARP operation and target, ICMP type and code and for echoes
//! identifier and sequence number, UDP ports, fragment offset) and compared field by field: addresses, IP
//! header fields, ICMP header, payload, checksum.

use super::auto::{AutoExtra, AutoPair, AutoReplay, Explained, Plan, Row, Verdict};
use super::{next_hop_for, prime_arp_recorded, rewrite, Difference, Field, ReplayBuilder, WireFrame, LEAD, ORIGIN};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::checksum;
use ustack::wire::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use ustack::wire::ip_proto;
use ustack::wire::ipv4::{Ipv4Cidr, Ipv4Header};
use ustack::{Domain, Errno, Fd, Instant, MsgFlags, SockType, Stack, StackConfig};
use ustack_netdev::pcap::{CaptureFile, LinkType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Host,
    Peer,
}

/// A frame of the capture that is replayed.
struct Frame {
    number: usize,
    at: Instant,
    side: Side,
    /// As captured (a synthesized Ethernet header for other link types).
    eth: Vec<u8>,
    ethernet_link: bool,
}

/// A frame the stack sent.
struct Out {
    at: Instant,
    bytes: Vec<u8>,
    consumed: bool,
}

struct Run {
    stack: Stack,
    now: Instant,
    host: Ipv4Addr,
    host_mac: MacAddr,
    frames: Vec<Frame>,
    sent: Vec<Out>,
    wire: Vec<WireFrame>,
    rows: Vec<Row>,
    pairs: Vec<AutoPair>,
    extras: Vec<AutoExtra>,
    /// Addresses the harness answers ARP requests for, as the capture's network would.
    neighbors: Vec<(Ipv4Addr, MacAddr)>,
    sockets: Vec<(u16, Fd)>,
    received: Vec<u8>,
    max_lag: Duration,
    fix: bool,
    bad: Vec<usize>,
    fixed: Vec<usize>,
    /// Whether the capture shows any ARP request from the host.
    host_arps: bool,
}

pub(super) fn run(b: super::ReplayBuilder, mut capture: CaptureFile, name: String) -> Result<AutoReplay, String> {
    let ReplayBuilder { host: spec, max_lag, fix_checksums, rewrite: rewrite_to, configure, .. } = b;
    let mut notes = Vec::new();
    let mut host = spec.ip;
    if let Some(to) = rewrite_to {
        rewrite::rewrite_host(&mut capture, SocketAddrV4::new(host, 0), SocketAddrV4::new(to.ip, 0));
        notes.push(format!("the capture's {host} is rewritten to {}", to.ip));
        host = to.ip;
    }
    if spec.port.is_some() {
        notes.push("the host has no TCP connection in the capture: its port is not used".to_string());
    }
    let t0 = capture.packets.first().map_or(Duration::ZERO, |p| p.ts);
    let cidr = Ipv4Cidr::new(host, 24).ok_or("a /24 around the host")?;
    let broadcast = cidr.broadcast();

    let mut frames = Vec::new();
    let mut not_replayed = Vec::new();
    for (i, p) in capture.packets.iter().enumerate() {
        let number = i + 1;
        let at = ORIGIN + p.ts.checked_sub(t0).unwrap_or_default();
        let Some(eth) = p.ethernet_frame() else {
            not_replayed.push((number, "link type not replayable".to_string()));
            continue;
        };
        let side = match classify(&eth, host, broadcast) {
            Ok(side) => side,
            Err(why) => {
                not_replayed.push((number, why.to_string()));
                continue;
            }
        };
        if p.data.len() < p.orig_len as usize {
            not_replayed.push((number, "cut short by the capture's snaplen".to_string()));
            continue;
        }
        frames.push(Frame { number, at, side, eth, ethernet_link: p.link_type == LinkType::Ethernet });
    }
    if frames.is_empty() {
        return Err(format!("{name}: {host} sends or receives nothing ustack can replay"));
    }

    // Identities: the host's MAC, the peers' (the router's for off-link ones).
    let mut host_mac = frames
        .iter()
        .filter(|f| f.ethernet_link || f.side == Side::Host)
        .find_map(|f| {
            let e = EthernetFrame::parse(&f.eth).ok()?;
            let m = if f.side == Side::Host { e.src() } else { e.dst() };
            m.is_unicast().then_some(m)
        })
        .unwrap_or(MacAddr([2, 0, 0, 0, 0, 2]));
    // Who is where: the MAC the host sent each peer's packets to comes first (a router may answer from another,
    // for an HSRP or VRRP address), then the MACs peers sent from.
    let mut macs: Vec<(Ipv4Addr, MacAddr)> = Vec::new();
    let mut arp_senders = Vec::new();
    let mut peers: Vec<Ipv4Addr> = Vec::new();
    let mut ordered: Vec<&Frame> = frames.iter().filter(|f| f.side == Side::Host).collect();
    ordered.extend(frames.iter().filter(|f| f.side == Side::Peer));
    for f in ordered {
        let Ok(e) = EthernetFrame::parse(&f.eth) else { continue };
        let (ip, mac) = match (e.ethertype(), f.side) {
            (ethertype::ARP, _) => match ArpPacket::parse(e.payload()) {
                Ok(a) if f.side == Side::Peer => {
                    arp_senders.push(a.sender_ip);
                    (a.sender_ip, a.sender_mac)
                }
                _ => continue,
            },
            (ethertype::IPV4, side) => {
                let Ok(h) = Ipv4Header::parse_unchecked(e.payload()) else { continue };
                let (ip, mac) = if side == Side::Peer { (h.src, e.src()) } else { (h.dst, e.dst()) };
                if !ip.is_broadcast() && !ip.is_multicast() && Some(ip) != broadcast && !peers.contains(&ip) {
                    peers.push(ip);
                }
                if side == Side::Host && !f.ethernet_link {
                    continue;
                }
                (ip, mac)
            }
            _ => continue,
        };
        if mac.is_unicast() && !macs.iter().any(|(i, _)| *i == ip) {
            macs.push((ip, mac));
        }
    }
    if macs.iter().any(|(_, m)| *m == host_mac) || !host_mac.is_unicast() {
        host_mac = MacAddr([2, 0, 0, 0, 0, 2]);
        for (_, m) in &mut macs {
            if *m == host_mac {
                *m = MacAddr([2, 0, 0, 0, 0, 1]);
            }
        }
    }
    let off_link = peers.iter().find(|ip| !cidr.contains(**ip)).copied();
    let gateway = off_link.map(|ip| {
        let mac = macs.iter().find(|(i, _)| *i == ip).map_or(MacAddr([2, 0, 0, 0, 0, 1]), |(_, m)| *m);
        (next_hop_for(cidr, ip), mac)
    });
    let mut config = StackConfig::new(host_mac, cidr);
    config.gateway = gateway.map(|(gw, _)| gw);
    for f in configure {
        f(&mut config);
    }
    let mut stack = Stack::new(config);
    let start = ORIGIN - LEAD;
    let mut wire = Vec::new();
    let mut neighbors: Vec<(Ipv4Addr, MacAddr)> = macs.iter().filter(|(ip, _)| cidr.contains(*ip)).copied().collect();
    if let Some((gw, mac)) = gateway {
        notes.push(format!("off-link peers are reached through a gateway at {gw} with the capture's router MAC {mac}"));
        neighbors.push((gw, mac));
    }
    for &(ip, mac) in &neighbors {
        // A peer whose own ARP is in the capture teaches the stack itself.
        if !arp_senders.contains(&ip) {
            prime_arp_recorded(&mut stack, start, ip, mac, &mut wire);
        }
    }
    neighbors.retain(|(ip, _)| !arp_senders.contains(ip));

    let host_arps = frames.iter().any(|f| f.side == Side::Host && arp_of(&f.eth).is_some());
    let mut run = Run {
        stack,
        now: start,
        host,
        host_mac,
        frames,
        sent: Vec::new(),
        wire,
        rows: Vec::new(),
        pairs: Vec::new(),
        extras: Vec::new(),
        neighbors,
        sockets: Vec::new(),
        received: Vec::new(),
        max_lag,
        fix: fix_checksums,
        bad: Vec::new(),
        fixed: Vec::new(),
        host_arps,
    };
    run.bind_ports();
    run.play();

    if !run.bad.is_empty() {
        notes.push(format!(
            "{} injected frames carry the wrong checksums they were captured with (checksum offload on the capturing \
             host?): the stack drops them; repairing them (--fix-checksums) replays what was meant",
            run.bad.len()
        ));
    }
    let transcript = run.transcript();
    Ok(AutoReplay {
        name,
        host: host.to_string(),
        peer: None,
        plan: Plan::Datagrams,
        pairs: run.pairs,
        extras: run.extras,
        received: run.received,
        not_replayed,
        bad_checksums: run.bad,
        fixed_checksums: run.fixed,
        notes,
        rows: run.rows,
        wire: run.wire,
        capture_t0: t0,
        transcript,
    })
}

/// Whether a frame is the host's, a peer's to the host, or neither (and why).
fn classify(eth: &[u8], host: Ipv4Addr, broadcast: Option<Ipv4Addr>) -> Result<Side, &'static str> {
    let e = EthernetFrame::parse(eth).map_err(|_| "not an Ethernet frame")?;
    match e.ethertype() {
        ethertype::ARP => {
            let a = ArpPacket::parse(e.payload()).map_err(|_| "ARP, not Ethernet/IPv4")?;
            if a.sender_ip == host {
                Ok(Side::Host)
            } else if a.target_ip == host {
                Ok(Side::Peer)
            } else {
                Err("ARP between other hosts")
            }
        }
        ethertype::IPV4 => {
            let h = Ipv4Header::parse_unchecked(e.payload()).map_err(|_| "malformed IPv4")?;
            if h.src == host {
                Ok(Side::Host)
            } else if h.dst == host || h.dst.is_broadcast() || Some(h.dst) == broadcast {
                Ok(Side::Peer)
            } else {
                Err("not to or from the host")
            }
        }
        ethertype::IPV6 => Err("IPv6: ustack is IPv4-only"),
        _ => Err("other link-layer protocol"),
    }
}

fn arp_of(eth: &[u8]) -> Option<ArpPacket> {
    let e = EthernetFrame::parse(eth).ok()?;
    (e.ethertype() == ethertype::ARP).then(|| ArpPacket::parse(e.payload()).ok()).flatten()
}

/// An IPv4 datagram's header and its bytes (cut to its total length, or to what is there).
fn ipv4_of(eth: &[u8]) -> Option<(Ipv4Header, Vec<u8>)> {
    let e = EthernetFrame::parse(eth).ok()?;
    if e.ethertype() != ethertype::IPV4 {
        return None;
    }
    let h = Ipv4Header::parse_unchecked(e.payload()).ok()?;
    let d = &e.payload()[..h.total_len.min(e.payload().len())];
    Some((h, d.to_vec()))
}

/// Recomputes the IPv4 header checksum and, for a whole datagram, the ICMP, UDP or TCP checksum. Returns
/// whether any of them was wrong.
fn fix_datagram(d: &mut [u8]) -> bool {
    let Ok(h) = Ipv4Header::parse_unchecked(d) else { return false };
    let hl = h.header_len;
    let mut wrong = false;
    if checksum::checksum(&d[..hl]) != 0 {
        d[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::checksum(&d[..hl]);
        d[10..12].copy_from_slice(&sum.to_be_bytes());
        wrong = true;
    }
    if h.is_fragment() || d.len() < h.total_len {
        return wrong;
    }
    let t = &mut d[hl..h.total_len];
    let (at, pseudo) = match h.protocol {
        ip_proto::ICMP => (2, false),
        ip_proto::UDP => (6, true),
        ip_proto::TCP => (16, true),
        _ => return wrong,
    };
    if t.len() < at + 2 || (h.protocol == ip_proto::UDP && t[6..8] == [0, 0]) {
        return wrong;
    }
    let verify =
        |t: &[u8]| if pseudo { checksum::transport_v4(h.src, h.dst, h.protocol, t) } else { checksum::checksum(t) };
    if verify(t) != 0 {
        t[at..at + 2].copy_from_slice(&[0, 0]);
        let mut sum = verify(t);
        if h.protocol == ip_proto::UDP && sum == 0 {
            sum = 0xffff;
        }
        t[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        wrong = true;
    }
    wrong
}

/// Whether a datagram's transport checksum is right (true when it cannot be checked).
fn transport_checksum_ok(h: &Ipv4Header, d: &[u8]) -> bool {
    if h.is_fragment() || d.len() < h.total_len {
        return true;
    }
    let t = &d[h.header_len..h.total_len];
    match h.protocol {
        ip_proto::ICMP => checksum::checksum(t) == 0,
        ip_proto::UDP if t.len() >= 8 && t[6..8] != [0, 0] => checksum::transport_v4(h.src, h.dst, h.protocol, t) == 0,
        ip_proto::TCP => checksum::transport_v4(h.src, h.dst, h.protocol, t) == 0,
        _ => true,
    }
}

/// What a frame is, for pairing: a class, a key within it, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    class: &'static str,
    key: Vec<u8>,
    payload: Vec<u8>,
}

fn key(eth: &[u8]) -> Key {
    if let Some(a) = arp_of(eth) {
        let mut key = vec![u8::from(a.op == ArpOp::Reply)];
        key.extend_from_slice(&a.target_ip.octets());
        return Key { class: "arp", key, payload: Vec::new() };
    }
    let Some((h, d)) = ipv4_of(eth) else { return Key { class: "other", key: Vec::new(), payload: eth.to_vec() } };
    let t = d.get(h.header_len..).unwrap_or_default();
    if h.is_fragment() {
        let mut key = vec![h.protocol, u8::from(h.more_fragments)];
        key.extend_from_slice(&(h.frag_offset as u32).to_be_bytes());
        return Key { class: "fragment", key, payload: t.to_vec() };
    }
    match h.protocol {
        ip_proto::ICMP if t.len() >= 8 => {
            let mut key = t[..2].to_vec();
            if matches!(t[0], 0 | 8) {
                key.extend_from_slice(&t[4..8]);
            }
            Key { class: "icmp", key, payload: t[8..].to_vec() }
        }
        ip_proto::UDP if t.len() >= 8 => Key { class: "udp", key: t[..4].to_vec(), payload: t[8..].to_vec() },
        ip_proto::TCP if t.len() >= 20 => {
            let mut key = t[..4].to_vec();
            key.push(t[13]);
            Key { class: "tcp", key, payload: t[usize::from(t[12] >> 4) * 4..].to_vec() }
        }
        p => Key { class: "ip", key: vec![p], payload: t.to_vec() },
    }
}

/// tcpdump's one-line summary of a frame.
pub(super) fn describe(eth: &[u8]) -> String {
    if let Some(a) = arp_of(eth) {
        return match a.op {
            ArpOp::Request => format!("ARP, Request who-has {} tell {}", a.target_ip, a.sender_ip),
            ArpOp::Reply => format!("ARP, Reply {} is-at {}", a.sender_ip, a.sender_mac),
        };
    }
    let Ok(e) = EthernetFrame::parse(eth) else { return format!("{} bytes, not Ethernet", eth.len()) };
    if e.ethertype() == ethertype::IPV6 {
        return "IPv6".to_string();
    }
    let Some((h, d)) = ipv4_of(eth) else { return format!("ethertype 0x{:04x}", e.ethertype()) };
    let t = d.get(h.header_len..).unwrap_or_default();
    let frag = h.is_fragment().then(|| {
        let more = if h.more_fragments { "+" } else { "" };
        format!(" (frag {}:{}@{}{more})", h.ident, h.payload_len(), h.frag_offset)
    });
    let frag = frag.unwrap_or_default();
    if h.frag_offset != 0 {
        return format!("{} > {}: ip-proto-{}{frag}", h.src, h.dst, h.protocol);
    }
    let be16 = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
    let body = match h.protocol {
        ip_proto::ICMP if t.len() >= 8 => match (t[0], t[1]) {
            (0, _) => format!("ICMP echo reply, id {}, seq {}, length {}", be16(4), be16(6), t.len()),
            (8, _) => format!("ICMP echo request, id {}, seq {}, length {}", be16(4), be16(6), t.len()),
            (3, code) => format!("ICMP unreachable (code {code}), length {}", t.len()),
            (11, code) => format!("ICMP time exceeded (code {code}), length {}", t.len()),
            (ty, code) => format!("ICMP type {ty} code {code}, length {}", t.len()),
        },
        ip_proto::UDP if t.len() >= 8 => {
            return format!("{}.{} > {}.{}: UDP, length {}{frag}", h.src, be16(0), h.dst, be16(2), t.len() - 8);
        }
        ip_proto::TCP if t.len() >= 20 => {
            let flags = ustack::wire::tcp::TcpFlags(t[13]);
            let len = t.len().saturating_sub(usize::from(t[12] >> 4) * 4);
            return format!("{}.{} > {}.{}: Flags [{flags}], length {len}{frag}", h.src, be16(0), h.dst, be16(2));
        }
        p => format!("ip-proto-{p}, length {}", t.len()),
    };
    format!("{} > {}: {body}{frag}", h.src, h.dst)
}

/// The fields on which the stack's frame and the captured one differ.
fn compare(ours: &[u8], captured: &[u8], ethernet: bool) -> Vec<Difference> {
    let mut d = Vec::new();
    let mut diff = |field, ours: String, captured: String| {
        if ours != captured {
            d.push(Difference { field, ours, captured });
        }
    };
    let macs = |f: &[u8]| EthernetFrame::parse(f).map_or(String::new(), |e| format!(" {}>{}", e.src(), e.dst()));
    if let (Some(o), Some(c)) = (arp_of(ours), arp_of(captured)) {
        if ethernet {
            diff(Field::Addresses, macs(ours), macs(captured));
            diff(Field::Length, ours.len().to_string(), captured.len().to_string());
        }
        let show =
            |a: ArpPacket| format!("{:?} {} {} > {} {}", a.op, a.sender_mac, a.sender_ip, a.target_mac, a.target_ip);
        diff(Field::Arp, show(o), show(c));
        return d;
    }
    let (Some((oh, od)), Some((ch, cd))) = (ipv4_of(ours), ipv4_of(captured)) else {
        diff(Field::Payload, describe(ours), describe(captured));
        return d;
    };
    let ports = |h: &Ipv4Header, d: &[u8]| {
        let t = &d[h.header_len.min(d.len())..];
        let has = matches!(h.protocol, ip_proto::UDP | ip_proto::TCP) && h.frag_offset == 0;
        if has && t.len() >= 4 {
            (format!(":{}", u16::from_be_bytes([t[0], t[1]])), format!(":{}", u16::from_be_bytes([t[2], t[3]])))
        } else {
            (String::new(), String::new())
        }
    };
    let addrs = |h: &Ipv4Header, d: &[u8], f: &[u8]| {
        let (sp, dp) = ports(h, d);
        let m = if ethernet { macs(f) } else { String::new() };
        format!("{}{sp} > {}{dp}{m}", h.src, h.dst)
    };
    diff(Field::Addresses, addrs(&oh, &od, ours), addrs(&ch, &cd, captured));
    diff(Field::Tos, format!("0x{:02x}", oh.tos), format!("0x{:02x}", ch.tos));
    diff(Field::Ttl, oh.ttl.to_string(), ch.ttl.to_string());
    diff(Field::IpId, oh.ident.to_string(), ch.ident.to_string());
    diff(Field::DontFragment, oh.dont_fragment.to_string(), ch.dont_fragment.to_string());
    let frag = |h: &Ipv4Header| format!("{}{}", h.frag_offset, if h.more_fragments { "+" } else { "" });
    diff(Field::Fragment, frag(&oh), frag(&ch));
    diff(Field::Length, oh.total_len.to_string(), ch.total_len.to_string());
    let ot = od.get(oh.header_len..).unwrap_or_default();
    let ct = cd.get(ch.header_len..).unwrap_or_default();
    let (header_len, checksum_at) = match (oh.protocol, oh.frag_offset, ch.frag_offset) {
        (ip_proto::ICMP, 0, 0) if ot.len() >= 8 && ct.len() >= 8 => {
            let show = |t: &[u8]| {
                let rest = if matches!(t[0], 0 | 8) {
                    format!(" id {} seq {}", u16::from_be_bytes([t[4], t[5]]), u16::from_be_bytes([t[6], t[7]]))
                } else {
                    String::new()
                };
                format!("type {} code {}{rest}", t[0], t[1])
            };
            diff(Field::Icmp, show(ot), show(ct));
            (8, Some(2))
        }
        (ip_proto::UDP, 0, 0) if ot.len() >= 8 && ct.len() >= 8 => (8, Some(6)),
        _ => (0, None),
    };
    let (op, cp) = (ot.get(header_len..).unwrap_or_default(), ct.get(header_len..).unwrap_or_default());
    if op != cp {
        let at = op.iter().zip(cp).position(|(a, b)| a != b);
        let first = at.map_or(String::new(), |i| format!(", first difference at byte {i}"));
        d.push(Difference {
            field: Field::Payload,
            ours: format!("{} bytes{first}", op.len()),
            captured: format!("{} bytes", cp.len()),
        });
    }
    if let Some(at) = checksum_at {
        let sum = |t: &[u8]| format!("0x{:04x}", u16::from_be_bytes([t[at], t[at + 1]]));
        if sum(ot) != sum(ct) {
            d.push(Difference { field: Field::Checksum, ours: sum(ot), captured: sum(ct) });
        }
    }
    d
}

/// Why a difference between a datagram of the stack and the captured one is by design.
fn by_design(d: &Difference, all: &[Difference], captured: &[u8]) -> Option<String> {
    match d.field {
        Field::Ttl => Some(format!(
            "our TTL is {} (net.ipv4.ip_default_ttl, as on Linux); the capture shows {}: the host's own initial TTL, \
             less one per router between it and the capture point",
            d.ours, d.captured
        )),
        Field::IpId => Some("the IP identification is each host's own choice (RFC 6864)".to_string()),
        Field::DontFragment => {
            Some("whether DF is set is a per-host policy (path MTU discovery, RFC 1191)".to_string())
        }
        Field::Length if arp_of(captured).is_some() && captured.len() == 60 => Some(
            "the captured frame was padded to Ethernet's 60-byte minimum by the capturing NIC; ours is the bare \
             42-byte frame, padded when sent"
                .to_string(),
        ),
        Field::Checksum => {
            let (h, bytes) = ipv4_of(captured)?;
            if !transport_checksum_ok(&h, &bytes) {
                Some(
                    "the captured checksum is wrong: the capture was taken on the host before its NIC filled it in \
                     (checksum offload)"
                        .to_string(),
                )
            } else if all.iter().any(|o| matches!(o.field, Field::Payload | Field::Icmp | Field::Addresses)) {
                Some("the checksum covers fields that differ, so it differs with them".to_string())
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Run {
    /// Binds the UDP ports the host uses: those it sends from, and those it receives on without answering with
    /// a port unreachable.
    fn bind_ports(&mut self) {
        let mut ports: Vec<u16> = Vec::new();
        let mut refused: Vec<u16> = Vec::new();
        for f in &self.frames {
            let Some((h, d)) = ipv4_of(&f.eth) else { continue };
            let t = d.get(h.header_len..).unwrap_or_default();
            if h.protocol == ip_proto::UDP && h.frag_offset == 0 && t.len() >= 4 {
                let port = u16::from_be_bytes(if f.side == Side::Host { [t[0], t[1]] } else { [t[2], t[3]] });
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            // A port unreachable from the host quotes the datagram it refused.
            if f.side == Side::Host && h.protocol == ip_proto::ICMP && t.len() >= 8 + 20 && t[0] == 3 && t[1] == 3 {
                let q = &t[8..];
                let qhl = usize::from(q[0] & 0x0f) * 4;
                if q.len() >= qhl + 4 && q[9] == ip_proto::UDP {
                    refused.push(u16::from_be_bytes([q[qhl + 2], q[qhl + 3]]));
                }
            }
        }
        ports.retain(|p| !refused.contains(p));
        for port in ports {
            let text = match self.stack.socket(Domain::Inet, SockType::Dgram) {
                Ok(fd) => match self.stack.bind(fd, SocketAddr::V4(SocketAddrV4::new(self.host, port))) {
                    Ok(()) => {
                        self.sockets.push((port, fd));
                        format!("bind() a UDP socket to {}:{port}", self.host)
                    }
                    Err(e) => format!("bind() to {}:{port} = {e}", self.host),
                },
                Err(e) => format!("socket() = {e}"),
            };
            self.rows.push(Row::App { at: self.now, text });
        }
    }

    fn play(&mut self) {
        for i in 0..self.frames.len() {
            let at = self.frames[i].at;
            self.advance_to(at);
            match self.frames[i].side {
                Side::Peer => {
                    self.inject(i);
                    self.read_sockets();
                }
                Side::Host => {
                    let reproducible = self.host_acts(i);
                    self.expect(i, reproducible);
                }
            }
        }
        let end = self.now + self.max_lag;
        self.advance_to(end);
        self.read_sockets();
        for k in 0..self.sent.len() {
            if !self.sent[k].consumed {
                self.sent[k].consumed = true;
                self.push_extra(k, None);
            }
        }
    }

    fn advance_to(&mut self, t: Instant) {
        let mut spins = 0;
        while let Some(deadline) = self.stack.poll_at().filter(|d| *d <= t) {
            let at = deadline.max(self.now);
            spins = if at == self.now { spins + 1 } else { 0 };
            if spins > 10_000 {
                break;
            }
            self.now = at;
            let mut out = Vec::new();
            self.stack.poll(self.now, &mut out);
            self.collect(out);
        }
        self.now = self.now.max(t);
    }

    fn settle(&mut self) {
        self.advance_to(self.now);
    }

    /// Keeps what the stack sent, answering its ARP requests for the neighbours the capture does not show.
    fn collect(&mut self, out: Vec<Vec<u8>>) {
        let mut queue = out;
        while !queue.is_empty() {
            let mut more = Vec::new();
            for frame in queue {
                self.wire.push(WireFrame { at: self.now, into_stack: false, bytes: frame.clone() });
                if let Some(a) = arp_of(&frame).filter(|a| a.op == ArpOp::Request) {
                    if let Some(&(ip, mac)) = self.neighbors.iter().find(|(ip, _)| *ip == a.target_ip) {
                        let mut f = vec![0u8; 42];
                        ethernet::write_header(&mut f, a.sender_mac, mac, ethertype::ARP);
                        ArpPacket {
                            op: ArpOp::Reply,
                            sender_mac: mac,
                            sender_ip: ip,
                            target_mac: a.sender_mac,
                            target_ip: a.sender_ip,
                        }
                        .emit(&mut f[14..]);
                        self.stack.receive(self.now, &f, &mut more);
                        self.wire.push(WireFrame { at: self.now, into_stack: true, bytes: f });
                    }
                }
                self.sent.push(Out { at: self.now, bytes: frame, consumed: false });
            }
            queue = more;
        }
    }

    fn inject(&mut self, i: usize) {
        let f = &self.frames[i];
        let (number, at) = (f.number, f.at);
        let mut eth = f.eth.clone();
        let text = describe(&eth);
        // The capture's destination MAC is the host's; other link types had one synthesized.
        if EthernetFrame::parse(&eth).is_ok_and(|e| e.dst().is_unicast()) {
            eth[0..6].copy_from_slice(&self.host_mac.0);
        }
        let mut note = None;
        if EthernetFrame::parse(&eth).is_ok_and(|e| e.ethertype() == ethertype::IPV4) {
            let mut d = eth[14..].to_vec();
            let total = Ipv4Header::parse_unchecked(&d).map_or(d.len(), |h| h.total_len.min(d.len()));
            if fix_datagram(&mut d[..total]) {
                if self.fix {
                    eth[14..14 + total].copy_from_slice(&d[..total]);
                    self.fixed.push(number);
                    note = Some("checksum wrong as captured: repaired".to_string());
                } else {
                    self.bad.push(number);
                    note = Some("checksum wrong as captured: injected so, the stack drops it".to_string());
                }
            }
        }
        self.rows.push(Row::Injected { frame: number, at, text, note });
        let mut out = Vec::new();
        self.stack.receive(self.now, &eth, &mut out);
        self.wire.push(WireFrame { at: self.now, into_stack: true, bytes: eth });
        self.collect(out);
        self.settle();
    }

    /// What the application does for host frame `i`; false when no application can make the stack send it.
    fn host_acts(&mut self, i: usize) -> bool {
        let Some((h, d)) = ipv4_of(&self.frames[i].eth) else { return true };
        let t = d.get(h.header_len..).unwrap_or_default().to_vec();
        if h.frag_offset != 0 {
            // A later fragment is reproducible when the first one is.
            let first = self.frames.iter().filter(|f| f.side == Side::Host).find_map(|f| {
                let (fh, fd) = ipv4_of(&f.eth)?;
                (fh.ident == h.ident && fh.dst == h.dst && fh.protocol == h.protocol && fh.frag_offset == 0)
                    .then(|| fd.get(fh.header_len).copied())
            });
            return !(h.protocol == ip_proto::ICMP && first == Some(Some(8)));
        }
        match h.protocol {
            ip_proto::ICMP if t.first() == Some(&8) => false,
            ip_proto::UDP if h.frag_offset == 0 && t.len() >= 8 => {
                let (sport, dport) = (u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]]));
                let payload = if h.more_fragments { self.reassemble_host(&h) } else { Some(t[8..].to_vec()) };
                let Some(payload) = payload else {
                    self.rows.push(Row::App {
                        at: self.now,
                        text: "the host's fragmented datagram is incomplete in the capture: not sent".to_string(),
                    });
                    return true;
                };
                let Some(&(_, fd)) = self.sockets.iter().find(|(p, _)| *p == sport) else { return true };
                let to = SocketAddr::V4(SocketAddrV4::new(h.dst, dport));
                let text = match self.stack.sendto(fd, &payload, MsgFlags::NONE, Some(to)) {
                    Ok(n) => format!("sendto() {n} bytes from :{sport} to {to}"),
                    Err(e) => format!("sendto() from :{sport} to {to} = {e}"),
                };
                self.rows.push(Row::App { at: self.now, text });
                self.settle();
                true
            }
            _ => true,
        }
    }

    /// The UDP payload of the host's fragmented datagram whose first fragment has the header `first`.
    fn reassemble_host(&self, first: &Ipv4Header) -> Option<Vec<u8>> {
        let mut pieces: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut last = None;
        for f in self.frames.iter().filter(|f| f.side == Side::Host) {
            let Some((h, d)) = ipv4_of(&f.eth) else { continue };
            if h.ident == first.ident && h.dst == first.dst && h.protocol == first.protocol {
                if !h.more_fragments {
                    last = Some(h.frag_offset + h.payload_len());
                }
                pieces.insert(h.frag_offset, d.get(h.header_len..).unwrap_or_default().to_vec());
            }
        }
        let mut whole = Vec::new();
        for (off, bytes) in pieces {
            if off != whole.len() {
                return None;
            }
            whole.extend(bytes);
        }
        (Some(whole.len()) == last && whole.len() >= 8).then(|| whole[8..].to_vec())
    }

    fn read_sockets(&mut self) {
        let mut buf = vec![0u8; 65536];
        for k in 0..self.sockets.len() {
            let (port, fd) = self.sockets[k];
            loop {
                match self.stack.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT) {
                    Ok(meta) => {
                        self.received.extend_from_slice(&buf[..meta.len.min(buf.len())]);
                        let text = format!("recvfrom() on :{port}: {} bytes from {}", meta.len, meta.from);
                        self.rows.push(Row::App { at: self.now, text });
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        self.rows.push(Row::App { at: self.now, text: format!("recvfrom() on :{port} = {e}") });
                        break;
                    }
                }
            }
        }
    }

    /// Pairs host frame `i` with a frame of the stack's.
    fn expect(&mut self, i: usize, reproducible: bool) {
        let (number, at) = (self.frames[i].number, self.frames[i].at);
        let captured = self.frames[i].eth.clone();
        let ethernet = self.frames[i].ethernet_link;
        let text = describe(&captured);
        if !reproducible {
            self.rows.push(Row::Host(self.pairs.len()));
            self.pairs.push(AutoPair {
                frame: number,
                at,
                captured: text,
                ours: None,
                ours_at: None,
                differences: Vec::new(),
                missing_reason: Some(
                    "ustack has no ICMP (ping) sockets, so no application can make it send an echo request".into(),
                ),
                verdict: Verdict::NotReproducible,
                tcp: None,
            });
            return;
        }
        let next_peer = self.frames[i + 1..].iter().find(|f| f.side == Side::Peer).map(|f| f.at);
        let horizon = next_peer.map_or(at + self.max_lag, |t| t.min(at + self.max_lag)).max(self.now);
        let want = key(&captured);
        let find = |r: &Run, rank: u8| {
            (0..r.sent.len()).filter(|&k| !r.sent[k].consumed).find(|&k| {
                let k = key(&r.sent[k].bytes);
                match rank {
                    0 => k == want,
                    1 => k.class == want.class && k.key == want.key,
                    _ => k.class == want.class,
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
        if let Some(k) = chosen {
            for j in 0..k {
                if !self.sent[j].consumed {
                    self.sent[j].consumed = true;
                    self.push_extra(j, Some(number));
                }
            }
            self.sent[k].consumed = true;
        }
        let ours = chosen.map(|k| (self.sent[k].at, self.sent[k].bytes.clone()));
        let differences: Vec<Difference> = ours.as_ref().map_or(Vec::new(), |(_, o)| compare(o, &captured, ethernet));
        let explained: Vec<Explained> = differences
            .iter()
            .map(|d| Explained { difference: d.clone(), by_design: by_design(d, &differences, &captured) })
            .collect();
        let verdict = match &ours {
            None => Verdict::Missing,
            Some(_) if explained.is_empty() => Verdict::Same,
            Some(_) if explained.iter().all(|e| e.by_design.is_some()) => Verdict::ByDesign,
            Some(_) => Verdict::Differs,
        };
        self.rows.push(Row::Host(self.pairs.len()));
        self.pairs.push(AutoPair {
            frame: number,
            at,
            captured: text,
            ours: ours.as_ref().map(|(_, o)| describe(o)),
            ours_at: ours.as_ref().map(|(t, _)| *t),
            differences: explained,
            missing_reason: None,
            verdict,
            tcp: None,
        });
    }

    fn push_extra(&mut self, k: usize, before_frame: Option<usize>) {
        let bytes = &self.sent[k].bytes;
        let by_design = arp_of(bytes).filter(|a| a.op == ArpOp::Request && !self.host_arps).map(|_| {
            "we resolve the next hop with ARP before sending; the capture shows no ARP from its host (its cache \
             already had the address)"
                .to_string()
        });
        self.rows.push(Row::Extra(self.extras.len()));
        self.extras.push(AutoExtra { at: self.sent[k].at, text: describe(bytes), by_design, before_frame, seg: None });
    }

    fn transcript(&self) -> String {
        let mut out = Vec::new();
        for w in &self.wire {
            let dir = if w.into_stack { "in " } else { "out" };
            out.push(format!("{} {dir} {}", super::auto::secs(w.at), describe(&w.bytes)));
        }
        out.join("\n")
    }
}
