//! The balancer through the real binary (README, "Balancing"): shares by loadfactor for `byrequests` and `bybusyness`, passive health
//! (a closed, resetting or silent replica costs one failure per retry period, not one
//! per request), retries only where the request cannot have reached the app, 503 with
//! Retry-After when every replica is down, a restarted replica coming back, WebSocket
//! spread and fail-over, sticky sessions, and the `+H`/`+N`/`+D` status letters. Every
//! replica is a real listener on a loopback port. `byhash` has its own file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backend::{self, response, Backend, Reply};
use crate::support::*;

#[path = "balancer_byhash.rs"]
mod byhash;

/// A replica answering `200` with its name as the body.
fn named(name: &'static str) -> Backend {
    Backend::start(move |_| Reply::Send(response(200, &[], name.as_bytes())))
}

/// A replica named `name` on a port that was dead until now (restarted on its old port).
fn named_on(port: DeadPort, name: &'static str) -> Backend {
    Backend::start_on_listener(port.into_listener(), move |_| Reply::Send(response(200, &[], name.as_bytes())))
}

/// One worker, an admin listener, `[[proxy]] / → balancer://app/` and `[balancer.app]`
/// with `extra` lines and `members`. `proxy_timeout` is generous (the suite runs in
/// parallel on a small machine, and a slow answer from a live replica would eject it);
/// `short_timeout` is for the tests about a replica that never answers.
fn balanced(members: &str, extra: &str) -> String {
    balanced_with(members, extra, "workers = 1\nproxy_timeout = \"2s\"")
}

/// `balanced` with a 300 ms `proxy_timeout`.
fn short_timeout(members: &str, extra: &str) -> String {
    balanced_with(members, extra, "workers = 1\nproxy_timeout = \"300ms\"")
}

/// `balanced` with `server` lines in `[server]` (say `workers`; `proxy_timeout`
/// defaults to 2 s).
fn balanced_with(members: &str, extra: &str, server: &str) -> String {
    let timeout = if server.contains("proxy_timeout") { "" } else { "proxy_timeout = \"2s\"\n" };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"off\"\nconnect_timeout = \"2s\"\n{timeout}{server}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n[balancer.app]\n{extra}\nmembers = [{members}]\n"
    )
}

/// `"http://A", "http://B", ...`
fn urls(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("\"http://{a}\"")).collect::<Vec<_>>().join(", ")
}

fn get_on(c: &mut Conn, cookie: Option<&str>) -> Response {
    let cookie = cookie.map(|v| format!("Cookie: {v}\r\n")).unwrap_or_default();
    c.send(format!("GET /x HTTP/1.1\r\nHost: a\r\n{cookie}\r\n")).expect("send");
    c.try_read_response(false, Duration::from_secs(5)).unwrap_or_else(|e| panic!("a response: {e}"))
}

/// One GET on a fresh connection.
fn get(p: &Sidecar, cookie: Option<&str>) -> Response {
    get_on(&mut p.conn(), cookie)
}

/// `n` sequential GETs on one keep-alive connection; every one must be 200; the body
/// (the replica's name) of each, in order.
fn bodies(p: &Sidecar, n: usize) -> Vec<String> {
    let mut c = p.conn();
    (0..n)
        .map(|i| {
            let r = get_on(&mut c, None);
            assert_eq!(r.status, 200, "request {i}: {}\n{}", r.head_str(), r.body_str());
            if r.says_close() {
                c = p.conn();
            }
            r.body_str()
        })
        .collect()
}

fn tally(names: &[String]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for n in names {
        *seen.entry(n.clone()).or_insert(0) += 1;
    }
    seen
}

fn count(seen: &BTreeMap<String, usize>, name: &str) -> usize {
    seen.get(name).copied().unwrap_or(0)
}

