//! PURE. Looking up server variables and expanding templates, with the escaping that
//! keeps a substitution from splitting a request (SECURITY §1.4, CVE-2023-25690):
//! everything that comes from the request (the decoded path, back-references, header
//! values) is percent-encoded where it would not be safe in a request-target, and an
//! encoded `?` stays encoded (CVE-2024-38474). Literal text from the rule is the
//! author's and is kept as written.

use std::borrow::Cow;

use super::parse::{Part, Template, Var};
use super::RequestVars;

/// Environment set by `E=` flags during one evaluation.
pub type Env = Vec<(String, String)>;

/// The value of a variable; borrowed when it can be.
pub fn lookup<'a>(var: &Var, req: &'a dyn RequestVars, env: &'a Env) -> Cow<'a, str> {
    match var {
        Var::Header(h) => req.header(h).unwrap_or(Cow::Borrowed("")),
        Var::RequestUri => Cow::Borrowed(req.path()),
        Var::RequestMethod => Cow::Borrowed(req.method()),
        Var::QueryString => Cow::Borrowed(req.query()),
        Var::TheRequest => Cow::Borrowed(req.request_line()),
        Var::RemoteAddr => Cow::Borrowed(req.remote_addr()),
        Var::ServerName => Cow::Borrowed(req.server_name()),
        Var::ServerPort => Cow::Owned(req.server_port().to_string()),
        Var::Https => Cow::Borrowed(if req.https() { "on" } else { "off" }),
        Var::RequestScheme => Cow::Borrowed(if req.https() { "https" } else { "http" }),
        Var::Env(name) => Cow::Borrowed(env.iter().rev().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())),
    }
}

/// How request-derived values are escaped when they land in a substitution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Only what is unsafe on the wire: CTL, space, non-ASCII, `#`, `%`, `?`, `"`.
    Wire,
    /// `B`: everything but unreserved characters and `/`.
    Full,
    /// `NE` / condition test strings: nothing (the wire check still applies later).
    None,
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    for b in value.bytes() {
        let safe = match escape {
            Escape::None => true,
            Escape::Wire => (0x21..0x7f).contains(&b) && !matches!(b, b'#' | b'%' | b'?' | b'"'),
            Escape::Full => b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'),
        };
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if escape == Escape::None {
        // Keep the bytes exactly (lossy only for non-UTF-8, which cannot occur here).
    }
}

/// Captured groups of the rule and of the last matched condition.
#[derive(Default)]
pub struct Refs<'a> {
    pub rule: Vec<Option<&'a str>>,
    pub cond: Vec<Option<String>>,
}

/// Expands `t`. Variables and back-references are escaped with `vars_escape`
/// (`refs_escape` for `$N`/`%N`); literal text is copied.
pub fn expand(
    t: &Template,
    req: &dyn RequestVars,
    env: &Env,
    refs: &Refs<'_>,
    vars_escape: Escape,
    refs_escape: Escape,
) -> String {
    let mut out = String::with_capacity(64);
    for part in &t.parts {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Var(v) => push_escaped(&mut out, &lookup(v, req, env), vars_escape),
            Part::RuleRef(n) => {
                if let Some(Some(s)) = refs.rule.get(*n) {
                    push_escaped(&mut out, s, refs_escape);
                }
            }
            Part::CondRef(n) => {
                if let Some(Some(s)) = refs.cond.get(*n) {
                    push_escaped(&mut out, s, refs_escape);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_unsafe_on_the_wire() {
        for (input, escape, want) in [
            ("/a b\r\nX: y", Escape::Wire, "/a%20b%0D%0AX:%20y"),
            ("/a?b#c%d", Escape::Wire, "/a%3Fb%23c%25d"),
            ("/caf\u{e9}", Escape::Wire, "/caf%C3%A9"),
            ("/a b&c=d", Escape::Full, "/a%20b%26c%3Dd"),
            ("/a b", Escape::None, "/a b"),
        ] {
            let mut out = String::new();
            push_escaped(&mut out, input, escape);
            assert_eq!(out, want, "input {input:?} {escape:?}");
        }
    }
}
