//! PURE. The ProxyPass table (`[[proxy]]`): path normalisation, longest
//! segment-boundary prefix match, the upstream path, and the ProxyPassReverse mapping.
//!
//! One normalisation is used both to match and to forward (docs/security.md, P1–P9; Apache
//! CVE-2019-0220 / CVE-2021-41773): unreserved `%XX` are decoded, other escapes kept
//! (upper-cased), runs of `/` merged, dot segments removed. Encoded `/` and `\` are
//! refused (Apache `AllowEncodedSlashes Off`), a raw `\` and `%00` are malformed.

use crate::target::Target;

/// One `[[proxy]]` entry, resolved.
#[derive(Clone, Debug)]
pub struct Route {
    /// Position in the config file, for logs (`proxy[0]`).
    pub index: usize,
    /// Normalised prefix; `/` or without a trailing slash.
    pub prefix: String,
    pub target: Target,
    pub reverse: bool,
    pub preserve_host: bool,
    pub upgrade: bool,
    /// The route's own keepalive Pings for tunnels; `None`: the server's.
    pub keepalive: Option<crate::websocket::Keepalive>,
}

/// Why a path cannot be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// 400: bad `%` escape, `%00`, a raw backslash, or `..` above the root.
    Malformed(&'static str),
    /// 404, as Apache answers: `%2F` or `%5C` in the path.
    EncodedSlash,
}

/// A request path ready to route and forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormPath {
    /// Normalised, still percent-encoded where it matters; valid on the wire.
    pub path: String,
    /// The raw query without `?`, byte-exact (P9), if there was a `?`.
    pub query: Option<String>,
}

impl NormPath {
    /// The fully %-decoded path, Apache's `r->uri` and `%{REQUEST_URI}`.
    pub fn decoded(&self) -> String {
        let bytes = self.path.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], hex_pair(bytes, i + 1)) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = (*bytes.get(at)? as char).to_digit(16)?;
    let lo = (*bytes.get(at + 1)? as char).to_digit(16)?;
    Some((hi * 16 + lo) as u8)
}

/// Splits an origin-form or absolute-form target and normalises its path. The
/// authority of an absolute-form target is dropped: it never chooses the upstream.
pub fn normalize_target(target: &str) -> Result<NormPath, PathError> {
    let origin = match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let rest = &target[i + 3..];
            rest.find(['/', '?']).map_or("/", |j| &rest[j..])
        }
        _ => target,
    };
    let (raw_path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (origin, None),
    };
    let raw_path = if raw_path.is_empty() { "/" } else { raw_path };
    Ok(NormPath { path: normalize_path(raw_path)?, query })
}