/// A metric from the admin listener (summed over matching label sets; 0 when absent).
fn metric(p: &Sidecar, name: &str, labels: &[(&str, &str)]) -> f64 {
    let r = admin_get(p.admin_addr(), "/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.head_str());
    let samples = prom::parse(&r.body_str()).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"));
    prom::value(&samples, name, labels).unwrap_or(0.0)
}

const CONNECT_ERRORS: &str = "sidecar_backend_connect_errors_total";

// ---- shares --------------------------------------------------------------------------------

#[test]
fn byrequests_spreads_300_requests_exactly_75_75_150_by_loadfactor() {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let members =
        format!("\"http://{}\", \"http://{}\", {{ url = \"http://{}\", loadfactor = 2 }}", a.addr, b.addr, c.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\""));
    let order = bodies(&p, 300);
    let seen = tally(&order);
    assert_eq!((count(&seen, "a"), count(&seen, "b"), count(&seen, "c")), (75, 75, 150), "{seen:?}");
    // Smooth: every run of four picks holds a, b and c twice, never a burst of c.
    for (i, w) in order.windows(4).enumerate() {
        let s = tally(w);
        assert_eq!((count(&s, "a"), count(&s, "b"), count(&s, "c")), (1, 1, 2), "picks {i}..{}: {w:?}", i + 4);
    }
    // And each replica really received what it answered.
    assert_eq!((a.requests().len(), b.requests().len(), c.requests().len()), (75, 75, 150));
}

#[test]
fn bybusyness_spreads_300_idle_requests_roughly_by_loadfactor() {
    // One request at a time: every replica is equally idle, so ties go to a weighted
    // random pick (expected 75/75/150; these bounds are more than 4 standard deviations).
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let members =
        format!("\"http://{}\", \"http://{}\", {{ url = \"http://{}\", loadfactor = 2 }}", a.addr, b.addr, c.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"bybusyness\""));
    let seen = tally(&bodies(&p, 300));
    let (na, nb, nc) = (count(&seen, "a"), count(&seen, "b"), count(&seen, "c"));
    assert!((45..=105).contains(&na) && (45..=105).contains(&nb), "a and b near 75: {seen:?}");
    assert!((115..=185).contains(&nc), "c near 150: {seen:?}");
}

#[test]
fn bybusyness_is_the_default_and_refills_a_restarted_websocket_replica_first() {
    // README "Why bybusyness by default": the replica that was down gets the new
    // tunnels until it carries as many as the others.
    let w1 = backend::ws_echo();
    let spot = DeadPort::new();
    let members = format!("\"ws://{}\", {{ url = \"ws://{}\", retry = \"300ms\" }}", w1.addr, spot.addr);
    let p = Sidecar::start(&balanced(&members, ""));
    let mut tunnels: Vec<WsClient> = (0..4).map(|_| ws_open(p.addr(), "/chat")).collect();
    assert_eq!(w1.requests().len(), 4, "the only live replica has every tunnel");
    let w2 = Backend::start_on_listener(spot.into_listener(), backend::ws_echo_reply);
    std::thread::sleep(Duration::from_millis(400));
    tunnels.extend((0..4).map(|_| ws_open(p.addr(), "/chat")));
    assert_eq!(
        (w1.requests().len(), w2.requests().len()),
        (4, 4),
        "the emptied replica takes the new tunnels until it is as busy as the other"
    );
    for (i, t) in tunnels.iter_mut().enumerate() {
        ws_round_trip(t, &format!("tunnel {i}"));
    }
}

