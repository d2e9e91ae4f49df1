//! Tests of what may leave the engine (docs/security.md, "Rewrite back-references and
//! SSRF") and what a plain request costs:
//! request splitting through back-references, results refused rather than repaired,
//! robustness against any rule text, and a property over many hostile requests.

use std::borrow::Cow;

use super::test_req::TestReq;
use super::tests::{rules, show, CONNECTION, UPGRADE, WEBSOCKET_RULE};
use super::*;

#[test]
fn request_splitting_through_a_back_reference_is_impossible() {
    // CVE-2023-25690: GET /here/1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/SMUGGLED
    let path = "/here/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /SMUGGLED";
    for (rule, want) in [
        // `.` matches the newline, as in Apache (RegexDefaultOptions DOTALL).
        (
            "\"^/here/(.*)\" \"http://example.com:8080/elsewhere?$1\" [P]",
            "proxy[0] http://example.com:8080/elsewhere?1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED",
        ),
        (
            "^/here/([^?]*)$ http://example.com:8080/elsewhere?$1 [P]",
            "proxy[0] http://example.com:8080/elsewhere?1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED",
        ),
        ("^/here/(.*) /elsewhere/$1", "rewrite[0] /elsewhere/1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED"),
        (
            "^/here/(.*) /elsewhere?q=$1 [B]",
            "rewrite[0] /elsewhere?q=1+HTTP%2F1%2E1%0D%0AHost%3A+x%0D%0A%0D%0AGET+%2FSMUGGLED",
        ),
        // NE on a redirect turns escaping off; the wire check still refuses.
        ("^/here/(.*) /elsewhere/$1 [R,NE]", "refused[0]"),
    ] {
        let got = show(rules(&[(&[], rule)]).evaluate(&TestReq::get(path, "")));
        assert!(!got.split_once(' ').map_or("", |(_, r)| r).contains([' ', '\r', '\n']), "rule {rule:?}: {got:?}");
        assert_eq!(got, want, "rule {rule:?}");
    }
}

#[test]
fn results_that_cannot_travel_are_refused() {
    for (rule, req, want) in [
        ("^/a b", TestReq::get("/a", ""), "refused[0]"), // not a path (Apache: 400)
        (".* wss:/localhost:3000%{REQUEST_URI} [P]", TestReq::get("/a", ""), "refused[0]"), // one slash
        (".* ftp://h%{REQUEST_URI} [P]", TestReq::get("/a", ""), "refused[0]"),
        (".* http://%{HTTP_HOST}/x [P]", TestReq::get("/a", "").with("Host", "evil@x"), "refused[0]"),
        (".* http://%{HTTP:X-To}/x [P]", TestReq::get("/a", ""), "refused[0]"), // empty host
        ("^/(.*) /x/$1$1$1$1$1$1$1$1$1$1$1$1", TestReq::get(&format!("/{}", "a".repeat(2000)), ""), "refused[0]"),
        // Absolute URLs without P or R redirect, unless they name this server.
        ("^/old http://other.example/new", TestReq::get("/old", ""), "redirect[0] 302 http://other.example/new"),
        ("^/old https://ws.example.com/new", TestReq::get("/old", "q"), "rewrite[0] /new?q"),
        ("^/old https://WS.example.com:443", TestReq::get("/old", ""), "rewrite[0] /"),
        ("^/old http://ws.example.com/new", TestReq::get("/old", ""), "redirect[0] 302 http://ws.example.com/new"),
    ] {
        assert_eq!(show(rules(&[(&[], rule)]).evaluate(&req)), want, "rule {rule:?}");
    }
}

/// Forwards everything but `path()`, which the WebSocket rule set must not need on a plain
/// request: the proxy decodes the path lazily and that would allocate.
struct PathIsExpensive(TestReq);

