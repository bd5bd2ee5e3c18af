//! Printing packets and events the way packetdrill scripts write them (`S. 0:0(0) ack 1 win 65535 <...>`).

use std::fmt::Write;

/// Microseconds as seconds with six decimals.
pub fn secs(usecs: i64) -> String {
    let sign = if usecs < 0 { "-" } else { "" };
    let u = usecs.unsigned_abs();
    format!("{sign}{}.{:06}", u / 1_000_000, u % 1_000_000)
}

/// TCP flags in packetdrill's notation: `S`, `S.`, `.`, `P.`, `F.`, `R`, `R.`, `-` for none.
pub fn flags(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(0x01, 'F'), (0x02, 'S'), (0x04, 'R'), (0x08, 'P'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & 0x10 != 0 {
        s.push('.');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// One option as found in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOpt {
    Eol,
    Nop,
    Mss(u16),
    WScale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Ts(u32, u32),
    Other(u8, Vec<u8>),
}

/// The options of a header, in order (an unparsable tail becomes one `Other`).
pub fn split_options(mut b: &[u8]) -> Vec<RawOpt> {
    let mut out = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => {
                out.push(RawOpt::Eol);
                b = &b[1..];
            }
            1 => {
                out.push(RawOpt::Nop);
                b = &b[1..];
            }
            _ => {
                let len = b.get(1).map_or(0, |&l| usize::from(l));
                if len < 2 || len > b.len() {
                    out.push(RawOpt::Other(kind, b[1..].to_vec()));
                    break;
                }
                let body = &b[2..len];
                let be32 = |x: &[u8]| u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
                out.push(match (kind, len) {
                    (2, 4) => RawOpt::Mss(u16::from_be_bytes([body[0], body[1]])),
                    (3, 3) => RawOpt::WScale(body[0]),
                    (4, 2) => RawOpt::SackOk,
                    (8, 10) => RawOpt::Ts(be32(&body[0..4]), be32(&body[4..8])),
                    (5, l) if l >= 10 && (l - 2) % 8 == 0 => {
                        RawOpt::Sack(body.chunks_exact(8).map(|c| (be32(&c[0..4]), be32(&c[4..8]))).collect())
                    }
                    _ => RawOpt::Other(kind, body.to_vec()),
                });
                b = &b[len..];
            }
        }
    }
    out
}

/// Options in script notation; with `first_ts = (script, live)` the TS val is shown rebased into script space.
pub fn options(raw: &[u8], first_ts: Option<(u32, u32)>) -> String {
    let parts: Vec<String> = split_options(raw)
        .into_iter()
        .map(|o| match o {
            RawOpt::Eol => "eol".to_string(),
            RawOpt::Nop => "nop".to_string(),
            RawOpt::Mss(m) => format!("mss {m}"),
            RawOpt::WScale(s) => format!("wscale {s}"),
            RawOpt::SackOk => "sackOK".to_string(),
            RawOpt::Sack(blocks) => {
                let mut s = "sack".to_string();
                for (l, r) in blocks {
                    let _ = write!(s, " {l}:{r}");
                }
                s
            }
            RawOpt::Ts(v, e) => match first_ts {
                Some((script, live)) => format!("TS val {} ecr {e}", script.wrapping_add(v.wrapping_sub(live))),
                None => format!("TS val {v} ecr {e}"),
            },
            RawOpt::Other(k, body) => format!("option {k} ({} bytes)", body.len() + 2),
        })
        .collect();
    parts.join(",")
}

/// A TCP segment in script notation.
pub fn tcp(
    f: u8,
    seq: u32,
    len: usize,
    ack: u32,
    window: Option<u16>,
    raw_options: &[u8],
    first_ts: Option<(u32, u32)>,
) -> String {
    let mut s = format!("{} {}:{}({len})", flags(f), seq, seq.wrapping_add(len as u32));
    if f & 0x10 != 0 {
        let _ = write!(s, " ack {ack}");
    }
    if let Some(w) = window {
        let _ = write!(s, " win {w}");
    }
    if !raw_options.is_empty() {
        let _ = write!(s, " <{}>", options(raw_options, first_ts));
    }
    s
}

const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo_reply", 0),
    ("unreachable", 3),
    ("dest_unreachable", 3),
    ("source_quench", 4),
    ("redirect", 5),
    ("echo_request", 8),
    ("time_exceeded", 11),
    ("parameter_problem", 12),
];

const UNREACH_CODES: &[(&str, u8)] = &[
    ("net_unreachable", 0),
    ("host_unreachable", 1),
    ("protocol_unreachable", 2),
    ("port_unreachable", 3),
    ("frag_needed", 4),
    ("fragmentation_needed", 4),
    ("source_route_failed", 5),
    ("net_unknown", 6),
    ("host_unknown", 7),
    ("host_isolated", 8),
    ("net_prohibited", 9),
    ("host_prohibited", 10),
    ("net_unreachable_for_tos", 11),
    ("host_unreachable_for_tos", 12),
    ("packet_filtered", 13),
];

const TIME_EXCEEDED_CODES: &[(&str, u8)] = &[("exceeded_ttl", 0), ("ttl_exceeded", 0), ("exceeded_frag", 1)];

/// ICMP type and code numbers for the names scripts use.
pub fn icmp_numbers(ty: &str, code: Option<&str>) -> Option<(u8, u8)> {
    let t = ICMP_TYPES.iter().find(|(n, _)| *n == ty)?.1;
    let c = match code {
        None => 0,
        Some(c) => {
            let table = match t {
                3 => UNREACH_CODES,
                11 => TIME_EXCEEDED_CODES,
                _ => &[],
            };
            table.iter().find(|(n, _)| *n == c)?.1
        }
    };
    Some((t, c))
}

/// An ICMP message's type and code by name.
pub fn icmp(ty: u8, code: u8) -> String {
    let tname = ICMP_TYPES.iter().find(|(_, v)| *v == ty).map_or_else(|| format!("type {ty}"), |(n, _)| n.to_string());
    let table = match ty {
        3 => UNREACH_CODES,
        11 => TIME_EXCEEDED_CODES,
        _ => &[],
    };
    match table.iter().find(|(_, v)| *v == code) {
        Some((n, _)) => format!("icmp {tname} {n}"),
        None if code == 0 => format!("icmp {tname}"),
        None => format!("icmp {tname} code {code}"),
    }
}

/// poll(2) event bits by name.
pub fn poll_events(bits: i64) -> String {
    const NAMES: &[(i64, &str)] = &[
        (0x1, "POLLIN"),
        (0x2, "POLLPRI"),
        (0x4, "POLLOUT"),
        (0x8, "POLLERR"),
        (0x10, "POLLHUP"),
        (0x20, "POLLNVAL"),
        (0x40, "POLLRDNORM"),
        (0x80, "POLLRDBAND"),
        (0x100, "POLLWRNORM"),
        (0x200, "POLLWRBAND"),
        (0x2000, "POLLRDHUP"),
    ];
    let names: Vec<&str> = NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}
