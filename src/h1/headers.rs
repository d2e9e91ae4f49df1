//! PURE. The heads sidecar writes: a request to a backend and a response to a client,
//! re-serialised from parsed heads, never the peer's raw bytes (a header line sidecar
//! did not parse cannot smuggle anything past it; docs/security.md, "Principles"), with
//! hop-by-hop headers removed, `X-Forwarded-*` and `Via` added, and ProxyPassReverse
//! applied.

use super::framing::Framing;
use super::head::{tokens, Headers, RequestHead, ResponseHead, Version};

/// Always hop-by-hop (RFC 9110 §7.6.1), besides whatever `Connection` names and `Proxy-*`.
const HOP_BY_HOP: [&str; 6] = ["Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade"];

/// Headers sidecar writes itself; a peer's copy is never passed through.
const REWRITTEN_ON_REQUEST: [&str; 4] = ["Host", "Content-Length", "X-Forwarded-Host", "X-Forwarded-Proto"];

fn is_hop_by_hop(name: &[u8], connection: &Headers) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
        || name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"proxy")
        || connection.all("Connection").any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
}

/// Whether `name` is one of `names`, case-insensitively.
fn is_one_of(name: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Facts about the client connection that go into forwarding headers.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub peer_ip: &'a str,
    /// `http` or `https`: the client-facing scheme, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// `Some(pseudonym)` when `via = true`.
    pub via: Option<&'a str>,
}

/// What the backend should receive.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The request-target to send (origin-form, valid on the wire).
    pub target: &'a str,
    /// The `Host` header to send, followed by `:port` when `port` is `Some`.
    pub host: &'a str,
    pub port: Option<u16>,
    pub framing: Framing,
    /// Forward as a WebSocket handshake (`Upgrade: websocket`, `Connection: Upgrade`).
    pub websocket: bool,
}

