//! PURE. HTTP/1 heads: httparse → `RequestHead` / `ResponseHead`, with every check
//! RFC 9112 makes a MUST (docs/security.md, S13–S19, S24, B1, B2; the ids in comments
//! below refer to it too). A head is kept as its raw bytes plus offsets, no string per
//! header; the `_into` parsers refill a head the caller keeps, so a connection that
//! reuses one allocates nothing per request.
//!
//! Framing (Content-Length / Transfer-Encoding) is decided in `framing.rs`; this file
//! only guarantees that every line is well-formed.

use std::fmt;
use std::ops::Range;

use super::scan::ScanError;

/// Apache's `LimitRequestLine` / `LimitRequestFieldSize` (8190) and nginx's 8 KiB
/// buffer: one request line or header line longer than this is refused with 431.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// A backend's response head may be larger than a request's, but not unbounded
/// (docs/security.md, B9).
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Apache's `LimitRequestFields` and HAProxy's `tune.http.maxhdr` are both about 100:
/// the default for `[server] max_headers`, and the limit for response heads.
pub const MAX_HEADERS: usize = 100;
/// The most `max_headers` may be: the parser's slots live on the stack.
pub const MAX_HEADERS_LIMIT: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
        }
    }
}

/// Why a head was refused. The client (or the backend, for a response) is at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Over the size or header-count limit: 431 for requests, 502 for responses.
    TooLarge,
    /// Malformed: 400 for requests, 502 for responses. The text goes to the log.
    Malformed(&'static str),
    /// A well-formed request sidecar will not serve (CONNECT): 405.
    MethodNotAllowed,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("head too large"),
            Self::Malformed(why) => f.write_str(why),
            Self::MethodNotAllowed => f.write_str("CONNECT is not served (sidecar is not a forward proxy)"),
        }
    }
}

impl From<ScanError> for HeadError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::BareLf => Self::Malformed("bare LF line ending"),
            ScanError::BareCr => Self::Malformed("bare CR"),
            ScanError::TooLarge => Self::TooLarge,
        }
    }
}

fn from_httparse(e: httparse::Error) -> HeadError {
    HeadError::Malformed(match e {
        httparse::Error::HeaderName => "invalid header name (space, control byte, missing colon or obs-fold)",
        httparse::Error::HeaderValue => "control byte in a header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid method or request line",
        httparse::Error::TooManyHeaders => return HeadError::TooLarge,
        httparse::Error::Version => "unsupported HTTP version",
    })
}

/// Header lines as offsets into a head's bytes, in the order received.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    raw: Vec<u8>,
    lines: Vec<(Range<u32>, Range<u32>)>,
}

impl Headers {
    /// Replaces the lines with `parsed`, which borrows from `buf`; offsets are taken
    /// before `buf` is copied. The storage is reused: no allocation once it has grown
    /// to the size of the heads it holds.
    fn refill(&mut self, buf: &[u8], parsed: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base) as u32;
            start..start + s.len() as u32
        };
        self.lines.clear();
        self.lines.extend(parsed.iter().map(|h| (offset(h.name.as_bytes()), offset(h.value))));
        self.raw.clear();
        self.raw.extend_from_slice(buf);
    }

    /// Bytes of heap the lines hold (kept for reuse after `refill`).
    pub fn capacity_bytes(&self) -> usize {
        self.raw.capacity() + self.lines.capacity() * std::mem::size_of::<(Range<u32>, Range<u32>)>()
    }

    /// `(name, value)` in the order received; names keep their case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        // Names were checked to be tokens (ASCII) by httparse.
        self.iter_bytes().map(|(n, v)| (std::str::from_utf8(n).unwrap_or(""), v))
    }

    /// `iter` with names as bytes: what lookups and the head writers compare, without
    /// a UTF-8 check of every name on every pass.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let bytes = |r: &Range<u32>| &self.raw[r.start as usize..r.end as usize];
        self.lines.iter().map(move |(n, v)| (bytes(n), bytes(v)))
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter_bytes().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// The only or first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter_bytes().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    pub fn count(&self, name: &str) -> usize {
        self.all(name).count()
    }

    /// Whether a comma-separated header (across all its lines) holds `token`,
    /// case-insensitively (RFC 9110 §5.6.1 lists; `Connection: keep-alive, Upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name).any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
    }
}

