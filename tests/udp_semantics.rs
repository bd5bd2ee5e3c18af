//! UDP socket semantics, one rule per test, each asserting the errno or result a Linux program gets
//! (udp(7), socket(7), ip(7)). The stack runs sans-IO; a fake peer on the link sends and reads frames.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use ustack::wire::ethernet::MacAddr;
use ustack::wire::icmpv4::{unreach_code, IcmpMessage};
use ustack::wire::ip_proto;
use ustack::wire::udp::UdpHeader;
use ustack::{
    Domain, Duration, Errno, Fd, Instant, MsgFlags, Readiness, Shutdown, SockOpt, SockType, Stack, StackConfig,
};
use ustack_tests::frames::{arp_request, icmp_frame, parse_arp, parse_ipv4, udp_frame};

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

/// A stack at 198.18.0.2/24 with a peer at .1 (and .3) on the link, at a virtual clock.
struct Net {
    s: Stack,
    now: Instant,
}

impl Net {
    fn new() -> Net {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut StackConfig)) -> Net {
        let mut config = StackConfig::new(US_MAC, "198.18.0.2/24".parse().unwrap());
        tweak(&mut config);
        let mut net = Net { s: Stack::new(config), now: Instant::from_secs(1) };
        // The peers introduce themselves, as a kernel peer does when it first talks to us.
        net.deliver(&arp_request(PEER_MAC, PEER, US));
        net.deliver(&arp_request(PEER_MAC, OTHER, US));
        net
    }

    fn udp(&mut self) -> Fd {
        self.s.socket(Domain::Inet, SockType::Dgram).unwrap()
    }

    fn deliver(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.s.receive(self.now, frame, &mut out);
        self.s.poll(self.now, &mut out);
        out
    }

    /// A datagram from `from` to our port `port`.
    fn datagram_to(&mut self, from: SocketAddrV4, port: u16, data: &[u8]) -> Vec<Vec<u8>> {
        self.deliver(&udp_frame((PEER_MAC, US_MAC), from, SocketAddrV4::new(US, port), data))
    }

    /// Frames the stack sends when polled now.
    fn sent(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.s.poll(self.now, &mut out);
        out
    }

    /// The UDP datagrams among `frames`: (source port, destination, payload).
    fn udp_out(frames: &[Vec<u8>]) -> Vec<(u16, SocketAddrV4, Vec<u8>)> {
        frames
            .iter()
            .filter_map(|f| parse_ipv4(f))
            .filter(|(h, _)| h.protocol == ip_proto::UDP && !h.is_fragment())
            .map(|(h, p)| {
                let (u, data) = UdpHeader::parse_v4(&p, h.src, h.dst).expect("valid UDP from the stack");
                (u.src_port, SocketAddrV4::new(h.dst, u.dst_port), data.to_vec())
            })
            .collect()
    }

    fn recv(&mut self, fd: Fd, buf: &mut [u8]) -> Result<(usize, SocketAddr), Errno> {
        self.s.recvfrom(fd, buf, MsgFlags::DONTWAIT).map(|m| (m.len, m.from))
    }
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

#[test]
fn descriptors_are_lowest_free_first_with_emfile_at_the_limit() {
    let mut net = Net::with(|c| c.max_sockets = 3);
    let fds: Vec<Fd> = (0..3).map(|_| net.udp()).collect();
    assert_eq!(fds, vec![Fd(3), Fd(4), Fd(5)]);
    assert_eq!(net.s.socket(Domain::Inet, SockType::Dgram), Err(Errno::EMFILE));
    net.s.close(Fd(4)).unwrap();
    assert_eq!(net.udp(), Fd(4));
    assert_eq!(net.s.close(Fd(42)), Err(Errno::EBADF));
    assert_eq!(net.s.socket(Domain::Inet6, SockType::Dgram), Err(Errno::EAFNOSUPPORT));
}

