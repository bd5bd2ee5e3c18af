//! Where outgoing segments go. A connection never touches the IP layer: it hands each segment it builds to a
//! [`SegmentOut`]. On the hot path that is the stack writing the segment straight into a device frame behind
//! its IP and Ethernet headers (no copy in between); otherwise it is a [`SegmentBuf`], which keeps segments
//! built whole until the stack hands them to IP.

use crate::wire::tcp::TcpHeader;
use std::net::SocketAddrV4;
use std::ops::Range;

/// A segment as a connection hands it over: addresses, header, payload (up to two slices, a ring buffer's
/// two halves) and the IP fields its socket sets.
#[derive(Debug, Clone, Copy)]
pub struct OutSegment<'a> {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub header: &'a TcpHeader,
    pub payload: (&'a [u8], &'a [u8]),
    /// A super-segment for the device to cut: it carries only a partial checksum.
    pub offloaded: bool,
    /// The socket's `IP_TTL` (`None`: the stack's default) and `IP_TOS`.
    pub ttl: Option<u8>,
    pub tos: u8,
}

impl<'a> OutSegment<'a> {
    /// A segment without payload, with the stack's IP defaults (resets and ACKs on behalf of no socket).
    pub fn bare(local: SocketAddrV4, remote: SocketAddrV4, header: &'a TcpHeader) -> Self {
        OutSegment { local, remote, header, payload: (&[], &[]), offloaded: false, ttl: None, tos: 0 }
    }

    /// Header and payload bytes.
    pub fn wire_len(&self) -> usize {
        self.header.header_len() + self.payload.0.len() + self.payload.1.len()
    }

    /// Writes the segment, checksummed, into `segment` (exactly [`OutSegment::wire_len`] bytes).
    pub fn emit(&self, segment: &mut [u8]) {
        self.header.emit_v4_with_payload(segment, *self.local.ip(), *self.remote.ip(), self.payload, self.offloaded);
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
    fn push(&mut self, segment: &OutSegment<'_>) -> bool {
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
        true
    }
}

impl SegmentBuf {
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
    fn push(&mut self, segment: &OutSegment<'_>) -> bool {
        self.first.push(segment) || self.fallback.push(segment)
    }
}
