//! TCP, one segment at a time: each test is a conversation between a fake peer and the stack, read like an
//! RFC figure. `>` is the peer sending (`c.send(...)`), `<` the stack answering (`c.expect_seg(...)`); sequence
//! numbers are relative to each side's ISN, the clock is virtual (`c.advance(ms)`). Every test names the rule
//! it checks. Tests marked `#[ignore = "BUG: ..."]` assert what the RFC (and Linux) do where the stack differs.

use std::net::{SocketAddr, SocketAddrV4};
use ustack::{CongestionAlgorithm, Domain, Errno, Fd, Readiness, Shutdown, SockOpt, SockType};
use ustack_tests::conversation::*;

fn peer(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(PEER, port))
}

/// An established connection accepted from a Linux-like peer (MSS 1460, SACK, timestamps, window scale 7).
fn established() -> (Conversation, Fd) {
    established_with(|_| {})
}

fn established_with(tweak: impl FnOnce(&mut ustack::StackConfig)) -> (Conversation, Fd) {
    let mut c = Conversation::with(tweak);
    let (_, fd) = c.open_passive(linux_syn());
    (c, fd)
}

/// An established connection opened by `connect()` to a Linux-like peer. (Unlike the passive side, whose
/// SYN-ACK offered 64240 bytes, the ACK of the handshake already announces the whole receive buffer, so no
/// window update goes out later on its own.)
fn established_active() -> (Conversation, Fd) {
    established_active_with(|_| {})
}

fn established_active_with(tweak: impl FnOnce(&mut ustack::StackConfig)) -> (Conversation, Fd) {
    let mut c = Conversation::with(tweak);
    let fd = c.open_active(linux_syn_ack());
    (c, fd)
}

/// The SYN-ACK a Linux peer answers our SYN with.
fn linux_syn_ack() -> Seg {
    seg(SYN | ACK).win(65160).mss(1460).sack_perm().ts().wscale(7)
}

/// Bytes `n` long that the application writes.
fn app_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The option bytes Linux writes on a SYN-ACK answering a Linux SYN (`tcp_options_write`): MSS; SACK-permitted
/// and timestamps together; NOP, window scale.
fn linux_synack_options(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut v = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    v.extend(tsval.to_be_bytes());
    v.extend(tsecr.to_be_bytes());
    v.extend([1, 3, 3, 7]);
    v
}

// =============================================================================================================
// Opening.

/// RFC 9293 section 3.5 (three-way handshake), 3.7.1 (MSS from the MTU: 1500 - 40), RFC 7323 sections 2 and 3
/// (window scale 7, timestamps echoing the SYN's TSval), RFC 2018 section 2 (SACK-permitted), in the byte
/// layout Linux uses; the final ACK completes the connection and `accept()` returns it.
#[test]
fn passive_open_answers_with_our_options_and_accept_returns_the_connection() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);

    c.send(linux_syn());
    let syn_ack = c.expect_seg(SYN | ACK, 0, 1);
    assert_eq!(
        syn_ack.window, 65160,
        "the SYN-ACK's window is unscaled, whole segments of the MSS less the timestamp option (Linux: 45 * 1448)"
    );
    let tsval = syn_ack.tsval().expect("timestamps offered back");
    assert_eq!(syn_ack.tsecr(), Some(c.peer_clock()), "TSecr echoes the SYN's TSval");
    assert_eq!(syn_ack.raw_options, linux_synack_options(tsval, c.peer_clock()), "<mss 1460,sackOK,TS,nop,wscale 7>");
    assert_eq!(c.stack.accept(listener).err(), Some(Errno::EAGAIN), "nothing to accept before the final ACK");

    c.send(seg(ACK).seq(1).ack(1));
    c.expect_nothing();
    assert!(c.stack.readiness(listener).unwrap().contains(Readiness::IN), "the listener is readable");
    let fd = c.accept(listener);
    assert_eq!(c.stack.getpeername(fd), Ok(peer(PEER_PORT)));
    assert_eq!(c.stack.getsockname(fd), Ok(SocketAddr::V4(SocketAddrV4::new(US, 80))));
    assert!(c.stack.readiness(fd).unwrap().contains(Readiness::OUT));
    assert_eq!(c.counter("TcpPassiveOpens"), 1);
}

/// RFC 7323 sections 2.2 and 3.2, RFC 2018 section 2: a SYN-ACK carries only the options the SYN offered; a SYN
/// without MSS means 536 (RFC 9293 section 3.7.1, MUST-15); without window scaling our windows go out unscaled.
#[test]
fn passive_open_with_a_bare_syn_negotiates_nothing() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);

    c.send(seg(SYN).win(8192));
    let syn_ack = c.expect_seg(SYN | ACK, 0, 1);
    assert_eq!(syn_ack.raw_options, [2, 4, 0x05, 0xb4], "only our MSS");
    c.send(seg(ACK).seq(1).ack(1));
    let fd = c.accept(listener);
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(536));

    c.write(fd, &app_bytes(2 * 536));
    let first = c.expect_data(ACK, 1, 1, 536);
    assert!(first.raw_options.is_empty(), "no timestamps: {first}");
    assert_eq!(first.window, 64240, "unscaled, and still the SYN-ACK's: it grows only as data arrives (as Linux's)");
    c.expect_data(ACK | PSH, 537, 1, 536);
}

/// RFC 9293 section 3.5 and 3.10.7.3 (SYN-SENT): the SYN with our options in Linux's layout; the SYN-ACK is
/// acknowledged at once; `connect()` then reports success once and `EISCONN` after (Linux's
/// `__inet_stream_connect`).
#[test]
fn active_open_sends_our_options_and_completes() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    assert_eq!(c.stack.readiness(fd), Ok(Readiness::default()), "nothing to report during SYN-SENT");

    let syn = c.expect_seg(SYN, 0, 0);
    assert_eq!((syn.dst_port, syn.window), (8080, 64240));
    assert!((32768..=60999).contains(&syn.src_port), "an ephemeral port: {}", syn.src_port);
    let mut want = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    want.extend(syn.tsval().unwrap().to_be_bytes());
    want.extend([0, 0, 0, 0, 1, 3, 3, 7]);
    assert_eq!(syn.raw_options, want, "<mss 1460,sackOK,TS val .. ecr 0,nop,wscale 7>");
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EALREADY));

    c.send(seg(SYN | ACK).ack(1).win(65160).mss(1460).sack_perm().ts().wscale(7));
    let ack = c.expect_seg(ACK, 1, 1);
    assert_eq!(ack.tsecr(), Some(c.peer_clock()), "echoes the SYN-ACK's TSval");
    assert!(ack.options.mss.is_none() && ack.options.window_scale.is_none() && !ack.options.sack_permitted);
    assert!(c.stack.readiness(fd).unwrap().contains(Readiness::OUT), "writable once connected");
    assert_eq!(c.so_error(fd), 0);
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Ok(()), "the completed connect is reported once");
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EISCONN));
    assert_eq!(c.stack.getpeername(fd), Ok(peer(8080)));
    assert_eq!(c.counter("TcpActiveOpens"), 1);
}

/// RFC 7323 sections 2.2 and 3.2, RFC 2018 section 2, RFC 9293 section 3.7.1 (MUST-15): a SYN-ACK without options
/// turns timestamps, SACK and window scaling off for the connection, and the send MSS is 536.
#[test]
fn active_open_to_a_peer_without_options() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.send(seg(SYN | ACK).ack(1).win(8192));
    let ack = c.expect_seg(ACK, 1, 1);
    assert!(ack.raw_options.is_empty(), "no timestamps after all: {ack}");
    assert_eq!(ack.window, 64240, "our window unscaled: the SYN's, which grows as data arrives (as Linux's)");
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(536));

    c.stack.setsockopt(fd, SockOpt::TcpNoDelay, 1).unwrap();
    c.write(fd, &app_bytes(1172));
    for (seq, len, flags) in [(1, 536, ACK), (537, 536, ACK), (1073, 100, ACK | PSH)] {
        let s = c.expect_data(flags, seq, 1, len);
        assert!(s.raw_options.is_empty(), "no options on {s}");
    }

    // A hole: the ACK carries no SACK block.
    c.send(seg(ACK | PSH).seq(101).ack(1173).fill(100));
    let dup = c.expect_seg(ACK, 1173, 1);
    assert!(dup.raw_options.is_empty(), "no SACK without SACK-permitted: {dup}");
}

/// RFC 7323 section 2.2: "The window field in a segment where the SYN bit is set ... MUST NOT be scaled";
/// section 2.3: every later window the peer sends is shifted by the peer's scale (here 4).
#[test]
fn window_scale_applies_to_the_peers_windows_after_the_syn() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.send(seg(SYN | ACK).ack(1).win(1000).mss(1460).wscale(4));
    let ack = c.expect_seg(ACK, 1, 1);
    assert_eq!(ack.window, 501, "our own window, the SYN's 64240 bytes, is scaled by our shift, 7: 501 << 7");

    c.stack.setsockopt(fd, SockOpt::TcpNoDelay, 1).unwrap();
    c.write(fd, &app_bytes(5000));
    // The SYN-ACK's 1000 bytes, not 16000 (PSH: more than half the peer's largest window went out since the
    // last push, Linux's forced push).
    c.expect_data(ACK | PSH, 1, 1, 1000);
    c.expect_nothing();

    c.send(seg(ACK).seq(1).ack(1001).win(250)); // 250 << 4 = 4000 bytes
                                                // One super-segment, cut before the device (software GSO): PSH on its last piece only, where Linux's
                                                // tcp_gso_segment leaves it too.
    c.expect_data(ACK, 1001, 1, 1460);
    c.expect_data(ACK, 2461, 1, 1460);
    c.expect_data(ACK | PSH, 3921, 1, 1080);
    c.expect_nothing();
}

/// RFC 9293 section 3.10.7.3: in SYN-SENT, a RST with an acceptable ACK refuses the connection: "signal to the
/// user 'error: connection reset'" — `ECONNREFUSED`, reported through `SO_ERROR` (read and cleared).
#[test]
fn refused_connect_reports_econnrefused_through_so_error() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.send(seg(RST | ACK).ack(1).win(0));
    c.expect_nothing();
    let r = c.stack.readiness(fd).unwrap();
    assert!(r.contains(Readiness::ERR | Readiness::HUP | Readiness::OUT), "{r:?}");
    assert_eq!(c.so_error(fd), Errno::ECONNREFUSED.code());
    assert_eq!(c.so_error(fd), 0, "SO_ERROR is read and cleared");
    assert_eq!(c.counter("TcpAttemptFails"), 1);
}

/// Linux's `__inet_stream_connect`: a second `connect()` after a refused attempt reports the pending error
/// (`ECONNREFUSED`) and leaves the socket ready for a new attempt, which sends a new SYN.
#[test]
fn refused_connect_reports_econnrefused_to_the_next_connect() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.send(seg(RST | ACK).ack(1).win(0));
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::ECONNREFUSED));
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EINPROGRESS), "a fresh attempt");
    c.expect_seg(SYN, 0, 0);
}

/// RFC 9293 section 3.10.7.3, SYN-SENT: "If the ACK bit is off, drop the segment" for a RST; an ACK that
/// acknowledges something never sent gets `<SEQ=SEG.ACK><CTL=RST>` and the attempt goes on.
#[test]
fn syn_sent_ignores_a_bare_rst_and_resets_a_bad_ack() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);

    c.send(seg(RST).win(0));
    c.expect_nothing();
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EALREADY), "still SYN-SENT");

    c.send(seg(SYN | ACK).ack(1000).mss(1460));
    c.expect_seg(RST, 1000, 0);
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EALREADY), "still SYN-SENT");

    c.send(seg(SYN | ACK).ack(1).mss(1460));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Ok(()));
}

/// RFC 9293 section 3.10.7.1, CLOSED: a segment without ACK gets `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`,
/// one with ACK gets `<SEQ=SEG.ACK><CTL=RST>`, and a RST gets nothing.
#[test]
fn segments_to_a_closed_port_are_answered_with_rst() {
    let mut c = Conversation::new();
    c.port = 9; // nobody listens

    c.send(linux_syn());
    c.expect(|s| {
        assert_eq!((s.flags, s.raw_seq, s.ack, s.window), (RST | ACK, 0, 1, 0), "{s}");
        assert!(s.raw_options.is_empty());
    });

    c.send(seg(ACK).seq(1).ack(4242));
    c.expect(|s| assert_eq!((s.flags, s.raw_seq), (RST, 4242), "{s}"));

    c.send(seg(FIN).seq(5).data(b"hello"));
    c.expect(|s| assert_eq!((s.flags, s.raw_seq, s.ack), (RST | ACK, 0, 11), "SEG.LEN counts the FIN: {s}"));

    c.send(seg(RST).seq(1));
    c.expect_nothing();
    assert_eq!(c.counter("TcpOutRsts"), 3);
}

