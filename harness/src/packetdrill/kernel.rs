//! The Linux kernel as the system under test, the way packetdrill runs: the kernel's TCP/IP stack in a private
//! network namespace, reached through a TAP device whose other end is the interpreter. The script's system
//! calls are made on real kernel sockets created inside the namespace; its inbound packets are written to the
//! TAP and the kernel's outbound packets are read from it, on the wall clock.
//!
//! # The namespace
//!
//! A fresh namespace per script (removed when the run ends, whichever way it ends), with `tap0` at
//! `--local_ip/--netmask_ip` (the kernel), a default route through `--gateway_ip` whose neighbour entry is
//! permanent with the interpreter's MAC (ARP requests are answered too), and these per-namespace settings:
//!
//! | sysctl | value | why |
//! | --- | --- | --- |
//! | `net.ipv4.tcp_congestion_control` | `reno` | a namespace inherits the host's (BBR here, which paces); outside the initial namespace only the host's `tcp_allowed_congestion_control` may be chosen, which has `reno` but not `cubic`. ustack defaults to CUBIC, as stock Linux does: a script whose packets depend on the algorithm (losses) selects `TCP_CONGESTION` `"reno"` so both sides run the same one |
//! | `net.ipv4.tcp_syn_linear_timeouts` | `0` | recent kernels (6.18 here) retry the first SYNs at a fixed 1 s by default; the scripts describe the classic exponential backoff |
//! | `net.ipv4.tcp_rmem` | `4096 131072 6291456` | the 6 MiB maximum gives window scale 7 (as packetdrill's defaults); the host's 32 MiB would give 10 |
//! | `net.ipv4.tcp_wmem` | `4096 16384 4194304` | Linux's defaults |
//! | `net.ipv4.tcp_timestamps`, `tcp_sack`, `tcp_window_scaling` | `1` | the defaults, set as packetdrill's defaults.sh does |
//! | `net.ipv4.tcp_ecn` | `0` | no ECN negotiation (packetdrill's defaults) |
//! | `net.ipv4.tcp_no_metrics_save` | `1` | no RTT carried from one connection of a script to the next (packetdrill's defaults) |
//! | `net.ipv6.conf.{all,default,tap0}.disable_ipv6` | `1` | no IPv6 chatter on the TAP |
//!
//! and offloads off on `tap0` (`ethtool -K tap0 tx off tso off gso off gro off`, when ethtool is there; a TAP
//! without a virtio header has no checksum or segmentation offload anyway, so segments arrive MSS-sized with
//! full checksums either way).
//!
//! # System calls
//!
//! Sockets are made with `socket2` inside the namespace and keep the blocking mode the script gives them
//! (`SOCK_NONBLOCK`, `fcntl(F_SETFL, O_NONBLOCK)`, set for real). A call that may block on a blocking socket
//! (`accept`, `connect`, `read`/`recv`, `write`/`send`) runs as a real blocking call on a thread of its own,
//! and the interpreter goes on pumping the TAP until it returns (or, with an end time, goes on with the
//! script). A `poll` with a timeout is repeated without a timeout until something is reported or the timeout
//! passes (at most [`TICK`] late). Sends always carry `MSG_NOSIGNAL`. poll(2) and fcntl(2) go through rustix.
//!
//! Not available here: `TCP_LINGER2` (neither socket2 nor nix wraps it, and this crate has no `unsafe`);
//! scripts that use it are reported SKIPPED on this backend.

use super::config::{Config, GATEWAY_MAC};
use super::sut::{OptVal, Sut, START};
use super::symbols;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};
use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use ustack::wire::ethernet::MacAddr;
use ustack::{CongestionAlgorithm, Errno, Fd, Instant};
use ustack_netdev::namespace::Namespace;
use ustack_netdev::tap::Tap;
use ustack_netdev::wait::{wait_readable, EventFd};
use ustack_netdev::{Device, FrameBatch};

/// The longest the interpreter sleeps without looking at the kernel's sockets (for calls it repeats).
pub const TICK: Duration = Duration::from_millis(5);

/// The TAP device's name inside the namespace.
const TAP: &str = "tap0";

const MSG_NOSIGNAL: i32 = 0x4000;

