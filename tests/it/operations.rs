//! Operations through the real binary (README, "Operations" and "Access log"; the
//! `[server]` limits): SIGTERM/SIGINT drain, SIGHUP reload, the admin
//! endpoint (`/healthz`, `/readyz`, `/metrics`, `/status`), the header timeout, the
//! connection and body limits, and the access log on stdout. Signals go only to the
//! sidecar process each test started (`kill -SIG <pid>`).

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::support::backend::{self, response, Backend, Reply};
use crate::support::json;
use crate::support::*;

/// A backend that answers `200 slow` after `delay`.
fn slow(delay: Duration) -> Backend {
    Backend::start(move |_| Reply::SendTwice(Vec::new(), delay, response(200, &[], b"slow")))
}

/// `config_to` plus an admin listener on a free port.
fn with_admin(backend: SocketAddr, extra_server: &str) -> String {
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config_to(backend, extra_server))
}

/// Whether a new TCP connection to `addr` is refused (or reset before any answer).
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Err(_) => true,
        Ok(s) => {
            // Accepted after all: it must then be closed without being served.
            let mut c = Conn::from_io(Box::new(async_io::Async::new(s).expect("async stream")));
            let _ = c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            matches!(c.try_read_response(false, Duration::from_millis(300)), Err(ReadError::Closed(_)))
        }
    }
}

// ---- SIGTERM / SIGINT ------------------------------------------------------------------------

#[test]
fn sigterm_during_a_2s_request_lets_it_finish_with_200_and_exits_0() {
    let b = slow(Duration::from_secs(2));
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"5s\""));
    let mut c = p.conn();
    let sent = Instant::now();
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(b.wait_for_requests(1, DEADLINE).len(), 1, "the request reached the backend");
    p.signal("TERM");
    assert!(p.wait_for_log("draining", DEADLINE), "one log line says the drain began:\n{}", p.logs().join("\n"));
    let r = c.try_read_response(false, Duration::from_secs(4)).expect("the in-flight request is answered");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"), "{}", r.head_str());
    assert!(sent.elapsed() >= Duration::from_millis(1900), "answered by the backend, not cut short");
    assert!(r.says_close(), "a response finished while draining says Connection: close: {}", r.head_str());
    let answered = Instant::now();
    assert_eq!(p.wait_exit(Duration::from_secs(3)), Some(0), "exit code; logs:\n{}", p.logs().join("\n"));
    assert!(answered.elapsed() < Duration::from_secs(1), "exits once nothing is left: {:?}", answered.elapsed());
}

#[test]
fn new_connections_are_refused_after_sigterm_while_a_request_is_in_flight() {
    // `/slow` takes 2 s; anything else is answered at once.
    let b = Backend::start(|req| {
        if req.target == "/slow" {
            Reply::SendTwice(Vec::new(), Duration::from_secs(2), response(200, &[], b"slow"))
        } else {
            Reply::Send(response(200, &[], b"fast"))
        }
    });
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"5s\""));
    let addr = p.addr();
    // An idle keep-alive connection, and one with a request in flight.
    let mut idle = p.conn();
    idle.send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    let r = idle.try_read_response(false, Duration::from_secs(4)).expect("first answer");
    assert_eq!(r.status, 200);
    let mut busy = p.conn();
    busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(b.wait_for_requests(2, DEADLINE).len(), 2);
    let signalled = Instant::now();
    p.signal("TERM");
    assert!(wait_until(Duration::from_secs(1), || refused(addr)), "new connections are refused after SIGTERM");
    assert!(signalled.elapsed() < Duration::from_millis(1500), "refused while the slow request is still in flight");
    assert!(busy.buffered().is_empty(), "the slow answer is not in yet");
    // The idle connection is closed rather than kept.
    idle.expect_closed(Duration::from_secs(1));
    let r = busy.try_read_response(false, Duration::from_secs(4)).expect("the in-flight request is answered");
    assert_eq!(r.status, 200);
    assert_eq!(p.wait_exit(Duration::from_secs(3)), Some(0), "{}", p.logs().join("\n"));
}

