//! The admin listener (`[admin] listen`, never the public port): `GET /healthz`,
//! `/readyz`, `/metrics` (Prometheus text) and `/status` (JSON). It runs as tasks on the
//! first worker (each request is a few microseconds of work), answers one request per
//! connection, and reads only the shared state.

use std::fmt::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::rc::Rc;

use async_io::Async;
use smol::LocalExecutor;

use crate::access_log::json_string;
use crate::config::Config;
use crate::h1::answer::{Answer, Body};
use crate::h1::head::{parse_request_head, MAX_HEADERS};
use crate::net::stream::{deadline, Conn, Stream};
use crate::shared::Shared;

/// An admin request must arrive quickly and small; probes are tiny.
const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);
const ADMIN_MAX_HEAD: usize = 8 * 1024;

/// Binds the admin address (before anything serves, so a bad address is an exit 1).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = crate::net::listen::bind(addr, false)?;
    log::info!("admin endpoint on {} (GET /healthz /readyz /metrics /status)", listener.local_addr()?);
    Ok(listener)
}

/// Serves the admin listener on the calling worker's executor, one task per request.
pub async fn accept_loop(ex: Rc<LocalExecutor<'static>>, listener: Async<TcpListener>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => ex.spawn(serve(stream, Arc::clone(&shared))).detach(),
            Err(_) => crate::net::clock::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn serve(stream: Async<TcpStream>, shared: Arc<Shared>) {
    let mut conn = Conn::new(Stream::Plain(stream));
    let read = async {
        let len = conn.read_head(ADMIN_MAX_HEAD, false).await.ok()?;
        parse_request_head(&conn.buffered()[..len], MAX_HEADERS).ok()
    };
    let Some(Some(head)) = deadline(ADMIN_READ_TIMEOUT, read).await else { return };
    let path = head.target.split('?').next().unwrap_or("");
    let (status, content_type, text) = if head.method != "GET" && head.method != "HEAD" {
        (405, "text/plain", "method not allowed\n".to_string())
    } else {
        answer(path, &shared)
    };
    let answer = Answer::new(status)
        .body(Body::Text { content_type, text: &text })
        .no_store()
        .close(true)
        .head_only(head.method == "HEAD");
    let _ = conn.write_flush(&answer.to_bytes()).await;
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
    if rows.is_empty() {
        return;
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
        let _ = write!(s, "{{\"name\":{},\"method\":\"{}\",\"names\":", json_str(&b.name), bal.spec().method);
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
