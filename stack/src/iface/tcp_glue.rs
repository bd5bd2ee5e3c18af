//! Where the IP layer meets TCP: segments in (checksum, demultiplexing), segments out (through IP), ICMP
//! errors about TCP segments (RFC 5927), and the TCP timers.

use super::counters::Counters;
use super::neighbor::NeighborCache;
use super::output::{ipv4_frame, IpSend, NextHop};
use super::{FrameSink, Stack, StackConfig};
use crate::errno::Errno;
use crate::tcp::connection::{Outcome, State};
use crate::tcp::layer::Demuxed;
use crate::tcp::segment::{OutSegment, SegmentOut};
use crate::tcp::seq::SeqNum;
use crate::time::Instant;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype, MacAddr};
use crate::wire::ip_proto;
use crate::wire::ipv4::{Ipv4Header, MIN_HEADER_LEN};
use crate::wire::tcp::{TcpFlags, TcpHeader, MAX_OPTIONS_LEN, MIN_HEADER_LEN as TCP_MIN_HEADER_LEN};
use crate::wire::WireError;
use std::net::SocketAddrV4;

/// The longest TCP header: the fixed part and 40 bytes of options.
const TCP_MAX_HEADER_LEN: usize = TCP_MIN_HEADER_LEN + MAX_OPTIONS_LEN;

impl Stack {
    /// The MSS we announce: the MTU less the IPv4 and TCP headers (RFC 9293 section 3.7.1, MUST-14).
    pub(crate) fn tcp_our_mss(&self) -> u16 {
        (self.config.mtu.saturating_sub(MIN_HEADER_LEN + TCP_MIN_HEADER_LEN)).clamp(88, u16::MAX as usize) as u16
    }

    pub(crate) fn receive_tcp(&mut self, now: Instant, ip: &Ipv4Header, payload: &[u8], tx: &mut dyn FrameSink) {
        let mut seg = TcpHeader::default();
        let data = match seg.read_v4(payload, ip.src, ip.dst, self.rx_checksum_trusted) {
            Ok(data) => data,
            Err(e) => {
                self.tcp.counters.in_errs += 1;
                if e == WireError::BadChecksum {
                    self.tcp.counters.in_csum_errors += 1;
                }
                return;
            }
        };
        // TCP is unicast only: a segment to a broadcast address is dropped, never answered (RFC 1122 section
        // 4.2.3.10).
        if self.is_broadcast(ip.dst) {
            return;
        }
        let local = SocketAddrV4::new(ip.dst, seg.dst_port);
        let remote = SocketAddrV4::new(ip.src, seg.src_port);
        let mss = self.tcp_our_mss();
        self.tcp.receive(now, local, remote, &seg, data, mss);
        self.flush_tcp(now, tx);
    }

    /// Hands every segment TCP built to IP, if it built any (it usually has not: most segments are written
    /// straight into frames).
    #[inline]
    pub(crate) fn flush_tcp(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if !self.tcp.out.is_empty() {
            self.flush_tcp_segments(now, tx);
        }
    }

    /// [`Stack::flush_tcp`]'s work. TCP always sets DF: its segments are sized to the path MTU.
    fn flush_tcp_segments(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let mut out = std::mem::take(&mut self.tcp.out);
        for seg in &out.segments {
            let how = IpSend {
                dst: *seg.remote.ip(),
                protocol: ip_proto::TCP,
                ttl: seg.ttl.unwrap_or(self.config.ttl),
                tos: seg.tos,
                dont_fragment: true,
                never_fragment: true,
            };
            let _ = self.send_ipv4(now, how, &out.buf[seg.bytes.clone()], tx);
        }
        out.clear();
        self.tcp.out = out;
    }

    /// TCP timers and output queued by socket calls. Segments a socket call built whole (the RST of an
    /// abortive close) go first; connections then write theirs straight into frames.
    pub(crate) fn poll_tcp(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        self.flush_tcp(now, tx);
        let mut frames =
            TcpFrameWriter::new(&self.config, &self.neighbors, &mut self.counters, &mut self.next_ident, tx);
        self.tcp.poll(now, &mut frames);
        self.flush_tcp(now, tx);
    }

