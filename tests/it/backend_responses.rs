//! Backend responses are untrusted input (docs/security.md, B1–B9). A malformed response
//! head is answered 502 (plain text, nothing of it relayed) and the backend connection
//! that sent it is dropped, never reused; framing conflicts never leak bytes into the
//! next client request; a body cut short is visible to the client as truncation.

use std::time::Duration;

use crate::support::backend::{self, response, Backend, Reply};
use crate::support::*;

/// The first request gets `bad`: the client must get sidecar's 502, and the next
/// request (on a fresh client connection) must be answered `fine` over a new backend
/// connection.
fn answered_502_and_dropped(bad: &[u8]) {
    let b = backend::answers_raw_once_then_fine(bad);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = match c.try_read_response(false, DEADLINE) {
        Ok(r) => r,
        Err(e) => panic!("backend sent {}\nexpected a 502: {e}", show(bad)),
    };
    assert_eq!(r.status, 502, "backend sent {}\nclient got {}", show(bad), show(&r.head));
    r.assert_error(502);
    let mut c2 = p.conn();
    c2.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r2 = c2.read_response();
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "fine"), "{}", r2.head_str());
    let reqs = b.requests();
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/first", "/second"], "no retry of the request, no lost request");
    assert_ne!(reqs[1].conn, reqs[0].conn, "the connection that sent a bad response was reused");
}

// ---- B1: CR / LF / NUL in header values -------------------------------------------

#[test]
fn bare_cr_in_a_response_header_value_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn nul_in_a_response_header_value_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn bare_lf_injecting_a_response_header_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nX: a\nSet-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok");
}

// ---- B2: line shape ----------------------------------------------------------------------

#[test]
fn response_header_without_colon_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nFoo bar\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn response_obs_fold_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn response_whitespace_before_colon_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn response_with_a_garbage_status_line_is_502() {
    answered_502_and_dropped(b"HTTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

#[test]
fn response_with_differing_content_lengths_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!");
}

// ---- B3: Content-Length with Transfer-Encoding ------------------------------------------------

#[test]
fn response_with_content_length_and_chunked_is_framed_by_te_and_not_reused() {
    let b = backend::answers_raw_once_then_fine(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nResponse splitting attach"[..],
    );
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    match r.status {
        200 => assert!(r.body.is_empty(), "framed by Transfer-Encoding: empty body, got {:?}", r.body_str()),
        502 => r.assert_error(502),
        _ => panic!("unexpected {}", r.status_line),
    }
    let (rest, _) = c.read_until_close(Duration::from_millis(200));
    assert!(!rest.windows(9).any(|w| w == b"splitting"), "leftover relayed: {}", show(&rest));
    let mut c2 = p.conn();
    c2.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r2 = c2.read_response();
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "fine"), "{}", r2.head_str());
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[1].conn, reqs[0].conn, "a CL+TE backend connection must not be reused");
}

// ---- B4: bad Transfer-Encoding --------------------------------------------------------------------

#[test]
fn response_chunked_chunked_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
}

#[test]
fn response_chunked_then_gzip_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n");
}

#[test]
fn response_chunked_gzip_chunked_is_502() {
    answered_502_and_dropped(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
}

#[test]
fn response_gzip_transfer_encoding_is_502() {
    answered_502_and_dropped(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok");
}

// ---- B5: premature close -----------------------------------------------------------------------------

#[test]
fn premature_close_mid_length_body_truncates_the_client_response() {
    let b = backend::answers_raw_then_closes(&b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"[..]);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the client must see the truncation: {}", r.head_str());
    assert_eq!(r.body, b"0123456789", "what arrived is relayed, no padding");
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty() && closed, "closed after the truncated body");
}

#[test]
fn premature_close_mid_chunked_body_never_sends_the_last_chunk() {
    let b =
        backend::answers_raw_then_closes(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..]);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.complete, "no terminating 0-chunk may be invented");
    assert_eq!(r.body, b"hello");
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty() && closed, "closed after the truncated body, got {}", show(&rest));
}

