//! Request framing and smuggling (docs/security.md, S1–S24) and the Host checks (H1–H3),
//! through the real binary. "Rejected" (docs/security.md, "Rejected requests"): the
//! status with a short plain-text body, the connection closed, and NOTHING sent to any
//! backend. Each case is
//! its own test. After each rejection a control request on a fresh connection proves
//! the backend was reachable, and then the backend's record must hold the control
//! request and nothing else: zero other bytes, zero other connections.

use std::time::Duration;

use crate::support::backend;
use crate::support::*;

/// Sends `bytes`; the request must be accepted (200) and forwarded as exactly one
/// request, which is returned.
fn accepted(bytes: &[u8]) -> backend::Request {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(bytes).expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "sent {}\ngot {}", show(bytes), r.head_str());
    let reqs = b.wait_for_requests(1, DEADLINE);
    assert_eq!(reqs.len(), 1, "backend saw {}", show(&b.received()));
    reqs.into_iter().next().expect("one request")
}

const HEAD_PREFIX: &str = "POST / HTTP/1.1\r\nHost: a\r\n";

fn post_with(headers: &str, body: &str) -> Vec<u8> {
    format!("{HEAD_PREFIX}{headers}\r\n{body}").into_bytes()
}

// ---- S1, S2: Content-Length together with Transfer-Encoding ----------------------

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejected(&post_with("Content-Length: 13\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nSMUGGLED"), &[400]);
}

#[test]
fn te_cl_with_an_embedded_request_is_400() {
    rejected(
        &post_with(
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "3b\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nx=1\r\n\r\n0\r\n\r\n",
        ),
        &[400],
    );
}

// ---- S3: Transfer-Encoding obfuscation --------------------------------------------

#[test]
fn transfer_encoding_with_space_before_colon_is_400() {
    rejected(&post_with("Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", "0\r\n\r\n"), &[400]);
}

#[test]
fn transfer_encoding_as_leading_whitespace_first_header_is_400() {
    rejected(
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        &[400],
    );
}

#[test]
fn transfer_encoding_with_vertical_tab_is_400() {
    rejected(&post_with("Content-Length: 5\r\nTransfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), &[400]);
}

#[test]
fn transfer_encoding_xchunked_is_400() {
    rejected(&post_with("Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n", "0\r\n\r\n"), &[400]);
}

#[test]
fn transfer_encoding_quoted_chunked_is_400() {
    rejected(&post_with("Content-Length: 5\r\nTransfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"), &[400]);
}

#[test]
fn transfer_encoding_with_a_non_ascii_byte_is_400() {
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: ch\x96nked\r\n\r\n".to_vec();
    req.extend_from_slice(b"0\r\n\r\n");
    rejected(&req, &[400]);
}

#[test]
fn transfer_encoding_cow_then_chunked_is_400() {
    rejected(
        &post_with("Content-Length: 5\r\nTransfer-Encoding: cow\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
        &[400],
    );
}

#[test]
fn transfer_encoding_with_tab_is_accepted_as_chunked() {
    let req = accepted(&post_with("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"));
    assert_eq!(req.body, b"hello");
}

#[test]
fn transfer_encoding_in_upper_case_is_accepted_as_chunked() {
    let req = accepted(&post_with("TRANSFER-ENCODING: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"));
    assert_eq!(req.body, b"hello");
}

#[test]
fn underscore_transfer_encoding_does_not_frame_and_is_dropped() {
    // docs/security.md, S3/H7: `Transfer_Encoding` is another header name; Content-Length frames.
    let req = accepted(&post_with("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", "hello"));
    assert_eq!(req.body, b"hello");
    assert!(!req.has("transfer_encoding"), "underscore names are dropped: {}", req.head_str());
    assert!(!req.has("transfer-encoding"), "{}", req.head_str());
}

// ---- S4: comma lists and repeats ---------------------------------------------------

#[test]
fn transfer_encoding_leading_comma_is_chunked_or_rejected_never_forwarded_raw() {
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(post_with("Transfer-Encoding: ,chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")).expect("send to sidecar");
    let r = c.read_response();
    match r.status {
        200 => {
            let req = &b.requests()[0];
            assert_eq!(req.body, b"hello");
            assert!(!b.received().windows(8).any(|w| w == b",chunked"), "raw value forwarded: {}", req.head_str());
        }
        400 => nothing_forwarded(&p, &b),
        _ => panic!("unexpected {}", r.status_line),
    }
}

#[test]
fn transfer_encoding_chunked_on_two_lines_is_400() {
    rejected(
        &post_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        &[400],
    );
}

#[test]
fn transfer_encoding_chunked_chunked_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), &[400]);
}

