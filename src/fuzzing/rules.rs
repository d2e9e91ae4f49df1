//! Fuzz entry point for the rewrite engine: `cond` / `rule` strings parsed, linted and
//! described, then evaluated over a request that went through the real head parser,
//! with the server variables the proxy computes. Whatever the rules and the request,
//! no result may carry a byte that may not go on the wire (CVE-2023-25690's class).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::h1::head::{parse_request_head, RequestHead, MAX_HEADERS};
use crate::h1::scan::HeadScanner;
use crate::rewrite::{lints, Decision, Field, RequestVars, RuleSource, Rules};
use crate::route::{normalize_target, NormPath};
use crate::target::{is_target_byte, Target};

/// Rules that put request data into targets, queries and redirects in every way the
/// engine allows; used when an input brings no rules of its own.
const HOSTILE_RULES: &[(&[&str], &str)] = &[
    (
        &["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"],
        ".* wss://localhost:3000%{REQUEST_URI} [P,L]",
    ),
    (&[], "^/here/(.*) http://example.com:8080/elsewhere?$1 [P]"),
    (&["%{HTTP_HOST} ^([a-z0-9.-]+)$"], "^/u/([^/]+)/(.*)$ http://b/t/%1/$1?x=$2 [P,QSA]"),
    (&["%{QUERY_STRING} (.+)"], "^/q/(.*)$ http://b/$1?%1&%{HTTP:X-Q} [P]"),
    (&[], "^/r/(.*)$ /to/$1 [R=301,L]"),
    (&[], "^/ne/(.*)$ /to/$1?%{HTTP_REFERER} [R,NE,L]"),
    (&[], "^//?(.*)$ //$1 [R,L]"),
    (&[], "^/b/(.*)$ /find?q=$1 [B,L]"),
    (&[], "^/bal/(.*)$ balancer://app/x/$1 [P]"),
    (&["%{REQUEST_METHOD} =DELETE [OR]", "%{HTTP:X-Debug} ."], "^/api/ - [F]"),
    (&[], "^/e/([a-z]+) - [E=WHO:$1]"),
    (&["%{ENV:WHO} ^admin$"], "^/e/ http://b/admins?%{THE_REQUEST} [P,L]"),
    (&[], "^/g - [G]"),
    (&[], "^/c/(.*)$ /step/$1 [C]"),
    (&[], "^/step/(.*)$ http://b/%{HTTP:X-Path}/$1 [P,L]"),
    (&[], "^/(.*)$ /x/$1?%{REMOTE_ADDR}"),
];

fn hostile_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let conds: Vec<Vec<String>> =
            HOSTILE_RULES.iter().map(|(c, _)| c.iter().map(|s| s.to_string()).collect()).collect();
        let sources: Vec<RuleSource<'_>> =
            HOSTILE_RULES.iter().zip(&conds).map(|((_, rule), conds)| RuleSource { conds, rule }).collect();
        Rules::parse(&sources).unwrap_or_else(|e| panic!("the fuzz target's own rules do not load: {e:?}"))
    })
}

/// The server variables, computed as `proxy::decide` does.
struct Vars<'a> {
    head: &'a RequestHead,
    decoded: String,
    query: &'a str,
    request_line: String,
    server_name: &'a str,
}

impl RequestVars for Vars<'_> {
    fn method(&self) -> &str {
        &self.head.method
    }
    fn path(&self) -> &str {
        &self.decoded
    }
    fn query(&self) -> &str {
        self.query
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let values: Vec<&[u8]> =
            self.head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v).collect();
        match values.as_slice() {
            [] => None,
            [one] => Some(String::from_utf8_lossy(one)),
            many => Some(Cow::Owned(String::from_utf8_lossy(&many.join(&b", "[..])).into_owned())),
        }
    }
    fn request_line(&self) -> &str {
        &self.request_line
    }
    fn remote_addr(&self) -> &str {
        "10.0.0.7"
    }
    fn server_name(&self) -> &str {
        self.server_name
    }
    fn server_port(&self) -> u16 {
        443
    }
    fn https(&self) -> bool {
        true
    }
}

