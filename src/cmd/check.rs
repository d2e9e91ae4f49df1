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
            print!("{}", describe(&c));
            for (line, message) in warnings(&c) {
                eprintln!("{}:{line}: warning: {message}", path.display());
            }
            println!("{}: ok", path.display());
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
            print!("{}", super::explain::explain(&c, &head));
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
        let _ = writeln!(
            s,
            "balancer {} method={} maxattempts={} max_ejected_percent={}{sticky}",
            b.name, spec.method, spec.max_attempts, spec.max_ejected_percent
        );
        for r in &spec.replicas {
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
