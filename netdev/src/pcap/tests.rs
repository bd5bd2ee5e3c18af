//! Tests of the pcap writer, reader and capture wrapper, including the real-capture fixtures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::fault::Rng;
use crate::pipe::{Pipe, PipeConfig};
use crate::{Device, FrameBatch};

/// Packet counts of the fixtures, as `capinfos` reports them.
const FIXTURE_COUNTS: &[(&str, usize)] = &[
    ("01_tcp_handshake", 3),
    ("02_http_ipv4_ipv6_full_lifecycle", 20),
    ("03_dns_over_tcp_full_lifecycle", 11),
    ("04_tcp_teardown_passive_close", 4),
    ("05_tcp_syn_refused_rst", 2),
    ("06_tcp_rst_with_payload", 1),
    ("07_tcp_rto_backoff_retransmissions", 6),
    ("08_tcp_sack_dupack_fast_retransmit", 9),
    ("09_tcp_zero_window_recovery", 7),
    ("10_tcp_zero_window_probes", 8),
    ("11_tcp_window_scale_extremes", 5),
    ("12_tcp_handshake_reordered_capture_http", 14),
    ("13_arp_request_reply", 2),
    ("14_icmpv4_echo", 4),
    ("15_ipv6_ndp_ns_na_and_ping6", 7),
    ("16_udp_dns_query_response", 2),
    ("17_ipv4_fragments_icmp", 6),
    ("18_ipv6_fragments_icmpv6", 22),
    ("19_icmp_port_unreachable_for_udp", 1),
    ("20_tcp_handshake_nanosec_linux_sll", 3),
    ("x1_udp_bad_checksum", 1),
    ("x2_ipv6_fragmented_dns_with_orphan_fragment", 8),
    ("x3_tcp_fast_retransmit_headers_only_snaplen54", 39),
    ("x4_linktype_raw_ipv4_dns", 1),
    ("x5_fuzz_truncated_tcp_header", 1),
    ("x6_icmpv6_packet_too_big", 1),
];

/// The fixture folder: the repository's own `pcaps/` (copies of the shared captures), unless
/// `USTACK_PCAP_FIXTURES` names another; `None` with a printed notice if neither is there.
fn fixture_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [std::env::var_os("USTACK_PCAP_FIXTURES").map(PathBuf::from), Some(manifest.join("../pcaps"))];
    let found = candidates.into_iter().flatten().find(|p| p.join("13_arp_request_reply.pcap").is_file());
    if found.is_none() {
        println!("SKIPPED: pcap fixtures not found (set USTACK_PCAP_FIXTURES)");
    }
    found
}

fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ustack-netdev-{}-{tag}-{n}.pcap", std::process::id()))
}

#[test]
fn write_then_parse_round_trip() {
    let mut w = Writer::new(Vec::new(), LinkType::Ethernet).unwrap();
    let frames: Vec<(Duration, Vec<u8>)> = vec![
        (Duration::new(1_700_000_000, 123_456_789), vec![0xaa; 60]),
        (Duration::new(1_700_000_001, 1), (0..=255).collect()),
        (Duration::ZERO, Vec::new()),
    ];
    for (ts, data) in &frames {
        w.write_packet(*ts, data).unwrap();
    }
    w.flush().unwrap();
    let bytes = w.into_inner();
    assert_eq!(&bytes[..4], &0xa1b2_3c4du32.to_ne_bytes());
    let cap = parse(&bytes).unwrap();
    assert_eq!(cap.link_type, LinkType::Ethernet);
    assert_eq!(cap.packets.len(), 3);
    for (p, (ts, data)) in cap.packets.iter().zip(&frames) {
        assert_eq!(p.ts, *ts);
        assert_eq!(&p.data, data);
        assert_eq!(p.orig_len as usize, data.len());
        assert_eq!(p.link_type, LinkType::Ethernet);
    }
}

