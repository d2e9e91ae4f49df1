//! HTTP/1.x forwarding through the real binary: versions, keep-alive,
//! pipelining, streamed bodies both ways, bodiless responses, `Expect: 100-continue`,
//! pooled backend connections, routing by prefix and the error statuses 404/502/504.

use std::time::{Duration, Instant};

use crate::support::backend::{self, response, Backend, Reply};
use crate::support::*;

#[test]
fn get_is_forwarded_and_the_answer_relayed() {
    let b = backend::answers_ok("hello");
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /greeting?x=1 HTTP/1.1\r\nHost: front.test\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body, b"hello");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str(), reqs[0].version), ("GET", "/greeting?x=1", 1));
}

#[test]
fn http10_request_without_host_is_answered_and_the_connection_closed() {
    let b = backend::answers_ok("old but fine");
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /old HTTP/1.0\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    assert_eq!(r.body, b"old but fine");
    c.expect_closed(DEADLINE);
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/old");
}

#[test]
fn http10_client_never_gets_a_chunked_response() {
    let b = backend::answers_raw(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
    );
    let p = sidecar_for(&b);
    let (bytes, closed) = send_raw(p.addr(), "GET / HTTP/1.0\r\nHost: a\r\n\r\n", DEADLINE);
    assert!(closed, "an HTTP/1.0 exchange without keep-alive ends with a close");
    let (rs, rest) = parse_responses(&bytes);
    assert_eq!(rs.len(), 1, "{}", show(&bytes));
    assert!(rest.is_empty());
    assert!(!rs[0].chunked, "HTTP/1.0 has no chunked coding: {}", rs[0].head_str());
    assert_eq!(rs[0].body, b"hello world");
}

#[test]
fn keep_alive_serves_sequential_requests_on_one_connection() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    for i in 0..3 {
        c.send(format!("GET /seq/{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-target"), Some(format!("/seq/{i}").as_str()));
        assert!(!r.says_close(), "keep-alive: {}", r.head_str());
    }
    assert_eq!(b.requests().len(), 3);
    assert_eq!(b.connections(), 1, "the backend side is kept alive too");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("send to sidecar");
    for want in ["/1", "/2", "/3"] {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-target"), Some(want));
    }
    let targets: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/1", "/2", "/3"]);
}

#[test]
fn pipelined_requests_after_bodies_are_framed_separately() {
    // docs/security.md, S20: a length body, no body and a chunked body in one write.
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         GET /b HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n",
    )
    .expect("send to sidecar");
    for (target, body) in [("/a", "hello"), ("/b", ""), ("/c", "world")] {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo-target"), Some(target));
        assert_eq!(r.body_str(), body);
    }
    let reqs = b.requests();
    assert_eq!(reqs.len(), 3);
    for (req, (target, body)) in reqs.iter().zip([("/a", "hello"), ("/b", ""), ("/c", "world")]) {
        assert_eq!(req.target, target);
        assert_eq!(String::from_utf8_lossy(&req.body), body);
        assert!(req.has("x-forwarded-for"), "each request went through sidecar's parser: {}", req.head_str());
    }
}

#[test]
fn chunked_request_body_reaches_the_backend_intact() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(
        "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n",
    )
    .expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abc0123456789");
    let req = &b.requests()[0];
    assert_eq!(req.body, b"abc0123456789");
    assert!(
        !(req.has("content-length") && req.has("transfer-encoding")),
        "exactly one framing header: {}",
        req.head_str()
    );
}

#[test]
fn chunk_extensions_are_accepted_and_not_forwarded() {
    // docs/security.md, S11: valid extensions are accepted; re-chunk canonically.
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n")
        .expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(b.requests()[0].body, b"hello");
    let raw = b.received();
    assert!(!raw.windows(10).any(|w| w == b"name=value"), "extension forwarded: {}", show(&raw));
}

#[test]
fn get_with_a_body_forwards_body_and_length_together() {
    // docs/security.md, S21.
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /withbody HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n1234567890").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let req = &b.requests()[0];
    assert_eq!(req.body, b"1234567890");
    assert_eq!(req.header("content-length"), Some("10"));
}

#[test]
fn chunked_response_is_relayed_with_its_body() {
    let b = backend::answers_raw(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
    );
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.complete, "terminated properly");
    assert_eq!(r.body, b"hello world");
}

#[test]
fn close_delimited_response_is_relayed_in_full() {
    let b = backend::answers_raw_then_closes(
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very close"[..],
    );
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "until the very close");
    assert!(r.complete);
}

