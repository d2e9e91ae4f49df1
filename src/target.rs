//! PURE. Where a request may be sent: an `http`/`https`/`ws`/`wss` URL or
//! `balancer://NAME/path`. Parsing is strict on purpose: the upstream authority must
//! come from config only (docs/security.md, CVE-2021-40438), so anything
//! that is not a plain `scheme://host[:port][/path]` is refused here rather than
//! interpreted.

use std::fmt;
use std::net::SocketAddr;

/// The four schemes a backend may be addressed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// `https` and `wss` run over TLS; a plain request to `wss` travels as `https`.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Wss)
    }

    pub fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            "ws" => Some(Self::Ws),
            "wss" => Some(Self::Wss),
            _ => None,
        }
    }
}

/// Whether a target with this scheme is itself reached over TLS; `None` for a scheme
/// sidecar does not proxy to. A `balancer://` target is not: its members say.
pub(crate) fn scheme_uses_tls(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("balancer") {
        return Some(false);
    }
    Scheme::parse(scheme).map(Scheme::is_tls)
}

/// A concrete backend URL. `host` is lower-case; an IPv6 literal keeps its brackets.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Url {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path and optional query, always starting with `/`.
    pub path: String,
    /// The address to connect to, when a resolver found it ahead of time (a member
    /// discovered through DNS). `host` still names the backend: it is the `Host`
    /// header and the name TLS verifies.
    pub addr: Option<SocketAddr>,
}

impl Clone for Url {
    fn clone(&self) -> Self {
        Self { scheme: self.scheme, host: self.host.clone(), port: self.port, path: self.path.clone(), addr: self.addr }
    }

    /// Reuses this URL's strings: a request copying its balancer member's URL into the
    /// one it kept from its last request allocates nothing.
    fn clone_from(&mut self, source: &Self) {
        self.scheme = source.scheme;
        self.host.clone_from(&source.host);
        self.port = source.port;
        self.path.clone_from(&source.path);
        self.addr = source.addr;
    }
}

impl Url {
    /// `host[:port]` as it goes into a `Host` header: the port only when not the default.
    pub fn authority(&self) -> String {
        match self.explicit_port() {
            None => self.host.clone(),
            Some(port) => format!("{}:{port}", self.host),
        }
    }

    /// The port as an authority shows it: `None` when it is the scheme's default.
    pub fn explicit_port(&self) -> Option<u16> {
        (self.port != self.scheme.default_port()).then_some(self.port)
    }

    /// `scheme://authority` with no path: the identity of a replica.
    pub fn origin(&self) -> String {
        let mut s = String::new();
        self.write_origin(&mut s);
        s
    }

    /// `origin` appended to `out`, without formatting or a temporary string.
    pub fn write_origin(&self, out: &mut String) {
        for part in [self.scheme.as_str(), "://", &self.host] {
            out.push_str(part);
        }
        if let Some(port) = self.explicit_port() {
            use std::fmt::Write;
            let _ = write!(out, ":{port}");
        }
    }

    /// The replica as logs and `/status` name it: the origin, and the address it is
    /// pinned to when there is one (`http://app:3000 (10.1.0.7:3000)`).
    pub fn replica(&self) -> String {
        match self.addr {
            Some(addr) => format!("{} ({addr})", self.origin()),
            None => self.origin(),
        }
    }

    /// The host without IPv6 brackets, as a resolver or TLS server name wants it.
    pub fn bare_host(&self) -> &str {
        self.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&self.host)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path)
    }
}

/// Where a route or a `P` rule sends requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Url(Url),
    Balancer { name: String, path: String },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(u) => u.fmt(f),
            Self::Balancer { name, path } => write!(f, "balancer://{name}{path}"),
        }
    }
}

/// Why a string is not a usable target. The text says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    NoScheme,
    UnknownScheme(String),
    /// `wss:/host` — one slash, a typo copied from tutorials.
    OneSlash,
    EmptyHost,
    UserInfo,
    BadPort(String),
    BadHost(String),
    BadPath,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoScheme => f.write_str("expected a URL such as http://host:port/ or balancer://name/"),
            Self::UnknownScheme(s) => write!(f, "unsupported scheme {s:?} (expected http, https, ws, wss or balancer)"),
            Self::OneSlash => f.write_str("scheme followed by one slash (write scheme://host, with two)"),
            Self::EmptyHost => f.write_str("empty host"),
            Self::UserInfo => f.write_str("user:password@ is not allowed in a target"),
            Self::BadPort(p) => write!(f, "invalid port {p:?}"),
            Self::BadHost(h) => write!(f, "invalid host {h:?}"),
            Self::BadPath => f.write_str("path contains a space, control or non-ASCII byte, or '#'"),
        }
    }
}

