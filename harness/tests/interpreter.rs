//! The interpreter on small scripts: what passes, what fails (and how it says so), what is skipped.

use std::time::{Duration, Instant};
use ustack_harness::packetdrill::{run_str, Config, Outcome};

const LISTEN: &str = "\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0    > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1   < . 1:1(0) ack 1 win 257
+0    accept(3, ..., ...) = 4
";

fn run(body: &str) -> ustack_harness::packetdrill::Report {
    run_str("inline.pkt", &format!("{LISTEN}{body}"), &Config::default())
}

fn failure(body: &str) -> (usize, String, String) {
    let r = run(body);
    match &r.outcome {
        Outcome::Failed(f) => (f.line, f.reason.clone(), f.actual.clone().unwrap_or_default()),
        other => panic!("expected a failure, got {other:?}\n{}", r.trace_text()),
    }
}

#[test]
fn a_handshake_passes() {
    let r = run("");
    assert!(r.passed(), "{r}");
    assert!(r.trace.iter().any(|l| l.contains("S. 0:0(0) ack 1 win 64240")), "{}", r.trace_text());
}

#[test]
fn a_wrong_field_fails_with_line_expectation_and_actual() {
    let (line, reason, actual) = failure("+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 2\n");
    assert_eq!(line, 10);
    assert!(reason.contains("tcp_ack_seq: expected: 2"), "{reason}");
    assert!(actual.contains("P. 1:11(10) ack 1"), "{actual}");
}

#[test]
fn a_wrong_result_or_errno_fails() {
    let (line, reason, _) = failure("+0 read(4, ..., 10) = 10\n");
    assert_eq!(line, 9);
    assert!(
        reason.contains("expected result 10") && reason.contains("EAGAIN") || reason.contains("blocks"),
        "{reason}"
    );
    let (_, reason, _) = failure("+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 read(4, ..., 10) = -1 ENOTCONN\n");
    assert!(reason.contains("expected errno ENOTCONN but got EAGAIN"), "{reason}");
    let r = run("+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n+0 read(4, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)\n");
    assert!(r.passed(), "{r}");
}

#[test]
fn a_missing_packet_fails_at_its_deadline() {
    let (line, reason, _) = failure("+1 > . 1:1(0) ack 1\n");
    assert_eq!(line, 9);
    assert!(reason.contains("sent none"), "{reason}");
}

const CONNECT: &str = "\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0    connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0    > S 0:0(0) <...>
+.1   < S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 7>
+0    > . 1:1(0) ack 1
+0    write(3, ..., 10) = 10
+0    > P. 1:11(10) ack 1
";

#[test]
fn an_early_or_late_packet_is_a_timing_error() {
    // The RTO after a 100 ms RTT sample is 300 ms: the retransmission is due at 0.4 s.
    let check = |tail: &str| run_str("rto.pkt", &format!("{CONNECT}{tail}"), &Config::default());
    for ok in [
        "+.3 > P. 1:11(10) ack 1\n",
        "0.4 > P. 1:11(10) ack 1\n",
        "+.25~+.35 > P. 1:11(10) ack 1\n",
        "* > P. 1:11(10) ack 1\n",
    ] {
        let r = check(ok);
        assert!(r.passed(), "{ok}: {r}");
    }
    for (bad, what) in [
        ("+.2 > P. 1:11(10) ack 1\n", "sent none"),
        ("+.4 > P. 1:11(10) ack 1\n", "timing error"),
        ("+.1~+.2 > P. 1:11(10) ack 1\n", "sent none"),
    ] {
        let r = check(bad);
        assert!(matches!(&r.outcome, Outcome::Failed(f) if f.reason.contains(what)), "{bad}: {r}");
    }
    // A relative time counts from when the previous outbound packet was seen.
    let r = check("0.4 > P. 1:11(10) ack 1\n+.6 > P. 1:11(10) ack 1\n");
    assert!(r.passed(), "{r}");
}