    /// The end of a receive batch: the connections it touched send, straight into frames.
    pub(crate) fn end_tcp_batch(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        self.flush_tcp(now, tx);
        let mut frames =
            TcpFrameWriter::new(&self.config, &self.neighbors, &mut self.counters, &mut self.next_ident, tx);
        self.tcp.end_batch(now, &mut frames);
        self.flush_tcp(now, tx);
    }

    /// An ICMP error (or a local ARP failure) about a TCP segment we sent. RFC 5927 section 4.1: act only if the
    /// quoted sequence number is one we have sent and not yet had acknowledged. In SYN-SENT an unreachable
    /// destination ends the attempt at once (Linux does the same for every code); on a synchronized
    /// connection the error is soft (RFC 1122 section 4.2.3.9), remembered and reported if the connection
    /// later times out. "Fragmentation needed" lowers the MSS (path MTU discovery, RFC 1191).
    pub(crate) fn tcp_error(
        &mut self,
        now: Instant,
        quoted: &Ipv4Header,
        transport: &[u8],
        errno: Errno,
        next_hop_mtu: Option<u16>,
    ) {
        let Ok((src_port, dst_port, seq)) = TcpHeader::parse_quoted(transport) else { return };
        let tuple = (SocketAddrV4::new(quoted.src, src_port), SocketAddrV4::new(quoted.dst, dst_port));
        let Some(Demuxed::Conn(k)) = self.tcp.demux.get(&tuple).copied() else { return };
        let Some(conn) = self.tcp.conns.get_mut(k) else { return };
        if seq.lt(conn.snd_una) || seq.ge(conn.snd_max) {
            return;
        }
        if let Some(mtu) = next_hop_mtu.filter(|_| errno == Errno::EMSGSIZE) {
            let mss = usize::from(mtu).saturating_sub(MIN_HEADER_LEN + TCP_MIN_HEADER_LEN).max(88);
            let mss = mss - if conn.negotiated.ts.is_some() { 12 } else { 0 };
            if mss < conn.negotiated.send_mss {
                conn.negotiated.send_mss = mss;
                conn.cc.set_mss(mss);
                conn.snd_nxt = conn.snd_una; // resend what was too big, now smaller
                self.tcp.wake(k);
            }
            return;
        }
        if conn.state == State::SynSent {
            self.tcp.counters.attempt_fails += 1;
            self.tcp.after_event(now, k, Outcome::Gone(Some(errno)));
        } else {
            conn.soft_error = Some(errno);
        }
    }
}

/// Writes TCP segments straight into device frames, behind the Ethernet and IPv4 headers, so that a
/// segment's payload is copied once, from the send buffer to the frame (and summed on the way). It takes the
/// common case only — a neighbour whose hardware address is known — and declines the rest (loopback, a next
/// hop still being resolved), which then take the general path through [`Stack::send_ipv4`] with the same
/// result. A super-segment goes to the device whole when the device cuts it where TCP would; otherwise it
/// is cut here, each piece written to a frame of its own (software GSO).
pub(crate) struct TcpFrameWriter<'a> {
    config: &'a StackConfig,
    neighbors: &'a NeighborCache,
    counters: &'a mut Counters,
    next_ident: &'a mut u16,
    tx: &'a mut dyn FrameSink,
}

impl<'a> TcpFrameWriter<'a> {
    pub(crate) fn new(
        config: &'a StackConfig,
        neighbors: &'a NeighborCache,
        counters: &'a mut Counters,
        next_ident: &'a mut u16,
        tx: &'a mut dyn FrameSink,
    ) -> Self {
        TcpFrameWriter { config, neighbors, counters, next_ident, tx }
    }

    /// True when the device takes `segment` whole and cuts it itself: it has segmentation offload for a
    /// packet this long, and it cuts at what fits the MTU behind these headers (the vnet header's
    /// `gso_size`, see `ustack_netdev::vnet`), which must be the MSS TCP cut at.
    fn device_cuts(&self, segment: &OutSegment<'_>, ip_len: usize) -> bool {
        ip_len <= self.config.tcp.gso_max_size
            && MIN_HEADER_LEN + segment.header.header_len() + segment.mss == self.config.mtu
    }

