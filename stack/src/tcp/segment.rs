//! Where outgoing segments go. A connection never touches the IP layer: it hands each segment it builds to a
//! [`SegmentOut`]. On the hot path that is the stack writing the segment straight into a device frame behind
//! its IP and Ethernet headers (no copy in between); otherwise it is a [`SegmentBuf`], which keeps segments
//! built whole until the stack hands them to IP.

use crate::wire::tcp::{TcpFlags, TcpHeader};
use std::net::SocketAddrV4;
use std::ops::Range;

/// A segment as a connection hands it over: addresses, header, payload (up to two slices, a ring buffer's
/// two halves) and the IP fields its socket sets. A payload longer than `mss` makes it a super-segment,
/// which a device with segmentation offload cuts, or the stack itself before the device
/// ([`OutSegment::for_each_piece`]).
#[derive(Debug, Clone, Copy)]
pub struct OutSegment<'a> {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub header: &'a TcpHeader,
    pub payload: (&'a [u8], &'a [u8]),
    /// The payload of each segment on the wire.
    pub mss: usize,
    /// The socket's `IP_TTL` (`None`: the stack's default) and `IP_TOS`.
    pub ttl: Option<u8>,
    pub tos: u8,
}

impl<'a> OutSegment<'a> {
    /// A segment without payload, with the stack's IP defaults (resets and ACKs on behalf of no socket).
    pub fn bare(local: SocketAddrV4, remote: SocketAddrV4, header: &'a TcpHeader) -> Self {
        OutSegment { local, remote, header, payload: (&[], &[]), mss: usize::MAX, ttl: None, tos: 0 }
    }

    /// Payload bytes.
    pub fn payload_len(&self) -> usize {
        self.payload.0.len() + self.payload.1.len()
    }

    /// Header and payload bytes.
    pub fn wire_len(&self) -> usize {
        self.header.header_len() + self.payload_len()
    }

    /// True when the payload is more than one segment's.
    pub fn is_super_segment(&self) -> bool {
        self.payload_len() > self.mss
    }

    /// Segments on the wire.
    pub fn pieces(&self) -> usize {
        let len = self.payload_len();
        if len <= self.mss {
            return 1;
        }
        len.div_ceil(self.mss.max(1))
    }

    /// Writes the segment, checksummed, into `segment` (exactly [`OutSegment::wire_len`] bytes).
    pub fn emit(&self, segment: &mut [u8]) {
        self.header.emit_v4_with_payload(segment, *self.local.ip(), *self.remote.ip(), self.payload);
    }

    /// The segments a super-segment is cut into on the wire, `mss` bytes of payload each, in order (a
    /// segment that is not super is one piece). Their headers differ as Linux's `tcp_gso_segment` makes them
    /// differ: each piece its own sequence number; FIN and PSH only on the last piece, CWR only on the first
    /// (RFC 3168 section 6.1.2: it marks one segment).
    pub fn pieces_iter(&self) -> impl Iterator<Item = Piece> + '_ {
        let total = self.payload_len();
        let mss = if self.is_super_segment() { self.mss } else { total.max(1) };
        (0..self.pieces()).map(move |i| {
            let offset = i * mss;
            let len = mss.min(total - offset);
            let mut flags = self.header.flags.0;
            if offset > 0 {
                flags &= !TcpFlags::CWR.0;
            }
            if offset + len < total {
                flags &= !(TcpFlags::FIN.0 | TcpFlags::PSH.0);
            }
            Piece { offset, len, flags: TcpFlags(flags) }
        })
    }

    /// The payload of `piece`, as up to two slices.
    pub fn piece_payload(&self, piece: &Piece) -> (&'a [u8], &'a [u8]) {
        sub_payload(self.payload, piece.offset, piece.len)
    }

    /// Hands `f` each piece of the segment ([`OutSegment::pieces_iter`]) as a segment of its own, to be
    /// written and summed whole.
    pub fn for_each_piece(&self, mut f: impl FnMut(&OutSegment<'_>)) {
        if !self.is_super_segment() {
            return f(self);
        }
        for piece in self.pieces_iter() {
            let header = TcpHeader { seq: self.header.seq + piece.offset, flags: piece.flags, ..*self.header };
            f(&OutSegment { header: &header, payload: self.piece_payload(&piece), ..*self });
        }
    }
}

/// One segment on the wire cut from a super-segment: where its payload starts in the super-segment's, its
/// length, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: usize,
    pub len: usize,
    pub flags: TcpFlags,
}

/// Bytes `offset..offset + len` of a payload held as two slices.
fn sub_payload<'a>(payload: (&'a [u8], &'a [u8]), offset: usize, len: usize) -> (&'a [u8], &'a [u8]) {
    let (a, b) = payload;
    if offset >= a.len() {
        let start = offset - a.len();
        (&b[start..start + len], &[])
    } else if offset + len <= a.len() {
        (&a[offset..offset + len], &[])
    } else {
        (&a[offset..], &b[..offset + len - a.len()])
    }
}