#[test]
fn head_response_has_no_body_and_the_connection_stays_usable() {
    let b = Backend::start(|req| {
        if req.method == "HEAD" {
            Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec())
        } else {
            Reply::Send(response(200, &[], b"after"))
        }
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5"), "HEAD keeps the length of the GET");
    c.send("GET /g HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "no body bytes between the two answers");
    assert_eq!(r.body, b"after");
}

#[test]
fn no_content_and_not_modified_carry_no_body() {
    let b = Backend::start(|req| match req.target.as_str() {
        "/204" => Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        "/304" => Reply::Send(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec()),
        _ => Reply::Send(response(200, &[], b"after")),
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    for (target, status) in [("/204", 204), ("/304", 304), ("/after", 200)] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, status, "{target}: {}", r.head_str());
        if status != 200 {
            assert!(r.header("transfer-encoding").is_none(), "a {status} must not announce a body: {}", r.head_str());
        } else {
            assert_eq!(r.body, b"after");
        }
    }
}

#[test]
fn expect_100_continue_gets_100_then_the_final_answer() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .expect("send to sidecar");
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{}", interim.head_str());
    c.send("hello").expect("send to sidecar");
    let mut r = c.read_response();
    while r.status == 100 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, b"hello", "the backend got the whole body");
}

const EIGHT_MIB: usize = 8 * 1024 * 1024;

#[test]
fn eight_mib_request_body_with_content_length_arrives_intact() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let body = noise(EIGHT_MIB, 1);
    let mut c = p.conn();
    c.timeout = Duration::from_secs(10);
    c.send(format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()))
        .expect("send to sidecar");
    c.send(&body).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let got = &b.requests()[0].body;
    assert_eq!((got.len(), digest(got)), (body.len(), digest(&body)), "backend got the body");
    assert_eq!((r.body.len(), digest(&r.body)), (body.len(), digest(&body)), "client got the echo");
}

#[test]
fn eight_mib_chunked_request_body_arrives_intact() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let body = noise(EIGHT_MIB, 2);
    let mut c = p.conn();
    c.timeout = Duration::from_secs(10);
    c.send("POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").expect("send to sidecar");
    c.send(chunked(&body, 100_000)).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let got = &b.requests()[0].body;
    assert_eq!((got.len(), digest(got)), (body.len(), digest(&body)));
}

#[test]
fn eight_mib_response_body_arrives_intact() {
    let body = noise(EIGHT_MIB, 3);
    let want = (body.len(), digest(&body));
    let b = backend::answers_raw(response(200, &[], &body));
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.timeout = Duration::from_secs(10);
    c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!((r.body.len(), digest(&r.body)), want);
}

#[test]
fn backend_connection_is_reused_across_client_connections() {
    let b = backend::echo();
    let p = sidecar_for(&b); // workers = 1: one pool
    for i in 0..5 {
        let mut c = p.conn();
        c.send(format!("GET /pooled/{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, 200);
    }
    assert_eq!(b.requests().len(), 5);
    assert_eq!(b.connections(), 1, "5 client connections, 1 pooled backend connection");
}

#[test]
fn pooled_connection_the_backend_closed_after_a_response_never_fails_a_request() {
    let b = backend::closes_after_each_response();
    let p = sidecar_for(&b);
    for i in 0..5 {
        let mut c = p.conn();
        c.send(format!("GET /n/{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, 200, "request {i}: {}", r.head_str());
        assert_eq!(r.body, b"ok");
    }
    assert_eq!(b.requests().len(), 5);
}

#[test]
fn pooled_connection_closed_after_idling_never_fails_a_request() {
    let b = backend::closes_idle_after(Duration::from_millis(200));
    let p = sidecar_for(&b);
    for i in 0..2 {
        let mut c = p.conn();
        c.send(format!("GET /idle/{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        let r = c.read_response();
        assert_eq!(r.status, 200, "request {i}: {}", r.head_str());
        if i == 0 {
            // Let the backend close the pooled connection (its idle timeout is 200 ms).
            std::thread::sleep(Duration::from_millis(400));
        }
    }
    assert_eq!(b.requests().len(), 2);
    assert_eq!(b.connections(), 2);
}

#[test]
fn longest_matching_prefix_wins_on_segment_boundaries() {
    let root = backend::echo();
    let api = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/api\"\n",
        root.addr, api.addr
    ));
    let mut c = p.conn();
    for target in ["/api/x", "/api", "/apix", "/API/x", "/other"] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        assert_eq!(c.read_response().status, 200, "{target}");
    }
    let at_api: Vec<String> = api.requests().into_iter().map(|r| r.target).collect();
    let at_root: Vec<String> = root.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(at_api, ["/api/x", "/api"]);
    assert_eq!(at_root, ["/apix", "/API/x", "/other"], "segment boundary, case-sensitive (docs/security.md, P5)");
}

#[test]
fn unmatched_path_is_404_with_a_plain_text_body() {
    let b = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/api\"\n",
        b.addr
    ));
    let mut c = p.conn();
    c.send("GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    r.assert_error(404);
    assert!(!r.body_str().contains("elsewhere"), "error bodies never echo the URL (CVE-2019-10092)");
    assert_eq!(b.connections(), 0);
}

#[test]
fn closed_backend_port_is_502() {
    let dead = DeadPort::new();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"1s\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        dead.addr
    ));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(502);
}

