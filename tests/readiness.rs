//! Readiness as Linux's poll(2) reports it, rule by rule, and the epoll-style registry (level- and
//! edge-triggered, one-shot, O(ready) waits), on two stacks over the simulated link.

use std::net::SocketAddr;
use std::time::Duration as StdDuration;
use ustack::sim::{Side, SimNet};
use ustack::socket::epoll::{EpollEvent, EpollOp, PollFd, EPOLLET, EPOLLONESHOT, POLLNVAL};
use ustack::wire::ethernet::MacAddr;
use ustack::{Domain, Errno, Fd, Instant, MsgFlags, Readiness, Shutdown, SockOpt, SockType, StackConfig};
use ustack_netdev::pipe::PipeConfig;

const IN: Readiness = Readiness::IN;
const OUT: Readiness = Readiness::OUT;
const ERR: Readiness = Readiness::ERR;
const HUP: Readiness = Readiness::HUP;
const RDHUP: Readiness = Readiness::RDHUP;

fn sim() -> SimNet {
    let a = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), "198.18.0.1/24".parse().unwrap());
    let b = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 2]), "198.18.0.2/24".parse().unwrap());
    SimNet::new(a, b, PipeConfig::default())
}

fn server() -> SocketAddr {
    "198.18.0.2:80".parse().unwrap()
}

/// Runs the simulation for a while of virtual time.
fn settle(sim: &mut SimNet) {
    let until = sim.now() + StdDuration::from_millis(300);
    sim.run_until(until, |_| false);
}

fn listener(sim: &mut SimNet) -> Fd {
    let b = sim.stack(Side::B);
    let l = b.socket(Domain::Inet, SockType::Stream).unwrap();
    b.bind(l, server()).unwrap();
    b.listen(l, 16).unwrap();
    l
}

fn connect(sim: &mut SimNet) -> Fd {
    let a = sim.stack(Side::A);
    let c = a.socket(Domain::Inet, SockType::Stream).unwrap();
    assert_eq!(a.connect(c, Some(server())), Err(Errno::EINPROGRESS));
    c
}

/// An established pair: (client on A, accepted on B).
fn pair(sim: &mut SimNet) -> (Fd, Fd) {
    let l = listener(sim);
    let c = connect(sim);
    settle(sim);
    let (s, _) = sim.stack(Side::B).accept(l).unwrap();
    (c, s)
}

fn r(sim: &mut SimNet, side: Side, fd: Fd) -> Readiness {
    sim.stack(side).readiness(fd).unwrap()
}

#[test]
fn a_fresh_tcp_socket_is_writable_and_hung_up() {
    let mut sim = sim();
    let a = sim.stack(Side::A);
    let fd = a.socket(Domain::Inet, SockType::Stream).unwrap();
    assert_eq!(a.readiness(fd).unwrap(), OUT | HUP, "tcp_poll on a CLOSE socket");
}

#[test]
fn pollout_only_after_a_nonblocking_connect_completes() {
    let mut sim = sim();
    let _l = listener(&mut sim);
    let c = connect(&mut sim);
    assert_eq!(r(&mut sim, Side::A, c), Readiness::default(), "SYN-SENT: nothing");
    settle(&mut sim);
    assert_eq!(r(&mut sim, Side::A, c), OUT, "established: writable");
    assert_eq!(sim.stack(Side::A).connect(c, Some(server())), Ok(()), "the second connect reports success");
    assert_eq!(sim.stack(Side::A).connect(c, Some(server())), Err(Errno::EISCONN));
}

#[test]
fn pollin_on_a_listener_with_a_queued_connection() {
    let mut sim = sim();
    let l = listener(&mut sim);
    assert_eq!(r(&mut sim, Side::B, l), Readiness::default());
    let _c = connect(&mut sim);
    settle(&mut sim);
    assert_eq!(r(&mut sim, Side::B, l), IN);
    sim.stack(Side::B).accept(l).unwrap();
    assert_eq!(r(&mut sim, Side::B, l), Readiness::default(), "queue drained");
}