/// RFC 9293 section 3.10.7.2, LISTEN: "An incoming RST segment could not be valid ... return"; "Any
/// acknowledgment is bad if it arrives on a connection still in the LISTEN state. An acceptable reset segment
/// should be formed for any arriving ACK-bearing segment": `<SEQ=SEG.ACK><CTL=RST>`.
#[test]
fn listen_resets_an_ack_and_ignores_a_rst() {
    let mut c = Conversation::new();
    c.listen(80, 128);
    c.send(seg(ACK).seq(1).ack(777));
    c.expect(|s| assert_eq!((s.flags, s.raw_seq), (RST, 777), "{s}"));
    c.send(seg(RST).seq(1));
    c.expect_nothing();
    c.send(linux_syn());
    c.expect_seg(SYN | ACK, 0, 1);
}

/// RFC 9293 section 3.10.7.4, SYN-RECEIVED, and Linux's `tcp_check_req`: a retransmitted SYN gets the same
/// SYN-ACK again (same ISN); a RST at exactly RCV.NXT ends the half-open connection, whose final ACK then meets
/// the listener and a RST.
#[test]
fn syn_received_resends_the_syn_ack_and_honours_a_rst() {
    let mut c = Conversation::new();
    c.listen(80, 128);
    c.send(linux_syn());
    let first = c.expect_seg(SYN | ACK, 0, 1);
    c.send(linux_syn());
    let again = c.expect_seg(SYN | ACK, 0, 1);
    assert_eq!(first.raw_seq, again.raw_seq, "the same ISN");

    c.send(seg(RST).seq(1));
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_seg(RST, 1, 0);
}

/// Linux `tcp_synack_retries` and RFC 6298 section 5.5: an unanswered SYN-ACK is resent after 1 s, then after
/// 2 s, and the half-open connection is dropped after the configured retries (2 here).
#[test]
fn syn_ack_retransmission_backs_off_and_the_half_open_connection_expires() {
    let mut c = Conversation::with(|cfg| cfg.tcp.synack_retries = 2);
    c.listen(80, 128);
    c.send(linux_syn());
    c.expect_seg(SYN | ACK, 0, 1);
    for rto in [1000, 2000] {
        c.advance(rto - 1);
        c.expect_nothing();
        c.advance(1);
        c.expect_seg(SYN | ACK, 0, 1);
    }
    c.advance(4000);
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_seg(RST, 1, 0);
}

/// Figure 8's start (RFC 9293 section 3.5): our SYN crosses the peer's, and we answer its SYN with a SYN-ACK
/// from the same ISN. Returns the connecting socket, in SYN-RECEIVED, and that SYN-ACK.
fn crossing_syns(c: &mut Conversation) -> (Fd, Out) {
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.send(linux_syn());
    let syn_ack = c.expect_seg(SYN | ACK, 0, 1);
    (fd, syn_ack)
}

/// RFC 9293 section 3.5, figure 8 (simultaneous open), up to the point where both sides agree through an ACK:
/// our SYN crosses the peer's; we answer its SYN with a SYN-ACK from the same ISN; its ACK establishes.
#[test]
fn simultaneous_open_completes_with_the_peers_ack() {
    let mut c = Conversation::new();
    let (fd, syn_ack) = crossing_syns(&mut c);
    assert_eq!(syn_ack.options.mss, Some(1460));
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EALREADY), "SYN-RECEIVED");
    c.send(seg(ACK).seq(1).ack(1));
    c.discard(); // a window update may follow: the SYN-ACK offered 64240 bytes of a larger buffer
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Ok(()));
    c.write(fd, b"x");
    c.expect_data(ACK | PSH, 1, 1, 1);
}

/// Receive-buffer autotuning starts measuring when a simultaneous open becomes established, as for the
/// other opens: a few kilobytes read do not count as everything since sequence number zero (the buffer once
/// jumped to its 6 MiB maximum here).
#[test]
fn a_simultaneous_open_measures_reading_from_its_own_start() {
    let mut c = Conversation::new();
    let (fd, _) = crossing_syns(&mut c);
    c.send(seg(ACK).seq(1).ack(1));
    c.discard();
    for round in 0..3u32 {
        c.advance(20);
        c.send(seg(ACK).seq(1 + round * 1448).ack(1).fill(1448));
        assert_eq!(c.read(fd).unwrap().len(), 1448);
    }
    assert_eq!(c.stack.getsockopt(fd, SockOpt::RcvBuf).unwrap(), 262_144, "4,344 bytes read need no more");
}

/// RFC 9293 section 3.5, figure 8, line 6: in SYN-RECEIVED, the peer's SYN-ACK (`<SEQ=300><ACK=101><CTL=SYN,ACK>`,
/// its SYN again with an ACK of ours) moves the connection to ESTABLISHED. Linux accepts it explicitly
/// (`tcp_validate_incoming`: "RFC 5961 4.2 : SYN-ACK in SYN_RECV for simultaneous open").
#[test]
fn simultaneous_open_completes_with_the_peers_syn_ack() {
    let mut c = Conversation::new();
    let (fd, _) = crossing_syns(&mut c);
    c.send(seg(SYN | ACK).seq(0).ack(1).win(64240).mss(1460).sack_perm().ts().wscale(7));
    c.discard();
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Ok(()), "ESTABLISHED after figure 8's line 6");
}

/// RFC 9293 section 3.10.7.4, SYN-RECEIVED: "If the segment acknowledgment is not acceptable, form a reset
/// segment <SEQ=SEG.ACK><CTL=RST> and send it"; the half-open connection stays, and the right ACK completes it.
#[test]
fn syn_received_resets_an_unacceptable_ack() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);
    c.send(linux_syn());
    c.expect_seg(SYN | ACK, 0, 1);
    c.send(seg(ACK).seq(1).ack(5));
    c.expect_seg(RST, 5, 0);
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_nothing();
    c.accept(listener);
}

/// RFC 9293 section 3.10.7.4: the ACK that completes the handshake may carry data; it is taken and acknowledged.
#[test]
fn the_handshakes_final_ack_may_carry_data() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);
    c.send(linux_syn());
    c.expect_seg(SYN | ACK, 0, 1);
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 101);
    let fd = c.accept(listener);
    assert_eq!(c.read(fd), Ok(pattern(1, 100)));
}

/// RFC 9293 section 3.7.1 and RFC 1122 section 4.2.2.6: the MSS we announce is the interface MTU less the
/// fixed IPv4 and TCP headers.
#[test]
fn the_mss_we_announce_follows_the_mtu() {
    let mut c = Conversation::with(|cfg| cfg.mtu = 1280);
    c.listen(80, 128);
    c.send(linux_syn());
    assert_eq!(c.expect_seg(SYN | ACK, 0, 1).options.mss, Some(1240));
    c.connect(8080);
    assert_eq!(c.expect_seg(SYN, 0, 0).options.mss, Some(1240));
}

/// `tcp(7)` TCP_MAXSEG: set before `connect()`, it caps the MSS the SYN announces, and reads back until the
/// connection has its own.
#[test]
fn tcp_maxseg_before_connect_caps_the_syns_mss() {
    let mut c = Conversation::new();
    let fd = c.connect_with(8080, &[(SockOpt::TcpMaxSeg, 1000)]);
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1000));
    let syn = c.expect_seg(SYN, 0, 0);
    assert_eq!(syn.options.mss, Some(1000));
}

/// RFC 9293 section 3.7.1 and RFC 7323 section 3.2: the peer's MSS caps our segments, less the 12 bytes of the
/// timestamp option every segment carries (Linux's `mss_cache`, which TCP_MAXSEG reports).
#[test]
fn the_peers_mss_caps_our_segments() {
    let mut c = Conversation::new();
    let (_, fd) = c.open_passive(linux_syn().mss(1000));
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(988));
    c.write(fd, &app_bytes(2 * 988));
    c.expect_data(ACK, 1, 1, 988);
    c.expect_data(ACK | PSH, 989, 1, 988);
}

/// RFC 9293 section 3.4: sequence numbers are compared modulo 2^32. The peer's numbers wrap 128 bytes into the
/// stream.
#[test]
fn the_peers_sequence_numbers_wrap() {
    let mut c = Conversation::new();
    c.peer_isn = 0xffff_ff80;
    let (_, fd) = c.open_passive(linux_syn());
    for seq in [1, 101, 201] {
        c.send(seg(ACK | PSH).seq(seq).ack(1).fill(100));
        c.expect_seg(ACK, 1, seq + 100);
    }
    assert_eq!(c.read(fd), Ok(pattern(1, 300)));
}

// =============================================================================================================
// Retransmission.

/// RFC 6298 section 5.5 (back off the timer, doubling it) applied to the SYN, with Linux's `tcp_syn_retries`:
/// the SYN is resent after 1 s, 2 s, 4 s; after the last retry's timeout `connect()` fails with `ETIMEDOUT`,
/// and no RST is sent.
#[test]
fn syn_retransmission_backs_off_then_connect_times_out() {
    let mut c = Conversation::with(|cfg| cfg.tcp.syn_retries = 3);
    let fd = c.connect(8080);
    let first = c.expect_seg(SYN, 0, 0);
    for rto in [1000, 2000, 4000] {
        c.advance(rto - 1);
        c.expect_nothing();
        c.advance(1);
        let again = c.expect_seg(SYN, 0, 0);
        assert_eq!(again.options.mss, first.options.mss);
    }
    c.advance(7999);
    c.expect_nothing();
    assert_eq!(c.stack.connect(fd, Some(peer(8080))), Err(Errno::EALREADY));
    c.advance(1);
    c.expect_nothing();
    assert_eq!(c.so_error(fd), Errno::ETIMEDOUT.code());
    assert_eq!(c.counter("TcpRetransSegs"), 3);
    assert_eq!(c.counter("TcpExtTCPTimeouts"), 3);
}

/// Linux's `tcp_done` counts every connection that dies in SYN-SENT or SYN-RECEIVED as a failed attempt
/// (`TcpAttemptFails`), a timeout as much as a refusal.
#[test]
fn syn_timeout_counts_a_failed_attempt() {
    let mut c = Conversation::with(|cfg| cfg.tcp.syn_retries = 1);
    c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.advance(1000);
    c.expect_seg(SYN, 0, 0);
    c.advance(2000);
    assert_eq!(c.counter("TcpAttemptFails"), 1);
}

/// RFC 6298 section 2.1 (RTO = 1 s before any RTT sample: here the SYN-ACK had to be retransmitted, so by
/// Karn's rule the handshake gives none, and the peer sends no timestamps) and 5.5 (double it on each
/// timeout); after `tcp_retries2` retransmissions the connection is aborted with `ETIMEDOUT` (RFC 1122 section
/// 4.2.3.5, R2).
#[test]
fn data_retransmission_starts_at_one_second_without_a_sample_and_ends_in_etimedout() {
    let mut c = Conversation::with(|cfg| cfg.tcp.retries2 = 3);
    let listener = c.listen(80, 128);
    c.send(seg(SYN).win(64240).mss(1460).sack_perm().wscale(7));
    c.expect_seg(SYN | ACK, 0, 1);
    c.advance(1000);
    c.expect_seg(SYN | ACK, 0, 1); // retransmitted: the handshake's round trip cannot be timed
    c.send(seg(ACK).seq(1).ack(1));
    let fd = c.accept(listener);
    c.write(fd, b"hello");
    c.expect_data(ACK | PSH, 1, 1, 5);
    for rto in [1000, 2000, 4000] {
        c.advance(rto - 1);
        c.expect_nothing();
        c.advance(1);
        c.expect_data(ACK | PSH, 1, 1, 5);
    }
    c.advance(7999);
    c.expect_nothing();
    c.advance(1);
    c.discard(); // see `retransmission_timeout_sends_no_rst`
    assert_eq!(c.read(fd), Err(Errno::ETIMEDOUT));
    assert_eq!(c.counter("TcpExtTCPAbortOnTimeout"), 1);
}