#[test]
fn writer_cuts_at_snaplen() {
    let mut w = Writer::new(Vec::new(), LinkType::Raw).unwrap();
    w.write_packet(Duration::ZERO, &vec![0x45; 300_000]).unwrap();
    let cap = parse(&w.into_inner()).unwrap();
    assert_eq!(cap.link_type, LinkType::Raw);
    assert_eq!(cap.packets[0].data.len(), 262_144);
    assert_eq!(cap.packets[0].orig_len, 300_000);
}

#[test]
fn link_type_numbers() {
    for v in [1, 101, 113, 276, 228] {
        assert_eq!(LinkType::from_u32(v).to_u32(), v);
    }
    assert_eq!(LinkType::from_u32(12), LinkType::Raw);
    assert_eq!(LinkType::from_u32(14), LinkType::Raw);
    assert_eq!(LinkType::from_u32(0), LinkType::Other(0));
}

#[test]
fn every_fixture_parses_with_the_expected_counts() {
    let Some(dir) = fixture_dir() else { return };
    let files = fixture_files(&dir);
    assert!(files.len() >= 37, "found only {} fixtures", files.len());
    for file in &files {
        let cap = read_file(file).unwrap_or_else(|e| panic!("{e}"));
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let expected = FIXTURE_COUNTS.iter().find(|(name, _)| *name == stem).map(|&(_, n)| n);
        assert_eq!(Some(cap.packets.len()), expected, "{}", file.display());
        for p in &cap.packets {
            assert!(p.data.len() <= p.orig_len as usize, "{}", file.display());
            assert_eq!(p.link_type, cap.link_type);
        }
    }
}

#[test]
fn pcapng_and_its_classic_conversion_agree() {
    let Some(dir) = fixture_dir() else { return };
    for classic in fixture_files(&dir.join("converted-pcap")) {
        let stem = classic.file_stem().unwrap().to_str().unwrap();
        let ng = read_file(dir.join(format!("{stem}.pcapng"))).unwrap();
        let pcap = read_file(&classic).unwrap();
        assert_eq!(ng, pcap, "{stem}");
    }
}

#[test]
fn fixture_details() {
    let Some(dir) = fixture_dir() else { return };
    let arp = read_file(dir.join("13_arp_request_reply.pcap")).unwrap();
    assert_eq!(arp.link_type, LinkType::Ethernet);
    assert_eq!(&arp.packets[0].data[12..14], &[0x08, 0x06]);
    assert_eq!(arp.packets[0].ethernet_frame().as_deref(), Some(&arp.packets[0].data[..]));

    let frags = read_file(dir.join("17_ipv4_fragments_icmp.pcapng")).unwrap();
    assert_eq!(frags.packets.len(), 6);
    assert_eq!(frags.packets[0].data.len(), 1514);

    // Nanosecond timestamps: tshark shows the second packet 0.127521774 s after the first.
    let sll = read_file(dir.join("20_tcp_handshake_nanosec_linux_sll.pcap")).unwrap();
    assert_eq!(sll.link_type, LinkType::LinuxSll);
    assert_eq!(sll.packets[1].ts - sll.packets[0].ts, Duration::from_nanos(127_521_774));
    assert_eq!(sll.packets[2].ts - sll.packets[0].ts, Duration::from_nanos(127_609_669));
    let p = &sll.packets[0];
    let frame = p.ethernet_frame().unwrap();
    assert_eq!(frame.len(), p.data.len() - 16 + 14);
    assert_eq!(&frame[..6], &[2, 0, 0, 0, 0, 2]);
    assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 1], "no 6-byte address in this capture");
    assert_eq!(&frame[12..14], &[0x08, 0x00]);
    assert_eq!(&frame[14..], &p.data[16..]);
    assert_eq!(frame[14] >> 4, 4);

    let raw = read_file(dir.join("extras/x4_linktype_raw_ipv4_dns.pcap")).unwrap();
    assert_eq!(raw.link_type, LinkType::Raw);
    let p = &raw.packets[0];
    let frame = p.ethernet_frame().unwrap();
    assert_eq!(&frame[..14], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    assert_eq!(&frame[14..], &p.data[..]);

    let snap = read_file(dir.join("extras/x3_tcp_fast_retransmit_headers_only_snaplen54.pcap")).unwrap();
    let cut: Vec<&Packet> = snap.packets.iter().filter(|p| p.data.len() < p.orig_len as usize).collect();
    assert_eq!(cut.len(), 21, "tshark: 21 packets cut by the 54-byte snaplen");
    assert!(cut.iter().all(|p| p.data.len() == 54));
}

