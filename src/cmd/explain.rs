//! `sidecar check --explain 'GET /path' -H 'Name: value'`: what sidecar would do with
//! one request, without sending anything. Each rewrite rule tried is shown with its
//! pattern's subject and verdict, each condition with its expanded test string and
//! verdict, then the decision (the route, a redirect or the status it would answer),
//! and for a balancer every member's state and the member a pick would choose now
//! (under `byhash`: the key, the order it ranks the members in, or its absence).
//! The pick runs on a copy of the balancer: the running state is untouched.

use std::fmt::Write;
use std::time::Instant;

use crate::balance::{key_hash, Affinity, Balancer, Method, Pick, Status};
use crate::config::Config;
use crate::h1::framing::request_framing;
use crate::h1::head::{parse_request_head, RequestHead, MAX_HEADERS_LIMIT};
use crate::h1::upgrade::{classify_upgrade, Upgrade};
use crate::proxy::{decide_traced, hash_key, sticky_route, ClientInfo, Decided, RouteBufs};
use crate::rewrite::Trace;
use crate::target::Target;

/// The address the explained request seems to come from.
const EXPLAIN_PEER: &str = "127.0.0.1:40000";

/// The request `--explain` and `-H` describe, as sidecar would parse it. A missing
/// version becomes HTTP/1.1 and a missing Host the server name (or `localhost`), so a
/// short `GET /x` is enough.
pub fn explain_request(
    request_line: &str,
    headers: &[String],
    server_name: Option<&str>,
) -> Result<RequestHead, String> {
    let mut line = request_line.trim().to_string();
    if line.split(' ').count() == 2 {
        line.push_str(" HTTP/1.1");
    }
    let mut raw = format!("{line}\r\n");
    let has_host = headers.iter().any(|h| h.split(':').next().is_some_and(|n| n.trim().eq_ignore_ascii_case("host")));
    if !has_host && line.ends_with("HTTP/1.1") {
        let _ = write!(raw, "Host: {}\r\n", server_name.unwrap_or("localhost"));
    }
    for h in headers {
        let _ = write!(raw, "{}\r\n", h.trim());
    }
    raw.push_str("\r\n");
    parse_request_head(raw.as_bytes(), MAX_HEADERS_LIMIT)
        .map_err(|e| format!("not a request sidecar would accept: {e}"))
}

/// What the rewrite rules did, in words.
struct Steps<'c> {
    config: &'c Config,
    out: String,
}

impl Trace for Steps<'_> {
    fn pattern<'s>(&mut self, rule: usize, subject: &dyn Fn() -> &'s str, applies: bool) {
        let source = self.config.rule_sources.get(rule).map_or("", |(_, r)| r.as_str());
        let verdict = if applies { "applies" } else { "does not apply" };
        let _ = writeln!(self.out, "rewrite[{rule}] rule {source:?} on path {:?}: {verdict}", subject());
    }

    fn cond(&mut self, rule: usize, cond: usize, input: &str, held: bool) {
        let source = self.config.rule_sources.get(rule).and_then(|(c, _)| c.get(cond)).map_or("", String::as_str);
        let verdict = if held { "holds" } else { "fails" };
        let _ = writeln!(self.out, "rewrite[{rule}] cond[{cond}] {source:?} on {input:?}: {verdict}");
    }
}

