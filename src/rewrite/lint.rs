//! Warnings for `sidecar check` and `import-apache` (docs/security.md, R1 and R3): rules
//! that load but do not do what their author meant — mostly the mistakes copy-paste
//! tutorials carry. Works from the source strings, so it also runs on entries that do
//! not load (each check needs only the arguments it looks at).

use std::fmt;

use regex::Regex;

use super::args::{split_args, split_flags, Args};
use super::{Field, RuleSource};

/// One warning about one string of a `[[rewrite]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    pub entry: usize,
    pub field: Field,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rewrite[{}].{}: {}", self.entry, self.field, self.message)
    }
}

/// A rule string's arguments, with the flag names upper-cased.
struct Parts<'a> {
    pattern: &'a str,
    substitution: &'a str,
    flags: Vec<String>,
}

impl Parts<'_> {
    fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|f| names.contains(&f.as_str()))
    }
    fn is_proxy(&self) -> bool {
        self.has(&["P", "PROXY"])
    }
}

fn parts(rule: &str) -> Option<Parts<'_>> {
    let Args { first, second, flags } = split_args(rule, "").ok()?;
    let flags = match flags {
        Some(f) => split_flags(f).ok()?.iter().map(|i| i.key.to_ascii_uppercase()).collect(),
        None => Vec::new(),
    };
    Some(Parts { pattern: first.text, substitution: second.text, flags })
}

