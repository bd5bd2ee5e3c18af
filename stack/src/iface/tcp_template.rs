//! Prebuilt headers for a connection's frames. Most of the Ethernet, IPv4 and TCP headers of a connection's
//! segments never change: addresses, ports, TTL, the layout of the options. A [`FrameTemplate`] holds those
//! headers once, with the fields that do change (IP length and identification, TCP sequence and
//! acknowledgment numbers, flags, window, timestamps, both checksums) left zero, and the checksum sums of
//! the rest. A frame is then the template copied, those fields written and the checksums finished from the
//! sums (RFC 1071 section 2(D), incremental update): no header is built field by field, and none is read
//! back to be summed. Linux's `tcp_gso_segment` patches copies of one header the same way; BSD kept one
//! template per connection (`tcp_template`).
//!
//! Templates are kept in a small direct-mapped [`TemplateCache`], each checked against the segment before
//! use: a template built for other addresses, another next-hop address or other IP fields is rebuilt.

use super::StackConfig;
use crate::storage::ring_buffer::copy_pieces;
use crate::tcp::segment::OutSegment;
use crate::tcp::seq::SeqNum;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype, MacAddr};
use crate::wire::ip_proto;
use crate::wire::ipv4::{Ipv4Header, MIN_HEADER_LEN as IP_HEADER_LEN};
use crate::wire::tcp::{TcpFlags, TcpHeader, TcpOptions, MIN_HEADER_LEN as TCP_MIN_HEADER_LEN};
use std::net::SocketAddrV4;

const IP_AT: usize = ethernet::HEADER_LEN;
const TCP_AT: usize = IP_AT + IP_HEADER_LEN;
/// The Timestamps option as RFC 7323 Appendix A lays it out: NOP, NOP, kind, length, TSval, TSecr.
const TIMESTAMPS_LEN: usize = 12;
/// Where TSval and TSecr sit in the TCP header.
const TSVAL_AT: usize = TCP_MIN_HEADER_LEN + 4;
const TSECR_AT: usize = TSVAL_AT + 4;
const MAX_LEN: usize = TCP_AT + TCP_MIN_HEADER_LEN + TIMESTAMPS_LEN;

/// What a template's bytes are made of, besides the interface's own hardware and IP addresses (fixed for the
/// life of the stack): two templates with equal keys are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TemplateKey {
    dst_mac: MacAddr,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    ttl: u8,
    tos: u8,
    timestamps: bool,
}

impl TemplateKey {
    /// The key of the template for `segment`, or `None` when its header is not one a template describes:
    /// options other than Timestamps (a SYN's, SACK blocks) or an urgent pointer.
    fn of(config: &StackConfig, dst_mac: MacAddr, segment: &OutSegment<'_>) -> Option<TemplateKey> {
        let header = segment.header;
        let options = &header.options;
        let timestamps_at_most = options.mss.is_none()
            && options.window_scale.is_none()
            && !options.sack_permitted
            && options.sack_blocks().is_empty();
        if !timestamps_at_most || header.urgent != 0 {
            return None;
        }
        Some(TemplateKey {
            dst_mac,
            local: segment.local,
            remote: segment.remote,
            ttl: segment.ttl.unwrap_or(config.ttl),
            tos: segment.tos,
            timestamps: options.timestamps.is_some(),
        })
    }
}

/// The headers of a connection's frames, with the fields that change per segment zero (module docs).
#[derive(Debug, Clone)]
pub(crate) struct FrameTemplate {
    key: TemplateKey,
    bytes: [u8; MAX_LEN],
    /// Bytes of all three headers, and of the TCP header alone.
    len: usize,
    tcp_header_len: usize,
    /// The sum of the IPv4 header's fixed words.
    ip_sum: u64,
    /// The sum of the TCP header's fixed words and of the pseudo-header's addresses and protocol.
    tcp_sum: u64,
}

impl FrameTemplate {
    fn new(config: &StackConfig, key: TemplateKey) -> FrameTemplate {
        let mut bytes = [0u8; MAX_LEN];
        ethernet::write_header(&mut bytes, key.dst_mac, config.mac, ethertype::IPV4);
        let mut ip = Ipv4Header::new(config.ipv4.addr, *key.remote.ip(), ip_proto::TCP, key.ttl, 0);
        ip.total_len = 0;
        ip.tos = key.tos;
        ip.dont_fragment = true; // TCP's segments are sized to the path MTU
        ip.emit(&mut bytes[IP_AT..TCP_AT]);
        bytes[IP_AT + 10..IP_AT + 12].fill(0);
        let options = TcpOptions { timestamps: key.timestamps.then_some((0, 0)), ..TcpOptions::default() };
        let header = TcpHeader {
            src_port: key.local.port(),
            dst_port: key.remote.port(),
            seq: SeqNum(0),
            ack: SeqNum(0),
            flags: TcpFlags(0),
            window: 0,
            urgent: 0,
            options,
        };
        let tcp_header_len = header.header_len();
        let len = TCP_AT + tcp_header_len;
        header.emit_fields(&mut bytes[TCP_AT..len]);
        let ip_sum = checksum::add(0, &bytes[IP_AT..TCP_AT]);
        let pseudo = checksum::pseudo_header_v4(*key.local.ip(), *key.remote.ip(), ip_proto::TCP, 0);
        let tcp_sum = checksum::add(pseudo, &bytes[TCP_AT..len]);
        FrameTemplate { key, bytes, len, tcp_header_len, ip_sum, tcp_sum }
    }

