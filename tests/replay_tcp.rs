//! Real TCP captures replayed through ustack: the stack plays one host of each capture, the other host's
//! segments are injected (acknowledgment numbers, SACK blocks and echoed timestamps translated into the
//! stack's sequence space, see `harness/src/replay.rs`), and every segment the stack sends is compared with the
//! one the capture's host sent: flags, relative sequence and acknowledgment numbers, window, options, payload.
//!
//! Where the capture's host made a choice of its own (its ISN, buffer size, timestamp clock, MTU, the options
//! it offers), the stack makes its own, and each such difference is declared next to the test with the
//! reason it is by design; `assert_faithful` fails on any other difference, on a host segment the stack does
//! not send and on a segment it sends that the capture has no counterpart for.

use std::net::SocketAddr;
use std::time::Duration;
use ustack::wire::tcp::{TcpFlags, TcpHeader, TcpOptions};
use ustack::{Errno, Fd, MsgFlags, Readiness, SockOpt};
use ustack_harness::replay::{Field, Order, Replay, Role};

/// Our receive window is our own choice (RFC 9293 section 3.8.6): 256 KiB buffers, advertised as 64240 in a
/// SYN (a whole number of segments, as Linux does) and as the free space afterwards (2048 << 7 once scaling
/// is agreed, at most 65535 without). The capture's hosts had their own buffers.
const OUR_WINDOW: &str = "our receive buffer is 256 KiB; the capture's host had its own (RFC 9293 3.8.6)";
/// TSval is read from our clock plus a per-connection offset (RFC 7323 section 5.4); only TSecr is comparable.
const OUR_TSVAL: &str = "TSval comes from our own clock and per-connection offset (RFC 7323 5.4)";
/// We offer shift 7, what Linux picks for such buffers (RFC 7323 section 2.3: the receiver's choice).
const OUR_WSCALE: &str = "we offer window shift 7 for our 256 KiB buffer (RFC 7323 2.3: the receiver's choice)";
/// We offer timestamps (RFC 7323, on by default as on Linux); the capture's host did not.
const OUR_TIMESTAMPS: &str = "we offer RFC 7323 timestamps (net.ipv4.tcp_timestamps = 1); the capture's host did not";
/// We announce the MSS of our 1500-byte link (RFC 9293 section 3.7.1, MUST-14).
const OUR_MSS: &str = "we announce our link's MTU less 40 = 1460 (RFC 9293 3.7.1 MUST-14); the host's link was smaller";

fn tcp_counter(r: &Replay, name: &str) -> u64 {
    r.stack.counters().get(name).unwrap_or_else(|| panic!("no counter {name}"))
}

fn payload_bytes(segments: &[ustack_harness::replay::Seg]) -> usize {
    segments.iter().map(|s| s.payload.len()).sum()
}

// -------------------------------------------------------------------------------------------------------------
// 01: a three-way handshake (SYN: MSS 1460, WS 2, SACK_PERM; SYN-ACK: MSS 1406, SACK_PERM, WS 7).

/// Fixture 01, the stack as the server 212.58.226.142:80. Compared: the SYN-ACK (flags, ack = ISN+1, options)
/// and, after the client's ACK, that `accept()` returns the connection. By design: our MSS (1460, our MTU;
/// the capture's server announced 1406) and our window (64240 vs 5840). The window shift we answer with
/// happens to be the capture's (7); SACK-permitted is echoed because the client offered it, and no
/// timestamps, which the client did not offer (RFC 7323 section 3.2).
///
/// The client's later windows are shifted by its 2: its ACK's 4218 means 16872 bytes. A first flight fills
/// the initial congestion window (10 segments, RFC 6928), more than an unscaled 4218 would allow; once the
/// peer acknowledges it (a copy of the ACK, acknowledging 14600 more bytes, same window), the congestion
/// window is 12 segments (RFC 3465, L = 2) and the 16872-byte window lets exactly 11 go: a shift of 1 would
/// allow 5, a shift of 3 all 12.
#[test]
fn fixture_01_server_answers_the_syn_and_accepts() {
    let mut r = Replay::new("01_tcp_handshake.pcapng", "212.58.226.142:80");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain_at(2, Field::Mss, OUR_MSS);
    let listener = r.listen();
    r.play_through(2);
    let syn_ack = r.pair(2).ours().clone();
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((syn_ack.seq, syn_ack.ack), (0, Some(1)), "our ISN, and the client's ISN + 1");
    assert_eq!(syn_ack.options.mss, Some(1460));
    assert_eq!(syn_ack.options.window_scale, Some(7), "the client offered scaling, so we scale too");
    assert!(syn_ack.options.sack_permitted, "the client offered SACK");
    assert_eq!(syn_ack.options.timestamps, None, "never in a SYN-ACK when the SYN had none (RFC 7323 3.2)");
    assert_eq!(syn_ack.window, 64240, "unscaled in a SYN-ACK (RFC 7323 2.2)");
    assert_eq!(r.stack.accept(listener).unwrap_err(), Errno::EAGAIN, "not before the handshake completes");
    assert_eq!(r.state(), Some("SYN-RECV"));

    r.play_all();
    let fd = r.accept(listener);
    assert_eq!(r.state(), Some("ESTAB"));
    assert_eq!(r.stack.getpeername(fd), Ok("172.16.16.128:2826".parse::<SocketAddr>().unwrap()));
    assert_eq!(r.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1460), "min(client's 1460, our 1460)");
    r.assert_faithful();

    r.send(fd, &[0x5a; 100_000]);
    assert_eq!(payload_bytes(&r.drain_sent()), 10 * 1460, "the initial window, beyond an unscaled 4218");
    r.inject_copy(3, |e| e.set_ack(e.ack().wrapping_add(10 * 1460)));
    assert_eq!(payload_bytes(&r.drain_sent()), 11 * 1460, "a 16872-byte window (4218 << 2) holds 11 segments");
}

