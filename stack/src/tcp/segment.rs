//! Outgoing segments, built whole (header, options, payload, checksum) into one reused buffer; the stack then
//! hands each to IP. A connection never touches the IP layer itself.

use crate::wire::tcp::TcpHeader;
use std::net::SocketAddrV4;
use std::ops::Range;

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

/// Segments waiting to be handed to IP. Cleared, not freed, between uses: no allocation per segment once warm.
#[derive(Debug, Default)]
pub struct SegmentBuf {
    pub buf: Vec<u8>,
    pub segments: Vec<BuiltSegment>,
}

impl SegmentBuf {
    /// Builds a segment from `header` and a payload given as up to two slices (a ring buffer's two halves). A
    /// super-segment for the device to cut (`offloaded`) carries only a partial checksum.
    pub fn push(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: &TcpHeader,
        payload: (&[u8], &[u8]),
        offloaded: bool,
    ) {
        let start = self.buf.len();
        self.buf.resize(start + header.header_len(), 0);
        self.buf.extend_from_slice(payload.0);
        self.buf.extend_from_slice(payload.1);
        let segment = &mut self.buf[start..];
        if offloaded {
            header.emit_v4_for_offload(segment, *local.ip(), *remote.ip());
        } else {
            header.emit_v4(segment, *local.ip(), *remote.ip());
        }
        self.segments.push(BuiltSegment { local, remote, bytes: start..self.buf.len(), ttl: None, tos: 0 });
    }

    /// Sets the IP fields of the segment pushed last (a connection's socket options).
    pub fn set_last_ip(&mut self, ttl: Option<u8>, tos: u8) {
        if let Some(last) = self.segments.last_mut() {
            last.ttl = ttl;
            last.tos = tos;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.segments.clear();
    }
}