#[test]
fn backend_that_never_answers_is_504_after_proxy_timeout() {
    let b = backend::never_answers();
    let p = Sidecar::start(&config_to(b.addr, "proxy_timeout = \"300ms\""));
    let mut c = p.conn();
    let started = Instant::now();
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    let took = started.elapsed();
    r.assert_error(504);
    assert!(took >= Duration::from_millis(250), "answered after {took:?}, before the 300ms timeout");
    assert!(took < Duration::from_millis(2500), "answered after {took:?}");
    assert_eq!(b.requests().len(), 1, "the request did reach the backend");
}

/// sidecar's own error answers honour the client's wish to close, like a relayed 200
/// does: `Connection: close` in the answer and the socket closed at once, not after
/// `keepalive_timeout` (60 s by default).
#[test]
fn error_answers_close_when_the_client_asked_to_close() {
    let dead = DeadPort::new();
    let silent = backend::never_answers();
    let garbage = backend::answers_raw("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"1s\"\nproxy_timeout = \"300ms\"\n\n\
         [[proxy]]\npath = \"/closed/\"\nto = \"http://{}/\"\n\n\
         [[proxy]]\npath = \"/silent/\"\nto = \"http://{}/\"\n\n\
         [[proxy]]\npath = \"/garbage/\"\nto = \"http://{}/\"\n",
        dead.addr, silent.addr, garbage.addr
    );
    let p = Sidecar::start(&config);
    for (path, status) in [("/closed/x", 502), ("/silent/x", 504), ("/garbage/x", 502), ("/nowhere", 404)] {
        for request in [
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            format!("GET {path} HTTP/1.0\r\n\r\n"),
        ] {
            let mut c = p.conn();
            c.send(&request).expect("send to sidecar");
            let r = c.read_response();
            r.assert_error(status);
            assert!(r.says_close(), "{request:?}: {}", r.head_str());
            c.expect_closed(DEADLINE);
        }
    }
}

/// A GET that timed out on a pooled connection is not sent again on a fresh one: the
/// backend may be working on it, and the client would wait twice `proxy_timeout`.
#[test]
fn get_that_timed_out_on_a_pooled_connection_is_sent_once() {
    let b = Backend::start(|req| match req.target.as_str() {
        "/hang" => Reply::Silence,
        _ => Reply::Send(response(200, &[], b"ok")),
    });
    let p = Sidecar::start(&config_to(b.addr, "proxy_timeout = \"500ms\""));
    let mut c = p.conn();
    c.send("GET /warm HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().status, 200, "the backend connection is now pooled");
    c.send("GET /hang HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(504);
    // A second try would have been sent before the 504, right after the first timeout.
    let hangs = b.requests().iter().filter(|r| r.target == "/hang").count();
    assert_eq!(hangs, 1, "the backend received GET /hang {hangs} times");
    assert_eq!(b.connections(), 1, "on the pooled connection only");
}

#[test]
fn request_head_not_complete_within_header_timeout_is_closed() {
    // docs/security.md, L2 (slowloris): the whole head has a deadline.
    let b = backend::echo();
    let p = Sidecar::start(&config_to(b.addr, "header_timeout = \"500ms\""));
    let mut c = p.conn();
    let started = Instant::now();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n").expect("send to sidecar");
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took >= Duration::from_millis(400), "closed after {took:?}, before the 500ms header timeout");
    if !rest.is_empty() {
        let (rs, _) = parse_responses(&rest);
        assert!(rs.len() == 1 && (rs[0].status == 408 || rs[0].status == 400), "{}", show(&rest));
    }
    assert_eq!(b.connections(), 0);
}