fn packet(link_type: LinkType, data: Vec<u8>) -> Packet {
    Packet { ts: Duration::ZERO, orig_len: data.len() as u32, data, link_type }
}

#[test]
fn ethernet_frame_conversions() {
    // SLL2 with a 6-byte source address, carrying IPv6.
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0]);
    sll2.extend_from_slice(&[0x60, 0, 0, 0]);
    let frame = packet(LinkType::LinuxSll2, sll2).ethernet_frame().unwrap();
    assert_eq!(&frame[..14], &[2, 0, 0, 0, 0, 2, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x86, 0xdd]);
    assert_eq!(&frame[14..], &[0x60, 0, 0, 0]);

    // SLL v1 with a 6-byte address, carrying ARP.
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x06];
    sll.extend_from_slice(&[0xab; 28]);
    let frame = packet(LinkType::LinuxSll, sll).ethernet_frame().unwrap();
    assert_eq!(&frame[6..14], &[1, 2, 3, 4, 5, 6, 0x08, 0x06]);

    // Raw IPv6; raw garbage; an SLL pseudo-protocol; short and unknown packets.
    let frame = packet(LinkType::Raw, vec![0x60, 0, 0, 0]).ethernet_frame().unwrap();
    assert_eq!(&frame[12..14], &[0x86, 0xdd]);
    assert_eq!(packet(LinkType::Raw, vec![0x10]).ethernet_frame(), None);
    assert_eq!(packet(LinkType::Raw, vec![]).ethernet_frame(), None);
    let llc = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x00, 0x04];
    assert_eq!(packet(LinkType::LinuxSll, llc).ethernet_frame(), None);
    assert_eq!(packet(LinkType::LinuxSll, vec![0; 15]).ethernet_frame(), None);
    assert_eq!(packet(LinkType::LinuxSll2, vec![0; 19]).ethernet_frame(), None);
    assert_eq!(packet(LinkType::Ethernet, vec![0; 13]).ethernet_frame(), None);
    assert_eq!(packet(LinkType::Other(0), vec![0; 60]).ethernet_frame(), None);
}

/// Builds pcapng blocks in either byte order.
struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, kind: u32, body: &[u8]) {
        let mut padded = body.to_vec();
        padded.resize(body.len().next_multiple_of(4), 0);
        let len = (padded.len() + 12) as u32;
        let (k, l) = (self.u32(kind), self.u32(len));
        self.out.extend_from_slice(&k);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&padded);
        self.out.extend_from_slice(&l);
    }
    fn shb(&mut self) {
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body);
    }
    fn idb(&mut self, link: u16, snap: u32, options: &[(u16, &[u8])]) {
        let mut body = self.u16(link).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(snap));
        for (code, value) in options {
            body.extend_from_slice(&self.u16(*code));
            body.extend_from_slice(&self.u16(value.len() as u16));
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        body.extend_from_slice(&[0; 4]);
        self.block(1, &body);
    }
    fn epb(&mut self, iface: u32, ts: u64, data: &[u8], orig: u32) {
        let mut body = self.u32(iface).to_vec();
        for v in [(ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
            body.extend_from_slice(&self.u32(v));
        }
        body.extend_from_slice(data);
        self.block(6, &body);
    }
}

