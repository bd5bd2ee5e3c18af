//! ICMPv4 as a host uses it: answering echo requests, sending errors about datagrams it cannot deliver, and
//! handing errors it receives to the socket that sent the datagram they quote (RFC 1122 section 3.2.2,
//! RFC 5927 for the checks an ICMP error must pass).

use super::output::IpSend;
use super::{FrameSink, Stack};
use crate::errno::Errno;
use crate::socket::Socket;
use crate::time::Instant;
use crate::wire::icmpv4::{icmp_type, unreach_code, IcmpMessage, HEADER_LEN};
use crate::wire::ipv4::{Ipv4Header, MIN_HEADER_LEN};
use crate::wire::udp::UdpHeader;
use crate::wire::{ip_proto, WireError};
use std::net::SocketAddrV4;

/// An ICMP error carries as much of the offending datagram as fits in 576 bytes (RFC 1812 section 4.3.2.3;
/// Linux does the same).
const MAX_ERROR_DATAGRAM: usize = 576;

/// How an ICMP error maps to an errno, and whether it is *hard* (ends a connection attempt or is reported on
/// a connected UDP socket) or *soft* (RFC 1122 section 4.2.3.9: "not fatal"; only remembered). The table is
/// Linux's `icmp_err_convert`.
pub(crate) fn icmp_error_to_errno(ty: u8, code: u8) -> Option<(Errno, bool)> {
    match ty {
        icmp_type::DEST_UNREACHABLE => Some(match code {
            unreach_code::NET => (Errno::ENETUNREACH, false),
            unreach_code::HOST => (Errno::EHOSTUNREACH, false),
            unreach_code::PROTOCOL => (Errno::ENOPROTOOPT, true),
            unreach_code::PORT => (Errno::ECONNREFUSED, true),
            unreach_code::FRAG_NEEDED => (Errno::EMSGSIZE, false),
            unreach_code::SOURCE_ROUTE_FAILED => (Errno::EOPNOTSUPP, false),
            unreach_code::NET_UNKNOWN => (Errno::ENETUNREACH, true),
            unreach_code::HOST_UNKNOWN => (Errno::EHOSTDOWN, true),
            unreach_code::HOST_ISOLATED => (Errno::EHOSTUNREACH, true),
            unreach_code::NET_PROHIBITED => (Errno::ENETUNREACH, true),
            unreach_code::HOST_PROHIBITED => (Errno::EHOSTUNREACH, true),
            unreach_code::NET_TOS => (Errno::ENETUNREACH, false),
            unreach_code::HOST_TOS => (Errno::EHOSTUNREACH, false),
            _ => (Errno::EHOSTUNREACH, true),
        }),
        icmp_type::TIME_EXCEEDED => Some((Errno::EHOSTUNREACH, false)),
        icmp_type::PARAMETER_PROBLEM => Some((Errno::EPROTO, true)),
        _ => None,
    }
}

