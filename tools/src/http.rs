//! A small HTTP/1.1 origin server as pure functions over bytes (RFC 9110 and RFC 9112), shared by `serve
//! --http` (one thread per connection on a running stack) and the simulated demo (sans-IO calls on virtual
//! time), plus the client-side check the demo applies to what comes back.
//!
//! Resources: `GET /` is a short HTML page; `GET /bytes/N` is N bytes where byte `i` is `i % 251` (251 is
//! prime, so a lost, doubled or misplaced segment cannot go unseen). `HEAD` is answered too. Connections are
//! persistent unless the request says `Connection: close` (or is HTTP/1.0 without `keep-alive`). Malformed
//! requests get 400 and the connection is closed; a request head over [`MAX_HEAD`] gets 431 and a close.

use std::fmt::Write as _;

/// The largest request head (request line and header fields) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// The largest `/bytes/N` served (1 GiB).
pub const MAX_BYTES: u64 = 1 << 30;

/// `PATTERN[i] == i % 251`, long enough that a chunk of [`PATTERN_CHUNK`] bytes can start at any phase.
static PATTERN: [u8; PATTERN_LEN] = pattern_table();
const PATTERN_LEN: usize = PATTERN_CHUNK + 251;
/// The most body bytes handed out at once (64 KiB).
pub const PATTERN_CHUNK: usize = 64 * 1024;

const fn pattern_table() -> [u8; PATTERN_LEN] {
    let mut table = [0u8; PATTERN_LEN];
    let mut i = 0;
    while i < PATTERN_LEN {
        table[i] = (i % 251) as u8;
        i += 1;
    }
    table
}

/// The byte at `offset` of every `/bytes/N` body.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// The page served at `/`.
const INDEX_HTML: &str = "<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"><title>ustack</title></head>
<body><h1>Hello from ustack</h1>
<p>This page came over TCP/IP implemented in user space: ustack did the ARP, IPv4 and TCP.</p>
<p>Try <a href=\"/bytes/100000\">/bytes/100000</a>: N bytes where byte i is i % 251.</p>
</body></html>
";

/// What a response carries after its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of the `i % 251` pattern, generated as they are sent.
    Pattern(u64),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Pattern(n) => *n,
        }
    }
}

/// A response ready to send: the status line and header fields, the body, and whether the connection ends
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub head: Vec<u8>,
    pub body: Body,
    pub close: bool,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Body, close: bool, head_only: bool, extra: &str) -> Response {
        let mut head = String::new();
        let _ = write!(
            head,
            "HTTP/1.1 {status} {}\r\nServer: ustack\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: {}\r\n{extra}\r\n",
            reason(status),
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        // HEAD: the same header fields as GET, Content-Length included, and no body (RFC 9110 section 9.3.2).
        let body = if head_only { Body::Bytes(Vec::new()) } else { body };
        Response { status, head: head.into_bytes(), body, close }
    }

    /// A short plain-text response, for errors.
    fn text(status: u16, message: &str, close: bool, head_only: bool) -> Response {
        let body = Body::Bytes(format!("{status} {}: {message}\n", reason(status)).into_bytes());
        let extra = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
        Response::new(status, "text/plain; charset=utf-8", body, close, head_only, extra)
    }

    /// An error that ends the connection (the request could not be framed, so nothing after it can be either).
    fn fatal(status: u16, message: &str) -> Response {
        Response::text(status, message, true, false)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response on its way out: the head, then the body, as slices for `send`/`write`.
#[derive(Debug)]
pub struct Outgoing {
    response: Response,
    /// Bytes of head and body already sent.
    sent: u64,
}

impl Outgoing {
    pub fn new(response: Response) -> Outgoing {
        Outgoing { response, sent: 0 }
    }

    pub fn response(&self) -> &Response {
        &self.response
    }

    fn total(&self) -> u64 {
        self.response.head.len() as u64 + self.response.body.len()
    }

    pub fn is_done(&self) -> bool {
        self.sent >= self.total()
    }

    /// The next bytes to send (empty when done). The head comes joined to the start of the body, so that a
    /// short response leaves as one segment and a long one does not begin with a small one.
    pub fn chunk(&self) -> std::borrow::Cow<'_, [u8]> {
        let head = &self.response.head;
        let head_len = head.len() as u64;
        if self.sent < head_len {
            let mut joined = head[self.sent as usize..].to_vec();
            joined.extend_from_slice(self.body_chunk(0));
            return std::borrow::Cow::Owned(joined);
        }
        std::borrow::Cow::Borrowed(self.body_chunk(self.sent - head_len))
    }

    /// Up to [`PATTERN_CHUNK`] bytes of the body from `offset`.
    fn body_chunk(&self, offset: u64) -> &[u8] {
        match &self.response.body {
            Body::Bytes(b) => {
                let start = offset.min(b.len() as u64) as usize;
                &b[start..(start + PATTERN_CHUNK).min(b.len())]
            }
            Body::Pattern(n) => {
                let len = n.saturating_sub(offset).min(PATTERN_CHUNK as u64) as usize;
                let phase = (offset % 251) as usize;
                &PATTERN[phase..phase + len]
            }
        }
    }

    /// Records that `n` bytes of the last [`Outgoing::chunk`] went out.
    pub fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n as u64).min(self.total());
    }
}

