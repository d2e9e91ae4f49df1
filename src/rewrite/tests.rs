//! Evaluation tests of the whole engine: the WebSocket rule set (two `RewriteCond`s on
//! `Upgrade`/`Connection`, then `.* wss://…%{REQUEST_URI} [P,L]`, with the CR LF and
//! `%3F` cases of docs/security.md, CVE-2023-25690 and CVE-2024-38474), each flag,
//! back-references, query-string handling, load errors. What may leave the engine is
//! tested in `wire_tests.rs`.

use super::test_req::TestReq;
use super::*;

pub(super) const UPGRADE: &str = "%{HTTP:Upgrade} websocket [NC]";
pub(super) const CONNECTION: &str = "%{HTTP:Connection} upgrade [NC]";
pub(super) const WEBSOCKET_RULE: &str = ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]";

/// Loads `(conds, rule)` entries, panicking with the errors.
pub(super) fn rules(entries: &[(&[&str], &str)]) -> Rules {
    let conds: Vec<Vec<String>> = entries.iter().map(|(c, _)| c.iter().map(|s| s.to_string()).collect()).collect();
    let sources: Vec<RuleSource<'_>> =
        entries.iter().zip(&conds).map(|((_, rule), conds)| RuleSource { conds, rule }).collect();
    Rules::parse(&sources).unwrap_or_else(|e| panic!("{entries:?}: {e:?}"))
}

/// A decision as one comparable line.
pub(super) fn show(d: Decision) -> String {
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
fn websocket_rule_set() {
    let r = rules(&[(&[UPGRADE, CONNECTION], WEBSOCKET_RULE)]);
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
        // Unanchored regexes, as in Apache (docs/security.md, R4): the token check is the proxy's.
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
    assert_eq!(r.evaluate(&TestReq::get("/x", "")), Decision::Pass);
    assert_eq!(Rules::default().evaluate(&TestReq::get("/x", "")), Decision::Pass);
}

#[test]
fn which_rule_sets_may_proxy_over_tls() {
    for (rule, want) in [
        (WEBSOCKET_RULE, true),
        (".* https://app/ [P]", true),
        (".* HTTPS://app/ [P]", true),
        (".* ws://localhost:3000%{REQUEST_URI} [P,L]", false),
        (".* HTTP://app/$0 [P]", false),
        // A balancer's members are checked on their own.
        (".* balancer://pool%{REQUEST_URI} [P,L]", false),
        // The scheme comes from the request or the match: it could be https.
        ("^/(.*) %{ENV:BACKEND}/$1 [P]", true),
        ("^/(\\w+)/(.*) $1://app/$2 [P]", true),
        // Not proxied: no backend at all.
        (".* https://elsewhere/ [R=302]", false),
        ("^/old /new [PT]", false),
        (".* - [F]", false),
    ] {
        assert_eq!(rules(&[(&[], rule)]).may_proxy_over_tls(), want, "{rule}");
    }
    assert!(!Rules::default().may_proxy_over_tls());
    assert!(rules(&[(&[], ".* http://a/ [P]"), (&[], ".* wss://b/ [P]")]).may_proxy_over_tls());
}
