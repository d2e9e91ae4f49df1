//! What a rule's expanded substitution becomes: the query string worked out as Apache's
//! `splitout_queryargs` does, a `P` target parsed by `target::parse_target`, an `R`
//! `Location`, Apache's self-reduction of absolute URLs naming this server — and the last
//! gate, byte by byte, before anything leaves the engine (docs/security.md,
//! CVE-2023-25690): a result that still holds a byte that may not travel is `Refused`
//! (400), never repaired.

use super::expand::Expanded;
use super::vars::host_only;
use super::{Decision, RequestVars};
use crate::target::{is_target_byte, parse_target, split_host_port};

/// Works out the query string as Apache's `splitout_queryargs` does, at the first
/// *literal* `?` of the expansion: no `?` keeps the current query, `?new` replaces it,
/// `QSA` appends the current one, `QSD` drops it, a bare `?` at the end removes it, a
/// trailing `&` goes. Built in place; returns `path[?query]` and where the path ends.
pub(crate) fn with_query(out: Expanded, current: &str, qsa: bool, qsd: bool) -> (String, usize) {
    let Expanded { mut text, query_at } = out;
    let current = if qsd { "" } else { current };
    let append = |text: &mut String, sep: char| {
        if !current.is_empty() {
            text.push(sep);
            text.push_str(current);
        }
    };
    let Some(path_end) = query_at else {
        let end = text.len();
        append(&mut text, '?');
        return (text, end);
    };
    match (qsa, text.len() == path_end + 1) {
        (true, true) => {
            text.truncate(path_end);
            append(&mut text, '?');
        }
        (true, false) => append(&mut text, '&'),
        (false, _) => {}
    }
    if text.len() > path_end + 1 && text.ends_with('&') {
        text.pop();
    }
    if text.len() == path_end + 1 {
        text.truncate(path_end);
    }
    (text, path_end)
}

pub(crate) fn join(path: &str, query: &str) -> String {
    match query {
        "" => path.to_string(),
        q => format!("{path}?{q}"),
    }
}

pub(crate) fn refused(rule: usize, reason: String) -> Decision {
    Decision::Refused { rule, reason }
}

/// The first byte that may not go on the wire, as an error message.
pub(crate) fn wire_problem(s: &str, fragment_ok: bool) -> Option<String> {
    s.bytes()
        .find(|&b| !(is_target_byte(b) || (fragment_ok && b == b'#')))
        .map(|b| format!("the result contains byte 0x{b:02X}, which may not appear in a request-target"))
}

pub(crate) fn proxy(rule: usize, url: String) -> Decision {
    if let Some(why) = wire_problem(&url, false) {
        return refused(rule, why);
    }
    match parse_target(&url) {
        Ok(target) => Decision::Proxy { target, rule },
        Err(e) => refused(rule, format!("P target {:?} is not usable: {e}", url.chars().take(200).collect::<String>())),
    }
}

/// `R`: a path substitution becomes a path-only `Location` (a relative reference, RFC
/// 9110 §10.2.2). Apache writes `http[s]://name[:port]/path`, taking name and port from
/// the Host header and the local socket (UseCanonicalName Off): behind a container port
/// mapping that port is wrong, and the Host header is the client's to forge. Only a
/// path starting with `//`, which a browser would read as another host
/// (docs/security.md, B10), is qualified as Apache does. The query goes before a
/// `#fragment`.
pub(crate) fn redirect(
    rule: usize,
    status: u16,
    path: &str,
    query: &str,
    noescape: bool,
    req: &dyn RequestVars,
) -> Decision {
    let (base, fragment) = match path.find('#') {
        Some(f) => path.split_at(f),
        None => (path, ""),
    };
    let mut location = String::with_capacity(path.len() + query.len() + 32);
    let name = req.server_name();
    match base {
        _ if is_absolute_url(base) => location.push_str(base),
        _ if base.starts_with("//") && !name.is_empty() => {
            location.push_str(if req.https() { "https://" } else { "http://" });
            location.push_str(name);
            let default = if req.https() { 443 } else { 80 };
            if host_only(name).len() == name.len() && req.server_port() != default {
                location.push_str(&format!(":{}", req.server_port()));
            }
            location.push_str(base);
        }
        // No name to qualify with: keep it a path on this server.
        _ if base.starts_with("//") => {
            location.push_str("/%2F");
            location.push_str(&base[2..]);
        }
        _ if base.starts_with('/') => location.push_str(base),
        _ => {
            location.push('/');
            location.push_str(base);
        }
    }
    if !query.is_empty() {
        location.push('?');
        location.push_str(query);
    }
    location.push_str(fragment);
    match wire_problem(&location, noescape) {
        Some(why) => refused(rule, why),
        None => Decision::Redirect { status, location, rule },
    }
}

/// `scheme:` with an RFC 3986 scheme followed by `//` (or `mailto:`/`news:`, which
/// Apache also treats as absolute).
pub(crate) fn is_absolute_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let valid = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid && (rest.starts_with("//") || scheme.eq_ignore_ascii_case("mailto") || scheme.eq_ignore_ascii_case("news"))
}

/// Apache's self-reduction: `http[s]://this-server[:port]/path` → `/path`.
pub(crate) fn reduce<'u>(url: &'u str, req: &dyn RequestVars) -> Option<&'u str> {
    let scheme = if req.https() { "https://" } else { "http://" };
    let rest = url.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &url[scheme.len()..])?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority).ok()?;
    let default = if req.https() { 443 } else { 80 };
    let port = port.map_or(Some(default), |p| p.parse::<u16>().ok())?;
    (host.eq_ignore_ascii_case(host_only(req.server_name())) && port == req.server_port()).then_some(path)
}
