//! The Linux kernel as a real peer: a private network namespace holding the kernel's end of a link, with a ustack
//! [`NetStack`] on the other end.
//!
//! Two links are offered (see [`Link`]): a TAP device (the stack reads and writes `/dev/net/tun`, the kernel
//! sees an ordinary interface), and a veth pair whose far end the stack drives through an `AF_PACKET` socket.
//! Each [`KernelPeer`] makes its own uniquely named namespace, so tests run in parallel and use the same device
//! names inside. Dropping the peer shuts the stack down (joining its driver thread, which closes the device and
//! flushes a capture) before the namespace is deleted, on every exit path, panics included.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as KernelUdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ustack::runtime::{NetStack, NetStackOptions};
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::StackConfig;
use ustack_netdev::namespace::{kernel_peer_available, Namespace};
use ustack_netdev::packet_socket::PacketSocket;
use ustack_netdev::pcap::Capture;
use ustack_netdev::tap::Tap;
use ustack_netdev::Device;

/// The link between the kernel and the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A TAP device `tap0`: kernel 198.18.0.1/24, stack 198.18.0.2/24.
    Tap,
    /// A veth pair `veth0` (kernel, 198.18.1.1/24) / `veth1` (stack through `AF_PACKET`, 198.18.1.2/24).
    AfPacket,
}

impl Link {
    /// The kernel's address on this link.
    pub fn kernel_ip(self) -> Ipv4Addr {
        match self {
            Link::Tap => Ipv4Addr::new(198, 18, 0, 1),
            Link::AfPacket => Ipv4Addr::new(198, 18, 1, 1),
        }
    }

    /// The stack's address on this link.
    pub fn stack_ip(self) -> Ipv4Addr {
        match self {
            Link::Tap => Ipv4Addr::new(198, 18, 0, 2),
            Link::AfPacket => Ipv4Addr::new(198, 18, 1, 2),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Link::Tap => "ustk-tap",
            Link::AfPacket => "ustk-veth",
        }
    }
}

/// True (after printing the skip line) when this host cannot run kernel-peer tests: not root, or no
/// `/dev/net/tun`.
pub fn skip_without_kernel_peer(test: &str) -> bool {
    if kernel_peer_available() {
        return false;
    }
    println!("SKIPPED: {test} needs root and /dev/net/tun");
    true
}

/// The stack's MAC on every link: locally administered, unlike the kernel's random one for the interface.
const STACK_MAC: [u8; 6] = [0x02, 0x75, 0x73, 0x00, 0x00, 0x02];

/// A kernel in its own namespace joined to a running ustack.
#[derive(Debug)]
pub struct KernelPeer {
    link: Link,
    net: NetStack,
    /// Declared after `net`; the `Drop` impl shuts the stack down first anyway.
    ns: Namespace,
}

impl KernelPeer {
    /// A kernel peer over a TAP device, optionally recording every frame into a pcap at `capture`.
    pub fn tap(capture: Option<&Path>) -> io::Result<KernelPeer> {
        KernelPeer::start(Link::Tap, capture)
    }

    /// A kernel peer over a veth pair driven through an `AF_PACKET` socket, optionally capturing.
    pub fn af_packet(capture: Option<&Path>) -> io::Result<KernelPeer> {
        KernelPeer::start(Link::AfPacket, capture)
    }

    /// A kernel peer over `link`, optionally capturing into a pcap at `capture`.
    pub fn start(link: Link, capture: Option<&Path>) -> io::Result<KernelPeer> {
        KernelPeer::start_with(link, capture, |_| {})
    }

    /// A kernel peer over `link` whose stack configuration `configure` adjusts first (for example a short
    /// `tcp.msl`), optionally capturing into a pcap at `capture`.
    pub fn start_with(
        link: Link,
        capture: Option<&Path>,
        configure: impl FnOnce(&mut StackConfig),
    ) -> io::Result<KernelPeer> {
        match link {
            Link::Tap => KernelPeer::tap_wrapped(capture, configure, |tap| tap),
            Link::AfPacket => {
                KernelPeer::start_inner(link, false, capture, configure, NetStackOptions::default(), |tap| tap)
            }
        }
    }