#[test]
fn sigterm_sends_each_tunnel_a_close_1001_and_exits_once_the_handshake_is_done() {
    // drain_timeout is long: the process ends because the closing handshake finished,
    // not because time ran out.
    let b = backend::ws_echo();
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"20s\""));
    let mut ws = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut ws, "before");
    let signalled = Instant::now();
    p.signal("TERM");
    assert_eq!(ws_next_close_code(&mut ws, DEADLINE), Some(1001), "Going Away");
    // The client library answers the Close; sidecar then closes the connection.
    assert!(ws_wait_closed(&mut ws, DEADLINE), "the connection closes after the handshake");
    drop(ws);
    assert_eq!(p.wait_exit(Duration::from_secs(3)), Some(0), "{}", p.logs().join("\n"));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "exits when the handshake is done, took {:?}",
        signalled.elapsed()
    );
    let line = p.stdout_lines().into_iter().find(|l| l.contains("/chat")).unwrap_or_default();
    assert!(line.contains("draining (1001)"), "the access line says why: {line}");
}

#[test]
fn sigint_drains_like_sigterm_and_a_second_sigint_exits_130_at_once() {
    let b = backend::ws_echo();
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"30s\""));
    let addr = p.addr();
    let ws = ws_open(addr, "/chat");
    p.signal("INT");
    assert!(wait_until(Duration::from_secs(1), || refused(addr)), "SIGINT stops accepting");
    // The client has not read sidecar's Close, so it has not answered: the tunnel
    // keeps the process in its drain.
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.is_running(), "the open tunnel keeps the process in its drain");
    let second = Instant::now();
    p.signal("INT");
    assert_eq!(p.wait_exit(Duration::from_secs(2)), Some(130), "{}", p.logs().join("\n"));
    drop(ws);
    assert!(second.elapsed() < Duration::from_secs(1), "at once: {:?}", second.elapsed());
}

