//! Issue 5 through the real binary: SIGTERM drain, SIGHUP reload, the admin endpoint,
//! limits. Signals go only to the sidecar process each test started.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;

use support::backend::{self, response, Backend, Reply};
use support::*;

/// A backend that answers `200 slow` after `delay`.
fn slow(delay: Duration) -> Backend {
    Backend::start(move |_| Reply::SendTwice(Vec::new(), delay, response(200, &[], b"slow")))
}

/// `GET path` on the admin listener.
fn admin_get(p: &Sidecar, path: &str) -> Response {
    let mut c = Conn::open(p.admin_addr());
    c.send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).expect("send");
    c.read_response()
}

async fn ws_echo(ws: &mut WsClient, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let got = ws.next().await.expect("an echo").expect("a frame");
    assert_eq!(got, Message::text(text));
}

#[test]
fn sigterm_during_a_slow_request_answers_it_refuses_new_connections_and_exits_0() {
    let b = slow(Duration::from_millis(1500));
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"5s\""));
    let mut c = p.conn();
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert!(b.wait_for_requests(1, DEADLINE).len() == 1, "the request reached the backend");
    p.signal("TERM");
    assert!(p.wait_for_log("draining", DEADLINE), "{:?}", p.logs());
    // The listener is closed at once: a new connection is refused while the slow
    // request is still in flight.
    let refused = wait_until(Duration::from_secs(1), || TcpStream::connect(p.addr()).is_err());
    assert!(refused, "new connections must be refused after SIGTERM");
    let r = c.try_read_response(false, Duration::from_secs(5)).expect("the in-flight request is answered");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0), "{:?}", p.logs());
}

#[test]
fn open_tunnel_is_closed_at_the_drain_timeout_and_the_process_exits_0() {
    let b = backend::ws_echo();
    let mut p = Sidecar::start(&config_to(b.addr, "drain_timeout = \"500ms\""));
    let addr = p.addr();
    let mut ws = ws_open(addr, "/chat");
    block_within(DEADLINE, "echo", ws_echo(&mut ws, "before"));
    let sent = Instant::now();
    p.signal("TERM");
    // Still a working tunnel during the drain...
    block_within(DEADLINE, "echo while draining", ws_echo(&mut ws, "draining"));
    // ...until the drain timeout closes it.
    block_within(Duration::from_secs(4), "tunnel end", async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    });
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "tunnel closed after {took:?}");
    assert_eq!(p.wait_exit(Duration::from_secs(3)), Some(0), "{:?}", p.logs());
}

#[test]
fn sighup_adds_a_route_while_a_websocket_keeps_echoing() {
    let ws_backend = backend::ws_echo();
    let other = backend::answers_ok("new route");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        ws_backend.addr
    );
    let p = Sidecar::start(&base);
    let mut ws = ws_open(p.addr(), "/chat");
    block_within(DEADLINE, "echo", ws_echo(&mut ws, "before reload"));
    let mut c = p.conn();
    c.send("GET /new/x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_ne!(c.read_response().body_str(), "new route", "no /new route yet");
    let with_route = format!("{base}\n[[proxy]]\npath = \"/new\"\nto = \"http://{}/\"\n", other.addr);
    std::fs::write(p.dir().join("sidecar.toml"), with_route).expect("rewrite config");
    p.signal("HUP");
    let served = wait_until(DEADLINE, || {
        let mut c = p.conn();
        c.send("GET /new/x HTTP/1.1\r\nHost: a\r\n\r\n").is_ok() && c.read_response().body_str() == "new route"
    });
    assert!(served, "the new route answers after SIGHUP: {:?}", p.logs());
    block_within(DEADLINE, "echo after reload", ws_echo(&mut ws, "after reload"));
}

#[test]
fn broken_config_on_sighup_keeps_the_old_one() {
    let b = backend::answers_ok("still here");
    let p = Sidecar::start(&config_to(b.addr, ""));
    std::fs::write(p.dir().join("sidecar.toml"), "[server]\nlisten = 5\n").expect("rewrite config");
    p.signal("HUP");
    assert!(p.wait_for_log("reload rejected", DEADLINE), "{:?}", p.logs());
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().body_str(), "still here");
}