#[test]
fn pollin_with_data_and_rdhup_after_the_peers_fin() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    assert_eq!(r(&mut sim, Side::B, s), OUT);
    sim.stack(Side::A).send(c, b"hello", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    assert_eq!(r(&mut sim, Side::B, s), IN | OUT);
    let mut buf = [0u8; 16];
    assert_eq!(sim.stack(Side::B).recv(s, &mut buf, MsgFlags::DONTWAIT), Ok(5));
    assert_eq!(r(&mut sim, Side::B, s), OUT);
    sim.stack(Side::A).shutdown(c, Shutdown::Write).unwrap();
    settle(&mut sim);
    assert_eq!(r(&mut sim, Side::B, s), IN | OUT | RDHUP, "EOF is readable");
    assert_eq!(sim.stack(Side::B).recv(s, &mut buf, MsgFlags::DONTWAIT), Ok(0));
    sim.stack(Side::B).shutdown(s, Shutdown::Write).unwrap();
    assert!(r(&mut sim, Side::B, s).contains(HUP), "both directions shut: HUP");
}

#[test]
fn pollhup_and_pollerr_after_a_reset() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    // SO_LINGER {on, 0}: close aborts with RST.
    sim.stack(Side::A).set_linger(c, Some(StdDuration::ZERO)).unwrap();
    sim.stack(Side::A).close(c).unwrap();
    settle(&mut sim);
    let got = r(&mut sim, Side::B, s);
    assert!(got.contains(HUP | ERR | IN | RDHUP), "after RST: {got:?}");
    assert_eq!(sim.stack(Side::B).getsockopt(s, SockOpt::Error), Ok(Errno::ECONNRESET.code()));
    let got = r(&mut sim, Side::B, s);
    assert!(got.contains(HUP) && !got.contains(ERR), "SO_ERROR read clears ERR: {got:?}");
}

#[test]
fn pollerr_after_a_refused_connect() {
    let mut sim = sim();
    let c = connect(&mut sim); // nothing listens on B
    settle(&mut sim);
    let got = r(&mut sim, Side::A, c);
    assert!(got.contains(ERR | HUP | OUT), "refused: {got:?}");
    assert_eq!(sim.stack(Side::A).connect(c, Some(server())), Err(Errno::ECONNREFUSED));
}

#[test]
fn udp_readiness() {
    let mut sim = sim();
    let b = sim.stack(Side::B);
    let u = b.socket(Domain::Inet, SockType::Dgram).unwrap();
    b.bind(u, "0.0.0.0:7".parse().unwrap()).unwrap();
    assert_eq!(b.readiness(u).unwrap(), OUT);
    let a = sim.stack(Side::A);
    let v = a.socket(Domain::Inet, SockType::Dgram).unwrap();
    a.sendto(v, b"x", MsgFlags::NONE, Some("198.18.0.2:7".parse().unwrap())).unwrap();
    settle(&mut sim);
    assert_eq!(r(&mut sim, Side::B, u), IN | OUT);
}

#[test]
fn poll_reports_per_entry_and_pollnval_for_closed_descriptors() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    sim.stack(Side::A).send(c, b"x", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    let b = sim.stack(Side::B);
    let mut fds = [
        PollFd { fd: s, events: IN, revents: Readiness::default() },
        PollFd { fd: Fd(999), events: IN, revents: Readiness::default() },
    ];
    assert_eq!(b.poll_fds(&mut fds), 2);
    assert_eq!(fds[0].revents, IN, "only what was asked for (OUT is set but not requested)");
    assert_eq!(fds[1].revents, POLLNVAL);
}

fn ev() -> [EpollEvent; 8] {
    [EpollEvent { events: 0, data: 0 }; 8]
}

