//! The serde mirror → a checked `Config`, or every problem at once, each with its
//! file, line and key. Defaults are named constants with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use toml::Spanned;

use super::diag::{Diagnostic, Lines};
use super::duration::parse_duration;
use super::file::{self, File};
use super::server_tls;
use super::{Config, Limits, SharedBalancer, Timeouts};
use crate::access_log::AccessFormat;
use crate::balance::{
    BalancerSpec, Discovery, HashSource, Hashing, Health, HealthCheck, Lookup, Method, ReplicaSpec, Status,
    StatusRanges, HASH_SOURCES, RECOMMENDED_MAX_EJECTED_PERCENT,
};
use crate::dns::resolv_conf::{parse_hosts, parse_nameserver, parse_resolv_conf};
use crate::dns::ResolverConfig;
use crate::h1::head::{MAX_HEADERS, MAX_HEADERS_LIMIT};
use crate::rewrite::{RuleSource, Rules, SourceLines};
use crate::route::{normalize_target, ReverseRule, Route, Routes};
use crate::target::{parse_target, Scheme, Target, Url};
use crate::websocket::Keepalive;

/// Apache's `ProxyTimeout` defaults to `Timeout`, 60 s.
const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(60);
/// A backend on the same host or pod answers a connect in microseconds; 5 s covers a
/// busy remote one without leaving a client hanging on a dead address.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough for a slow mobile client to send a head; nginx's 60 s is generous to slowloris.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Between Apache's 5 s (too short for browsers) and nginx's 75 s.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// WebSockets are long-lived; nginx's 60 s is the classic "drops after a minute".
const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Shorter than nginx's upstream 60 s; a connection the backend closed sooner is
/// detected before reuse (`net::pool`).
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// nginx allows 4 × 8 KiB of head; one line may not exceed 8 KiB (`h1::head`).
const DEFAULT_MAX_HEAD_BYTES: u32 = 32 * 1024;
const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Apache's balancer `retry` is 60 s; 10 s brings a restarted replica back sooner.
const DEFAULT_RETRY: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Apache's `RequestReadTimeout body=20,MinRate=500`: 20 s of grace, and then the body
/// must keep averaging 500 bytes/s, which any real uplink does and R-U-Dead-Yet's byte
/// every few seconds does not. nginx's `client_body_timeout` (60 s between two reads)
/// alone never stops a client that sends a byte every 59 s.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_BODY_MIN_RATE: u32 = 500;
/// Where a pod or container is told how to resolve names.
const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS_FILE: &str = "/etc/hosts";
/// A fixed `refresh` shorter than this would hammer the nameserver for nothing.
const MIN_REFRESH: Duration = Duration::from_millis(100);
/// HAProxy's `inter` is 2 s, nginx plus 5 s, Envoy requires one; 5 s finds a dead pod
/// well before a client gives up, at one tiny request per member per 5 s.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// HAProxy's defaults: 2 good checks to come back, 3 bad ones to go.
const DEFAULT_CHECK_RISE: u32 = 2;
const DEFAULT_CHECK_FALL: u32 = 3;
const DEFAULT_CHECK_EXPECT: &str = "200-399";
const DEFAULT_CHECK_PATH: &str = "/";

/// What resolving may read besides the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    /// Certificates, keys, the system trust store, `/etc/resolv.conf` and `/etc/hosts`.
    Read,
    /// Nothing: every named file is missing, there are no system roots and no resolver
    /// files, so checking text alone is pure (the fuzz targets run it millions of times).
    Absent,
}

pub fn resolve(path: &Path, source: &str, disk: Disk) -> Result<Config, Vec<Diagnostic>> {
    let lines = Lines { file: path, source };
    let file: File = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        vec![lines.at(offset, lines.key_at(offset), e.message().trim().to_string())]
    })?;
    let base = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let mut cx = Cx { lines: &lines, base, disk, errors: Vec::new() };
    let config = cx.resolve(file, path);
    let mut errors = cx.errors;
    if errors.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    errors.sort_by_key(|d| d.line);
    Err(errors)
}