    /// What `send_ipv4` does for a TCP segment, with the segment written in place: one frame.
    #[inline(always)]
    fn write_frame(&mut self, segment: &OutSegment<'_>, mac: MacAddr, device_cuts: bool) {
        self.counters.ip.out_requests += 1;
        *self.next_ident = self.next_ident.wrapping_add(1);
        let tcp_len = segment.wire_len();
        let ttl = segment.ttl.unwrap_or(self.config.ttl);
        let mut ip = Ipv4Header::new(self.config.ipv4.addr, *segment.remote.ip(), ip_proto::TCP, ttl, tcp_len);
        ip.ident = *self.next_ident;
        ip.tos = segment.tos;
        // TCP always sets DF: its segments are sized to the path MTU.
        ip.dont_fragment = true;
        if let Some(room) = ipv4_frame(self.tx, self.counters, mac, self.config.mac, &ip, tcp_len) {
            segment.emit(room, device_cuts);
        }
    }

    /// A super-segment: whole to a device that cuts it, else cut here, a frame per piece. (Kept out of
    /// [`SegmentOut::push`], so that the path of a single segment stays short.)
    #[inline(never)]
    fn push_super_segment(&mut self, segment: &OutSegment<'_>, mac: MacAddr) -> bool {
        let ip_len = MIN_HEADER_LEN + segment.wire_len();
        if self.device_cuts(segment, ip_len) {
            self.write_frame(segment, mac, true);
        } else if MIN_HEADER_LEN + segment.header.header_len() + segment.mss > self.config.mtu {
            return false; // its pieces would be too long for the MTU
        } else {
            self.cut_super_segment(segment, mac);
        }
        true
    }

    /// Cuts a super-segment into frames, a piece each (software GSO). The headers are built once, as a
    /// template, and each frame is the template with the piece's own IP length and identification and TCP
    /// sequence number and flags patched in; both checksums are the template's sums with those words added
    /// (RFC 1071 section 2(D), incremental update), so no header is built or read back per piece. Linux's
    /// `tcp_gso_segment` patches its copies of the headers the same way.
    fn cut_super_segment(&mut self, segment: &OutSegment<'_>, mac: MacAddr) {
        const IP_AT: usize = ethernet::HEADER_LEN;
        const TCP_AT: usize = IP_AT + MIN_HEADER_LEN;
        let (src, dst) = (self.config.ipv4.addr, *segment.remote.ip());
        let tcp_header_len = segment.header.header_len();
        let headers_len = TCP_AT + tcp_header_len;
        // The template: length, identification, sequence number, flags and both checksums zero.
        let mut template = [0u8; TCP_AT + TCP_MAX_HEADER_LEN];
        ethernet::write_header(&mut template, mac, self.config.mac, ethertype::IPV4);
        let ttl = segment.ttl.unwrap_or(self.config.ttl);
        let mut ip = Ipv4Header::new(src, dst, ip_proto::TCP, ttl, 0);
        ip.total_len = 0;
        ip.tos = segment.tos;
        ip.dont_fragment = true; // TCP's segments are sized to the path MTU
        ip.emit(&mut template[IP_AT..TCP_AT]);
        template[IP_AT + 10..IP_AT + 12].fill(0);
        let header = TcpHeader { seq: SeqNum(0), flags: TcpFlags(0), ..*segment.header };
        header.emit_fields(&mut template[TCP_AT..headers_len]);
        let ip_sum = checksum::add(0, &template[IP_AT..TCP_AT]);
        let tcp_sum = checksum::add(0, &template[TCP_AT..headers_len]);

        for piece in segment.pieces_iter() {
            let Some(frame) = self.tx.frame(headers_len + piece.len) else {
                self.counters.link.out_dropped += 1;
                self.counters.ip.out_discards += 1;
                continue;
            };
            self.counters.link.out_frames += 1;
            self.counters.ip.out_requests += 1;
            *self.next_ident = self.next_ident.wrapping_add(1);
            let (headers, body) = frame.split_at_mut(headers_len);
            headers.copy_from_slice(&template[..headers_len]);

            let tcp_len = tcp_header_len + piece.len;
            let total_len = (MIN_HEADER_LEN + tcp_len) as u16;
            let ident = *self.next_ident;
            headers[IP_AT + 2..IP_AT + 4].copy_from_slice(&total_len.to_be_bytes());
            headers[IP_AT + 4..IP_AT + 6].copy_from_slice(&ident.to_be_bytes());
            let ip_checksum = !checksum::fold(ip_sum + u64::from(total_len) + u64::from(ident));
            headers[IP_AT + 10..IP_AT + 12].copy_from_slice(&ip_checksum.to_be_bytes());

            let seq = segment.header.seq + piece.offset;
            headers[TCP_AT + 4..TCP_AT + 8].copy_from_slice(&seq.0.to_be_bytes());
            headers[TCP_AT + 13] = piece.flags.0;
            let (a, b) = segment.piece_payload(&piece);
            body[..a.len()].copy_from_slice(a);
            body[a.len()..].copy_from_slice(b);
            let mut sum = tcp_sum + checksum::pseudo_header_v4(src, dst, ip_proto::TCP, tcp_len);
            sum += u64::from(seq.0 >> 16) + u64::from(seq.0 & 0xffff) + u64::from(piece.flags.0);
            sum = checksum::add_at(checksum::add(sum, a), b, a.len() % 2 == 1);
            headers[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        }
    }
}

impl SegmentOut for TcpFrameWriter<'_> {
    #[link_section = ".text.hot.ustack"]
    fn push(&mut self, segment: &OutSegment<'_>) -> bool {
        let dst = *segment.remote.ip();
        let Ok(NextHop::Neighbor(hop)) = self.config.route(dst) else { return false };
        let Some(mac) = self.neighbors.lookup(hop) else { return false };
        if segment.is_super_segment() {
            return self.push_super_segment(segment, mac);
        }
        if MIN_HEADER_LEN + segment.wire_len() > self.config.mtu {
            return false; // too long for the MTU: IP refuses it (TCP sets DF)
        }
        self.write_frame(segment, mac, false);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;
    use crate::wire::tcp::TcpOptions;

    const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    /// Frames a writer makes of `segment`, and its counters.
    fn frames(segment: &OutSegment<'_>, cut: impl Fn(&mut TcpFrameWriter<'_>, MacAddr)) -> (Vec<Vec<u8>>, Counters) {
        let config = StackConfig::new(US, "198.18.0.2/24".parse().unwrap());
        let mut neighbors = NeighborCache::new(config.arp.clone(), 1);
        neighbors.learn(Instant::ZERO, *segment.remote.ip(), PEER, true);
        let (mut counters, mut ident, mut out) = (Counters::default(), 77u16, Vec::<Vec<u8>>::new());
        let mut writer = TcpFrameWriter::new(&config, &neighbors, &mut counters, &mut ident, &mut out);
        cut(&mut writer, PEER);
        (out, counters)
    }