/// Starts sidecar on `config`, sends `signal` the instant its `listening on` line
/// appears (from a shell already waiting for the go, so no process start is in the
/// way), and returns how it ended: `Ok(())` when a line containing `handled` followed
/// (the signal was handled), `Err(status)` when the process died of the signal.
fn signal_at_startup(config: &std::path::Path, signal: &str, handled: &str) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidecar");
    let mut killer = Command::new("sh")
        .arg("-c")
        .arg(format!("read go && kill -{signal} {}", child.id()))
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut go = killer.stdin.take();
    // Generous: a debug build starting on a loaded machine; what is asserted is that the
    // process handled the signal rather than died of it.
    let mut outcome = Err("no outcome within 10 s".to_string());
    let end = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if line.contains("listening on") {
            if let Some(mut w) = go.take() {
                let _ = w.write_all(b"go\n");
            }
        } else if go.is_none() && line.contains(handled) {
            outcome = Ok(());
            break;
        }
    }
    drop(go);
    let _ = killer.wait();
    if outcome.is_err() {
        // The reader ended (EOF) or the deadline passed: did the process die?
        if wait_until(Duration::from_millis(500), || matches!(child.try_wait(), Ok(Some(_)))) {
            outcome = Err(format!("{:?}", child.try_wait()));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[test]
fn signal_right_after_the_listening_line_is_handled_not_fatal() {
    // A supervisor may reload or stop sidecar the moment it reports it is listening
    // (systemd ExecReload, a Kubernetes rollout). The handlers must be in place by then.
    let b = backend::answers_ok("ok");
    let dir = TempDir::new();
    let config = dir.write("sidecar.toml", config_to(b.addr, ""));
    let mut died = Vec::new();
    let started = Instant::now();
    let mut tries = 0;
    while tries < 10 && started.elapsed() < Duration::from_secs(2) {
        tries += 1;
        let (signal, handled) = if tries % 2 == 0 { ("HUP", "SIGHUP") } else { ("TERM", "SIGTERM") };
        if let Err(e) = signal_at_startup(&config, signal, handled) {
            died.push(format!("try {tries} SIG{signal}: {e}"));
        }
    }
    assert!(
        died.is_empty(),
        "{} of {tries} processes did not handle a signal sent right after `listening on`:\n{}",
        died.len(),
        died.join("\n")
    );
}

// ---- SIGHUP -----------------------------------------------------------------------------------

#[test]
fn sighup_adds_a_proxy_route_while_an_open_websocket_keeps_echoing() {
    let ws_backend = backend::ws_echo();
    let other = backend::answers_ok("new route");
    let base = config_to(ws_backend.addr, "");
    let p = Sidecar::start(&base);
    let mut ws = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut ws, "before reload");
    let r = p.get("/new/x");
    assert_eq!(r.header("x-echo-target"), Some("/new/x"), "no /new route yet: {}", r.head_str());
    p.rewrite_config(&format!("{base}\n[[proxy]]\npath = \"/new\"\nto = \"http://{}/\"\n", other.addr));
    p.signal("HUP");
    let served = wait_until(DEADLINE, || p.get("/new/x").body_str() == "new route");
    assert!(served, "the new route answers after SIGHUP:\n{}", p.logs().join("\n"));
    assert_eq!(other.requests().last().map(|r| r.target.clone()).as_deref(), Some("/x"));
    ws_round_trip(&mut ws, "after reload");
    assert_eq!(ws_backend.requests().iter().filter(|r| r.is_websocket_handshake()).count(), 1, "the same tunnel");
}

#[test]
fn sighup_config_applies_to_the_next_request_on_an_open_keepalive_connection() {
    let b = backend::echo();
    let base = config_to(b.addr, "");
    let p = Sidecar::start(&base);
    let mut c = p.conn();
    c.send("GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 200);
    p.rewrite_config(&format!("{base}\n[[rewrite]]\nrule = \"^/admin - [F]\"\n"));
    p.signal("HUP");
    assert!(p.wait_for_log("reloaded", DEADLINE), "{}", p.logs().join("\n"));
    // The worker takes the new config from the signal thread a moment after the log
    // line: poll until a new connection sees it (polls before that may go through).
    let forbidden = wait_until(DEADLINE, || p.get("/admin/y").status == 403);
    assert!(forbidden, "new connections see the new rule");
    c.send("GET /admin/z HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    c.read_response().assert_error(403);
    assert!(b.requests().iter().all(|r| r.target != "/admin/z"), "{:?}", b.requests());
}

#[test]
fn sighup_lets_a_request_in_flight_finish_on_the_old_config() {
    let old = slow(Duration::from_millis(800));
    let new = backend::answers_ok("new");
    let p = Sidecar::start(&config_to(old.addr, ""));
    let mut c = p.conn();
    c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(old.wait_for_requests(1, DEADLINE).len(), 1);
    p.rewrite_config(&config_to(new.addr, ""));
    p.signal("HUP");
    assert!(p.wait_for_log("reloaded", DEADLINE), "{}", p.logs().join("\n"));
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"), "the old backend answers the old request");
    assert_eq!(p.get("/").body_str(), "new", "new requests use the new config");
}

#[test]
fn sighup_with_a_changed_listen_warns_and_keeps_serving_on_the_old_address() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, ""));
    let elsewhere = DeadPort::new();
    let moved = config_to(b.addr, "").replace("127.0.0.1:0", &elsewhere.addr.to_string());
    p.rewrite_config(&moved);
    p.signal("HUP");
    assert!(p.wait_for_log("restart", DEADLINE), "a warning says listen needs a restart:\n{}", p.logs().join("\n"));
    assert_eq!(p.get("/").status, 200, "still listening where it started");
}

