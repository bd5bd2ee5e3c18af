//! Reading addresses out of a capture, and rewriting the host's address (and port) in every frame, for
//! [`super::ReplayBuilder::rewrite_host`].
//!
//! Checksums are updated incrementally (RFC 1624): a checksum that was right stays right, one that was wrong
//! (a capture taken before the NIC filled it in) stays wrong by as much, and the first fragment of a
//! fragmented datagram, whose transport checksum covers bytes it does not carry, is updated correctly too.

use std::net::{Ipv4Addr, SocketAddrV4};
use ustack::wire::ethernet::ethertype;
use ustack::wire::ip_proto;
use ustack_netdev::pcap::{CaptureFile, LinkType};

/// Where the network-layer packet starts in a captured packet of `link`, and its EtherType.
pub(crate) fn network_start(data: &[u8], link: LinkType) -> Option<(usize, u16)> {
    let be16 = |at: usize| data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match link {
        LinkType::Ethernet => match be16(12)? {
            ethertype::VLAN => Some((18, be16(16)?)),
            t => Some((14, t)),
        },
        LinkType::Raw => match data.first()? >> 4 {
            4 => Some((0, ethertype::IPV4)),
            6 => Some((0, ethertype::IPV6)),
            _ => None,
        },
        LinkType::LinuxSll => Some((16, be16(14)?)),
        LinkType::LinuxSll2 => Some((20, be16(0)?)),
        LinkType::Other(_) => None,
    }
}

