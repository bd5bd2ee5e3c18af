//! The parsed form of a packetdrill script.

use std::fmt;

/// A whole script: its `--option` lines, its events, and the constructs the interpreter does not support.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub options: Vec<ScriptOption>,
    pub events: Vec<Event>,
    /// Lines the parser recognised as packetdrill but that this interpreter cannot run (shell commands, Python
    /// blocks, IPv6 or encapsulation headers, ...). A script with any of these is reported as skipped.
    pub unsupported: Vec<Unsupported>,
}

/// `--name=value` (or `--name`) at the top of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOption {
    pub line: usize,
    pub name: String,
    pub value: Option<String>,
}

/// A construct the interpreter cannot run, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// One timed event of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1-based line of the event's time.
    pub line: usize,
    pub time: EventTime,
    pub action: Action,
    /// The source text of the event's line(s), for messages.
    pub text: String,
}

/// When an event happens, in microseconds of script time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// `0.100`: since the script's start.
    Absolute(i64),
    /// `+0.100`: since the previous event (see [`crate::packetdrill`] for what "previous" means).
    Relative(i64),
    /// `*`: any time (outbound packets only).
    Any,
    /// `0.100~0.200`.
    AbsoluteRange(i64, i64),
    /// `+0.100~+0.200`.
    RelativeRange(i64, i64),
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Packet(PacketSpec),
    Syscall(SyscallSpec),
    /// A shell command in backquotes (not supported).
    Command(String),
    /// A `%{ ... }%` Python block (not supported).
    Code(String),
}

/// `<` (injected into the stack) or `>` (expected from the stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A packet line.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketSpec {
    pub direction: Direction,
    /// Explicit `src>dst` ports, when the line gives them.
    pub ports: Option<(u16, u16)>,
    pub body: PacketBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PacketBody {
    Tcp(TcpSpec),
    /// `udp (len)`.
    Udp {
        len: u16,
    },
    Icmp(IcmpSpec),
}

/// A TCP segment: `flags start:end(len) [ack N] [win N] [urg N] [<options>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSpec {
    /// The control bits (RFC 9293 order: FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    /// Relative start sequence number (the sender's ISN is the start of its SYN).
    pub seq: u32,
    pub len: u16,
    /// `ack N`; `None` when the line has no `ack`.
    pub ack: Option<u32>,
    /// `win N`; `None` means "not checked" for an outbound segment (an inbound one must give it).
    pub window: Option<u16>,
    pub urgent: Option<u16>,
    /// The options in the order written; `None` for `<...>` ("do not check"). A line without `<...>` expects
    /// no options at all, as packetdrill does.
    pub options: Option<Vec<TcpOpt>>,
}

/// One TCP option as written in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOpt {
    Nop,
    Eol,
    Mss(u16),
    WScale(u8),
    SackOk,
    /// `sack 1:101 201:301`.
    Sack(Vec<(u32, u32)>),
    /// `TS val V ecr E`.
    Timestamp {
        val: u32,
        ecr: u32,
    },
}

impl TcpOpt {
    /// The option's bytes on the wire (kind, length, value).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TcpOpt::Nop => out.push(1),
            TcpOpt::Eol => out.push(0),
            TcpOpt::Mss(m) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&m.to_be_bytes());
            }
            TcpOpt::WScale(s) => out.extend_from_slice(&[3, 3, *s]),
            TcpOpt::SackOk => out.extend_from_slice(&[4, 2]),
            TcpOpt::Sack(blocks) => {
                out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                for (l, r) in blocks {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
            TcpOpt::Timestamp { val, ecr } => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&val.to_be_bytes());
                out.extend_from_slice(&ecr.to_be_bytes());
            }
        }
    }
}

impl fmt::Display for TcpOpt {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TcpOpt::Nop => f.write_str("nop"),
            TcpOpt::Eol => f.write_str("eol"),
            TcpOpt::Mss(m) => write!(f, "mss {m}"),
            TcpOpt::WScale(s) => write!(f, "wscale {s}"),
            TcpOpt::SackOk => f.write_str("sackOK"),
            TcpOpt::Sack(blocks) => {
                f.write_str("sack")?;
                for (l, r) in blocks {
                    write!(f, " {l}:{r}")?;
                }
                Ok(())
            }
            TcpOpt::Timestamp { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
        }
    }
}

/// `icmp TYPE [CODE] [mtu N] [[echoed]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpSpec {
    pub ty: String,
    pub code: Option<String>,
    pub mtu: Option<u16>,
    pub echoed: Echoed,
}

/// The part of the offending datagram an ICMP error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echoed {
    /// `[start:end(len)]` (the default is `[0:0(0)]`).
    Tcp { seq: u32, len: u16 },
    /// `[udp (len)]`.
    Udp { len: u16 },
}

/// A system call line: `[...END] name(args) = result [ERRNO (note)] [(note)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyscallSpec {
    /// `...END` of a blocking call, in microseconds, in the same frame as the event's time.
    pub end: Option<i64>,
    pub name: String,
    pub args: Vec<Expr>,
    pub result: Expr,
    pub errno: Option<String>,
    pub note: Option<String>,
}

/// An argument or result expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `...`: "whatever the interpreter picks" (a buffer, the default address, its length).
    Ellipsis,
    Int(i64),
    /// A symbol (`SOCK_STREAM`, `EAGAIN`, ...).
    Word(String),
    Str(String),
    /// `a|b`.
    Or(Box<Expr>, Box<Expr>),
    /// `name=value` inside braces.
    Assign(Box<Expr>, Box<Expr>),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{a, b}`.
    Braces(Vec<Expr>),
    /// `htons(8080)`, `inet_addr("...")`.
    Call(String, Vec<Expr>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fn list(f: &mut fmt::Formatter, items: &[Expr]) -> fmt::Result {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e}")?;
            }
            Ok(())
        }
        match self {
            Expr::Ellipsis => f.write_str("..."),
            Expr::Int(n) => write!(f, "{n}"),
            Expr::Word(w) => f.write_str(w),
            Expr::Str(s) => write!(f, "{s:?}"),
            Expr::Or(a, b) => write!(f, "{a}|{b}"),
            Expr::Assign(a, b) => write!(f, "{a}={b}"),
            Expr::List(items) => {
                f.write_str("[")?;
                list(f, items)?;
                f.write_str("]")
            }
            Expr::Braces(items) => {
                f.write_str("{")?;
                list(f, items)?;
                f.write_str("}")
            }
            Expr::Call(name, args) => {
                write!(f, "{name}(")?;
                list(f, args)?;
                f.write_str(")")
            }
        }
    }
}