#[test]
fn broken_config_on_sighup_is_rejected_and_the_old_one_keeps_serving() {
    let old = backend::answers_ok("old");
    let new = backend::answers_ok("new");
    let base = config_to(old.addr, "");
    let p = Sidecar::start(&base);
    for (what, broken) in [
        ("TOML syntax", "[server\nlisten = \"127.0.0.1:0\"\n".to_string()),
        ("wrong value type", "[server]\nlisten = 5\n".to_string()),
        ("unknown balancer", format!("{base}\n[[proxy]]\npath = \"/b\"\nto = \"balancer://nope/\"\n")),
        ("bad regex", format!("{base}\n[[rewrite]]\nrule = \"^/(x /y [L]\"\n")),
    ] {
        let before = p.logs().iter().filter(|l| l.contains("reload rejected")).count();
        p.rewrite_config(&broken);
        p.signal("HUP");
        let rejected =
            wait_until(DEADLINE, || p.logs().iter().filter(|l| l.contains("reload rejected")).count() > before);
        assert!(rejected, "{what}: no `reload rejected` line:\n{}", p.logs().join("\n"));
        let line = p.logs().into_iter().rfind(|l| l.contains("reload rejected")).unwrap_or_default();
        assert!(line.contains("sidecar.toml:"), "{what}: the rejection names the file and line: {line}");
        let r = p.get("/");
        assert_eq!((r.status, r.body_str().as_str()), (200, "old"), "{what}: the old config still serves");
    }
    // A good config afterwards is taken.
    p.rewrite_config(&config_to(new.addr, ""));
    p.signal("HUP");
    assert!(wait_until(DEADLINE, || p.get("/").body_str() == "new"), "{}", p.logs().join("\n"));
}

// ---- admin endpoint ---------------------------------------------------------------------------

/// Fetches /metrics and parses every sample (panics on a line that is not valid).
fn scrape(admin: SocketAddr) -> Vec<prom::Sample> {
    let r = admin_get(admin, "/metrics");
    assert_eq!(r.status, 200, "{}", r.head_str());
    let text = r.body_str();
    let samples = prom::parse(&text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"));
    // Every sample belongs to a family announced by `# TYPE` (a histogram's samples
    // carry _bucket/_sum/_count).
    let families: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' ').map(|(n, k)| (n.to_string(), k.to_string())))
        .collect();
    for s in &samples {
        let known = families.iter().any(|(name, kind)| {
            s.name == *name
                || (kind == "histogram" && ["_bucket", "_sum", "_count"].iter().any(|x| s.name == format!("{name}{x}")))
        });
        assert!(known, "{} has no # TYPE line:\n{text}", s.name);
    }
    samples
}