/// Every warning for these entries, in entry order.
pub fn lints(sources: &[RuleSource<'_>]) -> Vec<Lint> {
    let mut out = Vec::new();
    let mut stopper: Option<usize> = None; // an earlier rule that takes every request
    let mut may_jump = false; // an earlier S=N or C could jump over a stopper
    for (entry, src) in sources.iter().enumerate() {
        let mut push = |field, message: String| out.push(Lint { entry, field, message });
        let conds: Vec<Option<Args<'_>>> = src.conds.iter().map(|c| split_args(c, "").ok()).collect();
        for (i, args) in conds.iter().enumerate() {
            let Some(args) = args else { continue };
            if let Some(m) = map_lookup_message(args.first.text, true) {
                push(Field::Cond(i), m);
            }
        }
        if let Some(Some(last)) = conds.last() {
            let or = last.flags.and_then(|f| split_flags(f).ok()).is_some_and(|fs| {
                fs.iter().any(|f| f.key.eq_ignore_ascii_case("or") || f.key.eq_ignore_ascii_case("ornext"))
            });
            if or {
                push(Field::Cond(conds.len() - 1), "[OR] on the last condition joins it with nothing: when it fails Apache (and sidecar) skip it, so it never stops the rule; remove OR".into());
            }
        }
        let Some(p) = parts(src.rule) else { continue };
        if let Some(m) = map_lookup_message(p.substitution, false) {
            push(Field::Rule, m);
        }
        if let Some(m) = one_slash_message(p.substitution) {
            push(Field::Rule, m);
        }
        let tests: Vec<&str> = conds.iter().flatten().map(|a| a.first.text).collect();
        if p.is_proxy() {
            for m in [
                ssrf_message(p.substitution),
                dropped_path_message(p.substitution),
                websocket_message(p.substitution, &tests),
            ]
            .into_iter()
            .flatten()
            {
                push(Field::Rule, m);
            }
        }
        if let Some(m) = percent_message(p.substitution) {
            push(Field::Rule, m);
        }
        if let Some(m) = group_count_message(&p) {
            push(Field::Rule, m);
        }
        if let Some(k) = stopper {
            push(
                Field::Rule,
                format!("this rule never runs: rewrite[{k}] has no conditions, matches every path and stops"),
            );
            continue;
        }
        let catch_all = [
            "", "^", ".*", "^.*", "^.*$", "(.*)", "^(.*)", "^(.*)$", "^/", "/", "^/.*", "^/(.*)", "^/(.*)$", ".", ".+",
            "^.+", "(.+)", "^(.+)$",
        ];
        let stops = p.has(&[
            "L",
            "LAST",
            "END",
            "P",
            "PROXY",
            "F",
            "FORBIDDEN",
            "G",
            "GONE",
            "R",
            "REDIRECT",
            "PT",
            "PASSTHROUGH",
        ]);
        if src.conds.is_empty() && catch_all.contains(&p.pattern) && stops && !may_jump {
            stopper = Some(entry);
        }
        may_jump |= p.has(&["C", "CHAIN"]) || p.flags.iter().any(|f| f == "S" || f == "SKIP");
    }
    out
}

/// `${…}` is a RewriteMap lookup, not a variable (the `${HTTP:Upgrade}` tutorial typo).
fn map_lookup_message(s: &str, in_condition: bool) -> Option<String> {
    let start = s.find("${")?;
    let end = s[start..].find('}').map_or(s.len(), |e| start + e + 1);
    let found = &s[start..end];
    let fixed = format!("%{}", &found[1..]);
    let (what, effect) = match in_condition {
        true => ("test string", "this condition never sees the header or variable"),
        false => ("substitution", "nothing is inserted"),
    };
    Some(format!(
        "the {what} uses ${{…}}: {found} is a RewriteMap lookup, not a variable; no such map exists, so it expands to \"\" (as in Apache) and {effect}; write {fixed}"
    ))
}

/// `wss:/localhost:3000/` — one slash after the scheme, a typo copied from tutorials.
fn one_slash_message(sub: &str) -> Option<String> {
    let (scheme, rest) = sub.split_once(':')?;
    let is_scheme = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let one = rest.starts_with('/') && !rest.starts_with("//");
    (is_scheme && one).then(|| {
        format!("{sub} has one slash after {scheme}: (the target is not a URL); write {scheme}://{}", &rest[1..])
    })
}

/// Where the authority of `scheme://authority/…` starts and ends, or `None` without a
/// scheme. `scheme:/authority` (one slash) counts, so its other mistakes are reported
/// too. The variables that always start with `/` end it (`wss://h:3000%{REQUEST_URI}`).
fn authority(sub: &str) -> Option<(usize, usize)> {
    let colon = sub.find(":/")?;
    let scheme = &sub[..colon];
    if !scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let at = if sub[colon..].starts_with("://") { colon + 3 } else { colon + 2 };
    let paths = ["%{REQUEST_URI}", "%{REQUEST_FILENAME}", "%{SCRIPT_FILENAME}"];
    let ends = |i: usize| {
        let rest = &sub.as_bytes()[i..];
        matches!(rest.first(), Some(b'/' | b'?'))
            || paths.iter().any(|p| rest.get(..p.len()).is_some_and(|r| r.eq_ignore_ascii_case(p.as_bytes())))
    };
    Some((at, (at..sub.len()).find(|&i| ends(i)).unwrap_or(sub.len())))
}

/// Whether a template string expands anything (`%{…}`, `${…}`, `$N`, `%N`), skipping `\`-escapes.
fn expands(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', _) => i += 1,
            (b'%' | b'$', Some(b'{')) => return Some(s[i..].find('}').map_or(&s[i..], |e| &s[i..=i + e])),
            (b'%' | b'$', Some(d)) if d.is_ascii_digit() => return Some(&s[i..i + 2]),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A `P` target whose scheme, host or port comes from the request (docs/security.md, R1).
fn ssrf_message(sub: &str) -> Option<String> {
    let head = &sub[..authority(sub).map_or(sub.len(), |(_, end)| end)];
    let found = expands(head)?;
    Some(format!(
        "the backend of this P rule depends on the request ({found} in the scheme, host or port): a client can make sidecar connect where it chooses (SSRF, docs/security.md, R1); write the backend literally"
    ))
}

/// A `P` target with no path and nothing from the request path: every request, and every
/// WebSocket, lands on `/` (the tutorial's `wss://localhost:3000/` mistake).
fn dropped_path_message(sub: &str) -> Option<String> {
    let (start, end) = authority(sub)?;
    let rest = &sub[end..];
    let path = rest.split('?').next().unwrap_or("");
    let dropped = matches!(path, "" | "/") && expands(rest).is_none();
    let scheme = &sub[..sub.find(':').unwrap_or(0)];
    let fixed = format!("{scheme}://{}%{{REQUEST_URI}}", &sub[start..end]);
    dropped.then(|| format!("{sub} does not carry the request path: every request is proxied to / (write {fixed})"))
}

/// A rule proxying to `ws://`/`wss://` should only take WebSocket handshakes.
fn websocket_message(sub: &str, tests: &[&str]) -> Option<String> {
    let lower = sub.get(..6).unwrap_or(sub).to_ascii_lowercase();
    if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
        return None;
    }
    let checks = |name: &str| tests.iter().any(|t| t.eq_ignore_ascii_case(&format!("%{{HTTP:{name}}}")));
    match checks("Upgrade") && checks("Connection") {
        true => None,
        false => Some("this rule proxies to a WebSocket backend without both RewriteCond %{HTTP:Upgrade} websocket [NC] and RewriteCond %{HTTP:Connection} upgrade [NC]: plain requests go there too".into()),
    }
}

/// `%20` in a substitution is the back-reference `%2` followed by `0` (Apache too).
fn percent_message(sub: &str) -> Option<String> {
    let b = sub.as_bytes();
    let i = (0..b.len().saturating_sub(2)).find(|&i| {
        b[i] == b'%' && (i == 0 || b[i - 1] != b'\\') && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_hexdigit()
    })?;
    let code = &sub[i..i + 3];
    Some(format!("{code} is read as the condition back-reference {} followed by {:?}, as Apache does; write \\{code} for a literal percent-encoding", &code[..2], &code[2..]))
}

/// `$N` beyond the pattern's groups is always empty.
fn group_count_message(p: &Parts<'_>) -> Option<String> {
    let pattern = p.pattern.strip_prefix('!');
    let groups = Regex::new(pattern.unwrap_or(p.pattern)).ok()?.captures_len() - 1;
    let b = p.substitution.as_bytes();
    let max = (0..b.len().saturating_sub(1))
        .filter(|&i| b[i] == b'$' && (i == 0 || b[i - 1] != b'\\') && b[i + 1].is_ascii_digit())
        .map(|i| usize::from(b[i + 1] - b'0'))
        .max()?;
    match (pattern.is_some(), max > groups) {
        (true, _) => Some(format!("${max} is always empty: a negated pattern (!) has no groups")),
        (false, true) => Some(format!("${max} is always empty: the pattern has {groups} group(s)")),
        _ => None,
    }
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
