//! The `frame_parser` target: arbitrary bytes through every wire parser, and as an Ethernet frame into a stack
//! that has a bound UDP socket, a TCP listener and an established TCP connection.
//!
//! Input layout: the first byte selects fix-ups that make the rest more likely to get past the outer layers
//! (a fuzzer rarely guesses a checksum); the rest is the frame. Every parser also sees the raw input.
//!
//! | bit | fix-up |
//! | --- | --- |
//! | 0 | destination MAC := the stack's (with bit 1 clear) or broadcast (with bit 1 set and bit 2 clear) |
//! | 1 | EtherType := IPv4 |
//! | 2 | IPv4 version := 4 and total length := the bytes present |
//! | 3 | IPv4 source := a known peer, destination := the stack |
//! | 4 | transport checksum (and UDP length) fixed, for TCP, UDP and ICMP |
//! | 5 | IPv4 header checksum fixed |
//! | 6 | transport destination port := the listener's (TCP) or the bound socket's (UDP) |
//! | 7 | fragment bits cleared |

use crate::actions::World;
use crate::capture::Capture;
use crate::net::{self, PEERS, STACK_IP, STACK_MAC, TCP_PORT, UDP_PORT};
use std::net::Ipv4Addr;
use ustack::wire::arp::ArpPacket;
use ustack::wire::checksum;
use ustack::wire::ethernet::{ethertype, EthernetFrame, MacAddr};
use ustack::wire::icmpv4::IcmpMessage;
use ustack::wire::ip_proto;
use ustack::wire::ipv4::Ipv4Header;
use ustack::wire::tcp::{TcpHeader, TcpOptions};
use ustack::wire::udp::UdpHeader;
use ustack::Duration;

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// Runs one input. Panics on any violated invariant (libFuzzer reports the panic as a crash).
pub fn run(data: &[u8], cap: Option<&mut Capture>) {
    parse_everything(data);
    let Some((&mode, rest)) = data.split_first() else { return };
    let frame = fix_up(mode, rest);
    parse_everything(&frame);
    for offset in [14, 34] {
        if let Some(inner) = frame.get(offset..) {
            parse_everything(inner);
        }
    }

    // The stack: setup (ARP, UDP socket, listener, one established connection) is checked by the same
    // invariants as the frame.
    let mut world = World::new(cap);
    world.receive_checked(&frame);
    for d in [0, 1, 200, 1_000, 31_000, 200_000] {
        world.advance_checked(Duration::from_millis(d));
    }
}