fn val(samples: &[prom::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::value(samples, name, labels).unwrap_or(0.0)
}

#[test]
fn prometheus_reader_accepts_valid_lines_and_refuses_others() {
    for (line, ok) in [
        ("a 1", true),
        ("a_b:c{x=\"1\",y=\"a\\\"b\"} 2.5", true),
        ("a{le=\"+Inf\"} 3", true),
        ("a 1 1700000000000", true),
        ("a +Inf", true),
        ("1a 1", false),
        ("a  1", false),
        ("a{x=1} 1", false),
        ("a{x=\"1\" 1", false),
        ("a one", false),
        ("a{x=\"1\",x=\"2\"} 1", false),
    ] {
        assert_eq!(prom::sample(line).is_ok(), ok, "line {line:?}: {:?}", prom::sample(line));
    }
}

#[test]
fn metrics_counters_move_with_traffic_and_every_line_parses() {
    let b = backend::answers_ok("hello");
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/app\"\nto = \"http://{}/\"\n",
        b.addr
    ));
    let admin = p.admin_addr();
    assert_ne!(admin, p.addr(), "the admin listener is never the public port");
    let before = scrape(admin);
    let mut c = p.conn();
    for _ in 0..3 {
        c.send("GET /app/x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    c.send("GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 404);
    // A request is counted as it finishes, just after its last byte went out: wait for
    // the fourth.
    let mut after = scrape(admin);
    let counted = |after: &_| {
        val(after, "sidecar_request_duration_seconds_count", &[])
            - val(&before, "sidecar_request_duration_seconds_count", &[])
    };
    let end = Instant::now() + DEADLINE;
    while counted(&after) < 4.0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        after = scrape(admin);
    }
    let delta = |name: &str, labels: &[(&str, &str)]| val(&after, name, labels) - val(&before, name, labels);
    assert_eq!(delta("sidecar_requests_total", &[("route", "proxy[0]"), ("status", "2xx")]), 3.0);
    assert_eq!(delta("sidecar_requests_total", &[("status", "4xx")]), 1.0, "the 404 is counted");
    assert_eq!(delta("sidecar_request_duration_seconds_count", &[]), 4.0);
    assert!(delta("sidecar_bytes_out_total", &[]) >= 15.0, "three 5-byte bodies went out");
    assert_eq!(delta("sidecar_pool_new_total", &[]), 1.0, "one backend connection");
    assert_eq!(delta("sidecar_pool_reused_total", &[]), 2.0, "reused for the next two requests");
    // The histogram is cumulative and ends at +Inf = count.
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter(|s| s.name == "sidecar_request_duration_seconds_bucket")
        .map(|s| {
            let le = s.labels.get("le").expect("le label");
            (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") }, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets: {buckets:?}");
    assert_eq!(
        buckets.last().map(|b| (b.0, b.1)),
        Some((f64::INFINITY, val(&after, "sidecar_request_duration_seconds_count", &[])))
    );
    // The admin paths on the public port are just paths (proxied or 404), never the admin.
    let r = p.get("/metrics");
    assert!(!r.body_str().contains("sidecar_requests_total"), "{}", r.body_str());
    assert_eq!(admin_get(admin, "/healthz").status, 200);
}

#[test]
fn metrics_gauges_count_open_connections_and_tunnels() {
    let b = backend::ws_echo();
    let p = Sidecar::start(&with_admin(b.addr, ""));
    let admin = p.admin_addr();
    let gauges = || {
        let s = scrape(admin);
        (val(&s, "sidecar_open_connections", &[]), val(&s, "sidecar_open_tunnels", &[]))
    };
    assert_eq!(gauges(), (0.0, 0.0));
    let mut ws = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut ws, "x");
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 200);
    assert_eq!(gauges(), (2.0, 1.0), "a tunnel and a keep-alive connection");
    block_within(DEADLINE, "close", ws.close(None)).expect("close");
    drop(ws);
    drop(c);
    assert!(wait_until(DEADLINE, || gauges() == (0.0, 0.0)), "back to zero: {:?}", gauges());
}

#[test]
fn readyz_turns_503_when_every_member_of_the_routes_balancer_is_down() {
    let (m1, m2) = (backend::answers_ok("m1"), backend::answers_ok("m2"));
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n\
         [balancer.app]\nretry = \"30s\"\nmax_ejected_percent = 100\nmembers = [\"http://{}\", \"http://{}\"]\n",
        m1.addr, m2.addr
    ));
    let admin = p.admin_addr();
    let r = admin_get(admin, "/readyz");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(p.get("/").status, 200);
    drop(m1);
    drop(m2);
    // Passive health: a request or two finds both members dead.
    let mut tries = 0;
    let not_ready = wait_until(DEADLINE, || {
        tries += 1;
        let _ = p.conn().send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let _ = p.get("/");
        admin_get(admin, "/readyz").status == 503
    });
    assert!(not_ready, "/readyz after {tries} rounds: {}", admin_get(admin, "/readyz").body_str());
    let r = admin_get(admin, "/readyz");
    assert!(r.body_str().contains("balancer \"app\""), "the reason names the balancer: {}", r.body_str());
    assert_eq!(admin_get(admin, "/healthz").status, 200, "alive, just not ready");
    // /status is JSON and shows both members out.
    let status = admin_get(admin, "/status");
    let json =
        json::parse(&status.body_str()).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", status.body_str()));
    let members = json
        .get("balancers")
        .and_then(Value::as_array)
        .and_then(|b| b.first())
        .and_then(|b| b.get("members"))
        .and_then(Value::as_array)
        .expect("balancers[0].members");
    let states: Vec<&str> = members.iter().filter_map(|m| m.get("state").and_then(Value::as_str)).collect();
    assert_eq!(states, ["failed", "failed"], "{}", status.body_str());
    let up = scrape(admin);
    assert_eq!(val(&up, "sidecar_member_up", &[("balancer", "app")]), 0.0, "no member up");
}

