//! The send path: routing, ARP resolution, fragmentation, and framing straight into the caller's sink.

use super::neighbor::{PendingPacket, QueueOutcome};
use super::{FrameSink, OrphanDatagram, Stack, LOOPBACK_QUEUE_LIMIT};
use crate::errno::{Errno, SysResult};
use crate::socket::Socket;
use crate::time::Instant;
use crate::wire::arp::{self, ArpOp, ArpPacket};
use crate::wire::ethernet::{self, ethertype, MacAddr};
use crate::wire::ip_proto;
use crate::wire::ipv4::{Ipv4Header, MIN_HEADER_LEN};
use crate::wire::udp::{self, UdpHeader};
use std::net::Ipv4Addr;

/// Where a datagram goes on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextHop {
    /// To the stack itself.
    Local,
    /// To every host on the link.
    Broadcast,
    /// To this neighbour (the destination itself, or the gateway).
    Neighbor(Ipv4Addr),
}

/// How an IP datagram is to be sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpSend {
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    /// Set DF when the datagram fits the MTU (Linux's IP_PMTUDISC_WANT); larger ones are fragmented.
    pub dont_fragment: bool,
    /// Never fragment: a datagram over the MTU is dropped and counted (TCP sizes its segments to the path
    /// MTU, so one too big is a bug or a stale MTU, never something to fragment).
    pub never_fragment: bool,
}

/// Takes a frame from `tx` for an IPv4 datagram with `payload_len` bytes of payload, writes its Ethernet and
/// IPv4 headers and counts it sent; returns the room for the payload, which the caller fills. `None`, counted
/// as a discard, when the sink has no room.
pub(crate) fn ipv4_frame<'a>(
    tx: &'a mut dyn FrameSink,
    counters: &mut super::counters::Counters,
    dst_mac: MacAddr,
    src_mac: MacAddr,
    header: &Ipv4Header,
    payload_len: usize,
) -> Option<&'a mut [u8]> {
    let frame = counted_frame(tx, counters, ethernet::HEADER_LEN + MIN_HEADER_LEN + payload_len)?;
    Some(write_ipv4_headers(frame, dst_mac, src_mac, header))
}

/// The identification of the next IP packet, counted as one IP sends (`IpOutRequests`).
#[inline(always)]
pub(crate) fn next_ip_ident(counters: &mut super::counters::Counters, next_ident: &mut u16) -> u16 {
    counters.ip.out_requests += 1;
    *next_ident = next_ident.wrapping_add(1);
    *next_ident
}

/// A frame of `len` bytes from `tx` for one IP packet, counted as sent, or `None`, counted as a discard, when
/// the sink has no room.
#[inline(always)]
pub(crate) fn counted_frame<'a>(
    tx: &'a mut dyn FrameSink,
    counters: &mut super::counters::Counters,
    len: usize,
) -> Option<&'a mut [u8]> {
    let frame = tx.frame(len);
    counters.count_frame_out(frame.is_some());
    frame
}

/// Writes the Ethernet and IPv4 headers at the front of `frame` and returns the rest, for the payload.
pub(crate) fn write_ipv4_headers<'a>(
    frame: &'a mut [u8],
    dst_mac: MacAddr,
    src_mac: MacAddr,
    header: &Ipv4Header,
) -> &'a mut [u8] {
    ethernet::write_header(frame, dst_mac, src_mac, ethertype::IPV4);
    let (headers, payload) = frame.split_at_mut(ethernet::HEADER_LEN + MIN_HEADER_LEN);
    header.emit(&mut headers[ethernet::HEADER_LEN..]);
    payload
}

impl super::StackConfig {
    /// Chooses the next hop for `dst` (a host's routing, RFC 1122 section 3.3.1: on-link destinations are
    /// sent to directly, others to the default gateway).
    pub(crate) fn route(&self, dst: Ipv4Addr) -> SysResult<NextHop> {
        if dst == self.ipv4.addr || dst.is_loopback() {
            return Ok(NextHop::Local);
        }
        if self.is_broadcast(dst) {
            return Ok(NextHop::Broadcast);
        }
        if dst.is_unspecified() || dst.is_multicast() {
            return Err(Errno::ENETUNREACH);
        }
        if self.ipv4.contains(dst) {
            return Ok(NextHop::Neighbor(dst));
        }
        self.gateway.map(NextHop::Neighbor).ok_or(Errno::ENETUNREACH)
    }

    /// The limited broadcast address or our subnet's.
    pub(crate) fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || Some(ip) == self.ipv4.broadcast()
    }
}

impl Stack {
    pub(crate) fn route(&self, dst: Ipv4Addr) -> SysResult<NextHop> {
        self.config.route(dst)
    }

