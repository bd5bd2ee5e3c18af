//! Real captures replayed through ustack: the stack plays one host of each capture and must answer as that
//! host did, byte for byte where the protocol fixes the bytes, and as RFCs require where the capture's host
//! made a choice of its own (explained next to each difference).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ustack::wire::ethernet::MacAddr;
use ustack::wire::icmpv4::IcmpMessage;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::{Domain, Errno, Instant, MsgFlags, SockOpt, SockType, Stack, StackConfig};
use ustack_tests::fixtures::{self, fix_ipv4_header_checksum};
use ustack_tests::frames::{parse_arp, parse_ipv4, prime_arp};

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn stack(mac_addr: &str, cidr: &str, gateway: Option<Ipv4Addr>) -> Stack {
    let mut config = StackConfig::new(mac(mac_addr), cidr.parse::<Ipv4Cidr>().unwrap());
    config.gateway = gateway;
    Stack::new(config)
}

fn feed(stack: &mut Stack, frame: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    stack.receive(Instant::from_secs(1), frame, &mut out);
    stack.poll(Instant::from_secs(1), &mut out);
    out
}

/// Fixture 13: the stack, as 10.0.0.1, answers the capture's who-has with exactly the capture's is-at (the
/// capture's reply is padded to the 60-byte Ethernet minimum by its NIC; ours is the 42 bytes of the frame).
#[test]
fn fixture_13_arp_reply_for_our_address() {
    let frames = fixtures::frames("13_arp_request_reply.pcap");
    let mut s = stack("f8:ed:a5:c0:a4:f1", "10.0.0.1/24", None);
    let out = feed(&mut s, &frames[0]);
    assert_eq!(out.len(), 1, "one reply");
    assert_eq!(out[0][..], frames[1][..42], "byte-identical to the captured reply, padding aside");
    let reply = parse_arp(&out[0]).unwrap();
    assert_eq!(reply.sender_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(reply.target_ip, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(s.counters().get("ArpOutReplies"), Some(1));

    // The same request for another address is not ours to answer (RFC 826), and the sender is not added.
    let mut other = stack("f8:ed:a5:c0:a4:f1", "10.0.0.9/24", None);
    assert!(feed(&mut other, &frames[0]).is_empty());
}

/// Fixture 14: two echo requests to 74.125.225.99 from an off-link host. The ICMP messages of the replies are
/// byte-identical to the captured ones; in the IP header the TTL (ours 64, the capture's 56 after eight
/// routers) and the identification (a per-host choice) differ by design.
#[test]
fn fixture_14_echo_replies_are_byte_correct() {
    let frames = fixtures::frames("14_icmpv4_echo.pcap");
    let gateway = Ipv4Addr::new(74, 125, 225, 1);
    let mut s = stack("00:10:db:00:00:00", "74.125.225.99/24", Some(gateway));
    prime_arp(&mut s, Instant::ZERO, gateway, mac("c8:bc:c8:00:00:00"));
    for (request, captured) in [(&frames[0], &frames[1]), (&frames[2], &frames[3])] {
        let out = feed(&mut s, request);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][..12], captured[..12], "MAC addresses: to the router, from us");
        let (ours, our_icmp) = parse_ipv4(&out[0]).unwrap();
        let (theirs, their_icmp) = parse_ipv4(captured).unwrap();
        assert_eq!(our_icmp, their_icmp, "the ICMP echo reply, checksum included");
        assert_eq!((ours.src, ours.dst, ours.protocol), (theirs.src, theirs.dst, theirs.protocol));
        assert!(matches!(IcmpMessage::parse(&our_icmp), Ok(IcmpMessage::EchoReply { ident: 0x881c, .. })));
    }
    assert_eq!(s.counters().get("IcmpOutEchoReps"), Some(2));
}

