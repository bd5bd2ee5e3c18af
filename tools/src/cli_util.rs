//! Small pieces shared by the commands: the error type, argument parsers with clear messages, and the counter
//! table.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;

/// Why a command stopped: one sentence for stderr, or an interruption by Ctrl-C / SIGTERM.
#[derive(Debug)]
pub enum Failure {
    Message(String),
    Interrupted,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure::Message(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Message(m) => f.write_str(m),
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// The devices' and namespaces' errors already read as a sentence naming what failed; keep them as they are.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Message(e.to_string())
    }
}

/// Parses `198.18.0.2/24`, refusing addresses an interface cannot have, so that a typo fails here with a
/// sentence rather than later as silence on the wire.
pub fn parse_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    let cidr: Ipv4Cidr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address with a prefix length (expected e.g. 198.18.0.2/24)"))?;
    let ip = cidr.addr;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(format!("{ip} cannot be an interface address (unspecified, loopback, multicast or broadcast)"));
    }
    if cidr.prefix_len == 0 {
        return Err(format!("{s}: a prefix length of 0 puts the whole Internet on the link; use e.g. /24"));
    }
    if cidr.broadcast() == Some(ip) {
        return Err(format!("{ip} is the broadcast address of {s}; pick a host address"));
    }
    if cidr.prefix_len < 31 && u32::from(ip) & !cidr.netmask() == 0 {
        return Err(format!("{ip} is the network address of {s}; pick a host address"));
    }
    Ok(cidr)
}

/// Parses `02:00:00:00:00:01` (or with dashes); the stack needs a unicast address of its own.
pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let mac: MacAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not a MAC address (expected six hex bytes, e.g. 02:75:73:00:00:02)"))?;
    if !mac.is_unicast() {
        return Err(format!("{mac} is a multicast or all-zero address; the stack needs a unicast MAC"));
    }
    Ok(mac)
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 address (expected e.g. 198.18.0.1)"))
}

/// A locally administered unicast MAC built from the IP address (`02:75:73` is "\x02us"), so that the same
/// address always gets the same MAC and a capture shows at a glance which host a frame came from.
pub fn mac_from_ip(ip: Ipv4Addr) -> MacAddr {
    let [_, b, c, d] = ip.octets();
    MacAddr([0x02, 0x75, 0x73, b, c, d])
}

/// Prints counters as an aligned table, one column per stack, skipping rows that are zero everywhere: the
/// interesting part of some forty counters is the handful that moved.
pub fn print_counter_table(columns: &[(&str, Vec<(String, u64)>)]) {
    let Some((_, first)) = columns.first() else { return };
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let header: String = columns.iter().map(|(title, _)| format!("{title:>12}")).collect();
    println!("    {:width$}{header}", "");
    for (row, name) in names.iter().enumerate() {
        let values: Vec<u64> = columns.iter().map(|(_, rows)| rows.get(row).map_or(0, |(_, v)| *v)).collect();
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        let cells: String = values.iter().map(|v| format!("{v:>12}")).collect();
        println!("    {name:width$}{cells}");
    }
}

/// How many IP fragments a packet with `ip_payload` bytes after the IP header becomes on a link of `mtu`:
/// every fragment but the last carries a multiple of 8 bytes (RFC 791).
pub fn fragment_count(ip_payload: usize, mtu: usize) -> usize {
    let per_fragment = (mtu.saturating_sub(20) / 8 * 8).max(8);
    ip_payload.div_ceil(per_fragment).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_validation_explains_itself() {
        assert_eq!(parse_cidr("198.18.0.2/24").unwrap().addr, Ipv4Addr::new(198, 18, 0, 2));
        assert!(parse_cidr("198.18.0.2").unwrap_err().contains("prefix length"));
        assert!(parse_cidr("198.18.0.300/24").is_err());
        assert!(parse_cidr("198.18.0.2/33").is_err());
        assert!(parse_cidr("198.18.0.255/24").unwrap_err().contains("broadcast"));
        assert!(parse_cidr("198.18.0.0/24").unwrap_err().contains("network address"));
        assert!(parse_cidr("0.0.0.0/24").is_err());
        assert!(parse_cidr("198.18.0.1/0").is_err());
        assert!(parse_cidr("198.18.0.0/31").is_ok(), "a /31 has no network or broadcast address (RFC 3021)");
    }

    #[test]
    fn mac_validation_and_derivation() {
        assert_eq!(parse_mac("02:75:73:12:00:02").unwrap(), MacAddr([2, 0x75, 0x73, 0x12, 0, 2]));
        assert!(parse_mac("01:00:5e:00:00:01").unwrap_err().contains("multicast"));
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:75:73:12:00").is_err());
        assert_eq!(mac_from_ip(Ipv4Addr::new(198, 18, 0, 2)).to_string(), "02:75:73:12:00:02");
        assert!(mac_from_ip(Ipv4Addr::new(198, 19, 255, 254)).is_unicast());
    }

    #[test]
    fn fragments_follow_the_eight_byte_rule() {
        assert_eq!(fragment_count(1480, 1500), 1);
        assert_eq!(fragment_count(1481, 1500), 2);
        assert_eq!(fragment_count(6008, 1500), 5);
        assert_eq!(fragment_count(8008, 1500), 6);
    }
}
