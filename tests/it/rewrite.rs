//! Rewrite rules through the real binary: the WebSocket rule set (two `RewriteCond`s on
//! `Upgrade`/`Connection`, then `.* ws://…%{REQUEST_URI} [P,L]`) picks WebSocket
//! upgrades out for the ws backend and leaves every other request to `[[proxy]]`; rule flags (F, G, R, P, L, QSA, QSD, NE, E) and
//! back-references as the backend sees them; request data substituted into a target
//! never splits a request or picks an upstream (CVE-2023-25690, CVE-2024-38474,
//! CVE-2021-40438 in docs/security.md); `sidecar check` lints with line numbers and regex errors with
//! columns; `sidecar import-apache` on the tutorial vhosts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::backend::{self, Backend};
use crate::support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// sidecar with `rules` (TOML `[[rewrite]]` entries) before a `[[proxy]] path = "/"` to
/// `fallback`.
fn with_rules(fallback: &Backend, rules: &str) -> Sidecar {
    Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n{rules}\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        fallback.addr
    ))
}

/// The WebSocket rule set, pointed at `ws`.
fn websocket_rule(ws: &Backend) -> String {
    format!(
        "[[rewrite]]\ncond = [\"%{{HTTP:Upgrade}} websocket [NC]\", \"%{{HTTP:Connection}} upgrade [NC]\"]\nrule = \".* ws://{}%{{REQUEST_URI}} [P,L]\"\n",
        ws.addr
    )
}

/// A GET for `target` with extra header lines, on a fresh connection.
fn get_with(p: &Sidecar, target: &str, extra: &str) -> Response {
    let mut c = p.conn();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: front.example\r\n{extra}\r\n")).expect("send");
    c.read_response()
}

fn get(p: &Sidecar, target: &str) -> Response {
    get_with(p, target, "")
}

fn targets(b: &Backend) -> Vec<String> {
    b.requests().into_iter().map(|r| r.target).collect()
}

// ---- the WebSocket rule set ---------------------------------------------------------------------

