//! ARP for IPv4 over Ethernet (RFC 826).

use super::ethernet::{ethertype, MacAddr};
use super::{be16, WireError};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// `ar$op` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
}

/// An Ethernet/IPv4 ARP packet, by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

const HTYPE_ETHERNET: u16 = 1;

impl ArpPacket {
    /// Parses an ARP packet; only hardware type Ethernet with protocol IPv4 is supported (RFC 826 "Packet
    /// Reception": a packet of another hardware or protocol type is discarded).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(buf, 0) != HTYPE_ETHERNET || be16(buf, 2) != ethertype::IPV4 || buf[4] != 6 || buf[5] != 4 {
            return Err(WireError::Unsupported);
        }
        let op = match be16(buf, 6) {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            _ => return Err(WireError::Unsupported),
        };
        let mac = |at: usize| MacAddr(buf[at..at + 6].try_into().unwrap_or_default());
        let ip = |at: usize| Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
        Ok(ArpPacket { op, sender_mac: mac(8), sender_ip: ip(14), target_mac: mac(18), target_ip: ip(24) })
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        buf[2..4].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        buf[4] = 6;
        buf[5] = 4;
        let op: u16 = match self.op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
        };
        buf[6..8].copy_from_slice(&op.to_be_bytes());
        buf[8..14].copy_from_slice(&self.sender_mac.0);
        buf[14..18].copy_from_slice(&self.sender_ip.octets());
        buf[18..24].copy_from_slice(&self.target_mac.0);
        buf[24..28].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let p = ArpPacket {
            op: ArpOp::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(198, 18, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(198, 18, 0, 2),
        };
        let mut buf = [0u8; PACKET_LEN];
        p.emit(&mut buf);
        assert_eq!(ArpPacket::parse(&buf).unwrap(), p);
        assert_eq!(ArpPacket::parse(&buf[..27]).unwrap_err(), WireError::Truncated);
        buf[7] = 9;
        assert_eq!(ArpPacket::parse(&buf).unwrap_err(), WireError::Unsupported);
    }
}