#[test]
fn bybusyness_steers_concurrent_requests_away_from_a_slow_replica() {
    // Least-connections: while the slow replica holds a request, new ones go elsewhere.
    let slow =
        Backend::start(|_| Reply::SendTwice(Vec::new(), Duration::from_millis(250), response(200, &[], b"slow")));
    let fast = named("fast");
    let p = Sidecar::start(&balanced(&urls(&[slow.addr, fast.addr]), "method = \"bybusyness\""));
    let addr = p.addr();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let mut names = Vec::new();
                let end = Instant::now() + Duration::from_millis(600);
                while Instant::now() < end {
                    let r = get_on(&mut c, None);
                    assert_eq!(r.status, 200);
                    names.push(r.body_str());
                }
                names
            })
        })
        .collect();
    let all: Vec<String> = clients.into_iter().flat_map(|t| t.join().expect("client thread")).collect();
    let seen = tally(&all);
    // At most one request at a time can be at the slow replica while the fast one is
    // idle; in 600 ms that is a handful against hundreds.
    assert!(count(&seen, "slow") <= 12 && count(&seen, "fast") >= 40, "{seen:?}");
}

// ---- passive health ----------------------------------------------------------------------

#[test]
fn a_replica_whose_listener_is_closed_loses_no_request_and_gets_one_connect_per_retry_period() {
    for workers in [1, 2] {
        let (a, b) = (named("a"), named("b"));
        let dead = DeadPort::new();
        let members = urls(&[a.addr, dead.addr, b.addr]);
        let p = Sidecar::start(&balanced_with(
            &members,
            "method = \"byrequests\"\nretry = \"10s\"",
            &format!("workers = {workers}"),
        ));
        // Fresh connections, so with two workers both get requests.
        let mut seen = BTreeMap::new();
        for _ in 0..60 {
            let r = get(&p, None);
            assert_eq!(r.status, 200, "workers={workers}: {}", r.head_str());
            *seen.entry(r.body_str()).or_insert(0) += 1;
        }
        assert_eq!(count(&seen, "a") + count(&seen, "b"), 60, "workers={workers}: {seen:?}");
        assert_eq!(
            metric(&p, CONNECT_ERRORS, &[]),
            1.0,
            "workers={workers}: one connect attempt to the closed port per retry period, for the whole process"
        );
        let said = format!("{}: connect failed", dead.addr);
        let lines = p.logs().into_iter().filter(|l| l.contains(&said)).count();
        assert_eq!(
            lines,
            1,
            "workers={workers}: one log line names the replica and the failure:\n{}",
            p.logs().join("\n")
        );
    }
}

#[test]
fn a_closed_replica_is_retried_at_most_once_per_retry_period() {
    let a = named("a");
    let dead = DeadPort::new();
    let p = Sidecar::start(&balanced(&urls(&[dead.addr, a.addr]), "method = \"byrequests\"\nretry = \"200ms\""));
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        let r = get(&p, None);
        assert_eq!(r.status, 200, "{}", r.head_str());
        n += 1;
    }
    let periods = started.elapsed().as_millis() / 200 + 1;
    let errors = metric(&p, CONNECT_ERRORS, &[]);
    assert!(
        errors >= 1.0 && errors <= periods as f64,
        "{errors} connect attempts in {periods} retry periods ({n} requests)"
    );
}

/// Sends GETs for `run` (each answered by the live member) and returns how many connect
/// attempts the closed member cost.
fn connect_attempts_during(p: &Sidecar, run: Duration) -> f64 {
    let started = Instant::now();
    let mut c = p.conn();
    while started.elapsed() < run {
        let r = get_on(&mut c, None);
        assert_eq!(r.status, 200, "{}", r.head_str());
        std::thread::sleep(Duration::from_millis(10));
    }
    metric(p, CONNECT_ERRORS, &[])
}

#[test]
fn failed_trials_double_the_rest_up_to_retry_max() {
    // retry 100 ms: trials at about 0.1, 0.3, 0.7 s after the first failure when the
    // rest doubles; one every 100 ms when retry_max caps it at 100 ms. Both at once.
    let run = |extra: &'static str| {
        std::thread::spawn(move || {
            let (a, dead) = (named("a"), DeadPort::new());
            let p = Sidecar::start(&balanced(
                &urls(&[dead.addr, a.addr]),
                &format!("method = \"byrequests\"\nretry = \"100ms\"\n{extra}"),
            ));
            connect_attempts_during(&p, Duration::from_millis(1000))
        })
    };
    let (doubling, capped) = (run(""), run("retry_max = \"100ms\""));
    let doubling = doubling.join().expect("doubling run");
    let capped = capped.join().expect("capped run");
    assert!((2.0..=5.0).contains(&doubling), "with back-off: {doubling} attempts in 1 s");
    assert!(capped >= 6.0, "retry_max = retry: a trial every 100 ms, got {capped} in 1 s");
}

