//! sidecar is no open proxy: the request target is only ever a path, and request bytes
//! never choose the upstream (docs/security.md, O1–O5 and CVE-2021-40438). A canary
//! listener named by each request must see zero connections.

use crate::support::backend::{self, Backend};
use crate::support::*;

/// Asserts the canary saw nothing, after giving a late connect a moment to show up.
fn canary_untouched(canary: &Backend) {
    wait_until(std::time::Duration::from_millis(100), || canary.connections() > 0);
    assert_eq!(canary.connections(), 0, "sidecar connected to the host named in the request");
}

#[test]
fn absolute_form_is_routed_by_path_and_never_connects_to_the_named_host() {
    // docs/security.md, O1.
    let canary = backend::canary();
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    let c_addr = canary.addr;
    c.send(format!("GET http://{c_addr}/x?q=1 HTTP/1.1\r\nHost: {c_addr}\r\n\r\n")).expect("send to sidecar");
    let r = c.read_response();
    match r.status {
        200 => {
            let req = &b.requests()[0];
            assert_eq!(req.target, "/x?q=1", "forwarded in origin-form");
        }
        400 => assert!(b.requests().is_empty()),
        _ => panic!("unexpected {}", r.status_line),
    }
    canary_untouched(&canary);
}

#[test]
fn connect_is_refused_and_never_tunnels() {
    // docs/security.md, O3.
    let canary = backend::canary();
    let b = backend::echo();
    let p = sidecar_for(&b);
    let c_addr = canary.addr;
    rejected_by(
        &p,
        &b,
        format!("CONNECT {c_addr} HTTP/1.1\r\nHost: {c_addr}\r\n\r\nGET /inside HTTP/1.1\r\nHost: a\r\n\r\n")
            .as_bytes(),
        &[405, 400],
    );
    canary_untouched(&canary);
}

#[test]
fn asterisk_target_on_get_is_400() {
    // docs/security.md, O4.
    rejected(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn asterisk_prefixed_path_on_options_is_400() {
    rejected(b"OPTIONS */x HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn authority_form_on_get_is_400() {
    let canary = backend::canary();
    rejected(format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", canary.addr).as_bytes(), &[400]);
    canary_untouched(&canary);
}

#[test]
fn ftp_scheme_in_absolute_form_is_400() {
    // docs/security.md, O2.
    rejected(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn unix_socket_syntax_in_absolute_form_is_400() {
    rejected(b"GET unix:/run/x.sock|http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn userinfo_in_absolute_form_is_400() {
    let canary = backend::canary();
    rejected(format!("GET http://a@{}/ HTTP/1.1\r\nHost: a\r\n\r\n", canary.addr).as_bytes(), &[400]);
    canary_untouched(&canary);
}

#[test]
fn unix_trick_in_the_query_goes_to_the_configured_backend() {
    // CVE-2021-40438: `?unix:AAAA…|http://canary/` must not pick the upstream.
    let canary = backend::canary();
    let b = backend::echo();
    let p = sidecar_for(&b);
    let target = format!("/?unix:{}|http://{}/", "A".repeat(7701), canary.addr);
    let mut c = p.conn();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
    let r = c.read_response();
    match r.status {
        200 => assert_eq!(b.requests()[0].target, target, "query forwarded intact"),
        400 => assert!(b.requests().is_empty()),
        _ => panic!("unexpected {}", r.status_line),
    }
    canary_untouched(&canary);
}

#[test]
fn proxy_headers_are_never_forwarded() {
    // docs/security.md, O5 (httpoxy, CVE-2016-5387).
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(
        "GET / HTTP/1.1\r\nHost: a\r\nProxy: http://evil.example/\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\r\n",
    )
    .expect("send to sidecar");
    assert_eq!(c.read_response().status, 200);
    let req = &b.requests()[0];
    for name in ["Proxy", "Proxy-Authorization", "Proxy-Connection"] {
        assert!(!req.has(name), "{name} forwarded:\n{}", req.head_str());
    }
}
