//! Table tests of the rule engine: each flag, back-references, Apache's condition
//! semantics, and the injection cases of SECURITY §1.4.

use std::borrow::Cow;

use super::*;

/// A request for the tests: decoded path, raw query, headers.
struct Req {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

impl Req {
    fn get(path: &'static str) -> Self {
        Req { method: "GET", path, query: "", headers: vec![("Host", "front.example")] }
    }
    fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn host(mut self, host: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != "Host");
        self.with("Host", host)
    }
    fn query(mut self, q: &'static str) -> Self {
        self.query = q;
        self
    }
    fn websocket(self) -> Self {
        self.with("Upgrade", "websocket").with("Connection", "Upgrade")
    }
}

impl RequestVars for Req {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn query(&self) -> &str {
        self.query
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let values: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect();
        match values.as_slice() {
            [] => None,
            [one] => Some(Cow::Borrowed(one)),
            many => Some(Cow::Owned(many.join(", "))),
        }
    }
    fn request_line(&self) -> &str {
        "GET / HTTP/1.1"
    }
    fn remote_addr(&self) -> &str {
        "10.0.0.7"
    }
    fn server_name(&self) -> &str {
        "front.example"
    }
    fn server_port(&self) -> u16 {
        443
    }
    fn https(&self) -> bool {
        true
    }
}

fn rules(entries: &[(&[&str], &str)]) -> Rules {
    let owned: Vec<(Vec<String>, String)> =
        entries.iter().map(|(c, r)| (c.iter().map(|s| s.to_string()).collect(), r.to_string())).collect();
    let sources: Vec<RuleSource<'_>> = owned.iter().map(|(c, r)| RuleSource { conds: c, rule: r }).collect();
    Rules::parse(&sources).unwrap_or_else(|e| panic!("rules do not parse: {e:?}"))
}

/// What a decision says, compactly.
fn show(d: Decision) -> String {
    match d {
        Decision::Pass => "pass".into(),
        Decision::Rewritten { path_and_query, .. } => format!("rewrite {path_and_query}"),
        Decision::Proxy { target, .. } => format!("proxy {target}"),
        Decision::Redirect { status, location, .. } => format!("redirect {status} {location}"),
        Decision::Forbidden { .. } => "403".into(),
        Decision::Gone { .. } => "410".into(),
        Decision::Refused { .. } => "refused".into(),
    }
}

const SPEC_RULE: (&[&str], &str) = (
    &["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"],
    ".* wss://localhost:3000%{REQUEST_URI} [P,L]",
);

#[test]
fn spec_rule_routes_upgrades_only() {
    let r = rules(&[SPEC_RULE]);
    for (req, want) in [
        (Req::get("/chat").websocket(), "proxy wss://localhost:3000/chat"),
        (Req::get("/chat").websocket().query("room=1"), "proxy wss://localhost:3000/chat?room=1"),
        (
            Req::get("/chat").with("Upgrade", "WebSocket").with("Connection", "keep-alive, Upgrade"),
            "proxy wss://localhost:3000/chat",
        ), // Firefox
        (
            Req::get("/chat")
                .with("Upgrade", "websocket")
                .with("Connection", "keep-alive")
                .with("Connection", "Upgrade"),
            "proxy wss://localhost:3000/chat",
        ),
        (Req::get("/chat"), "pass"),
        (Req::get("/chat").with("Upgrade", "websocket"), "pass"),
        (Req::get("/chat").with("Connection", "upgrade"), "pass"),
        (Req::get("/chat").with("Upgrade", "h2c").with("Connection", "Upgrade"), "pass"),
    ] {
        let label = format!("{:?}", req.headers);
        assert_eq!(show(r.evaluate(&req)), want, "{label}");
    }
}