#[test]
fn reload_with_an_unchanged_balancer_keeps_a_dead_member_resting() {
    let (a, dead) = (named("a"), DeadPort::new());
    let config = balanced(&urls(&[dead.addr, a.addr]), "method = \"byrequests\"\nretry = \"10s\"");
    let p = Sidecar::start(&config);
    assert_eq!(count(&tally(&bodies(&p, 4)), "a"), 4);
    assert_eq!(metric(&p, CONNECT_ERRORS, &[]), 1.0);
    p.rewrite_config(&config);
    p.signal("HUP");
    assert!(p.wait_for_log("reloaded", DEADLINE), "{:?}", p.logs());
    assert_eq!(count(&tally(&bodies(&p, 4)), "a"), 4);
    assert_eq!(metric(&p, CONNECT_ERRORS, &[]), 1.0, "a SIGHUP does not resurrect the dead member");
}

#[test]
fn a_replica_that_closes_every_connection_unanswered_loses_no_get_and_is_tried_once() {
    let closer = Backend::start(|_| Reply::Close);
    let a = named("a");
    let p = Sidecar::start(&balanced(&urls(&[closer.addr, a.addr]), "method = \"byrequests\"\nretry = \"10s\""));
    let seen = tally(&bodies(&p, 30));
    assert_eq!(count(&seen, "a"), 30, "the GET it dropped was retried on the other replica: {seen:?}");
    assert_eq!(closer.connections(), 1, "tried once, then out for its retry period");
}

#[test]
fn a_post_whose_body_was_sent_is_never_replayed_on_another_replica() {
    // The closing replica is first in line (byrequests picks the first of equals).
    let closer = Backend::start(|_| Reply::Close);
    let a = backend::echo();
    let p = Sidecar::start(&balanced(&urls(&[closer.addr, a.addr]), "method = \"byrequests\"\nretry = \"10s\""));
    let mut c = p.conn();
    c.send("POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").expect("send");
    let r = c.read_response();
    r.assert_error(502);
    assert_eq!(closer.requests().len(), 1, "the POST reached the first replica");
    assert!(a.requests().is_empty(), "and was not sent again: {:?}", a.requests());
}

#[test]
fn a_replica_that_never_answers_costs_one_timeout_not_one_per_request() {
    let (silent, a) = (backend::never_answers(), named("a"));
    let p = Sidecar::start(&short_timeout(&urls(&[silent.addr, a.addr]), "method = \"byrequests\"\nretry = \"10s\""));
    let t = Instant::now();
    let seen = tally(&bodies(&p, 20));
    let took = t.elapsed();
    assert_eq!(count(&seen, "a"), 20, "{seen:?}");
    // One 300 ms timeout (that GET is retried on `a`), not twenty (6 s).
    assert!(took < Duration::from_millis(1500), "20 GETs took {took:?}");
    assert_eq!(silent.requests().len(), 1, "the silent replica got one request");
}

#[test]
fn a_post_to_a_replica_that_never_answers_is_504_and_not_replayed() {
    let (silent, a) = (backend::never_answers(), backend::echo());
    let p = Sidecar::start(&short_timeout(&urls(&[silent.addr, a.addr]), "method = \"byrequests\"\nretry = \"10s\""));
    let mut c = p.conn();
    let t = Instant::now();
    c.send("POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").expect("send");
    c.read_response().assert_error(504);
    assert!(t.elapsed() < Duration::from_secs(2), "answered at proxy_timeout, took {:?}", t.elapsed());
    assert!(a.requests().is_empty(), "a POST is never replayed: {:?}", a.requests());
}