#[test]
fn bind_to_any_or_local_address() {
    let mut net = Net::new();
    let a = net.udp();
    net.s.bind(a, sa(Ipv4Addr::UNSPECIFIED, 5000)).unwrap();
    assert_eq!(net.s.getsockname(a), Ok(sa(Ipv4Addr::UNSPECIFIED, 5000)));
    let b = net.udp();
    net.s.bind(b, sa(US, 5001)).unwrap();
    assert_eq!(net.s.getsockname(b), Ok(sa(US, 5001)));
}

#[test]
fn bind_port_zero_picks_a_free_ephemeral_port() {
    let mut net = Net::new();
    let mut ports = std::collections::HashSet::new();
    for _ in 0..50 {
        let fd = net.udp();
        net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let SocketAddr::V4(local) = net.s.getsockname(fd).unwrap() else { panic!() };
        assert!((32768..=60999).contains(&local.port()));
        assert!(ports.insert(local.port()), "never collides");
    }
}

#[test]
fn bind_conflicts_give_eaddrinuse() {
    let mut net = Net::new();
    let a = net.udp();
    net.s.bind(a, sa(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    let b = net.udp();
    assert_eq!(net.s.bind(b, sa(Ipv4Addr::UNSPECIFIED, 53)), Err(Errno::EADDRINUSE));
    assert_eq!(net.s.bind(b, sa(US, 53)), Err(Errno::EADDRINUSE), "wildcard overlaps every address");
    net.s.bind(b, sa(US, 54)).unwrap();
}

#[test]
fn bind_to_an_address_not_ours_gives_eaddrnotavail() {
    let mut net = Net::new();
    let a = net.udp();
    assert_eq!(net.s.bind(a, sa(Ipv4Addr::new(198, 18, 0, 77), 53)), Err(Errno::EADDRNOTAVAIL));
    assert_eq!(net.s.bind(a, "[fd00::1]:53".parse().unwrap()), Err(Errno::EAFNOSUPPORT));
}

#[test]
fn second_bind_gives_einval() {
    let mut net = Net::new();
    let a = net.udp();
    net.s.bind(a, sa(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    assert_eq!(net.s.bind(a, sa(Ipv4Addr::UNSPECIFIED, 54)), Err(Errno::EINVAL));
}

#[test]
fn so_reuseaddr_on_both_lets_them_share_a_port() {
    let mut net = Net::new();
    let (a, b) = (net.udp(), net.udp());
    net.s.setsockopt(a, SockOpt::ReuseAddr, 1).unwrap();
    net.s.bind(a, sa(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    assert_eq!(net.s.bind(b, sa(Ipv4Addr::UNSPECIFIED, 53)), Err(Errno::EADDRINUSE), "both must ask");
    net.s.setsockopt(b, SockOpt::ReuseAddr, 1).unwrap();
    net.s.bind(b, sa(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    assert_eq!(net.s.getsockopt(b, SockOpt::ReuseAddr), Ok(1));
}

#[test]
fn sendto_binds_implicitly() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.getsockname(fd), Ok(sa(Ipv4Addr::UNSPECIFIED, 0)), "unbound reads as 0.0.0.0:0");
    assert_eq!(net.s.sendto(fd, b"hi", MsgFlags::NONE, Some(sa(PEER, 9999))), Ok(2));
    let SocketAddr::V4(local) = net.s.getsockname(fd).unwrap() else { panic!() };
    assert_ne!(local.port(), 0);
    let out = Net::udp_out(&net.sent());
    assert_eq!(out, vec![(local.port(), SocketAddrV4::new(PEER, 9999), b"hi".to_vec())]);
}

#[test]
fn recvfrom_returns_the_sender() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    net.datagram_to(SocketAddrV4::new(PEER, 40000), 7, b"hello");
    let mut buf = [0u8; 64];
    assert_eq!(net.recv(fd, &mut buf), Ok((5, sa(PEER, 40000))));
    assert_eq!(&buf[..5], b"hello");
}

#[test]
fn connect_filters_other_peers_and_af_unspec_dissolves() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    net.s.connect(fd, Some(sa(PEER, 4000))).unwrap();
    assert_eq!(net.s.getpeername(fd), Ok(sa(PEER, 4000)));
    assert_eq!(net.s.getsockname(fd), Ok(sa(US, 7)), "connect fixes the source address");
    net.datagram_to(SocketAddrV4::new(OTHER, 4000), 7, b"stranger");
    net.datagram_to(SocketAddrV4::new(PEER, 4000), 7, b"peer");
    let mut buf = [0u8; 64];
    assert_eq!(net.recv(fd, &mut buf), Ok((4, sa(PEER, 4000))));
    assert_eq!(net.recv(fd, &mut buf), Err(Errno::EAGAIN), "the stranger's datagram was not for us");

    net.s.connect(fd, None).unwrap();
    assert_eq!(net.s.getpeername(fd), Err(Errno::ENOTCONN));
    assert_eq!(net.s.getsockname(fd), Ok(sa(Ipv4Addr::UNSPECIFIED, 7)), "explicit port kept, address reset");
    net.datagram_to(SocketAddrV4::new(OTHER, 4000), 7, b"stranger");
    assert_eq!(net.recv(fd, &mut buf), Ok((8, sa(OTHER, 4000))));
}

#[test]
fn af_unspec_releases_an_implicit_port() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.connect(fd, Some(sa(PEER, 4000))).unwrap();
    let SocketAddr::V4(local) = net.s.getsockname(fd).unwrap() else { panic!() };
    assert_ne!(local.port(), 0);
    net.s.connect(fd, None).unwrap();
    assert_eq!(net.s.getsockname(fd), Ok(sa(Ipv4Addr::UNSPECIFIED, 0)), "Linux unhashes an autobound port");
}

#[test]
fn send_without_a_peer_gives_edestaddrreq() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.send(fd, b"x", MsgFlags::NONE), Err(Errno::EDESTADDRREQ));
    net.s.connect(fd, Some(sa(PEER, 4000))).unwrap();
    assert_eq!(net.s.send(fd, b"x", MsgFlags::NONE), Ok(1));
    let mut buf = [0u8; 4];
    net.datagram_to(SocketAddrV4::new(PEER, 4000), net_port(&net, fd), b"ok");
    assert_eq!(net.s.recv(fd, &mut buf, MsgFlags::DONTWAIT), Ok(2));
}

fn net_port(net: &Net, fd: Fd) -> u16 {
    net.s.getsockname(fd).unwrap().port()
}

#[test]
fn getpeername_without_a_peer_gives_enotconn() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.getpeername(fd), Err(Errno::ENOTCONN));
    assert_eq!(net.s.getpeername(Fd(99)), Err(Errno::EBADF));
}