/// A destination for segments.
pub trait SegmentOut {
    /// Takes `segment`, or returns false when this destination cannot (a frame writer whose next hop is not
    /// resolved, say) and the caller must send it another way.
    fn push(&mut self, segment: &OutSegment<'_>) -> bool;
}

/// One built segment inside a [`SegmentBuf`].
#[derive(Debug, Clone)]
pub struct BuiltSegment {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub bytes: Range<usize>,
    /// The socket's `IP_TTL` (`None`: the stack's default) and `IP_TOS`.
    pub ttl: Option<u8>,
    pub tos: u8,
}

/// Segments built whole, waiting to be handed to IP. Cleared, not freed, between uses: no allocation per
/// segment once warm.
#[derive(Debug, Default)]
pub struct SegmentBuf {
    pub buf: Vec<u8>,
    pub segments: Vec<BuiltSegment>,
}

impl SegmentOut for SegmentBuf {
    /// Keeps the segment, a super-segment cut into the segments the wire carries: what waits here goes
    /// through the IP layer (loopback, a next hop still being resolved), which does not cut TCP.
    fn push(&mut self, segment: &OutSegment<'_>) -> bool {
        segment.for_each_piece(|piece| self.push_one(piece));
        true
    }
}

impl SegmentBuf {
    fn push_one(&mut self, segment: &OutSegment<'_>) {
        let start = self.buf.len();
        self.buf.resize(start + segment.wire_len(), 0);
        segment.emit(&mut self.buf[start..]);
        self.segments.push(BuiltSegment {
            local: segment.local,
            remote: segment.remote,
            bytes: start..self.buf.len(),
            ttl: segment.ttl,
            tos: segment.tos,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.segments.clear();
    }
}

/// A destination that may decline segments, backed by a buffer that takes the ones it declines.
pub struct WithFallback<'a> {
    pub first: &'a mut dyn SegmentOut,
    pub fallback: &'a mut SegmentBuf,
}

impl SegmentOut for WithFallback<'_> {
    #[link_section = ".text.hot.ustack"]
    fn push(&mut self, segment: &OutSegment<'_>) -> bool {
        self.first.push(segment) || self.fallback.push(segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::seq::SeqNum;
    use crate::wire::tcp::{TcpOptions, MIN_HEADER_LEN};

    fn header(flags: TcpFlags) -> TcpHeader {
        let options = TcpOptions { timestamps: Some((7, 9)), ..TcpOptions::default() };
        TcpHeader {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNum(1000),
            ack: SeqNum(5),
            flags,
            window: 512,
            urgent: 0,
            options,
        }
    }

    fn segment<'a>(header: &'a TcpHeader, payload: (&'a [u8], &'a [u8]), mss: usize) -> OutSegment<'a> {
        let local = "198.18.0.2:80".parse().unwrap();
        let remote = "198.18.0.1:40000".parse().unwrap();
        OutSegment { local, remote, header, payload, mss, ttl: None, tos: 0 }
    }

    /// Each piece, as the wire carries it: sequence number, flags, payload.
    fn pieces(s: &OutSegment<'_>) -> Vec<(u32, u8, Vec<u8>)> {
        let mut got = Vec::new();
        s.for_each_piece(|p| got.push((p.header.seq.0, p.header.flags.0, [p.payload.0, p.payload.1].concat())));
        got
    }

    #[test]
    fn a_super_segment_is_cut_at_the_mss_with_the_flags_where_linux_puts_them() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let flags = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN | TcpFlags::CWR;
        let h = header(flags);
        // Every split of the payload into a ring's two halves, odd ones included.
        for split in [0, 1, 299, 300, 301, 555, 999, 1000] {
            let s = segment(&h, (&data[..split], &data[split..]), 300);
            assert_eq!(s.pieces(), 4);
            let got = pieces(&s);
            let want: Vec<(u32, u8, Vec<u8>)> = vec![
                (1000, (TcpFlags::ACK | TcpFlags::CWR).0, data[..300].to_vec()),
                (1300, TcpFlags::ACK.0, data[300..600].to_vec()),
                (1600, TcpFlags::ACK.0, data[600..900].to_vec()),
                (1900, (TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN).0, data[900..].to_vec()),
            ];
            assert_eq!(got, want, "payload split at {split}");
        }
    }

    #[test]
    fn a_segment_within_the_mss_is_handed_over_as_it_is() {
        let data = [1u8; 300];
        let h = header(TcpFlags::ACK | TcpFlags::PSH);
        for s in [segment(&h, (&data, &[]), 300), segment(&h, (&[], &[]), usize::MAX)] {
            assert!(!s.is_super_segment());
            assert_eq!(s.pieces(), 1);
            assert_eq!(pieces(&s), vec![(1000, h.flags.0, [s.payload.0, s.payload.1].concat())]);
        }
    }

    #[test]
    fn the_segment_buffer_keeps_the_pieces_checksummed() {
        let data: Vec<u8> = (0..701u32).map(|i| (i * 13 + 1) as u8).collect();
        let h = header(TcpFlags::ACK);
        let s = segment(&h, (&data[..350], &data[350..]), 300);
        let mut buf = SegmentBuf::default();
        assert!(buf.push(&s));
        assert_eq!(buf.segments.len(), 3);
        let mut seq = 1000;
        let mut at = 0;
        for built in &buf.segments {
            let bytes = &buf.buf[built.bytes.clone()];
            let (parsed, payload) = TcpHeader::parse_v4(bytes, *s.local.ip(), *s.remote.ip()).expect("a valid segment");
            assert_eq!(parsed.seq, SeqNum(seq));
            assert_eq!(payload, &data[at..at + payload.len()]);
            assert!(bytes.len() <= MIN_HEADER_LEN + 12 + 300);
            seq += payload.len() as u32;
            at += payload.len();
        }
        assert_eq!(at, data.len());
    }
}
