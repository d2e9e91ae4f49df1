//! Header handling (docs/security.md, H5–H8 and B10): hop-by-hop removal both ways, X-Forwarded-For/-Host/-Proto, Via, header-name case, underscore names,
//! ProxyPassReverse and preserve_host. Every assertion is on the head the other side
//! actually received.

use crate::support::backend::{self, response, Backend, Reply, Request};
use crate::support::*;

/// Sends `req` through a sidecar in front of an echo backend and returns what the
/// backend received.
fn forwarded(req: &str) -> Request {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(req).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    reqs.into_iter().next().expect("one request")
}

/// What the client receives when the backend answers `raw` (with `config_extra` in
/// `[[proxy]]`, and the request's Host `host`).
fn relayed(raw: &[u8], host: &str, route: &str) -> (Response, Backend) {
    let raw = raw.to_vec();
    let b = Backend::start(move |_| Reply::Send(raw.clone()));
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\n{}\n",
        route.replace("BACKEND", &b.addr.to_string())
    ));
    let mut c = p.conn();
    c.send(format!("GET /app/page HTTP/1.1\r\nHost: {host}\r\n\r\n")).expect("send to sidecar");
    let r = c.read_response();
    (r, b)
}

fn tokens(values: Vec<&str>) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(|t| t.trim().to_ascii_lowercase()).collect()
}

// ---- hop-by-hop ------------------------------------------------------------------------

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let req = forwarded(
        "GET /h HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: foo/1\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nProxy: http://evil.example/\r\n\
         X-End-To-End: kept\r\n\r\n",
    );
    for name in
        ["X-Custom-Hop", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Connection", "Proxy"]
    {
        assert!(!req.has(name), "{name} was forwarded:\n{}", req.head_str());
    }
    assert!(!tokens(req.headers_named("connection")).contains(&"x-custom-hop".to_string()), "{}", req.head_str());
    assert_eq!(req.header("x-end-to-end"), Some("kept"));
}

#[test]
fn hop_by_hop_response_headers_are_not_relayed() {
    let (r, _b) = relayed(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5, max=100\r\n\
          Trailer: X-T\r\nUpgrade: foo\r\nProxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\n\
          X-End-To-End: kept\r\nContent-Length: 2\r\n\r\nok",
        "a",
        "path = \"/\"\nto = \"http://BACKEND/\"",
    );
    assert_eq!(r.status, 200);
    for name in ["X-Secret", "Keep-Alive", "Trailer", "Upgrade", "Proxy-Authenticate", "Proxy-Connection"] {
        assert!(r.header(name).is_none(), "{name} was relayed:\n{}", r.head_str());
    }
    assert!(!tokens(r.headers_named("connection")).contains(&"x-secret".to_string()), "{}", r.head_str());
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
    assert_eq!(r.body, b"ok");
}

// ---- X-Forwarded-* and Via -------------------------------------------------------------------