#[test]
fn message_boundaries_are_kept_and_truncation_reported() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    let from = SocketAddrV4::new(PEER, 1);
    net.datagram_to(from, 7, b"first");
    net.datagram_to(from, 7, b"second datagram");
    net.datagram_to(from, 7, b"third");
    let mut small = [0u8; 3];
    let m = net.s.recvfrom(fd, &mut small, MsgFlags::DONTWAIT).unwrap();
    assert_eq!((m.len, m.truncated, &small), (3, true, b"fir"), "the rest of 'first' is discarded");
    let m = net.s.recvfrom(fd, &mut small, MsgFlags::DONTWAIT | MsgFlags::TRUNC).unwrap();
    assert_eq!((m.len, m.truncated), (15, true), "MSG_TRUNC returns the real length");
    let mut buf = [0u8; 64];
    let m = net.s.recvfrom(fd, &mut buf, MsgFlags::DONTWAIT).unwrap();
    assert_eq!((&buf[..m.len], m.truncated), (&b"third"[..], false), "never merged with a neighbour");
}

#[test]
fn msg_peek_leaves_the_datagram() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    net.datagram_to(SocketAddrV4::new(PEER, 1), 7, b"peek");
    let mut buf = [0u8; 8];
    assert_eq!(net.s.recv(fd, &mut buf, MsgFlags::PEEK | MsgFlags::DONTWAIT), Ok(4));
    assert_eq!(net.s.recv(fd, &mut buf, MsgFlags::DONTWAIT), Ok(4));
    assert_eq!(net.s.recv(fd, &mut buf, MsgFlags::DONTWAIT), Err(Errno::EAGAIN));
}

