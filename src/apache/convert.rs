//! PURE. An Apache `<VirtualHost>` (its rewrite, proxy, balancer, listen and TLS
//! directives) → sidecar.toml text, with
//! a warning per line that cannot do what its author thinks and a list of every
//! directive that was not converted. Nothing is dropped silently.

use std::fmt::Write;

use super::parse::Node;
use crate::target::{parse_target, Target};

/// The result of an import.
#[derive(Debug, Default)]
pub struct Imported {
    pub toml: String,
    /// `(line, message)`: a converted line that probably does not do what was meant.
    pub warnings: Vec<(usize, String)>,
    /// `(line, directive)`: not converted.
    pub ignored: Vec<(usize, String)>,
}

#[derive(Debug)]
pub struct RewriteEntry {
    pub conds: Vec<(usize, String)>,
    pub rule: (usize, String),
}

#[derive(Debug)]
struct ProxyEntry {
    line: usize,
    path: String,
    to: String,
    reverse: bool,
}

#[derive(Debug, Default)]
struct Member {
    url: String,
    loadfactor: Option<u32>,
    status: Option<String>,
    route: Option<String>,
    retry: Option<String>,
}

#[derive(Debug, Default)]
struct Balancer {
    name: String,
    method: Option<String>,
    sticky: Option<String>,
    max_attempts: Option<u32>,
    fail_on_status: Vec<u16>,
    members: Vec<Member>,
    /// mod_proxy_hcheck settings, taken from the first member that has them.
    health: Option<HealthImport>,
}

/// A member's mod_proxy_hcheck parameters, as `[balancer.NAME.health]` takes them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HealthImport {
    path: String,
    /// Seconds (Apache's `hcinterval`, default 30).
    interval: u64,
    /// `hcpasses` and `hcfails`, Apache's default 1 each.
    rise: u32,
    fall: u32,
}

#[derive(Debug, Default)]
struct State {
    listen: Vec<String>,
    vhost_listen: Vec<String>,
    server_name: Option<String>,
    cert: Option<(usize, String)>,
    key: Option<(usize, String)>,
    ssl_engine: bool,
    ca: Option<String>,
    proxy_timeout: Option<String>,
    via: bool,
    preserve_host: bool,
    rewrite_engine: Option<(usize, bool)>,
    pending_conds: Vec<(usize, String)>,
    rewrites: Vec<RewriteEntry>,
    proxies: Vec<ProxyEntry>,
    balancers: Vec<Balancer>,
    vhosts: usize,
    /// Line of the converted `<VirtualHost>` (or of the first `Listen`), for warnings
    /// about the whole server.
    server_line: usize,
    out: Imported,
}

/// Converts a parsed Apache config.
pub fn convert(nodes: &[Node]) -> (Imported, Vec<RewriteEntry>) {
    let mut st = State::default();
    st.walk(nodes, None);
    st.finish()
}