#[test]
fn failonstatus_relays_the_answer_and_ejects_the_replica() {
    let sick = Backend::start(|_| Reply::Send(response(503, &[], b"sick")));
    let a = named("a");
    let p = Sidecar::start(&balanced(
        &urls(&[sick.addr, a.addr]),
        "method = \"byrequests\"\nretry = \"10s\"\nfailonstatus = [503]",
    ));
    let mut c = p.conn();
    let first = get_on(&mut c, None);
    assert_eq!((first.status, first.body_str().as_str()), (503, "sick"), "the status is still relayed");
    for _ in 0..10 {
        let r = get_on(&mut c, None);
        assert_eq!((r.status, r.body_str().as_str()), (200, "a"));
    }
    assert_eq!(sick.requests().len(), 1);
}

#[test]
fn every_replica_down_is_503_with_retry_after_in_under_a_second() {
    for extra in ["retry = \"5s\"", "retry = \"5s\"\nmax_ejected_percent = 100"] {
        let (d1, d2) = (DeadPort::new(), DeadPort::new());
        let p = Sidecar::start(&balanced(&urls(&[d1.addr, d2.addr]), extra));
        for i in 0..3 {
            let t = Instant::now();
            let r = get(&p, None);
            let took = t.elapsed();
            r.assert_error(503);
            let retry: u64 = r
                .header("Retry-After")
                .unwrap_or_else(|| panic!("{extra}: no Retry-After: {}", r.head_str()))
                .parse()
                .expect("Retry-After in seconds");
            assert!((1..=5).contains(&retry), "{extra}: Retry-After {retry}");
            assert!(took < Duration::from_secs(1), "{extra}: request {i} took {took:?}");
        }
        if extra.contains("100") {
            // Every member ejected: the 503 comes without any new connect attempt.
            assert_eq!(metric(&p, CONNECT_ERRORS, &[]), 2.0, "{extra}: only the first request tried to connect");
        }
    }
}

#[test]
fn a_restarted_replica_gets_traffic_again_after_its_retry_time() {
    let a = named("a");
    let spot = DeadPort::new();
    let p = Sidecar::start(&balanced(&urls(&[a.addr, spot.addr]), "method = \"byrequests\"\nretry = \"500ms\""));
    let failed_at = Instant::now();
    let before = tally(&bodies(&p, 10));
    assert_eq!(count(&before, "a"), 10, "{before:?}");
    // b failed between `failed_at` and now, so it rests until some time in between plus
    // its 500 ms retry.
    let failed_by = Instant::now();
    let revived = named_on(spot, "b");
    // Still resting: nothing for it until its retry time.
    if failed_at.elapsed() < Duration::from_millis(350) {
        let resting = tally(&bodies(&p, 5));
        assert_eq!(count(&resting, "b"), 0, "traffic before the retry time: {resting:?}");
    }
    let wait = Duration::from_millis(600).saturating_sub(failed_by.elapsed());
    std::thread::sleep(wait);
    let after = tally(&bodies(&p, 20));
    assert!((8..=12).contains(&count(&after, "b")), "the restarted replica is back in the rotation: {after:?}");
    assert!(revived.requests().len() >= 8);
}

// ---- WebSocket ---------------------------------------------------------------------------------