#[test]
fn zero_length_datagrams_go_both_ways() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    net.datagram_to(SocketAddrV4::new(PEER, 1), 7, b"");
    let mut buf = [0u8; 8];
    assert_eq!(net.recv(fd, &mut buf), Ok((0, sa(PEER, 1))));
    assert_eq!(net.s.readiness(fd).unwrap(), Readiness::OUT, "consumed: no longer readable");
    assert_eq!(net.s.sendto(fd, b"", MsgFlags::NONE, Some(sa(PEER, 1))), Ok(0));
    assert_eq!(Net::udp_out(&net.sent()), vec![(7, SocketAddrV4::new(PEER, 1), vec![])]);
}

#[test]
fn oversized_datagram_gives_emsgsize() {
    let mut net = Net::new();
    let fd = net.udp();
    let big = vec![0u8; 65508];
    assert_eq!(net.s.sendto(fd, &big, MsgFlags::NONE, Some(sa(PEER, 1))), Err(Errno::EMSGSIZE));
    assert_eq!(net.s.sendto(fd, &big[..65507], MsgFlags::NONE, Some(sa(PEER, 1))), Ok(65507));
    let frames = net.sent();
    assert_eq!(frames.len(), 45, "65515 bytes of IP payload in 1480-byte fragments");
    let total: usize = frames.iter().map(|f| parse_ipv4(f).unwrap().1.len()).sum();
    assert_eq!(total, 65515);
    assert!(frames.iter().all(|f| !parse_ipv4(f).unwrap().0.dont_fragment), "fragments never carry DF");
}

#[test]
fn so_rcvbuf_bounds_the_queue_and_counts_drops() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.setsockopt(fd, SockOpt::RcvBuf, 4096).unwrap();
    assert_eq!(net.s.getsockopt(fd, SockOpt::RcvBuf), Ok(8192), "Linux doubles the requested size");
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    for _ in 0..20 {
        net.datagram_to(SocketAddrV4::new(PEER, 1), 7, &[7u8; 1000]);
    }
    let mut received = 0;
    let mut buf = [0u8; 2000];
    while net.recv(fd, &mut buf).is_ok() {
        received += 1;
    }
    let drops = net.s.socket_drops(fd).unwrap();
    assert!(received > 0 && drops > 0, "received {received}, dropped {drops}");
    assert_eq!(received + drops, 20, "every datagram either queued or counted");
    assert_eq!(net.s.counters().get("UdpRcvbufErrors"), Some(drops));
    net.s.setsockopt(fd, SockOpt::RcvBuf, 1).unwrap();
    assert_eq!(net.s.getsockopt(fd, SockOpt::RcvBuf), Ok(2304), "Linux's floor");
}

#[test]
fn port_unreachable_on_a_connected_socket_gives_econnrefused() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.connect(fd, Some(sa(PEER, 9))).unwrap();
    net.s.send(fd, b"anyone?", MsgFlags::NONE).unwrap();
    let sent = net.sent();
    let (ip, payload) = parse_ipv4(&sent[0]).unwrap();
    let mut quoted = vec![0u8; 20 + payload.len()];
    ip.emit(&mut quoted);
    quoted[20..].copy_from_slice(&payload);
    let unreachable = IcmpMessage::DestUnreachable { code: unreach_code::PORT, next_hop_mtu: 0, quoted: &quoted };
    net.deliver(&icmp_frame((PEER_MAC, US_MAC), PEER, US, &unreachable));
    assert!(net.s.readiness(fd).unwrap().contains(Readiness::ERR));
    assert_eq!(net.s.getsockopt(fd, SockOpt::Error), Ok(Errno::ECONNREFUSED.code()), "SO_ERROR");
    assert_eq!(net.s.getsockopt(fd, SockOpt::Error), Ok(0), "read-and-clear");

    net.deliver(&icmp_frame((PEER_MAC, US_MAC), PEER, US, &unreachable));
    assert_eq!(net.s.send(fd, b"again", MsgFlags::NONE), Err(Errno::ECONNREFUSED), "the next call reports it");
    assert_eq!(net.s.send(fd, b"again", MsgFlags::NONE), Ok(5));
}

