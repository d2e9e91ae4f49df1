//! Issue 4 through the real binary: weights, passive health, retries, 503 with
//! Retry-After, stickiness, `+H`/`+N`/`+D`, WebSocket spread and fail-over, with real
//! replicas on loopback ports.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use support::backend::{self, response, Backend, Reply};
use support::*;

/// A replica answering `200` with its name as the body.
fn named(name: &'static str) -> Backend {
    Backend::start(move |_| Reply::Send(response(200, &[], name.as_bytes())))
}

/// A proxy in front of `members`; `proxy_timeout` is generous (the suite runs in
/// parallel on a small machine) unless a test needs a short one.
fn balanced(members: &str, extra: &str) -> String {
    balanced_with("2s", members, extra)
}

fn balanced_with(proxy_timeout: &str, members: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\naccess_log = \"off\"\nproxy_timeout = \"{proxy_timeout}\"\n\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n\
         [balancer.app]\n{extra}\nmembers = [{members}]\n"
    )
}

fn get(p: &Sidecar, cookie: Option<&str>) -> Response {
    let mut c = p.conn();
    let cookie = cookie.map(|v| format!("Cookie: {v}\r\n")).unwrap_or_default();
    c.send(format!("GET /x HTTP/1.1\r\nHost: a\r\n{cookie}\r\n")).expect("send");
    c.try_read_response(false, Duration::from_secs(5)).expect("a response")
}

fn tally(p: &Sidecar, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = get(p, None);
        assert_eq!(r.status, 200, "{}", r.head_str());
        *seen.entry(r.body_str()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn three_hundred_requests_are_spread_by_weight() {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let members =
        format!("\"http://{}\", \"http://{}\", {{ url = \"http://{}\", loadfactor = 2 }}", a.addr, b.addr, c.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\""));
    let seen = tally(&p, 300);
    assert_eq!((seen["a"], seen["b"], seen["c"]), (75, 75, 150), "{seen:?}");
}

#[test]
fn a_closed_replica_loses_no_request_and_is_tried_once_per_retry_period() {
    let (a, b) = (named("a"), named("b"));
    let dead = closed_port();
    let members = format!("\"http://{}\", \"http://127.0.0.1:{dead}\", \"http://{}\"", a.addr, b.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\"\nretry = \"10s\""));
    let seen = tally(&p, 60);
    assert_eq!(seen.values().sum::<usize>(), 60, "every request answered 200: {seen:?}");
    let attempts = p.logs().iter().filter(|l| l.contains(&format!("127.0.0.1:{dead}: connect failed"))).count();
    assert_eq!(attempts, 1, "one connect attempt per retry period: {:?}", p.logs());
}

#[test]
fn a_replica_that_never_answers_costs_one_timeout_not_one_per_request() {
    let (a, silent) = (named("a"), backend::never_answers());
    let members = format!("\"http://{}\", \"http://{}\"", silent.addr, a.addr);
    let p = Sidecar::start(&balanced_with("300ms", &members, "method = \"byrequests\"\nretry = \"10s\""));
    let t = Instant::now();
    let seen = tally(&p, 20);
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
    // One 300 ms timeout (then the GET is retried on `a`), not twenty.
    assert!(t.elapsed() < Duration::from_millis(2000), "took {:?}", t.elapsed());
    assert_eq!(silent.requests().len(), 1, "the silent replica got one request");
}

#[test]
fn every_replica_down_is_503_with_retry_after_quickly() {
    for extra in ["retry = \"5s\"", "retry = \"5s\"\nmax_ejected_percent = 100"] {
        let members = format!("\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"", closed_port(), closed_port());
        let p = Sidecar::start(&balanced(&members, extra));
        for _ in 0..3 {
            let t = Instant::now();
            let r = get(&p, None);
            assert_eq!(r.status, 503, "{extra}: {}", r.head_str());
            let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().expect("seconds");
            assert!((1..=5).contains(&retry), "{extra}: Retry-After {retry}");
            assert!(t.elapsed() < Duration::from_secs(1), "{extra}: took {:?}", t.elapsed());
        }
    }
}

#[test]
fn a_restarted_replica_gets_traffic_again_after_its_retry_time() {
    let a = named("a");
    // Reserve a port, close it, and later start a replica on it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let members = format!("\"http://{}\", \"http://127.0.0.1:{port}\"", a.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\"\nretry = \"500ms\""));
    let before = tally(&p, 10);
    assert_eq!(before.get("a"), Some(&10), "{before:?}");
    let revived =
        Backend::start_on(SocketAddr::from(([127, 0, 0, 1], port)), |_| Reply::Send(response(200, &[], b"b")));
    std::thread::sleep(Duration::from_millis(700));
    let after = tally(&p, 20);
    assert!(after.get("b").is_some_and(|n| *n >= 8), "the restarted replica is back: {after:?}");
    drop(revived);
}

#[test]
fn sticky_cookie_pins_to_its_route() {
    let (a, b) = (named("a"), named("b"));
    let members =
        format!("{{ url = \"http://{}\", route = \"r1\" }}, {{ url = \"http://{}\", route = \"r2\" }}", a.addr, b.addr);
    let p = Sidecar::start(&balanced(&members, "stickysession = \"JSESSIONID\""));
    for _ in 0..10 {
        assert_eq!(get(&p, Some("other=1; JSESSIONID=abc.r2")).body_str(), "b");
    }
}

#[test]
fn hot_standby_only_when_needed_and_disabled_or_draining_never() {
    let (a, spare, off, drain) = (named("a"), named("spare"), named("off"), named("drain"));
    let members = format!(
        "\"http://{}\", {{ url = \"http://{}\", status = \"+H\" }}, {{ url = \"http://{}\", status = \"+D\" }}, {{ url = \"http://{}\", status = \"+N\" }}",
        a.addr, spare.addr, off.addr, drain.addr
    );
    let p = Sidecar::start(&balanced(&members, "retry = \"10s\""));
    let seen = tally(&p, 12);
    assert_eq!(seen.get("a"), Some(&12), "{seen:?}");
    drop(a);
    let seen = tally(&p, 12);
    assert_eq!(seen.get("spare"), Some(&12), "the hot standby takes over: {seen:?}");
    assert!(off.requests().is_empty() && drain.requests().is_empty());
}

#[test]
fn websocket_upgrades_spread_across_replicas_and_fail_over() {
    let (w1, w2) = (backend::ws_echo(), backend::ws_echo());
    let dead = closed_port();
    let members = format!("\"ws://{}\", \"ws://{}\", \"ws://127.0.0.1:{dead}\"", w1.addr, w2.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\""));
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut c = p.conn();
        c.send("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .expect("send");
        let r = c.read_head_response();
        assert_eq!(r.status, 101, "{}", r.head_str());
        conns.push(c);
    }
    let (n1, n2) = (w1.requests().len(), w2.requests().len());
    assert_eq!(n1 + n2, 6, "every handshake reached a live replica");
    assert!(n1 >= 2 && n2 >= 2, "spread: {n1} / {n2}");
}