    #[test]
    fn frames_cut_from_the_template_match_pieces_written_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 3) as u8).collect();
        let options = TcpOptions { timestamps: Some((123_456, 654_321)), ..TcpOptions::default() };
        let header = TcpHeader {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNum(0xffff_f000), // the pieces' sequence numbers wrap
            ack: SeqNum(42),
            flags: TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN | TcpFlags::CWR,
            window: 501,
            urgent: 0,
            options,
        };
        for split in [0, 1, 1447, 1448, 2001, 4999] {
            let segment = OutSegment {
                local: "198.18.0.2:80".parse().unwrap(),
                remote: "198.18.0.1:40000".parse().unwrap(),
                header: &header,
                payload: (&data[..split], &data[split..]),
                mss: 1448,
                ttl: Some(33),
                tos: 0x10,
            };
            let (fast, fast_counters) = frames(&segment, |w, mac| w.cut_super_segment(&segment, mac));
            let (whole, whole_counters) =
                frames(&segment, |w, mac| segment.for_each_piece(|piece| w.write_frame(piece, mac, false)));
            assert_eq!(fast.len(), 4, "5000 bytes at 1448 a segment");
            assert_eq!(fast, whole, "payload split at {split}");
            assert_eq!(fast_counters, whole_counters);
            for frame in &fast {
                let ip = &frame[ethernet::HEADER_LEN..];
                let (ip_header, tcp) = Ipv4Header::parse(ip).expect("a valid IPv4 header");
                TcpHeader::parse_v4(tcp, ip_header.src, ip_header.dst).expect("a valid TCP checksum");
            }
        }
    }
}