#[test]
fn port_unreachable_is_ignored_by_an_unconnected_socket() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(PEER, 9))).unwrap();
    let (ip, payload) = parse_ipv4(&net.sent()[0]).unwrap();
    let mut quoted = vec![0u8; 28];
    ip.emit(&mut quoted);
    quoted[20..].copy_from_slice(&payload[..8]);
    let msg = IcmpMessage::DestUnreachable { code: unreach_code::PORT, next_hop_mtu: 0, quoted: &quoted };
    net.deliver(&icmp_frame((PEER_MAC, US_MAC), PEER, US, &msg));
    assert_eq!(net.s.getsockopt(fd, SockOpt::Error), Ok(0), "udp(7): only connected sockets get it");
}

#[test]
fn datagrams_to_closed_ports_get_port_unreachable() {
    let mut net = Net::new();
    let out = net.datagram_to(SocketAddrV4::new(PEER, 1234), 9, b"knock");
    assert_eq!(out.len(), 1);
    let (ip, icmp) = parse_ipv4(&out[0]).unwrap();
    assert_eq!(ip.dst, PEER);
    match IcmpMessage::parse(&icmp).unwrap() {
        IcmpMessage::DestUnreachable { code, quoted, .. } => {
            assert_eq!(code, unreach_code::PORT);
            assert_eq!(&quoted[20..22], &1234u16.to_be_bytes(), "quotes the offending datagram");
        }
        other => panic!("expected port unreachable, got {other:?}"),
    }
    assert_eq!(net.s.counters().get("UdpNoPorts"), Some(1));
}

#[test]
fn port_unreachable_generation_is_rate_limited() {
    let mut net = Net::with(|c| {
        c.icmp_burst = 5;
        c.icmp_rate_per_sec = 1;
    });
    let mut sent = 0;
    for i in 0..20 {
        sent += net.datagram_to(SocketAddrV4::new(PEER, 1000 + i), 9, b"x").len();
    }
    assert_eq!(sent, 5);
    assert_eq!(net.s.counters().get("IcmpOutRateLimitGlobal"), Some(15));
    net.now += Duration::from_secs(2);
    assert_eq!(net.datagram_to(SocketAddrV4::new(PEER, 1), 9, b"x").len(), 1, "refilled over time");
}

#[test]
fn broadcast_needs_so_broadcast() {
    let mut net = Net::new();
    let fd = net.udp();
    let bcast = sa(Ipv4Addr::BROADCAST, 67);
    assert_eq!(net.s.sendto(fd, b"dhcp?", MsgFlags::NONE, Some(bcast)), Err(Errno::EACCES));
    assert_eq!(net.s.connect(fd, Some(sa(Ipv4Addr::new(198, 18, 0, 255), 67))), Err(Errno::EACCES));
    net.s.setsockopt(fd, SockOpt::Broadcast, 1).unwrap();
    assert_eq!(net.s.sendto(fd, b"dhcp?", MsgFlags::NONE, Some(bcast)), Ok(5));
    let frames = net.sent();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][..6], [0xff; 6], "link-layer broadcast, no ARP");
}

#[test]
fn broadcast_datagrams_are_received_but_never_answered_with_icmp() {
    let mut net = Net::new();
    let frame = udp_frame(
        (PEER_MAC, MacAddr::BROADCAST),
        SocketAddrV4::new(PEER, 68),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        b"x",
    );
    assert!(net.deliver(&frame).is_empty(), "RFC 1122 3.2.2: no ICMP error about a broadcast");
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 67)).unwrap();
    net.deliver(&frame);
    let mut buf = [0u8; 4];
    assert_eq!(net.recv(fd, &mut buf), Ok((1, sa(PEER, 68))));
}

#[test]
fn nonblocking_receive_on_an_empty_queue_gives_eagain() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(net.recv(fd, &mut buf), Err(Errno::EAGAIN));
    assert_eq!(net.s.readiness(fd).unwrap(), Readiness::OUT);
}

