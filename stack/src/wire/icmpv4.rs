//! ICMP for IPv4 (RFC 792), the messages a host sends and receives (RFC 1122 section 3.2.2).

use super::{be16, checksum, WireError};

/// Length of the fixed ICMP header: type, code, checksum and four bytes that depend on the type.
pub const HEADER_LEN: usize = 8;

/// ICMP type numbers.
pub mod icmp_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Destination Unreachable codes (RFC 792, RFC 1122 section 3.2.2.1, RFC 1812 section 5.2.7.1).
pub mod unreach_code {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    pub const NET_UNKNOWN: u8 = 6;
    pub const HOST_UNKNOWN: u8 = 7;
    pub const HOST_ISOLATED: u8 = 8;
    pub const NET_PROHIBITED: u8 = 9;
    pub const HOST_PROHIBITED: u8 = 10;
    pub const NET_TOS: u8 = 11;
    pub const HOST_TOS: u8 = 12;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// A parsed ICMPv4 message; borrowed parts point into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMessage<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// `quoted` is the start of the datagram that caused the error: its IP header and at least 8 more bytes.
    DestUnreachable {
        code: u8,
        next_hop_mtu: u16,
        quoted: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quoted: &'a [u8],
    },
    ParameterProblem {
        pointer: u8,
        quoted: &'a [u8],
    },
    SourceQuench {
        quoted: &'a [u8],
    },
    /// A type this stack does not act on (redirects, timestamps, ...).
    Other {
        ty: u8,
        code: u8,
    },
}

impl<'a> IcmpMessage<'a> {
    /// Parses and checksums a whole ICMP message.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if checksum::checksum(buf) != 0 {
            return Err(WireError::BadChecksum);
        }
        let (ty, code) = (buf[0], buf[1]);
        let rest = &buf[HEADER_LEN..];
        Ok(match ty {
            icmp_type::ECHO_REQUEST => IcmpMessage::EchoRequest { ident: be16(buf, 4), seq: be16(buf, 6), data: rest },
            icmp_type::ECHO_REPLY => IcmpMessage::EchoReply { ident: be16(buf, 4), seq: be16(buf, 6), data: rest },
            icmp_type::DEST_UNREACHABLE => {
                IcmpMessage::DestUnreachable { code, next_hop_mtu: be16(buf, 6), quoted: rest }
            }
            icmp_type::TIME_EXCEEDED => IcmpMessage::TimeExceeded { code, quoted: rest },
            icmp_type::PARAMETER_PROBLEM => IcmpMessage::ParameterProblem { pointer: buf[4], quoted: rest },
            icmp_type::SOURCE_QUENCH => IcmpMessage::SourceQuench { quoted: rest },
            _ => IcmpMessage::Other { ty, code },
        })
    }

    /// True for the error messages (those that must never be answered with another error, RFC 1122 section
    /// 3.2.2).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            IcmpMessage::DestUnreachable { .. }
                | IcmpMessage::TimeExceeded { .. }
                | IcmpMessage::ParameterProblem { .. }
                | IcmpMessage::SourceQuench { .. }
        ) || matches!(self, IcmpMessage::Other { ty: icmp_type::REDIRECT, .. })
    }

    /// Bytes needed to emit this message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                IcmpMessage::EchoRequest { data, .. } | IcmpMessage::EchoReply { data, .. } => data.len(),
                IcmpMessage::DestUnreachable { quoted, .. }
                | IcmpMessage::TimeExceeded { quoted, .. }
                | IcmpMessage::ParameterProblem { quoted, .. }
                | IcmpMessage::SourceQuench { quoted } => quoted.len(),
                IcmpMessage::Other { .. } => 0,
            }
    }

    /// Writes the message, checksum included, into the first [`IcmpMessage::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let (ty, code, word, body): (u8, u8, [u8; 4], &[u8]) = match *self {
            IcmpMessage::EchoRequest { ident, seq, data } => (icmp_type::ECHO_REQUEST, 0, echo_word(ident, seq), data),
            IcmpMessage::EchoReply { ident, seq, data } => (icmp_type::ECHO_REPLY, 0, echo_word(ident, seq), data),
            IcmpMessage::DestUnreachable { code, next_hop_mtu, quoted } => {
                let m = next_hop_mtu.to_be_bytes();
                (icmp_type::DEST_UNREACHABLE, code, [0, 0, m[0], m[1]], quoted)
            }
            IcmpMessage::TimeExceeded { code, quoted } => (icmp_type::TIME_EXCEEDED, code, [0; 4], quoted),
            IcmpMessage::ParameterProblem { pointer, quoted } => {
                (icmp_type::PARAMETER_PROBLEM, 0, [pointer, 0, 0, 0], quoted)
            }
            IcmpMessage::SourceQuench { quoted } => (icmp_type::SOURCE_QUENCH, 0, [0; 4], quoted),
            IcmpMessage::Other { ty, code } => (ty, code, [0; 4], &[]),
        };
        buf[0] = ty;
        buf[1] = code;
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&word);
        buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
        let sum = checksum::checksum(&buf[..HEADER_LEN + body.len()]);
        buf[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

fn echo_word(ident: u16, seq: u16) -> [u8; 4] {
    let (i, s) = (ident.to_be_bytes(), seq.to_be_bytes());
    [i[0], i[1], s[0], s[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip() {
        let msg = IcmpMessage::EchoRequest { ident: 7, seq: 9, data: b"ping!" };
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        assert_eq!(IcmpMessage::parse(&buf).unwrap(), msg);
        buf[9] ^= 0xff;
        assert_eq!(IcmpMessage::parse(&buf).unwrap_err(), WireError::BadChecksum);
        assert_eq!(IcmpMessage::parse(&buf[..7]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn error_messages_are_errors() {
        let msg = IcmpMessage::DestUnreachable { code: unreach_code::PORT, next_hop_mtu: 0, quoted: &[0; 28] };
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = IcmpMessage::parse(&buf).unwrap();
        assert!(parsed.is_error());
        assert!(!IcmpMessage::EchoReply { ident: 0, seq: 0, data: &[] }.is_error());
    }
}
