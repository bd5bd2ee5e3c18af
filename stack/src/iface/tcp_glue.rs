//! Where the IP layer meets TCP: segments in (checksum, demultiplexing), segments out (through IP), ICMP
//! errors about TCP segments (RFC 5927), and the TCP timers.

use super::counters::Counters;
use super::neighbor::NeighborCache;
use super::output::{counted_frame, ipv4_frame, next_ip_ident, write_ipv4_headers, IpSend, NextHop};
use super::tcp_template::TemplateCache;
use super::{FrameSink, Stack, StackConfig};
use crate::errno::Errno;
use crate::tcp::connection::{Outcome, State};
use crate::tcp::layer::Demuxed;
use crate::tcp::segment::{OutSegment, SegmentOut};
use crate::time::Instant;
use crate::wire::ethernet::{self, MacAddr};
use crate::wire::ip_proto;
use crate::wire::ipv4::{Ipv4Header, MIN_HEADER_LEN};
use crate::wire::tcp::{TcpHeader, MIN_HEADER_LEN as TCP_MIN_HEADER_LEN};
use crate::wire::WireError;
use std::net::SocketAddrV4;

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
        self.with_tcp_frames(now, tx, |tcp, frames| tcp.poll(now, frames));
    }

    /// The end of a receive batch: the connections it touched send, straight into frames.
    pub(crate) fn end_tcp_batch(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        self.with_tcp_frames(now, tx, |tcp, frames| tcp.end_batch(now, frames));
    }

    /// Lets the TCP layer write frames into `tx` through `f`, with what it built whole before and during `f`
    /// handed to IP around it.
    #[inline(always)]
    fn with_tcp_frames(
        &mut self,
        now: Instant,
        tx: &mut dyn FrameSink,
        f: impl FnOnce(&mut crate::tcp::layer::TcpLayer, &mut TcpFrameWriter<'_>),
    ) {
        self.flush_tcp(now, tx);
        let mut frames = TcpFrameWriter::new(
            &self.config,
            &self.neighbors,
            &mut self.counters,
            &mut self.next_ident,
            &mut self.tcp_templates,
            tx,
        );
        f(&mut self.tcp, &mut frames);
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
        let Some(Demuxed::Conn(k)) = self.tcp.demux.get(&tuple) else { return };
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
    templates: &'a mut TemplateCache,
    tx: &'a mut dyn FrameSink,
}

impl<'a> TcpFrameWriter<'a> {
    pub(crate) fn new(
        config: &'a StackConfig,
        neighbors: &'a NeighborCache,
        counters: &'a mut Counters,
        next_ident: &'a mut u16,
        templates: &'a mut TemplateCache,
        tx: &'a mut dyn FrameSink,
    ) -> Self {
        TcpFrameWriter { config, neighbors, counters, next_ident, templates, tx }
    }

    /// True when the device takes `segment` whole and cuts it itself: it has segmentation offload for a
    /// packet this long, and it cuts at what fits the MTU behind these headers (the vnet header's
    /// `gso_size`, see `ustack_netdev::vnet`), which must be the MSS TCP cut at.
    fn device_cuts(&self, segment: &OutSegment<'_>, ip_len: usize) -> bool {
        ip_len <= self.config.tcp.gso_max_size
            && MIN_HEADER_LEN + segment.header.header_len() + segment.mss == self.config.mtu
    }

    /// The IPv4 header of `segment`'s packet, counted as one IP sends.
    #[inline(always)]
    fn ip_header(&mut self, segment: &OutSegment<'_>) -> Ipv4Header {
        let ident = next_ip_ident(self.counters, self.next_ident);
        let ttl = segment.ttl.unwrap_or(self.config.ttl);
        let remote = *segment.remote.ip();
        let mut ip = Ipv4Header::new(self.config.ipv4.addr, remote, ip_proto::TCP, ttl, segment.wire_len());
        ip.ident = ident;
        ip.tos = segment.tos;
        // TCP always sets DF: its segments are sized to the path MTU.
        ip.dont_fragment = true;
        ip
    }

    /// What `send_ipv4` does for a TCP segment, with the segment written in place: one frame.
    #[inline(always)]
    fn write_frame(&mut self, segment: &OutSegment<'_>, mac: MacAddr) {
        let ip = self.ip_header(segment);
        if let Some(room) = ipv4_frame(self.tx, self.counters, mac, self.config.mac, &ip, segment.wire_len()) {
            segment.emit(room);
        }
    }

    /// A super-segment the device cuts: its headers are written here, with the partial checksum the device
    /// completes, and its payload goes to the sink where it lies in the send buffer (copied only if the
    /// device cannot take a frame in pieces, see [`FrameSink::frame_with_tail`]).
    fn write_offloaded(&mut self, segment: &OutSegment<'_>, mac: MacAddr) {
        let ip = self.ip_header(segment);
        let src_mac = self.config.mac;
        let tcp_len = segment.wire_len();
        let head_len = ethernet::HEADER_LEN + MIN_HEADER_LEN + segment.header.header_len();
        let sent = self.tx.frame_with_tail(head_len, segment.payload, &mut |head| {
            let tcp = write_ipv4_headers(head, mac, src_mac, &ip);
            segment.header.emit_v4_for_offload(tcp, ip.src, ip.dst, tcp_len);
        });
        self.counters.count_frame_out(sent);
    }

    /// A super-segment: whole to a device that cuts it, else cut here, a frame per piece. (Kept out of
    /// [`SegmentOut::push`], so that the path of a single segment stays short.)
    #[inline(never)]
    fn push_super_segment(&mut self, segment: &OutSegment<'_>, mac: MacAddr) -> bool {
        let ip_len = MIN_HEADER_LEN + segment.wire_len();
        if self.device_cuts(segment, ip_len) {
            self.write_offloaded(segment, mac);
        } else if MIN_HEADER_LEN + segment.header.header_len() + segment.mss > self.config.mtu {
            return false; // its pieces would be too long for the MTU
        } else {
            self.cut_super_segment(segment, mac);
        }
        true
    }

    /// Cuts a super-segment into frames, a piece each (software GSO), each written from the connection's
    /// template with the piece's own sequence number and flags (see `tcp_template`). A header no template
    /// describes (one carrying SACK blocks) has each piece built whole instead.
    fn cut_super_segment(&mut self, segment: &OutSegment<'_>, mac: MacAddr) {
        let Some(template) = self.templates.get(self.config, mac, segment) else {
            return segment.for_each_piece(|piece| self.write_frame(piece, mac));
        };
        for piece in segment.pieces_iter() {
            let ident = next_ip_ident(self.counters, self.next_ident);
            let Some(frame) = counted_frame(self.tx, self.counters, template.frame_len(piece.len)) else { continue };
            let seq = segment.header.seq + piece.offset;
            template.write(frame, ident, segment, seq, piece.flags, segment.piece_payload(&piece));
        }
    }

    /// A single segment written from the connection's template, if its header is one a template describes.
    #[inline(always)]
    fn write_from_template(&mut self, segment: &OutSegment<'_>, mac: MacAddr) -> bool {
        let Some(template) = self.templates.get(self.config, mac, segment) else { return false };
        let ident = next_ip_ident(self.counters, self.next_ident);
        if let Some(frame) = counted_frame(self.tx, self.counters, template.frame_len(segment.payload_len())) {
            let header = segment.header;
            template.write(frame, ident, segment, header.seq, header.flags, segment.payload);
        }
        true
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
        if !self.write_from_template(segment, mac) {
            self.write_frame(segment, mac);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::seq::SeqNum;
    use crate::time::Instant;
    use crate::wire::ethernet;
    use crate::wire::tcp::{TcpFlags, TcpOptions};

    const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    /// Frames a writer makes of `segment`, and its counters.
    fn frames(segment: &OutSegment<'_>, cut: impl Fn(&mut TcpFrameWriter<'_>, MacAddr)) -> (Vec<Vec<u8>>, Counters) {
        let mut out = Vec::<Vec<u8>>::new();
        let counters = frames_into(&mut out, 0, segment, cut);
        (out, counters)
    }

    /// What a writer does with `segment` into `out`, on a device that takes super-segments of up to
    /// `gso_max_size` bytes: its counters.
    fn frames_into(
        out: &mut dyn FrameSink,
        gso_max_size: usize,
        segment: &OutSegment<'_>,
        cut: impl Fn(&mut TcpFrameWriter<'_>, MacAddr),
    ) -> Counters {
        let mut config = StackConfig::new(US, "198.18.0.2/24".parse().unwrap());
        config.tcp.gso_max_size = gso_max_size;
        let mut neighbors = NeighborCache::new(config.arp.clone(), 1);
        neighbors.learn(Instant::ZERO, *segment.remote.ip(), PEER, true);
        let (mut counters, mut ident) = (Counters::default(), 77u16);
        let mut templates = TemplateCache::default();
        let mut writer = TcpFrameWriter::new(&config, &neighbors, &mut counters, &mut ident, &mut templates, out);
        cut(&mut writer, PEER);
        counters
    }

    /// A sink whose device gathers: it keeps each frame's headers and the addresses and lengths of its tail's
    /// slices, as a TAP hands them to `writev`.
    #[derive(Default)]
    struct Gathering {
        frames: Vec<(Vec<u8>, [Span; 2])>,
    }

    /// Where a slice lies: its address and length.
    type Span = (usize, usize);

    impl FrameSink for Gathering {
        fn frame(&mut self, _len: usize) -> Option<&mut [u8]> {
            panic!("a super-segment the device cuts is not copied into a frame");
        }
        fn frame_with_tail(&mut self, head_len: usize, tail: (&[u8], &[u8]), write: &mut dyn FnMut(&mut [u8])) -> bool {
            let mut head = vec![0; head_len];
            write(&mut head);
            let at = |s: &[u8]| (s.as_ptr() as usize, s.len());
            self.frames.push((head, [at(tail.0), at(tail.1)]));
            true
        }
    }

    /// Checks that every frame is a valid IPv4 packet with a valid TCP segment.
    fn assert_valid(frames: &[Vec<u8>]) {
        for frame in frames {
            let ip = &frame[ethernet::HEADER_LEN..];
            let (ip_header, tcp) = Ipv4Header::parse(ip).expect("a valid IPv4 header");
            TcpHeader::parse_v4(tcp, ip_header.src, ip_header.dst).expect("a valid TCP checksum");
        }
    }

    #[test]
    fn single_segments_from_the_template_match_segments_built_whole() {
        let data: Vec<u8> = (0..301u32).map(|i| (i * 29 + 11) as u8).collect();
        let timestamps = TcpOptions { timestamps: Some((0xfedc_ba98, 0x0123_4567)), ..TcpOptions::default() };
        let mut sack = TcpOptions { timestamps: Some((5, 6)), sack_count: 1, ..TcpOptions::default() };
        sack.sack_blocks[0] = (SeqNum(100), SeqNum(200));
        let cases = [
            (TcpOptions::default(), TcpFlags::ACK, 0, true),
            (timestamps, TcpFlags::ACK | TcpFlags::PSH, 0, true),
            (timestamps, TcpFlags::ACK | TcpFlags::FIN | TcpFlags::ECE, 0, true),
            (sack, TcpFlags::ACK, 0, false), // SACK blocks: no template
            (timestamps, TcpFlags::ACK | TcpFlags::URG, 7, false), // an urgent pointer: no template
        ];
        for (options, flags, urgent, templated) in cases {
            let header = TcpHeader {
                src_port: 5001,
                dst_port: 0xfffe,
                seq: SeqNum(0xffff_fff0),
                ack: SeqNum(0x8000_0001),
                flags,
                window: 0xffff,
                urgent,
                options,
            };
            for (len, split) in [(0, 0), (1, 0), (1, 1), (64, 31), (301, 0), (301, 150), (300, 299)] {
                let segment = OutSegment {
                    local: "198.18.0.2:5001".parse().unwrap(),
                    remote: "198.18.0.1:65534".parse().unwrap(),
                    header: &header,
                    payload: (&data[..split], &data[split..len]),
                    mss: 1448,
                    ttl: None,
                    tos: 0x28,
                };
                let (fast, fast_counters) = frames(&segment, |w, mac| {
                    assert_eq!(w.write_from_template(&segment, mac), templated, "{options:?}");
                });
                let (whole, whole_counters) = frames(&segment, |w, mac| w.write_frame(&segment, mac));
                if templated {
                    assert_eq!(fast, whole, "{len} bytes split at {split}, {options:?}, {flags:?}");
                    assert_eq!(fast_counters, whole_counters);
                    assert_valid(&fast);
                } else {
                    assert!(fast.is_empty());
                }
            }
        }
    }

    #[test]
    fn a_template_is_rebuilt_when_what_it_was_built_from_changes() {
        let config = StackConfig::new(US, "198.18.0.2/24".parse().unwrap());
        let header = TcpHeader { src_port: 80, dst_port: 40000, flags: TcpFlags::ACK, ..TcpHeader::default() };
        let segment = |ttl: Option<u8>, remote: &str| OutSegment {
            local: "198.18.0.2:80".parse().unwrap(),
            remote: remote.parse().unwrap(),
            header: &header,
            payload: (&[], &[]),
            mss: 1448,
            ttl,
            tos: 0,
        };
        let mut cache = TemplateCache::default();
        let frame_of = |cache: &mut TemplateCache, mac: MacAddr, seg: &OutSegment<'_>| {
            let template = cache.get(&config, mac, seg).expect("a header without options has a template");
            let mut frame = vec![0; template.frame_len(0)];
            template.write(&mut frame, 1, seg, seg.header.seq, seg.header.flags, (&[], &[]));
            frame
        };
        let first = frame_of(&mut cache, PEER, &segment(None, "198.18.0.1:40000"));
        assert_eq!(first[..6], PEER.0);
        let moved = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(
            frame_of(&mut cache, moved, &segment(None, "198.18.0.1:40000"))[..6],
            moved.0,
            "new next-hop address"
        );
        let ttl = frame_of(&mut cache, moved, &segment(Some(7), "198.18.0.1:40000"));
        assert_eq!(ttl[ethernet::HEADER_LEN + 8], 7, "new TTL");
        // Another peer whose template may share the slot, then the first again: each gets its own headers.
        let other = frame_of(&mut cache, moved, &segment(Some(7), "198.18.0.77:40000"));
        assert_eq!(other[ethernet::HEADER_LEN + 16..ethernet::HEADER_LEN + 20], [198, 18, 0, 77]);
        let again = frame_of(&mut cache, moved, &segment(Some(7), "198.18.0.1:40000"));
        assert_eq!(again, ttl);
        assert_valid(&[first, ttl, other, again]);
    }

    /// A super-segment for a device with segmentation offload goes to the sink as its headers and its payload
    /// where it lies (no copy); copied together they are the frame the copying sink gets, whose partial
    /// checksum the device (here `vnet::complete_checksum`, as the kernel would) completes into a valid one.
    #[test]
    fn a_super_segment_the_device_cuts_is_handed_over_from_the_send_buffer() {
        use ustack_netdev::vnet::{complete_checksum, Checksum, VnetHeader};
        let data: Vec<u8> = (0..60_000u32).map(|i| (i * 13 + 5) as u8).collect();
        let options = TcpOptions { timestamps: Some((77, 88)), ..TcpOptions::default() };
        let header = TcpHeader {
            src_port: 80,
            dst_port: 40000,
            seq: SeqNum(0xffff_0000),
            ack: SeqNum(42),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 501,
            urgent: 0,
            options,
        };
        for split in [0, 1, 30_001, 60_000] {
            let payload = (&data[..split], &data[split..]);
            let segment = OutSegment {
                local: "198.18.0.2:80".parse().unwrap(),
                remote: "198.18.0.1:40000".parse().unwrap(),
                header: &header,
                payload,
                mss: 1500 - 20 - 32,
                ttl: None,
                tos: 0,
            };
            let mut gathered = Gathering::default();
            let gathered_counters = frames_into(&mut gathered, 65_535, &segment, |w, _| assert!(w.push(&segment)));
            let mut copied = Vec::<Vec<u8>>::new();
            let copied_counters = frames_into(&mut copied, 65_535, &segment, |w, _| assert!(w.push(&segment)));
            assert_eq!(gathered_counters, copied_counters);
            assert_eq!((gathered.frames.len(), copied.len()), (1, 1), "one frame for the device to cut");
            let (head, tail) = &gathered.frames[0];
            let at = |s: &[u8]| (s.as_ptr() as usize, s.len());
            assert_eq!(*tail, [at(payload.0), at(payload.1)], "the payload is handed over where it lies");
            let mut frame = head.clone();
            frame.extend_from_slice(&data);
            assert_eq!(frame, copied[0], "payload split at {split}");
            let vnet = VnetHeader::for_sending(&frame, 1500);
            assert_eq!(complete_checksum(&vnet, &mut frame), Checksum::Fixed);
            assert_valid(&[frame]);
        }
    }

    #[test]
    fn frames_cut_from_the_template_match_pieces_written_whole() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 3) as u8).collect();
        let timestamps = TcpOptions { timestamps: Some((123_456, 654_321)), ..TcpOptions::default() };
        // With SACK blocks no template describes the header: the pieces are built whole.
        let mut sack = TcpOptions { sack_count: 1, ..timestamps };
        sack.sack_blocks[0] = (SeqNum(7000), SeqNum(9000));
        for options in [timestamps, sack] {
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
                    frames(&segment, |w, mac| segment.for_each_piece(|piece| w.write_frame(piece, mac)));
                assert_eq!(fast.len(), 4, "5000 bytes at 1448 a segment");
                assert_eq!(fast, whole, "payload split at {split}, {options:?}");
                assert_eq!(fast_counters, whole_counters);
                assert_valid(&fast);
            }
        }
    }
}
