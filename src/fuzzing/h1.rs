//! Fuzz entry points for HTTP/1 syntax: request heads and their framing, chunked
//! bodies, response heads and WebSocket handshakes. What parses is written again by
//! the proxy's own head writers (`h1::headers`) and parsed again: a head sidecar writes
//! must mean to the next hop what the parsed one meant to sidecar.

use crate::access_log::{AccessFormat, AccessRecord};
use crate::h1::chunked::{check_prefix, chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::h1::framing::{request_framing, response_framing, Framing};
use crate::h1::head::{
    parse_request_head, parse_response_head, trim, HeadError, Headers, RequestHead, Version, MAX_HEADERS,
    MAX_HEADERS_LIMIT, MAX_LINE_BYTES, MAX_RESPONSE_HEAD_BYTES,
};
use crate::h1::headers::{write_request_head, write_response_head, ClientConnection, Forwarding, Outgoing};
use crate::h1::scan::{blank_lines, HeadScanner};
use crate::h1::upgrade::{check_switch, classify_upgrade, Upgrade};
use crate::route::{normalize_target, reverse_url, upstream_target, ReverseRule};
use crate::target::is_target_byte;

/// The default `[server] max_head_bytes`.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Headers sidecar writes itself on a forwarded request (with `via` on).
const WRITTEN_BY_SIDECAR: [&str; 9] = [
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "Via",
    "Content-Length",
    "Transfer-Encoding",
    "Upgrade",
    "Connection",
];

/// Hop-by-hop besides what `Connection` names (RFC 9110 §7.6.1), and `Proxy-*`.
fn is_hop_by_hop(name: &str, headers: &Headers) -> bool {
    ["Keep-Alive", "TE", "Trailer"].iter().any(|h| h.eq_ignore_ascii_case(name))
        || name.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("proxy"))
        || headers.has_token("Connection", name)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

/// Where the head at the start of `data` ends. The scanner must answer the same
/// whether the bytes come at once or a few at a time (the proxy scans as they arrive).
fn head_end(data: &[u8], max_bytes: usize) -> Option<usize> {
    let data = &data[..data.len().min(max_bytes)];
    let whole = HeadScanner::default().scan(data, max_bytes);
    let mut scanner = HeadScanner::default();
    let mut piecewise = Ok(None);
    for end in (1..data.len()).step_by(7).chain([data.len()]) {
        piecewise = scanner.scan(&data[..end], max_bytes);
        if piecewise != Ok(None) {
            break;
        }
    }
    assert_eq!(whole, piecewise, "scanning at once and piecewise disagree on {:?}", show(data));
    whole.ok().flatten()
}

/// A head sidecar wrote: it ends exactly at its end, with no bare CR or LF before.
fn assert_one_head(out: &[u8]) {
    let end = HeadScanner::default().scan(out, out.len() + 1);
    assert_eq!(end, Ok(Some(out.len())), "written head is not one well-formed head: {:?}", show(out));
}

// ---- request heads -------------------------------------------------------------

/// A request head (optionally followed by body bytes): the scanner, the parser, the
/// framing and upgrade decisions, path normalisation, the access line, and the head
/// sidecar forwards, which must parse to the same request with the same framing.
pub fn request_head(data: &[u8]) {
    // The blank lines a client may send first are skipped, as the proxy skips them.
    let data = &data[blank_lines(data)..];
    let Some(len) = head_end(data, MAX_HEAD_BYTES) else { return };
    let Ok(head) = parse_request_head(&data[..len], MAX_HEADERS) else { return };
    assert!(head.target.bytes().all(is_target_byte), "target {:?} passed the parser", head.target);
    assert!(head.headers.count("Host") <= 1, "two Hosts passed the parser");
    assert_log_lines_escaped(&head);
    check_path(&head.target);
    let Ok(framing) = request_framing(&head) else { return };
    if framing == Framing::Chunked {
        let _ = check_prefix(&data[len..]);
    }
    let upgrade = classify_upgrade(&head);
    if let Upgrade::Invalid(_) = upgrade {
        return; // answered 400, nothing forwarded
    }
    let websocket = upgrade == Upgrade::WebSocket;
    // With `preserve_host` the client's Host goes on; otherwise the replica's authority.
    let host = match head.headers.get("Host") {
        Some(h) if data.len() % 2 == 0 => String::from_utf8_lossy(h).into_owned(),
        _ => "backend:8080".to_string(),
    };
    let out = forwarded(&head, &head.target, &host, framing, websocket);
    let again = match parse_forwarded(&out) {
        Some(again) => again,
        None => return,
    };
    assert_eq!(again.method, head.method, "method changed: {:?}", show(&out));
    assert_eq!(again.target, head.target, "target changed: {:?}", show(&out));
    assert_eq!(again.version, Version::Http11);
    assert_eq!(again.headers.count("Host"), 1);
    assert_eq!(again.headers.get("Host"), Some(host.as_bytes()));
    assert_eq!(request_framing(&again), Ok(framing), "framing changed: {:?}", show(&out));
    let end_to_end = |h: &RequestHead| -> Vec<(String, Vec<u8>)> {
        h.headers
            .iter()
            .filter(|(n, _)| !WRITTEN_BY_SIDECAR.iter().any(|s| s.eq_ignore_ascii_case(n)))
            .filter(|(n, _)| !n.contains('_') && !is_hop_by_hop(n, &h.headers))
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    };
    let sent: Vec<(String, Vec<u8>)> = again
        .headers
        .iter()
        .filter(|(n, _)| !WRITTEN_BY_SIDECAR.iter().any(|s| s.eq_ignore_ascii_case(n)))
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    assert_eq!(sent, end_to_end(&head), "end-to-end headers changed: {:?}", show(&out));
    match classify_upgrade(&again) {
        Upgrade::WebSocket => {
            assert!(websocket, "a plain request became a handshake: {:?}", show(&out));
            assert_eq!(again.headers.get("Sec-WebSocket-Key"), head.headers.get("Sec-WebSocket-Key"));
        }
        // A client's `Connection` may name `Sec-WebSocket-Key`, which then goes as any
        // hop-by-hop header does: the backend sees a handshake without a key and refuses.
        Upgrade::Invalid(_) => assert!(websocket && head.headers.has_token("Connection", "Sec-WebSocket-Key")),
        Upgrade::Absent => assert!(!websocket, "the handshake was lost: {:?}", show(&out)),
        Upgrade::Stripped => panic!("forwarded an Upgrade other than websocket: {:?}", show(&out)),
    }
}

/// The head sidecar writes for `head`.
fn forwarded(head: &RequestHead, target: &str, host: &str, framing: Framing, websocket: bool) -> Vec<u8> {
    let outgoing = Outgoing { target, host, port: None, framing, websocket };
    let fwd = Forwarding { peer_ip: "10.0.0.7", proto: "https", via: Some("sidecar") };
    let mut out = Vec::new();
    write_request_head(head, &outgoing, &fwd, &mut out);
    assert_one_head(&out);
    out
}

/// Parses a forwarded head. Sidecar joins every `X-Forwarded-For` and `Via` line into
/// one, as Apache's `apr_table_mergen` does, so only that joined line may exceed a
/// line limit the client's lines each kept.
fn parse_forwarded(out: &[u8]) -> Option<RequestHead> {
    match parse_request_head(out, MAX_HEADERS_LIMIT) {
        Ok(again) => Some(again),
        Err(HeadError::TooLarge) => {
            let long = out.split(|&b| b == b'\n').filter(|l| l.len() > MAX_LINE_BYTES).all(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with(b"x-forwarded-for:") || l.starts_with(b"via:")
            });
            assert!(long, "forwarded head too large for sidecar's own parser: {:?}", show(out));
            None
        }
        Err(e) => panic!("forwarded head does not parse ({e}): {:?}", show(out)),
    }
}