/// Applies the fix-ups that `mode` selects.
pub fn fix_up(mode: u8, raw: &[u8]) -> Vec<u8> {
    let mut f = raw.to_vec();
    if f.len() < 14 {
        return f;
    }
    if mode & 2 != 0 {
        f[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    }
    if mode & 1 != 0 {
        let dst = if mode & 6 == 2 { MacAddr::BROADCAST } else { STACK_MAC };
        f[0..6].copy_from_slice(&dst.0);
    }
    if f.len() < 14 + 20 || u16::from_be_bytes([f[12], f[13]]) != ethertype::IPV4 {
        return f;
    }
    let ip_len = f.len() - 14;
    if mode & 2 != 0 || mode & 4 != 0 {
        f[14] = 0x40 | (f[14] & 0x0f).max(5);
    }
    if mode & 4 != 0 {
        let total = ip_len.min(65535) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
    }
    if mode & 8 != 0 {
        let peer = PEERS[usize::from(f[14 + 8]) % PEERS.len()].1;
        f[26..30].copy_from_slice(&peer.octets());
        f[30..34].copy_from_slice(&STACK_IP.octets());
    }
    if mode & 0x80 != 0 {
        f[20] &= 0x40;
        f[21] = 0;
    }
    let hl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]])).min(ip_len);
    let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let proto = f[14 + 9];
    if hl >= 20 && total > hl {
        let seg = &mut f[14 + hl..14 + total];
        if mode & 0x40 != 0 && seg.len() >= 4 {
            let port = if proto == ip_proto::UDP { UDP_PORT } else { TCP_PORT };
            seg[2..4].copy_from_slice(&port.to_be_bytes());
        }
        if mode & 0x10 != 0 {
            fix_transport(proto, src, dst, seg);
        }
    }
    if mode & 0x20 != 0 && hl >= 20 && 14 + hl <= f.len() {
        f[24..26].copy_from_slice(&[0, 0]);
        let sum = checksum::checksum(&f[14..14 + hl]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    f
}

/// Makes the transport checksum (and the UDP length) right.
fn fix_transport(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, seg: &mut [u8]) {
    match proto {
        ip_proto::TCP if seg.len() >= 20 => {
            seg[16..18].copy_from_slice(&[0, 0]);
            let sum = checksum::transport_v4(src, dst, ip_proto::TCP, seg);
            seg[16..18].copy_from_slice(&sum.to_be_bytes());
        }
        ip_proto::UDP if seg.len() >= 8 && seg.len() <= 65535 => {
            let len = seg.len() as u16;
            seg[4..6].copy_from_slice(&len.to_be_bytes());
            seg[6..8].copy_from_slice(&[0, 0]);
            let mut sum = checksum::transport_v4(src, dst, ip_proto::UDP, seg);
            if sum == 0 {
                sum = 0xffff;
            }
            seg[6..8].copy_from_slice(&sum.to_be_bytes());
        }
        ip_proto::ICMP if seg.len() >= 8 => {
            seg[2..4].copy_from_slice(&[0, 0]);
            let sum = checksum::checksum(seg);
            seg[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        _ => {}
    }
}

/// Every parser on `buf`, as is and with its checksum made right, with round-trip checks where the format
/// allows them.
pub fn parse_everything(buf: &[u8]) {
    if let Ok(e) = EthernetFrame::parse(buf) {
        let _ = (e.dst(), e.src(), e.ethertype());
        assert_eq!(e.payload().len(), buf.len() - 14);
    } else {
        assert!(buf.len() < 14);
    }

    if let Ok(a) = ArpPacket::parse(buf) {
        let mut again = [0u8; ustack::wire::arp::PACKET_LEN];
        a.emit(&mut again);
        assert_eq!(&again[..], &buf[..again.len()], "ARP does not re-emit to the bytes it was parsed from");
    }

    let _ = Ipv4Header::parse_unchecked(buf);
    check_ipv4(buf);
    if buf.len() >= 20 {
        let hl = usize::from(buf[0] & 0x0f) * 4;
        if hl >= 20 && hl <= buf.len() {
            let mut fixed = buf.to_vec();
            fixed[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum::checksum(&fixed[..hl]);
            fixed[10..12].copy_from_slice(&sum.to_be_bytes());
            check_ipv4(&fixed);
        }
    }

    check_icmp(buf);
    if buf.len() >= 8 {
        let mut fixed = buf.to_vec();
        fix_transport(ip_proto::ICMP, A, B, &mut fixed);
        check_icmp(&fixed);
    }

    check_udp(buf);
    if buf.len() >= 8 && buf.len() <= 65535 {
        let mut fixed = buf.to_vec();
        fix_transport(ip_proto::UDP, A, B, &mut fixed);
        check_udp(&fixed);
    }

    check_tcp(buf);
    if buf.len() >= 20 {
        let mut fixed = buf.to_vec();
        fix_transport(ip_proto::TCP, A, B, &mut fixed);
        check_tcp(&fixed);
    }

    check_options(buf);
    let _ = TcpHeader::parse_quoted(buf);
    let _ = UdpHeader::parse_ports(buf);
}

fn check_ipv4(buf: &[u8]) {
    let Ok((h, payload)) = Ipv4Header::parse(buf) else { return };
    assert!(h.header_len >= 20 && h.header_len <= 60 && h.header_len <= h.total_len, "{h:?}");
    assert!(h.total_len <= buf.len(), "{h:?}");
    assert_eq!(payload.len(), h.payload_len());
    assert!(h.frag_offset + payload.len() <= 65535);
    assert!(!h.more_fragments || payload.len() % 8 == 0);
    if h.header_len == 20 {
        let mut again = [0u8; 20];
        h.emit(&mut again);
        let mut orig = [0u8; 20];
        orig.copy_from_slice(&buf[..20]);
        orig[6] &= 0x7f;
        if buf[6] & 0x80 == 0 {
            assert_eq!(again, orig, "IPv4 header does not re-emit to the bytes it was parsed from");
        }
    }
}

fn check_icmp(buf: &[u8]) {
    let Ok(m) = IcmpMessage::parse(buf) else { return };
    assert!(m.buffer_len() <= buf.len());
    let mut again = vec![0u8; m.buffer_len()];
    m.emit(&mut again);
    let m2 = IcmpMessage::parse(&again).expect("an emitted ICMP message parses");
    assert_eq!(m, m2, "ICMP does not survive emit and parse");
    let _ = m.is_error();
}

fn check_udp(buf: &[u8]) {
    for (s, d) in [(A, B), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)] {
        if let Ok((h, payload)) = UdpHeader::parse_v4(buf, s, d) {
            let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
            assert_eq!(payload.len() + 8, len);
            assert!(len <= buf.len());
            let mut again = vec![0u8; len];
            again[8..].copy_from_slice(payload);
            h.emit_v4(&mut again, s, d);
            let (h2, p2) = UdpHeader::parse_v4(&again, s, d).expect("an emitted UDP datagram parses");
            assert_eq!((h, payload), (h2, p2));
        }
    }
}

fn check_tcp(buf: &[u8]) {
    let Ok((h, payload)) = TcpHeader::parse_v4(buf, A, B) else { return };
    assert!(payload.len() + 20 <= buf.len());
    let mut again = vec![0u8; h.header_len() + payload.len()];
    again[h.header_len()..].copy_from_slice(payload);
    h.emit_v4(&mut again, A, B);
    let (h2, p2) = TcpHeader::parse_v4(&again, A, B).expect("an emitted TCP segment parses");
    assert_eq!(p2, payload);
    assert_eq!(
        (h.src_port, h.dst_port, h.seq, h.ack, h.flags, h.window, h.urgent),
        (h2.src_port, h2.dst_port, h2.seq, h2.ack, h2.flags, h2.window, h2.urgent)
    );
    same_options(&h.options, &h2.options);
}

fn check_options(buf: &[u8]) {
    let o = TcpOptions::parse(buf);
    let mut out = [0u8; 40];
    let n = o.emit(&mut out);
    assert_eq!(n, o.len());
    assert!(n <= 40 && n.is_multiple_of(4), "options emit {n} bytes");
    assert_eq!(o.is_empty(), n == 0);
    same_options(&o, &TcpOptions::parse(&out[..n]));
}

/// Options after emit and parse: the same, except that SACK blocks that did not fit were dropped from the end.
fn same_options(a: &TcpOptions, b: &TcpOptions) {
    assert_eq!(
        (a.mss, a.window_scale, a.sack_permitted, a.timestamps),
        (b.mss, b.window_scale, b.sack_permitted, b.timestamps)
    );
    let (sa, sb) = (a.sack_blocks(), b.sack_blocks());
    assert!(sb.len() <= sa.len() && sa[..sb.len()] == *sb, "SACK blocks {sa:?} came back as {sb:?}");
}

/// Hand-made starting inputs for the corpus: the frames a peer would send, with mode 0 (no fix-ups).
pub fn seeds() -> Vec<Vec<u8>> {
    use crate::net::{eth, tcp_segment, udp_datagram, IpFields};
    use std::net::SocketAddrV4;
    use ustack::tcp::SeqNum;
    use ustack::wire::tcp::TcpFlags;
    let (mac, ip) = PEERS[0];
    let peer = SocketAddrV4::new(ip, 40001);
    let stack_tcp = SocketAddrV4::new(STACK_IP, TCP_PORT);
    let ipv4 = |proto: u8, payload: &[u8]| {
        eth(STACK_MAC, mac, ethertype::IPV4, &IpFields::new(ip, STACK_IP, proto).packet(payload))
    };
    let mut syn = TcpHeader {
        src_port: peer.port(),
        dst_port: TCP_PORT,
        seq: SeqNum(1000),
        ack: SeqNum(0),
        flags: TcpFlags::SYN,
        window: 65535,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            ..Default::default()
        },
    };
    let mut out = vec![
        ipv4(ip_proto::TCP, &tcp_segment(peer, stack_tcp, &syn, None, &[], false)),
        ipv4(ip_proto::UDP, &udp_datagram(peer, SocketAddrV4::new(STACK_IP, UDP_PORT), b"hello", 0, 0)),
        ipv4(ip_proto::UDP, &udp_datagram(peer, SocketAddrV4::new(STACK_IP, 9), b"closed port", 0, 0)),
        ipv4(ip_proto::ICMP, &net::icmp_message(8, 0, [0, 1, 0, 1], b"ping", false)),
        net::arp_request_for_stack(mac, ip),
    ];
    syn.flags = TcpFlags::ACK | TcpFlags::PSH;
    syn.options = TcpOptions { timestamps: Some((2, 0)), ..Default::default() };
    out.push(ipv4(ip_proto::TCP, &tcp_segment(peer, stack_tcp, &syn, None, b"data", false)));
    let frags = IpFields::new(ip, STACK_IP, ip_proto::UDP).fragments(
        &udp_datagram(peer, SocketAddrV4::new(STACK_IP, UDP_PORT), &[7; 40], 0, 0),
        16,
        16,
    );
    out.push(eth(STACK_MAC, mac, ethertype::IPV4, &frags[0]));
    out.into_iter().map(|f| [&[0u8][..], &f].concat()).collect()
}