/// Writes the request head for the backend. Always HTTP/1.1: the backend connection is
/// pooled whatever the client spoke.
pub fn write_request_head(head: &RequestHead, out: &Outgoing<'_>, fwd: &Forwarding<'_>, buf: &mut Vec<u8>) {
    for part in [head.method.as_str(), " ", out.target, " HTTP/1.1\r\nHost: ", out.host] {
        buf.extend_from_slice(part.as_bytes());
    }
    if let Some(port) = out.port {
        buf.push(b':');
        push_decimal(buf, port.into());
    }
    buf.extend_from_slice(b"\r\n");
    let h = &head.headers;
    // Kept where they are and gathered in one pass each below, rather than collected:
    // a request's head is written without allocating.
    let is_xff = |name: &[u8]| name.eq_ignore_ascii_case(b"X-Forwarded-For");
    let is_via = |name: &[u8]| fwd.via.is_some() && name.eq_ignore_ascii_case(b"Via");
    let forwarded =
        |name: &[u8]| !(name.contains(&b'_') || is_hop_by_hop(name, h) || is_one_of(name, &REWRITTEN_ON_REQUEST));
    for (name, value) in h.iter_bytes() {
        if forwarded(name) && !is_xff(name) && !is_via(name) {
            push_header(buf, name, value);
        }
    }
    // Added after stripping, so a client's `Connection: X-Forwarded-For` cannot remove
    // them (CVE-2022-31813). The client's XFF is kept in front, as Apache does; only
    // the last element is sidecar's own word.
    buf.extend_from_slice(b"X-Forwarded-For: ");
    for (_, v) in h.iter_bytes().filter(|&(name, _)| is_xff(name) && forwarded(name)) {
        buf.extend_from_slice(v);
        buf.extend_from_slice(b", ");
    }
    buf.extend_from_slice(fwd.peer_ip.as_bytes());
    buf.extend_from_slice(b"\r\n");
    if let Some(client_host) = h.get("Host") {
        push_header(buf, b"X-Forwarded-Host", client_host);
    }
    for part in ["X-Forwarded-Proto: ", fwd.proto, "\r\n"] {
        buf.extend_from_slice(part.as_bytes());
    }
    if let Some(pseudonym) = fwd.via {
        let earlier = h.iter_bytes().filter(|&(name, _)| is_via(name) && forwarded(name)).map(|(_, v)| v);
        write_via(buf, earlier, head.version, pseudonym);
    }
    match out.framing {
        Framing::Length(n) => {
            buf.extend_from_slice(b"Content-Length: ");
            push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    if out.websocket {
        buf.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

fn write_via<'v>(buf: &mut Vec<u8>, earlier: impl Iterator<Item = &'v [u8]>, version: Version, pseudonym: &str) {
    buf.extend_from_slice(b"Via: ");
    for v in earlier {
        buf.extend_from_slice(v);
        buf.extend_from_slice(b", ");
    }
    let proto = if version == Version::Http10 { "1.0 " } else { "1.1 " };
    for part in [proto, pseudonym, "\r\n"] {
        buf.extend_from_slice(part.as_bytes());
    }
}

/// Appends `n` in decimal, without the formatting machinery.
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

fn push_header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// How the client connection continues after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientConnection {
    KeepAlive,
    Close,
    /// 101: the connection becomes a tunnel.
    Upgrade,
}

/// Writes the response head for the client. `framing` is what sidecar will send
/// (which may differ from the backend's: chunked to an HTTP/1.0 client becomes
/// close-delimited). `reverse` maps a backend URL in `Location`, `Content-Location` or
/// `URI` to the client-facing one (ProxyPassReverse), `None` to leave it.
pub fn write_response_head(
    res: &ResponseHead,
    client_version: Version,
    framing: Framing,
    connection: ClientConnection,
    via: Option<&str>,
    reverse: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    buf: &mut Vec<u8>,
) {
    let reason = if res.reason.is_empty() { "-" } else { &res.reason };
    buf.extend_from_slice(client_version.as_str().as_bytes());
    buf.push(b' ');
    push_decimal(buf, res.status.into());
    buf.push(b' ');
    buf.extend_from_slice(reason.as_bytes());
    buf.extend_from_slice(b"\r\n");
    let h = &res.headers;
    let bodiless = matches!(framing, Framing::None);
    let is_via = |name: &[u8]| via.is_some() && name.eq_ignore_ascii_case(b"Via");
    for (name, value) in h.iter_bytes() {
        if is_hop_by_hop(name, h) {
            continue;
        }
        // A HEAD or 304 answer keeps the backend's Content-Length: it describes the
        // representation, not this message's body (RFC 9110 §8.6).
        if name.eq_ignore_ascii_case(b"Content-Length") && !(bodiless && res.status != 204 && res.status >= 200) {
            continue;
        }
        if is_via(name) {
            continue;
        }
        if is_one_of(name, &["Location", "Content-Location", "URI"]) {
            if let Some(mapped) = reverse(value) {
                push_header(buf, name, &mapped);
                continue;
            }
        }
        push_header(buf, name, value);
    }
    if let Some(pseudonym) = via {
        let earlier = h.iter_bytes().filter(|&(name, _)| is_via(name) && !is_hop_by_hop(name, h)).map(|(_, v)| v);
        write_via(buf, earlier, res.version, pseudonym);
    }
    match framing {
        Framing::Length(n) => {
            buf.extend_from_slice(b"Content-Length: ");
            push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    match connection {
        ClientConnection::Upgrade => buf.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n"),
        ClientConnection::Close => buf.extend_from_slice(b"Connection: close\r\n"),
        ClientConnection::KeepAlive if client_version == Version::Http10 => {
            buf.extend_from_slice(b"Connection: keep-alive\r\n")
        }
        ClientConnection::KeepAlive => {}
    }
    buf.extend_from_slice(b"\r\n");
}

/// An interim `100 Continue` for the client.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{parse_request_head, parse_response_head, MAX_HEADERS};

    fn forward(request: &str, via: Option<&str>) -> String {
        let head = parse_request_head(request.as_bytes(), MAX_HEADERS).expect("valid head");
        let out =
            Outgoing { target: "/x", host: "backend", port: Some(3000), framing: Framing::Length(5), websocket: false };
        let fwd = Forwarding { peer_ip: "10.0.0.7", proto: "https", via };
        let mut buf = Vec::new();
        write_request_head(&head, &out, &fwd, &mut buf);
        String::from_utf8(buf).expect("ascii")
    }

    #[test]
    fn request_head_strips_and_adds() {
        let got = forward(
            "POST /a HTTP/1.1\r\nHost: front\r\nConnection: close, X-Forwarded-For, X-Secret\r\nX-Secret: s\r\n\
             X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
             Proxy-Authorization: x\r\nProxy: http://evil\r\nX_Forwarded_For: 1.1.1.1\r\nUpgrade: h2c\r\n\
             HTTP2-Settings: AA\r\nContent-Length: 5\r\nX-Keep-Case: 1\r\n\r\n",
            None,
        );
        assert_eq!(
            got,
            "POST /x HTTP/1.1\r\nHost: backend:3000\r\nHTTP2-Settings: AA\r\nX-Keep-Case: 1\r\n\
             X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Host: front\r\nX-Forwarded-Proto: https\r\n\
             Content-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn request_head_appends_xff_and_via() {
        let got = forward(
            "GET / HTTP/1.0\r\nHost: front\r\nX-Forwarded-For: 6.6.6.6\r\nVia: 1.1 edge\r\n\r\n",
            Some("sidecar"),
        );
        assert!(got.contains("X-Forwarded-For: 6.6.6.6, 10.0.0.7\r\n"), "{got}");
        assert!(got.contains("Via: 1.1 edge, 1.0 sidecar\r\n"), "{got}");
    }

    #[test]
    fn response_head_strips_frames_and_reverses() {
        let res = parse_response_head(
            b"HTTP/1.1 302 Found\r\nLocation: http://backend:3000/x\r\nContent-Length: 0\r\n\
              Transfer-Encoding: chunked\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n\
              Content-Location: https://other/\r\n\r\n",
        )
        .expect("valid head");
        let reverse =
            |v: &[u8]| v.strip_prefix(b"http://backend:3000").map(|rest| [b"https://front".as_slice(), rest].concat());
        let mut buf = Vec::new();
        write_response_head(
            &res,
            Version::Http11,
            Framing::Chunked,
            ClientConnection::KeepAlive,
            None,
            &reverse,
            &mut buf,
        );
        assert_eq!(
            String::from_utf8(buf).expect("ascii"),
            "HTTP/1.1 302 Found\r\nLocation: https://front/x\r\nContent-Location: https://other/\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn head_response_keeps_content_length() {
        let res = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n").expect("valid");
        let mut buf = Vec::new();
        write_response_head(
            &res,
            Version::Http10,
            Framing::None,
            ClientConnection::KeepAlive,
            None,
            &|_| None,
            &mut buf,
        );
        assert_eq!(buf, b"HTTP/1.0 200 OK\r\nContent-Length: 42\r\nConnection: keep-alive\r\n\r\n");
    }
}