    /// A kernel peer over a TAP device that the stack uses through `wrap(tap)` (for example a device that
    /// loses and reorders frames), with the stack configuration adjusted by `configure`.
    pub fn tap_wrapped<W: Device + 'static>(
        capture: Option<&Path>,
        configure: impl FnOnce(&mut StackConfig),
        wrap: impl FnOnce(Tap) -> W,
    ) -> io::Result<KernelPeer> {
        KernelPeer::start_inner(Link::Tap, false, capture, configure, NetStackOptions::default(), wrap)
    }

    /// Like [`KernelPeer::tap_wrapped`], over a TAP opened with checksum and segmentation offload
    /// ([`Tap::open_with_offloads`]).
    pub fn tap_offloads_wrapped<W: Device + 'static>(
        configure: impl FnOnce(&mut StackConfig),
        wrap: impl FnOnce(Tap) -> W,
    ) -> io::Result<KernelPeer> {
        KernelPeer::start_inner(Link::Tap, true, None, configure, NetStackOptions::default(), wrap)
    }

    /// A kernel peer over a TAP with offloads whose runtime runs with `options`.
    pub fn tap_offloads_with_options(options: NetStackOptions) -> io::Result<KernelPeer> {
        KernelPeer::start_inner(Link::Tap, true, None, |_| {}, options, |tap| tap)
    }

    fn start_inner<W: Device + 'static>(
        link: Link,
        offloads: bool,
        capture: Option<&Path>,
        configure: impl FnOnce(&mut StackConfig),
        options: NetStackOptions,
        wrap: impl FnOnce(Tap) -> W,
    ) -> io::Result<KernelPeer> {
        let ns = Namespace::create(link.prefix())?;
        let kernel_cidr = format!("{}/24", link.kernel_ip());
        let net = match link {
            Link::Tap => {
                ns.add_tap("tap0", &kernel_cidr)?;
                let tap = ns.enter(|| if offloads { Tap::open_with_offloads("tap0") } else { Tap::open("tap0") })??;
                spawn_stack(link, wrap(tap), capture, configure, options)?
            }
            Link::AfPacket => {
                ns.add_veth("veth0", "veth1", &kernel_cidr)?;
                let sock = ns.enter(|| PacketSocket::open("veth1"))??;
                spawn_stack(link, sock, capture, configure, options)?
            }
        };
        Ok(KernelPeer { link, net, ns })
    }

    pub fn link(&self) -> Link {
        self.link
    }

    pub fn net(&self) -> &NetStack {
        &self.net
    }

    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    pub fn kernel_ip(&self) -> Ipv4Addr {
        self.link.kernel_ip()
    }

    pub fn stack_ip(&self) -> Ipv4Addr {
        self.link.stack_ip()
    }

    /// The stack's counter `name` (a Linux name such as `"UdpNoPorts"`); panics on an unknown name so that a
    /// typo cannot make an assertion vacuous.
    pub fn counter(&self, name: &str) -> u64 {
        self.net.counters().get(name).unwrap_or_else(|| panic!("ustack has no counter named {name:?}"))
    }

    /// Every counter, one `name value` per line, for failure messages.
    pub fn counters_dump(&self) -> String {
        self.net.counters().rows().iter().filter(|(_, v)| *v != 0).map(|(n, v)| format!("{n} {v}\n")).collect()
    }

    /// A kernel UDP socket inside the namespace bound to the kernel's address and `port` (0: ephemeral), with
    /// read and write timeouts of `timeout` so that no test waits forever on the stack.
    pub fn kernel_udp(&self, port: u16, timeout: Duration) -> io::Result<KernelUdpSocket> {
        let addr = SocketAddrV4::new(self.kernel_ip(), port);
        let sock = self.ns.enter(|| KernelUdpSocket::bind(addr))??;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        Ok(sock)
    }

    /// A kernel UDP port on the kernel's address that nothing listens on (bound, then closed again).
    pub fn closed_kernel_port(&self) -> io::Result<u16> {
        let sock = self.kernel_udp(0, Duration::from_secs(1))?;
        Ok(sock.local_addr()?.port())
    }

    /// The stack's address with `port`.
    pub fn stack_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.stack_ip(), port))
    }

    /// The kernel's address with `port`.
    pub fn kernel_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.kernel_ip(), port))
    }

    /// Runs `ping` in the namespace against the stack: `count` echo requests of `size` data bytes, `interval`
    /// seconds apart (as ping spells it, e.g. "0.01"). Bounded by ping's own `-W 2` per reply and a `-w`
    /// deadline, so it always ends.
    pub fn ping(&self, count: u32, size: usize, interval: &str) -> io::Result<PingSummary> {
        let target = self.stack_ip().to_string();
        let count_s = count.to_string();
        let size_s = size.to_string();
        let deadline = (10 + count / 10).to_string();
        let args = ["-n", "-q", "-c", &count_s, "-s", &size_s, "-i", interval, "-W", "2", "-w", &deadline, &target];
        let out = self.ns.exec("ping", &args).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot run ping ({e}); install it: apt-get install -y iputils-ping"))
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        PingSummary::parse(&stdout).ok_or_else(|| {
            io::Error::other(format!("ping {args:?} printed no summary (status {}):\n{stdout}\n{stderr}", out.status))
        })
    }
}

