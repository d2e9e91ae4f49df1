//! `[server.tls]` and `[backend_tls]` (docs/security.md, T1, T2, T5, T6): a TLS
//! listener with an rcgen certificate, clients via futures-rustls, https and wss
//! backends verified against `[backend_tls] ca`, and the failures that must be 502.

use std::sync::Arc;

use async_tungstenite::tungstenite::{http, Message};
use futures_lite::StreamExt;
use futures_rustls::rustls::ClientConfig;

use crate::support::backend::{self, response, Backend, Reply};
use crate::support::tls::{self, Ca, Leaf};
use crate::support::*;

const H1: &[&[u8]] = &[b"http/1.1"];

/// A sidecar with `[server.tls]` (a self-signed cert for localhost/127.0.0.1 written
/// next to the config) and the given `[[proxy]]`/`[[rewrite]]`/`[backend_tls]`
/// sections; `files` are written into the same directory. Returns the client config
/// that trusts the front certificate with ALPN `alpn`.
fn tls_sidecar(sections: &str, files: &[(&str, &str)]) -> (Sidecar, Leaf) {
    let front = tls::self_signed(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new();
    dir.write("certs/server.crt", &front.cert_pem);
    dir.write("certs/server.key", &front.key_pem);
    for (name, contents) in files {
        dir.write(name, contents);
    }
    let p = Sidecar::start_in(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[server.tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n\n{sections}\n"
        ),
    );
    assert!(p.is_https(), "the listener must log (https): {:?}", p.logs());
    (p, front)
}

fn route_to(url: &str) -> String {
    format!("[[proxy]]\npath = \"/\"\nto = \"{url}\"\n")
}

fn client(front: &Leaf, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    tls::client_config(&front.cert_der, alpn)
}

// ---- the TLS listener ------------------------------------------------------------------

#[test]
fn tls_listener_serves_requests_with_alpn_http11_and_forwarded_proto_https() {
    let b = backend::echo();
    let (p, front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let (mut c, alpn) = tls::tls_conn(p.addr(), "localhost", client(&front, H1));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN http/1.1");
    for i in 0..2 {
        c.send(format!("GET /secure/{i} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\n\r\n"))
            .expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.header("x-echo-target"), Some(format!("/secure/{i}").as_str()));
    }
    let req = &b.requests()[0];
    assert_eq!(req.headers_named("x-forwarded-proto"), ["https"], "{}", req.head_str());
}

#[test]
fn a_returning_client_resumes_its_session_with_a_ticket() {
    use futures_rustls::rustls::HandshakeKind;
    let b = backend::echo();
    let (p, front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let cfg = client(&front, H1);
    let first = block_within(DEADLINE, "TLS handshake", tls::connect(p.addr(), "localhost", Arc::clone(&cfg)))
        .expect("first handshake");
    assert_eq!(first.get_ref().1.handshake_kind(), Some(HandshakeKind::Full));
    // The tickets come after the handshake: a response read on the way takes them in.
    let mut c = Conn::from_io(Box::new(first));
    c.send("GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status_line, "HTTP/1.1 200 OK");
    drop(c);
    let second =
        block_within(DEADLINE, "TLS handshake", tls::connect(p.addr(), "localhost", cfg)).expect("second handshake");
    assert_eq!(second.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed), "the ticket was accepted");
    let mut c = Conn::from_io(Box::new(second));
    c.send("GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status_line, "HTTP/1.1 200 OK");
}

#[test]
fn tls_listener_answers_503_with_retry_after_over_max_connections() {
    let b = backend::answers_ok("ok");
    let front = tls::self_signed(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new();
    dir.write("certs/server.crt", &front.cert_pem);
    dir.write("certs/server.key", &front.key_pem);
    let p = Sidecar::start_in(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nmax_connections = 2\n\n[server.tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n\n{}",
            route_to(&format!("http://{}/", b.addr))
        ),
    );
    let mut open: Vec<Conn> = (0..2).map(|_| tls::tls_conn(p.addr(), "localhost", client(&front, H1)).0).collect();
    for c in &mut open {
        c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    let (mut third, _) = tls::tls_conn(p.addr(), "localhost", client(&front, H1));
    let _ = third.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = third.read_response();
    r.assert_error(503);
    assert_eq!(r.header("Retry-After"), Some("1"), "{}", r.head_str());
    assert!(r.says_close(), "{}", r.head_str());
    third.expect_closed(DEADLINE);
    for c in &mut open {
        c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200, "the first two keep working");
    }
}

#[test]
fn tls_client_without_alpn_is_served() {
    let b = backend::echo();
    let (p, front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let (mut c, alpn) = tls::tls_conn(p.addr(), "127.0.0.1", client(&front, &[]));
    assert_eq!(alpn, None);
    c.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn tls_client_offering_only_h2_is_refused() {
    // docs/security.md, T5: no ALPN overlap → no_application_protocol.
    let b = backend::echo();
    let (p, front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let res = block_within(DEADLINE, "TLS handshake", tls::connect(p.addr(), "localhost", client(&front, &[b"h2"])));
    match res {
        Err(_) => {}
        Ok(s) => panic!("handshake succeeded with ALPN {:?}", s.get_ref().1.alpn_protocol()),
    }
    assert_eq!(b.connections(), 0);
}

#[test]
fn plain_http_on_the_tls_port_gets_no_http_answer_and_is_closed() {
    // docs/security.md, T6.
    let b = backend::echo();
    let (p, _front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let (bytes, closed) = send_raw(p.addr(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n", DEADLINE);
    assert!(closed, "the TLS port must close a plaintext client");
    assert!(!bytes.starts_with(b"HTTP/"), "plaintext answer on the TLS port: {}", show(&bytes));
    assert_eq!(b.connections(), 0);
}

#[test]
fn location_is_rewritten_to_https_on_a_tls_listener() {
    let addr = Arc::new(std::sync::OnceLock::<String>::new());
    let a = Arc::clone(&addr);
    let b = Backend::start(move |_| {
        let loc = format!("http://{}/x", a.get().map(String::as_str).unwrap_or("?"));
        Reply::Send(response(302, &[("Location", &loc)], b""))
    });
    addr.set(b.addr.to_string()).expect("once");
    let (p, front) = tls_sidecar(&route_to(&format!("http://{}/", b.addr)), &[]);
    let (mut c, _) = tls::tls_conn(p.addr(), "localhost", client(&front, H1));
    c.send(format!("GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", p.port())).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.header("location"), Some(format!("https://localhost:{}/x", p.port()).as_str()), "{}", r.head_str());
}

// ---- https / wss backends -------------------------------------------------------------------

fn https_echo(leaf: &Leaf) -> Backend {
    Backend::start_tls(tls::server_config(leaf, H1), backend::echo_reply)
}

fn plain_front(sections: &str, files: &[(&str, &str)]) -> Sidecar {
    let dir = TempDir::new();
    for (name, contents) in files {
        dir.write(name, contents);
    }
    Sidecar::start_in(dir, &format!("[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n{sections}\n"))
}

#[test]
fn https_backend_is_verified_with_backend_tls_ca() {
    let ca = Ca::new("sidecar test backend CA");
    let b = https_echo(&ca.leaf(&["127.0.0.1", "localhost"]));
    let p = plain_front(
        &format!("{}\n[backend_tls]\nca = \"certs/backend-ca.pem\"\n", route_to(&format!("https://{}/", b.addr))),
        &[("certs/backend-ca.pem", &ca.pem)],
    );
    let mut c = p.conn();
    for i in 0..2 {
        c.send(format!("POST /tls/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"))
            .expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.head_str());
        assert_eq!(r.body, b"hello");
    }
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].target, "/tls/0");
    assert_eq!(b.tls_failures(), 0);
}

#[test]
fn a_new_connection_to_an_https_backend_resumes_the_tls_session() {
    let ca = Ca::new("sidecar test backend CA");
    let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
    // `Connection: close` on every answer: each request needs a new backend connection.
    let b = Backend::start_tls(tls::server_config(&leaf, H1), |_| {
        Reply::Send(response(200, &[("Connection", "close")], b"hello"))
    });
    let p = plain_front(
        &format!("{}\n[backend_tls]\nca = \"certs/backend-ca.pem\"\n", route_to(&format!("https://{}/", b.addr))),
        &[("certs/backend-ca.pem", &ca.pem)],
    );
    for _ in 0..3 {
        assert_eq!(p.get("/").body_str(), "hello");
    }
    let kinds: Vec<String> = b.notes().into_iter().filter(|n| n.starts_with("tls handshake:")).collect();
    assert_eq!(
        kinds,
        ["tls handshake: Some(Full)", "tls handshake: Some(Resumed)", "tls handshake: Some(Resumed)"],
        "the first connection does a full handshake, the next ones resume"
    );
}

#[test]
fn untrusted_backend_certificate_is_502() {
    // docs/security.md, T1: verified by default; the CA is not configured.
    let ca = Ca::new("unknown CA");
    let b = https_echo(&ca.leaf(&["127.0.0.1", "localhost"]));
    let p = plain_front(&route_to(&format!("https://{}/", b.addr)), &[]);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(502);
    assert!(b.requests().is_empty(), "a request crossed an unverified TLS connection");
    assert!(
        p.wait_for_log("UnknownIssuer", DEADLINE)
            || p.logs().iter().any(|l| l.to_ascii_lowercase().contains("certificate")),
        "one log line with the TLS reason: {:?}",
        p.logs()
    );
}

#[test]
fn backend_certificate_for_another_name_is_502() {
    // docs/security.md, T2: signed by the configured CA, but for other.example.
    let ca = Ca::new("sidecar test backend CA");
    let b = https_echo(&ca.leaf(&["other.example"]));
    let p = plain_front(
        &format!("{}\n[backend_tls]\nca = \"backend-ca.pem\"\n", route_to(&format!("https://{}/", b.addr))),
        &[("backend-ca.pem", &ca.pem)],
    );
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(502);
    assert!(b.requests().is_empty(), "a request crossed a TLS connection to the wrong name");
}

/// A WebSocket client over TLS to the front: echo a text and a binary message.
async fn wss_round_trip(addr: std::net::SocketAddr, cfg: Arc<ClientConfig>, path: &str) {
    let stream = tls::connect(addr, "localhost", cfg).await.expect("TLS to sidecar");
    let req = http::Request::builder()
        .uri(format!("wss://localhost:{}{path}", addr.port()))
        .header("Host", format!("localhost:{}", addr.port()))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", async_tungstenite::tungstenite::handshake::client::generate_key())
        .body(())
        .expect("request");
    let (mut ws, resp) = async_tungstenite::client_async(req, stream).await.expect("wss handshake through sidecar");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.expect("send");
    assert_eq!(ws.next().await.expect("echo").expect("frame"), Message::text("over tls"));
    ws.send(Message::binary(vec![9u8; 70_000])).await.expect("send");
    assert_eq!(ws.next().await.expect("echo").expect("frame"), Message::binary(vec![9u8; 70_000]));
    ws.close(None).await.expect("close");
}

#[test]
fn wss_on_both_sides_echoes_messages_through_an_https_route() {
    // An upgrade sent to an https target is tunnelled over TLS (as wss).
    let ca = Ca::new("sidecar test backend CA");
    let ws = backend::ws_echo_tls(tls::server_config(&ca.leaf(&["127.0.0.1"]), H1));
    let (p, front) = tls_sidecar(
        &format!("{}\n[backend_tls]\nca = \"backend-ca.pem\"\n", route_to(&format!("https://{}/", ws.addr))),
        &[("backend-ca.pem", &ca.pem)],
    );
    block_within(DEADLINE, "wss echo", wss_round_trip(p.addr(), client(&front, H1), "/live?room=2"));
    let reqs = ws.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/live?room=2");
    assert!(reqs[0].is_websocket_handshake());
    assert_eq!(reqs[0].headers_named("x-forwarded-proto"), ["https"]);
}

#[test]
fn wss_rewrite_rule_routes_upgrades_to_the_wss_backend() {
    // The tutorial's virtual host: RewriteCond Upgrade/Connection → wss://, the rest → https://.
    let ca = Ca::new("sidecar test backend CA");
    let ws = backend::ws_echo_tls(tls::server_config(&ca.leaf(&["127.0.0.1"]), H1));
    let web = https_echo(&ca.leaf(&["127.0.0.1"]));
    let sections = format!(
        r#"[[rewrite]]
cond = ["%{{HTTP:Upgrade}} websocket [NC]", "%{{HTTP:Connection}} upgrade [NC]"]
rule = ".* wss://{ws}%{{REQUEST_URI}} [P,L]"

{route}
[backend_tls]
ca = "backend-ca.pem"
"#,
        ws = ws.addr,
        route = route_to(&format!("https://{}/", web.addr))
    );
    let (p, front) = tls_sidecar(&sections, &[("backend-ca.pem", &ca.pem)]);
    block_within(DEADLINE, "wss echo", wss_round_trip(p.addr(), client(&front, H1), "/socket"));
    let (mut c, _) = tls::tls_conn(p.addr(), "localhost", client(&front, H1));
    c.send("GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().header("x-echo-target"), Some("/page"));
    let at_ws: Vec<String> = ws.requests().into_iter().map(|r| r.target).collect();
    let at_web: Vec<String> = web.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(at_ws, ["/socket"]);
    assert_eq!(at_web, ["/page"]);
}
