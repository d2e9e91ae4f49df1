//! `sidecar check`: validate the config and print what it resolves to, in a form a
//! person can read.

use std::fmt::Write;
use std::path::Path;

use crate::balance::Status;
use crate::config::{self, Config, SelfSignedSource};
use crate::rewrite::{self, RuleSource};

pub fn check(path: &Path) -> i32 {
    match config::load(path) {
        Ok(c) => {
            // Names are looked up once, to show what they stand for now; a name that
            // does not resolve here (a CI runner outside the cluster) is only a warning.
            crate::discovery::resolve_now(&c);
            super::print_out(&describe(&c));
            for (line, message) in warnings(&c) {
                eprintln!("{}:{line}: warning: {message}", path.display());
            }
            for message in resolve_warnings(&c) {
                eprintln!("{}: warning: {message}", path.display());
            }
            super::print_out(&format!("{}: ok\n", path.display()));
            0
        }
        Err(diagnostics) => {
            for d in diagnostics {
                eprintln!("{d}");
            }
            1
        }
    }
}

/// `check --explain`: loads the config (exit 1 if it is broken, as `check`) and prints
/// what sidecar would do with the request, sending nothing. A request sidecar would not
/// parse exits 2, as a bad command line does.
pub fn check_explain(path: &Path, request: &str, headers: &[String]) -> i32 {
    let c = match config::load(path) {
        Ok(c) => c,
        Err(diagnostics) => {
            for d in diagnostics {
                eprintln!("{d}");
            }
            return 1;
        }
    };
    match super::explain::explain_request(request, headers, c.server_name.as_deref()) {
        Ok(head) => {
            // Members named in DNS stand for what the name resolves to now.
            crate::discovery::resolve_now(&c);
            for message in resolve_warnings(&c) {
                eprintln!("{}: warning: {message}", path.display());
            }
            super::print_out(&super::explain::explain(&c, &head));
            0
        }
        Err(e) => {
            eprintln!("--explain: {e}");
            2
        }
    }
}

/// Rule lints with their lines in the file.
pub fn warnings(c: &Config) -> Vec<(usize, String)> {
    let sources: Vec<RuleSource<'_>> = c.rule_sources.iter().map(|(conds, rule)| RuleSource { conds, rule }).collect();
    let mut out: Vec<(usize, String)> = rewrite::lints(&sources)
        .into_iter()
        .map(|l| {
            let line = c.rule_lines.get(l.entry).map_or(0, |lines| lines.line(l.field));
            (line, format!("rewrite[{}].{}: {}", l.entry, l.field, l.message))
        })
        .collect();
    out.sort_by_key(|(line, _)| *line);
    out
}

/// Names that found nothing when `check` looked them up.
pub fn resolve_warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for b in &c.balancers {
        for n in b.lock().names() {
            let (kind, name) = (n.lookup.kind(), n.lookup.name());
            match (&n.error, n.addresses.is_empty()) {
                (Some(error), _) => {
                    out.push(format!("balancer.{}: {name} ({kind}) does not resolve now: {error}", b.name))
                }
                (None, true) => out.push(format!("balancer.{}: {name} ({kind}): no answer in time", b.name)),
                (None, false) => {}
            }
        }
    }
    out
}

/// The resolved config as text.
pub fn describe(c: &Config) -> String {
    let mut s = String::new();
    let scheme = if c.server_tls.is_some() { "https" } else { "http" };
    for addr in &c.listen {
        let _ = writeln!(s, "listen  {scheme}://{addr}");
    }
    if let Some(dev) = &c.self_signed {
        let what = match &dev.source {
            SelfSignedSource::Generated { cert, files: None } => {
                format!("made at each start for {}, kept in memory", cert.names.join(", "))
            }
            SelfSignedSource::Generated { cert, files: Some(f) } => format!(
                "made at start for {}, written to {} and {}",
                cert.names.join(", "),
                f.cert.display(),
                f.key.display()
            ),
            SelfSignedSource::Read(f) => format!("{} (SHA-256 {})", f.cert.display(), dev.fingerprint),
        };
        let _ = writeln!(s, "tls     self-signed development certificate: {what}");
    }
    let _ = writeln!(s, "workers {}", c.workers);
    s.push_str(&super::budget::describe(c));
    if let Some(admin) = c.admin {
        let _ = writeln!(s, "admin   http://{admin}");
    }
    // The rules as they will run, in words (the engine's own description).
    let _ = write!(s, "{}", c.rules);
    for r in c.routes.iter() {
        let _ = writeln!(
            s,
            "proxy[{}] {} -> {} (reverse={}, preserve_host={}, upgrade={})",
            r.index, r.prefix, r.target, r.reverse, r.preserve_host, r.upgrade
        );
    }
    for b in &c.balancers {
        let bal = b.lock();
        let spec = bal.spec();
        let sticky = spec.sticky_session.as_deref().map(|c| format!(" stickysession={c}")).unwrap_or_default();
        let hash = spec.hash.as_ref().map(|h| format!(" hash={} hash_fallback={}", h.source, h.fallback));
        let slow_start = match spec.slow_start.as_millis() {
            0 => String::new(),
            ms => format!(" slow_start={ms}ms"),
        };
        let _ = writeln!(
            s,
            "balancer {} method={}{} maxattempts={} max_ejected_percent={}{sticky}{slow_start}",
            b.name,
            spec.method,
            hash.unwrap_or_default(),
            spec.max_attempts,
            spec.max_ejected_percent
        );
        if let Some(h) = &spec.check {
            let _ = writeln!(
                s,
                "  health GET {} every {}ms timeout={}ms rise={} fall={} expect={}",
                h.path,
                h.interval.as_millis(),
                h.timeout.as_millis(),
                h.rise,
                h.fall,
                h.expect
            );
        }
        let static_members = b.definition.replicas.len();
        for (d, n) in b.definition.discovered.iter().zip(bal.names()) {
            let r = &d.template;
            let shown = match &d.lookup {
                crate::balance::Lookup::Address(_) => r.url.origin(),
                crate::balance::Lookup::Service(_) => format!("srv+{}", r.url.origin()),
            };
            let addresses: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
            let found = match (&n.error, addresses.is_empty()) {
                (Some(e), true) => format!("does not resolve: {e}"),
                (None, true) => "no answer in time".to_string(),
                (_, _) => format!(
                    "{}: {}{}",
                    n.lookup.kind(),
                    addresses.join(" "),
                    n.ttl.map(|t| format!(" (ttl {}s)", t.as_secs())).unwrap_or_default()
                ),
            };
            let _ = writeln!(s, "  member {shown} loadfactor={} status={} -> {found}", r.weight, r.status);
        }
        for r in spec.replicas.iter().take(static_members) {
            let status = match r.status {
                Status::Normal => String::new(),
                other => format!(" status={other}"),
            };
            let route = r.route.as_deref().map(|x| format!(" route={x}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  member {} loadfactor={} retry={}s retry_max={}s{status}{route}",
                r.url.origin(),
                r.weight,
                r.health.retry.as_secs(),
                r.health.retry_max.as_secs()
            );
        }
    }
    s
}