impl State {
    fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.out.warnings.push((line, message.into()));
    }

    fn ignore(&mut self, n: &Node) {
        let text = if n.raw_args.is_empty() { n.name.clone() } else { format!("{} {}", n.name, n.raw_args) };
        self.out.ignored.push((n.line, text));
    }

    fn walk(&mut self, nodes: &[Node], location: Option<&str>) {
        for n in nodes {
            match (n.name.to_ascii_lowercase().as_str(), &n.children) {
                ("virtualhost", Some(children)) => {
                    self.vhosts += 1;
                    if self.vhosts == 1 {
                        self.server_line = n.line;
                    }
                    if self.vhosts > 1 {
                        self.warn(
                            n.line,
                            "only the first <VirtualHost> is converted; run import-apache on a file per vhost",
                        );
                        self.ignore(n);
                        continue;
                    }
                    for a in &n.args {
                        match listen_addr(a) {
                            Some(addr) => self.vhost_listen.push(addr),
                            None => self.warn(n.line, format!("cannot turn {a:?} into a listen address")),
                        }
                    }
                    self.walk(children, location);
                }
                ("proxy", Some(children))
                    if n.args.first().is_some_and(|a| a.to_ascii_lowercase().starts_with("balancer://")) =>
                {
                    let name = n.args[0]["balancer://".len()..].trim_end_matches('/').to_string();
                    self.open_balancer(name);
                    for c in children {
                        match c.name.to_ascii_lowercase().as_str() {
                            "balancermember" => self.member(c),
                            "proxyset" => self.proxy_set(c, None),
                            _ => self.ignore(c),
                        }
                    }
                }
                ("location", Some(children)) => {
                    let path = n.args.first().cloned();
                    self.walk(children, path.as_deref());
                }
                (_, Some(_)) => self.ignore(n),
                (name, None) => self.directive(name, n, location),
            }
        }
    }

    fn directive(&mut self, name: &str, n: &Node, location: Option<&str>) {
        let arg = |i: usize| n.args.get(i).cloned().unwrap_or_default();
        let on = || arg(0).eq_ignore_ascii_case("on");
        match name {
            "listen" => match listen_addr(&arg(0)) {
                Some(a) => {
                    if self.server_line == 0 {
                        self.server_line = n.line;
                    }
                    self.listen.push(a)
                }
                None => self.warn(n.line, format!("cannot turn Listen {:?} into an address", arg(0))),
            },
            "servername" => self.server_name = Some(arg(0)),
            "sslengine" => self.ssl_engine = on(),
            "sslcertificatefile" => self.cert = Some((n.line, arg(0))),
            "sslcertificatekeyfile" => self.key = Some((n.line, arg(0))),
            "sslproxyengine" => {}
            "sslproxycacertificatefile" => self.ca = Some(arg(0)),
            "sslproxyverify" if arg(0).eq_ignore_ascii_case("none") => self.warn(
                n.line,
                "SSLProxyVerify none: sidecar always verifies https/wss backends; put the backend's CA in [backend_tls] ca",
            ),
            "sslproxycheckpeername" | "sslproxycheckpeercn" | "sslproxycheckpeerexpire" if !on() => self.warn(
                n.line,
                format!("{} off: sidecar always checks backend certificates; put the backend's CA in [backend_tls] ca", n.name),
            ),
            "proxyrequests" if on() => self.warn(n.line, "ProxyRequests on: sidecar is never a forward proxy; ignored"),
            "proxyrequests" => {}
            "proxypreservehost" => self.preserve_host = on(),
            "proxyvia" => self.via = !arg(0).eq_ignore_ascii_case("off"),
            "proxytimeout" => match arg(0).parse::<u64>() {
                Ok(s) => self.proxy_timeout = Some(format!("{s}s")),
                Err(_) => self.warn(n.line, format!("ProxyTimeout {:?} is not a number of seconds", arg(0))),
            },
            "rewriteengine" => self.rewrite_engine = Some((n.line, on())),
            "rewritecond" => self.pending_conds.push((n.line, n.raw_args.clone())),
            "rewriterule" => {
                let conds = std::mem::take(&mut self.pending_conds);
                self.rewrites.push(RewriteEntry { conds, rule: (n.line, n.raw_args.clone()) });
            }
            "proxypass" => self.proxy_pass(n, location),
            "proxypassreverse" => self.proxy_pass_reverse(n, location),
            "balancermember" => self.member(n),
            "proxyset" => {
                let b = arg(0);
                if b.to_ascii_lowercase().starts_with("balancer://") {
                    self.proxy_set(n, Some(b["balancer://".len()..].trim_end_matches('/').to_string()));
                } else {
                    self.ignore(n);
                }
            }
            _ => self.ignore(n),
        }
    }

    fn proxy_pass(&mut self, n: &Node, location: Option<&str>) {
        let (path, to, params) = match (location, n.args.as_slice()) {
            (Some(loc), [to, params @ ..]) if !to.starts_with('/') => (loc.to_string(), to.clone(), params),
            (_, [path, to, params @ ..]) => (path.clone(), to.clone(), params),
            _ => {
                self.warn(n.line, "ProxyPass needs a path and a URL");
                self.ignore(n);
                return;
            }
        };
        if to == "!" {
            self.warn(n.line, format!("ProxyPass {path} ! (exclusion) has no sidecar equivalent; not converted"));
            self.ignore(n);
            return;
        }
        for p in params {
            if !p.to_ascii_lowercase().starts_with("upgrade=") {
                self.warn(n.line, format!("ProxyPass parameter {p:?} is not converted"));
            }
        }
        if let Err(e) = parse_target(&to) {
            self.warn(n.line, format!("ProxyPass target {to:?}: {e}"));
        }
        self.proxies.push(ProxyEntry { line: n.line, path, to, reverse: false });
    }

    fn proxy_pass_reverse(&mut self, n: &Node, location: Option<&str>) {
        let (path, to) = match (location, n.args.as_slice()) {
            (Some(loc), [to]) => (loc.to_string(), to.clone()),
            (_, [path, to, ..]) => (path.clone(), to.clone()),
            _ => {
                self.ignore(n);
                return;
            }
        };
        match self.proxies.iter_mut().find(|p| p.path == path) {
            Some(p) => {
                p.reverse = true;
                if p.to.trim_end_matches('/') != to.trim_end_matches('/') {
                    let message = format!(
                        "ProxyPassReverse {path} {to} differs from ProxyPass {}; sidecar reverses the ProxyPass target",
                        p.to
                    );
                    self.warn(n.line, message);
                }
            }
            None => self.warn(
                n.line,
                format!("ProxyPassReverse {path} has no ProxyPass for the same path before it; not converted"),
            ),
        }
    }

    /// `BalancerMember url params…` inside `<Proxy balancer://name>`, or
    /// `BalancerMember balancer://name url params…` outside it.
    fn member(&mut self, n: &Node) {
        let (named, url, params) = match n.args.split_first() {
            Some((first, rest)) if first.to_ascii_lowercase().starts_with("balancer://") => match rest.split_first() {
                Some((url, params)) => {
                    (Some(first["balancer://".len()..].trim_end_matches('/').to_string()), url.clone(), params.to_vec())
                }
                None => return self.ignore(n),
            },
            Some((url, params)) => (None, url.clone(), params.to_vec()),
            None => return self.ignore(n),
        };
        if let Some(name) = named {
            self.open_balancer(name);
        }
        let Some(b) = self.balancers.last_mut() else {
            self.warn(n.line, "BalancerMember outside <Proxy balancer://…>; not converted");
            return;
        };
        let mut m = Member { url: url.clone(), ..Member::default() };
        let mut warnings = Vec::new();
        let mut hc: Vec<(String, String)> = Vec::new();
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((&p, ""));
            match k.to_ascii_lowercase().as_str() {
                "loadfactor" => m.loadfactor = v.parse().ok(),
                "status" => m.status = Some(v.to_string()),
                "route" => m.route = Some(v.to_string()),
                "retry" => m.retry = v.parse::<u64>().ok().map(|s| format!("{s}s")),
                k @ ("hcmethod" | "hcuri" | "hcinterval" | "hcpasses" | "hcfails") => {
                    hc.push((k.to_string(), v.to_string()))
                }
                _ => warnings.push(format!("BalancerMember parameter {p:?} is not converted")),
            }
        }
        let member_path = match parse_target(&url) {
            Ok(crate::target::Target::Url(u)) => u.path,
            _ => "/".to_string(),
        };
        match health_import(&hc, &member_path, &mut warnings) {
            Some(h) if b.health.as_ref().is_some_and(|first| first != &h) => warnings.push(
                "BalancerMember health check settings differ from an earlier member's; sidecar checks every member of a balancer alike (the first member's settings are used)".into(),
            ),
            Some(h) if b.health.is_none() => b.health = Some(h),
            _ => {}
        }
        b.members.push(m);
        for w in warnings {
            self.warn(n.line, w);
        }
        if let Err(e) = parse_target(&url) {
            self.warn(n.line, format!("BalancerMember {url:?}: {e}"));
        }
    }

    /// Makes balancer `name` the last one, where `BalancerMember` and `ProxySet` without a
    /// name apply. A name seen before keeps its members: Apache adds a second
    /// `<Proxy balancer://x>` section's members to the same balancer.
    fn open_balancer(&mut self, name: String) {
        let b = match self.balancers.iter().position(|b| b.name == name) {
            Some(i) => self.balancers.remove(i),
            None => Balancer { name, ..Balancer::default() },
        };
        self.balancers.push(b);
    }

    fn proxy_set(&mut self, n: &Node, name: Option<String>) {
        let index = match name {
            Some(name) => self.balancers.iter().position(|b| b.name == name),
            None => self.balancers.len().checked_sub(1),
        };
        let Some(index) = index else {
            self.warn(n.line, "ProxySet for an unknown balancer; not converted");
            return;
        };
        let mut warnings = Vec::new();
        for p in &n.args {
            let Some((k, v)) = p.split_once('=') else { continue };
            let b = &mut self.balancers[index];
            match k.to_ascii_lowercase().as_str() {
                "lbmethod" if ["byrequests", "bybusyness", "bytraffic"].contains(&v) => b.method = Some(v.to_string()),
                "stickysession" => b.sticky = v.split('|').next().map(str::to_string),
                "maxattempts" => b.max_attempts = v.parse().ok(),
                "failonstatus" => b.fail_on_status = v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
                _ => warnings.push(format!("ProxySet parameter {p:?} is not converted")),
            }
        }
        for w in warnings {
            self.warn(n.line, w);
        }
    }

    fn finish(mut self) -> (Imported, Vec<RewriteEntry>) {
        for (line, _) in std::mem::take(&mut self.pending_conds) {
            self.warn(line, "RewriteCond without a RewriteRule after it: never used");
        }
        let rewrites = std::mem::take(&mut self.rewrites);
        let engine_on = self.rewrite_engine.is_some_and(|(_, on)| on);
        if !rewrites.is_empty() && !engine_on {
            self.warn(
                rewrites[0].rule.0,
                "RewriteRule without \"RewriteEngine on\": Apache ignores it; converted anyway",
            );
        }
        self.lint_targets(&rewrites);
        let listen = if !self.vhost_listen.is_empty() { self.vhost_listen.clone() } else { self.listen.clone() };
        let listen = if listen.is_empty() { vec!["0.0.0.0:80".to_string()] } else { listen };
        let tls = self.cert.clone().zip(self.key.clone());
        if tls.is_none() && listen.iter().any(|a| a.ends_with(":443")) {
            self.out.warnings.push((
                self.server_line.max(1),
                "port 443 without SSLCertificateFile/SSLCertificateKeyFile: sidecar will speak plain HTTP there".into(),
            ));
        }
        if self.proxies.is_empty() && rewrites.is_empty() {
            self.out
                .warnings
                .push((self.server_line.max(1), "no ProxyPass or RewriteRule found: the config serves nothing".into()));
        }
        let mut t = String::new();
        let _ = writeln!(t, "# Converted by `sidecar import-apache`; check it with `sidecar check`.");
        let _ = writeln!(t, "[server]");
        let quoted: Vec<String> = listen.iter().map(|a| toml_str(a)).collect();
        let _ = writeln!(t, "listen = [{}]", quoted.join(", "));
        if let Some(name) = &self.server_name {
            let _ = writeln!(t, "server_name = {}", toml_str(name));
        }
        if let Some(timeout) = &self.proxy_timeout {
            let _ = writeln!(t, "proxy_timeout = {}", toml_str(timeout));
        }
        if self.via {
            let _ = writeln!(t, "via = true");
        }
        if let Some(((_, cert), (_, key))) = &tls {
            let _ = writeln!(t, "\n[server.tls]\ncert = {}\nkey = {}", toml_str(cert), toml_str(key));
        }
        for r in &rewrites {
            let _ = writeln!(t, "\n[[rewrite]]  # Apache line {}", r.rule.0);
            let conds: Vec<String> = r.conds.iter().map(|(_, c)| toml_str(c)).collect();
            if !conds.is_empty() {
                let _ = writeln!(t, "cond = [{}]", conds.join(", "));
            }
            let _ = writeln!(t, "rule = {}", toml_str(&r.rule.1));
        }
        for p in &self.proxies {
            let _ = writeln!(t, "\n[[proxy]]  # Apache line {}", p.line);
            let _ = writeln!(t, "path = {}\nto = {}\nreverse = {}", toml_str(&p.path), toml_str(&p.to), p.reverse);
            if self.preserve_host {
                let _ = writeln!(t, "preserve_host = true");
            }
        }
        for b in &self.balancers {
            let _ = writeln!(t, "\n[balancer.{}]", toml_key(&b.name));
            if let Some(m) = &b.method {
                let _ = writeln!(t, "method = {}", toml_str(m));
            }
            if let Some(s) = &b.sticky {
                let _ = writeln!(t, "stickysession = {}", toml_str(s));
            }
            if let Some(m) = b.max_attempts {
                let _ = writeln!(t, "maxattempts = {m}");
            }
            if !b.fail_on_status.is_empty() {
                let codes: Vec<String> = b.fail_on_status.iter().map(u16::to_string).collect();
                let _ = writeln!(t, "failonstatus = [{}]", codes.join(", "));
            }
            let _ = writeln!(t, "members = [");
            for m in &b.members {
                let mut fields = Vec::new();
                if let Some(l) = m.loadfactor {
                    fields.push(format!("loadfactor = {l}"));
                }
                if let Some(s) = &m.status {
                    fields.push(format!("status = {}", toml_str(s)));
                }
                if let Some(r) = &m.route {
                    fields.push(format!("route = {}", toml_str(r)));
                }
                if let Some(r) = &m.retry {
                    fields.push(format!("retry = {}", toml_str(r)));
                }
                if fields.is_empty() {
                    let _ = writeln!(t, "  {},", toml_str(&m.url));
                } else {
                    let _ = writeln!(t, "  {{ url = {}, {} }},", toml_str(&m.url), fields.join(", "));
                }
            }
            let _ = writeln!(t, "]");
            if let Some(h) = &b.health {
                let _ = writeln!(t, "\n[balancer.{}.health]  # mod_proxy_hcheck", toml_key(&b.name));
                let _ = writeln!(t, "path = {}", toml_str(&h.path));
                let _ = writeln!(t, "interval = \"{}s\"", h.interval);
                let _ = writeln!(t, "rise = {}\nfall = {}", h.rise, h.fall);
            }
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(t, "\n[backend_tls]\nca = {}", toml_str(ca));
        }
        self.out.toml = t;
        self.out.warnings.sort_by_key(|(line, _)| *line);
        (self.out, rewrites)
    }

    /// `balancer://` targets of rules that no `<Proxy balancer://…>` defines (the rule
    /// lints, run by the caller, cover the rest).
    fn lint_targets(&mut self, rewrites: &[RewriteEntry]) {
        for r in rewrites {
            let args = super::parse::split_args(&r.rule.1).unwrap_or_default();
            if let Some(target) = args.get(1) {
                if let Ok(Target::Balancer { name, .. }) = parse_target(target) {
                    if !self.balancers.iter().any(|b| b.name == name) {
                        self.warn(
                            r.rule.0,
                            format!("balancer://{name} is not defined by a <Proxy balancer://{name}> section"),
                        );
                    }
                }
            }
        }
    }
}

