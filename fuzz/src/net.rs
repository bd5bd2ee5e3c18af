//! The fuzzed stack's identity, its neighbours, frame builders for what a peer sends, and the checks every
//! frame the stack emits must pass.

use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::checksum;
use ustack::wire::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use ustack::wire::icmpv4::IcmpMessage;
use ustack::wire::ip_proto;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::wire::ipv4::Ipv4Header;
use ustack::wire::tcp::TcpHeader;
use ustack::wire::udp::UdpHeader;
use ustack::{Duration, StackConfig};

pub const STACK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PREFIX_LEN: u8 = 24;
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
/// The subnet broadcast of the stack's prefix.
pub const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 255);

/// The hosts that talk to the stack: three on the link (the third is the default gateway) and one behind
/// the gateway, whose frames carry the gateway's MAC.
pub const PEERS: [(MacAddr, Ipv4Addr); 4] = [
    (MacAddr([0x02, 0, 0, 0, 0, 0x02]), Ipv4Addr::new(198, 18, 0, 2)),
    (MacAddr([0x02, 0, 0, 0, 0, 0x03]), Ipv4Addr::new(198, 18, 0, 3)),
    (GATEWAY_MAC, GATEWAY_IP),
    (GATEWAY_MAC, Ipv4Addr::new(198, 19, 7, 9)),
];

/// The TCP listener's port and the bound UDP socket's port.
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 7;
pub const MTU: usize = 1500;

/// Small buffers and tables so that limits are reached within a short input, and a fixed seed so that every
/// run of an input is the same.
pub fn config() -> StackConfig {
    let mut c = StackConfig::new(STACK_MAC, Ipv4Cidr::new(STACK_IP, PREFIX_LEN).expect("prefix"));
    c.gateway = Some(GATEWAY_IP);
    c.mtu = MTU;
    c.max_sockets = 32;
    c.seed = 0x5eed_f022;
    c.udp.rcvbuf_default = 8192;
    c.udp.sndbuf_default = 8192;
    c.udp.rmem_max = 32768;
    c.udp.wmem_max = 32768;
    c.tcp.rcvbuf_default = 16384;
    c.tcp.sndbuf_default = 16384;
    c.tcp.rmem_max = 65536;
    c.tcp.wmem_max = 65536;
    // Autotuning grows buffers past wmem_max/rmem_max, as Linux's does past net.core's: small here too.
    c.tcp.sndbuf_autotune_max = 131_072;
    c.tcp.rcvbuf_autotune_max = 131_072;
    c.tcp.autotune_total_max = 262_144;
    c.tcp.somaxconn = 16;
    c.tcp.max_time_wait = 16;
    c.tcp.max_ooo_ranges = 16;
    c.arp.max_entries = 16;
    c.arp.queue_bytes_per_neighbor = 16384;
    c.reassembly.max_bytes = 256 * 1024;
    c.reassembly.max_fragments = 16;
    c.reassembly.timeout = Duration::from_secs(30);
    c
}

/// An Ethernet frame around `payload`.
pub fn eth(dst: MacAddr, src: MacAddr, ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    ethernet::write_header(&mut f, dst, src, ty);
    f[ethernet::HEADER_LEN..].copy_from_slice(payload);
    f
}

/// An ARP packet in a frame.
pub fn arp_frame(dst: MacAddr, src: MacAddr, p: &ArpPacket) -> Vec<u8> {
    let mut body = [0u8; ustack::wire::arp::PACKET_LEN];
    p.emit(&mut body);
    eth(dst, src, ethertype::ARP, &body)
}

/// An ARP request from a peer for the stack's address: the way a real neighbour teaches the stack its MAC.
pub fn arp_request_for_stack(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let p = ArpPacket {
        op: ArpOp::Request,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: MacAddr::ZERO,
        target_ip: STACK_IP,
    };
    arp_frame(MacAddr::BROADCAST, mac, &p)
}

