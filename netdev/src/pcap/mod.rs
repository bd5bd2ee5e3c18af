//! Packet captures: writing classic pcap, reading pcap and pcapng, and recording a device's traffic.
//!
//! - [`Writer`] writes classic pcap with nanosecond timestamps, readable by tcpdump and Wireshark.
//! - [`parse`] / [`read_file`] read classic pcap (both byte orders, µs or ns) and pcapng, defensively: captures
//!   come from outside, so malformed input gives an error or a truncated packet, never a panic or a large
//!   allocation.
//! - [`Packet::ethernet_frame`] turns raw-IP and Linux "cooked" captures into Ethernet frames for replay.
//! - [`Capture`] wraps any [`crate::Device`] and records every frame it moves.

mod capture;
mod reader;
mod writer;

pub use capture::{Capture, Clock};
pub use reader::{parse, read_file, CaptureFile, Packet, PcapError};
pub use writer::Writer;

/// The link-layer header type of captured packets (a `LINKTYPE_*` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II frames, what every device of this crate moves.
    Ethernet,
    /// `LINKTYPE_RAW` (101): bare IPv4 or IPv6 packets. `DLT_RAW` values 12 and 14 read as this too.
    Raw,
    /// `LINKTYPE_LINUX_SLL` (113): Linux "cooked" capture v1 (`tcpdump -i any`).
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux "cooked" capture v2.
    LinuxSll2,
    /// Any other link type, by number.
    Other(u32),
}

impl LinkType {
    /// The link type for a number found in a capture file.
    pub fn from_u32(value: u32) -> Self {
        match value {
            1 => LinkType::Ethernet,
            101 | 12 | 14 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The number written into capture files.
    pub fn to_u32(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }
}

#[cfg(test)]
mod tests;
