//! The IPv4 header (RFC 791 section 3.1).

use super::{be16, checksum, WireError};
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// The largest datagram the 16-bit total-length field can describe.
pub const MAX_PACKET_LEN: usize = 65535;

/// The fields of an IPv4 header that this stack reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
    /// Type-of-service octet: DSCP and ECN (RFC 2474, RFC 3168).
    pub tos: u8,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (the wire field counts 8-byte units).
    pub frag_offset: usize,
    /// Header length in bytes, options included.
    pub header_len: usize,
    /// Total length in bytes, header included.
    pub total_len: usize,
}

impl Ipv4Header {
    /// A header for an unfragmented datagram with no options carrying `payload_len` bytes.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ttl: u8, payload_len: usize) -> Self {
        Ipv4Header {
            src,
            dst,
            protocol,
            ttl,
            ident: 0,
            tos: 0,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            header_len: MIN_HEADER_LEN,
            total_len: MIN_HEADER_LEN + payload_len,
        }
    }

    /// True for any piece of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }

    /// Payload length according to the header.
    pub fn payload_len(&self) -> usize {
        self.total_len - self.header_len
    }

    /// Validates a header as RFC 1122 section 3.2.1 asks of a host: version 4, a header length of at least
    /// five words, a total length that covers the header and fits the buffer, and a correct checksum. Returns
    /// the header and the payload, with any link-layer padding past the total length trimmed off. Options are
    /// skipped, never interpreted (RFC 1122 section 3.2.1.8 lets a host ignore those it does not know).
    pub fn parse(buf: &[u8]) -> Result<(Ipv4Header, &[u8]), WireError> {
        let header = Self::parse_unchecked(buf)?;
        if buf.len() < header.total_len {
            return Err(WireError::Truncated);
        }
        // Nearly every header has no options: those are summed in straight-line code.
        let sum = match buf.first_chunk::<MIN_HEADER_LEN>() {
            Some(fixed) if header.header_len == MIN_HEADER_LEN => checksum::add_20(0, fixed),
            _ => checksum::add(0, &buf[..header.header_len]),
        };
        if !checksum::fold(sum) != 0 {
            return Err(WireError::BadChecksum);
        }
        if header.more_fragments && header.payload_len() % 8 != 0 {
            // Every fragment but the last carries a multiple of 8 bytes (RFC 791 section 3.2).
            return Err(WireError::Malformed);
        }
        if header.frag_offset + header.payload_len() > MAX_PACKET_LEN {
            return Err(WireError::Malformed);
        }
        Ok((header, &buf[header.header_len..header.total_len]))
    }

    /// Reads the header fields without checking the checksum or that the whole datagram is present: for the
    /// copy of a datagram quoted inside an ICMP error, which carries only its first bytes (RFC 792).
    pub fn parse_unchecked(buf: &[u8]) -> Result<Ipv4Header, WireError> {
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[0] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = usize::from(buf[0] & 0x0f) * 4;
        let total_len = usize::from(be16(buf, 2));
        if header_len < MIN_HEADER_LEN || total_len < header_len {
            return Err(WireError::Malformed);
        }
        if buf.len() < header_len {
            return Err(WireError::Truncated);
        }
        let flags_frag = be16(buf, 6);
        Ok(Ipv4Header {
            tos: buf[1],
            total_len,
            ident: be16(buf, 4),
            dont_fragment: flags_frag & 0x4000 != 0,
            more_fragments: flags_frag & 0x2000 != 0,
            frag_offset: usize::from(flags_frag & 0x1fff) * 8,
            ttl: buf[8],
            protocol: buf[9],
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            header_len,
        })
    }

    /// Writes the header (without options: `header_len` must be 20) into the first 20 bytes of `buf`, checksum
    /// included.
    pub fn emit(&self, buf: &mut [u8]) {
        debug_assert_eq!(self.header_len, MIN_HEADER_LEN);
        buf[0] = 0x45;
        buf[1] = self.tos;
        buf[2..4].copy_from_slice(&(self.total_len as u16).to_be_bytes());
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let mut flags_frag = (self.frag_offset / 8) as u16 & 0x1fff;
        if self.dont_fragment {
            flags_frag |= 0x4000;
        }
        if self.more_fragments {
            flags_frag |= 0x2000;
        }
        buf[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        buf[12..16].copy_from_slice(&self.src.octets());
        buf[16..20].copy_from_slice(&self.dst.octets());
        // The checksum from the field values rather than from the bytes just written: reading back a header
        // built of narrow stores stalls until they reach the cache (store forwarding cannot serve a wide load
        // from several small stores).
        let words = [
            0x4500 | u16::from(self.tos),
            self.total_len as u16,
            self.ident,
            flags_frag,
            u16::from(self.ttl) << 8 | u16::from(self.protocol),
        ];
        let addresses = checksum::address_v4(self.src) + checksum::address_v4(self.dst);
        let sum = words.iter().map(|&w| u64::from(w)).sum::<u64>() + addresses;
        buf[10..12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
    }
}

/// An IPv4 prefix: an interface address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; `None` when the prefix is longer than 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }

    pub fn netmask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// True when `ip` is on this prefix's link.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.netmask()) == (u32::from(self.addr) & self.netmask())
    }

    /// The directed broadcast address of the subnet (RFC 919, RFC 922), for prefixes shorter than /31.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.prefix_len < 31).then(|| Ipv4Addr::from(u32::from(self.addr) | !self.netmask()))
    }
}

impl core::str::FromStr for Ipv4Cidr {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        let (addr, len) = s.split_once('/').ok_or(WireError::Malformed)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| WireError::Malformed)?;
        let len: u8 = len.parse().map_err(|_| WireError::Malformed)?;
        Ipv4Cidr::new(addr, len).ok_or(WireError::Malformed)
    }
}

impl core::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut h = Ipv4Header::new(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2), 17, 64, 4);
        h.ident = 0x1234;
        h.dont_fragment = true;
        let mut buf = vec![0u8; 24];
        h.emit(&mut buf);
        buf[20..].copy_from_slice(b"data");
        buf
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        let (h, payload) = Ipv4Header::parse(&buf).unwrap();
        assert_eq!(h.ident, 0x1234);
        assert!(h.dont_fragment && !h.is_fragment());
        assert_eq!(payload, b"data");
    }

    #[test]
    fn padding_is_trimmed_and_bad_fields_rejected() {
        let mut buf = sample();
        buf.extend_from_slice(&[0; 10]);
        assert_eq!(Ipv4Header::parse(&buf).unwrap().1, b"data");
        let mut bad = sample();
        bad[10] ^= 1;
        assert_eq!(Ipv4Header::parse(&bad).unwrap_err(), WireError::BadChecksum);
        let mut v6 = sample();
        v6[0] = 0x65;
        assert_eq!(Ipv4Header::parse(&v6).unwrap_err(), WireError::Malformed);
        let mut short_ihl = sample();
        short_ihl[0] = 0x44;
        assert_eq!(Ipv4Header::parse(&short_ihl).unwrap_err(), WireError::Malformed);
        assert_eq!(Ipv4Header::parse(&sample()[..23]).unwrap_err(), WireError::Truncated);
        for len in 0..24 {
            let _ = Ipv4Header::parse(&sample()[..len]);
        }
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "198.18.0.2/24".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.broadcast(), Some(Ipv4Addr::new(198, 18, 0, 255)));
        assert!("198.18.0.2/33".parse::<Ipv4Cidr>().is_err());
        assert_eq!(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap().netmask(), 0);
    }
}