/// Normalisation is idempotent and its result is valid on the wire: the path matched
/// against `[[proxy]]` is the path the backend receives (CVE-2021-41773's class).
fn check_path(target: &str) {
    if target == "*" {
        return;
    }
    let Ok(norm) = normalize_target(target) else { return };
    let _ = norm.decoded();
    for (prefix, to) in [("/", "/"), ("/", "/base"), ("/a", "/b/")] {
        if prefix != "/" && !norm.path.starts_with(prefix) {
            continue;
        }
        let up = upstream_target(prefix, to, &norm);
        assert!(up.starts_with('/') && up.bytes().all(is_target_byte), "upstream target {up:?} from {target:?}");
    }
    let up = upstream_target("/", "/", &norm);
    assert_eq!(normalize_target(&up), Ok(norm), "normalising {target:?} twice differs");
}

/// The access line quotes wire bytes escaped: a request cannot forge a log line.
fn assert_log_lines_escaped(head: &RequestHead) {
    let lossy = |name: &str| head.headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
    let record = AccessRecord {
        request_line: Some(head.request_line()),
        referer: lossy("Referer"),
        user_agent: lossy("User-Agent"),
        status: 200,
        reason: lossy("X-Reason"),
        ..Default::default()
    };
    let now = std::time::SystemTime::UNIX_EPOCH;
    let combined = record.line(AccessFormat::Combined, now).unwrap_or_default();
    assert!(combined.bytes().all(|b| (0x20..0x7f).contains(&b)), "unescaped byte in {combined:?}");
    let json = record.line(AccessFormat::Json, now).unwrap_or_default();
    assert!(!json.chars().any(|c| c < ' ' || c == '\x7f'), "control character in {json:?}");
}

