//! The admin listener (`[admin] listen`, never the public port): `GET /healthz`,
//! `/readyz`, `/metrics` (Prometheus text) and `/status` (JSON). It answers one request
//! per connection and reads only the shared state.
//!
//! It runs on a thread of its own with plain blocking sockets, not on a worker: a
//! liveness probe must get its answer when the proxy is saturated, and above all when
//! the process is out of descriptors (a probe that fails then restarts a proxy that is
//! still serving). Not as another async-io executor either: async-io has one reactor
//! per process, and a second thread blocked in it would take the workers' socket
//! events. Blocking I/O costs a thread and serves one connection at a time, each within
//! `ADMIN_IO_TIMEOUT`, which suits a handful of probes a second. One descriptor is kept
//! in reserve: when `accept` fails for lack of descriptors, the reserve is given up for
//! that one connection and taken back after it.

use std::fmt::Write;
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::json_string;
use crate::config::Config;
use crate::h1::answer::{Answer, Body};
use crate::h1::head::{parse_request_head, MAX_HEADERS};
use crate::h1::scan::HeadScanner;
use crate::net::connect::is_local_shortage;
use crate::shared::Shared;

/// An admin request must arrive quickly and small; probes are tiny. The whole exchange
/// (head in, answer out) gets this long, so a stalled client delays the next probe by
/// at most this.
const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(2);
const ADMIN_MAX_HEAD: usize = 8 * 1024;
/// After an `accept` error that the reserve did not cure, wait this long (no spinning).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds the admin address (before anything serves, so a bad address is an exit 1).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = crate::net::listen::bind(addr, false)?;
    log::info!("admin endpoint on {} (GET /healthz /readyz /metrics /status)", listener.local_addr()?);
    Ok(listener)
}

/// Serves the admin listener on its own thread for the rest of the process's life.
pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> io::Result<()> {
    listener.set_nonblocking(false)?;
    std::thread::Builder::new().name("sidecar-admin".into()).spawn(move || accept_loop(&listener, &shared))?;
    Ok(())
}

/// A descriptor held in reserve for the admin endpoint's next connection.
fn reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

fn accept_loop(listener: &TcpListener, shared: &Shared) {
    let mut spare = reserve();
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, shared),
            Err(e) if is_local_shortage(&e) && spare.is_some() => {
                // The proxy holds every other descriptor: this connection gets the
                // reserve. A worker may take the freed number first; then the next
                // round tries again.
                drop(spare.take());
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, shared),
                    Err(_) => std::thread::sleep(ACCEPT_BACKOFF),
                }
            }
            Err(e) => {
                crate::throttle::error(&format!("admin: accept failed: {e}"));
                std::thread::sleep(ACCEPT_BACKOFF);
            }
        }
        if spare.is_none() {
            spare = reserve();
        }
    }
}

/// One request on one connection, within `ADMIN_IO_TIMEOUT`.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let end = Instant::now() + ADMIN_IO_TIMEOUT;
    let Some(head) = read_head(&mut stream, end) else { return };
    let Ok(head) = parse_request_head(&head, MAX_HEADERS) else { return };
    let path = head.target.split('?').next().unwrap_or("");
    let (status, content_type, text) = if head.method != "GET" && head.method != "HEAD" {
        (405, "text/plain", "method not allowed\n".to_string())
    } else {
        answer(path, shared)
    };
    let answer = Answer::new(status)
        .body(Body::Text { content_type, text: &text })
        .no_store()
        .close(true)
        .head_only(head.method == "HEAD");
    let _ = stream.set_write_timeout(Some(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))));
    let _ = io::Write::write_all(&mut stream, &answer.to_bytes());
}

/// The request head's bytes, read by `end`.
fn read_head(stream: &mut TcpStream, end: Instant) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; ADMIN_MAX_HEAD];
    let mut len = 0;
    let mut scanner = HeadScanner::default();
    loop {
        let left = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut buf[len..]).ok().filter(|&n| n > 0)?;
        len += n;
        if let Some(head_len) = scanner.scan(&buf[..len], ADMIN_MAX_HEAD).ok()? {
            buf.truncate(head_len);
            return Some(buf);
        }
        if len == buf.len() {
            return None;
        }
    }
}

