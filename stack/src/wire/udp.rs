//! The User Datagram Protocol header (RFC 768).

use super::{be16, checksum, ip_proto, WireError};
use std::net::Ipv4Addr;

pub const HEADER_LEN: usize = 8;

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpHeader {
    /// Parses a UDP datagram carried in IPv4 between `src` and `dst`; verifies the length field and, unless it
    /// is zero (no checksum, RFC 768), the checksum. Returns the header and the payload, trimmed to the UDP
    /// length.
    pub fn parse_v4(buf: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<(UdpHeader, &[u8]), WireError> {
        UdpHeader::parse_v4_trusting(buf, src, dst, false)
    }

    /// [`UdpHeader::parse_v4`], skipping the checksum when `checksum_trusted` (see
    /// `TcpHeader::parse_v4_trusting`).
    pub fn parse_v4_trusting(
        buf: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum_trusted: bool,
    ) -> Result<(UdpHeader, &[u8]), WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let length = usize::from(be16(buf, 4));
        if length < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if length > buf.len() {
            return Err(WireError::Truncated);
        }
        let datagram = &buf[..length];
        if !checksum_trusted && be16(buf, 6) != 0 && checksum::transport_v4(src, dst, ip_proto::UDP, datagram) != 0 {
            return Err(WireError::BadChecksum);
        }
        Ok((UdpHeader { src_port: be16(buf, 0), dst_port: be16(buf, 2) }, &datagram[HEADER_LEN..]))
    }

    /// Reads the ports of the start of a datagram quoted in an ICMP error.
    pub fn parse_ports(buf: &[u8]) -> Result<UdpHeader, WireError> {
        if buf.len() < 4 {
            return Err(WireError::Truncated);
        }
        Ok(UdpHeader { src_port: be16(buf, 0), dst_port: be16(buf, 2) })
    }

    /// Fills in the header of a datagram whose payload already sits at `buf[8..]`, computing the checksum over
    /// the IPv4 pseudo-header. A computed checksum of zero goes on the wire as all ones (RFC 768).
    pub fn emit_v4(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
        let len = buf.len() as u16;
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..6].copy_from_slice(&len.to_be_bytes());
        buf[6..8].copy_from_slice(&[0, 0]);
        let mut sum = checksum::transport_v4(src, dst, ip_proto::UDP, buf);
        if sum == 0 {
            sum = 0xffff;
        }
        buf[6..8].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    #[test]
    fn round_trip_and_checks() {
        let mut buf = vec![0u8; 8 + 5];
        buf[8..].copy_from_slice(b"hello");
        UdpHeader { src_port: 1000, dst_port: 53 }.emit_v4(&mut buf, A, B);
        let (h, p) = UdpHeader::parse_v4(&buf, A, B).unwrap();
        assert_eq!((h.src_port, h.dst_port, p), (1000, 53, &b"hello"[..]));
        assert_eq!(UdpHeader::parse_v4(&buf, A, A).unwrap_err(), WireError::BadChecksum);
        let mut no_sum = buf.clone();
        no_sum[6..8].copy_from_slice(&[0, 0]);
        assert!(UdpHeader::parse_v4(&no_sum, A, A).is_ok(), "zero means no checksum");
        let mut long = buf.clone();
        long[4..6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(UdpHeader::parse_v4(&long, A, B).unwrap_err(), WireError::Truncated);
        long[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpHeader::parse_v4(&long, A, B).unwrap_err(), WireError::Malformed);
    }
}