// ---- chunked bodies ---------------------------------------------------------------

/// What decoding a whole input gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoding {
    body: Vec<u8>,
    /// Bytes used up; what follows the last chunk is left for the next request.
    consumed: usize,
    done: bool,
}

/// Decodes `wire` arriving `step` bytes at a time, as `proxy::body` feeds the decoder
/// (unconsumed bytes stay in front of the next read).
fn decode_in_pieces(wire: &[u8], step: usize) -> Result<Decoding, &'static str> {
    let mut d = ChunkedDecoder::default();
    let mut body = Vec::new();
    let (mut arrived, mut consumed) = (0, 0);
    while !d.is_done() && arrived < wire.len() {
        arrived = (arrived + step.max(1)).min(wire.len());
        while consumed < arrived && !d.is_done() {
            let input = &wire[consumed..arrived];
            let out = d.decode(input).map_err(|e| e.0)?;
            assert!(out.consumed <= input.len(), "consumed {} of {} bytes", out.consumed, input.len());
            assert!(out.data.end <= out.consumed, "data {:?} beyond consumed {}", out.data, out.consumed);
            // Progress on every call with input, or `copy_body` would spin.
            assert!(out.consumed > 0 || d.is_done(), "no progress on {:?}", show(input));
            body.extend_from_slice(&input[out.data]);
            consumed += out.consumed;
        }
    }
    assert!(body.len() <= consumed, "emitted {} bytes from {consumed}", body.len());
    Ok(Decoding { body, consumed, done: d.is_done() })
}