fn answer(path: &str, shared: &Shared) -> (u16, &'static str, String) {
    let config = shared.config();
    match path {
        "/healthz" => (200, "text/plain", "ok\n".into()),
        "/readyz" => match not_ready(&config) {
            None => (200, "text/plain", "ready\n".into()),
            Some(why) => (503, "text/plain", format!("not ready: {why}\n")),
        },
        "/metrics" => {
            let mut s = String::new();
            shared.metrics.render(&mut s);
            render_members(&config, &mut s);
            (200, "text/plain; version=0.0.4", s)
        }
        "/status" => (200, "application/json", status_json(&config, shared)),
        _ => (404, "text/plain", "not found (try /healthz, /readyz, /metrics, /status)\n".into()),
    }
}

/// Why the proxy should not get traffic, if it should not: a configured balancer with
/// no member that could take a request now (every one ejected, resting or out of
/// service). Balancers are checked whether a route or a rewrite rule reaches them.
fn not_ready(config: &Config) -> Option<String> {
    config.balancers.iter().find(|b| !b.usable()).map(|b| format!("no usable member in balancer {:?}", b.name))
}

/// Per-member balancer state in Prometheus text.
fn render_members(config: &Config, out: &mut String) {
    if config.balancers.is_empty() {
        return;
    }
    let now = Instant::now();
    let _ = writeln!(out, "# HELP sidecar_member_up 1 when the member takes traffic (healthy or spared), 0 when ejected or out of service.");
    let _ = writeln!(out, "# TYPE sidecar_member_up gauge");
    let mut rows = Vec::new();
    for b in &config.balancers {
        for m in b.lock().snapshot(now) {
            rows.push((b.name.clone(), m));
        }
    }
    // A member found through DNS is one address of a name: `address` tells them apart.
    let member = |m: &crate::balance::ReplicaStatus| match m.url.addr {
        Some(a) => format!("member=\"{}\",address=\"{a}\"", m.url.origin()),
        None => format!("member=\"{}\"", m.url.origin()),
    };
    for (b, m) in &rows {
        let up = u8::from(m.status.in_service() && !m.state.is_ejected());
        let _ = writeln!(out, "sidecar_member_up{{balancer=\"{b}\",{},state=\"{}\"}} {up}", member(m), m.state);
    }
    for (name, help, kind, value) in [
        ("sidecar_member_requests", "Requests in flight per member.", "gauge", 0u8),
        ("sidecar_member_tunnels", "Open tunnels per member.", "gauge", 1),
        ("sidecar_member_failures_total", "Failures reported per member.", "counter", 2),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (b, m) in &rows {
            let v = match value {
                0 => u64::from(m.requests),
                1 => u64::from(m.tunnels),
                _ => m.failures,
            };
            let _ = writeln!(out, "{name}{{balancer=\"{b}\",{}}} {v}", member(m));
        }
    }
    render_names(config, out);
}