#[test]
fn unresolvable_neighbour_gives_ehostunreach_on_a_connected_socket() {
    let mut net = Net::new();
    let fd = net.udp();
    let ghost = Ipv4Addr::new(198, 18, 0, 99);
    net.s.connect(fd, Some(sa(ghost, 7))).unwrap();
    net.s.send(fd, b"hello?", MsgFlags::NONE).unwrap();
    let mut requests = 0;
    for _ in 0..5 {
        requests += net.sent().iter().filter(|f| parse_arp(f).is_some_and(|a| a.target_ip == ghost)).count();
        net.now += Duration::from_secs(1);
    }
    assert_eq!(requests, 3, "three tries, a second apart");
    assert_eq!(net.s.getsockopt(fd, SockOpt::Error), Ok(Errno::EHOSTUNREACH.code()));
    assert_eq!(net.s.counters().get("ArpResFailed"), Some(1));
}

#[test]
fn datagrams_wait_for_arp_and_go_when_it_resolves() {
    let mut net = Net::new();
    let fd = net.udp();
    let late = Ipv4Addr::new(198, 18, 0, 50);
    let late_mac = MacAddr([2, 0, 0, 0, 0, 0x50]);
    for i in 0..3u8 {
        net.s.sendto(fd, &[i], MsgFlags::NONE, Some(sa(late, 7))).unwrap();
    }
    let first = net.sent();
    assert_eq!(first.len(), 1, "only the ARP request goes out");
    assert!(parse_arp(&first[0]).is_some());
    let released = net.deliver(&arp_request(late_mac, late, US));
    let datagrams = Net::udp_out(&released);
    assert_eq!(datagrams.iter().map(|d| d.2.clone()).collect::<Vec<_>>(), vec![vec![0], vec![1], vec![2]], "in order");
    assert!(released.iter().all(|f| f[..6] == late_mac.0 || parse_arp(f).is_some()));
}

#[test]
fn shutdown_rules() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.shutdown(fd, Shutdown::Write), Err(Errno::ENOTCONN), "unconnected: recorded, ENOTCONN");
    assert_eq!(net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(PEER, 1))), Err(Errno::EPIPE));
    let c = net.udp();
    net.s.connect(c, Some(sa(PEER, 1))).unwrap();
    assert_eq!(net.s.shutdown(c, Shutdown::Read), Ok(()));
    let mut buf = [0u8; 4];
    assert_eq!(net.s.recv(c, &mut buf, MsgFlags::DONTWAIT), Err(Errno::EAGAIN), "non-blocking: EAGAIN");
    assert_eq!(net.s.recv(c, &mut buf, MsgFlags::NONE), Ok(0), "a blocking caller is released with 0");
    assert!(net.s.readiness(c).unwrap().contains(Readiness::IN | Readiness::RDHUP));
    net.s.shutdown(c, Shutdown::Write).unwrap();
    assert!(net.s.readiness(c).unwrap().contains(Readiness::HUP));
}

#[test]
fn close_frees_the_port_and_still_sends_what_was_accepted() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
    net.s.sendto(fd, b"last words", MsgFlags::NONE, Some(sa(PEER, 1))).unwrap();
    net.s.close(fd).unwrap();
    assert_eq!(net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(PEER, 1))), Err(Errno::EBADF));
    assert_eq!(Net::udp_out(&net.sent()), vec![(7, SocketAddrV4::new(PEER, 1), b"last words".to_vec())]);
    let again = net.udp();
    net.s.bind(again, sa(Ipv4Addr::UNSPECIFIED, 7)).unwrap();
}

#[test]
fn bad_destinations_are_refused() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(PEER, 0))), Err(Errno::EINVAL));
    assert_eq!(
        net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(Ipv4Addr::new(203, 0, 113, 1), 7))),
        Err(Errno::ENETUNREACH)
    );
    assert_eq!(net.s.sendto(fd, b"x", MsgFlags::NONE, Some("[fd00::1]:7".parse().unwrap())), Err(Errno::EAFNOSUPPORT));
}

