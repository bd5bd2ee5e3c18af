//! Helpers for this crate's root-only tests: throwaway network namespaces and a few hand-built frames.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::netns::run_in_namespace;
use crate::{Device, FrameBatch};

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid() cannot fail and takes no arguments.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace named `ustnd-PID-N`, deleted (with everything in it) on drop, panics included.
pub(crate) struct NetNs {
    name: String,
}

impl NetNs {
    pub(crate) fn create() -> io::Result<NetNs> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("ustnd-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let status = Command::new("ip").args(["netns", "add", &name]).status()?;
        if !status.success() {
            return Err(io::Error::other(format!("ip netns add {name} failed")));
        }
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`, panicking (this is test code) when it fails.
    pub(crate) fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").arg("-n").arg(&self.name).args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub(crate) fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        run_in_namespace(&self.name, f)
    }

    /// The kernel's address and the stack's (peer) address on the test subnet, inside 198.18.0.0/15.
    pub(crate) fn subnet_addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        (Ipv4Addr::new(198, 18, 7, 1), Ipv4Addr::new(198, 18, 7, 2))
    }

    /// Makes the kernel send a UDP datagram (discard port) towards `to`, which first needs ARP.
    pub(crate) fn send_udp(&self, to: Ipv4Addr) {
        let _ = self.run(|| {
            if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
                let _ = s.send_to(b"ustack test datagram", (to, 9));
            }
        });
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Keeps the kernel sending towards `peer` and reads `dev` until a frame matches `wanted` or `timeout` passes.
pub(crate) fn wait_for_frame(
    ns: &NetNs,
    dev: &mut impl Device,
    peer: Ipv4Addr,
    timeout: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut batch = FrameBatch::new(16, 2048);
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            ns.send_udp(peer);
            next_send = Instant::now() + Duration::from_millis(300);
        }
        batch.clear();
        dev.recv_batch(&mut batch).expect("recv_batch");
        if let Some(frame) = batch.iter().find(|f| wanted(f)) {
            return Some(frame.to_vec());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Is `f` an ARP request asking for `target`?
pub(crate) fn arp_request_for(f: &[u8], target: Ipv4Addr) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] && f[38..42] == target.octets()
}

/// An ARP reply "`sender_ip` is at `sender_mac`" addressed to `target_mac`/`target_ip`, padded to 60 bytes.
pub(crate) fn arp_reply(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_mac: [u8; 6], target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target_ip.octets());
    f.resize(60, 0);
    f
}

/// Does the IPv4/UDP frame `f` carry a valid (or absent) UDP checksum?
pub(crate) fn udp_checksum_ok(f: &[u8]) -> bool {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return false;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let udp = &f[14 + ihl..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp[6..8] == [0, 0] {
        return true;
    }
    let mut sum: u32 = 17 + udp_len as u32;
    for w in f[26..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    for w in udp[..udp_len].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}