/// Fixture 16: a DNS query reaches a socket bound to port 53 with the sender's address; the response sent
/// back through the socket carries the captured UDP datagram byte for byte (same ports, length, checksum).
#[test]
fn fixture_16_udp_delivered_with_sender_address() {
    let frames = fixtures::frames("16_udp_dns_query_response.pcap");
    let gateway = Ipv4Addr::new(209, 87, 249, 1);
    let mut s = stack("00:11:22:33:44:66", "209.87.249.18/24", Some(gateway));
    prime_arp(&mut s, Instant::ZERO, gateway, mac("00:11:22:33:44:55"));
    let fd = s.socket(Domain::Inet, SockType::Dgram).unwrap();
    s.bind(fd, "0.0.0.0:53".parse().unwrap()).unwrap();
    assert!(feed(&mut s, &frames[0]).is_empty(), "a delivered datagram needs no answer");

    let (_, query_udp) = parse_ipv4(&frames[0]).unwrap();
    let mut buf = [0u8; 2048];
    let meta = s.recvfrom(fd, &mut buf, MsgFlags::NONE).unwrap();
    assert_eq!(meta.from, "192.168.1.11:43966".parse::<SocketAddr>().unwrap());
    assert_eq!(&buf[..meta.len], &query_udp[8..], "the query payload, intact");
    assert!(!meta.truncated);

    let (_, response_udp) = parse_ipv4(&frames[1]).unwrap();
    s.sendto(fd, &response_udp[8..], MsgFlags::NONE, Some(meta.from)).unwrap();
    let mut out = Vec::new();
    s.poll(Instant::from_secs(2), &mut out);
    assert_eq!(out.len(), 1);
    let (ip, udp) = parse_ipv4(&out[0]).unwrap();
    assert_eq!(udp, response_udp, "the UDP datagram, checksum included");
    assert_eq!(ip.dst, Ipv4Addr::new(192, 168, 1, 11));
}

/// Fixture 17: a 3-fragment echo request (its IP header checksums were left at zero by the capturing host's
/// offload, so they are fixed first; unfixed, the fragments are dropped as corrupt). The stack reassembles it
/// and answers with a reply fragmented at the same offsets (0, 1480, 2960) carrying the same bytes.
#[test]
fn fixture_17_fragments_reassembled_and_reply_fragmented() {
    let mut frames = fixtures::frames("17_ipv4_fragments_icmp.pcapng");
    let gateway = Ipv4Addr::new(192, 168, 0, 1);

    let mut unfixed = stack("00:21:29:66:71:95", "192.168.0.128/24", Some(gateway));
    prime_arp(&mut unfixed, Instant::ZERO, gateway, mac("00:25:b3:bf:91:ee"));
    for f in &frames[..3] {
        assert!(feed(&mut unfixed, f).is_empty());
    }
    assert_eq!(unfixed.counters().get("IpInCsumErrors"), Some(3), "zero checksums are bad checksums");

    for f in frames.iter_mut().take(3) {
        fix_ipv4_header_checksum(f);
    }
    let mut s = stack("00:21:29:66:71:95", "192.168.0.128/24", Some(gateway));
    prime_arp(&mut s, Instant::ZERO, gateway, mac("00:25:b3:bf:91:ee"));
    let mut out = Vec::new();
    for f in &frames[..3] {
        out.extend(feed(&mut s, f));
    }
    assert_eq!(s.counters().get("IpReasmOKs"), Some(1));
    assert_eq!(out.len(), 3, "the reply goes out in three fragments");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (o, c) in out.iter().zip(&frames[3..]) {
        let (oh, op) = parse_ipv4(o).unwrap();
        let (ch, cp) = parse_ipv4(c).unwrap();
        assert_eq!(
            (oh.frag_offset, oh.more_fragments, oh.total_len),
            (ch.frag_offset, ch.more_fragments, ch.total_len)
        );
        ours.extend(op);
        theirs.extend(cp);
    }
    assert_eq!(ours, theirs, "the reassembled reply is the captured reply");
}

/// Fixture 19: a Port Unreachable quoting a datagram from 192.168.1.1:53 to 192.168.1.102:59207. A socket
/// connected to that peer gets ECONNREFUSED from SO_ERROR (read-and-clear) and, fed again, on its next call.
#[test]
fn fixture_19_port_unreachable_refuses_connected_socket() {
    let frames = fixtures::frames("19_icmp_port_unreachable_for_udp.pcap");
    let mut s = stack("00:19:e3:e7:5d:23", "192.168.1.1/24", None);
    let fd = s.socket(Domain::Inet, SockType::Dgram).unwrap();
    s.bind(fd, "192.168.1.1:53".parse().unwrap()).unwrap();
    s.connect(fd, Some("192.168.1.102:59207".parse().unwrap())).unwrap();
    let unconnected = s.socket(Domain::Inet, SockType::Dgram).unwrap();

    assert!(feed(&mut s, &frames[0]).is_empty(), "no error is ever sent about an ICMP error");
    assert_eq!(s.getsockopt(fd, SockOpt::Error), Ok(Errno::ECONNREFUSED.code()));
    assert_eq!(s.getsockopt(fd, SockOpt::Error), Ok(0), "SO_ERROR clears on read");

    feed(&mut s, &frames[0]);
    let mut buf = [0u8; 16];
    assert_eq!(s.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT).unwrap_err(), Errno::ECONNREFUSED);
    assert_eq!(s.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT).unwrap_err(), Errno::EAGAIN);
    assert_eq!(s.getsockopt(unconnected, SockOpt::Error), Ok(0), "other sockets are not affected");
    assert_eq!(s.counters().get("IcmpInDestUnreachs"), Some(2));
}