#[test]
fn readyz_turns_503_when_a_rewrite_rules_balancer_has_no_usable_member() {
    // The WebSocket rule set with the WebSocket side balanced: the rule is a route too (the
    // access log and /metrics call it `rewrite[0]`), so a dead ws cluster is not ready.
    let web = backend::answers_ok("web");
    let ws = backend::ws_echo();
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[rewrite]]\ncond = [\"%{{HTTP:Upgrade}} websocket [NC]\", \"%{{HTTP:Connection}} upgrade [NC]\"]\nrule = \".* balancer://ws%{{REQUEST_URI}} [P,L]\"\n\n\
         [[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n\n[balancer.ws]\nretry = \"30s\"\nmax_ejected_percent = 100\nmembers = [\"ws://{}\"]\n",
        web.addr, ws.addr
    ));
    let admin = p.admin_addr();
    let mut t = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut t, "up");
    assert_eq!(admin_get(admin, "/readyz").status, 200);
    drop(t);
    drop(ws);
    let r = block_within(DEADLINE, "handshake", ws_connect(p.addr(), "/chat"));
    assert!(r.is_err(), "the ws cluster is down");
    let status = admin_get(admin, "/status").body_str();
    assert!(status.contains("\"state\":\"failed\""), "the member is out: {status}");
    let r = admin_get(admin, "/readyz");
    assert_eq!(r.status, 503, "every member of the rule's balancer is out: {}", r.body_str());
}

// ---- limits -----------------------------------------------------------------------------------

#[test]
fn slow_header_drip_is_cut_off_at_header_timeout_while_another_client_is_served() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "header_timeout = \"1s\""));
    let addr = p.addr();
    let dripper = std::thread::spawn(move || {
        let mut c = Conn::open(addr);
        let started = Instant::now();
        let mut cut = None;
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if c.send([*byte]).is_err() {
                cut = Some(started.elapsed());
                break;
            }
            // One byte per 200 ms; has sidecar answered or closed meanwhile?
            let (mut got, closed) = c.read_until_close(Duration::from_millis(200));
            if !got.is_empty() || closed {
                cut = Some(started.elapsed());
                if !closed {
                    got.extend(c.read_until_close(Duration::from_secs(1)).0);
                }
                return (cut, got);
            }
        }
        (cut, Vec::new())
    });
    // Meanwhile another client is served promptly, again and again.
    let mut c = p.conn();
    let end = Instant::now() + Duration::from_millis(900);
    let mut served = 0;
    while Instant::now() < end {
        let t = Instant::now();
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
        assert!(t.elapsed() < Duration::from_millis(200), "another client waited {:?}", t.elapsed());
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served >= 5);
    let (cut, answer) = dripper.join().expect("dripper thread");
    let cut = cut.expect("the dripping client is cut off");
    assert!(cut >= Duration::from_millis(800) && cut < Duration::from_millis(2000), "cut off after {cut:?}");
    if !answer.is_empty() {
        let (rs, _) = parse_responses(&answer);
        assert_eq!(rs.first().map(|r| r.status), Some(408), "{}", show(&answer));
    }
    assert!(b.requests().iter().all(|r| !r.has("X-Slow")), "the partial head never reached the backend");
}

#[test]
fn max_connections_5_answers_the_6th_with_503_while_the_first_5_keep_working() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "max_connections = 5"));
    let mut open: Vec<Conn> = (0..5).map(|_| p.conn()).collect();
    for c in &mut open {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    let mut sixth = p.conn();
    let _ = sixth.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = sixth.read_response();
    r.assert_error(503);
    assert_eq!(r.header("Retry-After"), Some("1"), "{}", r.head_str());
    sixth.expect_closed(DEADLINE);
    for (i, c) in open.iter_mut().enumerate() {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200, "connection {i} keeps working");
    }
    // One leaves: a new connection is served again.
    drop(open.pop());
    let ok = wait_until(DEADLINE, || {
        let mut c = p.conn();
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok()
            && c.try_read_response(false, DEADLINE).is_ok_and(|r| r.status == 200)
    });
    assert!(ok, "a slot freed by a closed connection is usable again");
}

