//! The virtio-net header (`struct virtio_net_hdr` of Linux's `include/uapi/linux/virtio_net.h`), which a TAP
//! opened with `IFF_VNET_HDR` and a packet socket with `PACKET_VNET_HDR` put in front of every frame, and the
//! two offloads it carries:
//! - checksum offload: the kernel leaves a checksum for the other side to finish (`NEEDS_CSUM`; the field
//!   holds the pseudo-header sum, the rest of the sum runs from `csum_start` to the end of the frame);
//! - segmentation offload: one frame of up to 64 KiB stands for many TCP segments of `gso_size` bytes of
//!   payload each, which the kernel cuts (TSO) or has already merged (GRO).
//!
//! Both cut the per-frame costs of a user-space stack — a system call, a demux, an ACK — by up to 45 times at
//! MTU 1500, which is how the kernel's own stack reaches its speed over a veth pair.

use crate::checksum;

/// Size of `struct virtio_net_hdr` (without the `num_buffers` field of the mergeable variant).
pub const LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`: a frame of its own.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP/IPv4 super-segment.
pub const GSO_TCPV4: u8 = 1;

/// Largest frame a device with segmentation offload exchanges: a 64 KiB IP packet behind an Ethernet header.
pub const MAX_OFFLOAD_FRAME: usize = 65_535 + 14;

/// A decoded virtio-net header. Fields are in the host's byte order, as a legacy (non-`VNET_LE`) device has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers (Ethernet, IP, TCP) at the front of a super-segment.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Decodes the header's ten bytes.
    pub fn parse(b: &[u8; LEN]) -> VnetHeader {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// Encodes the header.
    pub fn to_bytes(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The header for a frame the stack built. A TCP/IPv4 frame longer than `mtu` + 14 is a super-segment
    /// for the kernel to cut into segments that fit the MTU: the stack writes only the pseudo-header sum into
    /// its checksum field (the kernel's own convention for `CHECKSUM_PARTIAL`), and the kernel completes each
    /// segment's checksum. Anything else goes out as it is.
    pub fn for_sending(frame: &[u8], mtu: usize) -> VnetHeader {
        VnetHeader::for_sending_head(frame, frame.len(), mtu)
    }

    /// [`VnetHeader::for_sending`] for a frame of `frame_len` bytes that starts with `head` (at least its
    /// headers): a frame sent in pieces.
    pub fn for_sending_head(head: &[u8], frame_len: usize, mtu: usize) -> VnetHeader {
        let plain = VnetHeader::default();
        if frame_len <= mtu + 14 {
            return plain;
        }
        let Some((ip_len, tcp_len)) = tcp_ipv4_header_lens(head) else { return plain };
        let Some(gso_size) = mtu.checked_sub(ip_len + tcp_len).filter(|&s| s > 0) else { return plain };
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: (14 + ip_len + tcp_len) as u16,
            gso_size: gso_size.min(usize::from(u16::MAX)) as u16,
            csum_start: (14 + ip_len) as u16,
            csum_offset: 16, // the checksum field of the TCP header
        }
    }
}

/// The IPv4 and TCP header lengths of an Ethernet frame carrying TCP over IPv4 (the frame's own length
/// fields, checked to lie inside it), or `None` for anything else.
fn tcp_ipv4_header_lens(frame: &[u8]) -> Option<(usize, usize)> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 || frame[14 + 9] != 6 {
        return None;
    }
    let ip_len = usize::from(frame[14] & 0x0f) * 4;
    let tcp_at = 14 + ip_len;
    if ip_len < 20 || frame.len() < tcp_at + 20 {
        return None;
    }
    let tcp_len = usize::from(frame[tcp_at + 12] >> 4) * 4;
    (tcp_len >= 20 && frame.len() >= tcp_at + tcp_len).then_some((ip_len, tcp_len))
}

/// What [`complete_checksum`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The frame did not need a checksum.
    Untouched,
    /// The partial checksum was completed.
    Fixed,
    /// The header asked for a checksum outside the frame; the frame is unchanged.
    BadOffsets,
}

/// Completes a checksum the kernel left to offload (`NEEDS_CSUM`), protocol-agnostically as a NIC would: the
/// ones'-complement sum of the bytes from `csum_start` to the end of the frame (the checksum field already
/// holds the pseudo-header sum) is folded, complemented and stored big-endian at `csum_start + csum_offset`. A
/// result of 0 is stored as 0xffff (the two are equal in ones' complement, and 0 means "no checksum" to UDP),
/// as the kernel's own `skb_checksum_help` does.
pub fn complete_checksum(header: &VnetHeader, frame: &mut [u8]) -> Checksum {
    if header.flags & F_NEEDS_CSUM == 0 {
        return Checksum::Untouched;
    }
    let start = usize::from(header.csum_start);
    let field = start + usize::from(header.csum_offset);
    if field + 2 > frame.len() {
        return Checksum::BadOffsets;
    }
    let checksum = match !checksum::fold(checksum::add(0, &frame[start..])) {
        0 => 0xffff,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&checksum.to_be_bytes());
    Checksum::Fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u8, start: u16, offset: u16) -> VnetHeader {
        VnetHeader { flags, csum_start: start, csum_offset: offset, ..VnetHeader::default() }
    }

    /// An Ethernet + IPv4 + UDP frame with a correct checksum, and the same frame in the partial form the
    /// kernel hands over (the checksum field holding the pseudo-header sum).
    fn udp_frames(payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&5678u16.to_be_bytes());
        let udp_len = (8 + payload.len()) as u16;
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(payload);
        let pseudo = checksum::fold(checksum::add(0, &f[26..34]) + u64::from(17u16) + u64::from(udp_len));
        let mut partial = f.clone();
        partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let mut full = partial.clone();
        assert_eq!(complete_checksum(&header(F_NEEDS_CSUM, 34, 6), &mut full), Checksum::Fixed);
        (full, partial)
    }

    #[test]
    fn partial_checksums_are_completed() {
        for payload in [&b""[..], b"x", b"hello, world", &[0xffu8; 1000][..]] {
            let (full, partial) = udp_frames(payload);
            assert_ne!(full, partial);
            // A completed checksum verifies: the sum over pseudo-header and datagram folds to all ones.
            let sum = checksum::add(0, &full[26..34]) + 17 + (full.len() as u64 - 34) + checksum::add(0, &full[34..]);
            assert_eq!(checksum::fold(sum), 0xffff, "payload of {} bytes", payload.len());
        }
        let (_, mut partial) = udp_frames(b"x");
        let before = partial.clone();
        assert_eq!(complete_checksum(&header(0, 34, 6), &mut partial), Checksum::Untouched);
        assert_eq!(complete_checksum(&header(F_NEEDS_CSUM, 34, 200), &mut partial), Checksum::BadOffsets);
        assert_eq!(complete_checksum(&header(F_NEEDS_CSUM, 60000, 6), &mut partial), Checksum::BadOffsets);
        assert_eq!(partial, before);
    }

    #[test]
    fn the_header_round_trips() {
        let h = VnetHeader { flags: 1, gso_type: 1, hdr_len: 66, gso_size: 1448, csum_start: 34, csum_offset: 16 };
        assert_eq!(VnetHeader::parse(&h.to_bytes()), h);
    }

    /// A TCP/IPv4 frame with `payload` bytes and 12 bytes of TCP options.
    fn tcp_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[14 + 20 + 12] = 8 << 4;
        f
    }

    #[test]
    fn only_tcp_frames_over_the_mtu_are_handed_over_for_segmentation() {
        assert_eq!(VnetHeader::for_sending(&tcp_frame(1448), 1500), VnetHeader::default(), "fits the MTU");
        let h = VnetHeader::for_sending(&tcp_frame(10 * 1448), 1500);
        assert_eq!(
            h,
            VnetHeader {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16
            }
        );
        let mut udp = tcp_frame(3000);
        udp[23] = 17;
        assert_eq!(VnetHeader::for_sending(&udp, 1500), VnetHeader::default(), "not TCP");
        let mut short = tcp_frame(3000);
        short[14 + 20 + 12] = 15 << 4; // a TCP header longer than the MTU allows
        assert_eq!(VnetHeader::for_sending(&short[..60], 20), VnetHeader::default());
    }
}