#[test]
fn pcapng_blocks_in_both_byte_orders() {
    for big in [false, true] {
        let mut ng = Ng { big, out: Vec::new() };
        ng.shb();
        ng.idb(1, 0, &[]); // microseconds by default
        ng.idb(101, 0, &[(9, &[9]), (2, b"eth0")]); // nanoseconds, plus an if_name option
        let offset = if big { 2i64.to_be_bytes() } else { 2i64.to_le_bytes() }; // if_tsoffset: +2 s
        ng.idb(113, 0, &[(9, &[0x80 | 10]), (14, &offset)]); // 2^-10 s units
        ng.epb(0, 1_500_000, &[0xee; 14], 14);
        ng.epb(1, 2_000_000_123, &[0x45, 0, 0, 20], 40);
        ng.epb(2, 3 * 1024 + 512, &[0; 16], 16); // 3.5 s, plus the offset
        ng.block(0x0bad, &[1, 2, 3, 4, 5]); // unknown: skipped
        let spb: Vec<u8> = ng.u32(6).iter().chain(&[1, 2, 3, 4, 5, 6]).copied().collect();
        ng.block(3, &spb);
        let mut opb = ng.u16(0).to_vec();
        opb.extend_from_slice(&ng.u16(0));
        for v in [0, 7, 2, 2] {
            opb.extend_from_slice(&ng.u32(v));
        }
        opb.extend_from_slice(&[9, 9]);
        ng.block(2, &opb);
        let cap = parse(&ng.out).unwrap_or_else(|e| panic!("big={big}: {e}"));
        assert_eq!(cap.link_type, LinkType::Ethernet);
        let p = &cap.packets;
        assert_eq!(p.len(), 5);
        assert_eq!((p[0].ts, p[0].link_type), (Duration::from_micros(1_500_000), LinkType::Ethernet));
        assert_eq!((p[1].ts, p[1].link_type, p[1].orig_len), (Duration::new(2, 123), LinkType::Raw, 40));
        assert_eq!((p[2].ts, p[2].link_type), (Duration::from_millis(5500), LinkType::LinuxSll));
        assert_eq!((p[3].ts, &p[3].data[..], p[3].orig_len), (Duration::ZERO, &[1, 2, 3, 4, 5, 6][..], 6));
        assert_eq!((p[4].ts, &p[4].data[..]), (Duration::from_micros(7), &[9, 9][..]));
    }
}

#[test]
fn pcapng_errors() {
    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    let header_only = ng.out.clone();
    assert_eq!(parse(&header_only).unwrap().packets.len(), 0);
    assert_eq!(parse(&header_only).unwrap().link_type, LinkType::Other(0));

    ng.epb(0, 0, &[1], 1);
    assert!(matches!(parse(&ng.out), Err(PcapError::UnknownInterface { interface: 0, .. })));

    let mut bad_len = header_only.clone();
    bad_len.extend_from_slice(&[1, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0]);
    assert!(matches!(parse(&bad_len), Err(PcapError::BadBlockLength { length: 13, .. })));

    let mut overrun = header_only.clone();
    overrun.extend_from_slice(&[1, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0]);
    assert!(matches!(parse(&overrun), Err(PcapError::BadBlockLength { length: 64, .. })));

    let mut bom = header_only.clone();
    bom[8] = 0;
    assert!(matches!(parse(&bom), Err(PcapError::BadByteOrder { offset: 0 })));

    assert!(matches!(parse(b"hello world"), Err(PcapError::BadMagic(_))));
    assert!(matches!(parse(b"hi"), Err(PcapError::Truncated { offset: 0 })));
    assert!(matches!(parse(&0xa1b2_c3d4u32.to_le_bytes()), Err(PcapError::Truncated { offset: 0 })));
    let err: std::io::Error = PcapError::BadMagic(7).into();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn classic_big_endian_microseconds() {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
    b.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 101]);
    for v in [5u32, 250_000, 4, 4] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&[0x45, 0, 0, 0]);
    // A record whose length overruns: cut to what is there.
    for v in [6u32, 0, 1000, 1000] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&[1, 2, 3]);
    let cap = parse(&b).unwrap();
    assert_eq!(cap.link_type, LinkType::Raw);
    assert_eq!(cap.packets[0].ts, Duration::from_millis(5250));
    assert_eq!(cap.packets[1].data, vec![1, 2, 3]);
    assert_eq!(cap.packets[1].orig_len, 1000);
}