#[test]
fn body_over_max_body_bytes_is_413_by_content_length_and_while_chunked() {
    let b = backend::echo();
    let p = Sidecar::start(&config_to(b.addr, "max_body_bytes = 10"));
    let mut c = p.conn();
    c.send("POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789").expect("send");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "0123456789"), "at the limit is fine");
    let mut c = p.conn();
    c.send("POST /over HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world").expect("send");
    c.read_response().assert_error(413);
    let mut c = p.conn();
    let mut req = b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(chunked(b"0123456789abcdef", 4));
    let _ = c.send(req);
    match c.try_read_response(false, DEADLINE) {
        Ok(r) => r.assert_error(413),
        Err(ReadError::Closed(_)) => {} // the body was already streaming: a close is the answer
        Err(e) => panic!("chunked body over the limit: {e}"),
    }
    let seen: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/exact"], "no body over the limit reached the backend whole");
}

#[test]
fn over_max_body_bytes_with_expect_100_continue_is_413_without_a_100() {
    let b = backend::echo();
    let p = Sidecar::start(&config_to(b.addr, "max_body_bytes = 10"));
    let mut c = p.conn();
    c.send("PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n").expect("send");
    let r = c.read_response();
    assert_eq!(r.status, 413, "the final answer comes first, never a 100: {}", r.head_str());
    assert_eq!(b.connections(), 0, "the backend was not asked");
}

#[test]
fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "keepalive_timeout = \"300ms\""));
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 200);
    let idle = Instant::now();
    c.expect_closed(Duration::from_secs(2));
    let took = idle.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(1000), "closed after {took:?}");
}

// ---- access log -------------------------------------------------------------------------------

/// Apache combined + sidecar's tail: `route=… replica=… ttfb=…ms total=…ms [...]`.
fn combined() -> Regex {
    Regex::new(
        r#"^(?P<peer>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "(?P<req>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)" route=(?P<route>\S+) replica=(?P<replica>\S+) ttfb=(?:\d+ms|-) total=\d+ms(?P<rest>.*)$"#,
    )
    .expect("regex")
}

