//! Ethernet II framing (IEEE 802.3 with an EtherType, RFC 894).

use super::{be16, WireError};
use core::fmt;
use core::str::FromStr;

/// Length of the Ethernet II header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

/// EtherType values this stack knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The all-ones broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group addresses have the least significant bit of the first octet set (IEEE 802-2014 section 8.2).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// An individual (unicast) address that is not all zeros.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// A locally administered unicast address derived from `seed`, for stacks that need a MAC of their own.
    pub fn local_from_seed(seed: u64) -> MacAddr {
        let b = seed.to_be_bytes();
        MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(WireError::Malformed)?;
            if part.len() != 2 {
                return Err(WireError::Malformed);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| WireError::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(WireError::Malformed);
        }
        Ok(MacAddr(out))
    }
}

/// A parsed Ethernet II frame: a view over the caller's bytes.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// Checks that `buf` holds at least a header.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buf })
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr(self.buf[0..6].try_into().unwrap_or_default())
    }

    pub fn src(&self) -> MacAddr {
        MacAddr(self.buf[6..12].try_into().unwrap_or_default())
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 12)
    }

    /// Everything after the header, padding included (the network layer trims by its own length field).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// Writes an Ethernet II header into the first 14 bytes of `buf`.
pub fn write_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_write() {
        let mut f = [0u8; 20];
        let a: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        write_header(&mut f, MacAddr::BROADCAST, a, ethertype::ARP);
        let v = EthernetFrame::parse(&f).unwrap();
        assert!(v.dst().is_broadcast());
        assert_eq!(v.src(), a);
        assert_eq!(v.ethertype(), ethertype::ARP);
        assert_eq!(v.payload().len(), 6);
        assert_eq!(EthernetFrame::parse(&f[..13]).unwrap_err(), WireError::Truncated);
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:zz".parse::<MacAddr>().is_err());
        assert!(a.is_unicast() && !a.is_multicast());
    }
}
