//! Unit tests of the packetdrill parser.

use ustack_harness::packetdrill::ast::*;
use ustack_harness::packetdrill::parse;

fn one(text: &str) -> Event {
    let s = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.unsupported.is_empty(), "{:?}", s.unsupported);
    assert_eq!(s.events.len(), 1, "{:?}", s.events);
    s.events.into_iter().next().unwrap()
}

fn tcp(ev: &Event) -> (&PacketSpec, &TcpSpec) {
    match &ev.action {
        Action::Packet(p) => match &p.body {
            PacketBody::Tcp(t) => (p, t),
            other => panic!("not TCP: {other:?}"),
        },
        other => panic!("not a packet: {other:?}"),
    }
}

fn call(ev: &Event) -> &SyscallSpec {
    match &ev.action {
        Action::Syscall(s) => s,
        other => panic!("not a call: {other:?}"),
    }
}

#[test]
fn times() {
    assert_eq!(one("0 close(3) = 0").time, EventTime::Absolute(0));
    assert_eq!(one("0.100 close(3) = 0").time, EventTime::Absolute(100_000));
    assert_eq!(one("+0.1 close(3) = 0").time, EventTime::Relative(100_000));
    assert_eq!(one("+.001 close(3) = 0").time, EventTime::Relative(1_000));
    assert_eq!(one("+2 close(3) = 0").time, EventTime::Relative(2_000_000));
    assert_eq!(one("* > . 1:1(0) ack 1").time, EventTime::Any);
    assert_eq!(one("0.1~0.25 > . 1:1(0) ack 1").time, EventTime::AbsoluteRange(100_000, 250_000));
    assert_eq!(one("+0.1~+0.2 > . 1:1(0) ack 1").time, EventTime::RelativeRange(100_000, 200_000));
    let blocking = one("+.1...0.200 connect(3, ..., ...) = 0");
    assert_eq!(blocking.time, EventTime::Relative(100_000));
    assert_eq!(call(&blocking).end, Some(200_000));
    assert_eq!(call(&one("0...127 connect(3, ..., ...) = 0")).end, Some(127_000_000));
}

#[test]
fn time_rules() {
    assert!(parse("+0 * close(3) = 0").is_err());
    assert!(parse("* close(3) = 0").is_err(), "* only for outbound packets");
    assert!(parse("0.1~0.2 < . 1:1(0) ack 1 win 100").is_err(), "ranges only for outbound packets");
    assert!(parse("0.2~0.1 > . 1:1(0) ack 1").is_err(), "backwards range");
}

#[test]
fn inbound_syn() {
    let ev = one("+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>");
    let (p, t) = tcp(&ev);
    assert_eq!(p.direction, Direction::Inbound);
    assert_eq!(p.ports, None);
    assert_eq!(t.flags, 0x02);
    assert_eq!((t.seq, t.len, t.ack, t.window), (0, 0, None, Some(32792)));
    assert_eq!(
        t.options,
        Some(vec![TcpOpt::Mss(1000), TcpOpt::SackOk, TcpOpt::Nop, TcpOpt::Nop, TcpOpt::Nop, TcpOpt::WScale(7)])
    );
}

#[test]
fn outbound_segments() {
    let ev = one("+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 6>");
    let (p, t) = tcp(&ev);
    assert_eq!(p.direction, Direction::Outbound);
    assert_eq!(t.flags, 0x12);
    assert_eq!(t.ack, Some(1));
    assert_eq!(t.window, None, "an outbound window left out is not checked");
    let ev = one("+0 > P. 1:1001(1000) ack 1 <...>");
    let (_, t) = tcp(&ev);
    assert_eq!((t.flags, t.seq, t.len), (0x18, 1, 1000));
    assert_eq!(t.options, None, "<...> does not check options");
    let ev = one("+0 > . 1:1(0) ack 1");
    assert_eq!(tcp(&ev).1.options, Some(vec![]), "no <> means no options");
    assert_eq!(tcp(&one("+0 > F. 1:1(0) ack 1")).1.flags, 0x11);
    assert_eq!(tcp(&one("+0 > FP. 1:11(10) ack 1")).1.flags, 0x19);
    assert_eq!(tcp(&one("+0 > R 1:1(0)")).1.flags, 0x04);
    assert_eq!(tcp(&one("+0 > R. 1:1(0) ack 1")).1.flags, 0x14);
    assert_eq!(tcp(&one("+0 > - 1:1(0)")).1.flags, 0);
}

#[test]
fn options() {
    let ev = one("+0 < . 1:1(0) ack 1 win 257 <sack 1461:2921 4381:5841,nop,nop>");
    assert_eq!(
        tcp(&ev).1.options,
        Some(vec![TcpOpt::Sack(vec![(1461, 2921), (4381, 5841)]), TcpOpt::Nop, TcpOpt::Nop])
    );
    let ev = one("+0 > . 1:1(0) ack 1 <nop,nop,TS val 100 ecr 700>");
    assert_eq!(tcp(&ev).1.options, Some(vec![TcpOpt::Nop, TcpOpt::Nop, TcpOpt::Timestamp { val: 100, ecr: 700 }]));
    let ev = one("+0 > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>");
    let mut bytes = Vec::new();
    for o in tcp(&ev).1.options.as_ref().unwrap() {
        o.encode(&mut bytes);
    }
    assert_eq!(bytes, [2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0, 1, 3, 3, 7]);
    assert!(parse("+0 < S 0:0(0) win 100 <mss 1000>").is_ok());
    assert!(parse("+0 < S 0:0(0) win 100 <mss 1000,nop>").is_err(), "options must fill whole words");
    assert!(parse("+0 < S 0:0(0) win 100 <bogus 1>").is_err());
    assert!(parse("+0 < S 0:0(0) win 100 <...>").is_err(), "<...> is for outbound packets only");
    assert!(parse("+0 < S 0:0(0)").is_err(), "an inbound packet needs its window");
    assert!(parse("+0 < S 0:10(0) win 100").is_err(), "inconsistent sequence numbers");
}