#[test]
fn access_log_writes_one_combined_line_per_request_on_stdout() {
    let b = backend::answers_ok("hello");
    let p = Sidecar::start(&config_to(b.addr, ""));
    let mut c = p.conn();
    c.send("GET /page?q=1 HTTP/1.1\r\nHost: a\r\nReferer: http://ref.example/\r\nUser-Agent: tester/1.0\r\nCookie: session=SECRETCOOKIE\r\nAuthorization: Bearer SECRETTOKEN\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().status, 200);
    let lines = p.wait_for_stdout_lines(1, DEADLINE);
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    let caps = combined().captures(&lines[0]).unwrap_or_else(|| panic!("not combined format: {:?}", lines[0]));
    assert_eq!(&caps["peer"], "127.0.0.1");
    assert_eq!(&caps["req"], "GET /page?q=1 HTTP/1.1");
    assert_eq!(&caps["status"], "200");
    assert_eq!(&caps["bytes"], "5");
    assert_eq!(&caps["referer"], "http://ref.example/");
    assert_eq!(&caps["ua"], "tester/1.0");
    assert_eq!(&caps["route"], "proxy[0]");
    assert_eq!(&caps["replica"], format!("http://{}", b.addr));
    assert!(!lines[0].contains("SECRET"), "Cookie and Authorization values are never logged: {}", lines[0]);
    assert!(!p.logs().iter().any(|l| l.contains("GET /page?q=1")), "access lines go to stdout only");
    // An error line carries its reason; a request with no head has `"-"`.
    let mut bad = p.conn();
    bad.send("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n").expect("send");
    assert_eq!(bad.read_response().status, 400);
    let lines = p.wait_for_stdout_lines(2, DEADLINE);
    let caps = combined().captures(&lines[1]).unwrap_or_else(|| panic!("not combined format: {:?}", lines[1]));
    assert_eq!(&caps["status"], "400");
    assert!(caps["rest"].contains("reason=\""), "{}", lines[1]);
    // Request bytes are escaped: a quote cannot end the quoted field early.
    let mut q = p.conn();
    q.send("GET /q?a=\"b\" HTTP/1.1\r\nHost: a\r\nUser-Agent: x\"y\r\n\r\n").expect("send");
    assert_eq!(q.read_response().status, 200);
    let lines = p.wait_for_stdout_lines(3, DEADLINE);
    let caps = combined().captures(&lines[2]).unwrap_or_else(|| panic!("quotes broke the format: {:?}", lines[2]));
    assert_eq!(&caps["req"], "GET /q?a=\\x22b\\x22 HTTP/1.1");
    assert_eq!(&caps["ua"], "x\\x22y");
}

#[test]
fn access_log_writes_a_tunnel_line_with_its_bytes_when_it_closes() {
    let b = backend::ws_echo();
    let p = Sidecar::start(&config_to(b.addr, ""));
    let mut ws = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut ws, "twelve bytes");
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.stdout_lines().is_empty(), "a tunnel is logged when it closes: {:?}", p.stdout_lines());
    block_within(DEADLINE, "close", ws.close(None)).expect("close");
    drop(ws);
    let lines = p.wait_for_stdout_lines(1, DEADLINE);
    let caps = combined().captures(lines.first().expect("a line")).unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(&caps["status"], "101");
    assert_eq!(&caps["req"], "GET /chat HTTP/1.1");
    let tail = Regex::new(r" up=(\d+) down=(\d+)").expect("regex");
    let t = tail.captures(&caps["rest"]).unwrap_or_else(|| panic!("no up=/down= in {}", lines[0]));
    let (up, down): (u64, u64) = (t[1].parse().expect("up"), t[2].parse().expect("down"));
    assert!(up >= 12 && down >= 12, "tunnel bytes both ways: {}", lines[0]);
}

#[test]
fn access_log_json_writes_one_object_per_line() {
    let b = backend::answers_ok("hello");
    let p = Sidecar::start(&config_to(b.addr, "access_log = \"json\""));
    let mut c = p.conn();
    c.send("GET /j?x=\"1\" HTTP/1.1\r\nHost: a\r\nUser-Agent: tester/1.0\r\nCookie: s=SECRETCOOKIE\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().status, 200);
    let lines = p.wait_for_stdout_lines(1, DEADLINE);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let j = json::parse(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]));
    assert_eq!(j.get("status").and_then(Value::as_f64), Some(200.0), "{}", lines[0]);
    assert_eq!(j.get("request").and_then(Value::as_str), Some("GET /j?x=\"1\" HTTP/1.1"));
    assert_eq!(j.get("route").and_then(Value::as_str), Some("proxy[0]"));
    assert_eq!(j.get("replica").and_then(Value::as_str), Some(format!("http://{}", b.addr).as_str()));
    assert_eq!(j.get("user_agent").and_then(Value::as_str), Some("tester/1.0"));
    assert_eq!(j.get("bytes").and_then(Value::as_f64), Some(5.0));
    assert!(j.get("total_ms").and_then(Value::as_f64).is_some(), "{}", lines[0]);
    assert!(!lines[0].contains("SECRET"), "{}", lines[0]);
}

#[test]
fn access_log_off_writes_nothing() {
    let b = backend::answers_ok("hello");
    let p = Sidecar::start(&config_to(b.addr, "access_log = \"off\""));
    for _ in 0..3 {
        assert_eq!(p.get("/").status, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.stdout_lines().is_empty(), "{:?}", p.stdout_lines());
}
