//! The lexer and parser of packetdrill's script language: the grammar of packetdrill's `parser.y`, for the
//! subset this interpreter runs. Constructs that are valid packetdrill but not supported here (shell commands,
//! Python blocks, IP headers, IPv6, encapsulation, fuzzing, TCP Fast Open and MD5 options, ...) are recorded
//! in [`Script::unsupported`] instead of failing the parse; anything else that does not parse is a
//! [`ParseError`].

use super::ast::*;
use std::fmt;

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "line {}: parse error: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    /// A decimal with a point, kept as text so times convert exactly.
    Float(String),
    Word(String),
    Str(String),
    Ellipsis,
    Punct(char),
    /// A dotted IPv4 address (only in IP headers, which are not supported).
    Ip4(String),
    Command(String),
    Code(String),
    Opt(String, Option<String>),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    /// First token on its line: where a new event may start.
    first: bool,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut line_of_last = 0;
    let mut out: Vec<Token> = Vec::new();
    let err = |line, m: &str| ParseError { line, message: m.to_string() };
    let mut push = |out: &mut Vec<Token>, tok, at_line: usize| {
        let first = line_of_last != at_line;
        line_of_last = at_line;
        out.push(Token { tok, line: at_line, first });
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                if b[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '`' {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            while i < b.len() && b[i] != '`' {
                if b[i] == '\n' {
                    line += 1;
                }
                s.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                return Err(err(start_line, "unterminated backquoted command"));
            }
            i += 1;
            push(&mut out, Tok::Command(s), start_line);
        } else if c == '%' && next == Some('{') {
            let start_line = line;
            let mut s = String::new();
            i += 2;
            while i < b.len() && !(b[i] == '}' && b.get(i + 1) == Some(&'%')) {
                if b[i] == '\n' {
                    line += 1;
                }
                s.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                return Err(err(start_line, "unterminated %{ code block"));
            }
            i += 2;
            push(&mut out, Tok::Code(s), start_line);
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' && i + 1 < b.len() {
                    i += 1;
                }
                s.push(b[i]);
                i += 1;
            }
            i += 1;
            push(&mut out, Tok::Str(s), line);
        } else if c == '-' && next == Some('-') && b.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 2;
            let mut name = String::new();
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '-') {
                name.push(b[i]);
                i += 1;
            }
            let mut value = None;
            if i < b.len() && b[i] == '=' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && !b[i].is_whitespace() {
                    v.push(b[i]);
                    i += 1;
                }
                value = Some(v);
            }
            push(&mut out, Tok::Opt(name, value), line);
        } else if c == '.' && next == Some('.') && b.get(i + 2) == Some(&'.') {
            i += 3;
            push(&mut out, Tok::Ellipsis, line);
        } else if c.is_ascii_digit()
            || (c == '.' && next.is_some_and(|n| n.is_ascii_digit()))
            || (c == '-' && next.is_some_and(|n| n.is_ascii_digit() || n == '.'))
        {
            let mut s = String::new();
            if c == '-' {
                s.push('-');
                i += 1;
            }
            if b[i] == '0' && matches!(b.get(i + 1), Some('x' | 'X')) {
                i += 2;
                let mut h = String::new();
                while i < b.len() && b[i].is_ascii_hexdigit() {
                    h.push(b[i]);
                    i += 1;
                }
                let v = i64::from_str_radix(&h, 16).map_err(|_| err(line, "bad hex number"))?;
                push(&mut out, Tok::Int(if s == "-" { -v } else { v }), line);
                continue;
            }
            while i < b.len() && b[i].is_ascii_digit() {
                s.push(b[i]);
                i += 1;
            }
            let dot_digit = i < b.len() && b[i] == '.' && b.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            let lone_dot = i < b.len()
                && b[i] == '.'
                && !b.get(i + 1).is_some_and(|n| *n == '.' || n.is_ascii_alphanumeric())
                && !s.is_empty()
                && s != "-";
            if dot_digit || lone_dot {
                s.push('.');
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    s.push(b[i]);
                    i += 1;
                }
                if i < b.len() && b[i] == '.' && b.get(i + 1).is_some_and(|n| n.is_ascii_digit()) {
                    // A dotted quad.
                    while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.') {
                        s.push(b[i]);
                        i += 1;
                    }
                    push(&mut out, Tok::Ip4(s), line);
                } else {
                    push(&mut out, Tok::Float(s), line);
                }
            } else {
                let v = s.parse::<i64>().map_err(|_| err(line, &format!("bad number {s}")))?;
                push(&mut out, Tok::Int(v), line);
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                s.push(b[i]);
                i += 1;
            }
            push(&mut out, Tok::Word(s), line);
        } else {
            i += 1;
            push(&mut out, Tok::Punct(c), line);
        }
    }
    Ok(out)
}