#[test]
fn rule_flags() {
    for (entries, req, want) in [
        (vec![(&[][..], "^/old/(.*)$ /new/$1 [R=301,L]")], Req::get("/old/a"), "redirect 301 /new/a"),
        (vec![(&[][..], "^/old /new [R]")], Req::get("/old"), "redirect 302 /new"),
        (vec![(&[][..], "^/secret - [F]")], Req::get("/secret/x"), "403"),
        (vec![(&[][..], "^/gone - [G]")], Req::get("/gone"), "410"),
        (vec![(&[][..], "^/API/(.*) http://b:1/$1 [P,NC]")], Req::get("/api/x"), "proxy http://b:1/x"),
        (vec![(&[][..], "^/a /b?x=1 [L]")], Req::get("/a").query("y=2"), "rewrite /b?x=1"),
        (vec![(&[][..], "^/a /b?x=1 [QSA,L]")], Req::get("/a").query("y=2"), "rewrite /b?x=1&y=2"),
        (vec![(&[][..], "^/a /b [QSD,L]")], Req::get("/a").query("y=2"), "rewrite /b"),
        (vec![(&[][..], "^/a /b")], Req::get("/a").query("y=2"), "rewrite /b?y=2"),
        // Without L, later rules see the rewritten path.
        (vec![(&[][..], "^/a /b"), (&[][..], "^/b /c [L]")], Req::get("/a"), "rewrite /c"),
        (vec![(&[][..], "^/a /b [L]"), (&[][..], "^/b /c [L]")], Req::get("/a"), "rewrite /b"),
        (vec![(&[][..], "^/a /b [END]"), (&[][..], "^/b /c")], Req::get("/a"), "rewrite /b"),
        // C: a failing rule skips the rest of its chain.
        (
            vec![(&[][..], "^/nope /x [C]"), (&[][..], ".* /y [L]"), (&[][..], ".* /z [L]")],
            Req::get("/a"),
            "rewrite /z",
        ),
        (vec![(&[][..], "^/a /x [C]"), (&[][..], "^/x /y [L]")], Req::get("/a"), "rewrite /y"),
        // S=N skips N rules after a match.
        (
            vec![(&[][..], "^/a - [S=1]"), (&[][..], ".* /skipped [L]"), (&[][..], ".* /taken [L]")],
            Req::get("/a"),
            "rewrite /taken",
        ),
        // E= sets a variable that a later condition reads.
        (
            vec![(&[][..], "^/a - [E=ZONE:blue]"), (&["%{ENV:ZONE} =blue"][..], ".* /blue [L]")],
            Req::get("/a"),
            "rewrite /blue",
        ),
        // `!` negates a rule pattern.
        (vec![(&[][..], "!^/static /app%{REQUEST_URI} [L]")], Req::get("/x"), "rewrite /app/x"),
        (vec![(&[][..], "!^/static /app%{REQUEST_URI} [L]")], Req::get("/static/a"), "pass"),
        // An absolute substitution without P redirects, as Apache does.
        (vec![(&[][..], "^/ext https://other.example/ [L]")], Req::get("/ext"), "redirect 302 https://other.example/"),
        (vec![(&[][..], ".* balancer://app%{REQUEST_URI} [P]")], Req::get("/x"), "proxy balancer://app/x"),
    ] {
        let r = rules(&entries);
        let path = req.path;
        assert_eq!(show(r.evaluate(&req)), want, "{entries:?} on {path}");
    }
}

#[test]
fn back_references_and_conditions() {
    for (entries, req, want) in [
        (
            vec![(&["%{HTTP_HOST} ^(\\w+)\\.example$"][..], "^/(.*) /%1/$1 [L]")],
            Req::get("/x").host("api.example"),
            "rewrite /api/x",
        ),
        // %N comes from the last matched condition.
        (
            vec![(&["%{HTTP_HOST} ^(a)", "%{REQUEST_METHOD} ^(G)ET"][..], ".* /%1 [L]")],
            Req::get("/x").host("a"),
            "rewrite /G",
        ),
        // OR: (A || B) && C.
        (
            vec![(&["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1", "%{REQUEST_METHOD} =GET"][..], ".* /or [L]")],
            Req::get("/x").with("X-B", "1"),
            "rewrite /or",
        ),
        (
            vec![(&["%{HTTP:X-A} =1 [OR]", "%{HTTP:X-B} =1", "%{REQUEST_METHOD} =GET"][..], ".* /or [L]")],
            Req::get("/x"),
            "pass",
        ),
        (vec![(&["%{HTTP:X-A} !=1"][..], ".* /not [L]")], Req::get("/x"), "rewrite /not"),
        (vec![(&["%{HTTP:X-A} -strmatch v*"][..], ".* /glob [L]")], Req::get("/x").with("X-A", "v12"), "rewrite /glob"),
        (vec![(&["%{HTTPS} =on", "%{SERVER_PORT} -eq443"][..], ".* /tls [L]")], Req::get("/x"), "rewrite /tls"),
        // `${…}` is literal text in Apache: it never matches.
        (vec![(&["${HTTP:Upgrade} websocket [NC]"][..], ".* /ws [L]")], Req::get("/x").websocket(), "pass"),
    ] {
        let r = rules(&entries);
        assert_eq!(show(r.evaluate(&req)), want, "{entries:?}");
    }
}