/// The per-namespace sysctls (see the module documentation).
const SYSCTLS: &[&str] = &[
    "net.ipv4.tcp_congestion_control=reno",
    "net.ipv4.tcp_syn_linear_timeouts=0",
    "net.ipv4.tcp_rmem=4096 131072 6291456",
    "net.ipv4.tcp_wmem=4096 16384 4194304",
    "net.ipv4.tcp_timestamps=1",
    "net.ipv4.tcp_sack=1",
    "net.ipv4.tcp_window_scaling=1",
    "net.ipv4.tcp_ecn=0",
    "net.ipv4.tcp_no_metrics_save=1",
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
    "net.ipv6.conf.tap0.disable_ipv6=1",
];

/// A blocking call running on its own thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Accept,
    Connect,
    Recv,
    Send,
}

/// What a blocking call returned.
enum Done {
    Accepted(Socket, SocketAddrV4),
    Unit,
    Len(usize),
}

/// A call running on a thread: where its result comes, and a duplicate of its socket to wake it with.
struct Inflight {
    result: Receiver<io::Result<Done>>,
    waker: Socket,
}

/// The kernel in a namespace of its own, behind a TAP device.
pub(crate) struct KernelSut {
    started: std::time::Instant,
    tap: Tap,
    mac: MacAddr,
    rx: FrameBatch,
    tx: FrameBatch,
    bell: Arc<EventFd>,
    sockets: HashMap<i32, Socket>,
    /// Calls running on threads: their results, and a duplicate of the socket to wake them with at the end.
    inflight: HashMap<(i32, Op), Inflight>,
    threads: Vec<JoinHandle<()>>,
    /// Declared last: dropped (and the namespace removed) after the sockets and the TAP.
    ns: Namespace,
}

fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().and_then(|c| symbols::errno_from_code(i64::from(c))).unwrap_or(Errno::EIO)
}

fn other(what: String) -> io::Error {
    io::Error::other(what)
}