    /// Bytes of the frame for a segment with `payload_len` bytes of payload.
    pub(crate) fn frame_len(&self, payload_len: usize) -> usize {
        self.len + payload_len
    }

    /// Writes the frame of `segment` into `frame` ([`FrameTemplate::frame_len`] bytes): IP identification
    /// `ident`, and the header's own sequence number and flags, or a piece's (a super-segment cut here).
    #[link_section = ".text.hot.ustack"]
    pub(crate) fn write(
        &self,
        frame: &mut [u8],
        ident: u16,
        segment: &OutSegment<'_>,
        seq: SeqNum,
        flags: TcpFlags,
        payload: (&[u8], &[u8]),
    ) {
        let (headers, body) = frame.split_at_mut(self.len);
        // Copies of a constant length, which compile to a few wide moves instead of a call to `memcpy`.
        const BARE_LEN: usize = TCP_AT + TCP_MIN_HEADER_LEN;
        headers[..BARE_LEN].copy_from_slice(&self.bytes[..BARE_LEN]);
        if self.len == MAX_LEN {
            headers[BARE_LEN..MAX_LEN].copy_from_slice(&self.bytes[BARE_LEN..MAX_LEN]);
        }
        let (a, b) = payload;
        copy_pieces(body, a, b);

        let tcp_len = self.tcp_header_len + a.len() + b.len();
        let total_len = (IP_HEADER_LEN + tcp_len) as u16;
        let ip = &mut headers[IP_AT..TCP_AT];
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        let ip_checksum = !checksum::fold(self.ip_sum + u64::from(total_len) + u64::from(ident));
        ip[10..12].copy_from_slice(&ip_checksum.to_be_bytes());

        let header = segment.header;
        let tcp = &mut headers[TCP_AT..];
        tcp[4..8].copy_from_slice(&seq.0.to_be_bytes());
        tcp[8..12].copy_from_slice(&header.ack.0.to_be_bytes());
        tcp[13] = flags.0;
        tcp[14..16].copy_from_slice(&header.window.to_be_bytes());
        let mut sum = self.tcp_sum + tcp_len as u64;
        sum += words(seq.0) + words(header.ack.0) + u64::from(flags.0) + u64::from(header.window);
        if let Some((tsval, tsecr)) = header.options.timestamps {
            tcp[TSVAL_AT..TSVAL_AT + 4].copy_from_slice(&tsval.to_be_bytes());
            tcp[TSECR_AT..TSECR_AT + 4].copy_from_slice(&tsecr.to_be_bytes());
            sum += words(tsval) + words(tsecr);
        }
        // The payload is summed from where it was copied from: loads right behind the copy's stores to the
        // same bytes would wait for them.
        sum = checksum::add(sum, a);
        if !b.is_empty() {
            sum = checksum::add_at(sum, b, a.len() % 2 == 1);
        }
        tcp[16..18].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
    }
}

/// The sum of a 32-bit field's two 16-bit words.
fn words(field: u32) -> u64 {
    u64::from(field >> 16) + u64::from(field & 0xffff)
}

/// Templates for the connections sending now, direct-mapped by addresses and ports: a lookup is one slot
/// and one comparison, and a connection whose slot another took rebuilds its template (about as much work
/// as building its headers once).
#[derive(Debug)]
pub(crate) struct TemplateCache {
    slots: Vec<Option<FrameTemplate>>,
}

/// Slots in the cache: a power of two.
const SLOTS: usize = 64;

impl Default for TemplateCache {
    fn default() -> Self {
        TemplateCache { slots: vec![None; SLOTS] }
    }
}

impl TemplateCache {
    /// The template for `segment`'s frame towards `dst_mac`, built if the cache has none; `None` when the
    /// segment's header is not one a template describes.
    #[link_section = ".text.hot.ustack"]
    pub(crate) fn get(
        &mut self,
        config: &StackConfig,
        dst_mac: MacAddr,
        segment: &OutSegment<'_>,
    ) -> Option<&FrameTemplate> {
        let key = TemplateKey::of(config, dst_mac, segment)?;
        let [a, b, c, d] = key.remote.ip().octets();
        let spread = u16::from_be_bytes([a ^ c, b ^ d]) ^ key.remote.port() ^ key.local.port().rotate_left(7);
        let slot = &mut self.slots[usize::from(spread) % SLOTS];
        if slot.as_ref().is_none_or(|t| t.key != key) {
            *slot = Some(FrameTemplate::new(config, key));
        }
        slot.as_ref()
    }
}
