//! Tests of `lint.rs`: one line per mistake, plus the WebSocket rule set (the README's
//! first example), which must raise none.

use super::*;

const UPGRADE: &str = "%{HTTP:Upgrade} websocket [NC]";
const CONNECTION: &str = "%{HTTP:Connection} upgrade [NC]";

fn run(entries: &[(Vec<&str>, &str)]) -> Vec<(usize, Field, String)> {
    let conds: Vec<Vec<String>> = entries.iter().map(|(c, _)| c.iter().map(|s| s.to_string()).collect()).collect();
    let sources: Vec<RuleSource<'_>> =
        entries.iter().zip(&conds).map(|((_, rule), conds)| RuleSource { conds, rule }).collect();
    lints(&sources).into_iter().map(|l| (l.entry, l.field, l.message)).collect()
}

#[test]
fn the_websocket_rule_set_is_clean() {
    let got = run(&[(vec![UPGRADE, CONNECTION], ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]")]);
    assert_eq!(got, vec![]);
}

#[test]
fn flags_each_mistake() {
    for (entries, want_entry, want_field, needle) in [
        // `${…}` in a test string, even in an entry that does not load.
        (
            vec![(vec!["${HTTP:Upgrade} websocket [NC]", CONNECTION], ".* wss://h%{REQUEST_URI} [P,L]")],
            0,
            Field::Cond(0),
            "write %{HTTP:Upgrade}",
        ),
        (
            vec![(vec!["${HTTP:Upgrade} websocket [NC,BOGUS]", CONNECTION], ".* wss://h%{REQUEST_URI} [P,L]")],
            0,
            Field::Cond(0),
            "the test string uses ${…}: ${HTTP:Upgrade} is a RewriteMap lookup",
        ),
        (vec![(vec![], ".* /x/${HTTP:Host}")], 0, Field::Rule, "write %{HTTP:Host}"),
        // One slash after the scheme.
        (
            vec![(vec![UPGRADE, CONNECTION], ".* wss:/localhost:3000%{REQUEST_URI} [P,L]")],
            0,
            Field::Rule,
            "write wss://localhost:3000%{REQUEST_URI}",
        ),
        // The request path is dropped.
        (
            vec![(vec![UPGRADE, CONNECTION], ".* wss://localhost:3000/ [P,L]")],
            0,
            Field::Rule,
            "every request is proxied to /",
        ),
        (
            vec![(vec![UPGRADE, CONNECTION], ".* wss:/localhost:3000/ [P,L]")],
            0,
            Field::Rule,
            "does not carry the request path: every request is proxied to / (write wss://localhost:3000%{REQUEST_URI})",
        ),
        (
            vec![(vec![UPGRADE, CONNECTION], ".* \"wss://localhost:3000\" [P,L]")],
            0,
            Field::Rule,
            "write wss://localhost:3000%{REQUEST_URI}",
        ),
        (vec![(vec![], "^/api balancer://cluster/ [P]")], 0, Field::Rule, "does not carry the request path"),
        // A WebSocket backend without both conditions.
        (vec![(vec![UPGRADE], ".* wss://h%{REQUEST_URI} [P,L]")], 0, Field::Rule, "plain requests go there too"),
        (vec![(vec![], "^/ws(.*) ws://h/ws$1 [P]")], 0, Field::Rule, "plain requests go there too"),
        // A rule after a catch-all that stops.
        (
            vec![(vec![], ".* https://h%{REQUEST_URI} [P]"), (vec![], "^/x /y")],
            1,
            Field::Rule,
            "never runs: rewrite[0]",
        ),
        (vec![(vec![], "^ /maintenance.html [L]"), (vec![], "^/x /y")], 1, Field::Rule, "never runs"),
        (vec![(vec![], "^/(.*) - [F]"), (vec![], "^/x /y")], 1, Field::Rule, "never runs"),
        // SSRF: the backend comes from the request.
        (
            vec![(vec![], ".* http://%{HTTP_HOST}%{REQUEST_URI} [P]")],
            0,
            Field::Rule,
            "%{HTTP_HOST} in the scheme, host or port",
        ),
        (vec![(vec![], "^/p/([^/]+)/(.*) http://$1/$2 [P]")], 0, Field::Rule, "$1 in the scheme, host or port"),
        (vec![(vec![], ".* http://backend:%1/x [P]")], 0, Field::Rule, "SSRF"),
        (vec![(vec![], ".* %{ENV:to}/x [P]")], 0, Field::Rule, "SSRF"),
        // Apache quirks worth a word.
        (
            vec![(vec![UPGRADE, "%{HTTP:Connection} upgrade [NC,OR]"], ".* /x")],
            0,
            Field::Cond(1),
            "[OR] on the last condition",
        ),
        (vec![(vec![], "^/(a) /x/$2")], 0, Field::Rule, "$2 is always empty: the pattern has 1 group"),
        (vec![(vec![], "^/a /b%20c")], 0, Field::Rule, r"write \%20"),
        (vec![(vec![], "!^/(a) /x/$1")], 0, Field::Rule, "negated pattern"),
    ] {
        let got = run(&entries);
        let hit = got.iter().any(|(e, f, m)| *e == want_entry && *f == want_field && m.contains(needle));
        assert!(hit, "entries {entries:?}: wanted {want_entry} {want_field} {needle:?}, got {got:?}");
    }
}

#[test]
fn no_false_alarms() {
    for entries in [
        vec![(vec![], "^/api/(.*) http://backend:8080/v1/$1 [P]")],
        vec![(vec![], "^/chat wss://h/socket [P]")], // a literal path is a choice; ws lint aside
        vec![(vec![], "^/x /y [L]"), (vec![], "^/z /w")], // not a catch-all
        vec![(vec!["%{HTTPS} off"], ".* https://h%{REQUEST_URI} [R=301,L]"), (vec![], "^/x /y")], // has a condition
        vec![(vec![], "^/a(.*) /b [C]"), (vec![], ".* - [L]"), (vec![], "^/x /y")], // the chain may skip it
        vec![(vec![], r"^/a /b\$1")],
        vec![(vec![], r"^/a /b\%20c")],
    ] {
        let got: Vec<_> = run(&entries).into_iter().filter(|(_, _, m)| !m.contains("WebSocket")).collect();
        assert_eq!(got, vec![], "entries {entries:?}");
    }
}