/// Fixture 01, the stack as the client 172.16.16.128:2826 (bound first, so the SYN leaves from the captured
/// port). Compared: the SYN and the ACK that completes the handshake. By design in the SYN: our window (64240
/// vs 8192), our shift (7 vs 2) and our timestamps (the Windows host offered none); MSS (1460) and
/// SACK-permitted are the capture's. The ACK carries no options (the server did not agree to timestamps) and
/// our window. The send MSS is the smaller of the two announced: min(1406, 1460).
#[test]
fn fixture_01_client_handshake_settles_on_the_smaller_mss() {
    let mut r = Replay::new("01_tcp_handshake.pcapng", "172.16.16.128:2826");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain_at(1, Field::WindowScale, OUR_WSCALE);
    r.explain_at(1, Field::Timestamps, OUR_TIMESTAMPS);
    r.play_until(1);
    let fd = r.connect();
    r.play_all();

    let syn = r.pair(1).ours();
    assert_eq!((syn.flags, syn.seq, syn.ack), (TcpFlags::SYN, 0, None));
    assert_eq!(syn.options.mss, Some(1460));
    assert!(syn.options.sack_permitted);
    let ack = r.pair(3).ours();
    assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, 1, Some(1)));
    assert_eq!(ack.options, TcpOptions::default(), "no timestamps: the SYN-ACK did not carry them");
    assert_eq!(
        ack.window_bytes,
        Some(64_128),
        "501 << 7: scaled, and like Linux's the window starts at the SYN's (64240) and grows as data arrives"
    );
    assert_eq!(r.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1406), "min(server's 1406, our 1460)");
    assert_eq!(r.state(), Some("ESTAB"));
    assert_eq!(tcp_counter(&r, "TcpActiveOpens"), 1);
    r.assert_faithful();
}

// -------------------------------------------------------------------------------------------------------------
// 02: an HTTP exchange captured on the server, whose segments carry unfinished (offloaded) checksums.

/// Fixture 02 (its IPv4 half; the IPv6 half is skipped, the stack is IPv4 only), the stack as the client
/// 172.16.16.140:53350. The server's four segments were captured before the NIC filled in their TCP
/// checksums: as captured the stack would drop them, so the harness recomputes every injected checksum.
/// Compared: the client's six segments (SYN, ACK, GET, ACK of the response, FIN, last ACK). By design: our
/// windows and TSval; the SYN is otherwise the capture's (a Linux client), MSS, SACK, shift 7 and all.
#[test]
fn fixture_02_http_client_over_offloaded_checksums() {
    let raw = ustack_tests::fixtures::frames("02_http_ipv4_ipv6_full_lifecycle.pcapng");
    let (ip, tcp) = ustack_tests::frames::parse_ipv4(&raw[5]).unwrap();
    assert!(TcpHeader::parse_v4(&tcp, ip.src, ip.dst).is_err(), "frame 6 as captured has a bad TCP checksum");

    let mut r = Replay::new("02_http_ipv4_ipv6_full_lifecycle.pcapng", "172.16.16.140:53350");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain(Field::TsVal, OUR_TSVAL);
    r.play_until(1);
    let fd = r.connect();
    r.play_until(4);
    let get = r.payload(4);
    r.send(fd, &get);
    r.play_until(8);
    let (response, _) = r.read_available(fd);
    assert_eq!(response, r.payload(6));
    assert!(response.starts_with(b"HTTP/1.1 200 OK"));
    r.close(fd);
    r.play_all();
    assert_eq!(r.pair(1).differing_fields(), [Field::Window, Field::TsVal]);
    assert_eq!(r.state(), Some("TIME-WAIT"));
    r.assert_faithful();
}

// -------------------------------------------------------------------------------------------------------------
// 03: DNS over TCP, the whole life of a connection, with a server whose SYN-ACK carries the MSS only.