#[test]
fn options_are_checked_in_order_unless_elided() {
    let bad = LISTEN.replace("<mss 1460,nop,nop,sackOK,nop,wscale 7>", "<mss 1460,sackOK,nop,nop,nop,wscale 7>");
    let r = run_str("opts.pkt", &bad, &Config::default());
    assert!(matches!(&r.outcome, Outcome::Failed(f) if f.reason.contains("bad outbound TCP options")), "{r}");
    let any = LISTEN.replace("<mss 1460,nop,nop,sackOK,nop,wscale 7>", "<...>");
    assert!(run_str("any.pkt", &any, &Config::default()).passed());
    let none = LISTEN.replace(" <mss 1460,nop,nop,sackOK,nop,wscale 7>", "");
    assert!(run_str("none.pkt", &none, &Config::default()).failed(), "no <...> expects no options");
}

#[test]
fn one_expected_segment_may_be_several() {
    let r = run("+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n");
    assert!(r.passed(), "{r}");
    let strict = format!("--strict_segments\n{LISTEN}+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n");
    let r = run_str("strict.pkt", &strict, &Config::default());
    assert!(r.failed(), "{r}");
}

#[test]
fn blocking_calls_wait_and_are_timed() {
    let r = run("+0...0.1 read(4, ..., 1000) = 100\n0.2 < P. 1:101(100) ack 1 win 257\n+0 > . 1:1(0) ack 101\n");
    assert!(r.passed(), "{r}");
    let (_, reason, _) = failure("+0...0.5 read(4, ..., 1000) = 100\n0.2 < P. 1:101(100) ack 1 win 257\n");
    assert!(reason.contains("timing error") && reason.contains("system call return"), "{reason}");
    let (_, reason, _) = failure("+0...0.5 read(4, ..., 1000) = 100\n");
    assert!(reason.contains("blocking system call is in progress"), "{reason}");
}

/// TCP_CONGESTION takes and reads back the algorithm's name, as on Linux (ENOENT for one it does not know); the
/// accepted connection inherits the listener's (CUBIC by default).
#[test]
fn tcp_congestion_takes_algorithm_names() {
    let r = run("+0 getsockopt(4, SOL_TCP, TCP_CONGESTION, \"cubic\", [16]) = 0
+0 setsockopt(4, SOL_TCP, TCP_CONGESTION, \"reno\", 4) = 0
+0 getsockopt(4, SOL_TCP, TCP_CONGESTION, \"reno\", [16]) = 0
+0 setsockopt(4, SOL_TCP, TCP_CONGESTION, \"vegas\", 5) = -1 ENOENT (No such file or directory)
");
    assert!(r.passed(), "{r}");
    let (line, reason, _) = failure("+0 getsockopt(4, SOL_TCP, TCP_CONGESTION, \"reno\", [16]) = 0\n");
    assert_eq!(line, 9);
    assert!(reason.contains("expected \"reno\" but got \"cubic\""), "{reason}");
}

#[test]
fn unsupported_scripts_are_skipped_not_passed() {
    for text in [
        "`../common/defaults.sh`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 %{ assert 1 }%\n",
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, SOL_TCP, TCP_NOTSENT_LOWAT, [1], 4) = 0\n",
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 getsockopt(3, SOL_TCP, TCP_INFO, {tcpi_state=1}, [4]) = 0\n",
        "0 socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP) = 3\n",
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 epoll_create(1) = 4\n",
        "--ip_version=ipv6\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < [ect0] S 0:0(0) win 100\n",
    ] {
        let r = run_str("skip.pkt", text, &Config::default());
        assert!(r.skipped(), "{text}: {r}");
        assert!(!r.passed() && !r.failed());
        assert!(r.to_string().starts_with("SKIPPED"), "{r}");
    }
}

#[test]
fn a_long_script_runs_in_virtual_time() {
    let body = "+0 close(4) = 0\n+0 > F. 1:1(0) ack 1\n+.1 < F. 1:1(0) ack 2 win 257\n+0 > . 2:2(0) ack 2\n\
                +30 < F. 1:1(0) ack 2 win 257\n+0 > . 2:2(0) ack 2\n";
    let start = Instant::now();
    let r = run(body);
    assert!(r.passed(), "{r}");
    assert!(r.virtual_time >= Duration::from_secs(30));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}