    /// Sends `payload` (a whole transport segment) in an IPv4 datagram from our address.
    pub(crate) fn send_ipv4(
        &mut self,
        now: Instant,
        how: IpSend,
        payload: &[u8],
        tx: &mut dyn FrameSink,
    ) -> SysResult<()> {
        let hop = match self.route(how.dst) {
            Ok(hop) => hop,
            Err(e) => {
                self.counters.ip.out_no_routes += 1;
                return Err(e);
            }
        };
        let ident = next_ip_ident(&mut self.counters, &mut self.next_ident);
        // Our address, or for loopback the destination itself (a connection to 127.0.0.1 is from 127.0.0.1).
        let src = if hop == NextHop::Local && how.dst.is_loopback() { how.dst } else { self.config.ipv4.addr };
        let mut header = Ipv4Header::new(src, how.dst, how.protocol, how.ttl, payload.len());
        header.ident = ident;
        header.tos = how.tos;
        let packet = PendingPacket {
            header,
            payload: Vec::new(),
            dont_fragment: how.dont_fragment,
            never_fragment: how.never_fragment,
        };
        match hop {
            NextHop::Local => {
                if self.loopback.len() >= LOOPBACK_QUEUE_LIMIT {
                    self.counters.ip.out_discards += 1;
                    return Err(Errno::ENOBUFS);
                }
                let mut whole = vec![0u8; MIN_HEADER_LEN + payload.len()];
                header.emit(&mut whole);
                whole[MIN_HEADER_LEN..].copy_from_slice(payload);
                self.loopback.push_back(whole);
                Ok(())
            }
            NextHop::Broadcast => {
                self.emit_frames(&packet, payload, MacAddr::BROADCAST, tx);
                Ok(())
            }
            NextHop::Neighbor(ip) => {
                if let Some(mac) = self.neighbors.lookup(ip) {
                    self.emit_frames(&packet, payload, mac, tx);
                    return Ok(());
                }
                let packet = PendingPacket { payload: payload.to_vec(), ..packet };
                match self.neighbors.queue(now, ip, packet) {
                    QueueOutcome::QueuedSendRequest => {
                        self.send_arp(ArpOp::Request, MacAddr::BROADCAST, MacAddr::ZERO, ip, tx);
                    }
                    QueueOutcome::Queued => {}
                    QueueOutcome::QueuedDroppedOldest | QueueOutcome::Dropped => {
                        self.counters.arp.queue_drops += 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends a packet that was waiting for ARP, now that its next hop is known.
    pub(crate) fn emit_resolved(&mut self, packet: PendingPacket, mac: MacAddr, tx: &mut dyn FrameSink) {
        self.emit_frames(&packet, &packet.payload, mac, tx);
    }

    /// Frames one datagram, fragmenting it when it exceeds the MTU (RFC 791 section 3.2: every fragment but
    /// the last carries a multiple of 8 bytes; all carry the same identification).
    fn emit_frames(&mut self, packet: &PendingPacket, payload: &[u8], mac: MacAddr, tx: &mut dyn FrameSink) {
        let mtu = self.config.mtu;
        let mut header = packet.header;
        // (TCP's super-segments never come this way: they are cut before, see `TcpFrameWriter`.)
        if MIN_HEADER_LEN + payload.len() <= mtu {
            header.dont_fragment = packet.dont_fragment;
            self.emit_one(&header, payload, mac, tx);
            return;
        }
        let per_fragment = (mtu.saturating_sub(MIN_HEADER_LEN)) & !7;
        if per_fragment == 0 || packet.never_fragment {
            self.counters.ip.frag_fails += 1;
            return;
        }
        header.dont_fragment = false;
        let mut offset = 0;
        while offset < payload.len() {
            let len = per_fragment.min(payload.len() - offset);
            header.frag_offset = offset;
            header.more_fragments = offset + len < payload.len();
            header.total_len = MIN_HEADER_LEN + len;
            self.emit_one(&header, &payload[offset..offset + len], mac, tx);
            self.counters.ip.frag_creates += 1;
            offset += len;
        }
        self.counters.ip.frag_oks += 1;
    }

    fn emit_one(&mut self, header: &Ipv4Header, payload: &[u8], mac: MacAddr, tx: &mut dyn FrameSink) {
        let src_mac = self.config.mac;
        if let Some(room) = ipv4_frame(tx, &mut self.counters, mac, src_mac, header, payload.len()) {
            room.copy_from_slice(payload);
        }
    }

    /// Sends an ARP request or reply about our own address.
    pub(crate) fn send_arp(
        &mut self,
        op: ArpOp,
        frame_dst: MacAddr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
        tx: &mut dyn FrameSink,
    ) {
        let Some(frame) = tx.frame(ethernet::HEADER_LEN + arp::PACKET_LEN) else {
            self.counters.link.out_dropped += 1;
            return;
        };
        ethernet::write_header(frame, frame_dst, self.config.mac, ethertype::ARP);
        ArpPacket { op, sender_mac: self.config.mac, sender_ip: self.config.ipv4.addr, target_mac, target_ip }
            .emit(&mut frame[ethernet::HEADER_LEN..]);
        self.counters.link.out_frames += 1;
        match op {
            ArpOp::Request => self.counters.arp.out_requests += 1,
            ArpOp::Reply => self.counters.arp.out_replies += 1,
        }
    }

    /// ARP timers: retries, refresh probes, and failures. A failure is reported to the sender of each dropped
    /// packet as Host Unreachable, the way Linux reports it (an ICMP error generated locally).
    #[inline]
    pub(crate) fn poll_neighbors(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if self.neighbors.poll_at().is_some_and(|due| due <= now) {
            self.run_neighbor_timers(now, tx);
        }
    }

    /// [`Stack::poll_neighbors`]' work, out of line: a timer is rarely due.
    #[cold]
    #[inline(never)]
    fn run_neighbor_timers(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let actions = self.neighbors.poll(now);
        for ip in actions.broadcast_requests {
            self.send_arp(ArpOp::Request, MacAddr::BROADCAST, MacAddr::ZERO, ip, tx);
        }
        for (ip, mac) in actions.unicast_probes {
            self.send_arp(ArpOp::Request, mac, MacAddr::ZERO, ip, tx);
        }
        if !actions.failed.is_empty() {
            self.counters.arp.resolution_failures += 1;
        }
        for packet in actions.failed {
            self.counters.ip.out_no_routes += 1;
            self.deliver_local_error(now, &packet.header, &packet.payload, crate::errno::Errno::EHOSTUNREACH);
        }
    }

    /// Sends the datagrams UDP sockets have queued, oldest socket first.
    #[inline]
    pub(crate) fn flush_udp(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if !self.orphan_tx.is_empty() || !self.udp_tx_ready.is_empty() {
            self.flush_udp_datagrams(now, tx);
        }
    }

    /// [`Stack::flush_udp`]'s work, out of line so that a poll without UDP output stays short.
    #[inline(never)]
    fn flush_udp_datagrams(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(orphan) = self.orphan_tx.pop_front() {
            let OrphanDatagram { src, dst, ttl, tos, payload } = orphan;
            self.send_udp(now, src.port(), dst, ttl, tos, &payload, &mut scratch, tx);
        }
        while let Some(fd) = self.udp_tx_ready.pop_front() {
            while let Ok(Socket::Udp(sock)) = self.sockets.get_mut(fd) {
                let Some((&dst, data)) = sock.tx.front() else {
                    sock.tx_scheduled = false;
                    break;
                };
                let (src_port, ttl, tos) = (sock.local.map_or(0, |l| l.port()), sock.ttl, sock.tos);
                scratch.clear();
                scratch.resize(udp::HEADER_LEN, 0);
                scratch.extend_from_slice(data);
                sock.tx.pop();
                // Room in the send buffer: a writer waiting on it may go on.
                self.events.push(fd);
                self.send_udp_built(now, src_port, dst, ttl, tos, &mut scratch, tx);
            }
        }
        self.scratch = scratch;
    }

    #[allow(clippy::too_many_arguments)]
    fn send_udp(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: std::net::SocketAddrV4,
        ttl: u8,
        tos: u8,
        data: &[u8],
        scratch: &mut Vec<u8>,
        tx: &mut dyn FrameSink,
    ) {
        scratch.clear();
        scratch.resize(udp::HEADER_LEN, 0);
        scratch.extend_from_slice(data);
        self.send_udp_built(now, src_port, dst, ttl, tos, scratch, tx);
    }

    /// Fills in the UDP header of a datagram already laid out in `datagram` and sends it.
    #[allow(clippy::too_many_arguments)]
    fn send_udp_built(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: std::net::SocketAddrV4,
        ttl: u8,
        tos: u8,
        datagram: &mut [u8],
        tx: &mut dyn FrameSink,
    ) {
        // The checksum covers the source address IP will use: ours, or the destination itself for loopback.
        let src = if dst.ip().is_loopback() { *dst.ip() } else { self.config.ipv4.addr };
        UdpHeader { src_port, dst_port: dst.port() }.emit_v4(datagram, src, *dst.ip());
        let how =
            IpSend { dst: *dst.ip(), protocol: ip_proto::UDP, ttl, tos, dont_fragment: true, never_fragment: false };
        if self.send_ipv4(now, how, datagram, tx).is_ok() {
            self.counters.udp.out_datagrams += 1;
        }
    }
}