/// The elements of a comma-separated list, trimmed, empty ones skipped.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

pub fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

/// A parsed, validated request head.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: String,
    /// The request-target exactly as received (validated bytes only).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    /// The value of the first cookie `name` across the `Cookie` lines (RFC 6265 §5.4:
    /// `name=value` pairs separated by `;`, spaces around name and value ignored).
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.headers.all("Cookie").flat_map(|v| v.split(|&b| b == b';')).find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name.as_bytes()).then(|| trim(&pair[eq + 1..]))
        })
    }

    /// The request line as Apache's `%{THE_REQUEST}` shows it.
    pub fn request_line(&self) -> String {
        let mut line = String::new();
        self.write_request_line(&mut line);
        line
    }

    /// Appends the request line to `out`: no formatting machinery, and no allocation
    /// when `out` has room.
    pub fn write_request_line(&self, out: &mut String) {
        let version = self.version.as_str();
        out.reserve(self.method.len() + self.target.len() + version.len() + 2);
        for (i, part) in [self.method.as_str(), self.target.as_str(), version].into_iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(part);
        }
    }

    /// Bytes of heap the head holds (kept for reuse by `parse_request_head_into`).
    pub fn capacity_bytes(&self) -> usize {
        self.method.capacity() + self.target.capacity() + self.headers.capacity_bytes()
    }

    /// The `Host` header. The parser accepts only a valid host (`is_valid_host`), which
    /// is ASCII.
    pub fn host(&self) -> Option<&str> {
        self.headers.get("Host").and_then(|h| std::str::from_utf8(h).ok())
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; 1.0 only with keep-alive.
    pub fn wants_keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.headers.has_token("Connection", "close"),
            Version::Http10 => self.headers.has_token("Connection", "keep-alive"),
        }
    }

    /// `Expect: 100-continue` on a 1.1 request (RFC 9110 §10.1.1: ignore it from 1.0).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self.headers.get("Expect").is_some_and(|v| trim(v).eq_ignore_ascii_case(b"100-continue"))
    }
}

/// Parses a complete request head (`buf` ends with CRLFCRLF, checked by `HeadScanner`)
/// of at most `max_headers` header lines.
pub fn parse_request_head(buf: &[u8], max_headers: usize) -> Result<RequestHead, HeadError> {
    let mut head = RequestHead::default();
    parse_request_head_into(buf, max_headers, &mut head)?;
    Ok(head)
}

/// `parse_request_head` into `head`, reusing its storage. After an error `head` holds
/// no meaningful request.
pub fn parse_request_head_into(buf: &[u8], max_headers: usize, head: &mut RequestHead) -> Result<(), HeadError> {
    let mut all = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
    let slots = &mut all[..max_headers.clamp(1, MAX_HEADERS_LIMIT)];
    let mut req = httparse::Request::new(slots);
    match req.parse(buf).map_err(from_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HeadError::Malformed("incomplete head")),
    }
    let target = req.path.unwrap_or_default();
    if !target.bytes().all(crate::target::is_target_byte) {
        return Err(HeadError::Malformed("request target contains a control, space, non-ASCII byte or '#'"));
    }
    let n = req.headers.len();
    if target.len() > MAX_LINE_BYTES || head_lines_too_long(&req.headers[..n]) {
        return Err(HeadError::TooLarge);
    }
    head.method.clear();
    head.method.push_str(req.method.unwrap_or_default());
    head.target.clear();
    head.target.push_str(target);
    head.version = if req.version == Some(0) { Version::Http10 } else { Version::Http11 };
    head.headers.refill(buf, &req.headers[..n]);
    check_request(head)
}

