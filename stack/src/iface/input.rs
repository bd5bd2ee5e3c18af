//! The receive path: a frame in, demultiplexed layer by layer to the socket that owns it.

use super::reassembly::FragmentOutcome;
use super::{FrameSink, Stack};
use crate::socket::Socket;
use crate::time::Instant;
use crate::wire::arp::{ArpOp, ArpPacket};
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmpv4::{icmp_type, unreach_code};
use crate::wire::ipv4::Ipv4Header;
use crate::wire::udp::UdpHeader;
use crate::wire::{ip_proto, WireError};
use std::net::SocketAddrV4;

impl Stack {
    /// Processes one received Ethernet frame at time `now`; replies (ARP, ICMP) go to `tx`.
    pub fn receive(&mut self, now: Instant, frame: &[u8], tx: &mut dyn FrameSink) {
        self.last_now = self.last_now.max(now);
        self.counters.link.in_frames += 1;
        let Ok(eth) = EthernetFrame::parse(frame) else {
            self.counters.link.in_malformed += 1;
            return;
        };
        let dst = eth.dst();
        if dst != self.config.mac && !dst.is_broadcast() {
            self.counters.link.in_not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            ethertype::ARP => self.receive_arp(now, eth.payload(), tx),
            ethertype::IPV4 => self.receive_ipv4(now, eth.payload(), dst.is_broadcast(), tx),
            _ => self.counters.link.in_unknown_ethertype += 1,
        }
    }