#[test]
fn websocket_upgrades_spread_across_replicas_and_fail_over_when_one_is_down() {
    let (w1, w2) = (backend::ws_echo(), backend::ws_echo());
    let dead = DeadPort::new();
    let members = format!("\"ws://{}\", \"ws://{}\", \"ws://{}\"", w1.addr, dead.addr, w2.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\"\nretry = \"10s\""));
    let mut open: Vec<WsClient> = (0..6).map(|_| ws_open(p.addr(), "/chat")).collect();
    assert_eq!((w1.requests().len(), w2.requests().len()), (3, 3), "spread evenly; the dead one skipped");
    for (i, t) in open.iter_mut().enumerate() {
        ws_round_trip(t, &format!("first {i}"));
    }
    // w1 goes away (its tunnels with it); new handshakes all land on w2.
    drop(w1);
    let mut more: Vec<WsClient> = (0..4).map(|_| ws_open(p.addr(), "/chat")).collect();
    assert_eq!(w2.requests().len(), 7, "every new handshake went to the live replica");
    for (i, t) in more.iter_mut().enumerate() {
        ws_round_trip(t, &format!("after fail-over {i}"));
    }
    // The tunnels that were on w2 are untouched.
    let mut alive = 0;
    for t in &mut open {
        if async_io::block_on(within(Duration::from_millis(500), ws_try_echo(t, "still there"))) == Some(true) {
            alive += 1;
        }
    }
    assert_eq!(alive, 3, "the three tunnels on the live replica still echo");
}

/// Sends a message and says whether its echo came back.
async fn ws_try_echo(ws: &mut WsClient, text: &str) -> bool {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(ws.next().await, Some(Ok(Message::Text(t))) if t.as_str() == text)
}

// ---- sticky sessions and status letters -----------------------------------------------------

#[test]
fn sticky_cookie_pins_requests_to_the_member_with_that_route() {
    let (a, b) = (named("a"), named("b"));
    let members =
        format!("{{ url = \"http://{}\", route = \"r1\" }}, {{ url = \"http://{}\", route = \"r2\" }}", a.addr, b.addr);
    let p = Sidecar::start(&balanced(&members, "method = \"byrequests\"\nstickysession = \"JSESSIONID\""));
    for (cookie, want) in [
        ("JSESSIONID=abc.r2", "b"),
        ("other=1; JSESSIONID=abc.r1", "a"),
        ("JSESSIONID=x.y.r2; theme=dark", "b"), // the part after the last '.'
    ] {
        for _ in 0..6 {
            let r = get(&p, Some(cookie));
            assert_eq!(r.body_str(), want, "Cookie: {cookie}");
        }
    }
    // Another cookie whose name merely ends in JSESSIONID does not pin.
    let names: Vec<String> = (0..6).map(|_| get(&p, Some("XJSESSIONID=abc.r2")).body_str()).collect();
    let seen = tally(&names);
    assert_eq!((count(&seen, "a"), count(&seen, "b")), (3, 3), "{seen:?}");
}

#[test]
fn sticky_cookie_for_a_dead_member_is_served_by_another() {
    let a = named("a");
    let dead = DeadPort::new();
    let members = format!(
        "{{ url = \"http://{}\", route = \"r1\" }}, {{ url = \"http://{}\", route = \"r2\" }}",
        a.addr, dead.addr
    );
    let p = Sidecar::start(&balanced(&members, "stickysession = \"JSESSIONID\"\nretry = \"10s\""));
    for _ in 0..5 {
        let r = get(&p, Some("JSESSIONID=abc.r2"));
        assert_eq!((r.status, r.body_str().as_str()), (200, "a"), "no request is lost while a replica is healthy");
    }
}

#[test]
fn hot_standby_takes_traffic_only_when_the_normal_members_are_down() {
    let (a, b, spare) = (named("a"), named("b"), named("spare"));
    let members =
        format!("\"http://{}\", \"http://{}\", {{ url = \"http://{}\", status = \"+H\" }}", a.addr, b.addr, spare.addr);
    let p = Sidecar::start(&balanced(&members, "retry = \"10s\"\nmax_ejected_percent = 100"));
    let seen = tally(&bodies(&p, 20));
    assert_eq!(count(&seen, "spare"), 0, "{seen:?}");
    drop(a);
    let seen = tally(&bodies(&p, 10));
    assert_eq!(count(&seen, "b"), 10, "one normal member left: the standby waits: {seen:?}");
    drop(b);
    let seen = tally(&bodies(&p, 10));
    assert_eq!(count(&seen, "spare"), 10, "the standby takes over: {seen:?}");
}