fn head_lines_too_long(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| h.name.len() + h.value.len() + 2 > MAX_LINE_BYTES)
}

fn check_request(head: &RequestHead) -> Result<(), HeadError> {
    if head.method == "CONNECT" {
        return Err(HeadError::MethodNotAllowed);
    }
    match head.headers.count("Host") {
        0 if head.version == Version::Http11 => return Err(HeadError::Malformed("HTTP/1.1 request without Host")),
        0 => {}
        1 => {
            let host = head.headers.get("Host").unwrap_or_default();
            if !is_valid_host(host) {
                return Err(HeadError::Malformed("invalid Host header"));
            }
        }
        _ => return Err(HeadError::Malformed("more than one Host header")),
    }
    let t = head.target.as_bytes();
    match t.first() {
        Some(b'/') => Ok(()),
        Some(b'*') if t.len() == 1 && head.method == "OPTIONS" => Ok(()),
        _ if is_absolute_form(&head.target) => Ok(()),
        _ => Err(HeadError::Malformed("request target is not origin-form or http(s) absolute-form")),
    }
}

/// `http://` or `https://` followed by a valid authority (no userinfo) — the only
/// absolute-form sidecar accepts; it routes by the path and never connects to the
/// host named (docs/security.md, O1 and O2).
fn is_absolute_form(target: &str) -> bool {
    let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    is_valid_host(authority.as_bytes())
}

/// RFC 9110 §7.2 `uri-host [ ":" port ]`, strict: a DNS name or dotted IPv4 or a
/// bracketed IPv6 literal; no userinfo, path, space, or second colon (docs/security.md, H3).
pub fn is_valid_host(v: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    match crate::target::split_host_port(s) {
        Ok((host, port)) => {
            port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                && !host.ends_with("..")
                && (host.starts_with('[') || !host.contains('_'))
        }
        Err(_) => false,
    }
}

/// A parsed, validated response head.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub version: Version,
    pub headers: Headers,
}

/// Parses a complete response head from a backend. Anything odd is the backend's
/// fault and ends in 502 (docs/security.md, "Backend responses").
pub fn parse_response_head(buf: &[u8]) -> Result<ResponseHead, HeadError> {
    let mut head = ResponseHead::default();
    parse_response_head_into(buf, &mut head)?;
    Ok(head)
}

/// `parse_response_head` into `head`, reusing its storage. After an error `head` holds
/// no meaningful response.
pub fn parse_response_head_into(buf: &[u8], head: &mut ResponseHead) -> Result<(), HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(buf).map_err(from_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HeadError::Malformed("incomplete head")),
    }
    let status = res.code.unwrap_or_default();
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed("status code out of range"));
    }
    let reason = res.reason.unwrap_or_default();
    if !reason.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return Err(HeadError::Malformed("invalid reason phrase"));
    }
    head.status = status;
    head.reason.clear();
    head.reason.push_str(reason);
    head.version = if res.version == Some(0) { Version::Http10 } else { Version::Http11 };
    let n = res.headers.len();
    head.headers.refill(buf, &res.headers[..n]);
    Ok(())
}