/// The IPv4 header fields this module needs, from the start of a packet.
struct V4 {
    hl: usize,
    /// The total length, cut to the bytes present.
    len: usize,
    protocol: u8,
    first_fragment: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

fn v4(d: &[u8]) -> Option<V4> {
    if d.len() < 20 || d[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(d[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([d[2], d[3]]));
    if hl < 20 || d.len() < hl || total < hl {
        return None;
    }
    let frag = u16::from_be_bytes([d[6], d[7]]) & 0x1fff;
    Some(V4 {
        hl,
        len: total.min(d.len()),
        protocol: d[9],
        first_fragment: frag == 0,
        src: Ipv4Addr::new(d[12], d[13], d[14], d[15]),
        dst: Ipv4Addr::new(d[16], d[17], d[18], d[19]),
    })
}

/// The port of `ip`'s first TCP segment in the capture (as source or destination).
pub(crate) fn first_tcp_port(capture: &CaptureFile, ip: Ipv4Addr) -> Option<u16> {
    tcp_ports(capture, ip).first().copied()
}

/// The ports of `ip`'s TCP segments in the capture, in order of appearance.
pub(crate) fn tcp_ports(capture: &CaptureFile, ip: Ipv4Addr) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    let found = capture.packets.iter().filter_map(|p| {
        let (at, et) = network_start(&p.data, p.link_type)?;
        if et != ethertype::IPV4 {
            return None;
        }
        let d = &p.data[at..];
        let h = v4(d)?;
        if h.protocol != ip_proto::TCP || !h.first_fragment || h.len < h.hl + 4 {
            return None;
        }
        let port = |o: usize| u16::from_be_bytes([d[h.hl + o], d[h.hl + o + 1]]);
        if h.src == ip {
            Some(port(0))
        } else if h.dst == ip {
            Some(port(2))
        } else {
            None
        }
    });
    for port in found {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// What a captured packet is, for the list of frames a TCP replay leaves out.
pub(crate) fn kind(p: &ustack_netdev::pcap::Packet) -> &'static str {
    if p.data.len() < p.orig_len as usize {
        return "cut short by the capture's snaplen";
    }
    let Some((at, et)) = network_start(&p.data, p.link_type) else { return "link type not replayable" };
    match et {
        ethertype::ARP => "ARP",
        ethertype::IPV6 => "IPv6: ustack is IPv4-only",
        ethertype::IPV4 => match v4(&p.data[at..]) {
            Some(h) if !h.first_fragment => "IP fragment",
            Some(h) if h.protocol == ip_proto::TCP => "TCP, not of this connection",
            Some(h) if h.protocol == ip_proto::UDP => "UDP",
            Some(h) if h.protocol == ip_proto::ICMP => "ICMP",
            Some(_) => "other IP protocol",
            None => "malformed IPv4",
        },
        _ => "other link-layer protocol",
    }
}

/// Every IPv4 address that sends or receives an IPv4 packet, or takes part in ARP, in the capture, in order of
/// appearance.
pub fn ipv4_hosts(capture: &CaptureFile) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for p in &capture.packets {
        let Some((at, et)) = network_start(&p.data, p.link_type) else { continue };
        let d = &p.data[at..];
        let pair = match et {
            ethertype::IPV4 => v4(d).map(|h| [h.src, h.dst]),
            ethertype::ARP if d.len() >= 28 => {
                Some([Ipv4Addr::new(d[14], d[15], d[16], d[17]), Ipv4Addr::new(d[24], d[25], d[26], d[27])])
            }
            _ => None,
        };
        let Some(pair) = pair else { continue };
        for a in pair {
            if !a.is_broadcast() && !a.is_multicast() && !a.is_unspecified() && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// The destination of the capture's first unicast IPv4 packet: the host that answers, in most captures.
pub fn first_destination(capture: &CaptureFile) -> Option<Ipv4Addr> {
    capture.packets.iter().find_map(|p| {
        let (at, et) = network_start(&p.data, p.link_type)?;
        let h = (et == ethertype::IPV4).then(|| v4(&p.data[at..])).flatten()?;
        (!h.dst.is_broadcast() && !h.dst.is_multicast()).then_some(h.dst)
    })
}

/// A checksum updated for the 16-bit words of a region that changed from `old` to `new` (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`); both slices start on a word boundary of the checksummed data.
pub(crate) fn adjusted(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    let word = |c: &[u8]| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    let mut sum = u32::from(!checksum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        if o != n {
            sum += (!word(o) & 0xffff) + word(n);
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Rewrites `from` to `to` in every packet of the capture: IPv4 source and destination addresses, ARP sender
/// and target addresses, the addresses of datagrams quoted in ICMP errors; and the port, where `from`'s port
/// is used with its address (TCP and UDP, quoted ones too), when the ports differ.
pub(crate) fn rewrite_host(capture: &mut CaptureFile, from: SocketAddrV4, to: SocketAddrV4) {
    for p in &mut capture.packets {
        let Some((at, et)) = network_start(&p.data, p.link_type) else { continue };
        let d = &mut p.data[at..];
        match et {
            ethertype::IPV4 => rewrite_ipv4(d, from, to),
            ethertype::ARP if d.len() >= 28 => {
                for range in [14..18, 24..28] {
                    if d[range.clone()] == from.ip().octets() {
                        d[range].copy_from_slice(&to.ip().octets());
                    }
                }
            }
            _ => {}
        }
    }
}

fn rewrite_ipv4(d: &mut [u8], from: SocketAddrV4, to: SocketAddrV4) {
    let Some(h) = v4(d) else { return };
    let old = d[..h.len].to_vec();
    let d = &mut d[..h.len];
    let (hl, proto) = (h.hl, h.protocol);
    let swap_ports = from.port() != to.port();
    for (addr_at, port_at) in [(12, 0), (16, 2)] {
        if d[addr_at..addr_at + 4] != from.ip().octets() {
            continue;
        }
        d[addr_at..addr_at + 4].copy_from_slice(&to.ip().octets());
        let has_ports = (proto == ip_proto::TCP || proto == ip_proto::UDP) && h.first_fragment;
        let p = hl + port_at;
        if swap_ports && has_ports && d.len() >= p + 2 && d[p..p + 2] == from.port().to_be_bytes() {
            d[p..p + 2].copy_from_slice(&to.port().to_be_bytes());
        }
    }
    if proto == ip_proto::ICMP && h.first_fragment && d.len() >= hl + 8 + 20 && matches!(d[hl], 3 | 4 | 5 | 11 | 12) {
        rewrite_quoted(&mut d[hl + 8..], from, to);
    }
    // The transport checksum (first fragments only: later ones carry no transport header).
    if h.first_fragment {
        let (field, pseudo) = match proto {
            ip_proto::TCP => (16, true),
            ip_proto::UDP => (6, true),
            ip_proto::ICMP => (2, false),
            _ => (usize::MAX, false),
        };
        if field != usize::MAX && d.len() >= hl + field + 2 {
            let at = hl + field;
            let was = u16::from_be_bytes([d[at], d[at + 1]]);
            if !(proto == ip_proto::UDP && was == 0) {
                let mut sum = adjusted(was, &old[hl..], &d[hl..]);
                if pseudo {
                    sum = adjusted(sum, &old[12..20], &d[12..20]);
                }
                if proto == ip_proto::UDP && sum == 0 {
                    sum = 0xffff;
                }
                d[at..at + 2].copy_from_slice(&sum.to_be_bytes());
            }
        }
    }
    let was = u16::from_be_bytes([d[10], d[11]]);
    let sum = adjusted(was, &old[..hl], &d[..hl]);
    d[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The datagram quoted in an ICMP error: its addresses, ports and header checksum.
fn rewrite_quoted(q: &mut [u8], from: SocketAddrV4, to: SocketAddrV4) {
    let Some(h) = v4(q) else { return };
    let old = q[..h.hl].to_vec();
    for (addr_at, port_at) in [(12, 0), (16, 2)] {
        if q[addr_at..addr_at + 4] != from.ip().octets() {
            continue;
        }
        q[addr_at..addr_at + 4].copy_from_slice(&to.ip().octets());
        let p = h.hl + port_at;
        let has_ports = h.protocol == ip_proto::TCP || h.protocol == ip_proto::UDP;
        if has_ports && q.len() >= p + 2 && q[p..p + 2] == from.port().to_be_bytes() {
            q[p..p + 2].copy_from_slice(&to.port().to_be_bytes());
        }
    }
    let was = u16::from_be_bytes([q[10], q[11]]);
    let sum = adjusted(was, &old, &q[..h.hl]);
    q[10..12].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use ustack::wire::checksum;

    #[test]
    fn incremental_update_matches_a_recomputation() {
        let mut header = [0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let sum = checksum::checksum(&header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        let old = header;
        header[12..16].copy_from_slice(&[192, 168, 7, 9]);
        let sum = adjusted(u16::from_be_bytes([old[10], old[11]]), &old, &header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum::checksum(&header), 0);
    }
}