/// `name{labels} value` or `name value`.
fn parse_metric(line: &str) -> Option<(String, f64)> {
    let (key, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let name_ok = key.split('{').next()?.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let labels_ok = !key.contains('{') || key.ends_with('}');
    (name_ok && labels_ok).then(|| (key.to_string(), value))
}

#[test]
fn metrics_move_with_traffic_and_parse_as_prometheus_text() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "\n[admin]\nlisten = \"127.0.0.1:0\""));
    for _ in 0..3 {
        let mut c = p.conn();
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    let r = admin_get(&p, "/metrics");
    assert_eq!(r.status, 200);
    let text = r.body_str();
    let mut values = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = parse_metric(line).unwrap_or_else(|| panic!("not Prometheus text: {line:?}"));
        values.insert(k, v);
    }
    assert_eq!(values.get("sidecar_requests_total{route=\"proxy[0]\",status=\"2xx\"}"), Some(&3.0), "{text}");
    assert_eq!(values.get("sidecar_request_duration_seconds_count"), Some(&3.0), "{text}");
    assert!(values.get("sidecar_pool_new_total").is_some_and(|v| *v >= 1.0), "{text}");
    assert_eq!(admin_get(&p, "/healthz").status, 200);
}

#[test]
fn readyz_goes_503_when_every_member_of_a_route_is_down() {
    let b = backend::answers_ok("ok");
    let dead = closed_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n\
         [balancer.app]\nretry = \"30s\"\nmax_ejected_percent = 100\nmembers = [\"http://127.0.0.1:{dead}\", \"http://{}\"]\n",
        b.addr
    );
    let p = Sidecar::start(&config);
    assert_eq!(admin_get(&p, "/readyz").status, 200);
    drop(b);
    for _ in 0..4 {
        let mut c = p.conn();
        let _ = c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let _ = c.try_read_response(false, DEADLINE);
    }
    let r = admin_get(&p, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert!(r.body_str().contains("balancer \"app\""), "{}", r.body_str());
    let status = admin_get(&p, "/status").body_str();
    assert!(status.contains("\"state\":\"failed\""), "{status}");
}

#[test]
fn slow_header_drip_is_cut_off_while_others_are_served() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "header_timeout = \"1s\""));
    let addr = p.addr();
    let dripper = std::thread::spawn(move || {
        let mut c = Conn::open(addr);
        let started = Instant::now();
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if c.send([*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        let (rest, closed) = c.read_until_close(Duration::from_secs(3));
        (started.elapsed(), closed, rest)
    });
    // Meanwhile another client is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "other clients wait: {:?}", t.elapsed());
    let (took, closed, rest) = dripper.join().expect("dripper");
    assert!(closed, "the slow client is disconnected");
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408") || rest.is_empty(), "{}", show(&rest));
}

#[test]
fn max_connections_holds_and_the_others_keep_working() {
    let b = backend::answers_ok("ok");
    let p = Sidecar::start(&config_to(b.addr, "max_connections = 3"));
    let mut open: Vec<Conn> = (0..3).map(|_| p.conn()).collect();
    // Make sure the three are accepted and counted.
    for c in &mut open {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    let mut extra = p.conn();
    let _ = extra.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    // Refused or closed is acceptable too; an answer must be the 503.
    if let Ok(r) = extra.try_read_response(false, DEADLINE) {
        assert_eq!(r.status, 503, "over max_connections");
    }
    for c in &mut open {
        c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200, "the first connections keep working");
    }
}

#[test]
fn body_over_max_body_bytes_is_413_and_not_forwarded() {
    let b = backend::echo();
    let p = Sidecar::start(&config_to(b.addr, "max_body_bytes = 10"));
    let mut c = p.conn();
    c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world").expect("send");
    c.read_response().assert_error(413);
    assert!(b.requests().is_empty(), "nothing reaches the backend");
}