#[test]
fn epoll_level_triggered_reports_until_drained() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    let b = sim.stack(Side::B);
    let ep = b.epoll_create().unwrap();
    b.epoll_ctl(ep, EpollOp::Add, s, EpollEvent { events: IN.0 as u32, data: 42 }).unwrap();
    let mut out = ev();
    assert_eq!(b.epoll_wait(ep, &mut out), Ok(0));
    sim.stack(Side::A).send(c, b"data", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    let b = sim.stack(Side::B);
    assert_eq!(b.epoll_wait(ep, &mut out), Ok(1));
    assert_eq!((out[0].events, out[0].data), (IN.0 as u32, 42));
    assert_eq!(b.epoll_wait(ep, &mut out), Ok(1), "level-triggered: still readable, reported again");
    let mut buf = [0u8; 8];
    b.recv(s, &mut buf, MsgFlags::DONTWAIT).unwrap();
    assert_eq!(b.epoll_wait(ep, &mut out), Ok(0));
}

#[test]
fn epoll_edge_triggered_fires_once_per_change() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    let ep = sim.stack(Side::B).epoll_create().unwrap();
    let interest = EpollEvent { events: IN.0 as u32 | EPOLLET, data: 1 };
    sim.stack(Side::B).epoll_ctl(ep, EpollOp::Add, s, interest).unwrap();
    sim.stack(Side::A).send(c, b"one", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    let mut out = ev();
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(1));
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(0), "no change since the last report");
    let mut buf = [0u8; 8];
    sim.stack(Side::B).recv(s, &mut buf, MsgFlags::DONTWAIT).unwrap();
    sim.stack(Side::A).send(c, b"two", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(1), "became readable again: a new edge");
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(0));
}

#[test]
fn epoll_oneshot_and_close_removes() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    let ep = sim.stack(Side::B).epoll_create().unwrap();
    let interest = EpollEvent { events: IN.0 as u32 | EPOLLONESHOT, data: 1 };
    sim.stack(Side::B).epoll_ctl(ep, EpollOp::Add, s, interest).unwrap();
    sim.stack(Side::A).send(c, b"x", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    let mut out = ev();
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(1));
    sim.stack(Side::A).send(c, b"y", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(0), "disarmed");
    sim.stack(Side::B).epoll_ctl(ep, EpollOp::Modify, s, interest).unwrap();
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(1), "re-armed, still readable");
    sim.stack(Side::B).close(s).unwrap();
    assert_eq!(sim.stack(Side::B).epoll_ctl(ep, EpollOp::Delete, s, interest), Err(Errno::EBADF));
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(0));
    assert_eq!(sim.stack(Side::B).epoll_ctl(ep, EpollOp::Add, ep, interest), Err(Errno::EINVAL));
}

#[test]
fn epoll_wait_reports_only_the_busy_socket_among_thousands() {
    let mut sim = sim();
    let (c, s) = pair(&mut sim);
    let b = sim.stack(Side::B);
    let ep = b.epoll_create().unwrap();
    let mut idle = Vec::new();
    for i in 0..1000 {
        let u = b.socket(Domain::Inet, SockType::Dgram).unwrap();
        b.bind(u, SocketAddr::new("0.0.0.0".parse().unwrap(), 20000 + i)).unwrap();
        b.epoll_ctl(ep, EpollOp::Add, u, EpollEvent { events: IN.0 as u32, data: u64::from(i) }).unwrap();
        idle.push(u);
    }
    b.epoll_ctl(ep, EpollOp::Add, s, EpollEvent { events: IN.0 as u32, data: 9999 }).unwrap();
    sim.stack(Side::A).send(c, b"busy", MsgFlags::NONE).unwrap();
    settle(&mut sim);
    let mut out = ev();
    assert_eq!(sim.stack(Side::B).epoll_wait(ep, &mut out), Ok(1));
    assert_eq!(out[0].data, 9999);
    let _ = Instant::ZERO;
}