/// Fixture 03, the stack as the client 192.168.1.11:33779. The query goes out with `send()`, the response is
/// read with `recv()`, then `close()` sends the FIN; the server's FIN is acknowledged and the connection
/// waits in TIME-WAIT. Every one of the client's six segments is compared.
///
/// The SYN is the capture's (a Linux client) but for TSval (our clock). The SYN-ACK carries only an MSS, so
/// the stack falls back to nothing: no timestamps, no SACK, no window scaling; every later segment carries no
/// options at all, and windows are unscaled. By design: our window after the SYN (min(free space, 65535) =
/// 65535, where Linux offered its initial 64240 less what the application had not read).
#[test]
fn fixture_03_dns_over_tcp_client_lifecycle() {
    let mut r = Replay::new("03_dns_over_tcp_full_lifecycle.pcap", "192.168.1.11:33779");
    r.explain_at(1, Field::TsVal, OUR_TSVAL);
    r.explain(Field::Window, "unscaled, we offer min(free buffer, 65535); Linux offered 64240 less unread data");
    r.play_until(1);
    let fd = r.connect();
    r.play_until(4);
    let query = r.payload(4);
    assert_eq!(query.len(), 58);
    r.send(fd, &query);
    r.play_until(8);
    assert_eq!(r.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1460), "no timestamp option to make room for");
    let (response, eof) = r.read_available(fd);
    assert_eq!(response, r.payload(6), "the 226-byte response, intact");
    assert!(!eof, "the server has not closed yet");
    r.close(fd);
    assert_eq!(r.state(), Some("FIN-WAIT-1"));
    r.play_through(9);
    assert_eq!(r.state(), Some("FIN-WAIT-2"));
    r.play_all();

    assert_eq!(r.pair(1).differing_fields(), [Field::TsVal], "the SYN is the capture's, TSval aside");
    for frame in [3, 4, 7, 8, 11] {
        assert_eq!(
            r.pair(frame).ours().options,
            TcpOptions::default(),
            "#{frame}: no options after an MSS-only SYN-ACK"
        );
    }
    let fin = r.pair(8).ours();
    assert_eq!((fin.flags, fin.seq, fin.ack), (TcpFlags::FIN | TcpFlags::ACK, 59, Some(227)));
    let last = r.pair(11).ours();
    assert_eq!((last.flags, last.seq, last.ack), (TcpFlags::ACK, 60, Some(228)));
    assert_eq!(r.state(), Some("TIME-WAIT"), "we closed first");
    r.assert_faithful();

    // TIME-WAIT answers a retransmitted FIN with the same ACK, and ends after 2 MSL (60 s here).
    r.inject_copy(10, |_| {});
    let again = r.drain_sent();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].flags, again[0].seq, again[0].ack), (TcpFlags::ACK, 60, Some(228)));
    r.advance(Duration::from_secs(61));
    assert_eq!(r.state(), None);
}

// -------------------------------------------------------------------------------------------------------------
// 04: passive close.

/// Fixture 04, the stack as 172.16.16.128:3363, whose peer closes first. The capture starts mid-connection,
/// so the connection is built by a synthesized handshake from the capture's own numbers (both sides at
/// relative sequence 1 at the first segment, as Wireshark shows them): the stack connects from the captured
/// port and gets a SYN-ACK with MSS 1460, SACK-permitted and window shift 7 (the host is the Windows machine
/// of fixture 01, which scales its windows, and 71 from a web server is a scaled window).
///
/// Compared: the ACK of the peer's FIN (at once, seq 1 ack 2), then, when the application closes 0.46 s
/// later, our FIN (seq 1 ack 2); the last ACK ends the connection. States: CLOSE-WAIT after the FIN (reads
/// see end of file, writing is still allowed), LAST-ACK after `close()`, then nothing (CLOSED): no FIN is
/// retransmitted, and the peer's ACK, fed again, finds no connection and is answered with a reset
/// `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 section 3.10.7.1). By design: our window (the host's shift is unknown,
/// so the raw fields are compared: 2048 vs 4218).
#[test]
fn fixture_04_passive_close_close_wait_last_ack_closed() {
    let mut r = Replay::new("04_tcp_teardown_passive_close.pcapng", "172.16.16.128:3363");
    r.explain(Field::Window, OUR_WINDOW);
    let synthesized = TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, ..Default::default() };
    let fd = r.handshake(Role::Client, synthesized, 5840);
    assert_eq!(r.state(), Some("ESTAB"));

    r.play_through(2);
    let ack = r.pair(2).ours();
    assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, 1, Some(2)));
    assert_eq!(r.state(), Some("CLOSE-WAIT"));
    assert_eq!(r.read_available(fd), (Vec::new(), true), "end of file after the peer's FIN");
    let ready = r.stack.readiness(fd).unwrap();
    assert!(ready.contains(Readiness::IN | Readiness::RDHUP | Readiness::OUT), "{ready:?}");
    assert!(!ready.contains(Readiness::HUP), "only half closed: {ready:?}");

    r.play_until(3);
    r.close(fd);
    assert_eq!(r.state(), Some("LAST-ACK"));
    r.play_through(3);
    let fin = r.pair(3).ours();
    assert_eq!((fin.flags, fin.seq, fin.ack), (TcpFlags::FIN | TcpFlags::ACK, 1, Some(2)));
    let row = r.stack.sockets_snapshot(r.now()).into_iter().find(|row| row.state == "LAST-ACK").unwrap();
    assert_eq!(row.timer.map(|t| t.0), Some("on"), "the FIN is timed for retransmission");

    r.play_all();
    assert_eq!(r.state(), None, "the last ACK closes the connection");
    r.assert_faithful();
    r.advance(Duration::from_secs(30));
    assert!(r.drain_sent().is_empty(), "no FIN retransmission once acknowledged");

    r.inject_copy(4, |_| {});
    let reset = r.drain_sent();
    assert_eq!(reset.len(), 1, "{reset:?}");
    assert_eq!((reset[0].flags, reset[0].seq, reset[0].ack), (TcpFlags::RST, 2, None));
}