struct Cx<'a> {
    lines: &'a Lines<'a>,
    base: PathBuf,
    disk: Disk,
    errors: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(self.lines.at(at.span().start, key, message));
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.err(v, key, e);
                default
            }
        }
    }

    /// A system file's text, when `disk` allows reading it and it can be read.
    fn read(&self, path: &str) -> Option<String> {
        (self.disk == Disk::Read).then(|| std::fs::read_to_string(path).ok()).flatten()
    }

    fn is_file(&self, p: &Path) -> bool {
        self.disk == Disk::Read && p.is_file()
    }

    /// Keepalive Pings from `ws_ping_interval` / `ws_pong_timeout` / `ws_ping_backend`
    /// under `table`; each key not given comes from `inherit` (the server's), else its
    /// default. `None` when none of the keys is given.
    fn keepalive(
        &mut self,
        table: &str,
        interval: &Option<Spanned<String>>,
        pong_timeout: &Option<Spanned<String>>,
        backend: Option<bool>,
        inherit: Option<Keepalive>,
    ) -> Option<Keepalive> {
        if interval.is_none() && pong_timeout.is_none() && backend.is_none() {
            return None;
        }
        let base = inherit.unwrap_or_default();
        let interval = match interval {
            None => base.interval,
            Some(_) => Some(self.duration(interval, &format!("{table}.ws_ping_interval"), Duration::ZERO))
                .filter(|d| !d.is_zero()),
        };
        let pong_timeout = match pong_timeout {
            None => base.pong_timeout,
            Some(v) => {
                let key = format!("{table}.ws_pong_timeout");
                let d = self.duration(pong_timeout, &key, base.pong_timeout);
                if d.is_zero() {
                    self.err(v, key, "expected a duration above zero");
                    base.pong_timeout
                } else {
                    d
                }
            }
        };
        Some(Keepalive { interval, pong_timeout, backend: backend.unwrap_or(base.backend) })
    }

    fn file_path(&mut self, v: &Spanned<String>, key: &str) -> PathBuf {
        let p = self.base.join(v.get_ref());
        if !self.is_file(&p) {
            self.err(v, key, format!("{}: no such file (paths are relative to the config file)", v.get_ref()));
        }
        p
    }

    fn resolve(&mut self, file: File, path: &Path) -> Option<Config> {
        let server = file.server.get_ref();
        let mut listen = Vec::new();
        for addr in &server.listen.get_ref().0 {
            match addr.parse::<SocketAddr>() {
                Ok(a) => listen.push(a),
                Err(_) => self.err(
                    &server.listen,
                    "server.listen",
                    format!("{addr:?} is not an address (expected e.g. \"127.0.0.1:8080\" or \"[::]:8443\")"),
                ),
            }
        }
        if listen.is_empty() && server.listen.get_ref().0.is_empty() {
            self.err(&server.listen, "server.listen", "at least one address is needed");
        }
        let timeouts = Timeouts {
            proxy: self.duration(&server.proxy_timeout, "server.proxy_timeout", DEFAULT_PROXY_TIMEOUT),
            connect: self.duration(&server.connect_timeout, "server.connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            header: self.duration(&server.header_timeout, "server.header_timeout", DEFAULT_HEADER_TIMEOUT),
            keepalive: self.duration(&server.keepalive_timeout, "server.keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT),
            tunnel_idle: self.duration(
                &server.tunnel_idle_timeout,
                "server.tunnel_idle_timeout",
                DEFAULT_TUNNEL_IDLE_TIMEOUT,
            ),
            drain: self.duration(&server.drain_timeout, "server.drain_timeout", DEFAULT_DRAIN_TIMEOUT),
            drain_spread: Duration::ZERO,
            pool_idle: self.duration(&server.pool_idle_timeout, "server.pool_idle_timeout", DEFAULT_POOL_IDLE_TIMEOUT),
            body: self.duration(&server.body_timeout, "server.body_timeout", DEFAULT_BODY_TIMEOUT),
        };
        let mut timeouts = timeouts;
        timeouts.drain_spread = match &server.drain_spread {
            None => timeouts.drain / 2,
            Some(v) => {
                let spread = self.duration(&server.drain_spread, "server.drain_spread", timeouts.drain / 2);
                if spread > timeouts.drain {
                    self.err(v, "server.drain_spread", "must not be longer than drain_timeout");
                    timeouts.drain / 2
                } else {
                    spread
                }
            }
        };
        let ws_keepalive = self
            .keepalive("server", &server.ws_ping_interval, &server.ws_pong_timeout, server.ws_ping_backend, None)
            .unwrap_or_default();
        let body_min_rate = match &server.body_min_rate {
            Some(v) if *v.get_ref() == 0 => {
                self.err(v, "server.body_min_rate", "expected at least 1 (bytes per second)");
                DEFAULT_BODY_MIN_RATE
            }
            Some(v) => *v.get_ref(),
            None => DEFAULT_BODY_MIN_RATE,
        };
        let workers = match &server.workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 256 => {
                self.err(w, "server.workers", "expected a number of threads from 1 to 256");
                1
            }
            Some(w) => *w.get_ref() as usize,
            None => 1,
        };
        let max_head_bytes = match &server.max_head_bytes {
            Some(v) if *v.get_ref() < 1024 => {
                self.err(v, "server.max_head_bytes", "expected at least 1024");
                DEFAULT_MAX_HEAD_BYTES
            }
            Some(v) => *v.get_ref(),
            None => DEFAULT_MAX_HEAD_BYTES,
        };
        let access_log = match server.access_log.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "combined")) => AccessFormat::Combined,
            Some((_, "off")) => AccessFormat::Off,
            Some((_, "json")) => AccessFormat::Json,
            Some((v, other)) => {
                self.err(
                    v,
                    "server.access_log",
                    format!("unknown format {other:?} (expected \"off\", \"combined\" or \"json\")"),
                );
                AccessFormat::Combined
            }
        };
        let max_headers = match &server.max_headers {
            Some(v) if !(1..=MAX_HEADERS_LIMIT as u32).contains(v.get_ref()) => {
                self.err(v, "server.max_headers", format!("expected 1 to {MAX_HEADERS_LIMIT}"));
                MAX_HEADERS
            }
            Some(v) => *v.get_ref() as usize,
            None => MAX_HEADERS,
        };
        let max_connections = server.max_connections.as_ref().map_or(DEFAULT_MAX_CONNECTIONS, |v| *v.get_ref());
        let server_name = server.server_name.as_ref().map(|s| s.get_ref().as_str());
        let (server_tls, self_signed) =
            match server.tls.as_ref().map(|t| server_tls::resolve(t, &self.base, server_name, self.lines, self.disk)) {
                None => (None, None),
                Some(Ok((config, self_signed))) => (Some(config), self_signed),
                Some(Err(errors)) => {
                    self.errors.extend(errors);
                    (None, None)
                }
            };
        let admin = file.admin.as_ref().and_then(|a| match a.get_ref().listen.get_ref().parse::<SocketAddr>() {
            // Port 0 means "any free port", which cannot collide.
            Ok(addr) if addr.port() != 0 && listen.contains(&addr) => {
                self.err(&a.get_ref().listen, "admin.listen", "must differ from every server.listen address");
                None
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                self.err(&a.get_ref().listen, "admin.listen", "expected an address such as \"127.0.0.1:9901\"");
                None
            }
        });
        let balancers: Vec<BalancerSpec> = file.balancer.iter().map(|(name, b)| self.balancer(name, b)).collect();
        let resolver = self.resolver(file.resolver.as_ref());
        let balancer_names: Vec<&str> = balancers.iter().map(|b| b.name.as_str()).collect();
        let rule_sources: Vec<(Vec<String>, String)> = file
            .rewrite
            .iter()
            .map(|r| {
                (r.get_ref().cond.iter().map(|c| c.get_ref().clone()).collect(), r.get_ref().rule.get_ref().clone())
            })
            .collect();
        let rule_lines: Vec<SourceLines> = file
            .rewrite
            .iter()
            .map(|r| {
                let r = r.get_ref();
                SourceLines {
                    conds: r.cond.iter().map(|c| self.lines.line_of(c.span().start)).collect(),
                    rule: self.lines.line_of(r.rule.span().start),
                }
            })
            .collect();
        let rules = self.rules(&rule_lines, &rule_sources);
        let (routes, reverse) = self.routes(&file.proxy, &balancer_names, &balancers, ws_keepalive);
        let ca = file
            .backend_tls
            .as_ref()
            .and_then(|b| b.get_ref().ca.as_ref())
            .map(|ca| (self.file_path(ca, "backend_tls.ca"), ca));
        let ca_file = ca.as_ref().map(|(p, _)| p.as_path()).filter(|p| self.is_file(p));
        // The system store is read only when a backend may need it: it costs a few
        // milliseconds at every load and about 0.4 MiB for as long as sidecar runs.
        let any_tls_backend = routes.iter().any(|r| matches!(&r.target, Target::Url(u) if u.scheme.is_tls()))
            || balancers.iter().flat_map(|b| &b.replicas).any(|m| m.url.scheme.is_tls())
            || rules.as_ref().is_some_and(Rules::may_proxy_over_tls);
        let backend_tls = match self.disk {
            Disk::Read if any_tls_backend => crate::tls::client_config(ca_file),
            Disk::Read => crate::tls::client_config_with_roots(RootCertStore::empty(), ca_file),
            Disk::Absent => crate::tls::client_config_with_roots(RootCertStore::empty(), None),
        };
        let backend_tls = match backend_tls {
            Ok(c) => Some(c),
            Err(e) => {
                if let Some((_, at)) = &ca {
                    self.err(at, "backend_tls.ca", e);
                }
                None
            }
        };
        if file.proxy.is_empty() && file.rewrite.is_empty() {
            self.err(&file.server, "proxy", "no [[proxy]] or [[rewrite]] entry: nothing would be served");
        }
        Some(Config {
            path: path.to_path_buf(),
            listen,
            server_tls,
            self_signed,
            server_name: server.server_name.as_ref().map(|s| s.get_ref().clone()),
            workers,
            timeouts,
            ws_keepalive,
            limits: Limits {
                max_head_bytes: max_head_bytes as usize,
                max_headers,
                max_connections: max_connections as usize,
                max_body_bytes: server.max_body_bytes.as_ref().map(|v| *v.get_ref()),
                body_min_rate: u64::from(body_min_rate),
            },
            via: server.via.unwrap_or(false),
            access_log,
            admin,
            rules: rules?,
            rule_sources,
            rule_lines,
            routes,
            reverse,
            balancers: balancers.into_iter().map(|b| Arc::new(SharedBalancer::new(b))).collect(),
            backend_tls: backend_tls?,
            resolver,
        })
    }

    fn rules(&mut self, lines: &[SourceLines], sources: &[(Vec<String>, String)]) -> Option<Rules> {
        let srcs: Vec<RuleSource<'_>> = sources.iter().map(|(c, r)| RuleSource { conds: c, rule: r }).collect();
        match Rules::parse(&srcs) {
            Ok(rules) => Some(rules),
            Err(errors) => {
                for e in errors {
                    let line = lines.get(e.entry).map_or(0, |l| l.line(e.field));
                    let key = format!("rewrite[{}].{}", e.entry, e.field);
                    self.errors.push(self.lines.at_line(line, key, format!("column {}: {}", e.column, e.message)));
                }
                None
            }
        }
    }

    fn routes(
        &mut self,
        entries: &[Spanned<file::Proxy>],
        balancer_names: &[&str],
        balancers: &[BalancerSpec],
        server_keepalive: Keepalive,
    ) -> (Routes, Vec<ReverseRule>) {
        let mut routes = Vec::new();
        let mut reverse = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let p = entry.get_ref();
            let key = format!("proxy[{i}]");
            let prefix = match normalize_target(p.path.get_ref()) {
                Ok(n) if p.path.get_ref().starts_with('/') && n.query.is_none() => {
                    let t = n.path.trim_end_matches('/');
                    if t.is_empty() {
                        "/".to_string()
                    } else {
                        t.to_string()
                    }
                }
                _ => {
                    self.err(&p.path, format!("{key}.path"), "expected a path starting with / (no query)");
                    continue;
                }
            };
            if routes.iter().any(|r: &Route| r.prefix == prefix) {
                self.err(
                    &p.path,
                    format!("{key}.path"),
                    format!("{prefix:?} is already routed by an earlier [[proxy]]"),
                );
            }
            let target = match parse_target(p.to.get_ref()) {
                Ok(t) => t,
                Err(e) => {
                    self.err(&p.to, format!("{key}.to"), e.to_string());
                    continue;
                }
            };
            if let Target::Balancer { name, .. } = &target {
                if !balancer_names.contains(&name.as_str()) {
                    self.err(
                        &p.to,
                        format!("{key}.to"),
                        format!("unknown balancer {name:?} (expected one of: {})", balancer_names.join(", ")),
                    );
                    continue;
                }
            }
            let route = Route {
                index: i,
                prefix,
                target,
                reverse: p.reverse.unwrap_or(true),
                preserve_host: p.preserve_host.unwrap_or(false),
                upgrade: p.upgrade.unwrap_or(true),
                keepalive: self.keepalive(
                    &key,
                    &p.ws_ping_interval,
                    &p.ws_pong_timeout,
                    p.ws_ping_backend,
                    Some(server_keepalive),
                ),
            };
            if route.reverse {
                reverse.extend(reverse_rules(&route, balancers));
            }
            routes.push(route);
        }
        (Routes::new(routes), reverse)
    }

    fn balancer(&mut self, name: &Spanned<String>, b: &Spanned<file::Balancer>) -> BalancerSpec {
        let key = format!("balancer.{}", name.get_ref());
        let spec = b.get_ref();
        let method = match &spec.method {
            Some(m) => Method::parse(m.get_ref()).unwrap_or_else(|| {
                self.err(
                    m,
                    format!("{key}.method"),
                    format!("unknown method {:?} (expected byrequests, bybusyness, bytraffic or byhash)", m.get_ref()),
                );
                Method::default_for_config()
            }),
            None => Method::default_for_config(),
        };
        let hash = self.hashing(spec, &key, method);
        let retry = self.duration(&spec.retry, &format!("{key}.retry"), DEFAULT_RETRY);
        let retry_max = self.duration(&spec.retry_max, &format!("{key}.retry_max"), DEFAULT_RETRY_MAX).max(retry);
        let fail_on_status = spec.failonstatus.clone().unwrap_or_default();
        let mut replicas = Vec::new();
        let mut discovered = Vec::new();
        for (i, m) in spec.members.iter().enumerate() {
            let mkey = format!("{key}.members[{i}]");
            let entry = &m.get_ref().0;
            let raw = entry.url.get_ref();
            let srv = raw.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("srv+"));
            let url = match parse_target(if srv { &raw[4..] } else { raw }) {
                Ok(Target::Url(u)) if srv && u.bare_host().parse::<std::net::IpAddr>().is_ok() => {
                    self.err(m, &mkey, format!("{raw:?}: srv+ needs a DNS name, not an address"));
                    continue;
                }
                Ok(Target::Url(u)) => u,
                Ok(Target::Balancer { .. }) => {
                    self.err(m, &mkey, "a member cannot be another balancer");
                    continue;
                }
                Err(e) => {
                    self.err(m, &mkey, format!("{:?}: {e}", entry.url.get_ref()));
                    continue;
                }
            };
            let status = match entry.status.as_ref() {
                None => Status::Normal,
                Some(s) => Status::parse(s.get_ref()).unwrap_or_else(|| {
                    self.err(
                        m,
                        format!("{mkey}.status"),
                        format!("unknown status {:?} (expected \"+H\", \"+N\" or \"+D\")", s.get_ref()),
                    );
                    Status::Normal
                }),
            };
            let weight = match &entry.loadfactor {
                Some(w) if !(1..=100).contains(w.get_ref()) => {
                    self.err(m, format!("{mkey}.loadfactor"), "expected a weight from 1 to 100 (Apache's range)");
                    1
                }
                Some(w) => *w.get_ref(),
                None => 1,
            };
            let member_retry = self.duration(&entry.retry, &format!("{mkey}.retry"), retry);
            let lookup = match srv {
                true => Some(Lookup::Service(url.bare_host().to_string())),
                false if is_fixed_host(url.bare_host()) => None,
                false => Some(Lookup::Address(url.bare_host().to_string())),
            };
            let replica = ReplicaSpec {
                url,
                weight,
                status,
                route: entry.route.clone(),
                health: Health {
                    retry: member_retry,
                    retry_max: retry_max.max(member_retry),
                    fail_on_status: entry.failonstatus.clone().unwrap_or_else(|| fail_on_status.clone()),
                },
            };
            match lookup {
                None => replicas.push(replica),
                Some(lookup) => discovered.push(Discovery { template: replica, lookup }),
            }
        }
        if spec.members.is_empty() {
            self.err(b, format!("{key}.members"), "a balancer needs at least one member");
        }
        let max_ejected_percent = match &spec.max_ejected_percent {
            Some(p) if *p.get_ref() > 100 => {
                self.err(p, format!("{key}.max_ejected_percent"), "expected a percentage from 0 to 100");
                RECOMMENDED_MAX_EJECTED_PERCENT
            }
            Some(p) => *p.get_ref(),
            None => RECOMMENDED_MAX_EJECTED_PERCENT,
        };
        BalancerSpec {
            name: name.get_ref().clone(),
            method,
            hash,
            replicas,
            sticky_session: spec.stickysession.clone(),
            max_attempts: spec.maxattempts.as_ref().map_or(DEFAULT_MAX_ATTEMPTS, |m| *m.get_ref()).max(1),
            max_ejected_percent,
            discovered,
            slow_start: self.duration(&spec.slow_start, &format!("{key}.slow_start"), Duration::ZERO),
            check: spec.health.as_ref().map(|h| self.health_check(h, &format!("{key}.health"))),
        }
    }

    /// `hash` and `hash_fallback`: required and allowed only with `method = "byhash"`.
    fn hashing(&mut self, spec: &file::Balancer, key: &str, method: Method) -> Option<Hashing> {
        if method != Method::ByHash {
            for (v, name) in [(&spec.hash, "hash"), (&spec.hash_fallback, "hash_fallback")] {
                if let Some(v) = v {
                    let msg = format!("only used with method = \"byhash\" (this balancer's method is {method})");
                    self.err(v, format!("{key}.{name}"), msg);
                }
            }
            return None;
        }
        let fallback = match &spec.hash_fallback {
            Some(f) => match Method::parse(f.get_ref()) {
                Some(m) if m != Method::ByHash => m,
                _ => {
                    let msg =
                        format!("unknown method {:?} (expected byrequests, bybusyness or bytraffic)", f.get_ref());
                    self.err(f, format!("{key}.hash_fallback"), msg);
                    Method::default_for_config()
                }
            },
            None => Method::default_for_config(),
        };
        let source = match &spec.hash {
            Some(h) => match HashSource::parse(h.get_ref()) {
                Ok(s) => s,
                Err(e) => {
                    self.err(h, format!("{key}.hash"), e);
                    return None;
                }
            },
            None => {
                let msg = format!("method \"byhash\" needs `hash`, the key to hash (expected {HASH_SOURCES})");
                // `method` is there: `byhash` is never the default.
                if let Some(m) = &spec.method {
                    self.err(m, format!("{key}.hash"), msg);
                }
                return None;
            }
        };
        Some(Hashing { source, fallback })
    }

    fn health_check(&mut self, h: &Spanned<file::HealthCheck>, key: &str) -> HealthCheck {
        let c = h.get_ref();
        let path = match &c.path {
            Some(p) if p.get_ref().starts_with('/') && p.get_ref().bytes().all(crate::target::is_target_byte) => {
                p.get_ref().clone()
            }
            Some(p) => {
                self.err(p, format!("{key}.path"), "expected a path starting with / (visible ASCII, no '#')");
                DEFAULT_CHECK_PATH.to_string()
            }
            None => DEFAULT_CHECK_PATH.to_string(),
        };
        let interval = self.duration(&c.interval, &format!("{key}.interval"), DEFAULT_CHECK_INTERVAL);
        if interval < MIN_REFRESH {
            if let Some(at) = &c.interval {
                self.err(at, format!("{key}.interval"), "expected at least 100ms");
            }
        }
        let timeout = self.duration(&c.timeout, &format!("{key}.timeout"), DEFAULT_CHECK_TIMEOUT);
        let mut count = |v: &Option<Spanned<u32>>, name: &str, default: u32| match v {
            Some(n) if *n.get_ref() == 0 || *n.get_ref() > 100 => {
                self.err(n, format!("{key}.{name}"), "expected a count from 1 to 100");
                default
            }
            Some(n) => *n.get_ref(),
            None => default,
        };
        let rise = count(&c.rise, "rise", DEFAULT_CHECK_RISE);
        let fall = count(&c.fall, "fall", DEFAULT_CHECK_FALL);
        let expect = match &c.expect {
            Some(e) => StatusRanges::parse(e.get_ref()).unwrap_or_else(|| {
                self.err(e, format!("{key}.expect"), "expected statuses such as \"200-399\" or \"200,204\"");
                StatusRanges(vec![(200, 399)])
            }),
            None => StatusRanges::parse(DEFAULT_CHECK_EXPECT).unwrap_or(StatusRanges(vec![(200, 399)])),
        };
        HealthCheck { path, interval: interval.max(MIN_REFRESH), timeout, rise, fall, expect }
    }

    /// `[resolver]` over `/etc/resolv.conf`: explicit `nameservers` replace the file
    /// (which is then not read); other keys override what it says. `/etc/hosts` is
    /// always consulted first, as glibc does.
    fn resolver(&mut self, r: Option<&Spanned<file::Resolver>>) -> ResolverConfig {
        let r_spanned = r;
        let r = r.map(Spanned::get_ref);
        let explicit = r.and_then(|r| r.nameservers.as_ref());
        let mut c = match explicit {
            Some(list) => {
                let mut nameservers = Vec::new();
                for s in list {
                    match parse_nameserver(s.get_ref()) {
                        Some(a) => nameservers.push(a),
                        None => self.err(
                            s,
                            "resolver.nameservers",
                            format!(
                                "{:?} is not an address (expected e.g. \"10.96.0.10:53\" or \"10.96.0.10\")",
                                s.get_ref()
                            ),
                        ),
                    }
                }
                if list.is_empty() {
                    if let Some(r) = r_spanned {
                        self.err(
                            r,
                            "resolver.nameservers",
                            "at least one nameserver is needed (or leave the key out to use /etc/resolv.conf)",
                        );
                    }
                }
                ResolverConfig { nameservers, ..ResolverConfig::default() }
            }
            None => self.read(RESOLV_CONF).map(|t| parse_resolv_conf(&t)).unwrap_or_default(),
        };
        c.hosts = self.read(HOSTS_FILE).map(|t| parse_hosts(&t)).unwrap_or_default();
        let Some(r) = r else { return c };
        if let Some(search) = &r.search {
            c.search = search.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect();
        }
        if let Some(n) = &r.ndots {
            c.ndots = *n.get_ref();
        }
        c.timeout = self.duration(&r.timeout, "resolver.timeout", c.timeout);
        if let Some(a) = &r.attempts {
            match *a.get_ref() {
                0 => self.err(a, "resolver.attempts", "expected at least 1"),
                n => c.attempts = n,
            }
        }
        if let Some(v) = &r.refresh {
            let d = self.duration(&r.refresh, "resolver.refresh", MIN_REFRESH);
            if d < MIN_REFRESH {
                self.err(v, "resolver.refresh", "expected at least 100ms");
            }
            c.refresh = Some(d.max(MIN_REFRESH));
        }
        c
    }
}

