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
    pub fn as_ref(&self) -> NormRef<'_> {
        NormRef { path: &self.path, query: self.query.as_deref() }
    }

    /// The fully %-decoded path, Apache's `r->uri` and `%{REQUEST_URI}`.
    pub fn decoded(&self) -> String {
        self.as_ref().decoded()
    }
}

/// A `NormPath` whose path lives in a buffer the caller reuses and whose query
/// borrows from the request target: what the request path routes with, allocating
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormRef<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl NormRef<'_> {
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
    let mut path = String::new();
    let query = normalize_target_into(target, &mut path)?.query.map(str::to_string);
    Ok(NormPath { path, query })
}

/// `normalize_target` with the path written into `buf` (cleared first).
pub fn normalize_target_into<'a>(target: &'a str, buf: &'a mut String) -> Result<NormRef<'a>, PathError> {
    // Origin form (`/path?query`), nearly every request, has no scheme to look for.
    let origin = if target.starts_with('/') { target } else { path_of_absolute_form(target) };
    let (raw_path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    };
    let raw_path = if raw_path.is_empty() { "/" } else { raw_path };
    normalize_path_into(raw_path, buf)?;
    Ok(NormRef { path: buf, query })
}

/// The path and query of an absolute-form target (`http://host/path?query`); a target
/// without a scheme is returned as it is.
fn path_of_absolute_form(target: &str) -> &str {
    match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let rest = &target[i + 3..];
            rest.find(['/', '?']).map_or("/", |j| &rest[j..])
        }
        _ => target,
    }
}

fn normalize_path_into(raw: &str, out: &mut String) -> Result<(), PathError> {
    out.clear();
    if raw == "*" {
        out.push('*');
        return Ok(());
    }
    let bytes = raw.as_bytes();
    // Pass 1: every escape is judged before any segment, so a path with both a bad
    // escape and too many `..` gets the escape's answer. It also tells whether the
    // path is already normal (no escape, no empty or dot segment), as most are.
    let mut normal = bytes.first() == Some(&b'/');
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                match hex_pair(bytes, i + 1).ok_or(PathError::Malformed("invalid percent escape in path"))? {
                    0 => return Err(PathError::Malformed("%00 in path")),
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    _ => {}
                }
                normal = false;
                i += 3;
            }
            b'\\' => return Err(PathError::Malformed("backslash in path")),
            b'/' => {
                normal &= !matches!(bytes.get(i + 1), Some(b'/' | b'.'));
                i += 1;
            }
            _ => i += 1,
        }
    }
    if normal {
        out.push_str(raw);
        return Ok(());
    }
    // Pass 2: segment by segment (RFC 3986 §5.2.4), each unescaped first (so `%2E%2E`
    // is a dot segment; no escape can hide a `/`, pass 1 refused those), empty
    // segments merged as Apache does. Each segment is written, then taken back if it
    // is a dot or empty one: the output never needs a second buffer.
    let mut trailing = false;
    for (k, segment) in raw.split('/').enumerate() {
        let mark = out.len();
        out.push('/');
        unescape_into(segment, out);
        let dots = match &out[mark + 1..] {
            "" | "." => 1,
            ".." => 2,
            _ => 0,
        };
        // A path ending in `/`, `/.` or `/..` keeps its trailing slash.
        trailing = k > 0 && dots > 0;
        if dots > 0 {
            out.truncate(mark);
        }
        if dots == 2 {
            let parent = out.rfind('/').ok_or(PathError::Malformed("path climbs above the root"))?;
            out.truncate(parent);
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(())
}

/// Appends `segment` with unreserved `%XX` decoded and other escapes upper-cased
/// (escapes were checked by the caller).
fn unescape_into(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex_pair(bytes, i + 1)) {
            (b'%', Some(b)) => {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    out.push('%');
                    out.push(HEX[usize::from(b >> 4)] as char);
                    out.push(HEX[usize::from(b & 15)] as char);
                }
                i += 3;
            }
            (b, _) => {
                out.push(b as char);
                i += 1;
            }
        }
    }
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
    let mut out = String::new();
    upstream_target_into(route_prefix, to_path, path.as_ref(), &mut out);
    out
}

/// `upstream_target` written into `out` (cleared first).
pub fn upstream_target_into(route_prefix: &str, to_path: &str, path: NormRef<'_>, out: &mut String) {
    let rest = if route_prefix == "/" { path.path } else { &path.path[route_prefix.len()..] };
    out.clear();
    join_paths_into(to_path, rest, out);
    if let Some(q) = path.query {
        out.push('?');
        out.push_str(q);
    }
}

/// Joins two path parts with exactly one `/` between them.
pub fn join_paths(base: &str, rest: &str) -> String {
    let mut out = String::new();
    join_paths_into(base, rest, &mut out);
    out
}

/// `join_paths` appended to `out`.
pub fn join_paths_into(base: &str, rest: &str, out: &mut String) {
    let base = if base.is_empty() { "/" } else { base };
    out.push_str(base);
    match (base.ends_with('/'), rest.starts_with('/')) {
        _ if rest.is_empty() => {}
        (true, true) => out.push_str(&rest[1..]),
        (false, false) => {
            out.push('/');
            out.push_str(rest);
        }
        _ => out.push_str(rest),
    }
}

/// Which route or rule decided where a request went, as access lines and metrics name
/// it (`proxy[0]`, `rewrite[2]`): two numbers, formatted only when a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteLabel {
    /// The `[[proxy]]` entry at this position in the config file.
    Proxy(usize),
    /// The rewrite rule at this position.
    Rewrite(usize),
}

impl std::fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Proxy(i) => write!(f, "proxy[{i}]"),
            Self::Rewrite(i) => write!(f, "rewrite[{i}]"),
        }
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
            ("/a.b/c.", Ok(("/a.b/c.", None))),
            ("/a/.b", Ok(("/a/.b", None))),
            ("/a/...", Ok(("/a/...", None))),
            ("/a/b/.", Ok(("/a/b/", None))),
            ("/a/b//", Ok(("/a/b/", None))),
            ("/a://b", Ok(("/a:/b", None))), // origin form: no scheme
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
    fn normalising_into_a_used_buffer_gives_the_same_path() {
        let mut buf = String::from("/left/over/from/the/last/request");
        for input in ["/", "/api/../admin", "/a/%2e%2e", "//x//y/", "/a%3fb?q=1", "http://h", "*", "/%2e%2e/api"] {
            let owned = normalize_target(input);
            let reused =
                normalize_target_into(input, &mut buf).map(|n| (n.path.to_string(), n.query.map(str::to_string)));
            assert_eq!(reused, owned.map(|n| (n.path, n.query)), "input {input:?}");
        }
        let path = normalize_target("/api/y?x=1").expect("valid");
        let mut out = String::from("stale");
        upstream_target_into("/api", "/x", path.as_ref(), &mut out);
        assert_eq!(out, "/x/y?x=1");
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