/// Fixture 04 without its last frame: the peer's ACK of our FIN is lost, so the stack, in LAST-ACK,
/// retransmits the FIN (same sequence number, RFC 9293 section 3.8.1) when the retransmission timer fires,
/// and again with the timeout doubled (RFC 6298 section 5.5); the capture's ACK, arriving late, still ends it.
#[test]
fn fixture_04_last_ack_retransmits_a_lost_fin() {
    let mut r = Replay::new("04_tcp_teardown_passive_close.pcapng", "172.16.16.128:3363");
    let synthesized = TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, ..Default::default() };
    let fd = r.handshake(Role::Client, synthesized, 5840);
    r.play_until(3);
    r.close(fd);
    r.play_through(3);
    let sent_at = r.now();
    r.advance(Duration::from_secs(3));
    let again = r.drain_sent();
    assert!(again.len() >= 2, "{again:?}");
    for seg in &again {
        assert_eq!((seg.flags, seg.seq, seg.ack), (TcpFlags::FIN | TcpFlags::ACK, 1, Some(2)));
    }
    let first_gap = again[0].at - sent_at;
    let second_gap = again[1].at - again[0].at;
    assert_eq!(second_gap, first_gap * 2, "exponential backoff");
    assert_eq!(r.state(), Some("LAST-ACK"));
    r.play_all();
    assert_eq!(r.state(), None);
}

// -------------------------------------------------------------------------------------------------------------
// 05: a SYN to a closed port.

/// Fixture 05, the stack as the server 192.168.100.1 with nothing listening on port 80: the SYN is answered
/// with exactly the capture's `<SEQ=0><ACK=ISN+1><CTL=RST,ACK>` and window 0 (RFC 9293 section 3.10.7.1),
/// with no difference at all, MAC addresses included.
#[test]
fn fixture_05_closed_port_answers_with_the_captured_reset() {
    let mut r = Replay::new("05_tcp_syn_refused_rst.pcapng", "192.168.100.1:80");
    r.play_all();
    let pair = r.pair(2);
    assert!(pair.differences().is_empty(), "{:?}", pair.differences());
    let rst = pair.ours();
    assert_eq!((rst.flags, rst.seq, rst.ack, rst.window), (TcpFlags::RST | TcpFlags::ACK, 0, Some(1), 0));
    assert_eq!(tcp_counter(&r, "TcpOutRsts"), 1);
    r.assert_faithful();
}

/// Fixture 05, the stack as the client 192.168.100.138:3372: the SYN is compared (by design: our window,
/// shift and timestamps; MSS and SACK-permitted are the capture's), the reset refuses the connection
/// (`connect()` reports ECONNREFUSED), and nothing is sent in answer to the reset.
#[test]
fn fixture_05_client_connect_is_refused() {
    let mut r = Replay::new("05_tcp_syn_refused_rst.pcapng", "192.168.100.138:3372");
    r.explain_at(1, Field::Window, OUR_WINDOW);
    r.explain_at(1, Field::WindowScale, OUR_WSCALE);
    r.explain_at(1, Field::Timestamps, OUR_TIMESTAMPS);
    r.play_until(1);
    let fd = r.connect();
    r.play_all();
    assert!(r.drain_sent().is_empty(), "a reset is never answered");
    assert!(r.stack.readiness(fd).unwrap().contains(Readiness::ERR));
    assert_eq!(r.stack.connect(fd, Some(SocketAddr::V4(r.peer()))), Err(Errno::ECONNREFUSED));
    assert_eq!(r.state(), None);
    assert_eq!(tcp_counter(&r, "TcpAttemptFails"), 1);
    r.assert_faithful();
}

// -------------------------------------------------------------------------------------------------------------
// 06: a reset carrying 58 bytes of "diagnostic" text.