/// Parses a target as written in config or produced by a `P` rule.
pub fn parse_target(s: &str) -> Result<Target, TargetError> {
    let (scheme, rest) = s.split_once(':').ok_or(TargetError::NoScheme)?;
    let rest = match rest.strip_prefix("//") {
        Some(r) => r,
        None if rest.starts_with('/') => return Err(TargetError::OneSlash),
        None => return Err(TargetError::NoScheme),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if !path.bytes().all(is_target_byte) {
        return Err(TargetError::BadPath);
    }
    if scheme.eq_ignore_ascii_case("balancer") {
        if authority.is_empty() || !authority.bytes().all(is_name_byte) {
            return Err(TargetError::BadHost(authority.to_string()));
        }
        return Ok(Target::Balancer { name: authority.to_string(), path });
    }
    let scheme = Scheme::parse(scheme).ok_or_else(|| TargetError::UnknownScheme(scheme.to_string()))?;
    if authority.contains('@') {
        return Err(TargetError::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(TargetError::BadPort(p.to_string())),
        },
    };
    Ok(Target::Url(Url { scheme, host: host.to_ascii_lowercase(), port, path, addr: None }))
}

/// Splits `host[:port]`; IPv6 literals must be bracketed.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), TargetError> {
    if authority.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| TargetError::BadHost(authority.to_string()))?;
        let addr = &v6[..end];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TargetError::BadHost(authority.to_string()));
        }
        let host = &authority[..end + 2];
        return match &v6[end + 1..] {
            "" => Ok((host, None)),
            p => {
                p.strip_prefix(':').map(|p| (host, Some(p))).ok_or_else(|| TargetError::BadHost(authority.to_string()))
            }
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if !host.bytes().all(is_name_byte) {
        return Err(TargetError::BadHost(host.to_string()));
    }
    Ok((host, port))
}

/// Host names: letters, digits, `-`, `.`, `_` (some container DNS names use `_`).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// Bytes allowed in a request-target on the wire: visible ASCII except `#`
/// (no byte ≤ 0x20, no 0x7F, no non-ASCII, no `#`: docs/security.md, CVE-2023-25690, P8).
pub fn is_target_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'#'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        for (input, want) in [
            ("http://127.0.0.1:3000", Ok("http://127.0.0.1:3000/")),
            ("https://Server01:3000/app/", Ok("https://server01:3000/app/")),
            ("wss://localhost:443/x?y=1", Ok("wss://localhost/x?y=1")),
            ("ws://[::1]:8080", Ok("ws://[::1]:8080/")),
            ("http://h?q", Ok("http://h/?q")),
            ("balancer://backend-cluster/", Ok("balancer://backend-cluster/")),
            ("wss:/localhost:3000/", Err(TargetError::OneSlash)),
            ("unix:/run/x.sock|http://a/", Err(TargetError::OneSlash)),
            ("ftp://a/", Err(TargetError::UnknownScheme("ftp".into()))),
            ("http://a@b/", Err(TargetError::UserInfo)),
            ("http://:80/", Err(TargetError::EmptyHost)),
            ("http://h:0/", Err(TargetError::BadPort("0".into()))),
            ("http://h:+80/", Err(TargetError::BadPort("+80".into()))),
            ("http://h:99999/", Err(TargetError::BadPort("99999".into()))),
            ("http://h/a b", Err(TargetError::BadPath)),
            ("http://h/a\r\nX: y", Err(TargetError::BadPath)),
            ("http://[::1/", Err(TargetError::BadHost("[::1".into()))),
            ("localhost:3000", Err(TargetError::NoScheme)),
        ] {
            let got = parse_target(input).map(|t| t.to_string());
            assert_eq!(got, want.map(str::to_string), "input {input:?}");
        }
    }
}