// ---- S5: duplicate Content-Length ---------------------------------------------------

#[test]
fn differing_duplicate_content_length_is_400() {
    rejected(
        &post_with("Content-Length: 0\r\nContent-Length: 31\r\n", "GET /evil HTTP/1.1\r\nHost: a\r\n\r\n"),
        &[400],
    );
}

#[test]
fn content_length_list_is_400() {
    rejected(&post_with("Content-Length: 5, 6\r\n", "hello!"), &[400]);
}

#[test]
fn identical_duplicate_content_length_is_400() {
    rejected(&post_with("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), &[400]);
}

// ---- S6: invalid Content-Length values ----------------------------------------------

#[test]
fn content_length_with_plus_sign_is_400() {
    rejected(&post_with("Content-Length: +5\r\n", "hello"), &[400]);
}

#[test]
fn negative_content_length_is_400() {
    rejected(&post_with("Content-Length: -1\r\n", "hello"), &[400]);
}

#[test]
fn hex_content_length_is_400() {
    rejected(&post_with("Content-Length: 0x10\r\n", "0123456789abcdef"), &[400]);
}

#[test]
fn empty_content_length_is_400() {
    rejected(&post_with("Content-Length: \r\n", "hello"), &[400]);
}

#[test]
fn content_length_with_inner_space_is_400() {
    rejected(&post_with("Content-Length: 5 5\r\n", "hello"), &[400]);
}

#[test]
fn content_length_with_underscore_is_400() {
    rejected(&post_with("Content-Length: 1_0\r\n", "0123456789"), &[400]);
}

#[test]
fn content_length_overflowing_u64_is_400() {
    rejected(&post_with("Content-Length: 18446744073709551616\r\n", "hello"), &[400]);
}

#[test]
fn content_length_of_23_digits_is_400() {
    rejected(&post_with("Content-Length: 99999999999999999999999\r\n", "hello"), &[400]);
}

#[test]
fn content_length_with_leading_zeros_is_accepted() {
    let req = accepted(&post_with("Content-Length: 005\r\n", "hello"));
    assert_eq!(req.body, b"hello");
    assert_eq!(req.headers_named("content-length"), ["5"], "one canonical Content-Length is forwarded");
}

// ---- S7: codings other than a final chunked -----------------------------------------

#[test]
fn transfer_encoding_gzip_is_rejected() {
    // sidecar answers 400; RFC 9112 §6.1 suggests 501 for a coding it does not implement.
    rejected(&post_with("Transfer-Encoding: gzip\r\n", "hello"), &[400, 501]);
}

#[test]
fn transfer_encoding_chunked_then_gzip_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked, gzip\r\n", "5\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn transfer_encoding_gzip_then_chunked_is_rejected() {
    rejected(&post_with("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), &[400, 501]);
}

#[test]
fn transfer_encoding_identity_is_rejected() {
    rejected(&post_with("Transfer-Encoding: identity\r\n", "hello"), &[400, 501]);
}

#[test]
fn transfer_encoding_chunked_with_a_parameter_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked;foo=bar\r\n", "5\r\nhello\r\n0\r\n\r\n"), &[400]);
}

// ---- S8: HTTP/1.0 with Transfer-Encoding ----------------------------------------------

#[test]
fn http10_with_transfer_encoding_is_400() {
    rejected(b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &[400]);
}

// ---- S9, S10: chunk sizes ------------------------------------------------------------

#[test]
fn chunk_size_of_18_hex_digits_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_overflowing_u64_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "10000000000000000\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_with_0x_prefix_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_with_plus_sign_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_with_trailing_space_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_with_leading_spaces_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n           0\r\n\r\n"), &[400]);
}

#[test]
fn empty_chunk_size_line_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "\r\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_size_with_underscore_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "5_0\r\nhello\r\n0\r\n\r\n"), &[400]);
}

// ---- S11: chunk extensions -------------------------------------------------------------

#[test]
fn bare_cr_in_chunk_extension_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "2\r\r;a\r\n02\r\n41\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn bare_lf_in_chunk_extension_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "5;a\nhello\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn huge_chunk_extension_is_rejected() {
    let body = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(64 * 1024));
    rejected(&post_with("Transfer-Encoding: chunked\r\n", &body), &[400, 413, 431]);
}

// ---- S12: chunk data terminator -----------------------------------------------------------