impl Stack {
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    pub(crate) fn receive_icmp(&mut self, now: Instant, ip: &Ipv4Header, payload: &[u8], tx: &mut dyn FrameSink) {
        self.counters.icmp.in_msgs += 1;
        let msg = match IcmpMessage::parse(payload) {
            Ok(msg) => msg,
            Err(e) => {
                self.counters.icmp.in_errors += 1;
                if e == WireError::BadChecksum {
                    self.counters.icmp.in_csum_errors += 1;
                }
                return;
            }
        };
        match msg {
            IcmpMessage::EchoRequest { ident, seq, data } => {
                self.counters.icmp.in_echos += 1;
                // RFC 1122 section 3.2.2.6: a host MAY ignore echo requests sent to a broadcast address; Linux
                // does by default.
                if self.is_broadcast(ip.dst) && !self.config.answer_broadcast_echo {
                    return;
                }
                let reply = IcmpMessage::EchoReply { ident, seq, data };
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                scratch.resize(reply.buffer_len(), 0);
                reply.emit(&mut scratch);
                let how = IpSend {
                    dst: ip.src,
                    protocol: ip_proto::ICMP,
                    ttl: self.config.ttl,
                    tos: ip.tos,
                    dont_fragment: false,
                    never_fragment: false,
                };
                if self.send_ipv4(now, how, &scratch, tx).is_ok() {
                    self.counters.icmp.out_msgs += 1;
                    self.counters.icmp.out_echo_reps += 1;
                }
                self.scratch = scratch;
            }
            IcmpMessage::EchoReply { .. } => self.counters.icmp.in_echo_reps += 1,
            IcmpMessage::DestUnreachable { code, quoted, next_hop_mtu } => {
                self.counters.icmp.in_dest_unreachs += 1;
                self.receive_icmp_error(now, icmp_type::DEST_UNREACHABLE, code, quoted, Some(next_hop_mtu), tx);
            }
            IcmpMessage::TimeExceeded { code, quoted } => {
                self.counters.icmp.in_time_excds += 1;
                self.receive_icmp_error(now, icmp_type::TIME_EXCEEDED, code, quoted, None, tx);
            }
            IcmpMessage::ParameterProblem { quoted, .. } => {
                self.receive_icmp_error(now, icmp_type::PARAMETER_PROBLEM, 0, quoted, None, tx);
            }
            IcmpMessage::SourceQuench { .. } | IcmpMessage::Other { .. } => {}
        }
    }

    /// Hands an ICMP error to the socket that sent the datagram it quotes. RFC 792 says the quote holds the
    /// IP header and at least 8 bytes of what followed: enough for the ports. A quote of a datagram we did
    /// not send (its source is not our address) is ignored (RFC 5927 section 4.1).
    fn receive_icmp_error(
        &mut self,
        now: Instant,
        ty: u8,
        code: u8,
        quoted: &[u8],
        next_hop_mtu: Option<u16>,
        tx: &mut dyn FrameSink,
    ) {
        let Ok(header) = Ipv4Header::parse_unchecked(quoted) else {
            self.counters.icmp.in_errors += 1;
            return;
        };
        let rest = &quoted[header.header_len..];
        if rest.len() < 8 || header.src != self.config.ipv4.addr {
            self.counters.icmp.in_errors += 1;
            return;
        }
        let Some((errno, hard)) = icmp_error_to_errno(ty, code) else { return };
        if header.protocol == ip_proto::TCP {
            self.tcp_error(now, &header, rest, errno, next_hop_mtu);
            self.flush_tcp(now, tx);
            return;
        }
        self.transport_error(&header, rest, errno, hard);
    }

    /// Reports an error about a datagram we tried to send, detected locally (ARP gave up). Linux turns this into
    /// an ICMP Host Unreachable addressed to itself; here it goes straight to the socket, as a hard error, so
    /// that a connected socket learns of it.
    pub(crate) fn deliver_local_error(&mut self, now: Instant, header: &Ipv4Header, payload: &[u8], errno: Errno) {
        if header.protocol == ip_proto::TCP {
            return self.tcp_error(now, header, payload, errno, None);
        }
        self.transport_error(header, payload, errno, true);
    }

    fn transport_error(&mut self, header: &Ipv4Header, transport: &[u8], errno: Errno, hard: bool) {
        if header.protocol != ip_proto::UDP {
            return;
        }
        let Ok(ports) = UdpHeader::parse_ports(transport) else { return };
        let local = SocketAddrV4::new(header.src, ports.src_port);
        let remote = SocketAddrV4::new(header.dst, ports.dst_port);
        let Some(fd) = self.udp_lookup(remote, local) else { return };
        let Ok(Socket::Udp(sock)) = self.sockets.get_mut(fd) else { return };
        // Linux's udp_err: without IP_RECVERR, only hard errors, and only on a connected socket, are reported;
        // an unconnected socket cannot tell which of its peers the error was about.
        if hard && sock.remote == Some(remote) {
            sock.error = Some(errno);
            self.events.push(fd);
        }
    }

