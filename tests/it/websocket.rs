//! WebSocket upgrades (docs/security.md, W1–W12): a real async-tungstenite
//! client through sidecar to an async-tungstenite echo backend; a tunnel opens only
//! after a valid 101 for a real handshake, and anything else stays HTTP and goes through
//! sidecar's parser. Plain-TLS variants (wss) live in tls.rs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::client::generate_key;
use async_tungstenite::tungstenite::{http, Message};
use futures_lite::StreamExt;

use crate::support::backend::{self, response, switching_protocols, Backend, Reply};
use crate::support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A raw WebSocket handshake head for `target` with `version`, plus `extra` lines.
fn handshake_with(target: &str, version: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    )
}

fn handshake(target: &str) -> String {
    handshake_with(target, "13", "")
}

/// Connects an async-tungstenite client to `ws://addr{path}` with `key`; sends a text
/// and a binary message and checks both echoes; closes.
async fn echo_round_trip(addr: SocketAddr, path: &str, key: &str) {
    let tcp = async_net::TcpStream::connect(addr).await.expect("connect");
    let req = http::Request::builder()
        .uri(format!("ws://{addr}{path}"))
        .header("Host", addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", key)
        .body(())
        .expect("request");
    let (mut ws, resp) = async_tungstenite::client_async(req, tcp).await.expect("WebSocket handshake through sidecar");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello sidecar")).await.expect("send text");
    let got = ws.next().await.expect("an echo").expect("a frame");
    assert_eq!(got, Message::text("hello sidecar"));
    let bin = vec![0u8, 1, 2, 255, 254];
    ws.send(Message::binary(bin.clone())).await.expect("send binary");
    let got = ws.next().await.expect("an echo").expect("a frame");
    assert_eq!(got, Message::binary(bin));
    ws.close(None).await.expect("close");
}

// ---- the happy path -----------------------------------------------------------------------------

#[test]
fn websocket_text_and_binary_messages_echo_through_the_proxy() {
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let key = generate_key();
    block_within(DEADLINE, "WebSocket echo", echo_round_trip(p.addr(), "/chat?room=1", &key));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    let hs = &reqs[0];
    assert_eq!(hs.target, "/chat?room=1");
    assert!(hs.is_websocket_handshake(), "handshake forwarded with Upgrade/Connection:\n{}", hs.head_str());
    assert_eq!(hs.header("sec-websocket-key"), Some(key.as_str()));
    assert_eq!(hs.header("sec-websocket-version"), Some("13"));
    assert_eq!(hs.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn upgrade_with_a_token_list_and_mixed_case_is_tunnelled() {
    // docs/security.md, W5: token match, case-insensitive, Connection may be a list.
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!(
        "GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
    .expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 101, "{}", r.head_str());
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[test]
fn backend_bytes_sent_with_the_101_reach_the_client() {
    // docs/security.md, W9: the 101 and the first frame in one segment.
    let b = Backend::start(|req| {
        let mut bytes = switching_protocols(req);
        bytes.extend_from_slice(b"\x81\x05hello");
        Reply::Custom(Box::new(move |mut peer| {
            Box::pin(async move {
                peer.write(&bytes).await;
                let _ = peer.read_to_eof(Duration::from_secs(5)).await;
                None
            })
        }))
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(handshake("/w9")).expect("send to sidecar");
    assert_eq!(c.read_response().status, 101);
    assert_eq!(c.read_exact(7), b"\x81\x05hello");
}

#[test]
fn client_bytes_sent_with_the_handshake_wait_for_the_101_then_enter_the_tunnel() {
    // docs/security.md, W3 (101 branch): nothing after the head before the answer; after the
    // 101 the bytes are delivered into the tunnel, in order.
    let b = Backend::start(|req| {
        let answer = switching_protocols(req);
        Reply::Custom(Box::new(move |mut peer| {
            Box::pin(async move {
                let early = peer.read_for(Duration::from_millis(150)).await;
                peer.note(format!("before 101: [{}]", show(&early)));
                peer.write(&answer).await;
                let mut after = early;
                let end = Instant::now() + Duration::from_secs(2);
                while after.len() < 11 && Instant::now() < end {
                    after.extend(peer.read_for(Duration::from_millis(50)).await);
                }
                peer.note(format!("after 101: [{}]", show(&after)));
                None
            })
        }))
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    // A masked text frame "EARLY" (an all-zero mask key leaves the payload as is).
    let frame = b"\x81\x85\0\0\0\0EARLY";
    let mut out = handshake("/w3").into_bytes();
    out.extend_from_slice(frame);
    c.send(out).expect("send to sidecar");
    assert_eq!(c.read_response().status, 101);
    assert!(b.wait_for_note("after 101", DEADLINE), "{:?}", b.notes());
    let notes = b.notes();
    assert!(notes.contains(&"before 101: []".to_string()), "bytes were forwarded before the 101: {notes:?}");
    assert!(notes.contains(&format!("after 101: [{}]", show(frame))), "{notes:?}");
}

// ---- a failed upgrade stays HTTP ----------------------------------------------------------------

#[test]
fn wrong_sec_websocket_accept_is_502_and_no_tunnel() {
    let b = backend::ws_wrong_accept();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(handshake("/bad-accept")).expect("send to sidecar");
    c.read_response().assert_error(502);
    let _ = c.send(b"\x81\x85AAAAhello");
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty(), "{}", show(&rest));
    assert!(closed, "a bad 101 closes the client connection (docs/security.md, W8)");
}

#[test]
fn non_101_answer_is_relayed_and_the_next_request_is_parsed_as_http() {
    // docs/security.md, W1 (0ang3el scenario 1): the backend refuses version 1337 with 426.
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(handshake_with("/socket", "1337", "")).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 426, "{}", r.head_str());
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    c.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    assert_eq!(r.header("x-echo-target"), Some("/next"));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].target, "/next");
    assert_eq!(
        reqs[1].header("x-forwarded-for"),
        Some("127.0.0.1"),
        "parsed and forwarded by sidecar:\n{}",
        reqs[1].head_str()
    );
}

/// A backend that answers an upgrade to `/held` with `answer` after checking for 150 ms
/// that nothing followed the head, noting `early: [...]`; other requests are echoed.
fn answers_upgrade_after_checking_early_bytes(answer: Vec<u8>) -> Backend {
    Backend::start(move |req| {
        if req.target != "/held" {
            return backend::echo_reply(req);
        }
        let answer = answer.clone();
        Reply::Custom(Box::new(move |mut peer| {
            Box::pin(async move {
                let early = peer.read_for(Duration::from_millis(150)).await;
                peer.note(format!("early: [{}]", show(&early)));
                peer.buf = early; // back to the request loop
                peer.write(&answer).await;
                Some(peer)
            })
        }))
    })
}

#[test]
fn upgrade_answered_200_is_relayed_and_no_tunnel_opens() {
    // docs/security.md, W3: the next request in the same write is HTTP again.
    let b = answers_upgrade_after_checking_early_bytes(response(200, &[], b"plain"));
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!("{}GET /admin HTTP/1.1\r\nHost: a\r\n\r\n", handshake("/held"))).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "plain"));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    assert_eq!(r.header("x-echo-target"), Some("/admin"));
    assert_eq!(b.notes(), ["early: []"], "bytes after the handshake head were forwarded before the answer");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].target, "/admin");
    assert_eq!(reqs[1].header("x-forwarded-for"), Some("127.0.0.1"), "{}", reqs[1].head_str());
}