/// The explanation of `head` under `config`.
pub fn explain(config: &Config, head: &RequestHead) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "request {}", head.request_line());
    for (name, value) in head.headers.iter() {
        let _ = writeln!(out, "  {name}: {}", String::from_utf8_lossy(value));
    }
    let local = config.listen.first().copied().unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
    let peer = EXPLAIN_PEER.parse().unwrap_or(local);
    let info = ClientInfo { peer, peer_ip: peer.ip().to_string(), local, https: config.server_tls.is_some() };
    if let Err(e) = request_framing(head) {
        let _ = writeln!(out, "decision: answer 400 ({})", e.0);
        return out;
    }
    let upgrade = classify_upgrade(head);
    if let Upgrade::Invalid(why) = upgrade {
        let _ = writeln!(out, "decision: answer 400 ({why})");
        return out;
    }
    let mut steps = Steps { config, out: String::new() };
    let mut bufs = RouteBufs::default();
    let decided = decide_traced(config, head, &info, upgrade, &mut bufs, &mut steps);
    out.push_str(&steps.out);
    if config.rule_sources.is_empty() {
        let _ = writeln!(out, "no rewrite rules");
    }
    let dest = match decided {
        Err(e) => {
            let status = e.status().map_or("nothing".to_string(), |s| s.to_string());
            let _ = writeln!(out, "decision: answer {status} ({e})");
            return out;
        }
        Ok(Decided::Redirect { status, location, label }) => {
            let _ = writeln!(out, "decision: {label} redirects with {status} to {location}");
            return out;
        }
        Ok(Decided::OptionsStar) => {
            let _ = writeln!(out, "decision: answer 200 to OPTIONS * (nothing is forwarded)");
            return out;
        }
        Ok(Decided::Forward(dest)) => dest,
    };
    let kind = if dest.websocket { "WebSocket handshake, tunnelled after a valid 101" } else { "HTTP request" };
    let _ =
        writeln!(out, "decision: {} forwards it to {} as {:?} ({kind})", dest.label, dest.target, dest.upstream_target);
    let Target::Balancer { name, .. } = &*dest.target else {
        return out;
    };
    let Some(shared) = config.balancer(name) else {
        let _ = writeln!(out, "balancer {name:?} is not configured: 404");
        return out;
    };
    // A copy: explaining must not move the running balancer's turn or counts.
    let mut balancer = shared.lock().clone();
    let now = Instant::now();
    let spec = balancer.spec();
    let method = spec.method;
    let sticky = spec.sticky_session.clone();
    let hashing = spec.hash.clone();
    let rule = match &hashing {
        Some(h) => {
            format!("weighted rendezvous hash of {}; without it {}: {}", h.source, h.fallback, method_rule(h.fallback))
        }
        None => method_rule(method).to_string(),
    };
    let _ = writeln!(out, "balancer {name}: method {method} ({rule})");
    for m in balancer.snapshot(now) {
        let retry = m.retry_in.map(|d| format!(", next trial in {:.1}s", d.as_secs_f64())).unwrap_or_default();
        let _ = writeln!(
            out,
            "  member {} status {} state {} loadfactor {} requests {} tunnels {}{retry}",
            m.url.origin(),
            m.status,
            m.state,
            m.weight,
            m.requests,
            m.tunnels
        );
    }
    let route = sticky.as_deref().and_then(|cookie| sticky_route(head, cookie));
    let key = hashing.as_ref().map(|h| hash_key(head, &h.source, &info.peer_ip));
    let ranking = key.flatten().map(|k| balancer.hash_ranking(key_hash(k))).unwrap_or_default();
    if let Some(h) = &hashing {
        let _ = match key.flatten() {
            Some(k) => {
                let order: Vec<String> = ranking.iter().map(|&i| balancer.spec().replicas[i].url.replica()).collect();
                let value = String::from_utf8_lossy(k);
                writeln!(out, "byhash: key {} = {value:?} ranks {}", h.source, order.join(", "))
            }
            None => writeln!(out, "byhash: key {} absent \u{2192} fallback {}", h.source, h.fallback),
        };
    }
    let affinity = Affinity { sticky_route: route.as_deref(), hash_key: key.flatten().map(key_hash) };
    match balancer.pick_with(now, &[], affinity) {
        Pick::Replica(attempt) => {
            let url = balancer.spec().replicas[attempt.replica].url.origin();
            let why = match (&route, attempt.trial) {
                (_, true) => "its retry time has passed: this request would be its trial".to_string(),
                (Some(r), false) if balancer.spec().replicas[attempt.replica].route.as_deref() == Some(r) => {
                    format!("the sticky cookie names route {r:?}")
                }
                _ if !ranking.is_empty() => hash_reason(&balancer, &ranking, attempt.replica, now),
                _ => format!("{}'s choice now", balancer.spec().unkeyed_method()),
            };
            let _ = writeln!(out, "pick: {url} ({why})");
        }
        Pick::NoneAvailable { retry_after } => {
            let secs = retry_after.as_secs_f64().ceil().max(1.0);
            let _ = writeln!(out, "pick: none: every member is down; answer 503 with Retry-After: {secs}");
        }
    }
    out
}

fn method_rule(method: Method) -> &'static str {
    match method {
        Method::ByRequests => "smooth weighted round robin",
        Method::ByBusyness => "fewest requests plus tunnels per unit of loadfactor, ties drawn by weight",
        Method::ByTraffic => "fewest bytes per unit of loadfactor",
        Method::ByHash => "weighted rendezvous hash of the request's key",
    }
}

/// Why `byhash` picked `chosen`: its place in the key's order, and why the members
/// ranked above it could not be picked.
fn hash_reason(balancer: &Balancer, ranking: &[usize], chosen: usize, now: Instant) -> String {
    let place = ranking.iter().position(|&i| i == chosen).unwrap_or(0);
    if place == 0 {
        return "the key ranks it first".to_string();
    }
    let members = balancer.snapshot(now);
    let skipped: Vec<String> = ranking[..place]
        .iter()
        .map(|&i| {
            let m = &members[i];
            let why = if m.status == Status::Normal { m.state.to_string() } else { m.status.to_string() };
            format!("{} is {why}", m.url.replica())
        })
        .collect();
    format!("the key ranks it #{}; {}", place + 1, skipped.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_requests_are_completed() {
        for (line, headers, want) in [
            ("GET /x", vec![], Some(("GET", "/x", Some("localhost")))),
            ("GET /x HTTP/1.0", vec![], Some(("GET", "/x", None))),
            ("GET /x", vec!["Host: app.example".to_string()], Some(("GET", "/x", Some("app.example")))),
            ("GET /x", vec!["Upgrade websocket".to_string()], None), // not a header line
            ("GET", vec![], None),
        ] {
            let got = explain_request(line, &headers, None).ok();
            let got = got.as_ref().map(|h| (h.method.as_str(), h.target.as_str(), h.host()));
            assert_eq!(got, want, "{line:?} {headers:?}");
        }
    }
}