/// Every field of an IPv4 header a peer may choose, options included (the stack's own emitter writes only
/// option-less headers, so this one writes its own).
#[derive(Debug, Clone)]
pub struct IpFields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In bytes; written in 8-byte units.
    pub frag_offset: usize,
    /// Raw option bytes, padded to a multiple of 4 and cut at 40.
    pub options: Vec<u8>,
    pub bad_checksum: bool,
    /// Added to the true total length (wrapping in 16 bits).
    pub total_len_delta: i16,
}

impl IpFields {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        IpFields {
            src,
            dst,
            protocol,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            options: Vec::new(),
            bad_checksum: false,
            total_len_delta: 0,
        }
    }

    /// The datagram: header and `payload`.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.truncate(40);
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hl = 20 + opts.len();
        let mut p = vec![0u8; hl + payload.len()];
        p[0] = 0x40 | (hl / 4) as u8;
        p[1] = self.tos;
        let total = (p.len() as u16).wrapping_add(self.total_len_delta as u16);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let mut ff = ((self.frag_offset / 8) as u16) & 0x1fff;
        if self.dont_fragment {
            ff |= 0x4000;
        }
        if self.more_fragments {
            ff |= 0x2000;
        }
        p[6..8].copy_from_slice(&ff.to_be_bytes());
        p[8] = self.ttl;
        p[9] = self.protocol;
        p[12..16].copy_from_slice(&self.src.octets());
        p[16..20].copy_from_slice(&self.dst.octets());
        p[20..hl].copy_from_slice(&opts);
        let mut sum = checksum::checksum(&p[..hl]);
        if self.bad_checksum {
            sum ^= 0x0101;
        }
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p[hl..].copy_from_slice(payload);
        p
    }

    /// The datagram cut into fragments of `first` payload bytes (rounded down to a multiple of 8, at least 8),
    /// then `second` and the rest, as a sender fragments (RFC 791 section 3.2). Fewer pieces when the payload
    /// is short.
    pub fn fragments(&self, payload: &[u8], first: usize, second: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        let sizes = [first, second];
        let mut i = 0;
        while at < payload.len() {
            let size = if i < sizes.len() { (sizes[i] / 8).max(1) * 8 } else { payload.len() - at };
            let end = (at + size).min(payload.len());
            let mut f = self.clone();
            f.frag_offset = self.frag_offset + at;
            f.more_fragments = end < payload.len() || self.more_fragments;
            f.dont_fragment = false;
            out.push(f.packet(&payload[at..end]));
            at = end;
            i += 1;
        }
        if out.is_empty() {
            out.push(self.packet(payload));
        }
        out
    }
}

/// A TCP segment (header from `h`, options from `h.options` unless `raw_options` is given) between two
/// endpoints, with a correct checksum unless `bad_checksum`.
pub fn tcp_segment(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    h: &TcpHeader,
    raw_options: Option<&[u8]>,
    payload: &[u8],
    bad_checksum: bool,
) -> Vec<u8> {
    let mut seg;
    match raw_options {
        None => {
            let hl = h.header_len();
            seg = vec![0u8; hl + payload.len()];
            seg[hl..].copy_from_slice(payload);
            h.emit_v4(&mut seg, *src.ip(), *dst.ip());
        }
        Some(raw) => {
            let mut opts = raw.to_vec();
            opts.truncate(40);
            while !opts.len().is_multiple_of(4) {
                opts.push(0);
            }
            let hl = 20 + opts.len();
            seg = vec![0u8; hl + payload.len()];
            let plain = TcpHeader { options: Default::default(), ..*h };
            let mut head = vec![0u8; 20];
            plain.emit_v4(&mut head, *src.ip(), *dst.ip());
            seg[..20].copy_from_slice(&head);
            seg[12] = ((hl / 4) as u8) << 4;
            seg[16..18].copy_from_slice(&[0, 0]);
            seg[20..hl].copy_from_slice(&opts);
            seg[hl..].copy_from_slice(payload);
            let sum = checksum::transport_v4(*src.ip(), *dst.ip(), ip_proto::TCP, &seg);
            seg[16..18].copy_from_slice(&sum.to_be_bytes());
        }
    }
    if bad_checksum {
        seg[16] ^= 0x40;
    }
    seg
}

