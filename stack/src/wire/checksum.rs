//! The Internet checksum (RFC 1071): the ones'-complement of the ones'-complement sum of 16-bit words.

use std::net::Ipv4Addr;

/// The running sum and its fold live with the devices, which complete offloaded checksums with them too.
pub use ustack_netdev::checksum::{add, add_20, fold};

/// The checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// The sum of an IPv4 address's two 16-bit words.
pub fn address_v4(ip: Ipv4Addr) -> u64 {
    let [a, b, c, d] = ip.octets();
    u64::from(u16::from_be_bytes([a, b])) + u64::from(u16::from_be_bytes([c, d]))
}

/// The IPv4 pseudo-header sum for TCP and UDP (RFC 9293 section 3.1, RFC 768).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: usize) -> u64 {
    address_v4(src) + address_v4(dst) + u64::from(protocol) + (length as u64 & 0xffff_ffff)
}

/// Adds `data` that sits `odd` bytes past a 16-bit boundary (`odd` true: the second half of a ring split at an
/// odd length). Its bytes then fall in the other halves of the words: RFC 1071 section 2(B) lets it be summed
/// as if aligned and the folded sum byte-swapped.
pub fn add_at(sum: u64, data: &[u8], odd: bool) -> u64 {
    if odd {
        sum + u64::from(fold(add(0, data)).swap_bytes())
    } else {
        add(sum, data)
    }
}

/// The checksum of a transport segment with the IPv4 pseudo-header in front of it.
pub fn transport_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    !fold(add(pseudo_header_v4(src, dst, protocol, segment.len()), segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_and_verification() {
        let mut data = vec![0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0, "a correct checksum verifies to zero");
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn native_order_sum_matches_big_endian_words_for_every_length() {
        let mut rng = crate::rng::Rng::new(7);
        for len in 0..300 {
            let data = rng.bytes(len);
            let simple: u64 = data.chunks(2).map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0))).sum();
            assert_eq!(fold(add(0, &data)), fold(simple), "length {len}");
            assert_eq!(fold(add(0xffff_ffff, &data)), fold(0xffff_ffff + simple), "with a running sum, length {len}");
        }
        let ones = vec![0xffu8; 4096];
        assert_eq!(checksum(&ones), 0, "all ones: carries everywhere");
    }

    #[test]
    fn a_sum_split_at_any_length_matches_the_whole() {
        let data: Vec<u8> = (0..301u32).map(|i| (i * 31 + 7) as u8).collect();
        let whole = fold(add(0x1234, &data));
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(fold(add_at(add(0x1234, a), b, cut % 2 == 1)), whole, "cut at {cut}");
        }
    }

    #[test]
    fn chunked_sum_matches_bytewise_sum() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let simple: u64 = data.chunks(2).map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0))).sum();
        assert_eq!(fold(add(0, &data)), fold(simple));
    }
}