/// RFC 6298 section 2.4 with Linux's floor (TCP_RTO_MIN, 200 ms): after an RTT sample (the timestamp echoed by
/// the final ACK of the handshake) the RTO is 200 ms, doubling on each timeout (section 5.5) until the
/// connection times out.
#[test]
fn data_retransmission_after_a_sample_starts_at_the_200ms_floor() {
    let (mut c, fd) = established_with(|cfg| cfg.tcp.retries2 = 3);
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    for rto in [200, 400, 800] {
        c.advance(rto - 1);
        c.expect_nothing();
        c.advance(1);
        c.expect_data(ACK | PSH, 1, 1, 100);
    }
    c.advance(1599);
    c.expect_nothing();
    c.advance(1);
    c.discard();
    assert_eq!(c.read(fd), Err(Errno::ETIMEDOUT));
    assert_eq!(c.so_error(fd), 0, "reported once");
}

/// RFC 6298 section 5.7 and Linux: an ACK of new data ends the back-off, so the next timeout is the plain RTO
/// again.
#[test]
fn an_ack_of_new_data_resets_the_backoff() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.advance(200);
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.advance(400);
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.send(seg(ACK).seq(1).ack(101));
    c.expect_nothing();

    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 101, 1, 100);
    c.advance(199);
    c.expect_nothing();
    c.advance(1);
    c.expect_data(ACK | PSH, 101, 1, 100);
}

/// RFC 9293 section 3.10.8 (USER TIMEOUT: "flush all queues, signal the user ... delete the TCB, enter the
/// CLOSED state") and Linux's `tcp_write_err`: a connection that gave up retransmitting sends no RST — the
/// peer is presumably unreachable, and Linux only resets on a keepalive timeout.
#[test]
fn retransmission_timeout_sends_no_rst() {
    let (mut c, fd) = established_with(|cfg| cfg.tcp.retries2 = 1);
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.advance(200);
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.advance(400);
    c.expect_nothing();
    assert_eq!(c.read(fd), Err(Errno::ETIMEDOUT));
}

/// The socket table's Send-Q is what was written and not yet acknowledged (Linux's write_seq - snd_una),
/// before and after a retransmission timeout moves SND.NXT back (it once counted the resent bytes twice).
#[test]
fn send_q_is_the_unacknowledged_bytes_across_a_timeout() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(10 * 1448));
    while c.try_next().is_some() {}
    let send_q = |c: &mut Conversation| {
        let now = c.now;
        let rows = c.stack.sockets_snapshot(now);
        rows.iter().find(|r| r.fd == Some(fd.0)).expect("the connection's row").send_q
    };
    assert_eq!(send_q(&mut c), 10 * 1448);
    // A tail loss probe, then the retransmission timeout: the first segment is resent, SND.NXT back at SND.UNA.
    c.advance(250);
    let mut resent = Vec::new();
    while let Some(out) = c.try_next() {
        resent.push(out.seq);
    }
    assert_eq!(resent.last(), Some(&1), "the timeout resent from SND.UNA: {resent:?}");
    assert_eq!(send_q(&mut c), 10 * 1448, "a timeout does not change what is queued");
    c.send(seg(ACK).seq(1).ack(1 + 4 * 1448));
    assert_eq!(send_q(&mut c), 6 * 1448);
}

/// RFC 9293 section 3.10.4 and RFC 6298 section 5: our FIN occupies sequence space and is retransmitted like
/// data until acknowledged.
#[test]
fn an_unacknowledged_fin_is_retransmitted() {
    let (mut c, fd) = established();
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.advance(199);
    c.expect_nothing();
    c.advance(1);
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(ACK).seq(1).ack(2));
    c.advance(10_000);
    c.expect_nothing();
}

/// RFC 5681 section 3.2 (fast retransmit after the third duplicate ACK) and RFC 6582 (NewReno: a partial ACK
/// retransmits the next hole at once; a full ACK ends recovery). The peer does not do SACK.
#[test]
fn three_duplicate_acks_trigger_fast_retransmit_and_a_partial_ack_the_next_hole() {
    let mut c = Conversation::new();
    let (_, fd) = c.open_passive(seg(SYN).win(64240).mss(1460).ts().wscale(7));
    c.write(fd, &app_bytes(10 * 1448));
    for i in 0..10u32 {
        let flags = if i == 9 { ACK | PSH } else { ACK };
        c.expect_data(flags, 1 + i * 1448, 1, 1448);
    }
    // Segments 1 and 6 are lost: segments 2, 3 and 4 each draw a duplicate ACK.
    c.send(seg(ACK).seq(1).ack(1));
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_data(ACK, 1, 1, 1448);
    assert_eq!(c.counter("TcpExtTCPFastRetrans"), 1);
    c.send(seg(ACK).seq(1).ack(1)); // segment 5: a further duplicate, nothing to resend
    c.expect_nothing();

    c.send(seg(ACK).seq(1).ack(1 + 5 * 1448)); // the retransmission filled the first hole: a partial ACK
    c.expect_data(ACK, 1 + 5 * 1448, 1, 1448);

    c.send(seg(ACK).seq(1).ack(1 + 10 * 1448));
    c.expect_nothing();
}

/// Send-buffer autotuning (Linux's `tcp_sndbuf_expand`): while the application keeps the buffer full and the
/// peer acknowledges everything, slow start doubles the congestion window each round trip and the send buffer
/// follows it at twice the window — unless the application set `SO_SNDBUF`, which then stays as set.
#[test]
fn the_send_buffer_grows_with_the_window_unless_the_application_fixed_it() {
    for fixed in [false, true] {
        let (mut c, fd) = established();
        if fixed {
            c.stack.setsockopt(fd, SockOpt::SndBuf, 131_072).unwrap();
        }
        let before = c.stack.getsockopt(fd, SockOpt::SndBuf).unwrap();
        assert_eq!(before, 262_144, "the default, or 131072 doubled as Linux does");
        let data = app_bytes(1 << 20);
        for _round in 0..12 {
            c.write(fd, &data);
            let mut end = None;
            while let Some(out) = c.try_next() {
                end = Some(out.seq + out.len() as u32);
            }
            // The peer takes everything, with a window (65535 << 7) that never limits the sender.
            if let Some(end) = end {
                c.send(seg(ACK).seq(1).ack(end).win(65_535));
                c.pump();
            }
        }
        let after = c.stack.getsockopt(fd, SockOpt::SndBuf).unwrap();
        if fixed {
            assert_eq!(after, before, "SO_SNDBUF set by the application is kept");
        } else {
            assert!(after > before, "the send buffer did not grow: {after}");
            assert!(after <= 4 << 20, "past the autotuning maximum: {after}");
        }
    }
}

/// Receive-buffer autotuning (Linux's `tcp_rcv_space_adjust`): a peer that sends a whole window every 10 ms
/// round trip, to an application that reads everything, finds the window growing round after round with the
/// buffer behind it — unless the application set `SO_RCVBUF`, which then stays as set, or the growth of all
/// buffers together reached the stack's budget.
#[test]
fn the_receive_buffer_grows_with_what_the_application_reads_unless_it_was_fixed() {
    for (fixed, budget) in [(false, None), (true, None), (false, Some(1 << 20))] {
        let (mut c, fd) = established_with(|config| {
            if let Some(budget) = budget {
                config.tcp.autotune_total_max = budget;
            }
        });
        if fixed {
            c.stack.setsockopt(fd, SockOpt::RcvBuf, 131_072).unwrap();
        }
        let before = c.stack.getsockopt(fd, SockOpt::RcvBuf).unwrap();
        assert_eq!(before, 262_144, "the default, or 131072 doubled as Linux does");
        let (mut next, mut edge, mut largest_window) = (1u32, 1 + 64_240u32, 0usize);
        for _round in 0..12 {
            // A window's worth of full segments, each echoing the stack's latest timestamp.
            let segments = (edge - next) as usize / 1448;
            for _ in 0..segments {
                c.send(seg(ACK).seq(next).ack(1).fill(1448));
                next += 1448;
            }
            c.advance(10);
            let mut read = 0;
            while let Ok(bytes) = c.read(fd) {
                assert!(!bytes.is_empty(), "end of file");
                read += bytes.len();
            }
            assert_eq!(read, segments * 1448, "the application reads everything");
            c.advance(1);
            let mut last_ack = None;
            while let Some(out) = c.try_next() {
                last_ack = Some(out);
            }
            let ack = last_ack.expect("the stack acknowledges each window");
            // An odd last segment waits for the delayed-ACK timer.
            assert!(ack.ack + 1448 >= next, "everything acknowledged: {} of {next}", ack.ack);
            let window = usize::from(ack.window) << 7;
            edge = ack.ack + window as u32;
            largest_window = largest_window.max(window);
        }
        let after = c.stack.getsockopt(fd, SockOpt::RcvBuf).unwrap();
        if fixed {
            assert_eq!(after, before, "SO_RCVBUF set by the application is kept");
            assert!(largest_window <= before as usize, "a window beyond the fixed buffer: {largest_window}");
        } else if let Some(budget) = budget {
            // The stack-wide budget for growth (Linux's tcp_mem) stops it short of the per-socket maximum.
            assert_eq!(after, before + budget as i32, "growth is bounded by the stack-wide budget");
            assert_eq!(c.stack.tcp_memory().autotuned_bytes, budget);
            // The connection's growth returns to the budget when it ends.
            c.stack.close(fd).unwrap();
            c.send(seg(RST).seq(next));
            assert_eq!(c.stack.tcp_memory().autotuned_bytes, 0, "the budget was not given back");
        } else {
            assert!(after >= 4 << 20, "the receive buffer did not grow with the reading: {after}");
            assert!(after <= 6 << 20, "past the autotuning maximum: {after}");
            assert!(largest_window > before as usize, "the window never grew past the default: {largest_window}");
        }
    }
}

/// RFC 2018 and RFC 6675 (SACK-based loss recovery): the first hole is retransmitted when recovery starts; the
/// SACK blocks that follow reveal the second hole, which is retransmitted during the same recovery, and data
/// the peer SACKed is never sent again.
#[test]
fn sack_recovery_retransmits_only_the_holes() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(10 * 1448));
    for _ in 0..10 {
        c.next_seg();
    }
    // Where segment i (from 0) starts.
    let seg_start = |i: u32| 1 + i * 1448;
    // Segments 0 and 5 are lost; each other arrival draws a duplicate ACK with the SACK blocks a receiver sends.
    let mut resent = Vec::new();
    let arrivals = [1, 2, 3, 4, 6, 7, 8, 9];
    for (n, &i) in arrivals.iter().enumerate() {
        let mut blocks = vec![];
        if i > 5 {
            blocks.push((seg_start(6), seg_start(i + 1)));
        }
        blocks.push((seg_start(1), seg_start(i.min(4) + 1)));
        c.send(seg(ACK).seq(1).ack(1).sack(&blocks));
        c.pump();
        if n == 0 {
            // Everything here happens at time zero, so RACK's reordering window (a quarter of the minimum
            // RTT) is zero and the first SACK marks segment 0 lost. PRR (RFC 6937, as Linux) lets the fast
            // retransmit out with the ACK that starts recovery, even though the pipe is above ssthresh.
            c.expect_data(ACK, 1, 1, 1448);
        }
        while let Some(out) = c.try_next() {
            resent.push((out.seq, out.len()));
        }
    }
    assert_eq!(resent, [(seg_start(5), 1448)], "the second hole, and nothing SACKed");
    c.send(seg(ACK).seq(1).ack(seg_start(10)));
    c.expect_nothing();
}

/// An established connection whose smoothed RTT is 20 ms: the handshake and one segment each answered 20 ms
/// later.
/// A connection accepted from a Linux-like SYN 20 ms before its ACK: the conversation, the listener and the
/// connection.
fn accepted_after_20ms() -> (Conversation, Fd, Fd) {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);
    c.send(linux_syn());
    c.expect_seg(SYN | ACK, 0, 1);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(1));
    let fd = c.accept(listener);
    (c, listener, fd)
}

fn established_with_rtt_20ms() -> (Conversation, Fd) {
    let (mut c, _, fd) = accepted_after_20ms();
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(101));
    c.expect_nothing();
    (c, fd)
}

