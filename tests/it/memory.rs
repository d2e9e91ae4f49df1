//! Memory through the real binary (docs/operations.md, "Memory"): idle tunnels,
//! idle keep-alive connections and pooled backend connections hold no read buffer,
//! which `/metrics` shows (`sidecar_buffer_bytes`), and the backend pool's size is
//! exported (`sidecar_pool_idle_connections`).

use std::net::SocketAddr;

use crate::support::backend;
use crate::support::*;

fn gauge(admin: SocketAddr, name: &str) -> f64 {
    let r = admin_get(admin, "/metrics");
    assert_eq!(r.status, 200, "{}", r.head_str());
    let text = r.body_str();
    let samples = prom::parse(&text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"));
    prom::value(&samples, name, &[]).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn config(backend: SocketAddr, extra_server: &str) -> String {
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config_to(backend, extra_server))
}

#[test]
fn two_hundred_idle_tunnels_hold_no_buffer_and_still_echo() {
    let b = backend::ws_echo();
    let p = Sidecar::start(&config(b.addr, ""));
    let admin = p.admin_addr();
    let mut tunnels: Vec<WsClient> = (0..200).map(|_| ws_open(p.addr(), "/chat")).collect();
    assert!(wait_until(DEADLINE, || gauge(admin, "sidecar_open_tunnels") == 200.0), "200 tunnels open");
    // Each head was read into a buffer; an idle tunnel gives it back.
    let idle = wait_until(DEADLINE, || gauge(admin, "sidecar_buffer_bytes") == 0.0);
    assert!(idle, "idle tunnels hold {} buffer bytes", gauge(admin, "sidecar_buffer_bytes"));
    // What the workers keep for reuse is bounded: each worker's tunnel read buffer
    // and at most 64 released 4 KiB buffers.
    let pooled = gauge(admin, "sidecar_buffer_pool_bytes");
    assert!(pooled <= (17 * 1024 + 64 * 4096) as f64, "{pooled} bytes pooled");
    for (i, ws) in tunnels.iter_mut().enumerate().step_by(20) {
        ws_round_trip(ws, &format!("still there {i}"));
    }
    assert!(wait_until(DEADLINE, || gauge(admin, "sidecar_buffer_bytes") == 0.0), "buffers back after the echoes");
}

#[test]
fn idle_keep_alive_connections_and_pooled_backend_connections_hold_no_buffer() {
    let b = backend::echo();
    let p = Sidecar::start(&config(b.addr, ""));
    let admin = p.admin_addr();
    let mut conns: Vec<_> = (0..50).map(|_| p.conn()).collect();
    for c in conns.iter_mut() {
        c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
    // Requests one at a time over 50 connections: one backend connection, pooled.
    assert!(wait_until(DEADLINE, || gauge(admin, "sidecar_pool_idle_connections") >= 1.0), "a pooled connection");
    assert_eq!(gauge(admin, "sidecar_open_connections"), 50.0);
    let idle = wait_until(DEADLINE, || gauge(admin, "sidecar_buffer_bytes") == 0.0);
    assert!(idle, "50 idle keep-alive connections hold {} buffer bytes", gauge(admin, "sidecar_buffer_bytes"));
    // Still served on the same connections.
    for c in conns.iter_mut().step_by(10) {
        c.send("GET /again HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
        assert_eq!(c.read_response().status, 200);
    }
}

#[test]
fn the_backend_pool_shrinks_when_its_connections_idle_out() {
    let b = backend::echo();
    let p = Sidecar::start(&config(b.addr, "pool_idle_timeout = \"1s\""));
    let admin = p.admin_addr();
    let mut c = p.conn();
    c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(c.read_response().status, 200);
    assert!(wait_until(DEADLINE, || gauge(admin, "sidecar_pool_idle_connections") == 1.0), "one pooled connection");
    // The worker prunes every 5 s: gone within two rounds.
    let pruned =
        wait_until(std::time::Duration::from_secs(12), || gauge(admin, "sidecar_pool_idle_connections") == 0.0);
    assert!(pruned, "the pool still holds {}", gauge(admin, "sidecar_pool_idle_connections"));
}