/// Lines `C <cond>` and `R <rule>` (a rule closes an entry with the conditions before
/// it), a line `---`, then a request head. Without `---` the whole input is the
/// request, evaluated against `HOSTILE_RULES`.
pub fn rewrite(data: &[u8]) {
    let (rules_text, request) = match data.windows(5).position(|w| w == b"\n---\n") {
        Some(i) => (Some(String::from_utf8_lossy(&data[..i])), &data[i + 5..]),
        None => (None, data),
    };
    let mut entries: Vec<(Vec<String>, String)> = Vec::new();
    let mut conds = Vec::new();
    for line in rules_text.as_deref().unwrap_or("").split('\n') {
        if let Some(c) = line.strip_prefix("C ") {
            conds.push(c.to_string());
        } else if let Some(r) = line.strip_prefix("R ") {
            entries.push((std::mem::take(&mut conds), r.to_string()));
        }
    }
    let sources: Vec<RuleSource<'_>> = entries.iter().map(|(conds, rule)| RuleSource { conds, rule }).collect();
    let Some(head) = parse_request(request) else {
        if !sources.is_empty() {
            load(&sources);
        }
        return;
    };
    let Ok(norm) = normalize_target(&head.target) else { return };
    if sources.is_empty() {
        check_decision(hostile_rules(), HOSTILE_RULES.len(), &head, &norm);
        return;
    }
    let key = rules_text.unwrap_or_default().into_owned();
    let own = LOADED.with_borrow_mut(|loaded| {
        if loaded.len() >= LOADED_MAX {
            loaded.clear();
        }
        loaded.entry(key).or_insert_with(|| load(&sources)).clone()
    });
    if let Some(rules) = own {
        check_decision(&rules, sources.len(), &head, &norm);
    }
}

/// Rule sets already loaded and checked, by their text: most mutations change only the
/// request, and compiling the regexes again would cost nearly all of the run.
const LOADED_MAX: usize = 64;

thread_local! {
    static LOADED: RefCell<HashMap<String, Option<Rules>>> = RefCell::new(HashMap::new());
}

/// Parses, lints and describes `sources`; errors and lints name a real place.
fn load(sources: &[RuleSource<'_>]) -> Option<Rules> {
    let field_chars = |entry: usize, field: Field| -> usize {
        let src = &sources[entry];
        match field {
            Field::Rule => src.rule.chars().count(),
            Field::Cond(i) => src.conds.get(i).unwrap_or_else(|| panic!("cond[{i}] of entry {entry}")).chars().count(),
        }
    };
    for lint in lints(sources) {
        assert!(lint.entry < sources.len(), "lint names entry {}", lint.entry);
        field_chars(lint.entry, lint.field);
        let _ = lint.to_string();
    }
    match Rules::parse(sources) {
        Ok(rules) => {
            let _ = rules.to_string();
            Some(rules)
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            for e in &errors {
                assert!(e.entry < sources.len(), "error names entry {}", e.entry);
                let chars = field_chars(e.entry, e.field);
                assert!((1..=chars + 1).contains(&e.column), "column {} of {chars} characters: {e}", e.column);
                assert!(!e.message.is_empty());
            }
            None
        }
    }
}

fn parse_request(data: &[u8]) -> Option<RequestHead> {
    let len = HeadScanner::default().scan(data, data.len() + 1).ok()??;
    parse_request_head(&data[..len], MAX_HEADERS).ok()
}

fn on_the_wire(s: &str) -> bool {
    s.bytes().all(is_target_byte)
}

/// Runs the `count` rules (twice: evaluation is a pure function of the request) and
/// checks what the proxy would do with the result.
fn check_decision(rules: &Rules, count: usize, head: &RequestHead, norm: &NormPath) {
    let vars = Vars {
        head,
        decoded: norm.decoded(),
        query: norm.query.as_deref().unwrap_or(""),
        request_line: head.request_line(),
        server_name: head.headers.get("Host").and_then(|h| std::str::from_utf8(h).ok()).unwrap_or(""),
    };
    let decision = rules.evaluate(&vars);
    assert_eq!(rules.evaluate(&vars), decision, "evaluating twice differs");
    let in_range = |rule: usize| assert!(rule < count, "decision names rule {rule} of {count}");
    match &decision {
        Decision::Pass => {}
        Decision::Rewritten { path_and_query, rule } => {
            in_range(*rule);
            assert!(on_the_wire(path_and_query), "rewritten to {path_and_query:?}");
            let _ = normalize_target(path_and_query);
        }
        Decision::Proxy { target, rule } => {
            in_range(*rule);
            match target {
                Target::Url(u) => {
                    assert!(u.path.starts_with('/') && on_the_wire(&u.path), "P path {:?}", u.path);
                    let authority = u.authority();
                    let clean = on_the_wire(&authority) && !authority.contains(['@', '/', '?']);
                    assert!(clean && u.port != 0, "P authority {authority:?}");
                }
                Target::Balancer { name, path } => {
                    assert!(path.starts_with('/') && on_the_wire(path), "P path {path:?}");
                    assert!(!name.is_empty() && on_the_wire(name), "balancer {name:?}");
                }
            }
        }
        Decision::Redirect { status, location, rule } => {
            in_range(*rule);
            assert!((300..=399).contains(status), "redirect status {status}");
            // `#` may end a Location (NE); nothing else outside visible ASCII may.
            assert!(location.bytes().all(|b| is_target_byte(b) || b == b'#'), "Location {location:?}");
            assert!(!location.starts_with("//"), "Location {location:?} names another host");
        }
        Decision::Forbidden { rule } | Decision::Gone { rule } | Decision::Refused { rule, .. } => in_range(*rule),
    }
}