/// RFC 8985 section 7 (TLP): when the last segments of a flight are lost, no later segment can draw the
/// duplicate ACKs or SACKs that reveal them. Two round trips after the last acknowledgment the stack probes
/// by sending the last segment again; the peer's SACK of it lets RACK find the other lost segment — all
/// long before the retransmission timer (at least 200 ms) would have fired.
#[test]
fn a_lost_tail_is_probed_after_two_round_trips_instead_of_a_timeout() {
    let (mut c, fd) = established_with_rtt_20ms();
    let seg_start = |i: u32| 101 + i * 1448;
    c.write(fd, &app_bytes(10 * 1448));
    for i in 0..10 {
        c.expect_data(if i == 9 { ACK | PSH } else { ACK }, seg_start(i), 1, 1448);
    }
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(8))); // segments 8 and 9 are lost
    c.advance(39);
    c.expect_nothing();
    c.advance(1);
    c.expect_data(ACK | PSH, seg_start(9), 1, 1448); // the probe: PTO = 2 * SRTT after the last ACK
    assert_eq!(c.counter("TcpExtTCPLossProbes"), 1);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(8)).sack(&[(seg_start(9), seg_start(10))]));
    c.expect_data(ACK, seg_start(8), 1, 1448); // RACK: sent before segment 9, and overdue
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(10)));
    c.expect_nothing();
    assert_eq!(c.counter("TcpExtTCPTimeouts"), 0, "no retransmission timeout");
}

/// RFC 8985 section 6: in a flight of three segments the first is lost; the two SACKs that follow are fewer
/// than the three duplicate ACKs of fast retransmit, but RACK sees that later data arrived and resends the
/// lost segment once its time is up — RACK.rtt plus a reordering window of a quarter of the minimum RTT.
#[test]
fn rack_recovers_a_loss_in_a_short_flight_without_three_duplicate_acks() {
    let (mut c, fd) = established_with_rtt_20ms();
    let seg_start = |i: u32| 101 + i * 1448;
    c.write(fd, &app_bytes(3 * 1448));
    for _ in 0..3 {
        c.next_seg();
    }
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(0)).sack(&[(seg_start(1), seg_start(2))]));
    c.send(seg(ACK).seq(1).ack(seg_start(0)).sack(&[(seg_start(1), seg_start(3))]));
    c.expect_nothing(); // within the reordering window: it might only be late
    c.advance(5);
    c.expect_data(ACK, seg_start(0), 1, 1448);
    assert_eq!(c.counter("TcpExtTCPFastRetrans"), 1);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(3)));
    c.expect_nothing();
    assert_eq!(c.counter("TcpExtTCPTimeouts"), 0);
}

/// RFC 8985 section 6.3 with RFC 6675's pacing: a flow limited by the peer's window (all of it in flight)
/// still resends a lost segment at once — the window already took those bytes — instead of waiting for the
/// retransmission timer.
#[test]
fn a_loss_in_a_flow_limited_by_the_peers_window_is_resent_without_a_timeout() {
    let (mut c, fd) = established_with_rtt_20ms();
    // The peer's window shrinks to four segments (scale 7: 4 * 1448 / 128 = 45.25 -> 46) with its next ACK.
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 101, 1, 100);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(201).win(46));
    let seg_start = |i: u32| 201 + i * 1448;
    c.write(fd, &app_bytes(8 * 1448));
    for _ in 0..4 {
        c.next_seg();
    }
    c.expect_nothing();
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(0)).win(46).sack(&[(seg_start(1), seg_start(4))]));
    c.expect_data(ACK, seg_start(0), 1, 1448);
    assert_eq!(c.counter("TcpExtTCPTimeouts"), 0);
}

/// Shrinking SO_RCVBUF while out-of-order data is parked past the new end forgets that data: when the gap
/// fills, the ACK covers only bytes really kept (nothing accepted into a buffer is ever lost).
#[test]
fn shrinking_the_receive_buffer_forgets_data_parked_beyond_it() {
    let (mut c, fd) = established();
    c.send(seg(ACK).seq(1 + 40_000).ack(1).fill(1000)); // parked 40 kB ahead
    c.expect_seg(ACK, 1, 1);
    c.stack.setsockopt(fd, SockOpt::RcvBuf, 8192).unwrap(); // 16 KiB: the parked bytes no longer fit
    c.send(seg(ACK).seq(1).ack(1).fill(1000));
    let ack = c.next_seg();
    assert_eq!(ack.ack, 1001, "only the gap's own bytes are acknowledged: {ack}");
    assert_eq!(c.read(fd), Ok(pattern(1, 1000)));
}

/// RFC 5681 section 4.1: after sitting idle for longer than an RTO, a connection restarts from the initial
/// window instead of bursting its old congestion window into a path it no longer knows.
#[test]
fn an_idle_connection_restarts_from_the_initial_window() {
    let (mut c, fd) = established_with_rtt_20ms();
    let start = 101;
    c.write(fd, &app_bytes(30 * 1448));
    let mut sent = 0u32;
    for _ in 0..3 {
        while let Some(s) = c.try_next() {
            sent += s.len() as u32;
        }
        c.advance(20);
        c.send(seg(ACK).seq(1).ack(start + sent));
    }
    assert_eq!(sent, 30 * 1448, "slow start grew the window past the initial ten segments");
    c.advance(5_000);
    c.write(fd, &app_bytes(40 * 1448));
    let mut burst = 0;
    while c.try_next().is_some() {
        burst += 1;
    }
    assert_eq!(burst, 10, "the restart window: ten segments");
}

/// Four segments go out; the first is only late, not lost. Three SACKs make RACK resend it (no reordering
/// seen yet, so no reordering window), and the recovery cuts the window. Returns the conversation, and the
/// TSvals of the original first segment and of its retransmission.
fn spurious_recovery() -> (Conversation, u32, u32) {
    let (mut c, fd) = established_with_rtt_20ms();
    let seg_start = |i: u32| 101 + i * 1448;
    c.write(fd, &app_bytes(4 * 1448));
    let original = c.next_seg().tsval().expect("timestamps");
    for _ in 1..4 {
        c.next_seg();
    }
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(0)).sack(&[(seg_start(1), seg_start(4))]));
    let resent = c.expect_data(ACK, seg_start(0), 1, 1448).tsval().expect("timestamps");
    assert_eq!(c.counter("TcpExtTCPFastRetrans"), 1);
    (c, original, resent)
}

/// RFC 3522 (Eifel detection), as Linux's `tcp_try_undo_recovery`: the ACK that ends the recovery echoes the
/// timestamp of the original segment, older than the retransmission's, so the original arrived and the loss
/// never happened: the window reduction is undone.
#[test]
fn a_recovery_whose_ack_echoes_the_original_is_undone() {
    let (mut c, original, resent) = spurious_recovery();
    assert!(original < resent);
    c.advance(1);
    let clock = c.peer_clock();
    c.send(seg(ACK).seq(1).ack(101 + 4 * 1448).ts_val(clock, original));
    assert_eq!(c.counter("TcpExtTCPFullUndo"), 1);

    // A real loss is not undone: the ACK echoes the retransmission.
    let (mut c, _, resent) = spurious_recovery();
    c.advance(1);
    let clock = c.peer_clock();
    c.send(seg(ACK).seq(1).ack(101 + 4 * 1448).ts_val(clock, resent));
    assert_eq!(c.counter("TcpExtTCPFullUndo"), 0);
}

/// RFC 2883 section 5 and Linux's `tcp_try_undo_dsack`: a DSACK reports the retransmission as a duplicate
/// — every retransmission of the recovery was — so the reduction is undone.
#[test]
fn a_recovery_whose_retransmissions_are_all_dsacked_is_undone() {
    let (mut c, _, resent) = spurious_recovery();
    c.advance(1);
    let clock = c.peer_clock();
    c.send(seg(ACK).seq(1).ack(101 + 4 * 1448).ts_val(clock, resent));
    c.send(seg(ACK).seq(1).ack(101 + 4 * 1448).ts_val(clock, resent).sack(&[(101, 101 + 1448)]));
    assert_eq!(c.counter("TcpExtTCPDSACKUndo"), 1);
}

/// TCP_INFO (`Stack::tcp_info`) through a recovery: what is in flight, SACKed and lost, the window cut and
/// the loss state, and `ss -i`'s fields. A listener reports its state; a UDP socket has no TCP_INFO.
#[test]
fn tcp_info_follows_a_recovery() {
    let (mut c, listener, fd) = accepted_after_20ms();
    let open = c.stack.tcp_info(fd).unwrap();
    assert_eq!((open.state, open.ca_state, open.congestion, open.ssthresh), ("ESTAB", "open", "cubic", None));
    assert_eq!(open.srtt, Some(ustack::Duration::from_millis(20)), "the handshake's round trip");
    let seg_start = |i: u32| 1 + i * 1448;
    c.write(fd, &app_bytes(4 * 1448));
    for _ in 0..4 {
        c.next_seg();
    }
    assert_eq!(c.stack.tcp_info(fd).unwrap().unacked, 4 * 1448);
    c.advance(20);
    c.send(seg(ACK).seq(1).ack(seg_start(0)).sack(&[(seg_start(1), seg_start(4))]));
    c.expect_data(ACK, seg_start(0), 1, 1448);
    let info = c.stack.tcp_info(fd).unwrap();
    assert_eq!(info.ca_state, "recovery");
    assert_eq!((info.unacked, info.sacked, info.lost), (4 * 1448, 3 * 1448, 0), "the lost segment was resent");
    assert!(info.ssthresh.is_some_and(|t| t < open.cwnd) && info.cwnd < open.cwnd, "{info:?}");
    let fields = info.to_ss_fields();
    assert!(fields.starts_with("cubic rto:") && fields.contains(" mss:1448 cwnd:"), "{fields}");
    assert!(fields.contains(" unacked:4 sacked:3 ") && fields.ends_with(" ca:recovery"), "{fields}");

    assert_eq!(c.stack.tcp_info(listener).map(|i| (i.state, i.srtt)), Ok(("LISTEN", None)));
    let udp = c.stack.socket(Domain::Inet, SockType::Dgram).unwrap();
    assert_eq!(c.stack.tcp_info(udp), Err(Errno::ENOPROTOOPT));
    assert_eq!(c.stack.tcp_info(Fd(9999)), Err(Errno::EBADF));
}

/// The network duplicated segment 2, which was sent once: the DSACK for it says nothing about the
/// retransmission of segment 0 and must not undo the recovery. The DSACK for segment 0 then does.
#[test]
fn a_dsack_for_a_segment_sent_once_does_not_undo_a_recovery() {
    let (mut c, _, resent) = spurious_recovery();
    let seg_start = |i: u32| 101 + i * 1448;
    c.advance(1);
    let clock = c.peer_clock();
    c.send(seg(ACK).seq(1).ack(seg_start(4)).ts_val(clock, resent));
    c.send(seg(ACK).seq(1).ack(seg_start(4)).ts_val(clock, resent).sack(&[(seg_start(2), seg_start(3))]));
    assert_eq!(c.counter("TcpExtTCPDSACKUndo"), 0, "segment 2 was never resent");
    c.send(seg(ACK).seq(1).ack(seg_start(4)).ts_val(clock, resent).sack(&[(seg_start(0), seg_start(1))]));
    assert_eq!(c.counter("TcpExtTCPDSACKUndo"), 1);
}

/// RFC 9438 section 4.6: with CUBIC, the default as on Linux, a fast retransmit sets ssthresh to 0.7 of the
/// flight; NewReno (`TCP_CONGESTION` 0) halves it (RFC 5681 equation 4). Seen on the wire through the window
/// inflation of RFC 5681 section 3.2: one of ten segments is lost and the other nine draw duplicate ACKs, so cwnd
/// ends at ssthresh + 9 segments against 11 in flight (the ten and the retransmission): CUBIC sends
/// 7 + 9 − 11 = 5 new segments during recovery, Reno 5 + 9 − 11 = 3. The peer does not do SACK.
#[test]
fn fast_retransmit_keeps_beta_0_7_of_the_flight_with_cubic_and_half_with_reno() {
    for (options, new_segments) in
        [(&[][..], 5u32), (&[(SockOpt::TcpCongestion, CongestionAlgorithm::Reno as i32)][..], 3)]
    {
        let mut c = Conversation::new();
        let listener = c.listen_with(80, 128, options);
        let (_, fd) = c.open_passive_on(listener, seg(SYN).win(64240).mss(1460).ts().wscale(7));
        c.write(fd, &app_bytes(20 * 1448));
        for i in 0..10u32 {
            c.expect_data(ACK, 1 + i * 1448, 1, 1448);
        }
        c.expect_nothing(); // the initial window (RFC 6928) is full
        c.send(seg(ACK).seq(1).ack(1));
        c.send(seg(ACK).seq(1).ack(1));
        c.expect_nothing();
        c.send(seg(ACK).seq(1).ack(1));
        c.expect_data(ACK, 1, 1, 1448); // the third duplicate: fast retransmit
        let mut sent = Vec::new();
        for _ in 0..6 {
            c.send(seg(ACK).seq(1).ack(1));
            while let Some(out) = c.try_next() {
                sent.push(out.seq);
            }
        }
        let expected: Vec<u32> = (10..10 + new_segments).map(|i| 1 + i * 1448).collect();
        assert_eq!(sent, expected, "{options:?}: new segments during recovery");
    }
}