/// The connection fixture 06 assumes, built by a synthesized handshake: the stack is the client
/// 172.16.133.41:52875 and RCV.NXT is the reset's sequence number (relative 1).
fn fixture_06_established() -> (Replay, Fd) {
    let mut r = Replay::new("06_tcp_rst_with_payload.pcap", "172.16.133.41:52875");
    let synthesized = TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, ..Default::default() };
    let fd = r.handshake(Role::Client, synthesized, 5840);
    assert_eq!(r.state(), Some("ESTAB"));
    assert!(r.payload(1).starts_with(b"BIG-IP: ["), "the F5 load balancer's reason text");
    (r, fd)
}

/// Fixture 06: the captured RST,ACK sits exactly at RCV.NXT, so it resets the connection (RFC 9293 section
/// 3.10.7.4, RFC 5961 section 3.2). Its 58 bytes are never delivered: a RST may carry data explaining the
/// reset (RFC 1122 section 4.2.2.12, RFC 9293 section 3.5.3), text for people, not part of the stream.
/// `recv()` reports ECONNRESET, then end of file. Nothing answers a reset.
#[test]
fn fixture_06_reset_at_rcv_nxt_resets_and_its_payload_is_not_delivered() {
    let (mut r, fd) = fixture_06_established();
    r.play_all();
    assert!(r.drain_sent().is_empty(), "a reset is never answered");
    let mut buf = [0u8; 128];
    assert_eq!(r.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT), Err(Errno::ECONNRESET));
    assert_eq!(r.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT), Ok(0), "then end of file, never the text");
    assert_eq!(tcp_counter(&r, "TcpEstabResets"), 1);
    assert_ne!(r.state(), Some("ESTAB"));
    r.assert_faithful();
}

/// Fixture 06 with the reset moved one byte into the window: not at RCV.NXT, so it only draws a challenge ACK
/// `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>` (RFC 5961 section 3.2), the connection stays up and the text is not
/// delivered either.
#[test]
fn fixture_06_reset_inside_the_window_draws_a_challenge_ack() {
    let (mut r, fd) = fixture_06_established();
    r.step_edited(1, |e| e.set_seq(e.seq().wrapping_add(1)));
    let sent = r.drain_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].flags, sent[0].seq, sent[0].ack), (TcpFlags::ACK, 1, Some(1)));
    assert_eq!(r.state(), Some("ESTAB"));
    let mut buf = [0u8; 128];
    assert_eq!(r.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT), Err(Errno::EAGAIN));
    assert_eq!(tcp_counter(&r, "TcpExtTCPChallengeACK"), 1);
}

/// Fixture 06 with the reset moved out of the window: dropped silently (RFC 9293 section 3.10.7.4: "If the
/// RST bit is set, [an unacceptable segment is] dropped"), the connection stays up.
#[test]
fn fixture_06_reset_outside_the_window_is_ignored() {
    let (mut r, fd) = fixture_06_established();
    r.step_edited(1, |e| e.set_seq(e.seq().wrapping_add(1 << 30)));
    assert!(r.drain_sent().is_empty());
    assert_eq!(r.state(), Some("ESTAB"));
    let mut buf = [0u8; 128];
    assert_eq!(r.stack.recv(fd, &mut buf, MsgFlags::DONTWAIT), Err(Errno::EAGAIN));
}

// -------------------------------------------------------------------------------------------------------------
// 11: window scale extremes (synthetic: SYN shift 255, clamped to 14; SYN-ACK shift 7).

const FIXTURE_11: &str = "11_tcp_window_scale_extremes.pcap";

/// Fixture 11, the stack as the server 10.0.0.2:80. The SYN's window scale option carries 255, injected as
/// captured: RFC 7323 section 2.3 says to use 14 instead. Compared: the SYN-ACK (MSS 1460 and shift 7 as
/// captured, no SACK or timestamps since the SYN offered none) and the ACK of the 5 data bytes. By design: our
/// window.
///
/// The peer's windows are shifted by 14: 512 << 14 = 8388608 and 65535 << 14 = 1073725440 bytes, which only
/// 32-bit arithmetic holds (cut to 16 bits they would be 0 and 49152). A first flight fills the initial
/// congestion window (10 segments). Then a copy of the peer's ACK acknowledges it with a raw window of 1: that
/// is 16384 bytes, and with the congestion window now 12 segments exactly 11 go. This pins the shift at 14:
/// 13 would allow 5 segments, 15 (or an unclamped 255) all 12.
#[test]
fn fixture_11_server_applies_the_clamped_shift_of_14() {
    let mut r = Replay::new(FIXTURE_11, "10.0.0.2:80");
    r.explain(Field::Window, OUR_WINDOW);
    assert!(r.frame(1).datagram.windows(3).any(|o| o == [3, 3, 255]), "the option goes in as captured: shift 255");
    assert_eq!(r.captured(1).options.window_scale, Some(14), "and reads as 14");
    assert_eq!(r.captured(4).window_bytes, Some(1_073_725_440));
    let listener = r.listen();
    r.play_through(2);
    let syn_ack = r.pair(2).ours();
    assert_eq!(syn_ack.options, TcpOptions { mss: Some(1460), window_scale: Some(7), ..Default::default() });
    r.play_through(3);
    let fd = r.accept(listener);
    r.play_all();
    let ack = r.pair(5).ours();
    assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, 1, Some(6)));
    assert_eq!(r.read_available(fd).0, r.payload(4));
    r.assert_faithful();

    r.send(fd, &[7u8; 100_000]);
    assert_eq!(payload_bytes(&r.drain_sent()), 10 * 1460, "limited by the congestion window only");
    r.inject_copy(3, |e| {
        e.set_seq(e.seq().wrapping_add(5)); // after the 5 data bytes of frame 4
        e.set_ack(e.ack().wrapping_add(10 * 1460));
        e.set_window(1);
    });
    assert_eq!(payload_bytes(&r.drain_sent()), 11 * 1460, "1 << 14 = 16384 bytes hold 11 segments");
}