#[test]
fn x_forwarded_for_is_appended_to_the_clients_value() {
    let req = forwarded("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    assert_eq!(req.headers_named("x-forwarded-for"), ["6.6.6.6, 127.0.0.1"], "{}", req.head_str());
}

#[test]
fn x_forwarded_for_is_the_peer_when_the_client_sends_none() {
    let req = forwarded("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(req.headers_named("x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn x_forwarded_host_and_proto_are_set_never_taken_from_the_client() {
    let req = forwarded(
        "GET / HTTP/1.1\r\nHost: front.example:8080\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\r\n",
    );
    assert_eq!(req.headers_named("x-forwarded-host"), ["front.example:8080"], "{}", req.head_str());
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"], "{}", req.head_str());
}

#[test]
fn via_is_not_added_by_default() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert!(r.header("via").is_none(), "{}", r.head_str());
    assert!(!b.requests()[0].has("via"), "{}", b.requests()[0].head_str());
}

#[test]
fn via_is_added_when_enabled() {
    let b = backend::echo();
    let p = Sidecar::start(&config_to(b.addr, "via = true"));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status, 200);
    let req = &b.requests()[0];
    let via = req.header("via").unwrap_or_else(|| panic!("no Via with via = true:\n{}", req.head_str()));
    assert!(via.starts_with("1.1 "), "Via: {via}");
}

#[test]
fn connection_naming_x_forwarded_headers_does_not_remove_sidecars_own() {
    // CVE-2022-31813.
    let req = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto\r\n\
         X-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    let xff = req.headers_named("x-forwarded-for");
    assert_eq!(xff.len(), 1, "{}", req.head_str());
    assert!(xff[0].ends_with("127.0.0.1"), "sidecar's own X-Forwarded-For was dropped: {}", req.head_str());
    assert_eq!(req.headers_named("x-forwarded-host"), ["a"]);
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
}

#[test]
fn connection_naming_content_length_does_not_break_framing() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("POST /p HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
        .expect("send to sidecar");
    let r = c.read_response();
    match r.status {
        200 => {
            let req = &b.requests()[0];
            assert_eq!(req.body, b"hello");
            assert_eq!(req.headers_named("content-length"), ["5"], "{}", req.head_str());
        }
        400 => assert!(b.requests().is_empty()),
        _ => panic!("unexpected {}", r.status_line),
    }
}

#[test]
fn connection_naming_host_keeps_the_host() {
    let req = forwarded("GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n");
    assert_eq!(req.headers_named("host").len(), 1, "{}", req.head_str());
}

// ---- names --------------------------------------------------------------------------------------

#[test]
fn header_names_keep_their_case_both_ways() {
    let b = Backend::start(|_| Reply::Send(response(200, &[("X-BaCkEnD-CaSe", "w")], b"ok")));
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\nX-MiXeD-CaSe: v\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert!(r.head.windows(17).any(|w| w == b"X-BaCkEnD-CaSe: w"), "{}", r.head_str());
    let req = &b.requests()[0];
    assert!(req.head.windows(15).any(|w| w == b"X-MiXeD-CaSe: v"), "{}", req.head_str());
}

#[test]
fn header_names_with_underscores_are_dropped() {
    let req = forwarded("GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX_Custom: 1\r\n\r\n");
    assert!(req.headers.iter().all(|(n, _)| !n.contains('_')), "{}", req.head_str());
    assert_eq!(req.headers_named("x-forwarded-for"), ["127.0.0.1"]);
}

// ---- ProxyPassReverse -------------------------------------------------------------------------------

const ROOT_ROUTE: &str = "path = \"/\"\nto = \"http://BACKEND/\"";

fn redirect_to(location_header: &str, location: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\n{location_header}: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

#[test]
fn location_pointing_at_the_backend_is_rewritten_to_the_clients_host() {
    let b = self_redirecting("Location", "/x");
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://front.example/x"), "{}", r.head_str());
    c.send("GET / HTTP/1.1\r\nHost: front.example:8443\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.header("location"), Some("http://front.example:8443/x"), "{}", r.head_str());
}

/// A backend that redirects to `http://<its own authority><path>` in `header`.
fn self_redirecting(header: &'static str, path: &'static str) -> Backend {
    let addr = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let a = std::sync::Arc::clone(&addr);
    let b = Backend::start(move |_| {
        Reply::Send(redirect_to(header, &format!("http://{}{path}", a.get().map(String::as_str).unwrap_or("?"))))
    });
    addr.set(b.addr.to_string()).expect("set once");
    b
}

#[test]
fn location_under_a_prefix_route_gets_the_prefix_back() {
    let b = self_redirecting("Location", "/inner/y");
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/app\"\nto = \"http://{}/inner\"\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET /app/page HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(b.requests()[0].target, "/inner/page");
    assert_eq!(r.header("location"), Some("http://front.example/app/y"), "{}", r.head_str());
}

#[test]
fn content_location_and_uri_are_rewritten_too() {
    for header in ["Content-Location", "URI"] {
        let b = self_redirecting(header, "/z");
        let p = Sidecar::start(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
            b.addr
        ));
        let mut c = p.conn();
        c.send("GET / HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.header(header), Some("http://front.example/z"), "{header}: {}", r.head_str());
    }
}

#[test]
fn foreign_and_relative_locations_are_left_alone() {
    for loc in ["https://other.example/y", "/relative/path", "http://127.0.0.2:1/y"] {
        let (r, _b) = relayed(&redirect_to("Location", loc), "front.example", ROOT_ROUTE);
        assert_eq!(r.header("location"), Some(loc), "{}", r.head_str());
    }
}

#[test]
fn reverse_false_leaves_location_alone() {
    let b = self_redirecting("Location", "/x");
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\nreverse = false\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.header("location"), Some(format!("http://{}/x", b.addr).as_str()), "{}", r.head_str());
}

#[test]
fn rewritten_location_never_becomes_protocol_relative() {
    // docs/security.md, B10: `http://B//evil.example/` must not turn into `//evil.example/`.
    let b = self_redirecting("Location", "//evil.example/");
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    let loc = r.header("location").unwrap_or("");
    assert!(!loc.starts_with("//"), "protocol-relative open redirect: {loc}");
    assert!(!loc.starts_with("http://evil.example"), "open redirect: {loc}");
}

// ---- preserve_host --------------------------------------------------------------------------------------

#[test]
fn preserve_host_false_sends_the_backend_authority() {
    let b = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\npreserve_host = false\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: front.example:81\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status, 200);
    let req = &b.requests()[0];
    assert_eq!(req.headers_named("host"), [b.addr.to_string().as_str()]);
    assert_eq!(req.headers_named("x-forwarded-host"), ["front.example:81"]);
}

#[test]
fn preserve_host_true_sends_the_clients_host() {
    let b = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\npreserve_host = true\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: front.example:81\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status, 200);
    let req = &b.requests()[0];
    assert_eq!(req.headers_named("host"), ["front.example:81"]);
    assert_eq!(req.headers_named("x-forwarded-host"), ["front.example:81"]);
}