/// `*:443`, `443`, `_default_:443`, `[::]:443`, `1.2.3.4:80` → a listen address.
/// mod_proxy_hcheck's member parameters → `[balancer.NAME.health]`: `hcmethod` GET,
/// HEAD or OPTIONS (sidecar always sends GET and reads only the status, which is what
/// those three check), `hcuri` appended to the member's path as Apache does,
/// `hcinterval` seconds, `hcpasses` → `rise`, `hcfails` → `fall`. No `hcmethod`, or
/// `NONE`: no check. Anything that cannot be converted is said in `warnings`.
fn health_import(hc: &[(String, String)], member_path: &str, warnings: &mut Vec<String>) -> Option<HealthImport> {
    let get = |k: &str| hc.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let method = get("hcmethod").map(str::to_ascii_uppercase);
    match method.as_deref() {
        None | Some("NONE") => {
            if hc.iter().any(|(k, _)| k != "hcmethod") {
                warnings.push("hc* parameters without hcmethod: Apache runs no health check; none converted".into());
            }
            return None;
        }
        Some("GET" | "HEAD" | "OPTIONS") => {}
        Some(other) => {
            warnings.push(format!(
                "hcmethod={other} is not converted: sidecar's health checks are HTTP GET requests (a TCP or AJP check has no equivalent)"
            ));
            return None;
        }
    }
    let mut path = member_path.trim_end_matches('/').to_string();
    path.push('/');
    path.push_str(get("hcuri").unwrap_or("").trim_start_matches('/'));
    let number = |k: &str, default: u64, warnings: &mut Vec<String>| match get(k).map(|v| v.parse::<u64>()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            warnings.push(format!(
                "{k}={:?} is not a positive number; Apache's default {default} used",
                get(k).unwrap_or("")
            ));
            default
        }
    };
    let interval = number("hcinterval", 30, warnings);
    let rise = number("hcpasses", 1, warnings).min(100) as u32;
    let fall = number("hcfails", 1, warnings).min(100) as u32;
    Some(HealthImport { path, interval, rise, fall })
}

