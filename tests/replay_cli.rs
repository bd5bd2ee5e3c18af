//! The replay library's automatic application (`ustack replay` on the command line): a capture replayed in a
//! line, the application side played as the capture implies, and the comparison asserted on. Each test names
//! what the capture shows and what the stack does in its place.

use ustack::wire::tcp::TcpFlags;
use ustack::Instant;
use ustack_harness::replay::{Field, HostSpec, Plan, Replay, ReplayBuilder, Verdict, ORIGIN};

fn fields(r: &ustack_harness::replay::AutoPair) -> Vec<Field> {
    r.differences.iter().map(|e| e.difference.field).collect()
}

fn seconds(at: Instant) -> f64 {
    (at.as_nanos() as f64 - ORIGIN.as_nanos() as f64) / 1e9
}

/// Fixture 03, the stack as the client: it connects just before the captured SYN, sends the 58-byte query
/// when the capture does, reads the 226-byte answer, shuts down at the captured FIN. Every segment is the
/// capture's but for TSval (our clock) and windows (our buffer), which the automatic table explains.
#[test]
fn fixture_03_replays_in_a_line_and_every_difference_is_by_design() {
    let r = Replay::auto("03_dns_over_tcp_full_lifecycle.pcap", "192.168.1.11");
    assert!(r.faithful(), "{r}");
    assert_eq!(r.plan, Plan::Connect { syn_frame: 1 });
    assert_eq!(r.host, "192.168.1.11:33779");
    assert_eq!(r.received.len(), 226, "the DNS answer, read by the application");
    assert_eq!(fields(r.pair(1)), [Field::TsVal]);
    assert!(r.pair(1).differences[0].by_design.as_deref().unwrap().contains("RFC 7323"));
    assert_eq!(r.pair(4).verdict, Verdict::Same, "the query, byte for byte");
    assert_eq!(fields(r.pair(8)), [Field::Window]);
    let c = r.counts();
    assert_eq!((c.host_frames, c.same, c.by_design, c.differ, c.missing, c.extras), (6, 2, 4, 0, 0, 0));
    assert_eq!(c.injected, 5);
    assert_eq!(r.wire().len(), 13, "the ARP exchange priming the gateway, then the 11 segments");
}

/// The same table serves a replay driven by hand: `explain_automatically` instead of one `explain` per
/// difference.
#[test]
fn explain_automatically_covers_a_hand_driven_replay() {
    let mut r = Replay::new("03_dns_over_tcp_full_lifecycle.pcap", "192.168.1.11:33779");
    r.explain_automatically();
    r.play_until(1);
    let fd = r.connect();
    r.play_until(4);
    let query = r.payload(4);
    r.send(fd, &query);
    r.play_until(8);
    r.read_available(fd);
    r.close(fd);
    r.play_all();
    r.assert_faithful();
    assert!(r.report().contains("by design (automatic), TsVal at #1"), "{}", r.report());
}

/// Fixture 12 from both ends: the SYN-ACK captured before its SYN is replayed after it; the client's quick
/// ACKs and the server's immediate ACK of the FIN are extra segments our ACK policy explains; the server's
/// 5007 bytes go out in the captured four segments.
#[test]
fn fixture_12_both_ends() {
    let client = Replay::auto("12_tcp_handshake_reordered_capture_http.pcap", "141.142.228.5");
    assert!(client.faithful(), "{client}");
    assert_eq!(client.plan, Plan::Connect { syn_frame: 2 });
    assert!(client.notes.iter().any(|n| n.contains("#1 replayed after #2")), "{:?}", client.notes);
    assert_eq!(client.received.len(), 5007);
    assert_eq!(client.extras.len(), 2);
    assert!(client.extras.iter().all(|x| x.by_design.as_deref().unwrap().contains("our own pace")));

    let server = Replay::auto("12_tcp_handshake_reordered_capture_http.pcap", "192.150.187.43:80");
    assert!(server.faithful(), "{server}");
    assert_eq!(server.plan, Plan::Listen);
    for frame in [6, 7, 8, 9] {
        let p = server.pair(frame).tcp.as_ref().unwrap();
        assert_eq!(p.ours().payload, p.captured.payload, "#{frame}");
    }
    assert_eq!(fields(server.pair(9)), [Field::Window, Field::TsVal], "PSH on the last one, as captured");
}