impl Drop for KernelPeer {
    fn drop(&mut self) {
        // Joins the driver thread, which drops the device (closing the TAP or packet socket, flushing a capture)
        // while the namespace still exists; the namespace goes when the fields drop.
        self.net.shutdown();
    }
}

fn spawn_stack<D: Device + 'static>(
    link: Link,
    dev: D,
    capture: Option<&Path>,
    configure: impl FnOnce(&mut StackConfig),
    options: NetStackOptions,
) -> io::Result<NetStack> {
    let cidr = Ipv4Cidr::new(link.stack_ip(), 24).ok_or_else(|| io::Error::other("bad prefix length"))?;
    let mut config = StackConfig::new(MacAddr(STACK_MAC), cidr);
    configure(&mut config);
    match capture {
        Some(path) => NetStack::spawn_with(Capture::with_wall_clock(dev, path)?, config, options),
        None => NetStack::spawn_with(dev, config, options),
    }
}

/// The summary lines of `ping -q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingSummary {
    pub transmitted: u32,
    pub received: u32,
    /// Whole-percent loss as ping printed it.
    pub loss_percent: String,
}

impl PingSummary {
    /// Parses `N packets transmitted, M received, [+E errors, ]L% packet loss, ...`.
    pub fn parse(out: &str) -> Option<PingSummary> {
        let line = out.lines().find(|l| l.contains("packets transmitted"))?;
        let mut transmitted = None;
        let mut received = None;
        let mut loss = None;
        for part in line.split(',').map(str::trim) {
            let mut words = part.split_whitespace();
            let first = words.next()?;
            match words.next() {
                Some("packets") => transmitted = first.parse().ok(),
                Some("received") => received = first.parse().ok(),
                Some("packet") => loss = Some(first.to_string()),
                _ => {}
            }
        }
        Some(PingSummary { transmitted: transmitted?, received: received?, loss_percent: loss? })
    }
}

/// A file in the temporary directory with a unique name, removed when dropped.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub fn new(stem: &str, ext: &str) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ustack-{stem}-{}-{n}.{ext}", std::process::id()));
        TempFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True when `tshark` can be run.
pub fn tshark_available() -> bool {
    Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A seeded xorshift64* generator: reproducible sizes and payloads without a dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..=max`.
    pub fn below_or_eq(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summaries() {
        let ok =
            "--- 198.18.0.2 ping statistics ---\n100 packets transmitted, 100 received, 0% packet loss, time 1010ms\n";
        assert_eq!(
            PingSummary::parse(ok),
            Some(PingSummary { transmitted: 100, received: 100, loss_percent: "0%".into() })
        );
        let bad = "5 packets transmitted, 3 received, +2 errors, 40% packet loss, time 4005ms";
        assert_eq!(
            PingSummary::parse(bad),
            Some(PingSummary { transmitted: 5, received: 3, loss_percent: "40%".into() })
        );
        assert_eq!(PingSummary::parse("ping: connect: Network is unreachable"), None);
    }
}