#[test]
fn off_link_destinations_go_through_the_gateway() {
    let gw = Ipv4Addr::new(198, 18, 0, 1);
    let mut net = Net::with(|c| c.gateway = Some(gw));
    let fd = net.udp();
    net.s.sendto(fd, b"far", MsgFlags::NONE, Some(sa(Ipv4Addr::new(198, 19, 5, 5), 7))).unwrap();
    let frames = net.sent();
    assert_eq!(frames[0][..6], PEER_MAC.0, "framed to the gateway's MAC");
    assert_eq!(parse_ipv4(&frames[0]).unwrap().0.dst, Ipv4Addr::new(198, 19, 5, 5));
}

#[test]
fn sending_to_our_own_address_loops_back() {
    let mut net = Net::new();
    let rx = net.udp();
    net.s.bind(rx, sa(US, 7)).unwrap();
    let tx = net.udp();
    net.s.sendto(tx, b"self", MsgFlags::NONE, Some(sa(US, 7))).unwrap();
    assert!(net.sent().is_empty(), "nothing on the wire");
    net.sent();
    let mut buf = [0u8; 8];
    let (n, from) = net.recv(rx, &mut buf).unwrap();
    assert_eq!((&buf[..n], from.ip()), (&b"self"[..], std::net::IpAddr::V4(US)));
}

#[test]
fn socket_options_read_back() {
    let mut net = Net::new();
    let fd = net.udp();
    assert_eq!(net.s.getsockopt(fd, SockOpt::Type), Ok(2), "SOCK_DGRAM");
    assert_eq!(net.s.getsockopt(fd, SockOpt::AcceptConn), Ok(0));
    assert_eq!(net.s.getsockopt(fd, SockOpt::RcvBuf), Ok(212_992));
    net.s.setsockopt(fd, SockOpt::IpTtl, 7).unwrap();
    assert_eq!(net.s.getsockopt(fd, SockOpt::IpTtl), Ok(7));
    assert_eq!(net.s.setsockopt(fd, SockOpt::IpTtl, 0), Err(Errno::EINVAL));
    assert_eq!(net.s.setsockopt(fd, SockOpt::Error, 1), Err(Errno::ENOPROTOOPT));
    net.s.sendto(fd, b"x", MsgFlags::NONE, Some(sa(PEER, 1))).unwrap();
    assert_eq!(parse_ipv4(&net.sent()[0]).unwrap().0.ttl, 7);
}

/// A device that vouches for a frame's checksum (a TAP with offloads: the local kernel left the checksum
/// undone, as `CHECKSUM_PARTIAL`) has it delivered without verification; the same bytes from an ordinary
/// read are a checksum error (RFC 768: a datagram with a bad checksum is discarded).
#[test]
fn a_checksum_the_device_vouches_for_is_not_verified() {
    let mut net = Net::new();
    let fd = net.udp();
    net.s.bind(fd, sa(US, 7)).unwrap();
    let mut frame = udp_frame((PEER_MAC, US_MAC), SocketAddrV4::new(PEER, 9), SocketAddrV4::new(US, 7), b"hi");
    // The partial form: the checksum field holds something other than the full checksum.
    frame[14 + 20 + 6] ^= 0x5a;
    net.deliver(&frame);
    let mut buf = [0u8; 8];
    assert_eq!(net.recv(fd, &mut buf), Err(Errno::EAGAIN), "an ordinary read verifies, and drops");
    assert_eq!(net.s.counters().get("UdpInCsumErrors"), Some(1));

    let mut batch = ustack_netdev::FrameBatch::new(2, 1514);
    assert!(batch.push(&frame));
    batch.mark_checksum_trusted(0);
    let mut out = Vec::new();
    net.s.receive_device_batch(net.now, &batch, &mut out);
    assert_eq!(net.recv(fd, &mut buf).map(|(n, _)| n), Ok(2), "the vouched-for datagram arrives");
    assert_eq!(net.s.counters().get("UdpInCsumErrors"), Some(1));
}