/// Fixture 08, the receiver of a capture that starts with a hole: the synthesized handshake puts the hole
/// where the capture's ACKs put it, the stack answers each segment beyond it with a duplicate ACK carrying a
/// SACK block, and the retransmission fills it. The captured SACK blocks start lower: data received before
/// the capture began, which the table says.
#[test]
fn fixture_08_receiver_sacks_the_segments_beyond_the_hole() {
    let r = Replay::auto("08_tcp_sack_dupack_fast_retransmit.pcapng", "172.31.136.85");
    assert!(r.faithful(), "{r}");
    assert!(matches!(r.plan, Plan::MidStream { .. }));
    for (frame, right) in [(3, 12313), (5, 13681), (7, 15049)] {
        let ours = r.pair(frame).tcp.as_ref().unwrap().ours().clone();
        assert_eq!((ours.ack, ours.sack.clone()), (Some(1), vec![(10945, right)]), "#{frame}");
    }
    let last = r.pair(9).tcp.as_ref().unwrap().ours().clone();
    assert_eq!(last.ack, Some(1369), "the retransmission filled the front of the hole");
    assert!(r
        .pair(3)
        .differences
        .iter()
        .any(|e| e.difference.field == Field::Sack
            && e.by_design.as_deref().unwrap().contains("before the capture began")));
}

/// Fixture 10 from both ends. The receiver's application reads at once, so the stack never closes its
/// window (by design: the capture's application did not read). The sender: its zero-window probes show
/// that its application had more to send, so the automatic application writes one more byte when the
/// window closes, and the stack probes as Linux does (`SEQ=SND.UNA-1`, no data), backing off from its RTO of
/// 200 ms (the synthesized handshake's): 0.2, 0.6, 1.4, 3.0, 6.2 and 12.6 s after the window closed, where
/// the capture's host, with an RTO of its own, probed at 3.4, 10.2 and 23.7 s.
#[test]
fn fixture_10_zero_window_both_ends() {
    let receiver = Replay::auto("10_tcp_zero_window_probes.pcapng", "172.31.136.85");
    assert!(receiver.faithful(), "{receiver}");
    assert_eq!(fields(receiver.pair(2)), [Field::Window, Field::TsVal]);

    let sender = Replay::auto("10_tcp_zero_window_probes.pcapng", "195.81.202.68");
    let ours = sender.pairs.iter().filter_map(|p| p.tcp.as_ref()?.ours.clone());
    let probes: Vec<f64> = ours
        .chain(sender.extras.iter().filter_map(|x| x.seg.clone()))
        .filter(|s| s.flags == TcpFlags::ACK && s.seq == 1344 && s.payload.is_empty())
        .map(|s| seconds(s.at))
        .collect();
    let expected = [0.2, 0.6, 1.4, 3.0, 6.2, 12.6].map(|t| t + 0.000029);
    assert_eq!(probes.len(), expected.len(), "{sender}");
    for (got, want) in probes.iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "a probe at {got} s, expected {want} s\n{sender}");
    }
    assert!(sender.pair(3).differences.iter().all(|e| e.difference.field != Field::Seq), "{sender}");
}