/// One connection's request side: bytes in, responses out. Pipelined requests are answered in order.
#[derive(Debug, Default)]
pub struct Connection {
    input: Vec<u8>,
    /// Set once a response that closes the connection has been produced: nothing more is parsed.
    closed: bool,
    pub requests: u64,
}

impl Connection {
    pub fn new() -> Connection {
        Connection::default()
    }

    /// Appends bytes read from the peer.
    pub fn received(&mut self, data: &[u8]) {
        if !self.closed {
            self.input.extend_from_slice(data);
        }
    }

    /// True when part of a request has arrived but not all of its head.
    pub fn has_partial_request(&self) -> bool {
        !self.closed && self.input.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    /// The response to the next complete request, or to a request that cannot be one; `None` while the head
    /// is still incomplete (or after a closing response).
    pub fn next_response(&mut self) -> Option<Response> {
        if self.closed {
            return None;
        }
        let response = match parse_request(&self.input) {
            Parsed::Incomplete => return None,
            Parsed::Complete { request, consumed } => {
                self.input.drain(..consumed);
                respond(&request)
            }
            Parsed::Invalid(response) => response,
        };
        self.requests += 1;
        if response.close {
            self.closed = true;
            self.input.clear();
        }
        Some(response)
    }

    /// The answer to a peer that went quiet in the middle of a request head.
    pub fn timed_out(&mut self) -> Response {
        self.closed = true;
        Response::fatal(408, "the request head did not arrive in time")
    }
}

/// A request head, as far as this server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The connection ends after the response.
    pub close: bool,
    /// The request carries a body (this server never reads one, so it closes after answering).
    pub has_body: bool,
}

/// What the bytes at the front of a connection's input are.
#[derive(Debug)]
enum Parsed {
    Incomplete,
    Complete {
        request: Request,
        consumed: usize,
    },
    /// The answer to a request that cannot be served or framed; it closes the connection.
    Invalid(Response),
}