impl ResponseHead {
    /// Bytes of heap the head holds (kept for reuse by `parse_response_head_into`).
    pub fn capacity_bytes(&self) -> usize {
        self.reason.capacity() + self.headers.capacity_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<RequestHead, HeadError> {
        parse_request_head(s.as_bytes(), MAX_HEADERS)
    }

    #[test]
    fn request_heads() {
        for (input, ok) in [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("get / HTTP/1.1\r\nHost: a\r\n\r\n", true), // methods are case-sensitive tokens, forwarded as-is
            ("GET / HTTP/1.0\r\n\r\n", true),
            ("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", true),
            ("GET / HTTP/1.1\r\n\r\n", false),                       // H1
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", false), // H2
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: 4714::abcd:8001\r\n\r\n", false),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false), // S24
            ("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", false),
            ("G ET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET / HTTP/1.11\r\nHost: a\r\n\r\n", false),
            ("GET / HTTP/10.0\r\nHost: a\r\n\r\n", false),
            ("GET / HTT/1.0\r\nHost: a\r\n\r\n", false),
            ("GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", false),        // O4
            ("GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", false),     // authority-form
            ("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", false), // O2
            ("GET http://a@b/ HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", false), // S16
            ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", false),                      // S19
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", false),       // S15
            ("GET / HTTP/1.1\r\nHost: a\r\nFoo bar: x\r\n\r\n", false),         // S17
            ("GET / HTTP/1.1\r\nHost: a\r\nF\x01o: x\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nFoo bar\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nFoo: b\x01ar\r\n\r\n", false), // S18
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\x00.b\r\n\r\n", false),
        ] {
            assert_eq!(req(input).is_ok(), ok, "input {input:?}: {:?}", req(input).err());
        }
        // HTAB and obs-text are legal in values.
        assert!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xff\r\n\r\n", MAX_HEADERS).is_ok());
        assert_eq!(req("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").err(), Some(HeadError::MethodNotAllowed));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(req(&s).err(), Some(HeadError::TooLarge));
    }

    #[test]
    fn headers_keep_order_and_case() {
        let h = req("GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-Case: 1\r\nConnection: keep-alive, Upgrade\r\n\r\n")
            .expect("valid");
        let names: Vec<&str> = h.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "X-Mixed-Case", "Connection"]);
        assert!(h.headers.has_token("connection", "upgrade"));
        assert!(!h.headers.has_token("connection", "close"));
    }

    #[test]
    fn a_head_parsed_into_reused_storage_keeps_nothing_of_the_last_one() {
        let long = "POST /a/long/target?with=query HTTP/1.1\r\nHost: first.example\r\nX-A: 1\r\nX-B: 2\r\n\
                    Content-Length: 0\r\n\r\n";
        let short = "GET /b HTTP/1.0\r\nHost: h\r\n\r\n";
        let mut reused = parse_request_head(long.as_bytes(), MAX_HEADERS).expect("valid");
        parse_request_head_into(short.as_bytes(), MAX_HEADERS, &mut reused).expect("valid");
        let fresh = parse_request_head(short.as_bytes(), MAX_HEADERS).expect("valid");
        let lines = |h: &RequestHead| h.headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect::<Vec<_>>();
        assert_eq!(
            (&reused.method, &reused.target, reused.version, lines(&reused)),
            (&fresh.method, &fresh.target, fresh.version, lines(&fresh))
        );
        // A refused head leaves the storage usable for the next one.
        assert!(parse_request_head_into(b"GET / HTTP/1.1\r\n\r\n", MAX_HEADERS, &mut reused).is_err());
        parse_request_head_into(short.as_bytes(), MAX_HEADERS, &mut reused).expect("valid");
        assert_eq!(lines(&reused), lines(&fresh));

        let mut res = parse_response_head(b"HTTP/1.1 404 Not Found Here\r\nX-A: 1\r\nX-B: 2\r\n\r\n").expect("valid");
        parse_response_head_into(b"HTTP/1.0 200 \r\nX-C: 3\r\n\r\n", &mut res).expect("valid");
        assert_eq!((res.status, res.reason.as_str(), res.version), (200, "", Version::Http10));
        assert_eq!(res.headers.iter().map(|(n, v)| (n, v.to_vec())).collect::<Vec<_>>(), [("X-C", b"3".to_vec())]);
    }

    #[test]
    fn response_heads() {
        for (input, ok) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.0 204 No Content\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", false), // B1
            ("HTTP/1.1 200 OK\r\nFoo bar\r\n\r\n", false),   // B2
            ("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", false),
            ("HTTP/1.1 999 Nope\r\n\r\n", false),
            ("HTTP/2 200 OK\r\n\r\n", false),
        ] {
            assert_eq!(parse_response_head(input.as_bytes()).is_ok(), ok, "input {input:?}");
        }
    }
}
