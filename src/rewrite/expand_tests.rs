//! Tests of `expand.rs`: template parsing and expansion.

use regex::Regex;

use super::*;
use crate::rewrite::test_req::TestReq;

fn cx<'a>(req: &'a TestReq, env: &'a [(String, String)]) -> Cx<'a> {
    Cx {
        req,
        filename: Some("/now"),
        query: req.query.as_str(),
        env,
        rule_refs: Refs::default(),
        cond_refs: Refs::default(),
    }
}

#[test]
fn expands_variables_plainly() {
    let req = TestReq::get("/chat/a b", "x=%20").upgrade().with("Connection", "second line");
    let env = vec![("BACKEND".to_string(), "b1".to_string())];
    for (template, want) in [
        ("%{REQUEST_URI}", "/chat/a b"),
        ("%{request_uri}", "/chat/a b"), // Apache upper-cases names
        ("%{HTTP:Upgrade}", "websocket"),
        ("%{HTTP:connection}", "keep-alive, Upgrade, second line"),
        ("%{HTTP:X-Absent}", ""),
        ("%{HTTP_HOST}|%{SERVER_NAME}|%{SERVER_PORT}", "ws.example.com|ws.example.com|443"),
        ("%{HTTPS} %{REQUEST_SCHEME} %{REQUEST_METHOD}", "on https GET"),
        ("%{QUERY_STRING}", "x=%20"),
        ("%{THE_REQUEST}", "GET /chat/a b?x=%20 HTTP/1.1"),
        ("%{SERVER_PROTOCOL} %{REMOTE_ADDR}", "HTTP/1.1 10.0.0.7"),
        ("%{ENV:backend}-%{ENV:unset}", "b1-"),
        ("%{REQUEST_FILENAME}", "/now"),
        (r"\%{REQUEST_URI}\$1\\", "%{REQUEST_URI}$1\\"),
        ("100% $ %x $x", "100% $ %x $x"),
        ("${HTTP:Upgrade}", ""),                            // undefined map → "" (Apache)
        ("${lower:%{HTTP_HOST}|dflt-%{HTTPS}}", "dflt-on"), // default of an undefined map
        ("${notamap}", "${notamap}"),                       // no colon: literal, as Apache
        ("", ""),
    ] {
        let t = Template::parse(template, 1).expect(template);
        let mut out = String::new();
        t.expand_plain(&cx(&req, &env), &mut out);
        assert_eq!(out, want, "template {template:?}");
        assert_eq!(t.with_expanded(&cx(&req, &env), str::to_string), want, "with_expanded {template:?}");
    }
}

#[test]
fn server_name_and_port_variants() {
    for (server_name, port, want) in [
        ("example.com:8443", 8443u16, "example.com 8443"),
        ("[::1]:80", 80, "[::1] 80"),
        ("h", 0, "h 0"),
        ("h", 65535, "h 65535"),
    ] {
        let mut req = TestReq::get("/", "");
        req.server_name = server_name.into();
        req.server_port = port;
        let t = Template::parse("%{SERVER_NAME} %{SERVER_PORT}", 1).expect("template");
        assert_eq!(t.with_expanded(&cx(&req, &[]), str::to_string), want, "server_name {server_name:?}");
    }
}

#[test]
fn rejects_bad_templates_with_columns() {
    for (template, column, needle) in [
        ("/x%{NOPE}", 3, "unknown variable %{NOPE}"),
        ("%{HTTP:}", 1, "invalid header name"),
        ("%{HTTP:a b}", 1, "invalid header name"),
        ("ab%{SSL:X}", 3, "SSL:"),
        ("/%{REQUEST_URI", 2, "unterminated %{"),
        ("/${map:key", 2, "unterminated ${"),
        ("${m:k|%{BAD}}", 7, "unknown variable %{BAD}"),
        ("é%{X}", 2, "unknown variable"), // columns count characters
    ] {
        let err = Template::parse(template, 1).expect_err(template);
        assert_eq!(err.column, column, "template {template:?}: {err:?}");
        assert!(err.message.contains(needle), "template {template:?}: {err:?}");
    }
}

#[test]
fn substitution_encodes_values_not_literals() {
    let req = TestReq::get("/a\r\nX-Injected: 1\r\n", "q=1&r=%20");
    let re = Regex::new("^/(.*)").expect("regex");
    let subject = "/1 HTTP/1.1\r\nHost: x";
    let mut locs = re.capture_locations();
    re.captures_read(&mut locs, subject);
    let b_all = BEscape::default();
    for (template, b, noescape, want, query_at) in [
        ("wss://h:3000%{REQUEST_URI}", None, false, "wss://h:3000/a%0D%0AX-Injected:%201%0D%0A", None),
        ("http://h/elsewhere?$1", None, false, "http://h/elsewhere?1%20HTTP/1.1%0D", Some(18)),
        ("/x/%{QUERY_STRING}?%{QUERY_STRING}", None, false, "/x/q=1&r=%20?q=1&r=%20", Some(12)),
        ("/x?a=$1", Some(&b_all), false, "/x?a=1+HTTP%2F1%2E1%0D", Some(2)),
        ("/x/$1", None, true, "/x/1 HTTP/1.1\r", None), // NE: the wire check refuses later
        ("/x/$1", Some(&b_all), true, "/x/1+HTTP%2F1%2E1%0D", None), // B still applies
        ("/a\\ b#frag", None, false, "/a%20b%23frag", None),
        ("/a#frag", None, true, "/a#frag", None),
        ("/p\\?q", None, false, "/p?q", Some(2)), // an escaped ? is still literal text
    ] {
        let t = Template::parse(template, 1).expect(template);
        let mut c = cx(&req, &[]);
        c.rule_refs = Refs { text: subject, locs: Some(&locs) };
        let mut out = Expanded::default();
        t.expand_target(&c, TargetMode { b, noescape }, &mut out);
        assert_eq!((out.text.as_str(), out.query_at), (want, query_at), "template {template:?}");
    }
}

#[test]
fn question_mark_from_a_backreference_never_starts_the_query() {
    // CVE-2024-38474: `%3F` decoded to `?` in the path must stay `%3F`.
    let req = TestReq::get("/here/a?b", "");
    let re = Regex::new("^/here/(.*)").expect("regex");
    let mut locs = re.capture_locations();
    re.captures_read(&mut locs, &req.path);
    let mut c = cx(&req, &[]);
    c.rule_refs = Refs { text: &req.path, locs: Some(&locs) };
    let t = Template::parse("/elsewhere/$1", 1).expect("template");
    let mut out = Expanded::default();
    t.expand_target(&c, TargetMode { b: None, noescape: false }, &mut out);
    assert_eq!((out.text.as_str(), out.query_at), ("/elsewhere/a%3Fb", None));
}