/// The first byte picks a read size and chunk sizes; the rest is both a chunked body to
/// decode and a body to encode. Decoding is the same at any read split and never
/// emits more than it was given; decode(encode(x)) == x.
pub fn chunked(data: &[u8]) {
    let Some((&seed, wire)) = data.split_first() else { return };
    let whole = decode_in_pieces(wire, wire.len());
    assert_eq!(decode_in_pieces(wire, 1), whole, "byte by byte vs whole: {:?}", show(wire));
    assert_eq!(decode_in_pieces(wire, usize::from(seed) + 1), whole, "split {seed}: {:?}", show(wire));
    // The up-front check of a body already in hand agrees with the streaming decoder.
    let prefix = check_prefix(wire);
    if whole.is_err() {
        assert!(prefix.is_err(), "check_prefix accepts what decoding refuses: {:?}", show(wire));
    } else {
        assert!(prefix.is_ok(), "check_prefix refuses what decoding accepts: {:?}", show(wire));
    }
    // sidecar's own encoding, chunk sizes drawn from the seed, and a pipelined request after.
    let mut encoded = Vec::new();
    let mut rest = wire;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 64).min(rest.len());
        chunk_header(n, &mut encoded);
        encoded.extend_from_slice(&rest[..n]);
        encoded.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    encoded.extend_from_slice(LAST_CHUNK);
    let body_end = encoded.len();
    encoded.extend_from_slice(b"GET / HTTP/1.1\r\n");
    for step in [1, usize::from(seed) + 1, encoded.len()] {
        let got = decode_in_pieces(&encoded, step).expect("sidecar's chunked encoding decodes");
        assert_eq!(got, Decoding { body: wire.to_vec(), consumed: body_end, done: true }, "step {step}");
    }
}

// ---- response heads ---------------------------------------------------------------

/// The first byte picks the request method, the client's version and whether its
/// connection stays open; the rest is a backend's response head. A head that parses
/// has consistent framing, and the head sidecar writes to the client parses to the
/// same status with the framing sidecar sends.
pub fn response_head(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else { return };
    let method = ["GET", "HEAD", "POST"][usize::from(pick % 3)];
    let client_version = if pick & 0x10 != 0 { Version::Http10 } else { Version::Http11 };
    let Some(len) = head_end(data, MAX_RESPONSE_HEAD_BYTES) else { return };
    let Ok(res) = parse_response_head(&data[..len]) else { return };
    assert!((100..=599).contains(&res.status));
    let Ok(rf) = response_framing(method, &res) else { return };
    let bodiless = method == "HEAD" || res.status < 200 || res.status == 204 || res.status == 304;
    let te = res.headers.get("Transfer-Encoding").is_some();
    let lengths = res.headers.count("Content-Length");
    let length = || res.headers.get("Content-Length").map(|v| show(trim(v)));
    assert!(lengths <= 1, "two Content-Lengths accepted");
    assert_eq!(rf.reusable, !(te && lengths == 1), "reuse after CL and TE: {:?}", show(&data[..len]));
    match rf.framing {
        Framing::None => assert!(bodiless || length().as_deref().is_some_and(|v| v.bytes().all(|b| b == b'0'))),
        Framing::Length(n) => assert!(!bodiless && !te && length().is_some_and(|v| v.parse::<u64>() == Ok(n))),
        Framing::Chunked => assert!(!bodiless && te),
        Framing::UntilClose => assert!(!bodiless && !te && lengths == 0),
    }
    if rf.framing == Framing::Chunked {
        let _ = check_prefix(&data[len..]);
    }
    // What `proxy::relay` sends the client.
    let (framing, connection) = if res.status == 101 {
        (Framing::None, ClientConnection::Upgrade)
    } else {
        let framing = match rf.framing {
            Framing::Chunked | Framing::UntilClose if client_version == Version::Http11 => Framing::Chunked,
            Framing::Chunked | Framing::UntilClose => Framing::UntilClose,
            f => f,
        };
        let close = pick & 0x20 != 0 || framing == Framing::UntilClose;
        (framing, if close { ClientConnection::Close } else { ClientConnection::KeepAlive })
    };
    let rules = [ReverseRule { backend: "http://backend:8080/app/".into(), front_prefix: "/".into() }];
    let reverse = |v: &[u8]| reverse_url(v, &rules, "https://front.example");
    let mut out = Vec::new();
    write_response_head(&res, client_version, framing, connection, Some("sidecar"), &reverse, &mut out);
    assert_one_head(&out);
    let again = match parse_response_head(&out) {
        Ok(again) => again,
        // sidecar's parser takes 100 lines from a backend; the client gets up to three more.
        Err(HeadError::TooLarge) if res.headers.iter().count() + 3 > MAX_HEADERS => return,
        Err(e) => panic!("head written to the client does not parse ({e}): {:?}", show(&out)),
    };
    assert_eq!(again.status, res.status);
    assert_eq!(again.version, client_version);
    assert!(again.reason == res.reason || res.reason.is_empty(), "reason {:?} → {:?}", res.reason, again.reason);
    let rf_again = response_framing(method, &again).unwrap_or_else(|e| panic!("{}: {:?}", e.0, show(&out)));
    assert!(rf_again.reusable, "written head has both CL and TE: {:?}", show(&out));
    let want = if bodiless { Framing::None } else { framing };
    assert_eq!(rf_again.framing, want, "client framing: {:?}", show(&out));
    let closes = again.headers.has_token("Connection", "close");
    assert_eq!(closes, connection == ClientConnection::Close, "Connection: {:?}", show(&out));
    for name in ["Keep-Alive", "TE", "Trailer", "Proxy-Authenticate"] {
        assert!(again.headers.get(name).is_none(), "hop-by-hop {name} relayed: {:?}", show(&out));
    }
}