/// Fixture 11, the stack as the client 10.0.0.1:40000. Compared: the SYN, the ACK of the SYN-ACK, the 5 data
/// bytes and their acknowledgment arriving. By design in the SYN: our window, our shift (7; the capture's 255
/// is illegal, RFC 7323 section 2.3: "MUST NOT" exceed 14), SACK-permitted and timestamps, which we offer and
/// the synthetic SYN did not. After the SYN-ACK (shift 7) our windows are scaled by our 7.
#[test]
fn fixture_11_client_sends_a_legal_shift() {
    let mut r = Replay::new(FIXTURE_11, "10.0.0.1:40000");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain_at(1, Field::WindowScale, "we offer 7; the synthetic SYN's 255 is illegal (RFC 7323 2.3, max 14)");
    r.explain_at(1, Field::SackPermitted, "we offer SACK (RFC 2018); the synthetic SYN did not");
    r.explain_at(1, Field::Timestamps, OUR_TIMESTAMPS);
    r.play_until(1);
    let fd = r.connect();
    r.play_until(4);
    let data = r.payload(4);
    r.send(fd, &data);
    r.play_all();
    assert_eq!(r.pair(1).ours().options.window_scale, Some(7));
    assert_eq!(r.pair(3).ours().window_bytes, Some(64_128), "501 << 7: the SYN's window, scaled");
    let data_seg = r.pair(4).ours();
    assert_eq!((data_seg.flags, data_seg.seq, data_seg.ack), (TcpFlags::PSH | TcpFlags::ACK, 1, Some(1)));
    assert_eq!(r.state(), Some("ESTAB"));
    r.assert_faithful();
}

// -------------------------------------------------------------------------------------------------------------
// 12: an HTTP download whose capture shows the SYN-ACK before the SYN.

const FIXTURE_12: &str = "12_tcp_handshake_reordered_capture_http.pcap";

/// The client's side of fixture 12: connect when frame `connect_at` is due, send the GET at frame 4, read the
/// whole response when the client closes (frame 12), close, and play to the end. Returns the body read.
fn download(r: &mut Replay, connect_at: usize) -> Vec<u8> {
    r.play_until(connect_at);
    let fd = r.connect();
    r.play_until(4);
    let get = r.payload(4);
    r.send(fd, &get);
    r.play_until(12);
    let (body, eof) = r.read_available(fd);
    assert!(!eof, "the server closes after the client");
    r.close(fd);
    r.play_all();
    body
}

/// What fixture 12's replays declare by design.
fn explain_fixture_12(r: &mut Replay) {
    r.explain(Field::Window, OUR_WINDOW);
    r.explain(Field::TsVal, OUR_TSVAL);
    r.explain_at(2, Field::WindowScale, "we offer shift 7; the capture's client (macOS) offered 4 for its buffer");
    r.explain_extras(
        |x| x.seg.is_pure_ack() && x.before_frame.is_some(),
        "quick ACKs: at the start of a connection we acknowledge every segment (as Linux does); the capture's \
         client acknowledged every second one, which RFC 9293 3.8.6.3 also allows",
    );
}

