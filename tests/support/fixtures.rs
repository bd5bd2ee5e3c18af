//! The real captures in `pcaps/`, and fixes for what capture-side offloads did to them.

use std::path::PathBuf;
use ustack_netdev::pcap::{self, CaptureFile};

/// Path of a fixture under `pcaps/` (for example `"13_arp_request_reply.pcap"` or `"extras/x1_..."`).
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pcaps").join(name)
}

/// Reads a fixture.
pub fn load(name: &str) -> CaptureFile {
    pcap::read_file(path(name)).unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}

/// The fixture's packets as Ethernet frames.
pub fn frames(name: &str) -> Vec<Vec<u8>> {
    load(name).packets.iter().map(|p| p.ethernet_frame().expect("an Ethernet-convertible packet")).collect()
}

/// Every fixture file (pcap and pcapng) under `pcaps/`, recursively.
pub fn all() -> Vec<PathBuf> {
    fn walk(dir: PathBuf, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(p, out);
            } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(path(""), &mut out);
    out.sort();
    out
}

/// Recomputes the IPv4 header checksum of an Ethernet frame carrying IPv4. Captures taken on the sending host
/// with checksum offload show zeros where the NIC later filled in the sum.
pub fn fix_ipv4_header_checksum(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if frame.len() < 14 + ihl {
        return;
    }
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = ustack::wire::checksum::checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}
