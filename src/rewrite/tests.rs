//! Evaluation tests of the whole engine: the SPEC §1 rule set, each flag, back-references,
//! query-string handling, and the SECURITY §1.4 injection cases.

use super::test_req::TestReq;
use super::*;

const UPGRADE: &str = "%{HTTP:Upgrade} websocket [NC]";
const CONNECTION: &str = "%{HTTP:Connection} upgrade [NC]";
const SPEC_RULE: &str = ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]";

/// Loads `(conds, rule)` entries, panicking with the errors.
fn rules(entries: &[(&[&str], &str)]) -> Rules {
    let conds: Vec<Vec<String>> = entries.iter().map(|(c, _)| c.iter().map(|s| s.to_string()).collect()).collect();
    let sources: Vec<RuleSource<'_>> =
        entries.iter().zip(&conds).map(|((_, rule), conds)| RuleSource { conds, rule }).collect();
    Rules::parse(&sources).unwrap_or_else(|e| panic!("{entries:?}: {e:?}"))
}

/// A decision as one comparable line.
fn show(d: Decision) -> String {
    match d {
        Decision::Pass => "pass".into(),
        Decision::Rewritten { path_and_query, rule } => format!("rewrite[{rule}] {path_and_query}"),
        Decision::Proxy { target, rule } => format!("proxy[{rule}] {target}"),
        Decision::Redirect { status, location, rule } => format!("redirect[{rule}] {status} {location}"),
        Decision::Forbidden { rule } => format!("forbidden[{rule}]"),
        Decision::Gone { rule } => format!("gone[{rule}]"),
        Decision::Refused { rule, .. } => format!("refused[{rule}]"),
    }
}

#[test]
fn spec_rule_set() {
    let r = rules(&[(&[UPGRADE, CONNECTION], SPEC_RULE)]);
    for (req, want) in [
        (TestReq::get("/chat", "x=1"), "pass"),
        (TestReq::get("/chat/room/42", "token=abc").upgrade(), "proxy[0] wss://localhost:3000/chat/room/42?token=abc"),
        (TestReq::get("/", "").upgrade(), "proxy[0] wss://localhost:3000/"),
        (
            TestReq::get("/c", "").with("Upgrade", "WebSocket").with("Connection", "Upgrade"),
            "proxy[0] wss://localhost:3000/c",
        ),
        (TestReq::get("/c", "").with("Upgrade", "websocket"), "pass"),
        (TestReq::get("/c", "").with("Connection", "keep-alive, Upgrade"), "pass"),
        (TestReq::get("/c", "").with("Upgrade", "h2c").with("Connection", "Upgrade"), "pass"),
        // Unanchored regexes, as in Apache (SECURITY R4): the token check is the proxy's.
        (
            TestReq::get("/c", "").with("Upgrade", "notwebsocket").with("Connection", "Upgrade"),
            "proxy[0] wss://localhost:3000/c",
        ),
        // CVE-2023-25690: the decoded path carries CR LF; it must travel encoded.
        (
            TestReq::get("/a\r\nX-Injected: 1\r\n", "").upgrade(),
            "proxy[0] wss://localhost:3000/a%0D%0AX-Injected:%201%0D%0A",
        ),
        // CVE-2024-38474: %3F decoded to ? stays %3F; the real query follows.
        (TestReq::get("/a?b", "c=d").upgrade(), "proxy[0] wss://localhost:3000/a%3Fb?c=d"),
        (TestReq::get("/100%/é", "").upgrade(), "proxy[0] wss://localhost:3000/100%25/%C3%A9"),
    ] {
        let desc = format!("{} ?{} {:?}", req.path.escape_debug(), req.query, req.headers);
        assert_eq!(show(r.evaluate(&req)), want, "request {desc}");
    }
}