    /// Sends an ICMP error about a datagram we received, unless RFC 1122 section 3.2.2 forbids it or the rate
    /// limit says no.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_icmp_error(
        &mut self,
        now: Instant,
        orig: &Ipv4Header,
        orig_payload: &[u8],
        link_broadcast: bool,
        ty: u8,
        code: u8,
        tx: &mut dyn FrameSink,
    ) {
        // RFC 1122 section 3.2.2: an ICMP error message MUST NOT be sent as the result of receiving an ICMP
        // error, a datagram sent to a broadcast or multicast address or as a link-layer broadcast, a non-initial
        // fragment, or a datagram whose source does not name a single host.
        let about_icmp_error = orig.protocol == ip_proto::ICMP
            && orig_payload
                .first()
                .is_some_and(|&t| !matches!(t, icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY | 13..=18));
        if about_icmp_error
            || link_broadcast
            || self.is_broadcast(orig.dst)
            || orig.dst.is_multicast()
            || orig.frag_offset != 0
            || orig.src.is_unspecified()
            || orig.src.is_loopback()
            || self.is_broadcast(orig.src)
            || orig.src.is_multicast()
        {
            return;
        }
        if !self.icmp_limiter.try_take(now) {
            self.counters.icmp.out_rate_limited += 1;
            return;
        }
        let quote_len = orig_payload.len().min(MAX_ERROR_DATAGRAM - 2 * MIN_HEADER_LEN - HEADER_LEN);
        let mut quoted = [0u8; MAX_ERROR_DATAGRAM];
        let mut copy = *orig;
        copy.header_len = MIN_HEADER_LEN;
        copy.total_len = MIN_HEADER_LEN + orig.payload_len();
        copy.emit(&mut quoted);
        quoted[MIN_HEADER_LEN..MIN_HEADER_LEN + quote_len].copy_from_slice(&orig_payload[..quote_len]);
        let quoted = &quoted[..MIN_HEADER_LEN + quote_len];
        let msg = match ty {
            icmp_type::TIME_EXCEEDED => IcmpMessage::TimeExceeded { code, quoted },
            _ => IcmpMessage::DestUnreachable { code, next_hop_mtu: 0, quoted },
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(msg.buffer_len(), 0);
        msg.emit(&mut scratch);
        let how = IpSend {
            dst: orig.src,
            protocol: ip_proto::ICMP,
            ttl: self.config.ttl,
            tos: 0xc0, // Linux sends ICMP errors with precedence "internetwork control" (RFC 1812 4.3.2.5).
            dont_fragment: false,
            never_fragment: false,
        };
        if self.send_ipv4(now, how, &scratch, tx).is_ok() {
            self.counters.icmp.out_msgs += 1;
            match ty {
                icmp_type::TIME_EXCEEDED => self.counters.icmp.out_time_excds += 1,
                _ => self.counters.icmp.out_dest_unreachs += 1,
            }
        }
        self.scratch = scratch;
    }

    /// Reassembly timeouts: RFC 1122 section 3.3.2 says a host SHOULD send Time Exceeded (code 1) when it gives
    /// up on a datagram whose first fragment it holds.
    #[inline]
    pub(crate) fn poll_reassembly(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if self.reassembler.poll_at().is_some_and(|t| t <= now) {
            self.expire_reassembly(now, tx);
        }
    }

    /// [`Stack::poll_reassembly`]'s work, out of line: fragments rarely time out.
    #[cold]
    #[inline(never)]
    fn expire_reassembly(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        for expired in self.reassembler.poll(now) {
            self.counters.ip.reasm_timeout += 1;
            self.counters.ip.reasm_fails += 1;
            if let Some(first) = expired.first_header {
                self.send_icmp_error(now, &first, &expired.first_bytes, false, icmp_type::TIME_EXCEEDED, 1, tx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_unreachable_is_hard_host_unreachable_soft() {
        assert_eq!(icmp_error_to_errno(3, 3), Some((Errno::ECONNREFUSED, true)));
        assert_eq!(icmp_error_to_errno(3, 1), Some((Errno::EHOSTUNREACH, false)));
        assert_eq!(icmp_error_to_errno(11, 0), Some((Errno::EHOSTUNREACH, false)));
        assert_eq!(icmp_error_to_errno(0, 0), None);
    }
}