/// Fixture 12, the stack as the client 141.142.228.5:59856, in causal order: the SYN-ACK (frame 1) waits for
/// the SYN (frame 2) it acknowledges. Compared: all seven of the client's segments. By design: our windows,
/// our TSval, our window shift in the SYN, and two extra ACKs (we acknowledge each of the four data segments
/// at once, the capture's client every second one). TSecr is compared exactly: the server's TSvals are
/// injected as captured. The body read is the four segments' 5007 bytes.
#[test]
fn fixture_12_reordered_handshake_replayed_in_causal_order() {
    let mut r = Replay::new(FIXTURE_12, "141.142.228.5:59856");
    assert_eq!(&r.order()[..3], &[2, 1, 3], "the SYN-ACK moves after its SYN");
    assert_eq!(r.moved().len(), 1, "{:?}", r.moved());
    explain_fixture_12(&mut r);
    let body = download(&mut r, 2);
    let expected: Vec<u8> = [6, 7, 8, 9].iter().flat_map(|&f| r.payload(f)).collect();
    assert_eq!(body.len(), 5007);
    assert_eq!(body, expected);
    assert!(body.starts_with(b"HTTP/1.1 200 OK"));

    let syn = r.pair(2).ours();
    assert_eq!((syn.options.mss, syn.options.sack_permitted), (Some(1460), true));
    assert_eq!(r.pair(3).ours().options.timestamps.map(|t| t.1), Some(797_524_569), "echoes the server's TSval");
    assert_eq!(r.pair(10).ours().ack, Some(2897));
    assert_eq!(r.pair(11).ours().ack, Some(5008));
    let fin = r.pair(12).ours();
    assert_eq!((fin.flags, fin.seq, fin.ack), (TcpFlags::FIN | TcpFlags::ACK, 137, Some(5008)));
    assert_eq!(r.pair(14).ours().ack, Some(5009));
    assert_eq!(r.state(), Some("TIME-WAIT"));
    r.assert_faithful();
    let acks: Vec<Option<u32>> = r.extras().iter().map(|x| x.seg.ack).collect();
    assert_eq!(acks, [Some(1449), Some(4345)], "the quick ACKs of the 1st and 3rd data segments");
}

/// Fixture 12 in the capture's order. If the application connects only when the capture shows its SYN, the
/// SYN-ACK that precedes it in the file reaches a port with no connection and is answered with
/// `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 section 3.10.7.1; its ACK is injected untranslated, there is no ISN
/// of ours yet); the connection then never completes. If the application connects first, as the client
/// really did (its SYN was captured late), the capture's order replays to exactly the causal replay's result.
#[test]
fn fixture_12_capture_order_shows_why_reordering_matters() {
    let mut late = Replay::builder(FIXTURE_12, "141.142.228.5:59856").order(Order::Capture).build();
    late.play_through(1);
    let reset = late.drain_sent();
    assert_eq!(reset.len(), 1, "{reset:?}");
    assert_eq!(reset[0].flags, TcpFlags::RST);
    assert_eq!(reset[0].seq, late.frame(1).tcp.ack.0, "SEQ = SEG.ACK");
    late.play_until(2);
    late.connect();
    late.play_through(3);
    assert_eq!(late.pair(2).ours().flags, TcpFlags::SYN);
    assert!(late.pair(3).ours.is_none(), "no SYN-ACK came for this SYN, so no ACK");
    assert_eq!(late.state(), Some("SYN-SENT"));

    let mut early = Replay::builder(FIXTURE_12, "141.142.228.5:59856").order(Order::Capture).build();
    explain_fixture_12(&mut early);
    let body = download(&mut early, 1);
    assert_eq!(body.len(), 5007);
    early.assert_faithful();
    let mut causal = Replay::new(FIXTURE_12, "141.142.228.5:59856");
    explain_fixture_12(&mut causal);
    download(&mut causal, 2);
    causal.assert_faithful();
    let summary = |r: &Replay| -> Vec<(usize, Vec<Field>)> {
        let mut v: Vec<_> = r.pairs().iter().map(|p| (p.frame, p.differing_fields())).collect();
        v.sort_by_key(|p| p.0);
        v
    };
    assert_eq!(summary(&early), summary(&causal));
}

// -------------------------------------------------------------------------------------------------------------
// 20: a handshake in a nanosecond Linux cooked capture.

/// Fixture 20 (nanosecond timestamps, LINKTYPE_LINUX_SLL, read through `Packet::ethernet_frame`), the stack
/// as the server 137.116.81.94:80. Compared: the SYN-ACK; then `accept()` returns the connection. By design:
/// our MSS (1460 vs 1440), our shift (7 vs 8), our window and TSval. TSecr echoes the client's TSval exactly.
/// The client's ACK echoes our TSval (translated from the capture's), so the first RTT sample is the
/// capture's 127.6 ms, to the millisecond of the timestamp clock; the send MSS is min(1360, 1460) less the
/// 12 bytes of the timestamp option.
#[test]
fn fixture_20_nanosecond_sll_server_handshake() {
    let mut r = Replay::new("20_tcp_handshake_nanosec_linux_sll.pcap", "137.116.81.94:80");
    assert_eq!(r.frame(3).at - r.frame(1).at, Duration::from_nanos(127_609_669), "nanosecond timestamps");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain(Field::TsVal, OUR_TSVAL);
    r.explain_at(2, Field::Mss, OUR_MSS);
    r.explain_at(2, Field::WindowScale, "we offer shift 7; the capture's server (Windows) offered 8");
    let listener = r.listen();
    r.play_all();
    let fd = r.accept(listener);
    let syn_ack = r.pair(2).ours();
    assert_eq!(syn_ack.options.timestamps.map(|t| t.1), Some(1_131_021_154), "TSecr = the SYN's TSval");
    assert!(syn_ack.options.sack_permitted);
    assert_eq!(r.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1348), "min(1360, 1460) - 12");
    let info = r.stack.tcp_info(fd).expect("TCP_INFO of an established connection");
    assert_eq!((info.state, info.send_mss), ("ESTAB", 1348));
    let srtt = info.srtt.expect("an RTT sample from the handshake");
    assert!(srtt >= Duration::from_millis(127) && srtt <= Duration::from_millis(128), "{srtt:?}");
    r.assert_faithful();
}