#[test]
fn injection_is_escaped_or_refused() {
    for (entries, path, want) in [
        // CVE-2023-25690: the decoded path carries CR LF SP into the query of a P target.
        (
            vec![(&[][..], "^/here/(.*) http://example.com:8080/elsewhere?$1 [P]")],
            "/here/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /SMUGGLED",
            "proxy http://example.com:8080/elsewhere?1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED",
        ),
        (vec![SPEC_RULE], "/a\r\nX-Injected: 1\r\n", "proxy wss://localhost:3000/a%0D%0AX-Injected:%201%0D%0A"),
        // CVE-2024-38474: a decoded `?` in a back-reference stays encoded.
        (vec![(&[][..], "^/(.*) http://b:1/$1 [P]")], "/x?y", "proxy http://b:1/x%3Fy"),
        // NE turns escaping off; what would reach the wire is refused instead.
        (vec![(&[][..], "^/(.*) http://b:1/$1 [P,NE]")], "/a b", "refused"),
        (vec![(&[][..], "^/(.*) /$1 [R,NE]")], "/a\r\nSet-Cookie: x", "refused"),
        // B escapes back-references fully.
        (vec![(&[][..], "^/(.*) http://b:1/?q=$1 [P,B]")], "/a&b=c", "proxy http://b:1/?q=a%26b%3Dc"),
        // A target built from the request must still be an allowed scheme.
        (vec![(&[][..], "^/(.*) $1 [P]")], "/unix:/run/x.sock|http://a/", "refused"),
    ] {
        let r = rules(&entries);
        let req = Req {
            method: "GET",
            path,
            query: "",
            headers: vec![("Host", "a"), ("Upgrade", "websocket"), ("Connection", "Upgrade")],
        };
        assert_eq!(show(r.evaluate(&req)), want, "{entries:?} on {path:?}");
    }
}

#[test]
fn parse_errors_name_field_and_column() {
    let owned = [
        (
            vec!["%{HTTP:Upgrade} websocket [NC]".to_string(), "%{NOPE} x".to_string()],
            "(unclosed wss://h/ [P]".to_string(),
        ),
        (vec![], ".* /x [P,BOGUS]".to_string()),
        (vec!["%{HTTP:Upgrade} -f".to_string()], "^/x /y [R=200]".to_string()),
    ];
    let sources: Vec<RuleSource<'_>> = owned.iter().map(|(c, r)| RuleSource { conds: c, rule: r }).collect();
    let errors = Rules::parse(&sources).expect_err("invalid");
    let got: Vec<(usize, Field, usize)> = errors.iter().map(|e| (e.entry, e.field, e.column)).collect();
    assert_eq!(
        got,
        [
            (0, Field::Cond(1), 1),
            (0, Field::Rule, 1),
            (1, Field::Rule, 7),
            (2, Field::Cond(0), 17),
            (2, Field::Rule, 8)
        ],
        "{errors:?}"
    );
    assert!(errors[0].message.contains("unknown variable %{NOPE}"), "{}", errors[0].message);
    assert!(errors[2].message.contains("BOGUS"), "{}", errors[2].message);
}
