//! A fake peer: frames built by hand, as another host would send them, and readers for what the stack sent.
//! The common builders live in the harness crate; UDP and ICMP frames are added here.

pub use ustack_harness::frames::{arp_reply, arp_request, ipv4_frame, parse_arp, parse_ipv4, prime_arp};

use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::wire::ethernet::MacAddr;
use ustack::wire::icmpv4::IcmpMessage;
use ustack::wire::udp::UdpHeader;
use ustack::wire::{ip_proto, udp};

/// A UDP datagram in an Ethernet frame.
pub fn udp_frame(macs: (MacAddr, MacAddr), src: SocketAddrV4, dst: SocketAddrV4, data: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; udp::HEADER_LEN + data.len()];
    seg[udp::HEADER_LEN..].copy_from_slice(data);
    UdpHeader { src_port: src.port(), dst_port: dst.port() }.emit_v4(&mut seg, *src.ip(), *dst.ip());
    ipv4_frame(macs, *src.ip(), *dst.ip(), ip_proto::UDP, 1, &seg)
}

/// An ICMP message in an Ethernet frame.
pub fn icmp_frame(macs: (MacAddr, MacAddr), src: Ipv4Addr, dst: Ipv4Addr, msg: &IcmpMessage) -> Vec<u8> {
    let mut body = vec![0u8; msg.buffer_len()];
    msg.emit(&mut body);
    ipv4_frame(macs, src, dst, ip_proto::ICMP, 2, &body)
}
