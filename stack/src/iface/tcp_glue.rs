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
use crate::time::Instant;
use crate::wire::ethernet::MacAddr;
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
        let (seg, data) = match TcpHeader::parse_v4_trusting(payload, ip.src, ip.dst, self.rx_checksum_trusted) {
            Ok(parsed) => parsed,
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

    /// Hands every segment TCP built to IP. TCP always sets DF: its segments are sized to the path MTU.
    pub(crate) fn flush_tcp(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if self.tcp.out.is_empty() {
            return;
        }
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
            segment.for_each_piece(|piece| self.write_frame(piece, mac, false));
        }
        true
    }
}

impl SegmentOut for TcpFrameWriter<'_> {
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