/// Why a statement could not be parsed.
enum Problem {
    Syntax(String),
    Unsupported(String),
}

type P<T> = Result<T, Problem>;

fn syntax<T>(m: impl Into<String>) -> P<T> {
    Err(Problem::Syntax(m.into()))
}

fn unsupported<T>(m: impl Into<String>) -> P<T> {
    Err(Problem::Unsupported(m.into()))
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    lines: Vec<&'a str>,
    /// Open `[` and `{` around the expression being parsed: where `name=value` is an assignment.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(1, |t| t.line)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char) -> P<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            syntax(format!("expected '{c}' but found {}", self.describe()))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "end of script".to_string(),
            Some(Tok::Int(n)) => format!("'{n}'"),
            Some(Tok::Float(s) | Tok::Word(s) | Tok::Ip4(s)) => format!("'{s}'"),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::Ellipsis) => "'...'".to_string(),
            Some(Tok::Punct(c)) => format!("'{c}'"),
            Some(Tok::Command(_)) => "a backquoted command".to_string(),
            Some(Tok::Code(_)) => "a %{ }% block".to_string(),
            Some(Tok::Opt(n, _)) => format!("option --{n}"),
        }
    }

    fn int(&mut self) -> P<i64> {
        match self.next() {
            Some(Tok::Int(n)) => Ok(n),
            _ => {
                self.pos -= 1;
                syntax(format!("expected an integer but found {}", self.describe()))
            }
        }
    }

    fn u32(&mut self, what: &str) -> P<u32> {
        let n = self.int()?;
        u32::try_from(n).or_else(|_| syntax(format!("{what} {n} out of range")))
    }

    fn u16(&mut self, what: &str) -> P<u16> {
        let n = self.int()?;
        u16::try_from(n).or_else(|_| syntax(format!("{what} {n} out of range")))
    }

    /// A time in seconds (integer or decimal) as microseconds.
    fn time(&mut self) -> P<i64> {
        match self.next() {
            Some(Tok::Int(n)) if n >= 0 => Ok(n * 1_000_000),
            Some(Tok::Float(s)) if !s.starts_with('-') => Ok(seconds_to_usecs(&s)),
            _ => {
                self.pos -= 1;
                syntax(format!("expected a time but found {}", self.describe()))
            }
        }
    }

    /// True when the current token can start an event.
    fn at_event_start(&self) -> bool {
        match self.toks.get(self.pos) {
            None => true,
            Some(t) => {
                t.first
                    && matches!(
                        t.tok,
                        Tok::Int(_)
                            | Tok::Float(_)
                            | Tok::Punct('+')
                            | Tok::Punct('*')
                            | Tok::Command(_)
                            | Tok::Code(_)
                    )
            }
        }
    }

    /// Skips to the next token that can start an event.
    fn recover(&mut self) {
        self.pos += 1;
        while !self.at_event_start() {
            self.pos += 1;
        }
    }

    fn event_time(&mut self) -> P<EventTime> {
        if self.eat_punct('*') {
            return Ok(EventTime::Any);
        }
        if self.eat_punct('+') {
            let t = self.time()?;
            if self.eat_punct('~') {
                self.expect_punct('+')?;
                let end = self.time()?;
                return Ok(EventTime::RelativeRange(t, end));
            }
            return Ok(EventTime::Relative(t));
        }
        let t = self.time()?;
        if self.eat_punct('~') {
            let end = self.time()?;
            return Ok(EventTime::AbsoluteRange(t, end));
        }
        Ok(EventTime::Absolute(t))
    }

    fn event(&mut self) -> P<Event> {
        let line = self.line();
        let time = self.event_time()?;
        let action = match self.peek() {
            Some(Tok::Punct('<')) | Some(Tok::Punct('>')) => Action::Packet(self.packet()?),
            Some(Tok::Command(_)) => match self.next() {
                Some(Tok::Command(c)) => Action::Command(c),
                _ => unreachable!(),
            },
            Some(Tok::Code(_)) => match self.next() {
                Some(Tok::Code(c)) => Action::Code(c),
                _ => unreachable!(),
            },
            Some(Tok::Ellipsis) | Some(Tok::Word(_)) => Action::Syscall(self.syscall()?),
            _ => return syntax(format!("expected a packet, a system call or a command but found {}", self.describe())),
        };
        let ranged = matches!(time, EventTime::AbsoluteRange(..) | EventTime::RelativeRange(..));
        let outbound = matches!(&action, Action::Packet(p) if p.direction == Direction::Outbound);
        if time == EventTime::Any && !outbound {
            return syntax("event time * can only be used with outbound packets");
        }
        if ranged && !outbound {
            return syntax("event time range can only be used with outbound packets");
        }
        if let EventTime::AbsoluteRange(a, b) | EventTime::RelativeRange(a, b) = time {
            if b < a {
                return syntax("time range is backwards");
            }
        }
        if !self.at_event_start() {
            return syntax(format!("unexpected {} after the event", self.describe()));
        }
        let last_line = self.toks.get(self.pos.saturating_sub(1)).map_or(line, |t| t.line);
        let text =
            (line..=last_line).filter_map(|l| self.lines.get(l - 1)).map(|s| s.trim()).collect::<Vec<_>>().join(" ");
        Ok(Event { line, time, action, text })
    }

    fn packet(&mut self) -> P<PacketSpec> {
        let direction = if self.eat_punct('<') {
            Direction::Inbound
        } else {
            self.expect_punct('>')?;
            Direction::Outbound
        };
        // IP-level info: (tos 0x..), [ect0], [ttl 64], flowlabel...
        if self.is_punct('(') || self.is_punct('[') {
            return unsupported("IP header fields (ECN, TOS, TTL, flow label) on a packet line");
        }
        for w in ["ipv4", "ipv6", "gre", "mpls"] {
            if self.is_word(w) {
                return unsupported(format!("{w} encapsulation or explicit IP addresses on a packet line"));
            }
        }
        let mut ports = self.opt_ports()?;
        if self.is_word("udp") {
            self.pos += 1;
            if ports.is_none() {
                ports = self.opt_ports()?;
            }
            self.expect_punct('(')?;
            let len = self.u16("UDP payload size")?;
            self.expect_punct(')')?;
            return Ok(PacketSpec { direction, ports, body: PacketBody::Udp { len } });
        }
        if self.is_word("icmp") {
            self.pos += 1;
            return Ok(PacketSpec { direction, ports, body: PacketBody::Icmp(self.icmp()?) });
        }
        if self.is_word("icmpv6") {
            return unsupported("ICMPv6");
        }
        let flags = self.flags()?;
        let seq = self.u32("sequence number")?;
        self.expect_punct(':')?;
        let end = self.u32("end sequence number")?;
        self.expect_punct('(')?;
        let len = self.u16("payload size")?;
        self.expect_punct(')')?;
        if end != seq.wrapping_add(u32::from(len)) {
            return syntax("inconsistent TCP sequence numbers and payload size");
        }
        let mut spec = TcpSpec { flags, seq, len, ack: None, window: None, urgent: None, options: Some(Vec::new()) };
        loop {
            if self.is_word("ack") {
                self.pos += 1;
                spec.ack = Some(self.u32("ack")?);
            } else if self.is_word("win") {
                self.pos += 1;
                spec.window = Some(self.u16("window")?);
            } else if self.is_word("urg") {
                self.pos += 1;
                spec.urgent = Some(self.u16("urgent pointer")?);
            } else {
                break;
            }
        }
        if self.eat_punct('<') {
            if self.peek() == Some(&Tok::Ellipsis) {
                self.pos += 1;
                self.expect_punct('>')?;
                if direction == Direction::Inbound {
                    return syntax("<...> for TCP options can only be used with outbound packets");
                }
                spec.options = None;
            } else {
                let mut list = Vec::new();
                loop {
                    list.push(self.tcp_option()?);
                    if self.eat_punct(',') {
                        continue;
                    }
                    self.expect_punct('>')?;
                    break;
                }
                let mut bytes = Vec::new();
                for o in &list {
                    o.encode(&mut bytes);
                }
                if bytes.len() % 4 != 0 {
                    return syntax(format!(
                        "TCP options are not padded correctly to ensure TCP header is a multiple of 4 bytes: {} \
                         excess bytes",
                        bytes.len() % 4
                    ));
                }
                if bytes.len() > 40 {
                    return syntax("TCP header too large");
                }
                spec.options = Some(list);
            }
        }
        if self.is_punct('{') {
            return unsupported("packet fuzzing ({...} after a packet)");
        }
        if direction == Direction::Inbound && spec.window.is_none() {
            return syntax("window must be specified for inbound packets");
        }
        Ok(PacketSpec { direction, ports, body: PacketBody::Tcp(spec) })
    }

    fn opt_ports(&mut self) -> P<Option<(u16, u16)>> {
        if let (Some(Tok::Int(a)), Some(Tok::Punct('>')), Some(Tok::Int(b))) =
            (self.peek(), self.peek_at(1), self.peek_at(2))
        {
            let (a, b) = (*a, *b);
            self.pos += 3;
            let a = u16::try_from(a).or_else(|_| syntax("src port out of range"))?;
            let b = u16::try_from(b).or_else(|_| syntax("dst port out of range"))?;
            return Ok(Some((a, b)));
        }
        Ok(None)
    }

    fn flags(&mut self) -> P<u8> {
        let text = match self.next() {
            Some(Tok::Word(w)) => {
                if self.eat_punct('.') {
                    format!("{w}.")
                } else {
                    w
                }
            }
            Some(Tok::Punct('.')) => ".".to_string(),
            Some(Tok::Punct('-')) => String::new(),
            Some(Tok::Float(_)) | Some(Tok::Int(_)) => return unsupported("AccECN ACE flags"),
            _ => {
                self.pos -= 1;
                return syntax(format!("expected TCP flags but found {}", self.describe()));
            }
        };
        let mut flags = 0u8;
        for c in text.chars() {
            flags |= match c {
                'F' => 0x01,
                'S' => 0x02,
                'R' => 0x04,
                'P' => 0x08,
                '.' => 0x10,
                'U' => 0x20,
                'E' => 0x40,
                'W' => 0x80,
                'A' | '0'..='7' => return unsupported(format!("TCP flag '{c}' (AccECN)")),
                _ => return syntax(format!("Invalid TCP flag: '{c}'")),
            };
        }
        Ok(flags)
    }

    fn tcp_option(&mut self) -> P<TcpOpt> {
        let Some(Tok::Word(w)) = self.next() else {
            self.pos -= 1;
            return syntax(format!("expected a TCP option but found {}", self.describe()));
        };
        Ok(match w.as_str() {
            "nop" => TcpOpt::Nop,
            "eol" => TcpOpt::Eol,
            "mss" => TcpOpt::Mss(self.u16("mss value")?),
            "wscale" => {
                let n = self.int()?;
                TcpOpt::WScale(u8::try_from(n).or_else(|_| syntax("window scale shift count out of range"))?)
            }
            "sackOK" => TcpOpt::SackOk,
            "sack" => {
                let mut blocks = Vec::new();
                while matches!(self.peek(), Some(Tok::Int(_))) {
                    let l = self.u32("SACK left edge")?;
                    self.expect_punct(':')?;
                    let r = self.u32("SACK right edge")?;
                    blocks.push((l, r));
                }
                if blocks.is_empty() {
                    return syntax("a sack option needs at least one block");
                }
                TcpOpt::Sack(blocks)
            }
            "TS" => {
                if !self.is_word("val") {
                    return syntax("expected 'val' after TS");
                }
                self.pos += 1;
                let val = self.u32("ts val")?;
                if !self.is_word("ecr") {
                    return syntax("expected 'ecr' after TS val");
                }
                self.pos += 1;
                let ecr = self.u32("ecr val")?;
                TcpOpt::Timestamp { val, ecr }
            }
            "FO" | "FOEXP" => return unsupported("TCP Fast Open option"),
            "md5" => return unsupported("TCP MD5 signature option"),
            other => return syntax(format!("unknown TCP option '{other}'")),
        })
    }

    fn icmp(&mut self) -> P<IcmpSpec> {
        let Some(Tok::Word(ty)) = self.next() else {
            self.pos -= 1;
            return syntax("expected an ICMP type");
        };
        let mut spec = IcmpSpec { ty, code: None, mtu: None, echoed: Echoed::Tcp { seq: 0, len: 0 } };
        if let Some(Tok::Word(w)) = self.peek() {
            if w != "mtu" && w != "id" {
                spec.code = Some(w.clone());
                self.pos += 1;
            }
        }
        if self.is_word("mtu") {
            self.pos += 1;
            spec.mtu = Some(self.u16("mtu")?);
        }
        if self.is_word("id") {
            return unsupported("ICMP echo id");
        }
        if self.eat_punct('[') {
            if self.is_word("udp") {
                self.pos += 1;
                self.expect_punct('(')?;
                spec.echoed = Echoed::Udp { len: self.u16("UDP payload size")? };
                self.expect_punct(')')?;
            } else if self.is_word("raw") {
                return unsupported("ICMP quoting a raw datagram");
            } else {
                let seq = self.u32("sequence number")?;
                self.expect_punct(':')?;
                let _end = self.u32("end sequence number")?;
                self.expect_punct('(')?;
                let len = self.u16("payload size")?;
                self.expect_punct(')')?;
                spec.echoed = Echoed::Tcp { seq, len };
            }
            self.expect_punct(']')?;
        }
        Ok(spec)
    }

    fn syscall(&mut self) -> P<SyscallSpec> {
        let mut end = None;
        if self.peek() == Some(&Tok::Ellipsis) {
            self.pos += 1;
            self.eat_punct('+');
            end = Some(self.time()?);
        }
        let Some(Tok::Word(name)) = self.next() else {
            self.pos -= 1;
            return syntax(format!("expected a system call name but found {}", self.describe()));
        };
        self.expect_punct('(')?;
        let args = self.expr_list(')')?;
        self.expect_punct('=')?;
        let result = self.expr()?;
        let mut errno = None;
        let mut note = None;
        if let Some(Tok::Word(w)) = self.peek() {
            errno = Some(w.clone());
            self.pos += 1;
        }
        if self.is_punct('(') {
            note = Some(self.note()?);
        }
        Ok(SyscallSpec { end, name, args, result, errno, note })
    }

    /// `( words... )` after a result: free text up to the matching parenthesis.
    fn note(&mut self) -> P<String> {
        self.expect_punct('(')?;
        let mut depth = 1;
        let mut words = Vec::new();
        while let Some(t) = self.next() {
            match t {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(words.join(" "));
                    }
                }
                Tok::Word(w) | Tok::Float(w) => words.push(w),
                Tok::Int(n) => words.push(n.to_string()),
                Tok::Punct(c) => words.push(c.to_string()),
                _ => {}
            }
        }
        syntax("unterminated note in parentheses")
    }

    fn expr_list(&mut self, close: char) -> P<Vec<Expr>> {
        let mut items = Vec::new();
        if self.eat_punct(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_punct(',') {
                continue;
            }
            self.expect_punct(close)?;
            return Ok(items);
        }
    }

    fn expr(&mut self) -> P<Expr> {
        let mut e = self.primary()?;
        while self.eat_punct('|') {
            let rhs = self.primary()?;
            e = Expr::Or(Box::new(e), Box::new(rhs));
        }
        Ok(e)
    }

    fn primary(&mut self) -> P<Expr> {
        let e = match self.next() {
            Some(Tok::Ellipsis) => Expr::Ellipsis,
            Some(Tok::Int(n)) => Expr::Int(n),
            Some(Tok::Str(s)) => {
                let mut s = s;
                while let Some(Tok::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                if self.peek() == Some(&Tok::Ellipsis) {
                    self.pos += 1;
                }
                Expr::Str(s)
            }
            Some(Tok::Word(w)) => {
                if self.eat_punct('(') {
                    Expr::Call(w, self.expr_list(')')?)
                } else {
                    Expr::Word(w)
                }
            }
            Some(Tok::Punct('[')) => {
                self.depth += 1;
                let items = self.expr_list(']');
                self.depth -= 1;
                Expr::List(items?)
            }
            Some(Tok::Punct('{')) => {
                self.depth += 1;
                let items = self.expr_list('}');
                self.depth -= 1;
                Expr::Braces(items?)
            }
            Some(Tok::Ip4(_)) => return unsupported("IP address literal in an expression"),
            _ => {
                self.pos -= 1;
                return syntax(format!("expected an expression but found {}", self.describe()));
            }
        };
        // `name=value` inside braces (`fd=4`, `onoff=1`, `msg_name(...)=...`).
        if self.is_punct('=') && matches!(e, Expr::Word(_) | Expr::Call(..)) && self.depth > 0 {
            self.pos += 1;
            let rhs = self.expr()?;
            return Ok(Expr::Assign(Box::new(e), Box::new(rhs)));
        }
        Ok(e)
    }
}