/// Where the head ends: the index just past the empty line (CRLF CRLF, or bare LFs, which RFC 9112 section
/// 2.2 lets a recipient accept).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(at) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + at;
        match &buf[nl + 1..] {
            [b'\n', ..] => return Some(nl + 2),
            [b'\r', b'\n', ..] => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn parse_request(buf: &[u8]) -> Parsed {
    // Empty lines before a request line are ignored (RFC 9112 section 2.2).
    let skip = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let rest = &buf[skip..];
    let Some(end) = head_end(rest) else {
        return if rest.len() > MAX_HEAD {
            Parsed::Invalid(Response::fatal(431, &format!("the request head is larger than {MAX_HEAD} bytes")))
        } else {
            Parsed::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Parsed::Invalid(Response::fatal(431, &format!("the request head is larger than {MAX_HEAD} bytes")));
    }
    match parse_head(&rest[..end]) {
        Ok(request) => Parsed::Complete { request, consumed: skip + end },
        Err((status, why)) => Parsed::Invalid(Response::fatal(status, &why)),
    }
}

fn parse_head(head: &[u8]) -> Result<Request, (u16, String)> {
    let bad = |why: &str| (400, why.to_string());
    let text = std::str::from_utf8(head).map_err(|_| bad("the request head is not valid UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("the request line is not `METHOD TARGET HTTP/1.1`"));
    };
    if !is_token(method) {
        return Err(bad("the method is not a token"));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
        return Err(bad("the request target is empty or has forbidden characters"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.len() == 8 && v.starts_with("HTTP/") && v.as_bytes()[5].is_ascii_digit() => {
            return Err((505, format!("{v} is not supported; use HTTP/1.1")))
        }
        _ => return Err(bad("the protocol version is not HTTP/1.x")),
    };
    let (mut hosts, mut content_length, mut chunked) = (0, None::<u64>, false);
    let (mut close_token, mut keep_alive_token) = (false, false);
    for line in lines.filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(bad("obsolete line folding in a header field"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("a header field line has no colon"));
        };
        // No whitespace is allowed between the field name and the colon (RFC 9112 section 5.1).
        if !is_token(name) {
            return Err(bad("a header field name is empty or has whitespace or forbidden characters"));
        }
        let value = value.trim_matches([' ', '\t']);
        match name.to_ascii_lowercase().as_str() {
            "host" => hosts += 1,
            "connection" => {
                for option in value.split(',').map(|o| o.trim().to_ascii_lowercase()) {
                    close_token |= option == "close";
                    keep_alive_token |= option == "keep-alive";
                }
            }
            "content-length" => {
                let n = (!value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| bad("Content-Length is not a number"))?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(bad("two different Content-Length values"));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => chunked = true,
            _ => {}
        }
    }
    if minor == 1 && hosts != 1 {
        return Err(bad("an HTTP/1.1 request needs exactly one Host header field"));
    }
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    let persistent = if minor == 1 { !close_token } else { keep_alive_token && !close_token };
    Ok(Request { method: method.to_string(), target: target.to_string(), close: !persistent || has_body, has_body })
}

/// The response to a well-formed request.
pub fn respond(request: &Request) -> Response {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::text(405, "only GET and HEAD are served here", request.close, false),
    };
    let path = match origin_path(&request.target) {
        Some(path) => path,
        None => return Response::fatal(400, "the request target is not a path"),
    };
    let close = request.close;
    if path == "/" {
        let body = Body::Bytes(INDEX_HTML.as_bytes().to_vec());
        return Response::new(200, "text/html; charset=utf-8", body, close, head_only, "");
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Response::text(400, "N in /bytes/N must be a decimal number of bytes", true, head_only);
        }
        return match n.parse::<u64>() {
            Ok(count) if count <= MAX_BYTES => {
                Response::new(200, "application/octet-stream", Body::Pattern(count), close, head_only, "")
            }
            _ => Response::text(400, &format!("/bytes/N serves at most {MAX_BYTES} bytes"), true, head_only),
        };
    }
    Response::text(404, &format!("there is nothing at {path}; try / or /bytes/N"), close, head_only)
}

/// The path of an origin-form (`/a?b`) or absolute-form (`http://host/a?b`) target, without the query.
fn origin_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..7).map(str::to_ascii_lowercase);
        if lower.as_deref() != Some("http://") {
            return None;
        }
        let after = &target[7..];
        after.find('/').map_or("/", |at| &after[at..])
    };
    Some(path.split(['?', '#']).next().unwrap_or("/"))
}

