//! Packet formats: zero-copy views for parsing and plain functions for emitting.
//!
//! Every parser takes an untrusted byte slice and either returns a view whose accessors cannot go out of
//! bounds, or an error. Nothing here allocates or panics on any input.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

use core::fmt;

/// Why a packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its headers or its own length fields say.
    Truncated,
    /// A field holds a value the format does not allow.
    Malformed,
    /// The checksum does not verify.
    BadChecksum,
    /// Well-formed but of a kind this stack does not handle.
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::Malformed => "malformed",
            WireError::BadChecksum => "bad checksum",
            WireError::Unsupported => "unsupported",
        })
    }
}

/// Reads a big-endian u16 at `at`; callers have checked the bounds.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian u32 at `at`; callers have checked the bounds.
#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Protocol numbers carried in the IPv4 protocol field (IANA).
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}