#[test]
fn disabled_and_draining_members_never_get_a_request() {
    let (a, off, drain) = (named("a"), named("off"), named("drain"));
    let members = format!(
        "{{ url = \"http://{}\", route = \"ra\" }}, {{ url = \"http://{}\", status = \"+D\", route = \"rd\" }}, {{ url = \"http://{}\", status = \"+N\", route = \"rn\" }}",
        a.addr, off.addr, drain.addr
    );
    let p = Sidecar::start(&balanced(&members, "retry = \"10s\"\nstickysession = \"S\""));
    let seen = tally(&bodies(&p, 12));
    assert_eq!(count(&seen, "a"), 12, "{seen:?}");
    // Not even a sticky session names them back into service.
    assert_eq!(get(&p, Some("S=1.rn")).body_str(), "a");
    assert_eq!(get(&p, Some("S=1.rd")).body_str(), "a");
    // With the only normal member gone there is nowhere to go: 503, not +D or +N.
    drop(a);
    for _ in 0..3 {
        get(&p, None).assert_error(503);
    }
    assert!(off.requests().is_empty() && drain.requests().is_empty(), "+D/+N were used");
}

#[test]
fn marking_a_member_draining_on_reload_keeps_its_open_tunnel_and_sends_new_ones_elsewhere() {
    let (w1, w2) = (backend::ws_echo(), backend::ws_echo());
    let config = |status: &str| {
        balanced(&format!("{{ url = \"ws://{}\"{status} }}, \"ws://{}\"", w1.addr, w2.addr), "method = \"byrequests\"")
    };
    let p = Sidecar::start(&config(""));
    let mut first = ws_open(p.addr(), "/chat");
    assert_eq!(w1.requests().len(), 1, "byrequests starts with the first member");
    ws_round_trip(&mut first, "before");
    p.rewrite_config(&config(", status = \"+N\""));
    p.signal("HUP");
    assert!(p.wait_for_log("reloaded", DEADLINE), "{:?}", p.logs());
    let mut later: Vec<WsClient> = (0..3).map(|_| ws_open(p.addr(), "/chat")).collect();
    assert_eq!((w1.requests().len(), w2.requests().len()), (1, 3), "no new tunnel on the draining member");
    ws_round_trip(&mut first, "while draining");
    for t in &mut later {
        ws_round_trip(t, "on the other member");
    }
}

// ---- a panicking connection task -----------------------------------------------------------

/// A connection task that panics while its request holds a member (a debug-build hook)
/// gives the member's count back: `bybusyness` would otherwise avoid that member for
/// good. The process keeps serving, and the open-connection gauge returns to 0.
#[test]
fn panicking_connection_task_gives_its_members_count_back() {
    let a = named("a");
    let config = balanced(&format!("\"http://{}\"", a.addr), "");
    // No backtrace: printing one from a debug build can take seconds on a loaded machine.
    let env = [("SIDECAR_TEST_PANIC_TARGET", "/boom"), ("RUST_BACKTRACE", "0")];
    let p = Sidecar::start_with_env(TempDir::new(), &config, &env);
    for _ in 0..3 {
        let mut c = p.conn();
        c.send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        c.expect_closed(Duration::from_secs(10));
    }
    assert!(p.wait_for_log("panicking on /boom", DEADLINE), "the hook fired: {:?}", p.logs());
    assert_eq!(p.get("/").body_str(), "a", "the member still serves");
    let labels = [("balancer", "app")];
    assert!(
        wait_until(DEADLINE, || metric(&p, "sidecar_member_requests", &labels) == 0.0
            && metric(&p, "sidecar_open_connections", &[]) == 0.0),
        "member requests {} and open connections {} back to 0",
        metric(&p, "sidecar_member_requests", &labels),
        metric(&p, "sidecar_open_connections", &[])
    );
}