// ---- WebSocket handshakes ---------------------------------------------------------

/// A request head followed by a response head. The classification matches the
/// handshake's definition; a correct 101 for a valid key is accepted, and any 101 that
/// is accepted carries the accept value of the client's key.
pub fn websocket_upgrade(data: &[u8]) {
    let Some(len) = head_end(data, MAX_HEAD_BYTES) else { return };
    let Ok(req) = parse_request_head(&data[..len], MAX_HEADERS) else { return };
    let asks = req.headers.has_token("Upgrade", "websocket") && req.headers.has_token("Connection", "upgrade");
    let eligible = asks && req.version == Version::Http11 && req.method == "GET";
    let upgrade = classify_upgrade(&req);
    match upgrade {
        Upgrade::Absent => assert!(req.headers.get("Upgrade").is_none()),
        Upgrade::Stripped => assert!(req.headers.get("Upgrade").is_some() && !eligible),
        Upgrade::Invalid(_) | Upgrade::WebSocket => assert!(eligible, "{upgrade:?} for {:?}", show(&data[..len])),
    }
    if upgrade != Upgrade::WebSocket {
        return;
    }
    assert_eq!(req.headers.count("Sec-WebSocket-Key"), 1);
    let key = req.headers.get("Sec-WebSocket-Key").map(trim).unwrap_or_default();
    // The derivation itself is checked against RFC 6455's vectors in `h1::upgrade`.
    let accept = crate::h1::upgrade::accept_key(key);
    let good = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let good = parse_response_head(good.as_bytes()).expect("a canonical 101 parses");
    assert_eq!(check_switch(&req, &good), Ok(()), "a correct 101 is refused for key {:?}", show(key));
    let rest = &data[len..];
    let Some(res_len) = head_end(rest, MAX_RESPONSE_HEAD_BYTES) else { return };
    let Ok(res) = parse_response_head(&rest[..res_len]) else { return };
    // The proxy checks a 101 only; any other status is relayed as a plain answer.
    if res.status != 101 || check_switch(&req, &res).is_err() {
        return;
    }
    assert!(res.headers.has_token("Upgrade", "websocket"));
    assert_eq!(res.headers.get("Sec-WebSocket-Accept").map(trim), Some(accept.as_bytes()));
    // The 101 the client receives: sidecar's own Upgrade and Connection, one each.
    let mut out = Vec::new();
    write_response_head(&res, Version::Http11, Framing::None, ClientConnection::Upgrade, None, &|_| None, &mut out);
    assert_one_head(&out);
    let Ok(again) = parse_response_head(&out) else { return };
    assert_eq!(again.status, res.status);
    assert_eq!(again.headers.count("Upgrade"), 1, "{:?}", show(&out));
    assert_eq!(again.headers.count("Connection"), 1, "{:?}", show(&out));
    assert!(again.headers.has_token("Upgrade", "websocket") && again.headers.has_token("Connection", "upgrade"));
}