#[test]
fn request_splitting_through_a_back_reference_is_impossible() {
    // SECURITY §1.4: GET /here/1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/SMUGGLED
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
fn each_flag() {
    let get = |path: &str, query: &str| TestReq::get(path, query);
    for (entries, req, want) in [
        // L / END stop; without them later rules see the rewritten path.
        (vec![(&[][..], "^/a /b [L]"), (&[], "^/b /c")], get("/a", ""), "rewrite[0] /b"),
        (vec![(&[][..], "^/a /b [END]"), (&[], "^/b /c")], get("/a", ""), "rewrite[0] /b"),
        (vec![(&[][..], "^/a /b"), (&[], "^/b /c")], get("/a", ""), "rewrite[1] /c"),
        (vec![(&[][..], "^/a /b [last]"), (&[], "^/b /c")], get("/a", ""), "rewrite[0] /b"),
        // F, G.
        (vec![(&[][..], "^/secret - [F]")], get("/secret/x", ""), "forbidden[0]"),
        (vec![(&[][..], "^/old - [G]"), (&[], ".* /never")], get("/old", ""), "gone[0]"),
        (vec![(&[][..], "^/secret - [forbidden,L]")], get("/public", ""), "pass"),
        // R: default 302, codes, this server's name and port, query kept.
        (vec![(&[][..], "^/old/(.*) /new/$1 [R]")], get("/old/x", "q=1"), "redirect[0] 302 /new/x?q=1"),
        (vec![(&[][..], "^/old /new [R=301,L]")], get("/old", ""), "redirect[0] 301 /new"),
        (vec![(&[][..], "^/old /new [redirect=permanent]")], get("/old", ""), "redirect[0] 301 /new"),
        (
            vec![(&[][..], "^/old https://other.example/new [R=308]")],
            get("/old", ""),
            "redirect[0] 308 https://other.example/new",
        ),
        (vec![(&[][..], "^/old /new?a=1 [R,QSA]")], get("/old", "b=2"), "redirect[0] 302 /new?a=1&b=2"),
        (vec![(&[][..], "^/old - [R]")], get("/old", ""), "pass"), // Apache ignores R with -
        (vec![(&[][..], "^/old - [R]"), (&[], "^/old /next [R,L]")], get("/old", ""), "redirect[1] 302 /next"),
        // Literal text is wire form: Apache would send %2520 here (without NE).
        (vec![(&[][..], r"^/lit /a\%20b [R]")], get("/lit", ""), "redirect[0] 302 /a%20b"),
        // NE: a fragment for a redirect (Apache's example); without NE # is encoded.
        (vec![(&[][..], "^/anchor/(.+) /page#$1 [R,NE]")], get("/anchor/sec", ""), "redirect[0] 302 /page#sec"),
        (vec![(&[][..], "^/anchor/(.+) /page#$1 [R]")], get("/anchor/sec", ""), "redirect[0] 302 /page%23sec"),
        (vec![(&[][..], "^/anchor/(.+) /page#$1 [R,NE]")], get("/anchor/sec", "q=1"), "redirect[0] 302 /page?q=1#sec"),
        // QSA, QSD, a trailing ?, and no ? at all.
        (vec![(&[][..], "^/x /y?a=1 [QSA]")], get("/x", "b=2"), "rewrite[0] /y?a=1&b=2"),
        (vec![(&[][..], "^/x /y?a=1 [qsappend]")], get("/x", ""), "rewrite[0] /y?a=1"),
        (vec![(&[][..], "^/x /y?a=1")], get("/x", "b=2"), "rewrite[0] /y?a=1"),
        (vec![(&[][..], "^/x /y [QSD]")], get("/x", "b=2"), "rewrite[0] /y"),
        (vec![(&[][..], "^/x /y?a=1 [QSA,QSD]")], get("/x", "b=2"), "rewrite[0] /y?a=1"),
        (vec![(&[][..], "^/x /y?")], get("/x", "b=2"), "rewrite[0] /y"),
        (vec![(&[][..], "^/x /y")], get("/x", "b=2"), "rewrite[0] /y?b=2"),
        (vec![(&[][..], "^/x /y?a=1&")], get("/x", ""), "rewrite[0] /y?a=1"),
        // P: the query is appended unless the substitution has its own ? (then QSA).
        (
            vec![(&[][..], "^/api/(.*) http://backend:8080/v1/$1 [P]")],
            get("/api/items", "q=1"),
            "proxy[0] http://backend:8080/v1/items?q=1",
        ),
        (
            vec![(&[][..], "^/api/(.*) http://backend/v1?path=$1 [P]")],
            get("/api/items", "q=1"),
            "proxy[0] http://backend/v1?path=items",
        ),
        (
            vec![(&[][..], "^/api/(.*) http://backend/v1?path=$1 [P,QSA]")],
            get("/api/items", "q=1"),
            "proxy[0] http://backend/v1?path=items&q=1",
        ),
        (
            vec![(&[][..], "^/api/(.*) http://backend/$1 [P,QSD]")],
            get("/api/items", "q=1"),
            "proxy[0] http://backend/items",
        ),
        (
            vec![(&[][..], "^/(.*) balancer://backend-cluster/$1 [proxy]")],
            get("/x", ""),
            "proxy[0] balancer://backend-cluster/x",
        ),
        (vec![(&[][..], "^/a /b [P]".replace("/b", "https://h/b").as_str())], get("/a", ""), "proxy[0] https://h/b"),
        // B escapes back-references fully (Apache's escape_backref).
        (vec![(&[][..], "^/search/(.*) /find?q=$1 [B]")], get("/search/a b&c/d", ""), "rewrite[0] /find?q=a+b%26c%2Fd"),
        (vec![(&[][..], "^/search/(.*) /find?q=$1 [B,BNP]")], get("/search/a b", ""), "rewrite[0] /find?q=a%20b"),
        (vec![(&[][..], "^/search/(.*) /find?q=$1")], get("/search/a b&c", ""), "rewrite[0] /find?q=a%20b&c"),
        // NC on the pattern.
        (vec![(&[][..], "^/API/(.*) /v2/$1 [NC]")], get("/api/x", ""), "rewrite[0] /v2/x"),
        (vec![(&[][..], "^/API/(.*) /v2/$1")], get("/api/x", ""), "pass"),
        // C: a failing rule skips the rules chained to it.
        (vec![(&[][..], "^/a /a2 [C]"), (&[], ".* /chained"), (&[], "^/z /z2")], get("/z", ""), "rewrite[2] /z2"),
        (vec![(&[][..], "^/a /a2 [C]"), (&[], ".* /chained"), (&[], "^/z /z2")], get("/a", ""), "rewrite[1] /chained"),
        (
            vec![(&[][..], "^/a /a2 [chain]"), (&[], "^/a2 /b [C]"), (&[], ".* /c"), (&[], ".* /d [L]")],
            get("/q", ""),
            "rewrite[3] /d",
        ),
        // S=N skips after a rule applies.
        (vec![(&[][..], "^/a - [S=1]"), (&[], ".* /skipped"), (&[], "^/a /after")], get("/a", ""), "rewrite[2] /after"),
        (
            vec![(&[][..], "^/a - [skip=1]"), (&[], ".* /skipped"), (&[], "^/a /after")],
            get("/b", ""),
            "rewrite[1] /skipped",
        ),
        (vec![(&[][..], "^/a - [S=5]"), (&[], ".* /skipped")], get("/a", ""), "pass"),
        // E= sets what %{ENV:…} reads in later rules; E=! unsets.
        (
            vec![(&[][..], "^/(a) - [E=FOO:x-$1]"), (&["%{ENV:foo} =x-a"], ".* /env-ok")],
            get("/a", ""),
            "rewrite[1] /env-ok",
        ),
        (
            vec![(&[][..], "^/(a) - [E=FOO:x-$1]"), (&[], ".* - [env=!FOO]"), (&["%{ENV:FOO} =x-a"], ".* /env-ok")],
            get("/a", ""),
            "pass",
        ),
        (vec![(&[][..], "^/(a) /e-%{ENV:FOO} [E=FOO:set]")], get("/a", ""), "rewrite[0] /e-"), // not visible in its own substitution
        // `-`, negated patterns.
        (vec![(&[][..], ".* -")], get("/x", "q"), "pass"),
        (vec![(&[][..], "!^/static /app")], get("/x", ""), "rewrite[0] /app"),
        (vec![(&[][..], "!^/static /app")], get("/static/a", ""), "pass"),
        (vec![(&[][..], "!^/(static) /app/$1")], get("/x", ""), "rewrite[0] /app/"), // no groups when negated
    ] {
        let r = rules(&entries);
        assert_eq!(show(r.evaluate(&req)), want, "rules {entries:?} on {} ?{}", req.path, req.query);
    }
}

#[test]
fn conditions_and_back_references() {
    let host = |h: &str| TestReq::get("/chat", "").with("Host", h);
    for (conds, rule, req, want) in [
        // %N from the last matching condition, $N from the rule.
        (
            vec![r"%{HTTP_HOST} ^([^.]+)\.example\.com$"],
            "^/(.*) /%1/$1",
            TestReq::get("/chat", ""),
            "rewrite[0] /ws/chat",
        ),
        (
            vec![r"%{HTTP_HOST} ^([^.]+)\.", "%{REQUEST_METHOD} ^(G)ET"],
            "^/(.*) /%1",
            TestReq::get("/x", ""),
            "rewrite[0] /G",
        ),
        (
            vec![r"%{HTTP_HOST} ^([^.]+)\.", "%{REQUEST_METHOD} !^(P)OST"],
            "^/(.*) /%1",
            TestReq::get("/x", ""),
            "rewrite[0] /ws",
        ),
        (vec!["$1 ^admin$"], "^/([^/]+) - [F]", TestReq::get("/admin", ""), "forbidden[0]"),
        (vec!["$1 ^admin$"], "^/([^/]+) - [F]", TestReq::get("/public", ""), "pass"),
        (vec!["%{REQUEST_URI} ^/chat"], ".* /c", TestReq::get("/chat", ""), "rewrite[0] /c"),
        // OR joins a condition with the next; a failing OR on the last one is skipped.
        (vec!["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1"], ".* /or", host("h").with("X-B", "1"), "rewrite[0] /or"),
        (vec!["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1"], ".* /or", host("h").with("X-A", "1"), "rewrite[0] /or"),
        (vec!["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1"], ".* /or", host("h"), "pass"),
        (vec!["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1", "%{HTTP:X-C} =1"], ".* /or", host("h").with("X-A", "1"), "pass"),
        (vec!["%{HTTP:X-A} =1", "%{HTTP:X-B} =1 [OR]"], ".* /or", host("h").with("X-A", "1"), "rewrite[0] /or"),
        // %{HTTPS}, %{SERVER_PORT}: the usual http → https redirect.
        (
            vec!["%{HTTPS} off"],
            ".* https://%{SERVER_NAME}%{REQUEST_URI} [R=301,L]",
            TestReq { https: false, server_port: 80, ..TestReq::get("/x", "a=1") },
            "redirect[0] 301 https://ws.example.com/x?a=1",
        ),
        (vec!["%{HTTPS} off"], ".* https://%{SERVER_NAME}%{REQUEST_URI} [R=301,L]", TestReq::get("/x", ""), "pass"),
    ] {
        let r = rules(&[(&conds, rule)]);
        assert_eq!(show(r.evaluate(&req)), want, "conds {conds:?} rule {rule:?}");
    }
}

#[test]
fn later_rules_see_the_rewrite_but_request_uri_stays() {
    for (entries, req, want) in [
        (vec![(&[][..], "^/a /b?x=1"), (&[], "^/b /c%{REQUEST_URI}")], TestReq::get("/a", ""), "rewrite[1] /c/a?x=1"),
        (
            vec![(&[][..], "^/a /b?x=1"), (&[], "^/b /c?from=%{QUERY_STRING}")],
            TestReq::get("/a", "y=2"),
            "rewrite[1] /c?from=x=1",
        ),
        (
            vec![(&[][..], r"^/a /b\%20c"), (&["%{REQUEST_FILENAME} \"=/b c\""], ".* /d")],
            TestReq::get("/a", ""),
            "rewrite[1] /d",
        ),
        // Apache reads %20 in a substitution as %2 (a condition back-reference) then 0.
        (vec![(&[][..], "^/a /b%20c")], TestReq::get("/a", ""), "rewrite[0] /b0c"),
        (vec![(&[][..], "^/a /b"), (&[], "^/b https://h/x [P]")], TestReq::get("/a", "q"), "proxy[1] https://h/x?q"),
    ] {
        assert_eq!(show(rules(&entries).evaluate(&req)), want, "rules {entries:?}");
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

#[test]
fn parse_collects_every_error_with_entry_field_and_column() {
    let conds = vec!["%{HTTP:Upgrade} websocket [NC,BOGUS]".to_string(), "%{NOPE} x".to_string()];
    let none: Vec<String> = vec![];
    let sources = [
        RuleSource { conds: &conds, rule: ".* wss://h%{REQUEST_URI} [P,L]" },
        RuleSource { conds: &none, rule: "(x /y [Q]" },
        RuleSource { conds: &none, rule: "^/ok /fine" },
    ];
    let errors = Rules::parse(&sources).expect_err("bad rules");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("rewrite[0].cond[0]: column 31: unknown condition flag \"BOGUS\""), "{got:#?}");
    assert!(got[1].starts_with("rewrite[0].cond[1]: column 1: unknown variable %{NOPE}"), "{got:#?}");
    assert!(
        got[2].starts_with("rewrite[1].rule: column 1: invalid regular expression \"(x\": unclosed group"),
        "{got:#?}"
    );
    assert!(got[3].starts_with("rewrite[1].rule: column 8: unknown flag \"Q\""), "{got:#?}");
    assert_eq!((errors[0].entry, errors[0].field, errors[0].column), (0, Field::Cond(0), 31));
}

#[test]
fn no_rules_pass_everything() {
    let r = Rules::parse(&[]).expect("empty");
    assert!(r.is_empty());
    assert_eq!(r.evaluate(&TestReq::get("/x", "")), Decision::Pass);
    assert_eq!(Rules::default().evaluate(&TestReq::get("/x", "")), Decision::Pass);
}

/// Forwards everything but `path()`, which the SPEC §1 rules must not need on a plain
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
    let r = rules(&[(&[UPGRADE, CONNECTION], SPEC_RULE)]);
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
