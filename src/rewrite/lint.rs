//! PURE. Rules that parse but probably do not do what their author meant — the
//! mistakes that copy-paste tutorials carry (SPEC §5, issue 3): `${…}` instead of
//! `%{…}`, `wss:/host` with one slash, a `P` target that drops the path, a WebSocket
//! rule without its Upgrade/Connection pair, a rule that can never run, and a target
//! whose host comes from the request (SECURITY R1).

use super::parse::{parse_flags, tokenize, Part, Template, Var};
use super::{Field, Lint, RuleSource};

/// Patterns that match every path.
const MATCH_ALL: [&str; 7] = [".*", "^", "(.*)", "^(.*)$", "^/?(.*)", "^(.*)", "^/(.*)"];

pub fn lints(entries: &[RuleSource<'_>]) -> Vec<Lint> {
    let mut out = Vec::new();
    let mut stopped_at: Option<usize> = None;
    for (i, e) in entries.iter().enumerate() {
        let lint = |field, message: String| Lint { entry: i, field, message };
        let mut tests: Vec<String> = Vec::new();
        for (j, c) in e.conds.iter().enumerate() {
            let Ok(toks) = tokenize(c) else { continue };
            if let Some(t) = toks.first() {
                if t.text.contains("${") {
                    let fixed = t.text.replace("${", "%{");
                    out.push(lint(
                        Field::Cond(j),
                        format!("test string {:?} uses ${{…}}: Apache treats it as literal text, so this condition never matches; write {fixed:?}", t.text),
                    ));
                }
                tests.push(t.text.to_ascii_uppercase());
            }
        }
        let Ok(toks) = tokenize(e.rule) else { continue };
        let (Some(pattern), Some(subst)) = (toks.first(), toks.get(1)) else { continue };
        let flags: Vec<String> =
            toks.get(2).and_then(|f| parse_flags(f).ok()).unwrap_or_default().into_iter().map(|(n, _)| n).collect();
        let has = |f: &str| flags.iter().any(|x| x == f);
        let proxy = has("P") || has("PROXY");
        if let Some(prev) = stopped_at {
            out.push(lint(
                Field::Rule,
                format!("never runs: rewrite[{prev}] matches every request without conditions and stops with L"),
            ));
        }
        let target = subst.text.as_str();
        if let Some((scheme, rest)) = target.split_once(':') {
            if scheme.chars().all(|c| c.is_ascii_alphabetic()) && rest.starts_with('/') && !rest.starts_with("//") {
                out.push(lint(
                    Field::Rule,
                    format!("target {target:?} has one slash after {scheme}: (write {scheme}://host)"),
                ));
            }
        }
        let lower = target.to_ascii_lowercase();
        let websocket = lower.starts_with("ws://")
            || lower.starts_with("wss://")
            || lower.starts_with("ws:/")
            || lower.starts_with("wss:/");
        if proxy {
            if let Ok(t) = Template::parse(target, subst.column) {
                if drops_path(&t) {
                    out.push(lint(
                        Field::Rule,
                        format!("target {target:?} does not carry the request path (no %{{REQUEST_URI}} or $N): every request lands on the same path"),
                    ));
                }
                if authority_from_request(&t) {
                    out.push(lint(Field::Rule, format!("target {target:?} takes its scheme, host or port from the request: anyone can choose where sidecar connects")));
                }
            }
        }
        if websocket && proxy {
            let upgrade = tests.iter().any(|t| t.contains("HTTP:UPGRADE") || t.contains("HTTP_UPGRADE"));
            let connection = tests.iter().any(|t| t.contains("HTTP:CONNECTION") || t.contains("HTTP_CONNECTION"));
            if !(upgrade && connection) {
                out.push(lint(
                    Field::Rule,
                    "WebSocket rule without both %{HTTP:Upgrade} websocket and %{HTTP:Connection} upgrade conditions: plain requests may be sent to the WebSocket backend".into(),
                ));
            }
        }
        let stops = has("L")
            || has("LAST")
            || has("END")
            || proxy
            || has("F")
            || has("G")
            || has("R")
            || flags.iter().any(|f| f.starts_with("R="));
        if stopped_at.is_none()
            && e.conds.is_empty()
            && stops
            && MATCH_ALL.contains(&pattern.text.as_str())
            && !has("C")
        {
            stopped_at = Some(i);
        }
    }
    out
}

/// No `%{REQUEST_URI}`, `$N` or `%N`, and no path after the authority beyond `/`.
fn drops_path(t: &Template) -> bool {
    let carries = t.parts.iter().any(|p| matches!(p, Part::Var(Var::RequestUri) | Part::RuleRef(_) | Part::CondRef(_)));
    if carries {
        return false;
    }
    let text: String = t.parts.iter().map(|p| if let Part::Literal(l) = p { l.as_str() } else { "" }).collect();
    // After `scheme://` (or the one-slash typo `scheme:/`).
    let after_scheme = text.split_once(":/").map_or(text.as_str(), |(_, r)| r.strip_prefix('/').unwrap_or(r));
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.is_empty() || path == "/" || !path.contains('/')
}

/// A variable or back-reference before the first `/` after `scheme://`.
fn authority_from_request(t: &Template) -> bool {
    let mut seen_scheme = false;
    for p in &t.parts {
        match p {
            Part::Literal(l) => {
                if !seen_scheme {
                    match l.find("://") {
                        Some(i) => {
                            seen_scheme = true;
                            if l[i + 3..].contains('/') {
                                return false;
                            }
                        }
                        None => continue,
                    }
                } else if l.contains('/') {
                    return false;
                }
            }
            // The decoded path always starts with `/`: it begins the path, not the host.
            Part::Var(Var::RequestUri) if seen_scheme => return false,
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_messages(conds: &[&str], rule: &str) -> Vec<String> {
        let conds: Vec<String> = conds.iter().map(|s| s.to_string()).collect();
        lints(&[RuleSource { conds: &conds, rule }]).into_iter().map(|l| l.message).collect()
    }

    #[test]
    fn lints_tutorial_mistakes() {
        let pair = ["%{HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"];
        for (conds, rule, want) in [
            (&pair[..], ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]", None),
            (
                &["${HTTP:Upgrade} websocket [NC]", "%{HTTP:Connection} upgrade [NC]"][..],
                ".* wss://h%{REQUEST_URI} [P,L]",
                Some("uses ${…}"),
            ),
            (&pair[..], ".* \"wss:/localhost:3000/$1\" [P,L]", Some("one slash")),
            (&pair[..], ".* wss://localhost:3000/ [P,L]", Some("does not carry the request path")),
            (&pair[..], ".* wss:/localhost:3000/ [P,L]", Some("does not carry the request path")),
            (&pair[..], ".* wss://localhost:3000/socket.io [P,L]", None),
            (&pair[..1], ".* wss://h%{REQUEST_URI} [P,L]", Some("without both")),
            (&pair[..], ".* wss://%{HTTP_HOST}%{REQUEST_URI} [P,L]", Some("takes its scheme, host or port")),
            (&pair[..], "^/(.*) http://$1 [P]", Some("takes its scheme, host or port")),
        ] {
            let got = lint_messages(conds, rule);
            match want {
                None => assert!(got.is_empty(), "{rule}: {got:?}"),
                Some(w) => assert!(got.iter().any(|m| m.contains(w)), "{rule}: want {w:?} in {got:?}"),
            }
        }
    }

    #[test]
    fn rule_after_a_catch_all_stop_never_runs() {
        let none: Vec<String> = Vec::new();
        let got = lints(&[
            RuleSource { conds: &none, rule: ".* http://a%{REQUEST_URI} [P]" },
            RuleSource { conds: &none, rule: "^/x /y [L]" },
        ]);
        assert_eq!(got.iter().map(|l| l.entry).collect::<Vec<_>>(), [1], "{got:?}");
    }
}