#[test]
fn ports_udp_icmp() {
    let ev = one("+0 < 47010>8080 S 0:0(0) win 100");
    assert_eq!(tcp(&ev).0.ports, Some((47010, 8080)));
    let ev = one("+0 < udp (100)");
    let Action::Packet(p) = &ev.action else { panic!() };
    assert_eq!(p.body, PacketBody::Udp { len: 100 });
    let ev = one("+0 < udp 47020>9 (10)");
    let Action::Packet(p) = &ev.action else { panic!() };
    assert_eq!((p.ports, &p.body), (Some((47020, 9)), &PacketBody::Udp { len: 10 }));
    let ev = one("+0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]");
    let Action::Packet(p) = &ev.action else { panic!() };
    assert_eq!(
        p.body,
        PacketBody::Icmp(IcmpSpec {
            ty: "unreachable".into(),
            code: Some("frag_needed".into()),
            mtu: Some(1200),
            echoed: Echoed::Tcp { seq: 1, len: 1460 },
        })
    );
}

#[test]
fn syscalls() {
    let c = call(&one("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3")).clone();
    assert_eq!(c.name, "socket");
    assert_eq!(c.args, vec![Expr::Ellipsis, Expr::Word("SOCK_STREAM".into()), Expr::Word("IPPROTO_TCP".into())]);
    assert_eq!(c.result, Expr::Int(3));
    let c = call(&one("+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)")).clone();
    assert_eq!(c.result, Expr::Int(-1));
    assert_eq!(c.errno.as_deref(), Some("EINPROGRESS"));
    assert_eq!(c.note.as_deref(), Some("Operation now in progress"));
    let c = call(&one("+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0")).clone();
    assert_eq!(c.args[3], Expr::List(vec![Expr::Int(1)]));
    let c = call(&one("+0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0")).clone();
    assert_eq!(
        c.args[3],
        Expr::Braces(vec![
            Expr::Assign(Box::new(Expr::Word("onoff".into())), Box::new(Expr::Int(1))),
            Expr::Assign(Box::new(Expr::Word("linger".into())), Box::new(Expr::Int(0))),
        ])
    );
    let c = call(&one("+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0")).clone();
    assert_eq!(c.args[2], Expr::Or(Box::new(Expr::Word("O_RDWR".into())), Box::new(Expr::Word("O_NONBLOCK".into()))));
    let c = call(&one("+0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1")).clone();
    assert!(matches!(&c.args[0], Expr::List(items) if matches!(&items[0], Expr::Braces(f) if f.len() == 3)));
    let c = call(&one("+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0")).clone();
    assert_eq!(c.args[3], Expr::List(vec![Expr::Word("ECONNREFUSED".into())]));
    let c = call(&one("+0 fcntl(3, F_GETFL) = 0x802 (flags O_RDWR|O_NONBLOCK)")).clone();
    assert_eq!(c.result, Expr::Int(0x802));
    let c = call(&one(
        "+0 bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"192.168.0.1\")}, 16) = 0",
    ))
    .clone();
    assert!(matches!(&c.args[1], Expr::Braces(f) if f.len() == 3));
    let c = call(&one("+0 writev(4, [{..., 1000}, {..., 500}], 2) = 1500")).clone();
    assert_eq!(c.result, Expr::Int(1500));
}

#[test]
fn script_structure() {
    let text = "// a comment\n--tolerance_usecs=10000\n--tcp_ts_tick_usecs=1000\n\n/* block\ncomment */\n\
                0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 close(3) = 0 // trailing\n";
    let s = parse(text).unwrap();
    assert_eq!(s.options.len(), 2);
    assert_eq!(s.options[0].name, "tolerance_usecs");
    assert_eq!(s.options[0].value.as_deref(), Some("10000"));
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.events[0].line, 7);
    assert_eq!(s.events[1].line, 8);
    assert_eq!(s.events[1].text, "+0 close(3) = 0 // trailing");
}

#[test]
fn unsupported_constructs_are_recorded() {
    let text = "`sysctl -q net.ipv4.tcp_sack=0`\n\
                0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n\
                +0 `echo hi`\n\
                +0 < [ect0] S 0:0(0) win 100\n\
                +0 > S. 0:0(0) ack 1 <mss 1460,FO abcd,nop,nop>\n\
                +0 %{ print('x') }%\n\
                +0 close(3) = 0\n";
    let s = parse(text).unwrap();
    let lines: Vec<usize> = s.unsupported.iter().map(|u| u.line).collect();
    assert_eq!(lines, vec![1, 4, 5], "{:?}", s.unsupported);
    // Commands and code blocks are events (reported by check_support); the others are skipped over.
    assert_eq!(s.events.len(), 4);
    assert!(matches!(s.events[1].action, Action::Command(_)));
    assert!(matches!(s.events[2].action, Action::Code(_)));
}

#[test]
fn syntax_errors_name_their_line() {
    let e = parse("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0) wim 100\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = parse("0 close(3) = 0\n+0 > Q 1:1(0)\n").unwrap_err();
    assert!(e.message.contains("Invalid TCP flag"), "{e}");
}