fn normalize_path(raw: &str) -> Result<String, PathError> {
    if raw == "*" {
        return Ok("*".to_string());
    }
    let bytes = raw.as_bytes();
    // Pass 1: escapes.
    let mut unescaped = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let b = hex_pair(bytes, i + 1).ok_or(PathError::Malformed("invalid percent escape in path"))?;
                match b {
                    0 => return Err(PathError::Malformed("%00 in path")),
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        unescaped.push(b as char)
                    }
                    b => unescaped.push_str(&format!("%{b:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Malformed("backslash in path")),
            b => {
                unescaped.push(b as char);
                i += 1;
            }
        }
    }
    // Pass 2: segments (RFC 3986 §5.2.4), with empty segments merged as Apache does.
    let mut segments: Vec<&str> = Vec::new();
    let trailing = unescaped.ends_with('/') || unescaped.ends_with("/.") || unescaped.ends_with("/..");
    for seg in unescaped.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::Malformed("path climbs above the root"));
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(unescaped.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

/// The route table, longest prefix first.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route whose prefix matches `path` on a segment boundary, longest first
    /// (`/api` matches `/api` and `/api/x`, not `/apix`; case-sensitive, P5).
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/" || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The upstream request-target for `path` under `route_prefix`, sent to a target
/// whose own path is `to_path`: ProxyPass `/api` `http://b/x` sends `/api/y` as `/x/y`.
pub fn upstream_target(route_prefix: &str, to_path: &str, path: &NormPath) -> String {
    let rest = if route_prefix == "/" { &path.path[..] } else { &path.path[route_prefix.len()..] };
    let mut out = join_paths(to_path, rest);
    if let Some(q) = &path.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Joins two path parts with exactly one `/` between them.
pub fn join_paths(base: &str, rest: &str) -> String {
    let base = if base.is_empty() { "/" } else { base };
    match (base.ends_with('/'), rest.starts_with('/')) {
        (_, _) if rest.is_empty() => base.to_string(),
        (true, true) => format!("{base}{}", &rest[1..]),
        (false, false) => format!("{base}/{rest}"),
        _ => format!("{base}{rest}"),
    }
}

/// One ProxyPassReverse mapping: a URL the backend may put in `Location`, and the
/// client-facing path prefix that replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseRule {
    /// Lower-case `scheme://authority/path` of the backend (http/https, never ws/wss).
    pub backend: String,
    pub front_prefix: String,
}

/// Maps a backend URL to the client-facing one, absolute on the client's origin (as
/// Apache does, and never a `//`-relative path: docs/security.md, B10). Foreign URLs:
/// `None`.
pub fn reverse_url(value: &[u8], rules: &[ReverseRule], front_origin: &str) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?;
    for rule in rules {
        let base = rule.backend.trim_end_matches('/');
        let Some(head) = value.get(..base.len()) else { continue };
        if !head.eq_ignore_ascii_case(base) {
            continue;
        }
        let rest = &value[base.len()..];
        if !(rest.is_empty() || rest.starts_with(['/', '?'])) {
            continue;
        }
        let rest = rest.strip_prefix(&rule.backend[base.len()..]).unwrap_or(rest);
        let front = rule.front_prefix.trim_end_matches('/');
        let path = if rest.starts_with('?') { format!("{front}/{rest}") } else { join_paths(front, rest) };
        let path = if path.is_empty() { "/".to_string() } else { path };
        return Some(format!("{front_origin}{path}").into_bytes());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse_target;

    #[test]
    fn normalizes_targets() {
        use PathError::*;
        for (input, want) in [
            ("/", Ok(("/", None))),
            ("/a/b/", Ok(("/a/b/", None))),
            ("/api/../admin", Ok(("/admin", None))), // P1
            ("/api/./x", Ok(("/api/x", None))),
            ("/%2e%2e/api", Err(Malformed(""))), // P3: decoded, then above the root
            ("/api/%2e%2e/x", Ok(("/x", None))),
            ("/api/%2E/x", Ok(("/api/x", None))),
            ("//api/x", Ok(("/api/x", None))), // P4
            ("/api//x", Ok(("/api/x", None))),
            ("/a/..", Ok(("/", None))),
            ("/a%20b%7e", Ok(("/a%20b~", None))),
            ("/a%3fb", Ok(("/a%3Fb", None))),         // CVE-2024-38474: keep %3F encoded
            ("/api%2f..%2fadmin", Err(EncodedSlash)), // P2
            ("/api%2Fx", Err(EncodedSlash)),
            ("/a%5cb", Err(EncodedSlash)),
            ("/api\\..\\admin", Err(Malformed(""))), // P7
            ("/a%00b", Err(Malformed(""))),          // R2
            ("/a%", Err(Malformed(""))),
            ("/a%zz", Err(Malformed(""))),
            ("/x?a=%0d%0a&b=/../", Ok(("/x", Some("a=%0d%0a&b=/../")))), // P9
            ("http://127.0.0.1:9/x?q", Ok(("/x", Some("q")))),           // O1
            ("http://h", Ok(("/", None))),
            ("/api/..;/admin", Ok(("/api/..;/admin", None))), // P6: literal
        ] {
            let got = normalize_target(input).map(|n| (n.path, n.query));
            let want = want.map(|(p, q)| (p.to_string(), q.map(str::to_string)));
            match (&got, &want) {
                (Err(Malformed(_)), Err(Malformed(_))) => {}
                _ => assert_eq!(got, want, "input {input:?}"),
            }
        }
    }

    #[test]
    fn decodes_for_rewrite() {
        let n = normalize_target("/a%0D%0AX-Injected:%201").expect("valid");
        assert_eq!(n.decoded(), "/a\r\nX-Injected: 1");
    }

    fn routes() -> Routes {
        let route = |prefix: &str, to: &str| Route {
            keepalive: None,
            index: 0,
            prefix: prefix.to_string(),
            target: parse_target(to).expect("valid target"),
            reverse: true,
            preserve_host: false,
            upgrade: true,
        };
        Routes::new(vec![route("/", "http://a/"), route("/api", "http://b/x"), route("/api/v2", "http://c/")])
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let table = routes();
        for (path, want) in [
            ("/", "/"),
            ("/api", "/api"),
            ("/api/x", "/api"),
            ("/apix", "/"), // P5
            ("/API/x", "/"),
            ("/api/v2/y", "/api/v2"),
            ("/api/v22", "/api"),
        ] {
            assert_eq!(table.find(path).map(|r| r.prefix.as_str()), Some(want), "path {path}");
        }
    }

    #[test]
    fn maps_upstream_targets() {
        for (prefix, to_path, target, want) in [
            ("/", "/", "/a/b?x=1", "/a/b?x=1"),
            ("/api", "/x", "/api/y", "/x/y"),
            ("/api", "/x", "/api", "/x"),
            ("/api", "/x/", "/api/y", "/x/y"),
            ("/api", "/", "/api/y", "/y"),
            ("/", "/app", "/", "/app/"),
        ] {
            let path = normalize_target(target).expect("valid");
            assert_eq!(upstream_target(prefix, to_path, &path), want, "{prefix} → {to_path}: {target}");
        }
    }

    #[test]
    fn reverse_maps_only_known_backends() {
        let rules = vec![
            ReverseRule { backend: "http://127.0.0.1:3000/".into(), front_prefix: "/".into() },
            ReverseRule { backend: "http://b:80/x".into(), front_prefix: "/api".into() },
        ];
        for (location, want) in [
            ("http://127.0.0.1:3000/login", Some("https://front/login")),
            ("http://127.0.0.1:3000", Some("https://front/")),
            ("HTTP://127.0.0.1:3000/a?b", Some("https://front/a?b")),
            ("http://127.0.0.1:3000//evil.example/", Some("https://front/evil.example/")), // B10
            ("http://127.0.0.1:30000/", None),
            ("https://other.example/", None),
            ("/x", None),
            ("http://b:80/x/y", Some("https://front/api/y")),
            ("http://b:80/xy", None),
        ] {
            let got = reverse_url(location.as_bytes(), &rules, "https://front");
            assert_eq!(got.map(|v| String::from_utf8(v).expect("ascii")), want.map(str::to_string), "{location}");
        }
    }
}