// =============================================================================================================
// Receiving.

/// RFC 5681 section 4.2 ("an immediate ACK SHOULD be generated when an out-of-order segment arrives") and
/// RFC 2018 section 4: the first SACK block holds the segment that triggered the ACK, the others follow most
/// recent first; a segment that fills the hole is acknowledged at once, cumulatively.
#[test]
fn out_of_order_data_is_sacked_in_rfc2018_order_and_the_filled_hole_acked_cumulatively() {
    let (mut c, fd) = established();
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 101);

    c.send(seg(ACK | PSH).seq(201).ack(1).fill(100));
    assert_eq!(c.expect_seg(ACK, 1, 101).sack, [(201, 301)]);
    c.send(seg(ACK | PSH).seq(401).ack(1).fill(100));
    assert_eq!(c.expect_seg(ACK, 1, 101).sack, [(401, 501), (201, 301)]);
    c.send(seg(ACK | PSH).seq(601).ack(1).fill(100));
    assert_eq!(c.expect_seg(ACK, 1, 101).sack, [(601, 701), (401, 501), (201, 301)]);
    c.send(seg(ACK | PSH).seq(301).ack(1).fill(100));
    assert_eq!(c.expect_seg(ACK, 1, 101).sack, [(201, 501), (601, 701)], "the merged block first");

    c.send(seg(ACK | PSH).seq(101).ack(1).fill(100));
    assert_eq!(c.expect_seg(ACK, 1, 501).sack, [(601, 701)]);
    c.send(seg(ACK | PSH).seq(501).ack(1).fill(100));
    assert!(c.expect_seg(ACK, 1, 701).sack.is_empty());
    assert_eq!(c.read(fd), Ok(pattern(1, 700)));
}

/// RFC 9293 section 3.10.7.4: a segment wholly before RCV.NXT is not acceptable and is answered with an ACK;
/// one that overlaps RCV.NXT has its old part trimmed.
#[test]
fn duplicate_data_is_acked_and_overlaps_are_trimmed() {
    let (mut c, fd) = established();
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 101);
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 101);
    c.send(seg(ACK | PSH).seq(51).ack(1).fill(100));
    c.expect_seg(ACK, 1, 151);
    assert_eq!(c.read(fd), Ok(pattern(1, 150)));
}

/// RFC 9293 section 3.8.6.3 and RFC 1122 section 4.2.3.2: ACK at least every second full-sized segment, and a
/// lone segment within the delayed-ACK timeout (40 ms, Linux's floor). Quick-ack mode is turned off here, so the
/// first segments are delayed too.
#[test]
fn delayed_ack_every_second_full_segment_or_after_40ms() {
    let (mut c, _fd) = established_active_with(|cfg| cfg.tcp.quick_acks = 0);
    c.send(seg(ACK).seq(1).ack(1).fill(1448));
    c.expect_nothing();
    c.advance(39);
    c.expect_nothing();
    c.advance(1);
    c.expect_seg(ACK, 1, 1449);
    assert_eq!(c.counter("TcpExtDelayedACKs"), 1);

    c.send(seg(ACK).seq(1449).ack(1).fill(1448));
    c.expect_nothing();
    c.send(seg(ACK).seq(2897).ack(1).fill(1448));
    c.expect_seg(ACK, 1, 4345);

    c.send(seg(ACK | PSH).seq(4345).ack(1).fill(100));
    c.advance(39);
    c.expect_nothing();
    c.advance(1);
    c.expect_seg(ACK, 1, 4445);
}

/// Segments that arrive in one device read are answered together, as Linux answers a GRO super-segment: the
/// ACKs that "every second full-sized segment" (RFC 9293 section 3.8.6.3) would call for inside the batch
/// would each be superseded before leaving, so one ACK covers the batch; and a lone segment still waits
/// for the delayed-ACK timer.
#[test]
fn a_batch_of_segments_is_answered_with_one_ack() {
    let (mut c, fd) = established_active_with(|cfg| cfg.tcp.quick_acks = 0);
    c.send_batch((0..6).map(|i| seg(ACK).seq(1 + i * 1448).ack(1).fill(1448)).collect());
    c.expect_seg(ACK, 1, 1 + 6 * 1448);
    c.expect_nothing();
    assert_eq!(c.read(fd), Ok(pattern(1, 6 * 1448)), "every segment of the batch delivered, in order");

    c.send_batch(vec![seg(ACK | PSH).seq(1 + 6 * 1448).ack(1).fill(100)]);
    c.expect_nothing();
    c.advance(40);
    c.expect_seg(ACK, 1, 1 + 6 * 1448 + 100);
}

/// RFC 2883: a duplicate segment is reported in a D-SACK block, and an ACK carries one such block. Two
/// duplicates in one device read are answered with an ACK each, at once, each naming its own duplicate (as
/// Linux answers every duplicate, `tcp_send_dupack`): answered with the batch's one ACK, the second would
/// replace the first, and a sender that learns reordering from D-SACKs (RACK) would learn of half of it.
#[test]
fn each_duplicate_in_a_batch_is_reported_in_its_own_dsack() {
    let (mut c, fd) = established();
    c.send_batch((0..3).map(|i| seg(ACK).seq(1 + i * 1000).ack(1).fill(1000)).collect());
    assert!(c.expect_seg(ACK, 1, 3001).sack.is_empty());
    c.expect_nothing();
    c.send_batch(vec![seg(ACK).seq(1).ack(1).fill(1000), seg(ACK).seq(2001).ack(1).fill(1000)]);
    assert_eq!(c.expect_seg(ACK, 1, 3001).sack, [(1, 1001)]);
    assert_eq!(c.expect_seg(ACK, 1, 3001).sack, [(2001, 3001)]);
    c.expect_nothing();
    assert_eq!(c.read(fd), Ok(pattern(1, 3000)), "the duplicates changed nothing");
}

/// Buffers are lent, not owned: once the application has read everything and the peer has acknowledged
/// everything, an idle connection holds no buffer memory (its rings went back to the stack's spare pool) —
/// at once when no emptied ring may keep its storage.
#[test]
fn an_idle_connection_holds_no_buffer_memory() {
    let (mut c, fd) = established_with(|cfg| cfg.tcp.idle_rings_kept = 0);
    c.write(fd, &app_bytes(1000));
    c.expect_data(ACK | PSH, 1, 1, 1000);
    c.send(seg(ACK | PSH).seq(1).ack(1001).fill(500));
    c.expect_seg(ACK, 1001, 501);
    assert!(c.stack.tcp_memory().ring_bytes > 0, "unread data is held");
    assert_eq!(c.read(fd), Ok(pattern(1, 500)));
    let memory = c.stack.tcp_memory();
    assert_eq!(memory.ring_bytes, 0, "read dry and all acknowledged: no ring storage held");
    assert!(memory.spare_bytes > 0, "the storage waits in the pool for the next writer");
    c.write(fd, &app_bytes(10));
    c.expect_data(ACK | PSH, 1001, 501, 10);
    assert_eq!(c.stack.tcp_memory().spare_bytes, memory.spare_bytes - 262_144, "the send ring took it back");
}

/// By default an emptied ring keeps its storage for the connection's next bytes (a request/response exchange
/// empties and refills both rings every message), but only the most recently emptied rings do, up to
/// `TcpConfig::idle_rings_kept`: the one idle longest gives its storage back when another joins.
#[test]
fn only_the_most_recently_emptied_rings_keep_their_storage() {
    const RING: usize = 262_144;
    let (mut c, fd) = established_with(|cfg| cfg.tcp.idle_rings_kept = 1);
    c.write(fd, &app_bytes(1000));
    c.expect_data(ACK | PSH, 1, 1, 1000);
    c.send(seg(ACK | PSH).seq(1).ack(1001).fill(500));
    c.expect_seg(ACK, 1001, 501);
    let memory = c.stack.tcp_memory();
    assert_eq!((memory.ring_bytes, memory.spare_bytes), (2 * RING, 0), "the emptied send ring kept its storage");
    assert_eq!(c.read(fd), Ok(pattern(1, 500)));
    let memory = c.stack.tcp_memory();
    assert_eq!(
        (memory.ring_bytes, memory.spare_bytes),
        (RING, RING),
        "the receive ring, emptied last, keeps its storage; the send ring, idle longer, gave it back"
    );
    c.write(fd, &app_bytes(10));
    c.expect_data(ACK | PSH, 1001, 501, 10);
    assert_eq!(c.stack.tcp_memory().spare_bytes, 0, "the send ring took its storage back from the pool");

    let (mut c, fd) = established();
    c.write(fd, &app_bytes(1000));
    c.expect_data(ACK | PSH, 1, 1, 1000);
    c.send(seg(ACK | PSH).seq(1).ack(1001).fill(500));
    c.expect_seg(ACK, 1001, 501);
    assert_eq!(c.read(fd), Ok(pattern(1, 500)));
    let memory = c.stack.tcp_memory();
    assert_eq!((memory.ring_bytes, memory.spare_bytes), (2 * RING, 0), "by default both rings keep theirs");
    c.write(fd, &app_bytes(10));
    c.expect_data(ACK | PSH, 1001, 501, 10);
    c.send(seg(ACK | PSH).seq(501).ack(1011).fill(20));
    c.expect_seg(ACK, 1011, 521);
    assert_eq!(c.read(fd), Ok(pattern(501, 20)));
    assert_eq!(c.stack.tcp_memory().ring_bytes, 2 * RING, "and reuse it without the pool");
}

/// RFC 9293 section 3.8.6.3 and RFC 1122 section 4.2.3.2: an acknowledgment held for the delayed-ACK timer
/// rides on the next data segment, and the timer is then cancelled.
#[test]
fn a_delayed_ack_rides_on_outgoing_data() {
    let (mut c, fd) = established_active_with(|cfg| cfg.tcp.quick_acks = 0);
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_nothing();
    c.advance(10);
    c.write(fd, b"reply");
    c.expect_data(ACK | PSH, 1, 101, 5);
    c.advance(100);
    c.expect_nothing();
}

/// RFC 9293 section 3.8.6.2.2 and 3.10.7.4: as the application leaves data unread the window shrinks by what
/// arrived (the right edge stays put) down to zero; a segment outside it is answered with an ACK; once the
/// application reads, a window update goes out — not for a sliver (receiver SWS avoidance: less than an MSS
/// or half the buffer), but for the whole buffer.
#[test]
fn the_receive_window_shrinks_while_unread_and_reopens_after_a_read() {
    let mut c = Conversation::new();
    // SO_RCVBUF 1460 doubles to 2920: two whole segments, all of it offered in the SYN-ACK.
    let listener = c.listen_with(80, 128, &[(SockOpt::RcvBuf, 1460)]);
    let (_, fd) = c.open_passive_on(listener, seg(SYN).win(64240).mss(1460));

    c.send(seg(ACK).seq(1).ack(1).fill(1000));
    assert_eq!(c.expect_seg(ACK, 1, 1001).window, 1920);
    c.send(seg(ACK).seq(1001).ack(1).fill(1000));
    assert_eq!(c.expect_seg(ACK, 1, 2001).window, 920);
    c.send(seg(ACK | PSH).seq(2001).ack(1).fill(920));
    assert_eq!(c.expect_seg(ACK, 1, 2921).window, 0);

    // Linux's zero-window probe: one byte below the window.
    c.send(seg(ACK).seq(2920).ack(1));
    assert_eq!(c.expect_seg(ACK, 1, 2921).window, 0);

    assert_eq!(c.read_some(fd, 1000), Ok(pattern(1, 1000)));
    c.expect_nothing();
    assert_eq!(c.read(fd), Ok(pattern(1001, 1920)));
    assert_eq!(c.expect_seg(ACK, 1, 2921).window, 2920, "a window update");
}

/// RFC 9293 section 3.8.6.1: "When the receiving TCP peer has a zero window and a segment arrives, it must still
/// send an acknowledgment showing its next expected sequence number and current window (zero)" — also for the
/// classic probe, one byte of new data at RCV.NXT (RFC 1122 section 4.2.2.17).
#[test]
fn a_zero_window_probe_with_data_is_answered() {
    let mut c = Conversation::new();
    let listener = c.listen_with(80, 128, &[(SockOpt::RcvBuf, 1460)]);
    c.open_passive_on(listener, seg(SYN).win(64240).mss(1460));
    c.send(seg(ACK).seq(1).ack(1).fill(1460));
    c.expect_seg(ACK, 1, 1461);
    c.send(seg(ACK | PSH).seq(1461).ack(1).fill(1460));
    assert_eq!(c.expect_seg(ACK, 1, 2921).window, 0);

    c.send(seg(ACK).seq(2921).ack(1).fill(1));
    assert_eq!(c.expect_seg(ACK, 1, 2921).window, 0);
}