/// Per DNS name: how many members it stands for and how many lookups failed.
fn render_names(config: &Config, out: &mut String) {
    let mut rows = Vec::new();
    for b in &config.balancers {
        for n in b.lock().names() {
            rows.push((b.name.clone(), n.lookup.name().to_string(), n.addresses.len(), n.errors, n.error.is_some()));
        }
    }
    for (name, help, kind, value) in [
        ("sidecar_dns_addresses", "Members a DNS name stands for (its last good answer).", "gauge", 0u8),
        ("sidecar_dns_errors_total", "Failed or empty lookups of a DNS name.", "counter", 1),
        ("sidecar_dns_failing", "1 while the latest lookup of a DNS name failed.", "gauge", 2),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (b, n, addresses, errors, failing) in &rows {
            let v = match value {
                0 => *addresses as u64,
                1 => *errors,
                _ => u64::from(*failing),
            };
            let _ = writeln!(out, "{name}{{balancer=\"{b}\",name=\"{n}\"}} {v}");
        }
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_string(&mut out, s);
    out
}

fn status_json(config: &Config, shared: &Shared) -> String {
    let mut s = String::from("{");
    let _ = write!(s, "\"uptime_seconds\":{},", shared.started.elapsed().as_secs());
    let _ = write!(s, "\"open_connections\":{},", shared.metrics.open_connections.load(Relaxed));
    let _ = write!(s, "\"open_tunnels\":{},", shared.metrics.open_tunnels.load(Relaxed));
    s.push_str("\"routes\":[");
    for (i, r) in config.routes.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"name\":\"proxy[{}]\",\"path\":{},\"to\":{},\"reverse\":{},\"preserve_host\":{},\"upgrade\":{}}}",
            r.index,
            json_str(&r.prefix),
            json_str(&r.target.to_string()),
            r.reverse,
            r.preserve_host,
            r.upgrade
        );
    }
    s.push_str("],\"rules\":[");
    for (i, (conds, rule)) in config.rule_sources.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let conds: Vec<String> = conds.iter().map(|c| json_str(c)).collect();
        let _ = write!(s, "{{\"name\":\"rewrite[{i}]\",\"cond\":[{}],\"rule\":{}}}", conds.join(","), json_str(rule));
    }
    s.push_str("],\"balancers\":[");
    for (i, b) in config.balancers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let bal = b.lock();
        let now = Instant::now();
        let spec = bal.spec();
        let (hash, fallback) = match &spec.hash {
            Some(h) => (json_str(&h.source.to_string()), format!("\"{}\"", h.fallback)),
            None => ("null".to_string(), "null".to_string()),
        };
        let _ = write!(
            s,
            "{{\"name\":{},\"method\":\"{}\",\"hash\":{hash},\"hash_fallback\":{fallback},\"names\":",
            json_str(&b.name),
            spec.method
        );
        names_json(&mut s, bal.names(), now);
        s.push_str(",\"members\":[");
        for (j, m) in bal.snapshot(now).iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let last_error = m.last_error.map(|e| json_str(&e.to_string())).unwrap_or_else(|| "null".into());
            let retry_in = m.retry_in.map_or("null".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
            let address = m.url.addr.map_or("null".to_string(), |a| json_str(&a.to_string()));
            let share = m.ramp_permille.map_or("null".to_string(), |p| format!("{:.3}", f64::from(p) / 1000.0));
            let _ = write!(
                s,
                "{{\"url\":{},\"status\":\"{}\",\"loadfactor\":{},\"state\":\"{}\",\"requests\":{},\"tunnels\":{},\"picks\":{},\"bytes\":{},\"failures\":{},\"last_error\":{last_error},\"retry_in_seconds\":{retry_in},\"address\":{address},\"slow_start_share\":{share},\"check_down\":{}}}",
                json_str(&m.url.origin()),
                m.status,
                m.weight,
                m.state,
                m.requests,
                m.tunnels,
                m.picks,
                m.bytes,
                m.failures,
                m.check_down
            );
        }
        s.push_str("]}");
    }
    s.push_str("]}\n");
    s
}

/// `[{"name":…,"type":"A/AAAA","addresses":[…],"refreshed_seconds_ago":…,"ttl_seconds":…,"error":…,"errors":…}]`
fn names_json(s: &mut String, names: &[crate::balance::NameStatus], now: Instant) {
    s.push('[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let addresses: Vec<String> = n.addresses.iter().map(|a| json_str(&a.to_string())).collect();
        let secs = |d: Option<std::time::Duration>| d.map_or("null".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
        let _ = write!(
            s,
            "{{\"name\":{},\"type\":\"{}\",\"addresses\":[{}],\"refreshed_seconds_ago\":{},\"ttl_seconds\":{},\"error\":{},\"errors\":{}}}",
            json_str(n.lookup.name()),
            n.lookup.kind(),
            addresses.join(","),
            secs(n.refreshed_at.map(|t| now.saturating_duration_since(t))),
            secs(n.ttl),
            n.error.as_deref().map_or("null".to_string(), json_str),
            n.errors
        );
    }
    s.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