/// A UDP datagram; `checksum`: 0 correct, 1 none (zero field), 2 wrong. `len_delta` is added to the length
/// field after the checksum is computed.
pub fn udp_datagram(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    checksum_mode: u8,
    len_delta: i16,
) -> Vec<u8> {
    let mut d = vec![0u8; 8 + payload.len()];
    d[8..].copy_from_slice(payload);
    UdpHeader { src_port: src.port(), dst_port: dst.port() }.emit_v4(&mut d, *src.ip(), *dst.ip());
    match checksum_mode % 3 {
        1 => d[6..8].copy_from_slice(&[0, 0]),
        2 => d[7] ^= 0x11,
        _ => {}
    }
    if len_delta != 0 {
        let len = u16::from_be_bytes([d[4], d[5]]).wrapping_add(len_delta as u16);
        d[4..6].copy_from_slice(&len.to_be_bytes());
    }
    d
}

/// An ICMP message: type, code, the four "rest of header" bytes and a body; checksum correct unless `bad`.
pub fn icmp_message(ty: u8, code: u8, word: [u8; 4], body: &[u8], bad: bool) -> Vec<u8> {
    let mut m = vec![0u8; 8 + body.len()];
    m[0] = ty;
    m[1] = code;
    m[4..8].copy_from_slice(&word);
    m[8..].copy_from_slice(body);
    let mut sum = checksum::checksum(&m);
    if bad {
        sum ^= 0x0800;
    }
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// What a frame the stack sent turned out to be.
#[derive(Debug, Clone)]
pub enum Sent {
    Arp(ArpPacket),
    Tcp {
        ip: Ipv4Header,
        tcp: TcpHeader,
        payload: Vec<u8>,
    },
    Udp {
        ip: Ipv4Header,
        udp: UdpHeader,
        payload: Vec<u8>,
    },
    Icmp {
        ip: Ipv4Header,
        ty: u8,
        code: u8,
    },
    /// A piece of a fragmented datagram: only the IP header can be checked.
    Fragment {
        ip: Ipv4Header,
    },
}

/// Checks a frame the stack emitted: it must re-parse with every check on (checksums included), come from the
/// stack's own addresses, fit the MTU, and emit back to the same bytes. Returns what it is.
pub fn check_emitted(frame: &[u8]) -> Result<Sent, String> {
    let eth = EthernetFrame::parse(frame).map_err(|e| format!("emitted frame does not parse as Ethernet: {e}"))?;
    if eth.src() != STACK_MAC {
        return Err(format!("emitted frame has source MAC {} (not the stack's)", eth.src()));
    }
    if eth.dst() == MacAddr::ZERO || (eth.dst().is_multicast() && !eth.dst().is_broadcast()) {
        return Err(format!("emitted frame to MAC {}", eth.dst()));
    }
    if frame.len() > MTU + ethernet::HEADER_LEN {
        return Err(format!("emitted frame of {} bytes over the MTU {MTU}", frame.len()));
    }
    match eth.ethertype() {
        ethertype::ARP => {
            let arp = ArpPacket::parse(eth.payload()).map_err(|e| format!("emitted ARP does not parse: {e}"))?;
            if arp.sender_mac != STACK_MAC || arp.sender_ip != STACK_IP {
                return Err(format!("emitted ARP with sender {} {}", arp.sender_mac, arp.sender_ip));
            }
            let mut again = [0u8; ustack::wire::arp::PACKET_LEN];
            arp.emit(&mut again);
            if again[..] != eth.payload()[..again.len()] {
                return Err("emitted ARP does not re-emit to the same bytes".into());
            }
            Ok(Sent::Arp(arp))
        }
        ethertype::IPV4 => check_emitted_ipv4(eth.payload()),
        other => Err(format!("emitted frame with EtherType {other:#06x}")),
    }
}

fn check_emitted_ipv4(packet: &[u8]) -> Result<Sent, String> {
    let (ip, payload) = Ipv4Header::parse(packet).map_err(|e| format!("emitted IPv4 does not parse: {e}"))?;
    if ip.src != STACK_IP {
        return Err(format!("emitted IPv4 from {} (not the stack's address)", ip.src));
    }
    if ip.dst == STACK_IP || ip.dst.is_loopback() {
        return Err(format!("emitted IPv4 to {} on the wire", ip.dst));
    }
    if ip.total_len > MTU {
        return Err(format!("emitted IPv4 of {} bytes over the MTU", ip.total_len));
    }
    if packet.len() != ip.total_len && ip.total_len >= 46 {
        return Err(format!(
            "emitted IPv4 total length {} but {} bytes follow the Ethernet header",
            ip.total_len,
            packet.len()
        ));
    }
    if ip.header_len == 20 {
        let mut again = [0u8; 20];
        ip.emit(&mut again);
        let mut orig = [0u8; 20];
        orig.copy_from_slice(&packet[..20]);
        orig[6] &= 0x7f; // the reserved flag is not kept
        if again != orig {
            return Err("emitted IPv4 header does not re-emit to the same bytes".into());
        }
    }
    if ip.is_fragment() {
        return Ok(Sent::Fragment { ip });
    }
    match ip.protocol {
        ip_proto::TCP => {
            let (tcp, data) =
                TcpHeader::parse_v4(payload, ip.src, ip.dst).map_err(|e| format!("emitted TCP does not parse: {e}"))?;
            // Our own emitter writes the options in Linux's layout; parsing and emitting again must give the
            // same bytes (options that the parser normalises would differ, and the stack never sends those).
            let mut again = vec![0u8; tcp.header_len() + data.len()];
            again[tcp.header_len()..].copy_from_slice(data);
            tcp.emit_v4(&mut again, ip.src, ip.dst);
            if again != payload {
                return Err(format!("emitted TCP segment does not re-emit to the same bytes: {tcp:?}"));
            }
            if tcp.flags.contains(ustack::wire::tcp::TcpFlags::SYN)
                && tcp.flags.contains(ustack::wire::tcp::TcpFlags::RST)
            {
                return Err("emitted TCP segment with SYN and RST".into());
            }
            Ok(Sent::Tcp { ip, tcp, payload: data.to_vec() })
        }
        ip_proto::UDP => {
            let (udp, data) =
                UdpHeader::parse_v4(payload, ip.src, ip.dst).map_err(|e| format!("emitted UDP does not parse: {e}"))?;
            if payload[6..8] == [0, 0] {
                return Err("emitted UDP without a checksum".into());
            }
            if data.len() + 8 != payload.len() {
                return Err("emitted UDP length differs from the IP payload".into());
            }
            Ok(Sent::Udp { ip, udp, payload: data.to_vec() })
        }
        ip_proto::ICMP => {
            let msg = IcmpMessage::parse(payload).map_err(|e| format!("emitted ICMP does not parse: {e}"))?;
            let mut again = vec![0u8; msg.buffer_len()];
            msg.emit(&mut again);
            if !matches!(msg, IcmpMessage::Other { .. }) && again != payload {
                return Err(format!("emitted ICMP does not re-emit to the same bytes: {msg:?}"));
            }
            Ok(Sent::Icmp { ip, ty: payload[0], code: payload[1] })
        }
        p => Err(format!("emitted IPv4 with protocol {p}")),
    }
}