#[test]
fn websocket_rule_tunnels_every_spelling_of_a_websocket_upgrade_to_the_ws_backend() {
    // websocket.rs checks the basic split; these are the header spellings the [NC]
    // conditions and the token rules must still recognise.
    let ws = backend::ws_echo();
    let web = backend::echo();
    let p = with_rules(&web, &websocket_rule(&ws));
    for (i, (upgrade, connection)) in
        [("websocket", "Upgrade"), ("WebSocket", "keep-alive, Upgrade"), ("WEBSOCKET", "UPGRADE")].iter().enumerate()
    {
        let mut c = p.conn();
        c.send(format!(
            "GET /chat/{i}?room=a%20b HTTP/1.1\r\nHost: a\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ))
        .expect("send");
        let r = c.read_head_response();
        assert_eq!(r.status, 101, "Upgrade: {upgrade} / Connection: {connection}\n{}", r.head_str());
    }
    assert_eq!(
        targets(&ws),
        ["/chat/0?room=a%20b", "/chat/1?room=a%20b", "/chat/2?room=a%20b"],
        "each upgrade reaches the ws backend at %{{REQUEST_URI}} with its query"
    );
    assert!(web.requests().is_empty(), "no upgrade reaches the [[proxy]] backend: {:?}", targets(&web));
    // And a real client's messages cross the tunnel.
    let mut client = ws_open(p.addr(), "/live");
    ws_round_trip(&mut client, "through the WebSocket rule set");
}

#[test]
fn websocket_rule_leaves_requests_that_are_not_upgrades_to_the_proxy_backend() {
    let ws = backend::ws_echo();
    let web = backend::echo();
    let p = with_rules(&web, &websocket_rule(&ws));
    for (what, head) in [
        ("plain GET", "GET /page HTTP/1.1\r\nHost: a\r\n\r\n".to_string()),
        ("Upgrade without Connection", format!("GET /no-conn HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n")),
        ("Connection: upgrade without Upgrade", "GET /no-upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n".to_string()),
        ("h2c upgrade", "GET /h2c HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n".to_string()),
        ("POST", "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".to_string()),
    ] {
        let mut c = p.conn();
        c.send(&head).expect("send");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{what}: {}", r.head_str());
    }
    assert_eq!(targets(&web), ["/page", "/no-conn", "/no-upgrade", "/h2c", "/form"]);
    assert!(ws.requests().is_empty(), "the ws backend saw {:?}", targets(&ws));
    for q in web.requests() {
        assert!(q.header("Upgrade").is_none(), "a non-WebSocket Upgrade is never forwarded: {}", q.head_str());
    }
}

#[test]
fn websocket_rule_condition_matching_notwebsocket_sends_a_plain_request_never_a_tunnel() {
    // docs/security.md, R4: the condition is an unanchored regex, so `Upgrade: notwebsocket`
    // matches it and the request goes to the ws target, but it is not a WebSocket
    // upgrade: it travels as plain HTTP, without Upgrade, and no tunnel opens.
    let ws = backend::ws_echo();
    let web = backend::echo();
    let p = with_rules(&web, &websocket_rule(&ws));
    let mut c = p.conn();
    c.send(format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: notwebsocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
    .expect("send");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_str());
    let reqs = ws.requests();
    assert_eq!(reqs.len(), 1, "the condition held, so the ws target got it; web saw {:?}", targets(&web));
    assert!(!reqs[0].has("Upgrade"), "no Upgrade forwarded: {}", reqs[0].head_str());
    // The connection is still HTTP.
    c.send("GET /after HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().header("x-echo-target"), Some("/after"));
}

// ---- flags --------------------------------------------------------------------------------------

#[test]
fn forbidden_flag_answers_403_and_no_backend_connection_is_made() {
    let b = backend::echo();
    let p = with_rules(
        &b,
        "[[rewrite]]\ncond = [\"%{REQUEST_METHOD} =DELETE [OR]\", \"%{HTTP:X-Debug} .\"]\nrule = \"^/api/ - [F]\"\n",
    );
    let mut c = p.conn();
    c.send("DELETE /api/items/1 HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    c.read_response().assert_error(403);
    get_with(&p, "/api/items", "X-Debug: 1\r\n").assert_error(403);
    assert_eq!(b.connections(), 0, "nothing was sent anywhere: {}", show(&b.received()));
    // Conditions that do not hold leave the request alone.
    assert_eq!(get(&p, "/api/items").status, 200);
    assert_eq!(targets(&b), ["/api/items"]);
}

#[test]
fn gone_flag_answers_410_and_no_backend_connection_is_made() {
    let b = backend::echo();
    let p = with_rules(&b, "[[rewrite]]\nrule = \"^/retired(/|$) - [G]\"\n");
    get(&p, "/retired/page").assert_error(410);
    get(&p, "/retired").assert_error(410);
    assert_eq!(b.connections(), 0);
    assert_eq!(get(&p, "/retiredness").status, 200, "the pattern decides, not a prefix");
}

/// The Location of a redirect, made comparable: Apache sends an absolute URL on the
/// request's host, a relative one is allowed too (RFC 9110 §10.2.2).
fn location_path(r: &Response) -> String {
    let loc = r.header("Location").unwrap_or_else(|| panic!("no Location: {}", r.head_str())).to_string();
    loc.strip_prefix("http://front.example").map(str::to_string).unwrap_or(loc)
}

#[test]
fn redirect_flag_answers_301_with_the_substituted_location_and_sends_nothing() {
    let b = backend::echo();
    let p = with_rules(
        &b,
        "[[rewrite]]\nrule = \"^/old/(.*)$ /new/$1 [R=301,L]\"\n\n[[rewrite]]\nrule = \"^/moved$ /here [R]\"\n\n[[rewrite]]\nrule = \"^/away$ https://other.example/landing [L]\"\n\n[[rewrite]]\nrule = \"^/clean$ /target [R=308,QSD]\"\n",
    );
    let r = get(&p, "/old/page?x=1");
    assert_eq!(r.status, 301, "{}", r.head_str());
    assert_eq!(location_path(&r), "/new/page?x=1", "the query string is kept");
    let r = get(&p, "/moved");
    assert_eq!((r.status, location_path(&r)), (302, "/here".to_string()), "[R] alone is a 302");
    let r = get(&p, "/away");
    assert_eq!(r.status, 302, "an absolute substitution without P redirects: {}", r.head_str());
    assert_eq!(r.header("Location"), Some("https://other.example/landing"));
    let r = get(&p, "/clean?secret=1");
    assert_eq!((r.status, location_path(&r)), (308, "/target".to_string()), "QSD drops the query");
    assert_eq!(b.connections(), 0, "a redirect is answered by sidecar: {}", show(&b.received()));
}

#[test]
fn redirect_location_never_carries_a_decoded_crlf_into_the_response_head() {
    // Response splitting through a redirect: $1 is decoded, so it must be re-encoded
    // (or, with NE, the request refused) before it lands in a Location header.
    for flags in ["R=302", "R=302,NE"] {
        let b = backend::echo();
        let p = with_rules(&b, &format!("[[rewrite]]\nrule = \"^/go/(.*)$ /to/$1 [{flags}]\"\n"));
        let mut c = p.conn();
        c.send("GET /go/x%0d%0aSet-Cookie:%20pwned=1%0d%0a%0d%0a<html> HTTP/1.1\r\nHost: front.example\r\n\r\n")
            .expect("send");
        let r = c.read_response();
        assert!(r.header("Set-Cookie").is_none(), "[{flags}]: header injected into the response: {}", r.head_str());
        assert!(!r.head_str().contains("\r\nSet-Cookie"), "[{flags}]: {}", r.head_str());
        match r.status {
            302 => {
                let loc = location_path(&r);
                assert!(loc.starts_with("/to/x%0D%0ASet-Cookie:%20pwned=1"), "[{flags}]: Location escaped: {loc:?}");
            }
            400 => r.assert_error(400),
            s => panic!("[{flags}]: want 302 with an escaped Location or 400, got {s}: {}", r.head_str()),
        }
        assert_eq!(b.connections(), 0, "[{flags}]");
    }
}

#[test]
fn rule_without_p_rewrites_the_path_and_the_proxy_table_routes_the_result() {
    let web = backend::echo();
    let api = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\nrule = \"^/v1/(.*)$ /api/$1 [L]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n\n[[proxy]]\npath = \"/api\"\nto = \"http://{}/internal\"\n",
        web.addr, api.addr
    ));
    let r = get(&p, "/v1/users?id=7");
    assert_eq!(r.status, 200, "{}", r.head_str());
    assert_eq!(targets(&api), ["/internal/users?id=7"], "routed by the rewritten path, query kept");
    assert!(web.requests().is_empty(), "{:?}", targets(&web));
}

#[test]
fn back_references_from_rule_and_condition_reach_the_backend_as_the_target() {
    let b = backend::echo();
    let rules = format!(
        "[[rewrite]]\ncond = [\"%{{HTTP_HOST}} ^([a-z]+)\\\\.example$\"]\nrule = \"^/u/(\\\\d+)/([a-z]+)$ http://{b}/tenant/%1/users/$2/$1 [P]\"\n\n\
         [[rewrite]]\nrule = \"^/qsa/(.*)$ http://{b}/merged/$1?src=rw [P,QSA]\"\n\n\
         [[rewrite]]\nrule = \"^/replace/(.*)$ http://{b}/replaced/$1?src=rw [P]\"\n\n\
         [[rewrite]]\nrule = \"^/drop/(.*)$ http://{b}/dropped/$1 [P,QSD]\"\n\n\
         [[rewrite]]\nrule = \"^/keep/(.*)$ http://{b}/kept/$1 [P]\"\n",
        b = b.addr
    );
    let p = with_rules(&b, &rules);
    for path in ["/u/42/bob?full=1", "/qsa/a?x=1", "/replace/a?x=1", "/drop/a?x=1", "/keep/a?x=1"] {
        let r = get(&p, path);
        assert_eq!(r.status, 200, "{path}: {}", r.head_str());
    }
    assert_eq!(
        targets(&b),
        [
            "/tenant/front/users/bob/42?full=1", // %1 from the condition, $1 $2 from the rule
            "/merged/a?src=rw&x=1",              // QSA appends the original query
            "/replaced/a?src=rw",                // a query in the substitution replaces it
            "/dropped/a",                        // QSD drops it
            "/kept/a?x=1",                       // no query in the substitution: kept
        ]
    );
}

#[test]
fn chained_rules_run_only_while_each_link_matches() {
    // [C]: the second rule runs only when the first matched; a request that skips the
    // first link never reaches the second, even if the second would match it.
    let b = backend::echo();
    let rules = format!(
        "[[rewrite]]\nrule = \"^/chain/(.*)$ /step/$1 [C]\"\n\n[[rewrite]]\nrule = \"^/step/(a.*)$ http://{b}/chained/$1 [P]\"\n",
        b = b.addr
    );
    let p = with_rules(&b, &rules);
    for path in ["/chain/abc", "/chain/xyz", "/step/abc"] {
        assert_eq!(get(&p, path).status, 200, "{path}");
    }
    assert_eq!(targets(&b), ["/chained/abc", "/step/xyz", "/step/abc"]);
}

#[test]
fn skip_flag_jumps_over_the_next_rules() {
    let b = backend::echo();
    let rules = format!(
        "[[rewrite]]\nrule = \"^/skip - [S=1]\"\n\n[[rewrite]]\nrule = \"^/skip http://{b}/never [P]\"\n\n[[rewrite]]\nrule = \"^/skip http://{b}/landed [P]\"\n",
        b = b.addr
    );
    let p = with_rules(&b, &rules);
    assert_eq!(get(&p, "/skip").status, 200);
    assert_eq!(targets(&b), ["/landed"]);
}

#[test]
fn nocase_rule_and_b_flags_escape_the_back_reference_for_a_query() {
    // Apache: B escapes non-alphanumerics, a space as `+`; BNP escapes the space as %20.
    let b = backend::echo();
    let rules = format!(
        "[[rewrite]]\nrule = \"^/search/(.*)$ http://{b}/find?q=$1 [P,NC,B]\"\n\n[[rewrite]]\nrule = \"^/bnp/(.*)$ http://{b}/find?q=$1 [P,B,BNP]\"\n",
        b = b.addr
    );
    let p = with_rules(&b, &rules);
    assert_eq!(get(&p, "/SEARCH/a%20b&c=d").status, 200);
    assert_eq!(get(&p, "/bnp/a%20b&c=d").status, 200);
    assert_eq!(targets(&b), ["/find?q=a+b%26c%3Dd", "/find?q=a%20b%26c%3Dd"]);
}

#[test]
fn request_uri_is_the_normalised_path_in_the_websocket_rule() {
    // The same normalised path is used to route and to forward (README "Paths").
    let ws = backend::ws_echo();
    let web = backend::echo();
    let p = with_rules(&web, &websocket_rule(&ws));
    let mut c = p.conn();
    c.send(format!(
        "GET /a/./b/../c//d%7Ee HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
    .expect("send");
    assert_eq!(c.read_head_response().status, 101);
    assert_eq!(targets(&ws), ["/a/c/d~e"]);
}

/// Rules: `^/e/([a-z]+) - [E=WHO:{value}]`, then `/e/` goes to `/admins` when
/// `%{ENV:WHO}` is `admin`, else to `/others`.
fn env_rules(b: &Backend, value: &str) -> String {
    format!(
        "[[rewrite]]\nrule = \"^/e/([a-z]+) - [E=WHO:{value}]\"\n\n[[rewrite]]\ncond = [\"%{{ENV:WHO}} ^admin$\"]\nrule = \"^/e/ http://{b}/admins [P,L]\"\n\n[[rewrite]]\nrule = \"^/e/ http://{b}/others [P,L]\"\n",
        b = b.addr
    )
}

#[test]
fn env_flag_sets_a_variable_that_a_later_condition_reads() {
    let b = backend::echo();
    let p = with_rules(&b, &env_rules(&b, "admin"));
    assert_eq!(get(&p, "/e/anyone").status, 200);
    assert_eq!(targets(&b), ["/admins"]);
}

#[test]
fn env_flag_value_expands_the_rules_back_reference() {
    // Apache: "VAL may contain backreferences ($N or %N) which are expanded".
    let b = backend::echo();
    let p = with_rules(&b, &env_rules(&b, "$1"));
    assert_eq!(get(&p, "/e/admin").status, 200);
    assert_eq!(get(&p, "/e/bob").status, 200);
    assert_eq!(targets(&b), ["/admins", "/others"], "E=WHO:$1 must set WHO to the captured group");
}

#[test]
fn p_target_may_be_a_balancer_and_carries_the_back_reference() {
    let (r1, r2) = (backend::echo(), backend::echo());
    let fallback = backend::echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\nrule = \"^/b/(.*)$ balancer://app/x/$1 [P,L]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n\n\
         [balancer.app]\nmethod = \"byrequests\"\nmembers = [\"http://{}\", \"http://{}\"]\n",
        fallback.addr, r1.addr, r2.addr
    ));
    for i in 0..4 {
        assert_eq!(get(&p, &format!("/b/item{i}?q=1")).status, 200);
    }
    let mut all: Vec<String> = targets(&r1).into_iter().chain(targets(&r2)).collect();
    all.sort();
    assert_eq!(all, ["/x/item0?q=1", "/x/item1?q=1", "/x/item2?q=1", "/x/item3?q=1"]);
    assert_eq!((targets(&r1).len(), targets(&r2).len()), (2, 2), "byrequests spreads them");
    assert!(fallback.requests().is_empty());
}

#[test]
fn query_string_variable_passes_the_query_through_unchanged() {
    // %{QUERY_STRING} is the raw query (Apache): still percent-encoded, so copying it
    // into a target must not encode it a second time (`%20` → `%2520`).
    let b = backend::echo();
    let p =
        with_rules(&b, &format!("[[rewrite]]\nrule = \"^/search$ http://{}/find?%{{QUERY_STRING}} [P]\"\n", b.addr));
    assert_eq!(get(&p, "/search?q=a%20b&lang=en").status, 200);
    assert_eq!(targets(&b), ["/find?q=a%20b&lang=en"]);
}

// ---- injection (docs/security.md, CVE-2023-25690, CVE-2024-38474, CVE-2021-40438) ---------------

/// The backend saw at most one request; returns it. `raw` must contain no second
/// request line and no injected header line.
fn at_most_one_request(b: &Backend) -> Option<backend::Request> {
    let raw = b.received();
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(!text.contains("\r\nGET /SMUGGLED"), "a second request was smuggled:\n{}", show(&raw));
    assert!(!text.contains("\r\nHost: x\r\n"), "an injected Host line reached the backend:\n{}", show(&raw));
    let reqs = b.requests();
    assert!(reqs.len() <= 1, "the backend parsed {} requests:\n{}", reqs.len(), show(&raw));
    reqs.into_iter().next()
}

#[test]
fn cve_2023_25690_decoded_crlf_in_a_back_reference_never_splits_the_backend_request() {
    let b = backend::echo();
    let p = with_rules(&b, &format!("[[rewrite]]\nrule = \"^/here/(.*) http://{}/elsewhere?$1 [P]\"\n", b.addr));
    let mut c = p.conn();
    c.send("GET /here/1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/SMUGGLED HTTP/1.1\r\nHost: front.example\r\n\r\n")
        .expect("send");
    let r = c.read_response();
    match at_most_one_request(&b) {
        Some(q) => {
            assert_eq!(r.status, 200, "{}", r.head_str());
            assert_eq!(q.target, "/elsewhere?1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED");
        }
        None => r.assert_error(400),
    }
    // The backend connection (if any) is still in step: the next request on the client
    // connection is the backend's next request, and nothing was left queued behind it.
    if !r.says_close() {
        c.send("GET /after HTTP/1.1\r\nHost: front.example\r\n\r\n").expect("send");
        let r = c.read_response();
        assert_eq!(r.header("x-echo-target"), Some("/after"), "{}", r.head_str());
        assert!(targets(&b).iter().all(|t| !t.starts_with("/SMUGGLED")), "{:?}", targets(&b));
    }
}

#[test]
fn cve_2023_25690_with_ne_on_a_p_rule_still_never_splits_the_backend_request() {
    // NE only concerns redirects (README); whatever it does, the request line that
    // leaves sidecar carries no CR, LF or SP: escaped, or the request refused with 400.
    let b = backend::echo();
    let p = with_rules(&b, &format!("[[rewrite]]\nrule = \"^/here/(.*) http://{}/elsewhere?$1 [P,NE]\"\n", b.addr));
    let r = get(&p, "/here/1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20/SMUGGLED");
    match at_most_one_request(&b) {
        Some(q) => {
            assert_eq!(r.status, 200, "{}", r.head_str());
            assert_eq!(q.target, "/elsewhere?1%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0AGET%20/SMUGGLED");
        }
        None => {
            r.assert_error(400);
            assert_eq!(b.connections(), 0, "nothing reached the backend: {}", show(&b.received()));
        }
    }
}

#[test]
fn crlf_in_the_path_of_an_upgrade_never_becomes_a_backend_header() {
    for target in ["/a%0d%0aX-Injected:%201", "/a%0d%0aX-Injected:%201%0d%0a"] {
        let ws = backend::ws_echo();
        let web = backend::echo();
        let p = with_rules(&web, &websocket_rule(&ws));
        let mut c = p.conn();
        c.send(format!(
            "GET {target} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ))
        .expect("send");
        let r = c.try_read_response(true, DEADLINE).unwrap_or_else(|e| panic!("{target}: an answer: {e}"));
        let raw = String::from_utf8_lossy(&ws.received()).to_string();
        assert!(!raw.contains("\r\nX-Injected"), "{target}: header injected:\n{raw}");
        let reqs = ws.requests();
        assert!(web.requests().is_empty(), "{target}: the upgrade went to the web backend");
        match reqs.as_slice() {
            [] => r.assert_error(400),
            [q] => {
                assert_eq!(r.status, 101, "{target}: {}", r.head_str());
                assert!(q.target.starts_with("/a%0D%0AX-Injected:%201"), "{target}: escaped target: {}", q.target);
                assert!(q.header("X-Injected").is_none(), "{}", q.head_str());
            }
            more => panic!("{target}: {} requests at the ws backend", more.len()),
        }
    }
}

#[test]
fn encoded_question_mark_in_a_back_reference_stays_encoded() {
    // CVE-2024-38474: a decoded %3F must not become the query separator.
    let b = backend::echo();
    let p = with_rules(&b, &format!("[[rewrite]]\nrule = \"^/files/(.*)$ http://{}/store/$1 [P]\"\n", b.addr));
    assert_eq!(get(&p, "/files/report.php%3Fadmin=1").status, 200);
    let t = targets(&b);
    assert_eq!(t, ["/store/report.php%3Fadmin=1"], "the backend must see one path, no query");
}

#[test]
fn unix_socket_smuggling_in_the_query_never_reaches_the_named_host() {
    // CVE-2021-40438: `?unix:AAA…|http://host/` picked the upstream in Apache. Both a
    // plain [[proxy]] and a rule that copies the query must send it to the configured
    // backend, query intact, and never connect to the canary.
    let canary = backend::canary();
    let b = backend::echo();
    let rules = format!("[[rewrite]]\nrule = \"^/r/(.*)$ http://{}/rewritten/$1 [P]\"\n", b.addr);
    let p = with_rules(&b, &rules);
    let query = format!("unix:{}|http://127.0.0.1:{}/", "A".repeat(7701), canary.port());
    for path in ["/", "/r/x"] {
        let r = get(&p, &format!("{path}?{query}"));
        assert_eq!(r.status, 200, "{path}: {}", r.status_line);
    }
    let t = targets(&b);
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[0], format!("/?{query}"));
    assert_eq!(t[1], format!("/rewritten/x?{query}"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(canary.connections(), 0, "the canary was contacted");
}

// ---- sidecar check ------------------------------------------------------------------------------

/// Writes `config` as sidecar.toml in a temp dir and runs `sidecar check` on it.
fn check(config: &str) -> Ran {
    let dir = TempDir::new();
    dir.write("sidecar.toml", config);
    run_binary(dir.path(), &["check", "--config", "sidecar.toml"])
}

/// The stderr lines that start with `sidecar.toml:LINE: warning:`.
fn warnings_at(ran: &Ran, line: usize) -> Vec<String> {
    let prefix = format!("sidecar.toml:{line}: warning:");
    ran.stderr.lines().filter(|l| l.starts_with(&prefix)).map(str::to_string).collect()
}

#[test]
fn check_warns_about_each_tutorial_mistake_on_its_own_line() {
    let config = "\
[server]
listen = \"127.0.0.1:0\"

[[rewrite]]
cond = [\"${HTTP:Upgrade} websocket [NC]\", \"%{HTTP:Connection} upgrade [NC]\"]
rule = \".* ws://127.0.0.1:3000%{REQUEST_URI} [P,L]\"

[[rewrite]]
cond = [\"%{HTTP:Upgrade} websocket [NC]\", \"%{HTTP:Connection} upgrade [NC]\"]
rule = \"^/one-slash/(.*) wss:/127.0.0.1:3000/$1 [P,L]\"

[[rewrite]]
cond = [\"%{HTTP:Upgrade} websocket [NC]\", \"%{HTTP:Connection} upgrade [NC]\"]
rule = \".* ws://127.0.0.1:3000/ [P,L]\"

[[rewrite]]
rule = \"^/fwd/(.*) http://%{HTTP_HOST}/$1 [P]\"

[[proxy]]
path = \"/\"
to = \"http://127.0.0.1:3000/\"
";
    let ran = check(config);
    assert_eq!(ran.code, Some(0), "lints are warnings, the config is valid:\n{}", ran.stderr);
    let expect: [(usize, &[&str]); 4] = [
        (5, &["rewrite[0].cond[0]", "${HTTP:Upgrade}", "%{HTTP:Upgrade}"]),
        (10, &["rewrite[1].rule", "one slash"]),
        (14, &["rewrite[2].rule", "request path"]),
        (17, &["rewrite[3].rule", "%{HTTP_HOST}"]),
    ];
    for (line, needles) in expect {
        let found = warnings_at(&ran, line);
        assert!(
            found.iter().any(|w| needles.iter().all(|n| w.contains(n))),
            "no warning at line {line} with {needles:?}; stderr:\n{}",
            ran.stderr
        );
    }
    // Lines without a second mistake get exactly one warning, and only the rules warn
    // (line 6 may: its Upgrade condition is the broken ${…} one).
    for line in [5, 14, 17] {
        assert_eq!(warnings_at(&ran, line).len(), 1, "line {line}:\n{}", ran.stderr);
    }
    let elsewhere: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| {
            l.contains(": warning:") && ![5, 6, 10, 14, 17].iter().any(|n| l.starts_with(&format!("sidecar.toml:{n}:")))
        })
        .collect();
    assert!(elsewhere.is_empty(), "unexpected warnings: {elsewhere:?}");
    assert!(ran.stdout.contains("rewrite[3]"), "check prints the resolved rules:\n{}", ran.stdout);
}

#[test]
fn check_is_silent_about_the_websocket_rule_set() {
    let ran = check(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\ncond = [\"%{HTTP:Upgrade} websocket [NC]\", \"%{HTTP:Connection} upgrade [NC]\"]\nrule = \".* wss://localhost:3000%{REQUEST_URI} [P,L]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!ran.stderr.contains("warning"), "no false alarm on the WebSocket rule set:\n{}", ran.stderr);
}

#[test]
fn check_refuses_a_bad_regex_naming_line_field_and_column() {
    let config = "\
[server]
listen = \"127.0.0.1:0\"

[[rewrite]]
cond = [\"%{HTTP_HOST} ^(unclosed\"]
rule = \"^/ok /x [L]\"

[[rewrite]]
rule = \"^/bad[z-a] /x [L]\"

[[proxy]]
path = \"/\"
to = \"http://127.0.0.1:3000/\"
";
    let ran = check(config);
    assert_eq!(ran.code, Some(1), "stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    // Both errors are reported; the column is where the pattern starts in its string.
    for want in ["sidecar.toml:5: rewrite[0].cond[0]: column 14:", "sidecar.toml:9: rewrite[1].rule: column 1:"] {
        assert!(ran.stderr.contains(want), "missing {want:?} in\n{}", ran.stderr);
    }
}

#[test]
fn check_refuses_unsupported_flags_and_regex_features_saying_so() {
    for (rule, needle) in
        [("^/x /y [N]", "N"), ("^/x /y [CO=a:b:c]", "CO"), ("^/(?=x) /y", "look"), ("^/(a)\\\\1 /y", "reference")]
    {
        let ran = check(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\nrule = \"{rule}\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n"
        ));
        assert_eq!(ran.code, Some(1), "{rule}: {}", ran.stderr);
        let line = ran
            .stderr
            .lines()
            .find(|l| l.starts_with("sidecar.toml:5: rewrite[0].rule"))
            .unwrap_or_else(|| panic!("{rule}: no diagnostic for line 5:\n{}", ran.stderr));
        assert!(line.to_lowercase().contains(&needle.to_lowercase()), "{rule}: says why: {line}");
    }
}

#[test]
fn check_refuses_an_unknown_rule_flag_with_its_line() {
    let ran = check(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[rewrite]]\nrule = \"^/x /y [P,BOGUS]\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://127.0.0.1:3000/\"\n",
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("sidecar.toml:5: rewrite[0].rule"), "{}", ran.stderr);
    assert!(ran.stderr.contains("BOGUS"), "names the flag: {}", ran.stderr);
}

// ---- sidecar import-apache ----------------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs import-apache on a fixture; checks exit 0, then checks its stdout with
/// `sidecar check` (exit 0). Returns the import's run.
fn import_and_check(name: &str) -> Ran {
    let dir = TempDir::new();
    let path = fixture(name);
    let ran = run_binary(dir.path(), &["import-apache", path.to_str().expect("utf-8 path")]);
    assert_eq!(ran.code, Some(0), "{name}: stderr:\n{}", ran.stderr);
    // The tutorial's members are names; lookups stay on loopback.
    dir.write("imported.toml", format!("{}{LOOPBACK_RESOLVER}", ran.stdout));
    let checked = run_binary(dir.path(), &["check", "--config", "imported.toml"]);
    assert_eq!(
        checked.code,
        Some(0),
        "{name}: the imported config fails `sidecar check`:\n{}\n{}",
        ran.stdout,
        checked.stderr
    );
    ran
}

/// Lines of `stderr` that start with `FILE:LINE: kind:` for the fixture `name`.
fn diagnostics(ran: &Ran, name: &str, line: usize, kind: &str) -> Vec<String> {
    let prefix = format!("{}:{line}: {kind}:", fixture(name).display());
    ran.stderr.lines().filter(|l| l.starts_with(&prefix)).map(str::to_string).collect()
}

#[test]
fn import_apache_plain_tutorial_warns_with_apache_lines_and_its_output_passes_check() {
    let name = "tutorial-plain.conf";
    let ran = import_and_check(name);
    let has =
        |line: usize, kind: &str, needle: &str| diagnostics(&ran, name, line, kind).iter().any(|l| l.contains(needle));
    assert!(has(5, "warning", "${HTTP:Upgrade}"), "line 5: ${{HTTP:Upgrade}}:\n{}", ran.stderr);
    assert!(has(6, "warning", "${HTTP:Connection}"), "line 6:\n{}", ran.stderr);
    assert!(has(7, "warning", "wss:/localhost:3000"), "line 7: one slash:\n{}", ran.stderr);
    assert!(has(7, "warning", "request path"), "line 7: dropped path:\n{}", ran.stderr);
    assert!(has(13, "ignored", "ErrorLog"), "line 13: ErrorLog is listed as ignored:\n{}", ran.stderr);
    // The conversion itself: the rule (as written, so check repeats the lints), the
    // ProxyPass and its ProxyPassReverse.
    assert!(
        ran.stdout.contains("[[rewrite]]") && ran.stdout.contains("${HTTP:Upgrade} websocket [NC]"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("https://localhost:3000/") && ran.stdout.contains("reverse = true"), "{}", ran.stdout);
}

#[test]
fn import_apache_balancer_tutorial_converts_members_and_settings_and_passes_check() {
    let ran = import_and_check("tutorial-balancer.conf");
    for want in [
        "[balancer.backend-cluster]",
        "https://server01:3000",
        "https://server02:3000",
        "https://server03:3000",
        "loadfactor = 2",
        "bybusyness",
        "balancer://backend-cluster/",
        "preserve_host = true",
        "%{REQUEST_URI}",
    ] {
        assert!(ran.stdout.contains(want), "missing {want:?} in\n{}", ran.stdout);
    }
    assert!(
        ran.stdout.contains("proxy_timeout = '30s'") || ran.stdout.contains("proxy_timeout = \"30s\""),
        "{}",
        ran.stdout
    );
    assert!(!ran.stderr.contains("${"), "the balancer tutorial has no ${{…}} mistake:\n{}", ran.stderr);
    assert!(
        ran.stderr.contains("port 443 without SSLCertificateFile"),
        "a *:443 vhost without a certificate is converted to a plain listener, with a warning:\n{}",
        ran.stderr
    );
}

#[test]
fn import_apache_every_warning_names_its_apache_line() {
    // README: "Warnings (stderr) carry the Apache line", the 443-without-certificate
    // one included.
    for name in ["tutorial-plain.conf", "tutorial-balancer.conf", "extra-directives.conf"] {
        let dir = TempDir::new();
        let ran = run_binary(dir.path(), &["import-apache", fixture(name).to_str().expect("utf-8 path")]);
        let file = fixture(name).display().to_string();
        for l in ran.stderr.lines().filter(|l| l.contains("warning:") || l.contains("ignored:")) {
            let rest = l.strip_prefix(&format!("{file}:")).unwrap_or_else(|| panic!("{name}: {l:?} names the file"));
            let line = rest.split(':').next().unwrap_or("");
            assert!(line.parse::<usize>().is_ok_and(|n| n > 0), "{name}: no Apache line number in {l:?}");
        }
    }
}

#[test]
fn import_apache_lists_every_unconverted_directive_with_its_line() {
    let name = "extra-directives.conf";
    let ran = import_and_check(name);
    for (line, directive) in
        [(3, "ServerAdmin"), (4, "DocumentRoot"), (6, "Header"), (7, "LogLevel"), (16, "CustomLog")]
    {
        assert!(
            diagnostics(&ran, name, line, "ignored").iter().any(|l| l.contains(directive)),
            "line {line}: {directive} is listed as ignored:\n{}",
            ran.stderr
        );
    }
    assert!(
        diagnostics(&ran, name, 12, "warning").iter().any(|l| l.contains("SSLProxyVerify")),
        "line 12: SSLProxyVerify none warns that sidecar always verifies:\n{}",
        ran.stderr
    );
    assert!(ran.stdout.contains("/api") && ran.stdout.contains("http://127.0.0.1:4000/"), "{}", ran.stdout);
}