/// A response as a client reads it: status, header fields (names lower-cased), body.
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Splits a whole response (read until the server closed) into its parts, checking that the body has the
/// length Content-Length announced.
pub fn parse_response(raw: &[u8]) -> Result<ClientResponse, String> {
    let end = head_end(raw).ok_or("the response has no complete head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the response head is not UTF-8")?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("the status line {status_line:?} is not `HTTP/1.1 NNN ...`"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let response = ClientResponse { status, headers, body: raw[end..].to_vec() };
    let length: usize = response
        .header("content-length")
        .ok_or("the response has no Content-Length")?
        .parse()
        .map_err(|_| "the response's Content-Length is not a number")?;
    if response.body.len() != length {
        return Err(format!("Content-Length says {length} bytes but {} arrived", response.body.len()));
    }
    Ok(response)
}

/// Checks a response to `GET /bytes/N`: status 200, N bytes, byte `i` equal to `i % 251`.
pub fn check_bytes_response(raw: &[u8], n: usize) -> Result<String, String> {
    let response = parse_response(raw)?;
    if response.status != 200 {
        return Err(format!("the status is {}, not 200", response.status));
    }
    if response.body.len() != n {
        return Err(format!("{} bytes arrived, {n} were asked for", response.body.len()));
    }
    if let Some(at) = response.body.iter().enumerate().position(|(i, &b)| b != pattern_byte(i as u64)) {
        return Err(format!("byte {at} is {}, expected {}", response.body[at], pattern_byte(at as u64)));
    }
    Ok(format!("HTTP/1.1 200 OK with Content-Length {n}; all {n} bytes arrived and every byte i is i % 251"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Response {
        let mut c = Connection::new();
        c.received(input.as_bytes());
        c.next_response().expect("a response")
    }

    fn all_bytes(response: Response) -> Vec<u8> {
        let mut out = Outgoing::new(response);
        let mut bytes = Vec::new();
        while !out.is_done() {
            let chunk = out.chunk().into_owned();
            // Send in odd-sized pieces, as a full send buffer would.
            let n = chunk.len().min(7919);
            bytes.extend_from_slice(&chunk[..n]);
            out.advance(n);
        }
        bytes
    }

    #[test]
    fn bytes_are_served_with_the_pattern() {
        let r = one("GET /bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.status, r.close), (200, false));
        let raw = all_bytes(r);
        assert!(check_bytes_response(&raw, 100_000).is_ok(), "{:?}", check_bytes_response(&raw, 100_000));
        assert!(String::from_utf8_lossy(&raw).contains("Connection: keep-alive\r\n"));
        let zero = all_bytes(one("GET /bytes/0 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(check_bytes_response(&zero, 0).is_ok());
    }

    #[test]
    fn pattern_chunks_keep_their_phase() {
        let mut out = Outgoing::new(Response::new(200, "x", Body::Pattern(200_000), false, false, ""));
        out.advance(out.response().head.len());
        let mut offset = 0u64;
        while !out.is_done() {
            let chunk = out.chunk().into_owned();
            let n = chunk.len().min(1000 + (offset as usize % 3));
            assert!(chunk[..n].iter().enumerate().all(|(i, &b)| b == pattern_byte(offset + i as u64)));
            offset += n as u64;
            out.advance(n);
        }
        assert_eq!(offset, 200_000);
    }

    #[test]
    fn index_head_and_errors() {
        let r = one("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(matches!(&r.body, Body::Bytes(b) if b.starts_with(b"<!DOCTYPE html>")));
        let head = one("HEAD /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(head.body.len(), 0);
        assert!(String::from_utf8_lossy(&head.head).contains("Content-Length: 10\r\n"));
        assert_eq!(one("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").status, 404);
        let post = one("POST / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((post.status, post.close), (405, false));
        assert!(String::from_utf8_lossy(&post.head).contains("Allow: GET, HEAD"));
        assert!(one("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").close, "bodies are not read");
        for bad in [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET / FTP/1.1\r\nHost: x\r\n\r\n",
            "GET bytes HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /bytes/1073741825 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /bytes/99999999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /bytes/-1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /bytes/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let r = one(bad);
            assert_eq!((r.status, r.close), (400, true), "{bad:?}");
        }
        assert_eq!(one("GET / HTTP/2.0\r\nHost: x\r\n\r\n").status, 505);
        assert_eq!(one("GET /bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
        assert_eq!(one("GET http://x/bytes/3?q=1 HTTP/1.1\r\nHost: x\r\n\r\n").body, Body::Pattern(3));
    }

    #[test]
    fn persistence_follows_version_and_connection() {
        assert!(one("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").close);
        assert!(one("GET / HTTP/1.1\r\nhost: x\r\nconnection: Keep-Alive, Close\r\n\r\n").close);
        assert!(one("GET / HTTP/1.0\r\n\r\n").close);
        assert!(!one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close);
        let r = one("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(String::from_utf8_lossy(&r.head).contains("Connection: close\r\n"));
    }

    #[test]
    fn pipelined_and_split_requests() {
        let mut c = Connection::new();
        c.received(b"\r\nGET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHo");
        assert_eq!(c.next_response().unwrap().body, Body::Pattern(1));
        assert!(c.next_response().is_none());
        assert!(c.has_partial_request());
        c.received(b"st: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let second = c.next_response().unwrap();
        assert_eq!((second.body, second.close), (Body::Pattern(2), true));
        assert!(c.next_response().is_none(), "nothing is parsed after a closing response");
        assert_eq!(c.requests, 2);
        let mut bare = Connection::new();
        bare.received(b"GET /bytes/5 HTTP/1.1\nHost: x\n\n");
        assert_eq!(bare.next_response().unwrap().body, Body::Pattern(5));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut c = Connection::new();
        c.received(b"GET / HTTP/1.1\r\nHost: x\r\n");
        let filler = format!("X-Filler: {}\r\n", "a".repeat(100));
        loop {
            c.received(filler.as_bytes());
            if c.input.len() > MAX_HEAD {
                break;
            }
            assert!(c.next_response().is_none());
        }
        let r = c.next_response().expect("431 before the head ends");
        assert_eq!((r.status, r.close), (431, true));
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(MAX_HEAD));
        assert_eq!(one(&big).status, 431);
    }

    #[test]
    fn responses_are_checked_by_the_client_side() {
        let raw = all_bytes(one("GET /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(check_bytes_response(&raw, 999).unwrap_err().contains("1000 bytes arrived"));
        let mut wrong = raw.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        assert!(check_bytes_response(&wrong, 1000).unwrap_err().contains("byte 999"));
        assert!(check_bytes_response(&raw[..raw.len() - 1], 1000).unwrap_err().contains("Content-Length"));
        let missing = all_bytes(one("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(check_bytes_response(&missing, 0).unwrap_err().contains("404"));
    }
}