/// RFC 9293 section 3.8.6.2.2 ("shrinking the window" is strongly discouraged) and RFC 7323 section 2.4: with
/// a scaled window the advertised right edge (SEG.ACK + SEG.WND << 7) must not move left; Linux's
/// `tcp_select_window` rounds a held window up to the scale's granularity (`ALIGN(cur_win, 1 << wscale)`).
#[test]
fn the_scaled_right_edge_never_moves_left() {
    let mut c = Conversation::new();
    // SO_RCVBUF 8192 doubles to 16384; the SYN-ACK offers 11 segments of 1448 bytes (the MSS less the
    // timestamp option, as Linux counts them): 15928 bytes.
    let listener = c.listen_with(80, 128, &[(SockOpt::RcvBuf, 8192)]);
    c.send(linux_syn());
    let syn_ack = c.expect_seg(SYN | ACK, 0, 1);
    assert_eq!(syn_ack.window, 15928);
    c.send(seg(ACK).seq(1).ack(1));
    c.accept(listener);
    let mut edge = 1 + u32::from(syn_ack.window);
    for seq in [1, 1449, 2897, 4345] {
        c.send(seg(ACK).seq(seq).ack(1).fill(1448));
        let ack = c.expect_seg(ACK, 1, seq + 1448);
        let right = ack.ack + (u32::from(ack.window) << 7);
        assert!(right >= edge, "right edge moved left from {edge} to {right}: {ack}");
        edge = right;
    }
}

/// RFC 7323 section 2.4: "The receiver must honor, as in a window, any segment that would have been in window
/// for any ACK sent by the receiver." A peer that always fills the advertised window to its right edge, in
/// sizes that leave the edge off the 128-byte scale unit, must have every byte taken until the buffer is full
/// — the stack may never round an offer up past the space it has.
#[test]
fn every_byte_up_to_an_advertised_scaled_edge_is_taken() {
    let mut c = Conversation::new();
    let listener = c.listen_with(80, 128, &[(SockOpt::RcvBuf, 8192)]); // 16384 bytes of buffer
    c.send(linux_syn());
    let syn_ack = c.expect_seg(SYN | ACK, 0, 1);
    c.send(seg(ACK).seq(1).ack(1));
    let fd = c.accept(listener);
    let mut edge = 1 + u32::from(syn_ack.window);
    let mut next = 1u32;
    for _ in 0..200 {
        let room = edge - next;
        if room == 0 {
            break;
        }
        let len = room.min(1001) as usize; // odd sizes keep the edge off the scale unit
        c.send(seg(ACK | PSH).seq(next).ack(1).fill(len));
        next += len as u32;
        c.advance(200); // any delayed ACK goes out
        while let Some(ack) = c.try_next() {
            assert_eq!(ack.ack, next, "in-window data refused: {ack}");
            edge = edge.max(ack.ack + (u32::from(ack.window) << 7));
        }
    }
    assert_eq!(edge, next, "the window closed with the buffer full");
    assert_eq!(c.read(fd), Ok(pattern(1, (next - 1) as usize)), "every byte delivered, in order");
}

/// RFC 7323 section 5.3 (PAWS): a segment whose timestamp is older than TS.Recent is a stale duplicate: it is
/// dropped, and acknowledged.
#[test]
fn paws_drops_a_segment_with_an_old_timestamp_and_acks() {
    let (mut c, fd) = established();
    let recent = c.peer_clock();
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100)); // TS.Recent = `recent`
    c.expect_seg(ACK, 1, 101);
    c.advance(1000);
    let echo = c.stack_tsval();
    c.send(seg(ACK | PSH).seq(101).ack(1).ts_val(recent - 1000, echo).fill(100));
    c.expect_seg(ACK, 1, 101);
    assert_eq!(c.read(fd), Ok(pattern(1, 100)), "the stale segment's data is not delivered");
    assert_eq!(c.counter("TcpExtPAWSEstab"), 1);
}

// =============================================================================================================
// Sending.

/// RFC 1122 section 4.2.3.4 and RFC 896 (Nagle), in Minshall's form as Linux applies it (`tcp_nagle_check`,
/// `tcp_minshall_check`): a less-than-full segment waits while an earlier small segment is unacknowledged;
/// full-sized segments never wait.
#[test]
fn nagle_holds_small_writes_while_a_small_segment_is_outstanding() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.write(fd, &app_bytes(100));
    c.write(fd, &app_bytes(100));
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(101));
    c.expect_data(ACK | PSH, 101, 1, 200);
    c.send(seg(ACK).seq(1).ack(301));

    c.write(fd, &app_bytes(1448 + 100)); // a full segment and a small one: no small one is outstanding
    c.expect_data(ACK, 301, 1, 1448);
    c.expect_data(ACK | PSH, 1749, 1, 100);
    c.write(fd, &app_bytes(50));
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(1749)); // the small segment is still unacknowledged
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(1849));
    c.expect_data(ACK | PSH, 1849, 1, 50);
}

/// A write of several MSS leaves as one super-segment, cut into segments just before the device (software
/// GSO, as Linux's TCP builds GSO packets whatever the device). Its small last piece obeys Nagle as a
/// segment of its own would (Linux's `tcp_mss_split_point`): while a small segment is unacknowledged the
/// super-segment stops at its last whole MSS. `TcpOutSegs` counts the segments on the wire.
#[test]
fn a_super_segments_small_last_piece_waits_for_nagle() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    let out_segs = c.stack.counters().get("TcpOutSegs").unwrap();
    c.write(fd, &app_bytes(3 * 1448 + 100));
    c.expect_data(ACK, 101, 1, 1448);
    c.expect_data(ACK, 1549, 1, 1448);
    c.expect_data(ACK, 2997, 1, 1448);
    c.expect_nothing();
    assert_eq!(c.stack.counters().get("TcpOutSegs"), Some(out_segs + 3), "one super-segment, three on the wire");
    c.send(seg(ACK).seq(1).ack(101));
    c.expect_data(ACK | PSH, 4445, 1, 100);
}

/// A device with segmentation offload cuts super-segments at what fits the MTU. A peer that asked for a
/// smaller MSS must get segments of its size: the stack cuts those super-segments itself, checksummed.
#[test]
fn super_segments_for_a_smaller_peer_mss_are_cut_by_the_stack() {
    let mut c = Conversation::with(|config| config.tcp.gso_max_size = 65_000);
    let (_, fd) = c.open_passive(linux_syn().mss(536));
    c.write(fd, &app_bytes(3 * 524));
    c.expect_data(ACK, 1, 1, 524); // 536 less the 12 bytes of the timestamps option
    c.expect_data(ACK, 525, 1, 524);
    c.expect_data(ACK | PSH, 1049, 1, 524);
    c.expect_nothing();
}

/// tcp(7) TCP_NODELAY: Nagle off, every write goes out at once.
#[test]
fn tcp_nodelay_sends_small_writes_at_once() {
    let (mut c, fd) = established();
    c.stack.setsockopt(fd, SockOpt::TcpNoDelay, 1).unwrap();
    for i in 0..3 {
        c.write(fd, &app_bytes(100));
        c.expect_data(ACK | PSH, 1 + i * 100, 1, 100);
    }
}

/// RFC 9293 section 3.8.6.1 and RFC 1122 section 4.2.2.17: facing a zero window with data to send, probe it
/// (Linux's probe: `<SEQ=SND.UNA-1><ACK=RCV.NXT>`, no data) after the RTO, backing off exponentially, and send
/// the data as soon as the window opens.
#[test]
fn a_zero_window_is_probed_with_backoff_until_it_opens() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(100));
    c.expect_data(ACK | PSH, 1, 1, 100);
    c.send(seg(ACK).seq(1).ack(101).win(0));
    c.write(fd, &app_bytes(100));
    c.expect_nothing();

    for wait in [200, 400, 800] {
        c.advance(wait - 1);
        c.expect_nothing();
        c.advance(1);
        let probe = c.expect_seg(ACK, 100, 1);
        assert!(probe.is_empty(), "a probe carries no data: {probe}");
        c.send(seg(ACK).seq(1).ack(101).win(0));
        c.expect_nothing();
    }
    assert_eq!(c.counter("TcpExtTCPWinProbe"), 3);

    c.send(seg(ACK).seq(1).ack(101).win(1000));
    c.expect_data(ACK | PSH, 101, 1, 100);
}

/// RFC 9293 section 3.10.4: a FIN queued behind unsent data rides on the last data segment.
#[test]
fn the_fin_rides_on_the_last_data_segment() {
    let (mut c, fd) = established();
    c.write(fd, &app_bytes(100));
    c.stack.close(fd).unwrap();
    c.expect_data(FIN | PSH | ACK, 1, 1, 100);
    c.send(seg(ACK).seq(1).ack(102));
    c.expect_nothing();
    c.send(seg(FIN | ACK).seq(1).ack(102));
    c.expect_seg(ACK, 102, 2);
}

// =============================================================================================================
// RFC 5961: blind attacks.

/// RFC 5961 section 3.2: a RST in the window but not at RCV.NXT gets a challenge ACK
/// (`<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`) and the connection survives.
#[test]
fn an_in_window_rst_not_at_rcv_nxt_draws_a_challenge_ack() {
    let (mut c, fd) = established();
    c.send(seg(RST).seq(101));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.counter("TcpExtTCPChallengeACK"), 1);
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(10));
    c.expect_seg(ACK, 1, 11);
    assert_eq!(c.read(fd), Ok(pattern(1, 10)), "still connected");
    // Outside the window a RST is silently dropped.
    c.send(seg(RST).seq(11 + 100_000_000));
    c.expect_nothing();
}

/// RFC 5961 section 3.2 and RFC 9293 section 3.10.7.4: a RST at exactly RCV.NXT resets the connection:
/// `ECONNRESET` once, then end of file; sending after that is `EPIPE`. Nothing answers a RST.
#[test]
fn an_exact_rst_resets_the_connection() {
    let (mut c, fd) = established();
    c.send(seg(RST).seq(1));
    c.expect_nothing();
    let r = c.stack.readiness(fd).unwrap();
    assert!(r.contains(Readiness::ERR | Readiness::HUP), "{r:?}");
    assert_eq!(c.read(fd), Err(Errno::ECONNRESET));
    assert_eq!(c.read(fd), Ok(vec![]));
    assert_eq!(c.stack.send(fd, b"x", ustack::MsgFlags::NONE), Err(Errno::EPIPE));
    assert_eq!(c.counter("TcpEstabResets"), 1);
}

/// RFC 5961 section 4.2: a SYN in a synchronized state, whatever its sequence number, gets a challenge ACK and
/// the connection goes on.
#[test]
fn a_syn_on_an_established_connection_draws_a_challenge_ack() {
    let (mut c, fd) = established();
    c.send(seg(SYN).seq(500).mss(1460));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.counter("TcpExtTCPSYNChallenge"), 1);
    c.write(fd, b"still here");
    c.expect_data(ACK | PSH, 1, 1, 10);
}

/// RFC 9293 section 3.10.7.4 "fifth" and RFC 5961 section 5.2: "If the ACK acks something not yet sent
/// (SEG.ACK > SND.NXT), then send an ACK, drop the segment, and return" — its data is not taken.
#[test]
fn an_ack_of_unsent_data_is_answered_and_the_segment_dropped() {
    let (mut c, fd) = established();
    c.send(seg(ACK | PSH).seq(1).ack(1000).fill(100));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.read(fd), Err(Errno::EAGAIN));
}

/// RFC 5961 section 5.2: an ACK older than SND.UNA - MAX.SND.WND is unacceptable: answered with an ACK and
/// dropped, data included.
#[test]
fn an_ack_too_far_behind_draws_a_challenge_ack() {
    let (mut c, fd) = established();
    let far_behind = 1u32.wrapping_sub(10_000_000); // the peer's window is 65535 << 7, about 8 MB
    c.send(seg(ACK | PSH).seq(1).ack(far_behind).fill(100));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.read(fd), Err(Errno::EAGAIN));
}