#[test]
fn chunk_data_longer_than_its_size_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "4\r\nSEE-THIS\r\n0\r\n\r\n"), &[400]);
}

#[test]
fn bare_lf_after_chunk_data_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "a\r\n0123456789\n0\r\n\r\n"), &[400]);
}

#[test]
fn chunk_data_not_followed_by_crlf_is_400() {
    rejected(&post_with("Transfer-Encoding: chunked\r\n", "1\r\nAXX0\r\n\r\n"), &[400]);
}

// ---- S13, S14: line endings ------------------------------------------------------------------

#[test]
fn bare_lf_line_endings_are_400() {
    rejected(b"GET / HTTP/1.1\nHost: a\n\n", &[400]);
}

#[test]
fn bare_lf_before_a_header_is_400() {
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nX: X\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        &[400],
    );
}

#[test]
fn bare_cr_in_header_value_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", &[400]);
}

#[test]
fn bare_cr_after_request_line_is_400() {
    rejected(b"GET / HTTP/1.1\r\rHost: a\r\n\r\n", &[400]);
}

// ---- S15: obs-fold -------------------------------------------------------------------------------

#[test]
fn obs_fold_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", &[400]);
}

#[test]
fn obs_fold_in_content_length_is_400() {
    rejected(&post_with("Content-Length:\r\n 5\r\n", "hello"), &[400]);
}

#[test]
fn obs_fold_in_transfer_encoding_is_400() {
    rejected(&post_with("Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), &[400]);
}

// ---- S16, S19: whitespace around names ---------------------------------------------------------

#[test]
fn whitespace_before_colon_is_400() {
    rejected(&post_with("Content-Length : 5\r\n", "hello"), &[400]);
}

#[test]
fn tab_before_colon_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", &[400]);
}

#[test]
fn whitespace_before_the_first_header_is_400() {
    rejected(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", &[400]);
}

// ---- S17: header names --------------------------------------------------------------------------

#[test]
fn space_in_header_name_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nFoo bar: x\r\n\r\n", &[400]);
}

#[test]
fn control_byte_in_header_name_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nF\x01o: x\r\n\r\n", &[400]);
}

#[test]
fn nul_in_header_name_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nF\x00oo: x\r\n\r\n", &[400]);
}

#[test]
fn non_ascii_byte_in_header_name_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHeader\x85: v\r\n\r\n", &[400]);
}

#[test]
fn empty_header_name_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", &[400]);
}

#[test]
fn header_line_without_colon_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nFoo bar\r\n\r\n", &[400]);
}

// ---- S18: header values ---------------------------------------------------------------------------

#[test]
fn nul_in_header_value_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: google.com\x00.kallus.org\r\n\r\n", &[400]);
}

#[test]
fn nul_in_host_value_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: google.com\x00.kallus.org\r\n\r\n", &[400]);
}

#[test]
fn control_byte_in_header_value_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nFoo: b\x01ar\r\n\r\n", &[400]);
}

#[test]
fn del_in_header_value_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", &[400]);
}

#[test]
fn tab_and_obs_text_in_header_values_are_forwarded_as_is() {
    let req = accepted(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\nX-Latin: caf\xe9\r\n\r\n");
    assert!(req.head.windows(10).any(|w| w == b"X-Tab: a\tb"), "{}", show(&req.head));
    assert!(req.head.windows(13).any(|w| w == b"X-Latin: caf\xe9"), "{}", show(&req.head));
}

// ---- S22: early answer with an unread body ----------------------------------------------------------

#[test]
fn early_404_with_an_unread_body_never_answers_the_smuggled_request() {
    let b = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/api\"\n",
        b.addr
    ));
    let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: a\r\nX: yyyyyyyyyyyyyyyyyyyy\r\n\r\n";
    let mut c = p.conn();
    c.send(format!("POST /no-route HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()))
        .expect("send to sidecar");
    c.read_response().assert_error(404);
    // Either the body was discarded (no more answers) or the connection closed.
    let (rest, _closed) = c.read_until_close(Duration::from_millis(500));
    assert!(rest.is_empty(), "the smuggled request was answered: {}", show(&rest));
    let mut ctl = p.conn();
    ctl.send("GET /api/control HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(ctl.read_response().status, 200);
    let targets: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/api/control"], "the embedded request reached the backend");
}

#[test]
fn early_404_with_a_partly_sent_body_never_answers_the_smuggled_request() {
    // 0.CL shape: the body arrives after the 404; its bytes must not become a request.
    let b = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/api\"\n",
        b.addr
    ));
    let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut c = p.conn();
    c.send(format!("POST /no-route HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", smuggled.len()))
        .expect("send to sidecar");
    c.read_response().assert_error(404);
    let _ = c.send(smuggled);
    let (rest, _closed) = c.read_until_close(Duration::from_millis(500));
    assert!(rest.is_empty(), "the smuggled request was answered: {}", show(&rest));
    assert!(b.requests().is_empty(), "the embedded request reached the backend: {}", show(&b.received()));
}