    /// Processes a batch of frames received together (one device read) at time `now`. TCP output the
    /// frames cause waits until the whole batch is in (see `TcpLayer::end_batch`): one ACK then answers many
    /// segments, and acknowledged space is refilled in one burst.
    pub fn receive_batch<'a>(
        &mut self,
        now: Instant,
        frames: impl IntoIterator<Item = &'a [u8]>,
        tx: &mut dyn FrameSink,
    ) {
        self.receive_frames(now, frames.into_iter().map(|f| (f, false)), tx);
    }

    /// [`Stack::receive_batch`] for a device's batch, with what the device knows of each frame: a frame
    /// whose checksum it marked as trusted (`FrameBatch::mark_checksum_trusted`) skips TCP and UDP checksum
    /// verification.
    #[link_section = ".text.hot.ustack"]
    pub fn receive_device_batch(&mut self, now: Instant, batch: &ustack_netdev::FrameBatch, tx: &mut dyn FrameSink) {
        self.receive_frames(now, batch.iter_with_trust(), tx);
    }

    fn receive_frames<'a>(
        &mut self,
        now: Instant,
        frames: impl Iterator<Item = (&'a [u8], bool)>,
        tx: &mut dyn FrameSink,
    ) {
        self.tcp.batching = true;
        for (frame, trusted) in frames {
            self.rx_checksum_trusted = trusted;
            self.receive(now, frame, tx);
        }
        self.rx_checksum_trusted = false;
        self.end_tcp_batch(now, tx);
    }

    /// RFC 826 "Packet Reception", in order: update an existing entry for the sender (merge), then if the
    /// packet is for our address add the sender if new, and answer a request.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn receive_arp(&mut self, now: Instant, payload: &[u8], tx: &mut dyn FrameSink) {
        let Ok(arp) = ArpPacket::parse(payload) else {
            self.counters.arp.in_malformed += 1;
            return;
        };
        match arp.op {
            ArpOp::Request => self.counters.arp.in_requests += 1,
            ArpOp::Reply => self.counters.arp.in_replies += 1,
        }
        let for_us = arp.target_ip == self.config.ipv4.addr;
        let released = self.neighbors.learn(now, arp.sender_ip, arp.sender_mac, for_us);
        for packet in released {
            self.emit_resolved(packet, arp.sender_mac, tx);
        }
        if for_us && arp.op == ArpOp::Request && arp.sender_mac.is_unicast() {
            self.send_arp(ArpOp::Reply, arp.sender_mac, arp.sender_mac, arp.sender_ip, tx);
        }
    }

    /// Validates an IPv4 packet and hands it, reassembled if need be, to its transport protocol.
    #[link_section = ".text.hot.ustack"]
    pub(crate) fn receive_ipv4(&mut self, now: Instant, packet: &[u8], link_broadcast: bool, tx: &mut dyn FrameSink) {
        self.counters.ip.in_receives += 1;
        let (header, payload) = match Ipv4Header::parse(packet) {
            Ok(parsed) => parsed,
            Err(WireError::BadChecksum) => {
                self.counters.ip.in_csum_errors += 1;
                self.counters.ip.in_hdr_errors += 1;
                return;
            }
            Err(_) => {
                self.counters.ip.in_hdr_errors += 1;
                return;
            }
        };
        // RFC 1122 section 3.2.1.3: a host silently discards a datagram not addressed to one of its addresses
        // (it does not forward), and one whose source is a broadcast or multicast address (a "martian").
        if !self.accepts_destination(header.dst)
            || header.src.is_broadcast()
            || header.src.is_multicast()
            || self.is_broadcast(header.src)
        {
            self.counters.ip.in_addr_errors += 1;
            return;
        }
        if header.is_fragment() {
            self.counters.ip.reasm_reqds += 1;
            match self.reassembler.add(now, &header, payload) {
                FragmentOutcome::Held => {}
                FragmentOutcome::Dropped => self.counters.ip.reasm_fails += 1,
                FragmentOutcome::Complete(whole, data) => {
                    self.counters.ip.reasm_oks += 1;
                    // Trust vouches for one frame's bytes, not for the fragments gathered before it.
                    self.rx_checksum_trusted = false;
                    self.deliver_ipv4(now, &whole, &data, link_broadcast, tx);
                }
            }
            return;
        }
        self.deliver_ipv4(now, &header, payload, link_broadcast, tx);
    }

    #[link_section = ".text.hot.ustack"]
    fn deliver_ipv4(
        &mut self,
        now: Instant,
        header: &Ipv4Header,
        payload: &[u8],
        link_broadcast: bool,
        tx: &mut dyn FrameSink,
    ) {
        match header.protocol {
            ip_proto::ICMP => self.receive_icmp(now, header, payload, tx),
            ip_proto::UDP => self.receive_udp(now, header, payload, link_broadcast, tx),
            ip_proto::TCP => self.receive_tcp(now, header, payload, tx),
            _ => {
                // RFC 1122 section 3.2.2.1: a host SHOULD send Protocol Unreachable for a transport it lacks.
                self.counters.ip.in_unknown_protos += 1;
                self.send_icmp_error(
                    now,
                    header,
                    payload,
                    link_broadcast,
                    icmp_type::DEST_UNREACHABLE,
                    unreach_code::PROTOCOL,
                    tx,
                );
                return;
            }
        }
        self.counters.ip.in_delivers += 1;
    }

    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn receive_udp(
        &mut self,
        now: Instant,
        ip: &Ipv4Header,
        payload: &[u8],
        link_broadcast: bool,
        tx: &mut dyn FrameSink,
    ) {
        let (udp, data) = match UdpHeader::parse_v4_trusting(payload, ip.src, ip.dst, self.rx_checksum_trusted) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.counters.udp.in_errors += 1;
                if e == WireError::BadChecksum {
                    self.counters.udp.in_csum_errors += 1;
                }
                return;
            }
        };
        let src = SocketAddrV4::new(ip.src, udp.src_port);
        let dst = SocketAddrV4::new(ip.dst, udp.dst_port);
        let Some(fd) = self.udp_lookup(src, dst) else {
            self.counters.udp.no_ports += 1;
            // RFC 1122 section 4.1.3.1: a datagram for a port with no listener SHOULD get Port Unreachable
            // (never for broadcasts: send_icmp_error checks).
            self.send_icmp_error(now, ip, payload, link_broadcast, icmp_type::DEST_UNREACHABLE, unreach_code::PORT, tx);
            return;
        };
        let Ok(Socket::Udp(sock)) = self.sockets.get_mut(fd) else { return };
        match sock.rx.push(src, data) {
            Ok(()) => {
                self.counters.udp.in_datagrams += 1;
                self.events.push(fd);
            }
            Err(_) => {
                sock.drops += 1;
                self.counters.udp.rcvbuf_errors += 1;
                self.counters.udp.in_errors += 1;
            }
        }
    }

    /// The UDP socket that receives a datagram from `src` to `dst`: the most specific match among the sockets
    /// on the destination port (a hashed lookup by port, then a choice among the few sharing it).
    pub(crate) fn udp_lookup(&self, src: SocketAddrV4, dst: SocketAddrV4) -> Option<crate::socket::Fd> {
        self.udp_ports
            .on_port(dst.port())
            .iter()
            .filter_map(|&fd| match self.sockets.get(fd) {
                Ok(Socket::Udp(s)) => s.match_score(src, dst).map(|score| (score, fd)),
                _ => None,
            })
            .max_by_key(|&(score, fd)| (score, std::cmp::Reverse(fd)))
            .map(|(_, fd)| fd)
    }
}
