//! Server variables (`%{NAME}`): which names exist, resolved once at load, and how one
//! is looked up for a request without copying it (`with_var` lends the value to a
//! closure; only `SERVER_PORT` is formatted, into a stack buffer). Apache's
//! `lookup_variable` (mod_rewrite.c) is the reference: names are case-insensitive, an
//! absent header is "". Names sidecar cannot know (TIME_*, DOCUMENT_ROOT, SSL:, LA-U:,
//! …) are load errors instead of Apache's silent "".

use super::escape::Source;
use super::expand::Cx;

/// A server variable (`%{NAME}`), resolved at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Var {
    /// `%{HTTP:Name}` and the `HTTP_*` shortcuts: all lines joined with ", ", or "".
    Header(Box<str>),
    /// `%{ENV:NAME}`: set by an earlier `E=` in this request, else "" (no process env:
    /// the engine is pure).
    Env(Box<str>),
    /// The decoded path of the request as received (Apache `r->uri`): earlier rewrites
    /// do not change it.
    RequestUri,
    RequestMethod,
    /// The current query string, wire form (earlier rewrites may have replaced it).
    QueryString,
    TheRequest,
    RemoteAddr,
    /// The host name without a port.
    ServerName,
    ServerPort,
    /// "on" or "off".
    Https,
    RequestScheme,
    ServerProtocol,
    /// The path as rewritten so far (Apache `r->filename` in server context).
    RequestFilename,
}

/// Names accepted in `%{…}`, as Apache spells them (matched case-insensitively).
pub(crate) const VAR_NAMES: &[&str] = &[
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HTTP_REFERER",
    "HTTP_COOKIE",
    "HTTP_ACCEPT",
    "HTTP_FORWARDED",
    "HTTP_PROXY_CONNECTION",
    "REQUEST_URI",
    "REQUEST_METHOD",
    "QUERY_STRING",
    "THE_REQUEST",
    "REMOTE_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTPS",
    "REQUEST_SCHEME",
    "SERVER_PROTOCOL",
    "REQUEST_FILENAME",
    "SCRIPT_FILENAME",
];

impl Var {
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        if let Some((prefix, rest)) = name.split_once(':') {
            return if prefix.eq_ignore_ascii_case("HTTP") {
                match rest.bytes().all(is_tchar) && !rest.is_empty() {
                    true => Ok(Self::Header(rest.into())),
                    false => Err(format!("invalid header name {rest:?} in %{{HTTP:…}}")),
                }
            } else if prefix.eq_ignore_ascii_case("ENV") && !rest.is_empty() {
                Ok(Self::Env(rest.into()))
            } else {
                Err(format!("unsupported variable %{{{name}}} (expected HTTP:Header or ENV:NAME; SSL:, LA-U: and LA-F: need Apache modules sidecar does not have)"))
            };
        }
        let header = |h: &str| Ok(Self::Header(h.into()));
        match name.to_ascii_uppercase().as_str() {
            "HTTP_HOST" => header("Host"),
            "HTTP_USER_AGENT" => header("User-Agent"),
            "HTTP_REFERER" => header("Referer"),
            "HTTP_COOKIE" => header("Cookie"),
            "HTTP_ACCEPT" => header("Accept"),
            "HTTP_FORWARDED" => header("Forwarded"),
            "HTTP_PROXY_CONNECTION" => header("Proxy-Connection"),
            "REQUEST_URI" => Ok(Self::RequestUri),
            "REQUEST_METHOD" => Ok(Self::RequestMethod),
            "QUERY_STRING" => Ok(Self::QueryString),
            "THE_REQUEST" => Ok(Self::TheRequest),
            "REMOTE_ADDR" => Ok(Self::RemoteAddr),
            "SERVER_NAME" => Ok(Self::ServerName),
            "SERVER_PORT" => Ok(Self::ServerPort),
            "HTTPS" => Ok(Self::Https),
            "REQUEST_SCHEME" => Ok(Self::RequestScheme),
            "SERVER_PROTOCOL" => Ok(Self::ServerProtocol),
            "REQUEST_FILENAME" | "SCRIPT_FILENAME" => Ok(Self::RequestFilename),
            _ => Err(format!(
                "unknown variable %{{{name}}} (expected HTTP:Header, ENV:NAME or one of {})",
                VAR_NAMES.join(", ")
            )),
        }
    }

    /// What must be re-encoded when this value lands in a substitution.
    pub(crate) fn source(&self) -> Source {
        match self {
            Self::QueryString | Self::TheRequest => Source::Raw,
            _ => Source::Decoded,
        }
    }
}

/// RFC 9110 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Looks a variable up and lends it to `f`; only `SERVER_PORT` is formatted, on the stack.
pub(crate) fn with_var<R>(var: &Var, cx: &Cx<'_>, f: impl FnOnce(&str) -> R) -> R {
    let https = cx.req.https();
    match var {
        Var::Header(name) => f(cx.req.header(name).as_deref().unwrap_or("")),
        Var::Env(name) => {
            f(cx.env.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str()))
        }
        Var::RequestUri => f(cx.req.path()),
        Var::RequestMethod => f(cx.req.method()),
        Var::QueryString => f(cx.query),
        Var::TheRequest => f(cx.req.request_line()),
        Var::RemoteAddr => f(cx.req.remote_addr()),
        Var::ServerName => f(host_only(cx.req.server_name())),
        Var::ServerPort => {
            let mut buf = [0u8; 5];
            f(format_port(cx.req.server_port(), &mut buf))
        }
        Var::Https => f(if https { "on" } else { "off" }),
        Var::RequestScheme => f(if https { "https" } else { "http" }),
        Var::ServerProtocol => f(protocol(cx.req.request_line())),
        Var::RequestFilename => f(cx.filename.unwrap_or_else(|| cx.req.path())),
    }
}

/// `host[:port]` → `host` (Apache's SERVER_NAME has no port); IPv6 keeps its brackets.
pub(crate) fn host_only(s: &str) -> &str {
    match s.strip_prefix('[') {
        Some(v6) => v6.find(']').map_or(s, |e| &s[..e + 2]),
        None => s.split(':').next().unwrap_or(s),
    }
}

/// `GET /x HTTP/1.1` → `HTTP/1.1`; "" when the line has no version.
fn protocol(request_line: &str) -> &str {
    let mut words = request_line.split(' ');
    match (words.next(), words.next(), words.next_back()) {
        (Some(_), Some(_), Some(p)) => p,
        _ => "",
    }
}

fn format_port(port: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = port;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("")
}