// ---- S24: request line ------------------------------------------------------------------------------

#[test]
fn double_space_in_request_line_is_400() {
    rejected(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn extra_token_after_the_version_is_400() {
    rejected(b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn space_inside_the_method_is_400() {
    rejected(b"G ET / HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn nul_in_the_method_is_400() {
    rejected(b"G\x00ET / HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn http_1_11_is_rejected() {
    rejected(b"GET / HTTP/1.11\r\nHost: a\r\n\r\n", &[400, 505]);
}

#[test]
fn http_10_0_is_rejected() {
    rejected(b"GET / HTTP/10.0\r\nHost: a\r\n\r\n", &[400, 505]);
}

#[test]
fn misspelled_protocol_is_400() {
    rejected(b"GET / HTT/1.0\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn http09_request_line_is_400() {
    rejected(b"GET /\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn lowercase_method_is_forwarded_unchanged() {
    let req = accepted(b"get /lower HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(req.method, "get");
    assert!(req.head.starts_with(b"get /lower HTTP/1.1\r\n"), "{}", show(&req.head));
}

// ---- P8: bytes in the target --------------------------------------------------------------------------

#[test]
fn control_byte_in_target_is_400() {
    rejected(b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn del_in_target_is_400() {
    rejected(b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn space_in_target_is_400() {
    rejected(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn non_ascii_in_target_is_400() {
    rejected(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn fragment_in_target_is_400() {
    rejected(b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", &[400]);
}

// ---- H1–H3: Host ----------------------------------------------------------------------------------------

#[test]
fn http11_without_host_is_400() {
    rejected(b"GET / HTTP/1.1\r\nX: y\r\n\r\n", &[400]);
}

#[test]
fn two_identical_host_headers_are_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &[400]);
}

#[test]
fn two_different_host_headers_are_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &[400]);
}

#[test]
fn host_with_a_space_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &[400]);
}

#[test]
fn host_with_userinfo_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", &[400]);
}

#[test]
fn host_with_a_slash_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", &[400]);
}

#[test]
fn host_with_two_ports_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", &[400]);
}

// ---- L1: oversized heads ------------------------------------------------------------------------------------

#[test]
fn one_9_kib_header_is_431() {
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(9 * 1024));
    rejected(req.as_bytes(), &[431]);
}

#[test]
fn more_than_100_headers_is_431() {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..101 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    rejected(req.as_bytes(), &[431]);
}

#[test]
fn nine_kib_request_line_is_414_or_431() {
    let req = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9 * 1024));
    rejected(req.as_bytes(), &[414, 431]);
}

// ---- A bad chunk arriving after the head was forwarded (streamed bodies) -----------------

#[test]
fn bad_chunk_arriving_after_the_head_never_completes_a_request_at_the_backend() {
    // Bodies stream (never buffered whole), so the head may already be at the backend when a later
    // chunk turns out malformed: the backend must never see a complete request, and
    // that backend connection must not be reused.
    let b = backend::echo();
    let p = sidecar_for(&b);
    let mut c = p.conn();
    c.send(post_with("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n")).expect("send to sidecar");
    wait_until(Duration::from_millis(500), || b.received().windows(5).any(|w| w == b"hello"));
    let _ = c.send("0x5\r\nworld\r\n0\r\n\r\n");
    match c.try_read_response(false, DEADLINE) {
        Ok(r) => r.assert_error(400),
        Err(ReadError::Closed(bytes)) => assert!(bytes.is_empty(), "{}", show(&bytes)),
        Err(e) => panic!("{e}"),
    }
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty() && closed, "closed after the error, got {}", show(&rest));
    assert!(b.requests().is_empty(), "a complete request reached the backend: {}", show(&b.received()));
    assert!(!b.received().windows(5).any(|w| w == b"world"), "bytes after the bad chunk line were forwarded");
    let mut ctl = p.conn();
    ctl.send("GET /control HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    assert_eq!(ctl.read_response().status, 200);
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    if b.connections() > 1 {
        assert_ne!(reqs[0].conn, 0, "the aborted backend connection was reused");
    }
}