impl KernelSut {
    /// Makes the namespace, its TAP and settings, and starts the clock.
    pub(crate) fn new(cfg: &Config) -> io::Result<KernelSut> {
        let ns = Namespace::create("pdk")?;
        ns.add_tap(TAP, &format!("{}/{}", cfg.local_ip, cfg.prefix_len))?;
        if cfg.mtu != 1500 {
            ns.run("ip", &["link", "set", TAP, "mtu", &cfg.mtu.to_string()])?;
        }
        let mut args = vec!["-q", "-e", "-w"];
        args.extend_from_slice(SYSCTLS);
        let out = ns.exec("sysctl", &args)?;
        if !out.status.success() {
            return Err(other(format!("sysctl in the namespace failed: {}", String::from_utf8_lossy(&out.stderr))));
        }
        let _ = ns.exec("ethtool", &["-K", TAP, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]);
        let gw = cfg.gateway_ip.to_string();
        let gw_mac = GATEWAY_MAC.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ns.run("ip", &["neigh", "replace", &gw, "lladdr", &gw_mac, "dev", TAP, "nud", "permanent"])?;
        ns.run("ip", &["route", "add", "default", "via", &gw, "dev", TAP])?;
        let tap = ns.enter(|| Tap::open(TAP))??;
        // The kernel transmits on the TAP only once its link watcher has seen the carrier that opening it
        // brought (until then its frames go to a no-op queue and are lost), which can take a while on a busy
        // machine: wait for the operational state to be UP. Bounded: about 5 s.
        let mut up = false;
        for _ in 0..1000 {
            let out = ns.exec("ip", &["-o", "link", "show", TAP])?;
            if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !up {
            return Err(other(format!("{TAP} in the namespace did not come up")));
        }
        let mac = tap.hardware_addr().ok_or_else(|| other("the TAP device has no MAC address".into()))?;
        let slot = cfg.mtu.max(1500) + 64;
        Ok(KernelSut {
            started: std::time::Instant::now(),
            tap,
            mac: MacAddr(mac),
            rx: FrameBatch::new(64, slot),
            tx: FrameBatch::new(1, slot),
            bell: Arc::new(EventFd::new()?),
            sockets: HashMap::new(),
            inflight: HashMap::new(),
            threads: Vec::new(),
            ns,
        })
    }

    fn sock(&self, fd: Fd) -> Result<&Socket, Errno> {
        self.sockets.get(&fd.0).ok_or(Errno::EBADF)
    }

    fn add(&mut self, s: Socket) -> Fd {
        let fd = s.as_raw_fd();
        self.sockets.insert(fd, s);
        Fd(fd)
    }

    /// Runs `f` on a clone of the socket on a thread of its own the first time, and returns its result once
    /// it has returned; `None` while it runs.
    fn in_thread(
        &mut self,
        fd: Fd,
        op: Op,
        f: impl FnOnce(Socket) -> io::Result<Done> + Send + 'static,
    ) -> Option<io::Result<Done>> {
        let key = (fd.0, op);
        if let Some(call) = self.inflight.get(&key) {
            let r = match call.result.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => Err(io::Error::from_raw_os_error(Errno::EINTR.code())),
            };
            self.inflight.remove(&key);
            return Some(r);
        }
        let clones = self.sockets.get(&fd.0).map(|s| s.try_clone().and_then(|a| Ok((a, s.try_clone()?))));
        let (clone, waker) = match clones {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Some(Err(e)),
            None => return Some(Err(io::Error::from_raw_os_error(Errno::EBADF.code()))),
        };
        let (tx, rx) = mpsc::channel();
        let bell = Arc::clone(&self.bell);
        let spawned = std::thread::Builder::new().name(format!("pdk-{op:?}")).spawn(move || {
            let r = f(clone);
            let _ = tx.send(r);
            bell.notify();
        });
        match spawned {
            Ok(h) => {
                self.threads.push(h);
                self.inflight.insert(key, Inflight { result: rx, waker });
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn set_int(s: &Socket, level: i64, name: i64, v: i32) -> io::Result<()> {
        let on = v != 0;
        let secs = Duration::from_secs(v.max(0) as u64);
        match (level, name) {
            (1, 2) => s.set_reuse_address(on),
            (1, 6) => s.set_broadcast(on),
            (1, 7) => s.set_send_buffer_size(v.max(0) as usize),
            (1, 8) => s.set_recv_buffer_size(v.max(0) as usize),
            (1, 9) => s.set_keepalive(on),
            (0, 1) => s.set_tos_v4(v as u32),
            (0, 2) => s.set_ttl_v4(v as u32),
            (6, 1) => s.set_tcp_nodelay(on),
            (6, 2) => s.set_tcp_mss(v as u32),
            (6, 13) => match CongestionAlgorithm::try_from(v) {
                Ok(alg) => s.set_tcp_congestion(alg.name().as_bytes()),
                Err(()) => Err(io::Error::from_raw_os_error(Errno::ENOENT.code())),
            },
            (6, 4..=6) => {
                let k = match name {
                    4 => TcpKeepalive::new().with_time(secs),
                    5 => TcpKeepalive::new().with_interval(secs),
                    _ => TcpKeepalive::new().with_retries(v as u32),
                };
                // socket2 turns SO_KEEPALIVE on with these; a plain setsockopt does not.
                let was_on = s.keepalive()?;
                s.set_tcp_keepalive(&k)?;
                if !was_on {
                    s.set_keepalive(false)?;
                }
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(Errno::ENOPROTOOPT.code())),
        }
    }

    fn get_int(s: &Socket, level: i64, name: i64) -> io::Result<i32> {
        let b = i32::from;
        Ok(match (level, name) {
            (1, 2) => b(s.reuse_address()?),
            (1, 3) => i32::from(s.r#type()?),
            (1, 4) => s.take_error()?.and_then(|e| e.raw_os_error()).unwrap_or(0),
            (1, 6) => b(s.broadcast()?),
            (1, 7) => s.send_buffer_size()? as i32,
            (1, 8) => s.recv_buffer_size()? as i32,
            (1, 9) => b(s.keepalive()?),
            (1, 30) => b(s.is_listener()?),
            (0, 1) => s.tos_v4()? as i32,
            (0, 2) => s.ttl_v4()? as i32,
            (6, 1) => b(s.tcp_nodelay()?),
            (6, 2) => s.tcp_mss()? as i32,
            (6, 4) => s.tcp_keepalive_time()?.as_secs() as i32,
            (6, 5) => s.tcp_keepalive_interval()?.as_secs() as i32,
            (6, 6) => s.tcp_keepalive_retries()? as i32,
            (6, 13) => {
                let name = s.tcp_congestion()?;
                let name = String::from_utf8_lossy(&name);
                // An algorithm ustack does not have (bbr) reads as -1, which no script expects.
                CongestionAlgorithm::from_name(name.trim_end_matches('\0')).map_or(-1, |alg| alg as i32)
            }
            _ => return Err(io::Error::from_raw_os_error(Errno::ENOPROTOOPT.code())),
        })
    }
}

impl Sut for KernelSut {
    fn now(&self) -> Instant {
        START + self.started.elapsed()
    }

    fn is_virtual(&self) -> bool {
        false
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn wait(&mut self, limit: Instant) -> bool {
        let now = self.now();
        if now >= limit {
            return false;
        }
        let timeout = limit.saturating_since(now).min(TICK);
        let mut fds = vec![self.bell.as_raw_fd()];
        fds.extend(self.tap.pollable_fd());
        let _ = wait_readable(&fds, Some(timeout));
        self.bell.drain();
        true
    }

    fn poll(&mut self, out: &mut Vec<Vec<u8>>) {
        // Bounded: the kernel sends little; a few full batches at most.
        for _ in 0..64 {
            self.rx.clear();
            match self.tap.recv_batch(&mut self.rx) {
                Ok(0) | Err(_) => break,
                Ok(_) => out.extend(self.rx.iter().map(<[u8]>::to_vec)),
            }
        }
    }

    fn receive(&mut self, frame: &[u8], _out: &mut Vec<Vec<u8>>) {
        self.tx.clear();
        if self.tx.push(frame) {
            let _ = self.tap.send_batch(&mut self.tx);
        }
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn socket(&mut self, domain: i64, ty: i64) -> Result<Fd, Errno> {
        if domain != 2 {
            return Err(Errno::EAFNOSUPPORT);
        }
        let (t, p) = if ty & 0xf == 2 { (Type::DGRAM, Protocol::UDP) } else { (Type::STREAM, Protocol::TCP) };
        let s = match self.ns.enter(move || Socket::new(Domain::IPV4, t, Some(p))) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(errno(&e)),
            Err(_) => return Err(Errno::EIO),
        };
        if ty & symbols::SOCK_NONBLOCK != 0 {
            s.set_nonblocking(true).map_err(|e| errno(&e))?;
        }
        Ok(self.add(s))
    }

    fn bind(&mut self, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
        self.sock(fd)?.bind(&SockAddr::from(addr)).map_err(|e| errno(&e))
    }

    fn local_port(&self, fd: Fd) -> Option<u16> {
        self.sock(fd).ok()?.local_addr().ok()?.as_socket_ipv4().map(|a| a.port())
    }

    fn listen(&mut self, fd: Fd, backlog: i32) -> Result<(), Errno> {
        self.sock(fd)?.listen(backlog).map_err(|e| errno(&e))
    }

    fn accept(&mut self, fd: Fd, blocking: bool) -> Result<(Fd, SocketAddrV4), Errno> {
        self.sock(fd)?;
        let r = if blocking {
            match self.in_thread(fd, Op::Accept, |s| {
                let (new, peer) = s.accept()?;
                let peer = peer.as_socket_ipv4().ok_or_else(|| other("not an IPv4 peer".into()))?;
                Ok(Done::Accepted(new, peer))
            }) {
                None => return Err(Errno::EAGAIN),
                Some(r) => r,
            }
        } else {
            self.sock(fd)?.accept().and_then(|(new, peer)| {
                let peer = peer.as_socket_ipv4().ok_or_else(|| other("not an IPv4 peer".into()))?;
                Ok(Done::Accepted(new, peer))
            })
        };
        match r {
            Ok(Done::Accepted(new, peer)) => Ok((self.add(new), peer)),
            Ok(_) => Err(Errno::EIO),
            Err(e) => Err(errno(&e)),
        }
    }

    fn connect(&mut self, fd: Fd, addr: SocketAddrV4, blocking: bool) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        let udp = s.r#type().is_ok_and(|t| t == Type::DGRAM);
        if !blocking || udp {
            return s.connect(&SockAddr::from(addr)).map_err(|e| errno(&e));
        }
        let first = !self.inflight.contains_key(&(fd.0, Op::Connect));
        match self.in_thread(fd, Op::Connect, move |s| s.connect(&SockAddr::from(addr)).map(|()| Done::Unit)) {
            None if first => Err(Errno::EINPROGRESS),
            None => Err(Errno::EALREADY),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(errno(&e)),
        }
    }

    fn recv(&mut self, fd: Fd, count: usize, flags: i64, blocking: bool) -> Result<usize, Errno> {
        let flags = flags as i32;
        let read = move |s: &Socket, flags: i32| {
            let mut buf = vec![MaybeUninit::new(0u8); count];
            s.recv_with_flags(&mut buf, flags)
        };
        if !blocking {
            return read(self.sock(fd)?, flags | symbols::MSG_DONTWAIT as i32).map_err(|e| errno(&e));
        }
        self.sock(fd)?;
        match self.in_thread(fd, Op::Recv, move |s| read(&s, flags).map(Done::Len)) {
            None => Err(Errno::EAGAIN),
            Some(Ok(Done::Len(n))) => Ok(n),
            Some(Ok(_)) => Err(Errno::EIO),
            Some(Err(e)) => Err(errno(&e)),
        }
    }

    fn send(
        &mut self,
        fd: Fd,
        count: usize,
        flags: i64,
        dest: Option<SocketAddrV4>,
        blocking: bool,
    ) -> Result<usize, Errno> {
        let flags = flags as i32 | MSG_NOSIGNAL;
        let write = move |s: &Socket, flags: i32| {
            let buf = vec![0u8; count];
            match dest {
                Some(d) => s.send_to_with_flags(&buf, &SockAddr::from(d), flags),
                None => s.send_with_flags(&buf, flags),
            }
        };
        if !blocking {
            return write(self.sock(fd)?, flags | symbols::MSG_DONTWAIT as i32).map_err(|e| errno(&e));
        }
        self.sock(fd)?;
        match self.in_thread(fd, Op::Send, move |s| write(&s, flags).map(Done::Len)) {
            None => Err(Errno::EAGAIN),
            Some(Ok(Done::Len(n))) => Ok(n),
            Some(Ok(_)) => Err(Errno::EIO),
            Some(Err(e)) => Err(errno(&e)),
        }
    }

    fn close(&mut self, fd: Fd) -> Result<(), Errno> {
        // Dropping the socket closes the descriptor (a thread still blocked in a call on it holds a duplicate,
        // as a blocked system call holds the file in the kernel).
        self.sockets.remove(&fd.0).map(drop).ok_or(Errno::EBADF)
    }

    fn shutdown(&mut self, fd: Fd, how: i64) -> Result<(), Errno> {
        let how = match how {
            0 => std::net::Shutdown::Read,
            1 => std::net::Shutdown::Write,
            _ => std::net::Shutdown::Both,
        };
        self.sock(fd)?.shutdown(how).map_err(|e| errno(&e))
    }

    fn setsockopt(&mut self, fd: Fd, level: i64, name: i64, value: OptVal) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        let r = match value {
            OptVal::Linger(l) if (level, name) == symbols::SO_LINGER => s.set_linger(l),
            OptVal::Int(v) => Self::set_int(s, level, name, v),
            OptVal::Linger(_) => return Err(Errno::EINVAL),
        };
        r.map_err(|e| errno(&e))
    }

    fn getsockopt(&mut self, fd: Fd, level: i64, name: i64) -> Result<OptVal, Errno> {
        let s = self.sock(fd)?;
        if (level, name) == symbols::SO_LINGER {
            return s.linger().map(OptVal::Linger).map_err(|e| errno(&e));
        }
        Self::get_int(s, level, name).map(OptVal::Int).map_err(|e| errno(&e))
    }

    fn get_flags(&mut self, fd: Fd) -> Result<i64, Errno> {
        let s = self.sock(fd)?;
        fcntl_getfl(s).map(|f| i64::from(f.bits())).map_err(|e| errno(&e.into()))
    }

    fn set_flags(&mut self, fd: Fd, flags: i64) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        fcntl_setfl(s, OFlags::from_bits_retain(flags as u32)).map_err(|e| errno(&e.into()))
    }

    fn poll_events(&mut self, fd: Fd) -> Result<i64, Errno> {
        let s = self.sock(fd)?;
        let all =
            PollFlags::IN | PollFlags::PRI | PollFlags::OUT | PollFlags::RDNORM | PollFlags::WRNORM | PollFlags::RDHUP;
        let mut fds = [PollFd::new(s, all)];
        poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).map_err(|e| errno(&e.into()))?;
        Ok(i64::from(fds[0].revents().bits()))
    }
}

impl Drop for KernelSut {
    fn drop(&mut self) {
        // Wake any call still blocked in the kernel (shutdown wakes accept, connect, recv and send), then give the
        // threads a moment; one that still does not return is left behind, holding only its socket.
        if self.threads.iter().any(|t| !t.is_finished()) {
            for call in self.inflight.values() {
                let _ = call.waker.shutdown(std::net::Shutdown::Both);
            }
            for _ in 0..200 {
                if self.threads.iter().all(JoinHandle::is_finished) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.inflight.clear();
        self.sockets.clear();
        // The TAP closes and the namespace is removed as the fields drop.
    }
}