#[test]
fn backend_closing_without_an_answer_is_502() {
    let b = Backend::start(|_| Reply::Close);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(502);
}

// ---- B6: bytes after a complete response ------------------------------------------------------------

const EXTRA_RESPONSE: &[u8] = b"HTTP/1.1 302 Found\r\nLocation: //evil.example/\r\nContent-Length: 0\r\n\r\n";

#[test]
fn bytes_after_a_complete_response_never_reach_the_next_request() {
    let mut bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    bad.extend_from_slice(EXTRA_RESPONSE);
    let b = backend::answers_raw_once_then_fine(bad);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert!(r.status == 200 || r.status == 502, "{}", r.status_line);
    if r.status == 200 {
        assert_eq!(r.body, b"ok");
    }
    c.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r2 = c.read_response();
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "fine"), "the next request got {}", r2.head_str());
    assert!(r2.header("location").is_none());
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[1].conn, reqs[0].conn, "the backend connection with extra bytes was reused");
}

#[test]
fn bytes_arriving_later_on_an_idle_pooled_connection_never_reach_the_next_request() {
    let first = std::sync::atomic::AtomicBool::new(true);
    let b = Backend::start(move |_| {
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            Reply::SendTwice(response(200, &[], b"ok"), Duration::from_millis(100), EXTRA_RESPONSE.to_vec())
        } else {
            Reply::Send(response(200, &[], b"fine"))
        }
    });
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(c.read_response().body, b"ok");
    // The extra response arrives on the pooled connection 100 ms after the first.
    std::thread::sleep(Duration::from_millis(300));
    c.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r2 = c.read_response();
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "fine"), "the next request got {}", r2.head_str());
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2, "{}", show(&b.received()));
    assert_ne!(reqs[1].conn, reqs[0].conn, "a pooled connection with unsolicited bytes was reused");
}

// ---- B7: 1xx ------------------------------------------------------------------------------------------

#[test]
fn unsolicited_101_to_a_plain_get_is_502_and_closed() {
    let b = backend::answers_raw_once_then_fine(
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"[..],
    );
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /plain HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    c.read_response().assert_error(502);
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty(), "nothing of the tunnel may reach the client: {}", show(&rest));
    assert!(closed, "unsolicited 101 closes the client connection");
    let mut c2 = p.conn();
    c2.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(c2.read_response().body, b"fine");
    let reqs = b.requests();
    assert_ne!(reqs[1].conn, reqs[0].conn);
}

#[test]
fn interim_103_then_200_delivers_the_200() {
    let b = backend::answers_raw(&b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let mut r = c.read_response();
    let mut interim = 0;
    while (100..200).contains(&r.status) && interim < 3 {
        assert_eq!(r.status, 103);
        interim += 1;
        r = c.read_response();
    }
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    // And the connection is still in step.
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let mut r = c.read_response();
    while r.status == 103 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200);
}

// ---- B8: bodiless responses followed by bytes --------------------------------------------------------

#[test]
fn bytes_after_a_204_are_not_relayed_and_the_connection_not_reused() {
    let b = backend::answers_raw_once_then_fine(
        &b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"[..],
    );
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert!(r.status == 204 || r.status == 502, "{}", r.status_line);
    c.send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r2 = c.read_response();
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "fine"), "{}", r2.head_str());
    let reqs = b.requests();
    assert_ne!(reqs[1].conn, reqs[0].conn);
}

// ---- B9: oversized heads ---------------------------------------------------------------------------------

#[test]
fn response_head_with_a_1_mib_header_is_502() {
    let mut bad = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    bad.extend(std::iter::repeat_n(b'b', 1024 * 1024));
    bad.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
    answered_502_and_dropped(&bad);
}

#[test]
fn response_head_with_200_headers_is_502() {
    let mut bad = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..200 {
        bad.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    bad.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    answered_502_and_dropped(&bad);
}