/// Fixture x1: a UDP datagram with a bad checksum is dropped and counted, never delivered. With the checksum
/// corrected the same datagram is delivered, so the checksum alone made the difference.
#[test]
fn fixture_x1_bad_udp_checksum_dropped_and_counted() {
    let frames = fixtures::frames("extras/x1_udp_bad_checksum.pcap");
    let mut s = stack("02:00:00:00:00:01", "127.0.0.1/8", None);
    let fd = s.socket(Domain::Inet, SockType::Dgram).unwrap();
    s.bind(fd, "0.0.0.0:13000".parse().unwrap()).unwrap();
    feed(&mut s, &frames[0]);
    let mut buf = [0u8; 64];
    assert_eq!(s.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT).unwrap_err(), Errno::EAGAIN);
    assert_eq!(s.counters().get("UdpInCsumErrors"), Some(1));
    assert_eq!(s.counters().get("UdpInErrors"), Some(1));
    assert_eq!(s.counters().get("UdpInDatagrams"), Some(0));

    let mut fixed = frames[0].clone();
    fixed[40..42].copy_from_slice(&[0, 0]); // checksum field (14 + 20 + 6): zero means "none" in IPv4
    feed(&mut s, &fixed);
    let meta = s.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT).unwrap();
    assert_eq!(meta.from, SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 30000)));
    assert_eq!(meta.len, 4);
}

/// Fixture x5: a fuzzer-found packet with a truncated header and bogus lengths is rejected and counted.
#[test]
fn fixture_x5_malformed_rejected_without_panic() {
    let frames = fixtures::frames("extras/x5_fuzz_truncated_tcp_header.pcap");
    let mut s = stack("30:30:30:30:30:30", "48.48.48.48/8", None);
    for f in &frames {
        assert!(feed(&mut s, f).is_empty());
    }
    let c = s.counters();
    let rejected =
        c.get("IpInHdrErrors").unwrap() + c.get("IpInCsumErrors").unwrap() + c.get("LinkInMalformed").unwrap();
    assert!(rejected >= 1, "counted as a bad packet: {:?}", c.rows());
}

/// Every frame of every fixture, every prefix of it, and seeded mutations, fed to stacks configured as
/// each frame's destination: nothing may panic, and nothing may be delivered that failed a checksum.
#[test]
fn every_fixture_prefix_and_mutation_is_survived() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut frames_fed = 0u64;
    for file in fixtures::all() {
        let Ok(capture) = ustack_netdev::pcap::read_file(&file) else { continue };
        for packet in &capture.packets {
            let Some(frame) = packet.ethernet_frame() else { continue };
            let dst_ip =
                ustack_tests::frames::parse_ipv4(&frame).map(|(h, _)| h.dst).unwrap_or(Ipv4Addr::new(10, 0, 0, 1));
            let dst_mac = format!("{}", MacAddr(frame[..6].try_into().unwrap()));
            let dst_mac = if dst_mac == "ff:ff:ff:ff:ff:ff" { "02:00:00:00:00:01".to_string() } else { dst_mac };
            let mut s = stack(&dst_mac, &format!("{dst_ip}/24"), Some(Ipv4Addr::new(10, 0, 0, 254)));
            let fd = s.socket(Domain::Inet, SockType::Dgram).unwrap();
            let _ = s.bind(fd, "0.0.0.0:53".parse().unwrap());
            for len in 0..=frame.len() {
                feed(&mut s, &frame[..len]);
                frames_fed += 1;
            }
            for _ in 0..50 {
                let mut m = frame.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len().max(1);
                    if let Some(b) = m.get_mut(i) {
                        *b ^= 1 << (next() % 8);
                    }
                }
                feed(&mut s, &m);
                frames_fed += 1;
            }
            let mut t = Instant::from_secs(2);
            for _ in 0..5 {
                t += ustack::Duration::from_secs(31);
                s.poll(t, &mut Vec::new());
            }
        }
    }
    assert!(frames_fed > 10_000, "fed {frames_fed} frames");
}
