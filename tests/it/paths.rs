//! One normalisation for routing and forwarding (docs/security.md, P1–P9). Config:
//! `/` → the root backend, `/api` → the api backend at `/api`. Where a 400 would be as
//! safe, the test accepts it; what it never accepts is routing by one
//! form of the path and forwarding another.

use crate::support::backend::{self, Backend, Request};
use crate::support::*;

struct Routes {
    p: Sidecar,
    root: Backend,
    api: Backend,
}

fn routes() -> Routes {
    let root = backend::echo();
    let api = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/api\"\n",
        root.addr, api.addr
    ));
    Routes { p, root, api }
}

enum Went {
    Root(Request),
    Api(Request),
    Status(u16),
}

/// Sends `GET target` and reports where it went (or the status when no backend saw it).
fn send(r: &Routes, target: &[u8]) -> Went {
    let mut c = r.p.conn();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    c.send(&req).expect("send to sidecar");
    let resp = c.read_response();
    let (root, api) = (r.root.requests(), r.api.requests());
    assert!(root.len() + api.len() <= 1, "one request, one backend");
    match (root.into_iter().next(), api.into_iter().next()) {
        (Some(q), None) => Went::Root(q),
        (None, Some(q)) => Went::Api(q),
        _ => Went::Status(resp.status),
    }
}

#[test]
fn dot_dot_out_of_a_prefix_routes_by_the_normalised_path() {
    // P1: never route by the raw `/api` prefix and forward the raw `..`.
    let r = routes();
    match send(&r, b"/api/../admin") {
        Went::Root(q) => assert_eq!(q.target, "/admin"),
        Went::Api(q) => panic!("routed to /api by the raw prefix, forwarded {:?}", q.target),
        Went::Status(s) => assert_eq!(s, 400),
    }
}

#[test]
fn encoded_slash_is_never_decoded() {
    // P2: `%2F` never becomes `/`.
    let r = routes();
    match send(&r, b"/api%2f..%2fadmin") {
        Went::Root(q) | Went::Api(q) => {
            assert!(q.target.to_ascii_lowercase().contains("%2f"), "decoded %2F: forwarded {:?}", q.target)
        }
        Went::Status(s) => assert!(s == 400 || s == 404, "{s}"),
    }
}

#[test]
fn encoded_dot_segments_are_decoded_then_removed_before_matching() {
    // P3.
    let r = routes();
    match send(&r, b"/api/%2e%2e/x") {
        Went::Root(q) => assert_eq!(q.target, "/x"),
        Went::Api(q) => panic!("`/api/%2e%2e/x` is `/x`, but went to /api as {:?}", q.target),
        Went::Status(s) => assert_eq!(s, 400),
    }
}

#[test]
fn single_dot_segment_is_removed_before_matching() {
    let r = routes();
    match send(&r, b"/api/./x") {
        Went::Api(q) => assert_eq!(q.target, "/api/x"),
        Went::Root(q) => panic!("`/api/./x` is `/api/x`, went to / as {:?}", q.target),
        Went::Status(s) => assert_eq!(s, 400),
    }
}

#[test]
fn doubled_slashes_still_match_the_prefix() {
    // P4: Apache merges slashes for matching.
    for target in [&b"//api/x"[..], &b"/api//x"[..]] {
        let r = routes();
        match send(&r, target) {
            Went::Api(_) => {}
            Went::Root(q) => panic!("{} matched / (forwarded {:?})", show(target), q.target),
            Went::Status(s) => panic!("{} answered {s}", show(target)),
        }
    }
}

#[test]
fn semicolon_dot_dot_is_forwarded_literally() {
    // P6: `..;` is not a dot segment to a proxy.
    let r = routes();
    match send(&r, b"/api/..;/admin") {
        Went::Api(q) => assert_eq!(q.target, "/api/..;/admin"),
        Went::Root(q) => panic!("went to / as {:?}", q.target),
        Went::Status(s) => assert_eq!(s, 400),
    }
}

#[test]
fn backslash_is_rejected_or_forwarded_encoded() {
    // P7.
    let r = routes();
    match send(&r, b"/api\\..\\admin") {
        Went::Root(q) | Went::Api(q) => assert!(!q.target.contains('\\'), "raw backslash forwarded: {:?}", q.target),
        Went::Status(s) => assert_eq!(s, 400),
    }
}

#[test]
fn query_string_is_forwarded_byte_exact() {
    // P9.
    let r = routes();
    match send(&r, b"/api/x?a=%0d%0a&b=..%2f&c=%3F") {
        Went::Api(q) => assert_eq!(q.target, "/api/x?a=%0d%0a&b=..%2f&c=%3F"),
        Went::Root(q) => panic!("went to / as {:?}", q.target),
        Went::Status(s) => panic!("answered {s}"),
    }
}