/// A host that needs no lookup ahead of time: an IP literal, or `localhost`, which is
/// the loopback interface by definition (RFC 6761 §6.3) and is connected to as before,
/// trying its addresses in turn.
fn is_fixed_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost")
}

/// The backend URLs a route's responses may name, for ProxyPassReverse: one per
/// member for a balancer, with ws/wss written as the http/https a backend uses.
fn reverse_rules(route: &Route, balancers: &[BalancerSpec]) -> Vec<ReverseRule> {
    let rule = |url: &Url, path: &str| {
        let scheme = match url.scheme {
            Scheme::Ws | Scheme::Http => Scheme::Http,
            Scheme::Wss | Scheme::Https => Scheme::Https,
        };
        let origin = Url { scheme, path: String::new(), ..url.clone() }.origin();
        ReverseRule { backend: format!("{origin}{path}"), front_prefix: route.prefix.clone() }
    };
    match &route.target {
        Target::Url(u) => vec![rule(u, &u.path)],
        Target::Balancer { name, path } => balancers
            .iter()
            .filter(|b| &b.name == name)
            .flat_map(|b| {
                // A name stands for its addresses, and backends name themselves by it.
                let named = b.discovered.iter().filter(|d| matches!(d.lookup, Lookup::Address(_)));
                b.replicas.iter().chain(named.map(|d| &d.template)).map(|m| rule(&m.url, path))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(source: &str) -> Vec<String> {
        match resolve(Path::new("sidecar.toml"), source, Disk::Read) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn example_with_rewrite_proxy_and_balancer_resolves() {
        let source = r#"
[server]
listen = ["127.0.0.1:8443", "[::1]:8443"]
server_name = "ws.example.com"
proxy_timeout = "60s"

[[rewrite]]
cond = ["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"]
rule = ".* wss://localhost:3000%{REQUEST_URI} [P,L]"

[[proxy]]
path = "/"
to = "balancer://backend-cluster/"
reverse = true
preserve_host = false

[balancer.backend-cluster]
method = "byrequests"
retry = "10s"
members = [
  "https://server01:3000",
  { url = "https://server03:3000", loadfactor = 2 },
  { url = "https://spare:3000", status = "+H" },
]
"#;
        assert_eq!(errors(source), Vec::<String>::new());
    }

    #[test]
    fn names_are_discovered_and_addresses_are_fixed() {
        let source = |members: &str| {
            format!("[server]\nlisten = \"127.0.0.1:1\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://b/\"\n[balancer.b]\nmembers = [{members}]\n")
        };
        for (members, fixed, discovered) in [
            ("\"http://127.0.0.1:3000\", \"http://[::1]:3000\"", 2, &[][..]),
            ("\"http://localhost:3000\", \"http://app.localhost:3000\"", 2, &[][..]),
            ("\"http://app.default.svc:3000\"", 0, &["A/AAAA app.default.svc"][..]),
            ("\"srv+https://_https._tcp.app.test\", \"http://10.0.0.1:80\"", 1, &["SRV _https._tcp.app.test"][..]),
            ("\"SRV+ws://_ws._tcp.App.Test\"", 0, &["SRV _ws._tcp.app.test"][..]),
        ] {
            let c = resolve(Path::new("sidecar.toml"), &source(members), Disk::Read)
                .unwrap_or_else(|e| panic!("{members}: {e:?}"));
            let b = &c.balancers[0].definition;
            let got: Vec<String> =
                b.discovered.iter().map(|d| format!("{} {}", d.lookup.kind(), d.lookup.name())).collect();
            assert_eq!(
                (b.replicas.len(), got),
                (fixed, discovered.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "{members}"
            );
        }
    }

    #[test]
    fn dns_and_health_check_errors_name_line_and_key() {
        let head = "[server]\nlisten = \"127.0.0.1:1\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://b/\"\n";
        for (tail, want) in [
            (
                "[balancer.b]\nmembers = [\"srv+http://10.0.0.1\"]\n",
                "sidecar.toml:7: balancer.b.members[0]: \"srv+http://10.0.0.1\": srv+ needs a DNS name",
            ),
            (
                "[resolver]\nnameservers = [\"dns.example\"]\n[balancer.b]\nmembers = [\"http://a:1\"]\n",
                "sidecar.toml:7: resolver.nameservers: \"dns.example\" is not an address",
            ),
            (
                "[resolver]\nnameservers = []\n[balancer.b]\nmembers = [\"http://a:1\"]\n",
                "sidecar.toml:6: resolver.nameservers: at least one nameserver is needed",
            ),
            (
                "[resolver]\nrefresh = \"10ms\"\n[balancer.b]\nmembers = [\"http://a:1\"]\n",
                "sidecar.toml:7: resolver.refresh: expected at least 100ms",
            ),
            (
                "[resolver]\nattempts = 0\n[balancer.b]\nmembers = [\"http://a:1\"]\n",
                "sidecar.toml:7: resolver.attempts: expected at least 1",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\nslow_start = \"soon\"\n",
                "sidecar.toml:8: balancer.b.slow_start: invalid duration",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\n[balancer.b.health]\npath = \"healthz\"\n",
                "sidecar.toml:9: balancer.b.health.path: expected a path starting with /",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\n[balancer.b.health]\nrise = 0\n",
                "sidecar.toml:9: balancer.b.health.rise: expected a count from 1 to 100",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\n[balancer.b.health]\nexpect = \"2xx\"\n",
                "sidecar.toml:9: balancer.b.health.expect: expected statuses such as",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\n[balancer.b.health]\ninterval = \"10ms\"\n",
                "sidecar.toml:9: balancer.b.health.interval: expected at least 100ms",
            ),
            (
                "[balancer.b]\nmembers = [\"http://a:1\"]\n[balancer.b.health]\nmethod = \"HEAD\"\n",
                "sidecar.toml:9: balancer.b.health.method: unknown field",
            ),
        ] {
            let got = errors(&format!("{head}{tail}"));
            assert!(got.iter().any(|e| e.starts_with(want)), "want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn byhash_keys_are_checked() {
        let head = "[server]\nlisten = \"127.0.0.1:1\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://b/\"\n[balancer.b]\nmembers = [\"http://a:1\"]\n";
        for (tail, want) in [
            (
                "method = \"byhash\"\n",
                "sidecar.toml:8: balancer.b.hash: method \"byhash\" needs `hash`, the key to hash (expected \"query:NAME\", \"cookie:NAME\", \"header:NAME\" or \"client_ip\")",
            ),
            (
                "method = \"byhash\"\nhash = \"arg:sid\"\n",
                "sidecar.toml:9: balancer.b.hash: unknown hash source \"arg:sid\" (expected \"query:NAME\"",
            ),
            (
                "method = \"byhash\"\nhash = \"header:X Session\"\n",
                "sidecar.toml:9: balancer.b.hash: \"header:X Session\": expected a header name after \"header:\"",
            ),
            (
                "hash = \"query:sid\"\n",
                "sidecar.toml:8: balancer.b.hash: only used with method = \"byhash\" (this balancer's method is bybusyness)",
            ),
            (
                "method = \"byrequests\"\nhash_fallback = \"bytraffic\"\n",
                "sidecar.toml:9: balancer.b.hash_fallback: only used with method = \"byhash\" (this balancer's method is byrequests)",
            ),
            (
                "method = \"byhash\"\nhash = \"client_ip\"\nhash_fallback = \"byhash\"\n",
                "sidecar.toml:10: balancer.b.hash_fallback: unknown method \"byhash\" (expected byrequests, bybusyness or bytraffic)",
            ),
            (
                "method = \"bycookie\"\n",
                "sidecar.toml:8: balancer.b.method: unknown method \"bycookie\" (expected byrequests, bybusyness, bytraffic or byhash)",
            ),
        ] {
            let got = errors(&format!("{head}{tail}"));
            assert!(got.iter().any(|e| e.starts_with(want)), "{tail:?}: want {want:?}, got {got:?}");
        }
        for (tail, source, fallback) in [
            ("hash = \"query:sid\"\n", HashSource::Query("sid".into()), Method::ByBusyness),
            (
                "hash = \"cookie:io\"\nhash_fallback = \"byrequests\"\n",
                HashSource::Cookie("io".into()),
                Method::ByRequests,
            ),
            ("hash = \"client_ip\"\n", HashSource::ClientIp, Method::ByBusyness),
        ] {
            let source_text = format!("{head}method = \"byhash\"\n{tail}");
            let c = resolve(Path::new("sidecar.toml"), &source_text, Disk::Read)
                .unwrap_or_else(|e| panic!("{tail}: {e:?}"));
            let spec = &c.balancers[0].definition;
            assert_eq!(spec.method, Method::ByHash);
            assert_eq!(spec.hash, Some(Hashing { source, fallback }), "{tail}");
            assert_eq!(spec.unkeyed_method(), fallback);
        }
    }

    #[test]
    fn errors_name_line_and_key() {
        for (source, want) in [
            ("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n", "sidecar.toml:3: server.bogus: unknown field `bogus`"),
            (
                "[server]\nlisten = \"127.0.0.1:1\"\n[[proxy]]\npath = \"/\"\nto = \"balancer://backend-clustr/\"\n[balancer.backend-cluster]\nmembers = [\"http://a:1\"]\n",
                "sidecar.toml:5: proxy[0].to: unknown balancer \"backend-clustr\" (expected one of: backend-cluster)",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:1\"\nproxy_timeout = \"10\"\n[[proxy]]\npath = \"/\"\nto = \"http://a/\"\n",
                "sidecar.toml:3: server.proxy_timeout: invalid duration \"10\"",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:1\"\n[server.tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[[proxy]]\npath = \"/\"\nto = \"http://a/\"\n",
                "sidecar.toml:4: server.tls.cert: certs/server.crt: no such file (paths are relative to the config file)",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:1\"\n[[proxy]]\npath = \"/\"\nto = \"wss:/localhost:3000/\"\n",
                "sidecar.toml:5: proxy[0].to: scheme followed by one slash",
            ),
            ("[server]\nlisten = \"nowhere\"\n[[proxy]]\npath = \"/\"\nto = \"http://a/\"\n", "sidecar.toml:2: server.listen: \"nowhere\" is not an address"),
            // Loaded, it would overflow `Instant + Duration` on every request.
            (
                "[server]\nlisten = \"127.0.0.1:1\"\nkeepalive_timeout = \"18446744073709551615s\"\n[[proxy]]\npath = \"/\"\nto = \"http://a/\"\n",
                "sidecar.toml:3: server.keepalive_timeout: duration \"18446744073709551615s\" is too long (at most 1 year, \"8760h\")",
            ),
        ] {
            let got = errors(source);
            assert!(got.iter().any(|e| e.starts_with(want)), "want {want:?}, got {got:?}");
        }
    }
}