/// Fixture 12, the stack as the server 192.150.187.43:80, in causal order (the SYN-ACK, ours now, is paired
/// after the SYN that causes it). Compared: the server's seven segments. The 5007-byte response goes out in
/// the capture's four segments, 1448 + 1448 + 1448 + 663 bytes (MSS 1460 less the 12 bytes of timestamps),
/// PSH on the last only. By design: our windows and TSval, and one extra ACK: we acknowledge the client's FIN
/// at once (RFC 9293 section 3.10.7.4, "eighth"), where the capture's server let its own FIN carry the
/// acknowledgment 69 ms later. The GET is acknowledged at once too (the capture's server took 69 ms), which
/// pairs as the same segment sent earlier. After our FIN the last ACK closes the connection (LAST-ACK).
#[test]
fn fixture_12_server_sends_the_response_in_the_captured_segments() {
    let mut r = Replay::new(FIXTURE_12, "192.150.187.43:80");
    r.explain(Field::Window, OUR_WINDOW);
    r.explain(Field::TsVal, OUR_TSVAL);
    r.explain_extras(
        |x| x.seg.is_pure_ack() && x.seg.ack == Some(138),
        "we acknowledge the client's FIN at once; the capture's server let its FIN carry the ACK",
    );
    let listener = r.listen();
    r.play_until(4);
    let fd = r.accept(listener);
    r.play_until(6);
    let (get, _) = r.read_available(fd);
    assert_eq!(get, r.payload(4));
    assert_eq!(r.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1448));
    let response: Vec<u8> = [6, 7, 8, 9].iter().flat_map(|&f| r.payload(f)).collect();
    r.send(fd, &response);
    r.play_until(13);
    assert_eq!(r.read_available(fd), (Vec::new(), true));
    assert_eq!(r.state(), Some("CLOSE-WAIT"));
    r.close(fd);
    r.play_all();
    for (frame, len, flags) in [
        (6, 1448, TcpFlags::ACK),
        (7, 1448, TcpFlags::ACK),
        (8, 1448, TcpFlags::ACK),
        (9, 663, TcpFlags::PSH | TcpFlags::ACK),
    ] {
        let seg = r.pair(frame).ours();
        assert_eq!((seg.payload.len(), seg.flags), (len, flags), "#{frame}");
    }
    assert_eq!(r.pair(1).ours().options.window_scale, Some(7));
    assert_eq!(r.state(), None, "closed by the last ACK");
    r.assert_faithful();
    assert_eq!(r.extras().len(), 1);
}

// -------------------------------------------------------------------------------------------------------------
// The harness itself.

/// `assert_faithful`'s judge: a difference nobody explained, an explanation for a difference that does not
/// occur (so that explanations cannot go stale) and a segment the capture has no counterpart for are all
/// reported. Fixture 01 as the server, with no explanation but a wrong one, and one byte sent at the end.
#[test]
fn harness_reports_unexplained_and_stale_differences_and_extras() {
    let mut r = Replay::new("01_tcp_handshake.pcapng", "212.58.226.142:80");
    r.explain_at(2, Field::Seq, "stale: the sequence number does not differ");
    let listener = r.listen();
    r.play_all();
    let fd = r.accept(listener);
    r.send(fd, b"x");
    r.finish();
    let problems = r.problems();
    assert!(problems.iter().any(|p| p.contains("#2: unexplained difference Window")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("#2: unexplained difference Mss")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("#2: Seq was explained")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("unexplained extra segment")), "{problems:#?}");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

/// The synthesized handshake with the stack as the server: fixture 04's passive close replayed with the
/// stack listening on 172.16.16.128:3363 and the peer opening from port 80 (TCP does not care which port is
/// well known). The SYN it gets has the peer's ISN, so the capture's numbers fit as they do in the client
/// case: the same two segments, CLOSE-WAIT, LAST-ACK, CLOSED.
#[test]
fn harness_synthesized_handshake_as_the_server() {
    let mut r = Replay::new("04_tcp_teardown_passive_close.pcapng", "172.16.16.128:3363");
    r.explain(Field::Window, OUR_WINDOW);
    let synthesized = TcpOptions { mss: Some(1460), window_scale: Some(7), sack_permitted: true, ..Default::default() };
    let fd = r.handshake(Role::Server, synthesized, 5840);
    assert_eq!(r.state(), Some("ESTAB"));
    r.play_through(2);
    assert_eq!(r.state(), Some("CLOSE-WAIT"));
    r.play_until(3);
    r.close(fd);
    r.play_all();
    assert_eq!(r.state(), None);
    r.assert_faithful();
}