impl RequestVars for PathIsExpensive {
    fn method(&self) -> &str {
        self.0.method()
    }
    fn path(&self) -> &str {
        panic!("path() asked for although no rule needs it")
    }
    fn query(&self) -> &str {
        self.0.query()
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.header(name)
    }
    fn request_line(&self) -> &str {
        self.0.request_line()
    }
    fn remote_addr(&self) -> &str {
        self.0.remote_addr()
    }
    fn server_name(&self) -> &str {
        self.0.server_name()
    }
    fn server_port(&self) -> u16 {
        self.0.server_port()
    }
    fn https(&self) -> bool {
        self.0.https()
    }
}

#[test]
fn a_plain_request_does_not_ask_for_the_decoded_path() {
    let r = rules(&[(&[UPGRADE, CONNECTION], WEBSOCKET_RULE)]);
    for req in [TestReq::get("/x", "q"), TestReq::get("/x", "").with("Upgrade", "websocket")] {
        assert_eq!(r.evaluate(&PathIsExpensive(req)), Decision::Pass);
    }
}

#[test]
fn no_input_makes_loading_or_linting_panic() {
    // Every prefix of some awkward strings, as a condition and as a rule.
    let seeds = [
        "%{HTTP:Upgrade} \"websocket\" '[NC,OR]'",
        "expr \"'%{HTTP_HOST}' -strmatch '*.é[!a-'\"",
        "é -aé [E=é:%{ENV:é}]",
        "^/(é)\\ x ${m:k|%{REQUEST_URI}} [R=3é,S=é,B=é,BNE=]",
        "!-d \\ [\"] ${ %{ $1 %9 \\",
        ".* wss:/h%{REQUEST_URI}?%1&$9 [P,QSA,NE,E=!X]",
    ];
    for seed in seeds {
        for (i, _) in seed.char_indices().chain([(seed.len(), ' ')]) {
            let s = &seed[..i];
            let conds = vec![s.to_string()];
            let sources = [RuleSource { conds: &conds, rule: s }];
            let _ = Rules::parse(&sources);
            let _ = lints(&sources);
        }
    }
}

#[test]
fn whatever_the_request_no_decision_carries_a_byte_that_may_not_travel() {
    let r = rules(&[
        (
            &["%{HTTP:X-Mode} =proxy"],
            "^/(.*)$ http://backend/$1?h=%{HTTP:X-Data}&q=%{QUERY_STRING}&t=%{THE_REQUEST} [P,QSA]",
        ),
        (&["%{HTTP:X-Mode} =redirect", "%{HTTP:X-Data} (.*)"], "^/(.*) /r/$1/%1?%{ENV:none} [R=301]"),
        (&["%{HTTP:X-Mode} =b"], "^/(.*) /b/$1?x=$1 [B,L]"),
        (&[], "^/(.*)$ /in/$1?%{HTTP:X-Data}"),
    ]);
    let paths = ["/", "/a b", "/a\r\nX: y", "/é/\u{7f}", "/a?b#c%d", "/%00\0", "//evil"];
    let data = ["", "v", "a b\tc", "é", "x#y?z%", "\u{1}"];
    let mut seen = [0usize; 3]; // proxied, rewritten, redirected: the loop must test something
    for mode in ["proxy", "redirect", "b", "none"] {
        for path in paths {
            for d in data {
                let req = TestReq::get(path, "q=%20&r").with("X-Mode", mode).with("X-Data", d);
                let text = match r.evaluate(&req) {
                    Decision::Proxy { target, .. } => (target.to_string(), 0),
                    Decision::Rewritten { path_and_query, .. } => (path_and_query, 1),
                    Decision::Redirect { location, .. } => (location, 2),
                    Decision::Refused { .. } | Decision::Pass => continue,
                    other => panic!("{other:?}"),
                };
                let (text, kind) = text;
                seen[kind] += 1;
                assert!(text.bytes().all(crate::target::is_target_byte), "{mode} {path:?} {d:?} → {text:?}");
                assert!(!text.starts_with("//"), "{mode} {path:?} {d:?} → {text:?}");
            }
        }
    }
    assert!(seen.iter().all(|&n| n >= 20), "{seen:?}");
}