/// Parses `bytes` and touches every packet; the test is that nothing panics and nothing grows beyond the input.
fn parse_anything(bytes: &[u8]) {
    if let Ok(cap) = parse(bytes) {
        let total: usize = cap.packets.iter().map(|p| p.data.len()).sum();
        assert!(total <= bytes.len());
        for p in &cap.packets {
            let _ = p.ethernet_frame();
        }
    }
}

#[test]
fn truncated_and_mutated_fixtures_never_panic() {
    let Some(dir) = fixture_dir() else { return };
    let mut rng = Rng::new(0x5eed);
    for file in fixture_files(&dir) {
        let bytes = std::fs::read(&file).unwrap();
        for len in 0..=bytes.len() {
            parse_anything(&bytes[..len]);
        }
        let mut copy = bytes.clone();
        for _ in 0..200 {
            copy.copy_from_slice(&bytes);
            for _ in 0..=rng.below(4) {
                let i = rng.below(copy.len() as u64) as usize;
                copy[i] = match rng.below(3) {
                    0 => rng.next_u64() as u8,
                    1 => 0xff,
                    _ => copy[i] ^ (1 << rng.below(8)),
                };
            }
            parse_anything(&copy);
            let cut = rng.below(copy.len() as u64 + 1) as usize;
            parse_anything(&copy[..cut]);
        }
    }
}

#[test]
fn capture_records_both_directions() {
    let path = temp_path("capture");
    let (a, mut b) = Pipe::pair(PipeConfig::default());
    let writer = Writer::create(&path, LinkType::Ethernet).unwrap();
    let mut tick = 0u64;
    let clock: Clock = Box::new(move || {
        tick += 1;
        Duration::from_millis(tick)
    });
    let mut cap = Capture::new(a, writer, clock);
    assert_eq!(cap.mtu(), 1500);
    assert!(cap.pollable_fd().is_some());

    let mut batch = FrameBatch::new(4, 1514);
    batch.push(&[1; 60]);
    batch.push(&[2; 60]);
    assert_eq!(cap.send_batch(&mut batch).unwrap(), 2);
    assert!(batch.is_empty());
    b.recv_batch(&mut batch).unwrap();
    batch.clear();
    batch.push(&[3; 70]);
    b.send_batch(&mut batch).unwrap();
    // A frame already in the batch is not recorded again.
    batch.push(&[9; 60]);
    assert_eq!(cap.recv_batch(&mut batch).unwrap(), 1);
    cap.flush().unwrap();
    assert_eq!(cap.write_errors(), 0);
    let _pipe_end = cap.into_inner();

    let file = read_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let got: Vec<(Duration, u8, usize)> = file.packets.iter().map(|p| (p.ts, p.data[0], p.data.len())).collect();
    assert_eq!(
        got,
        vec![(Duration::from_millis(1), 1, 60), (Duration::from_millis(2), 2, 60), (Duration::from_millis(3), 3, 70)]
    );
}

#[test]
fn capture_flushes_on_drop_with_wall_clock() {
    let path = temp_path("wall");
    let (a, mut b) = Pipe::pair(PipeConfig::default());
    {
        let mut cap = Capture::with_wall_clock(a, &path).unwrap();
        let mut batch = FrameBatch::new(1, 1514);
        batch.push(&[7; 42]);
        cap.send_batch(&mut batch).unwrap();
    }
    let file = read_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(file.packets.len(), 1);
    assert!(file.packets[0].ts > Duration::from_secs(1_600_000_000));
    let mut batch = FrameBatch::new(1, 1514);
    assert_eq!(b.recv_batch(&mut batch).unwrap(), 1);
}

#[test]
fn missing_file_error_names_the_path() {
    let err = read_file("/nonexistent/ustack.pcap").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ustack.pcap"), "{err}");
    let err = Writer::create("/nonexistent/dir/x.pcap", LinkType::Ethernet).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dir/x.pcap"), "{err}");
}