/// `"0.100"` seconds as microseconds, exactly.
fn seconds_to_usecs(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: i64 = if int.is_empty() { 0 } else { int.parse().unwrap_or(0) };
    let mut frac: String = frac.chars().take(6).collect();
    while frac.len() < 6 {
        frac.push('0');
    }
    int * 1_000_000 + frac.parse::<i64>().unwrap_or(0)
}

/// Parses a script. Constructs that are packetdrill but not supported here end up in
/// [`Script::unsupported`]; a syntax error is returned as [`ParseError`].
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0, lines: text.lines().collect(), depth: 0 };
    let mut script = Script::default();
    while let Some(Tok::Opt(name, value)) = p.peek().cloned() {
        script.options.push(ScriptOption { line: p.line(), name, value });
        p.pos += 1;
    }
    if let Some(Tok::Command(c)) = p.peek().cloned() {
        script.unsupported.push(Unsupported { line: p.line(), what: format!("init shell command `{c}`") });
        p.pos += 1;
    }
    while p.pos < p.toks.len() {
        let line = p.line();
        if let Some(Tok::Command(c)) = p.peek().cloned() {
            // A trailing cleanup command.
            script.unsupported.push(Unsupported { line, what: format!("cleanup shell command `{c}`") });
            p.pos += 1;
            continue;
        }
        if let Some(Tok::Opt(name, _)) = p.peek().cloned() {
            return Err(ParseError { line, message: format!("option --{name} after the first event") });
        }
        match p.event() {
            Ok(e) => script.events.push(e),
            Err(Problem::Unsupported(what)) => {
                script.unsupported.push(Unsupported { line, what });
                p.recover();
            }
            Err(Problem::Syntax(message)) => {
                let line = p.line().max(line);
                return Err(ParseError { line, message });
            }
        }
    }
    Ok(script)
}