/// RFC 5961 section 7: challenge ACKs are rate-limited (here to 2 a second, Linux's
/// `tcp_challenge_ack_limit`), so they cannot be turned into an amplifier.
#[test]
fn challenge_acks_are_rate_limited() {
    let (mut c, _fd) = established_with(|cfg| cfg.tcp.challenge_ack_limit = 2);
    for _ in 0..2 {
        c.send(seg(RST).seq(101));
        c.expect_seg(ACK, 1, 1);
    }
    c.send(seg(RST).seq(101));
    c.expect_nothing();
    c.advance(1000);
    c.send(seg(RST).seq(101));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.counter("TcpExtTCPChallengeACK"), 3);
}

// =============================================================================================================
// Closing.

/// RFC 9293 section 3.6, case 2 (the peer closes first): its FIN is acknowledged at once (CLOSE-WAIT), reads
/// reach end of file, we may still send; our `close()` sends our FIN (LAST-ACK); its ACK ends the connection,
/// and the four-tuple then belongs to nobody (a segment on it meets the listener's RST).
#[test]
fn passive_close_through_close_wait_and_last_ack() {
    let (mut c, fd) = established();
    c.send(seg(FIN | ACK).seq(1).ack(1));
    c.expect_seg(ACK, 1, 2);
    assert_eq!(c.read(fd), Ok(vec![]), "end of file");
    let r = c.stack.readiness(fd).unwrap();
    assert!(r.contains(Readiness::IN | Readiness::RDHUP | Readiness::OUT), "{r:?}");

    c.write(fd, b"bye");
    c.expect_data(ACK | PSH, 1, 2, 3);
    c.send(seg(ACK).seq(2).ack(4));
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 4, 2);
    c.send(seg(ACK).seq(2).ack(5));
    c.expect_nothing();

    c.send(seg(ACK).seq(2).ack(5));
    c.expect_seg(RST, 5, 0);
}

/// RFC 9293 section 3.6, case 1 (we close first): FIN-WAIT-1, FIN-WAIT-2 once our FIN is acknowledged,
/// TIME-WAIT on the peer's FIN, which is acknowledged; after 2*MSL (60 s) the four-tuple is free.
#[test]
fn active_close_through_fin_wait_and_time_wait() {
    let (mut c, fd) = established();
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(ACK).seq(1).ack(2));
    c.expect_nothing();
    c.send(seg(FIN | ACK).seq(1).ack(2));
    c.expect_seg(ACK, 2, 2);
    assert_eq!(c.counter("TcpExtTW"), 0, "Linux's TcpExtTW counts TIME-WAIT entries when they end");

    c.send(seg(ACK).seq(2).ack(2)); // TIME-WAIT: a bare ACK is ignored, not reset
    c.expect_nothing();
    c.advance(59_999);
    c.expect_nothing();
    c.advance(1);
    c.send(seg(ACK).seq(2).ack(2));
    c.expect_seg(RST, 2, 0);
}

/// RFC 9293 section 3.6, case 3 (simultaneous close): our FIN and the peer's cross; its FIN is acknowledged
/// (CLOSING), and the ACK of ours leads to TIME-WAIT, which acknowledges a retransmitted FIN.
#[test]
fn simultaneous_close_through_closing() {
    let (mut c, fd) = established();
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(FIN | ACK).seq(1).ack(1));
    c.expect_seg(ACK, 2, 2);
    c.send(seg(ACK).seq(2).ack(2));
    c.expect_nothing();
    assert_eq!(c.counter("TcpExtTW"), 0, "counted when the entry ends");
    c.send(seg(FIN | ACK).seq(1).ack(2));
    c.expect_seg(ACK, 2, 2);
}

/// Closes the accepted connection first, and the peer then: the stack is in TIME-WAIT from now on.
fn into_time_wait(c: &mut Conversation, fd: Fd) {
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(FIN | ACK).seq(1).ack(2));
    c.expect_seg(ACK, 2, 2);
}

/// RFC 9293 section 3.10.7.4, TIME-WAIT: "The only thing that can arrive in this state is a retransmission of
/// the remote FIN. Acknowledge it, and restart the 2 MSL timeout."
#[test]
fn time_wait_reacks_a_retransmitted_fin_and_restarts_2msl() {
    let (mut c, fd) = established();
    into_time_wait(&mut c, fd);
    c.advance(30_000);
    c.send(seg(FIN | ACK).seq(1).ack(2));
    c.expect_seg(ACK, 2, 2);
    c.advance(30_000); // 60 s after entering, 30 s after the restart
    c.send(seg(ACK).seq(2).ack(2));
    c.expect_nothing();
    c.advance(30_000);
    c.send(seg(ACK).seq(2).ack(2));
    c.expect_seg(RST, 2, 0);
}

/// RFC 1337 ("TIME-WAIT assassination"): a RST in TIME-WAIT is ignored, so the entry lives its 2*MSL.
#[test]
fn time_wait_ignores_rst() {
    let (mut c, fd) = established();
    into_time_wait(&mut c, fd);
    c.send(seg(RST).seq(2));
    c.expect_nothing();
    c.send(seg(FIN | ACK).seq(1).ack(2));
    c.expect_seg(ACK, 2, 2);
}

/// RFC 9293 section 3.6.1 / RFC 1122 section 4.2.2.13 (and RFC 6191): a new SYN whose sequence number is above
/// the old connection's RCV.NXT may reopen a four-tuple in TIME-WAIT: it reaches the listener.
#[test]
fn a_new_syn_with_a_higher_sequence_number_reuses_a_time_wait_four_tuple() {
    let mut c = Conversation::new();
    let (listener, fd) = c.open_passive(seg(SYN).win(64240).mss(1460));
    into_time_wait(&mut c, fd);

    c.send(seg(SYN).seq(100_000).win(64240).mss(1460));
    c.expect_seg(SYN | ACK, 0, 100_001);
    c.send(seg(ACK).seq(100_001).ack(1));
    c.accept(listener);
    assert_eq!(c.counter("TcpExtTWRecycled"), 1);
}

/// RFC 1122 section 4.2.2.13: a TCP may reopen a connection from TIME-WAIT if it "(1) assigns its initial
/// sequence number for the new connection to be larger than the largest sequence number it used on the
/// previous connection incarnation" — so that old duplicates cannot land in the new one. Linux starts the new
/// incarnation at the old SND.NXT + 65537 (`tcp_timewait_state_process`, `tw_isn`).
#[test]
fn a_time_wait_reopen_starts_above_the_old_sequence_numbers() {
    let mut c = Conversation::new();
    let (_, fd) = c.open_passive(seg(SYN).win(64240).mss(1460));
    c.write(fd, &app_bytes(1000));
    c.expect_data(ACK | PSH, 1, 1, 1000);
    c.send(seg(ACK).seq(1).ack(1001));
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1001, 1);
    c.send(seg(FIN | ACK).seq(1).ack(1002));
    c.expect_seg(ACK, 1002, 2);
    let old_snd_nxt = c.stack_isn().unwrap().wrapping_add(1002);

    c.send(seg(SYN).seq(100_000).win(64240).mss(1460));
    let syn_ack = c.expect_seg(SYN | ACK, 0, 100_001);
    let above = syn_ack.raw_seq.wrapping_sub(old_snd_nxt) as i32;
    assert!(above > 0, "new ISN {} is not above the old SND.NXT {old_snd_nxt}", syn_ack.raw_seq);
}

/// RFC 9293 section 3.10.7.4: a SYN below the old RCV.NXT is an old duplicate: TIME-WAIT answers with its ACK
/// and stays.
#[test]
fn an_old_syn_in_time_wait_gets_the_old_connections_ack() {
    let mut c = Conversation::new();
    let (_, fd) = c.open_passive(seg(SYN).win(64240).mss(1460));
    into_time_wait(&mut c, fd);
    c.send(seg(SYN).seq(0).win(64240).mss(1460));
    c.expect_seg(ACK, 2, 2);
}

/// RFC 2525 section 2.17 and Linux's `tcp_close`: closing with unread data aborts with
/// `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>` instead of a FIN.
#[test]
fn close_with_unread_data_sends_rst() {
    let (mut c, fd) = established();
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 101);
    c.stack.close(fd).unwrap();
    c.expect_seg(RST | ACK, 1, 101);
    assert_eq!(c.counter("TcpExtTCPAbortOnClose"), 1);
    c.send(seg(ACK).seq(101).ack(1));
    c.expect_seg(RST, 1, 0);
}

/// RFC 1122 section 4.2.2.13 ("if new data is received after CLOSE is called, its TCP SHOULD send a RST to show
/// that data was lost") and Linux (TcpExtTCPAbortOnData): data for an application that closed is refused with a
/// reset.
#[test]
fn data_after_close_is_answered_with_rst() {
    let (mut c, fd) = established();
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(ACK | PSH).seq(1).ack(2).fill(100));
    c.expect(|s| assert!(s.flags.contains(RST) && s.seq == 2, "a RST at the ACK's number: {s}"));
    assert_eq!(c.counter("TcpExtTCPAbortOnData"), 1);
    c.send(seg(ACK | PSH).seq(101).ack(2).fill(100));
    c.expect_seg(RST, 2, 0);
}

/// Linux's `tcp_recvmsg` after `tcp_fin` set SOCK_DONE: once the peer's FIN was read as end of file, reads keep
/// returning 0 even after a RST (in CLOSE-WAIT Linux's `tcp_reset` records `EPIPE`, reported by `SO_ERROR` and
/// `send`).
#[test]
fn a_rst_in_close_wait_leaves_reads_at_end_of_file() {
    let (mut c, fd) = established();
    c.send(seg(FIN | ACK).seq(1).ack(1));
    c.expect_seg(ACK, 1, 2);
    assert_eq!(c.read(fd), Ok(vec![]));
    c.send(seg(RST).seq(2));
    c.expect_nothing();
    assert_eq!(c.read(fd), Ok(vec![]), "still end of file");
    assert_eq!(c.so_error(fd), Errno::EPIPE.code());
}

/// socket(7) SO_LINGER {on, 0}: `close()` aborts the connection with a RST.
#[test]
fn so_linger_zero_closes_with_rst() {
    let (mut c, fd) = established();
    c.stack.set_linger(fd, Some(ustack::Duration::ZERO)).unwrap();
    c.stack.close(fd).unwrap();
    c.expect_seg(RST | ACK, 1, 1);
    assert_eq!(c.counter("TcpExtTCPAbortOnLinger"), 1);
}

/// RFC 9293 section 3.6 (half-close) and shutdown(2): SHUT_WR sends our FIN; in FIN-WAIT-2 the peer's data still
/// arrives and is read; sending is `EPIPE`; the peer's FIN then leads to TIME-WAIT and end of file.
#[test]
fn shutdown_write_half_closes_and_data_still_arrives() {
    let (mut c, fd) = established();
    c.stack.shutdown(fd, Shutdown::Write).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(ACK).seq(1).ack(2));
    c.expect_nothing();
    assert_eq!(c.stack.send(fd, b"x", ustack::MsgFlags::NONE), Err(Errno::EPIPE));

    c.send(seg(ACK | PSH).seq(1).ack(2).fill(100));
    c.expect_seg(ACK, 2, 101);
    assert_eq!(c.read(fd), Ok(pattern(1, 100)));
    c.send(seg(FIN | ACK).seq(101).ack(2));
    c.expect_seg(ACK, 2, 102);
    assert_eq!(c.read(fd), Ok(vec![]), "end of file");
}

/// tcp(7) TCP_LINGER2 and Linux's `tcp_fin_timeout`: an orphaned connection waits in FIN-WAIT-2 for the peer's
/// FIN only so long, then disappears silently.
#[test]
fn an_orphan_in_fin_wait_2_times_out_after_tcp_linger2() {
    let (mut c, fd) = established();
    c.stack.setsockopt(fd, SockOpt::TcpLinger2, 5).unwrap();
    c.stack.close(fd).unwrap();
    c.expect_seg(FIN | ACK, 1, 1);
    c.send(seg(ACK).seq(1).ack(2));
    c.advance(4999);
    c.send(seg(ACK).seq(1).ack(2));
    c.expect_nothing();
    c.advance(1);
    c.expect_nothing();
    c.send(seg(ACK).seq(1).ack(2));
    c.expect_seg(RST, 2, 0);
}

/// RFC 9293 section 3.10.7.4 (FIN beyond RCV.NXT is held until the text before it is in) and RFC 5681 section
/// 4.2 (acknowledge at once what is out of order).
#[test]
fn a_fin_ahead_of_missing_data_waits_for_it() {
    let (mut c, fd) = established();
    c.send(seg(FIN | ACK).seq(101).ack(1));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.read(fd), Err(Errno::EAGAIN), "no end of file yet");
    c.send(seg(ACK | PSH).seq(1).ack(1).fill(100));
    c.expect_seg(ACK, 1, 102);
    assert_eq!(c.read(fd), Ok(pattern(1, 100)));
    assert_eq!(c.read(fd), Ok(vec![]));
}