#[test]
fn upgrade_answered_426_with_a_request_in_the_same_write_keeps_it_http() {
    let b = answers_upgrade_after_checking_early_bytes(response(426, &[("Sec-WebSocket-Version", "13")], b""));
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!("{}GET /internal HTTP/1.1\r\nHost: a\r\n\r\n", handshake_with("/held", "1337", "")))
        .expect("send to sidecar");
    assert_eq!(c.read_response().status, 426);
    let r = c.read_response();
    assert_eq!(r.header("x-echo-target"), Some("/internal"), "{}", r.head_str());
    assert_eq!(b.notes(), ["early: []"]);
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("x-forwarded-for"), Some("127.0.0.1"));
}

// ---- what is never tunnelled --------------------------------------------------------------------

const H2C: &str = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n";

#[test]
fn h2c_upgrade_is_never_forwarded_as_an_upgrade() {
    // docs/security.md, W4 (h2cSmuggler).
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(H2C).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let req = &b.requests()[0];
    assert!(!req.has("upgrade"), "{}", req.head_str());
    assert!(!req.has("http2-settings"), "{}", req.head_str());
    assert!(!req.has_token("connection", "upgrade"), "{}", req.head_str());
}

#[test]
fn backend_101_to_an_h2c_upgrade_is_502() {
    let b =
        backend::answers_raw(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"[..]);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(H2C).expect("send to sidecar");
    c.read_response().assert_error(502);
}

#[test]
fn upgrade_websocketx_is_not_an_upgrade() {
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocketx\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
    .expect("send to sidecar");
    let r = c.read_response();
    assert_ne!(r.status, 101);
    if let Some(req) = b.requests().first() {
        assert!(!req.has_token("upgrade", "websocketx"), "{}", req.head_str());
    }
}

#[test]
fn upgrade_on_http10_is_not_tunnelled() {
    // docs/security.md, W6; RFC 9110 §7.8.
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!(
        "GET /ws HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
    .expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let req = &b.requests()[0];
    assert!(!req.has("upgrade"), "Upgrade forwarded on HTTP/1.0:\n{}", req.head_str());
}

#[test]
fn upgrade_on_post_is_not_tunnelled() {
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(format!(
        "POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello"
    ))
    .expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let req = &b.requests()[0];
    assert!(!req.has("upgrade"), "Upgrade forwarded on POST:\n{}", req.head_str());
    assert_eq!(req.body, b"hello");
}

#[test]
fn handshake_without_a_key_never_gets_a_tunnel() {
    // docs/security.md, W7.
    let b = backend::ws_echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /nokey HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_ne!(r.status, 101, "{}", r.head_str());
}

#[test]
fn upgrade_false_route_forwards_a_plain_get_and_no_101() {
    // docs/security.md, W12.
    let b = backend::ws_echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\nupgrade = false\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send(handshake("/no-upgrades")).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let req = &b.requests()[0];
    assert_eq!(req.method, "GET");
    assert!(!req.has("upgrade"), "{}", req.head_str());
    assert!(!req.has_token("connection", "upgrade"), "{}", req.head_str());
}

// ---- tunnel lifetime ----------------------------------------------------------------------------

#[test]
fn tunnel_half_close_lets_the_backend_finish_sending() {
    // docs/security.md, W10: the client shuts down its write side; the backend still sends.
    let b = Backend::start(|req| {
        let answer = switching_protocols(req);
        Reply::Custom(Box::new(move |mut peer| {
            Box::pin(async move {
                peer.write(&answer).await;
                let (got, eof) = peer.read_to_eof(Duration::from_secs(3)).await;
                peer.note(format!("got [{}] eof={eof}", show(&got)));
                peer.write(b"\x82\x0dbye after eof").await;
                peer.shutdown_write().await;
                None
            })
        }))
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(handshake("/half")).expect("send to sidecar");
    assert_eq!(c.read_response().status, 101);
    let frame = b"\x82\x8b\0\0\0\0client data";
    c.send(frame).expect("send to sidecar");
    c.shutdown_write();
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert_eq!(rest, b"\x82\x0dbye after eof", "backend: {:?}", b.notes());
    assert!(closed);
    assert_eq!(b.notes(), [format!("got [{}] eof=true", show(frame))]);
}

#[test]
fn idle_tunnel_is_closed_after_tunnel_idle_timeout() {
    let b = backend::ws_echo();
    let p = Sidecar::start(&config_to(b.addr, "tunnel_idle_timeout = \"500ms\""));
    let mut c = p.conn();
    c.send(handshake("/idle")).expect("send to sidecar");
    assert_eq!(c.read_response().status, 101);
    let opened = Instant::now();
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    let took = opened.elapsed();
    assert!(rest.is_empty(), "{}", show(&rest));
    assert!(closed, "the idle tunnel is still open after {took:?}");
    assert!(took >= Duration::from_millis(400), "closed after {took:?}, before the 500ms idle timeout");
}

#[test]
fn active_tunnel_outlives_tunnel_idle_timeout() {
    let b = backend::ws_echo();
    let p = Sidecar::start(&config_to(b.addr, "tunnel_idle_timeout = \"300ms\""));
    let addr = p.addr();
    block_within(Duration::from_secs(5), "active tunnel", async move {
        let tcp = async_net::TcpStream::connect(addr).await.expect("connect");
        let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/active"), tcp).await.expect("handshake");
        for i in 0..8 {
            async_io::Timer::after(Duration::from_millis(100)).await;
            ws.send(Message::text(format!("m{i}"))).await.expect("send");
            assert_eq!(ws.next().await.expect("echo").expect("frame"), Message::text(format!("m{i}")));
        }
    });
}

// ---- the WebSocket rewrite rule set -------------------------------------------------------------

#[test]
fn rewrite_rule_routes_upgrades_to_the_ws_backend_and_plain_requests_to_the_http_backend() {
    let ws = backend::ws_echo();
    let web = backend::echo();
    let p = Sidecar::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"

[[rewrite]]
cond = ["%{{HTTP:Upgrade}} websocket [NC]", "%{{HTTP:Connection}} upgrade [NC]"]
rule = ".* ws://{ws}%{{REQUEST_URI}} [P,L]"

[[proxy]]
path = "/"
to = "http://{web}/"
"#,
        ws = ws.addr,
        web = web.addr
    ));
    let key = generate_key();
    block_within(DEADLINE, "WebSocket echo", echo_round_trip(p.addr(), "/socket?x=1", &key));
    let mut c = p.conn();
    c.send("GET /page HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().header("x-echo-target"), Some("/page"));
    let at_ws: Vec<String> = ws.requests().into_iter().map(|r| r.target).collect();
    let at_web: Vec<String> = web.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(at_ws, ["/socket?x=1"], "the upgrade goes to the ws backend with %{{REQUEST_URI}}");
    assert_eq!(at_web, ["/page"], "plain requests go to the [[proxy]] backend");
    assert_eq!(ws.requests()[0].header("sec-websocket-key"), Some(key.as_str()));
}
