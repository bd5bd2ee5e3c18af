//! Frames built by hand, as another host would send them, and readers for what the stack sent.

use std::net::Ipv4Addr;
use ustack::wire::arp::{ArpOp, ArpPacket};
use ustack::wire::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use ustack::wire::ipv4::Ipv4Header;
use ustack::{Instant, Stack};

/// An ARP request from `(mac, ip)` for `target`.
pub fn arp_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    ethernet::write_header(&mut f, MacAddr::BROADCAST, mac, ethertype::ARP);
    ArpPacket { op: ArpOp::Request, sender_mac: mac, sender_ip: ip, target_mac: MacAddr::ZERO, target_ip: target }
        .emit(&mut f[14..]);
    f
}

/// An ARP reply from `(mac, ip)` to `(to_mac, to_ip)`.
pub fn arp_reply(mac: MacAddr, ip: Ipv4Addr, to_mac: MacAddr, to_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    ethernet::write_header(&mut f, to_mac, mac, ethertype::ARP);
    ArpPacket { op: ArpOp::Reply, sender_mac: mac, sender_ip: ip, target_mac: to_mac, target_ip: to_ip }
        .emit(&mut f[14..]);
    f
}

/// Teaches `stack` that `ip` is at `mac`, the way a real peer would: by asking for the stack's address.
/// The stack's reply is discarded.
pub fn prime_arp(stack: &mut Stack, now: Instant, ip: Ipv4Addr, mac: MacAddr) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    stack.receive(now, &arp_request(mac, ip, stack.ipv4_addr()), &mut out);
}

/// An IPv4 frame with `payload`, from `src` to `dst`, with a TTL of 64.
pub fn ipv4_frame(
    macs: (MacAddr, MacAddr),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; 34 + payload.len()];
    ethernet::write_header(&mut f, macs.1, macs.0, ethertype::IPV4);
    let mut h = Ipv4Header::new(src, dst, protocol, 64, payload.len());
    h.ident = ident;
    h.emit(&mut f[14..]);
    f[34..].copy_from_slice(payload);
    f
}

/// The IPv4 header and payload of a frame the stack sent, if it is IPv4.
pub fn parse_ipv4(frame: &[u8]) -> Option<(Ipv4Header, Vec<u8>)> {
    let eth = EthernetFrame::parse(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    Ipv4Header::parse(eth.payload()).ok().map(|(h, p)| (h, p.to_vec()))
}

/// The ARP packet in a frame the stack sent, if it is ARP.
pub fn parse_arp(frame: &[u8]) -> Option<ArpPacket> {
    let eth = EthernetFrame::parse(frame).ok()?;
    (eth.ethertype() == ethertype::ARP).then(|| ArpPacket::parse(eth.payload()).ok()).flatten()
}