/// RFC 9293 section 3.10.4 (CLOSE in SYN-SENT: "delete the TCB"): nothing is sent, and the SYN-ACK that arrives
/// afterwards finds no connection and gets `<SEQ=SEG.ACK><CTL=RST>`.
#[test]
fn close_in_syn_sent_forgets_the_attempt() {
    let mut c = Conversation::new();
    let fd = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    c.stack.close(fd).unwrap();
    c.expect_nothing();
    c.send(seg(SYN | ACK).ack(1).mss(1460));
    c.expect_seg(RST, 1, 0);
}

// =============================================================================================================
// Keepalive.

fn keepalive(c: &mut Conversation, fd: Fd) {
    for (opt, value) in [(SockOpt::TcpKeepIdle, 10), (SockOpt::TcpKeepIntvl, 2), (SockOpt::TcpKeepCnt, 3)] {
        c.stack.setsockopt(fd, opt, value).unwrap();
    }
    c.stack.setsockopt(fd, SockOpt::KeepAlive, 1).unwrap();
}

/// RFC 1122 section 4.2.3.6 and tcp(7) (SO_KEEPALIVE, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT): after the idle time a
/// probe `<SEQ=SND.UNA-1><ACK=RCV.NXT>` goes out, then one per interval; when TCP_KEEPCNT probes went unanswered
/// the connection is reset (Linux's `tcp_keepalive_timer` sends a RST) and fails with `ETIMEDOUT`.
#[test]
fn unanswered_keepalive_probes_end_in_etimedout() {
    let (mut c, fd) = established_active();
    keepalive(&mut c, fd);
    c.advance(9999);
    c.expect_nothing();
    c.advance(1);
    assert!(c.expect_seg(ACK, 0, 1).is_empty());
    for _ in 0..2 {
        c.advance(1999);
        c.expect_nothing();
        c.advance(1);
        c.expect_seg(ACK, 0, 1);
    }
    c.advance(2000);
    c.expect_seg(RST | ACK, 1, 1);
    assert_eq!(c.read(fd), Err(Errno::ETIMEDOUT));
    assert_eq!(c.counter("TcpExtTCPKeepAlive"), 3);
}

/// RFC 1122 section 4.2.3.6: an answered probe shows the peer alive; the next probe comes after another idle
/// period counted from the answer.
#[test]
fn an_answered_keepalive_probe_restarts_the_idle_time() {
    let (mut c, fd) = established_active();
    keepalive(&mut c, fd);
    c.advance(10_000);
    c.expect_seg(ACK, 0, 1);
    c.advance(500);
    c.send(seg(ACK).seq(1).ack(1));
    c.expect_nothing();
    c.advance(9999);
    c.expect_nothing();
    c.advance(1);
    c.expect_seg(ACK, 0, 1);
    assert!(c.stack.readiness(fd).unwrap().contains(Readiness::OUT));
}

/// tcp(7) TCP_KEEPIDLE and Linux's `do_tcp_setsockopt`: changing the idle time on a socket with keepalive
/// already on re-arms the timer with the new value.
#[test]
fn tcp_keepidle_after_so_keepalive_takes_effect() {
    let (mut c, fd) = established_active();
    c.stack.setsockopt(fd, SockOpt::KeepAlive, 1).unwrap();
    c.stack.setsockopt(fd, SockOpt::TcpKeepIdle, 10).unwrap();
    c.advance(10_000);
    c.expect_seg(ACK, 0, 1);
}

// =============================================================================================================
// Listeners.

/// Linux's listen queues (`tcp_conn_request`, `tcp_check_req`, `sk_acceptq_is_full`: more than `backlog`
/// waiting): when the accept queue is full a new SYN is dropped, and so is the final ACK of a handshake
/// (TcpExtListenOverflows, TcpExtListenDrops); the SYN-ACK timer resends the SYN-ACK, and the peer's ACK
/// completes the connection once `accept()` made room.
#[test]
fn a_full_accept_queue_drops_syns_and_final_acks_until_accept_makes_room() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 2);
    let (a, b, cc, d, e) = (40001, 40002, 40003, 40004, 40005);
    for p in [a, b] {
        c.send(linux_syn().from(p));
        c.expect_seg(SYN | ACK, 0, 1);
        c.send(seg(ACK).seq(1).ack(1).from(p));
    }
    for p in [cc, d] {
        c.send(linux_syn().from(p));
        assert_eq!(c.expect_seg(SYN | ACK, 0, 1).dst_port, p);
    }
    c.send(seg(ACK).seq(1).ack(1).from(cc)); // the third: backlog + 1 fit
    c.send(seg(ACK).seq(1).ack(1).from(d)); // full: dropped
    c.expect_nothing();
    assert_eq!((c.counter("TcpExtListenOverflows"), c.counter("TcpExtListenDrops")), (1, 1));

    c.send(linux_syn().from(e));
    c.expect_nothing();
    assert_eq!((c.counter("TcpExtListenOverflows"), c.counter("TcpExtListenDrops")), (2, 2));

    c.advance(1000);
    assert_eq!(c.expect_seg(SYN | ACK, 0, 1).dst_port, d, "D's SYN-ACK again");
    c.expect_nothing();
    assert_eq!(c.stack.accept(listener).map(|(_, from)| from), Ok(peer(a)));
    c.send(seg(ACK).seq(1).ack(1).from(d));
    c.expect_nothing();
    for p in [b, cc, d] {
        assert_eq!(c.stack.accept(listener).map(|(_, from)| from), Ok(peer(p)));
    }
    assert_eq!(c.stack.accept(listener).err(), Some(Errno::EAGAIN));
}

/// Linux's `inet_csk_listen_stop`: closing a listener resets every established connection it never handed to
/// `accept()`, and forgets the half-open ones (whose final ACK then meets a closed port).
#[test]
fn closing_a_listener_resets_its_unaccepted_connections() {
    let mut c = Conversation::new();
    let listener = c.listen(80, 128);
    c.send(linux_syn().from(40001));
    c.expect_seg(SYN | ACK, 0, 1);
    c.send(seg(ACK).seq(1).ack(1).from(40001));
    c.send(linux_syn().from(40002));
    c.expect_seg(SYN | ACK, 0, 1);

    c.stack.close(listener).unwrap();
    let rst = c.expect_seg(RST | ACK, 1, 1);
    assert_eq!(rst.dst_port, 40001);
    c.expect_nothing();

    c.send(seg(ACK).seq(1).ack(1).from(40002));
    let rst = c.expect_seg(RST, 1, 0);
    assert_eq!(rst.dst_port, 40002);
}

// =============================================================================================================
// Socket options and errno.

/// tcp(7) TCP_MAXSEG (536 before a connection, the send MSS after), socket(7) SO_ACCEPTCONN and SO_TYPE, and
/// SO_ERROR, which reading clears.
#[test]
fn getsockopt_maxseg_acceptconn_and_error() {
    let mut c = Conversation::new();
    let fresh = c.socket();
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::TcpMaxSeg), Ok(536));
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::AcceptConn), Ok(0));
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::Type), Ok(1));

    let (listener, fd) = c.open_passive(linux_syn());
    assert_eq!(c.stack.getsockopt(listener, SockOpt::AcceptConn), Ok(1));
    assert_eq!(c.stack.getsockopt(fd, SockOpt::AcceptConn), Ok(0));
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpMaxSeg), Ok(1448), "1460 less the timestamp option");

    c.send(seg(RST).seq(1));
    assert_eq!(c.so_error(fd), Errno::ECONNRESET.code());
    assert_eq!(c.so_error(fd), 0);
}

/// Linux's errno for calls out of turn: `send()` on a socket never connected is `EPIPE`
/// (`sk_stream_wait_connect`), `recv()` `ENOTCONN`; `accept()` on a non-listener `EINVAL`; `connect()` during
/// SYN-SENT `EALREADY`, on a connected socket or a listener `EISCONN`; `listen()` on a connecting or connected
/// socket `EINVAL`; `getpeername()` before the handshake completes `ENOTCONN`.
#[test]
fn calls_out_of_turn_get_linux_errnos() {
    let mut c = Conversation::new();
    let fresh = c.socket();
    assert_eq!(c.stack.send(fresh, b"x", ustack::MsgFlags::NONE), Err(Errno::EPIPE));
    assert_eq!(c.read(fresh), Err(Errno::ENOTCONN));
    assert_eq!(c.stack.getpeername(fresh), Err(Errno::ENOTCONN));
    assert_eq!(c.stack.accept(fresh).err(), Some(Errno::EINVAL));
    assert_eq!(c.stack.shutdown(fresh, Shutdown::Write), Err(Errno::ENOTCONN));

    let connecting = c.connect(8080);
    c.expect_seg(SYN, 0, 0);
    assert_eq!(c.stack.connect(connecting, Some(peer(8080))), Err(Errno::EALREADY));
    assert_eq!(c.stack.getpeername(connecting), Err(Errno::ENOTCONN));
    assert_eq!(c.stack.send(connecting, b"x", ustack::MsgFlags::NONE), Err(Errno::EAGAIN));
    assert_eq!(c.read(connecting), Err(Errno::EAGAIN));
    assert_eq!(c.stack.listen(connecting, 5), Err(Errno::EINVAL));

    c.send(seg(SYN | ACK).ack(1).mss(1460));
    c.expect_seg(ACK, 1, 1);
    assert_eq!(c.stack.connect(connecting, Some(peer(8080))), Ok(()));
    assert_eq!(c.stack.connect(connecting, Some(peer(8080))), Err(Errno::EISCONN));
    assert_eq!(c.stack.listen(connecting, 5), Err(Errno::EINVAL));

    let listener = c.listen(80, 5);
    assert_eq!(c.stack.connect(listener, Some(peer(8080))), Err(Errno::EISCONN));
    assert_eq!(c.stack.send(listener, b"x", ustack::MsgFlags::NONE), Err(Errno::EPIPE));
    assert_eq!(c.read(listener), Err(Errno::ENOTCONN));
}

/// `TCP_CONGESTION` (tcp(7); here an `i32`, 0 Reno and 1 CUBIC): CUBIC by default (net.ipv4.tcp_congestion_control
/// on Linux), anything else EINVAL, inherited by accepted connections from the listener, switchable on a live
/// connection, and not a UDP option (ENOPROTOOPT).
#[test]
fn tcp_congestion_round_trips_and_is_inherited() {
    let (reno, cubic) = (CongestionAlgorithm::Reno as i32, CongestionAlgorithm::Cubic as i32);
    let mut c = Conversation::new();
    let fresh = c.socket();
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::TcpCongestion), Ok(cubic));
    assert_eq!(c.stack.setsockopt(fresh, SockOpt::TcpCongestion, reno), Ok(()));
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::TcpCongestion), Ok(reno));
    for bad in [2, -1, i32::MAX] {
        assert_eq!(c.stack.setsockopt(fresh, SockOpt::TcpCongestion, bad), Err(Errno::EINVAL));
    }
    assert_eq!(c.stack.getsockopt(fresh, SockOpt::TcpCongestion), Ok(reno), "a bad value changes nothing");

    let listener = c.listen_with(80, 128, &[(SockOpt::TcpCongestion, reno)]);
    let (_, fd) = c.open_passive_on(listener, linux_syn());
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpCongestion), Ok(reno), "inherited from the listener");
    assert_eq!(c.stack.setsockopt(fd, SockOpt::TcpCongestion, cubic), Ok(()));
    assert_eq!(c.stack.getsockopt(fd, SockOpt::TcpCongestion), Ok(cubic), "switched on a live connection");
    assert_eq!(c.stack.getsockopt(listener, SockOpt::TcpCongestion), Ok(reno));

    // Set on the listener after listen(): the next connection it completes takes it.
    assert_eq!(c.stack.setsockopt(listener, SockOpt::TcpCongestion, cubic), Ok(()));
    c.peer_port += 1; // a second connection from the peer
    let (_, second) = c.open_passive_on(listener, linux_syn());
    assert_eq!(c.stack.getsockopt(second, SockOpt::TcpCongestion), Ok(cubic));

    let udp = c.stack.socket(Domain::Inet, SockType::Dgram).unwrap();
    assert_eq!(c.stack.setsockopt(udp, SockOpt::TcpCongestion, cubic), Err(Errno::ENOPROTOOPT));
    assert_eq!(c.stack.getsockopt(udp, SockOpt::TcpCongestion), Err(Errno::ENOPROTOOPT));
}
