//! PURE. Is this request a WebSocket handshake, and is the backend's 101 a real answer
//! to it? A tunnel opens only when both are true (docs/security.md, W1–W8: the bug
//! class of Apache CVE-2019-17567 and Pingora CVE-2026-2833). Ids in comments below
//! refer to the same page.

use super::head::{trim, RequestHead, ResponseHead, Version};

/// What to do with a request's `Upgrade` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// No `Upgrade` header.
    Absent,
    /// A complete WebSocket handshake: forward it and tunnel after a valid 101.
    WebSocket,
    /// Some other upgrade (`h2c`, `TLS/1.0`), or one on HTTP/1.0 or a non-GET: strip it
    /// and forward the request as plain HTTP (W4, W6, T8).
    Stripped,
    /// Asks for `websocket` but the handshake is unusable: 400 (W7, as HAProxy).
    Invalid(&'static str),
}

/// Classifies by tokens, case-insensitively, across repeated lines (W5).
pub fn classify_upgrade(head: &RequestHead) -> Upgrade {
    if head.headers.get("Upgrade").is_none() {
        return Upgrade::Absent;
    }
    let websocket = head.headers.has_token("Upgrade", "websocket") && head.headers.has_token("Connection", "upgrade");
    if !websocket || head.version != Version::Http11 || head.method != "GET" {
        return Upgrade::Stripped;
    }
    match head.headers.count("Sec-WebSocket-Key") {
        1 if head.headers.get("Sec-WebSocket-Key").is_some_and(|k| is_valid_key(trim(k))) => Upgrade::WebSocket,
        _ => Upgrade::Invalid("WebSocket handshake without one valid Sec-WebSocket-Key"),
    }
}

/// RFC 6455 §4.1: base64 of 16 bytes is 22 characters plus `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Checks a backend's 101 against the handshake sidecar forwarded (W8): it must
/// switch to `websocket` and carry the accept value derived from the client's key.
pub fn check_switch(request: &RequestHead, response: &ResponseHead) -> Result<(), &'static str> {
    if !response.headers.has_token("Upgrade", "websocket") {
        return Err("101 without Upgrade: websocket");
    }
    let key = request.headers.get("Sec-WebSocket-Key").map(trim).unwrap_or_default();
    let want = accept_key(key);
    match response.headers.get("Sec-WebSocket-Accept").map(trim) {
        Some(got) if got == want.as_bytes() => Ok(()),
        Some(_) => Err("101 with a wrong Sec-WebSocket-Accept"),
        None => Err("101 without Sec-WebSocket-Accept"),
    }
}

/// RFC 6455 §4.2.2: base64 of the SHA-1 of the key followed by the protocol's GUID.
/// SHA-1 is what the RFC prescribes; it proves the server read the handshake, nothing more.
pub fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    data_encoding::BASE64.encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{parse_request_head, parse_response_head, MAX_HEADERS};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(first: &str, upgrade: &str, connection: &str, key: Option<&str>) -> RequestHead {
        let mut s = format!("{first}\r\nHost: a\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n");
        if let Some(k) = key {
            s.push_str(&format!("Sec-WebSocket-Key: {k}\r\n"));
        }
        s.push_str("\r\n");
        parse_request_head(s.as_bytes(), MAX_HEADERS).expect("valid head")
    }

    #[test]
    fn classifies_upgrades() {
        use Upgrade::*;
        for (first, upgrade, connection, key, want) in [
            ("GET /chat HTTP/1.1", "websocket", "Upgrade", Some(KEY), WebSocket),
            ("GET /chat HTTP/1.1", "WebSocket", "keep-alive, Upgrade", Some(KEY), WebSocket), // Firefox
            ("GET /chat HTTP/1.1", "websocket, h2c", "Upgrade", Some(KEY), WebSocket),
            ("GET /chat HTTP/1.1", "h2c", "Upgrade, HTTP2-Settings", None, Stripped), // W4
            ("GET /chat HTTP/1.1", "websocketx", "Upgrade", Some(KEY), Stripped),     // W5
            ("GET /chat HTTP/1.1", "websocket", "upgradex", Some(KEY), Stripped),
            ("GET /chat HTTP/1.1", "websocket", "keep-alive", Some(KEY), Stripped),
            ("GET /chat HTTP/1.0", "websocket", "Upgrade", Some(KEY), Stripped), // W6
            ("POST /chat HTTP/1.1", "websocket", "Upgrade", Some(KEY), Stripped),
            ("GET / HTTP/1.1", "TLS/1.0", "Upgrade", None, Stripped), // T8
            ("GET /chat HTTP/1.1", "websocket", "Upgrade", None, Invalid("")), // W7
            ("GET /chat HTTP/1.1", "websocket", "Upgrade", Some("x"), Invalid("")),
        ] {
            let got = classify_upgrade(&request(first, upgrade, connection, key));
            let same = std::mem::discriminant(&got) == std::mem::discriminant(&want);
            assert!(same, "{first} Upgrade={upgrade:?} Connection={connection:?} key={key:?}: {got:?}");
        }
    }

    #[test]
    fn checks_the_switch() {
        let req = request("GET /chat HTTP/1.1", "websocket", "Upgrade", Some(KEY));
        for (response, ok) in [
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", true),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope\r\n\r\n", false),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", false),
        ] {
            let res = parse_response_head(response.as_bytes()).expect("valid head");
            assert_eq!(check_switch(&req, &res).is_ok(), ok, "{response:?}");
        }
    }

    #[test]
    fn derives_accept_keys() {
        // RFC 6455 §1.3's example, and two keys checked against Python's hashlib + base64.
        for (key, want) in [
            ("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="),
            ("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
        ] {
            assert_eq!(accept_key(key.as_bytes()), want, "{key}");
        }
    }
}