/// Datagram captures: UDP (both ends, bound ports, the response sent when the capture sends it), ICMP echo
/// (answered by the stack; the TTL and IP identification are our own) and ARP.
#[test]
fn datagram_captures() {
    let server = Replay::auto("16_udp_dns_query_response.pcap", "209.87.249.18");
    assert!(server.faithful(), "{server}");
    assert_eq!(server.plan, Plan::Datagrams);
    assert_eq!(fields(server.pair(2)), [Field::Ttl, Field::IpId, Field::DontFragment]);
    assert_eq!(server.received.len(), 56, "the query, read by the application");
    let client = Replay::auto("16_udp_dns_query_response.pcap", "192.168.1.11");
    assert!(client.faithful(), "{client}");
    assert_eq!(client.received.len(), 224);

    let ping = Replay::auto("14_icmpv4_echo.pcap", "74.125.225.99");
    assert!(ping.faithful(), "{ping}");
    assert_eq!(fields(ping.pair(2)), [Field::Ttl, Field::IpId]);
    assert!(ping.pair(2).ours.as_deref().unwrap().contains("ICMP echo reply, id 34844, seq 0, length 64"));

    let arp = Replay::auto("13_arp_request_reply.pcap", "10.0.0.1");
    assert!(arp.faithful(), "{arp}");
    assert_eq!(fields(arp.pair(2)), [Field::Length], "the captured reply is padded to 60 bytes");
}

/// Checksums: fixture 17's request fragments have IP header checksums of zero (offload at the capturing
/// host). As captured, the stack drops them and answers nothing; repaired, it reassembles the request and
/// answers with a reply fragmented at the captured offsets.
#[test]
fn offloaded_checksums_are_repaired_only_when_asked() {
    let fixture = "17_ipv4_fragments_icmp.pcapng";
    let as_captured = Replay::builder(fixture, "192.168.0.128").fix_checksums(false).auto();
    assert_eq!(as_captured.bad_checksums, [1, 2, 3]);
    assert_eq!(as_captured.counts().missing, 3, "{as_captured}");
    let repaired = Replay::auto(fixture, "192.168.0.128");
    assert_eq!(repaired.fixed_checksums, [1, 2, 3]);
    assert!(repaired.faithful(), "{repaired}");
    assert!(repaired.pairs.iter().all(|p| fields(p) == [Field::Ttl, Field::IpId]), "{repaired}");
}

/// Rewriting: the stack plays fixture 03's client at 10.7.7.7:4000, and the pcap it writes carries that
/// address and port; a capture read from any path.
#[test]
fn rewritten_address_and_pcap_output() {
    let path = ustack_harness::fixtures::path("03_dns_over_tcp_full_lifecycle.pcap");
    let host: HostSpec = "192.168.1.11".parse().unwrap();
    let r = ReplayBuilder::from_file(&path, host).rewrite_host("10.7.7.7:4000".parse().unwrap()).auto();
    assert!(r.faithful(), "{r}");
    assert_eq!(r.host, "10.7.7.7:4000");
    let out = std::env::temp_dir().join(format!("ustack-replay-cli-{}.pcap", std::process::id()));
    assert_eq!(r.write_pcap(&out).unwrap(), 13);
    let written = ustack_netdev::pcap::read_file(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let syn = &written.packets[2].data;
    assert_eq!(&syn[26..30], &[10, 7, 7, 7], "source address");
    assert_eq!(u16::from_be_bytes([syn[34], syn[35]]), 4000, "source port");
}

/// Fixture 06 played as the server: the host resets the connection, so the application aborts it
/// (`SO_LINGER` 0, then `close()`). The RST the close queues must go out at once: `poll_at()` reports segments
/// built by socket calls, so a driver that polls when `poll_at()` says does not hold it until the next timer
/// (it once went out 30 s late). Ours carries no text, unlike the capture's 58 bytes of diagnostics.
#[test]
fn an_abortive_close_sends_its_reset_at_once() {
    let r = Replay::auto("06_tcp_rst_with_payload.pcap", "199.204.31.89");
    let resets: Vec<Instant> = r
        .wire()
        .iter()
        .filter(|w| !w.into_stack && w.bytes.len() >= 54 && w.bytes[47] & 0x04 != 0)
        .map(|w| w.at)
        .collect();
    assert_eq!(resets.len(), 1, "one reset: {resets:?}\n{r}");
    assert_ne!(r.pair(1).verdict, Verdict::Missing, "{r}");
}