fn listen_addr(a: &str) -> Option<String> {
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p),
        _ => ("", a),
    };
    let port: u16 = port.parse().ok()?;
    let host = match host {
        "" | "*" | "_default_" => "0.0.0.0",
        h => h,
    };
    let addr = format!("{host}:{port}");
    addr.parse::<std::net::SocketAddr>().ok().map(|_| addr)
}

/// A TOML string as the `toml` crate writes it: literal `'…'` when the text holds a
/// `"` (rules then read as written), basic otherwise. The document around the values
/// is laid out here because serde cannot write the `# Apache line N` comments.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_key(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        s.to_string()
    } else {
        toml_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        for (input, want) in [
            ("*:443", Some("0.0.0.0:443")),
            ("443", Some("0.0.0.0:443")),
            ("_default_:80", Some("0.0.0.0:80")),
            ("127.0.0.1:8080", Some("127.0.0.1:8080")),
            ("[::]:443", Some("[::]:443")),
            ("example.com:80", None),
        ] {
            assert_eq!(listen_addr(input).as_deref(), want, "input {input}");
        }
    }

    #[test]
    fn a_balancer_in_two_proxy_sections_is_one_table() {
        // Found by fuzzing (fuzz/regressions/import_apache): the table was written twice,
        // which is not TOML. Apache adds the second section's members to the same balancer.
        let text = "<VirtualHost *:80>\n<Proxy balancer://app>\nBalancerMember http://a:1\n</Proxy>\n\
                    <Proxy balancer://app>\nBalancerMember http://b:1\nProxySet lbmethod=bybusyness\n</Proxy>\n\
                    ProxyPass / balancer://app/\n</VirtualHost>\n";
        let (imported, _) = convert(&super::super::parse_config(text).expect("parses"));
        let table: toml::Table = toml::from_str(&imported.toml).expect("valid TOML");
        let app = table.get("balancer").and_then(|b| b.get("app")).expect("balancer.app");
        let members = app.get("members").and_then(|m| m.as_array()).map(Vec::len);
        assert_eq!(members, Some(2), "{}", imported.toml);
        assert_eq!(app.get("method").and_then(|m| m.as_str()), Some("bybusyness"), "{}", imported.toml);
    }

    #[test]
    fn converts_mod_proxy_hcheck_parameters() {
        let params = |s: &str| -> Vec<(String, String)> {
            s.split_whitespace()
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        for (hc, member_path, want, warns) in [
            ("hcmethod=GET hcuri=/healthz hcinterval=5 hcpasses=2 hcfails=3", "/", Some(("/healthz", 5, 2, 3)), 0),
            ("hcmethod=head hcuri=healthz", "/app/", Some(("/app/healthz", 30, 1, 1)), 0), // Apache appends hcuri
            ("hcmethod=OPTIONS", "/", Some(("/", 30, 1, 1)), 0),
            ("hcmethod=GET hcinterval=soon", "/", Some(("/", 30, 1, 1)), 1),
            ("hcmethod=TCP hcinterval=5", "/", None, 1),
            ("hcmethod=NONE", "/", None, 0),
            ("hcuri=/healthz", "/", None, 1), // no hcmethod: Apache runs no check
            ("", "/", None, 0),
        ] {
            let mut warnings = Vec::new();
            let got = health_import(&params(hc), member_path, &mut warnings);
            let want =
                want.map(|(path, interval, rise, fall)| HealthImport { path: path.into(), interval, rise, fall });
            assert_eq!(got, want, "{hc:?}");
            assert_eq!(warnings.len(), warns, "{hc:?}: {warnings:?}");
        }
    }

    #[test]
    fn toml_strings() {
        assert_eq!(toml_str(".* \"wss://h\" [P,L]"), "'.* \"wss://h\" [P,L]'");
        assert_eq!(toml_str("it's"), "\"it's\"");
        for s in ["a\u{1}b", "both ' and \"", "back\\slash", "%{HTTP:Upgrade} websocket [NC]"] {
            let doc = format!("k = {}", toml_str(s));
            let parsed: toml::Table = doc.parse().unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(parsed["k"].as_str(), Some(s), "{doc}");
        }
    }
}
