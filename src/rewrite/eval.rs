//! Runs the compiled rules over one request, as Apache's `apply_rewrite_list` /
//! `apply_rewrite_rule` do in server context: the pattern is matched against the path
//! first and the conditions only afterwards; `C` skips the rest of a chain when a rule
//! fails, `S=N` skips rules after one applies, `L`/`END`/`P` stop, `F`/`G` answer at
//! once; a rewritten path is what later rules match, and `%{REQUEST_URI}` stays the
//! original path. What the result becomes, and the byte check before it may leave
//! (docs/security.md, CVE-2023-25690), is `outcome.rs`.
//!
//! Cost: a request that no rule applies to allocates nothing as long as each condition's
//! test string is one variable (the WebSocket rule set): patterns use `is_match`, captures
//! are only taken when a `$N`/`%N` reads them, headers are borrowed.
//!
//! Deliberate differences from Apache: `R` ends the rule run (Apache goes on and lets
//! later rules rewrite the redirect URL; its manual says to always add `L`); `NE` only
//! affects `R` redirects (for `P` Apache skips mod_proxy's canonicalisation, which would
//! let decoded bytes through); an absolute URL from a rule without `P`/`R` redirects at
//! once unless it names this server (Apache's self-reduction), again without running
//! later rules.

use std::borrow::Cow;

use regex::CaptureLocations;

use super::cond::{Cond, Test};
use super::escape::decode_path;
use super::expand::{Cx, Expanded, Refs, TargetMode};
use super::flags::{Action, EnvOp};
use super::outcome::{is_absolute_url, join, proxy, redirect, reduce, refused, wire_problem, with_query};
use super::rule::Rule;
use super::{Decision, RequestVars, Trace};

/// Longest URL a substitution may produce: twice Apache's `LimitRequestLine`, the limit
/// mod_rewrite itself enforces against runaway rules.
const MAX_TARGET_BYTES: usize = 2 * 8190;

/// What the rules have done to the request so far.
struct State<'r> {
    /// The path rules match (decoded), Apache's `r->filename`; `None` until a rule
    /// rewrites it, meaning `req.path()` — which is only asked for when a pattern or a
    /// variable needs it, since it may cost the caller a decode.
    filename: Option<String>,
    /// The rewritten path in wire form; `None` while nothing rewrote it.
    wire_path: Option<String>,
    query: Cow<'r, str>,
    /// `E=` variables of this request.
    env: Vec<(String, String)>,
    rewritten_by: Option<usize>,
}

/// The outcome of one rule.
enum Step {
    NoMatch,
    Applied { env: Vec<(String, Option<String>)>, url: Option<(String, String)> },
    Decided(Decision),
}

pub(crate) fn evaluate(rules: &[Rule], req: &dyn RequestVars, trace: &mut impl Trace) -> Decision {
    let mut st = State {
        filename: None,
        wire_path: None,
        query: Cow::Borrowed(req.query()),
        env: Vec::new(),
        rewritten_by: None,
    };
    let mut i = 0;
    while let Some(rule) = rules.get(i) {
        match apply(rule, i, req, &st, trace) {
            Step::NoMatch => {
                // `C`: a rule that does not apply takes the rest of its chain with it.
                let mut j = i;
                while rules.get(j).is_some_and(|r| r.flags.chain) {
                    j += 1;
                }
                i = j + 1;
            }
            Step::Decided(decision) => return decision,
            Step::Applied { env, url } => {
                st.set_env(env);
                if let Some((path, query)) = url {
                    st.filename = Some(decode_path(&path));
                    st.wire_path = Some(path);
                    st.query = Cow::Owned(query);
                    st.rewritten_by = Some(i);
                }
                if rule.flags.last || rule.flags.end {
                    break;
                }
                i += 1 + rule.flags.skip;
            }
        }
    }
    finish(st)
}

impl State<'_> {
    fn set_env(&mut self, ops: Vec<(String, Option<String>)>) {
        for (name, value) in ops {
            self.env.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            if let Some(v) = value {
                self.env.push((name, v));
            }
        }
    }
}

/// The parts of the expansion context that do not change while conditions run.
struct Base<'a> {
    req: &'a dyn RequestVars,
    st: &'a State<'a>,
    rule_refs: Refs<'a>,
}

impl<'a> Base<'a> {
    fn cx<'b>(&'b self, cond: Option<&'b (String, CaptureLocations)>) -> Cx<'b> {
        Cx {
            req: self.req,
            filename: self.st.filename.as_deref(),
            query: &self.st.query,
            env: &self.st.env,
            rule_refs: self.rule_refs,
            cond_refs: cond.map(|(text, locs)| Refs { text, locs: Some(locs) }).unwrap_or_default(),
        }
    }
}

fn apply<'r>(rule: &Rule, index: usize, req: &'r dyn RequestVars, st: &'r State<'r>, trace: &mut impl Trace) -> Step {
    let subject = || st.filename.as_deref().unwrap_or_else(|| req.path());
    let applies = (rule.always || rule.pattern.is_match(subject())) != rule.negate;
    trace.pattern(index, &subject, applies);
    if !applies {
        return Step::NoMatch;
    }
    let captures = || {
        let mut locs = rule.pattern.capture_locations();
        rule.pattern.captures_read(&mut locs, subject());
        locs
    };
    // A negated pattern has no groups (Apache clears them).
    let mut rule_locs = (rule.conds_use_rule_refs && !rule.negate).then(captures);
    let mut cond_caps: Option<(String, CaptureLocations)> = None;
    {
        let rule_refs = rule_locs.as_ref().map_or_else(Refs::default, |l| Refs { text: subject(), locs: Some(l) });
        let base = Base { req, st, rule_refs };
        if !conds_hold(&rule.conds, &base, rule.uses_cond_refs, &mut cond_caps, &mut |i, input, held| {
            trace.cond(index, i, input, held)
        }) {
            return Step::NoMatch;
        }
    }
    if rule_locs.is_none() && rule.uses_rule_refs && !rule.negate {
        rule_locs = Some(captures());
    }
    let rule_refs = rule_locs.as_ref().map_or_else(Refs::default, |l| Refs { text: subject(), locs: Some(l) });
    let base = Base { req, st, rule_refs };
    let cx = base.cx(cond_caps.as_ref());
    match rule.flags.action {
        Action::Forbidden => return Step::Decided(Decision::Forbidden { rule: index }),
        Action::Gone => return Step::Decided(Decision::Gone { rule: index }),
        _ => {}
    }
    // Apache expands the substitution before the E= values, so E= of this rule is not
    // visible in its own substitution.
    let url = rule.substitution.as_ref().map(|sub| {
        let redirect = matches!(rule.flags.action, Action::Redirect(_));
        // One allocation for the whole URL in the common case.
        let capacity = rule.substitution_src.len() + subject().len() + st.query.len() + 8;
        let mut out = Expanded { text: String::with_capacity(capacity), query_at: None };
        sub.expand_target(
            &cx,
            TargetMode { b: rule.flags.b.as_ref(), noescape: rule.flags.noescape && redirect },
            &mut out,
        );
        out
    });
    let env = rule
        .flags
        .env
        .iter()
        .map(|op| match op {
            EnvOp::Set { name, value, .. } => {
                let mut v = String::new();
                value.expand_plain(&cx, &mut v);
                (name.to_string(), Some(v))
            }
            EnvOp::Unset(name) => (name.to_string(), None),
        })
        .collect();
    let Some(out) = url else {
        return Step::Applied { env, url: None }; // `-`: flags only (`- [R]` does nothing, as in Apache)
    };
    if out.text.len() > MAX_TARGET_BYTES {
        return Step::Decided(refused(index, format!("the substitution is longer than {MAX_TARGET_BYTES} bytes")));
    }
    let (url, path_end) = with_query(out, &st.query, rule.flags.qsappend, rule.flags.qsdiscard);
    let (path, query) = (&url[..path_end], url.get(path_end + 1..).unwrap_or(""));
    match rule.flags.action {
        Action::Proxy => Step::Decided(proxy(index, url)),
        Action::Redirect(status) => Step::Decided(redirect(index, status, path, query, rule.flags.noescape, req)),
        _ if !is_absolute_url(path) => Step::Applied { env, url: Some((path.to_string(), query.to_string())) },
        _ => match reduce(path, req) {
            Some(local) => Step::Applied { env, url: Some((local.to_string(), query.to_string())) },
            None => Step::Decided(redirect(index, 302, path, query, false, req)),
        },
    }
}

/// Apache's condition loop: all must hold, except that `OR` joins a condition with the
/// next one (a failing `OR` on the last condition is skipped over, as in Apache).
/// `%N` refers to the last condition whose regex matched.
fn conds_hold<'a>(
    conds: &'a [Cond],
    base: &Base<'a>,
    keep: bool,
    caps: &mut Option<(String, CaptureLocations)>,
    trace: &mut impl FnMut(usize, &str, bool),
) -> bool {
    let mut i = 0;
    while let Some(c) = conds.get(i) {
        let (ok, new_caps) = test(c, &base.cx(caps.as_ref()), keep, &mut |input, held| trace(i, input, held));
        if new_caps.is_some() {
            *caps = new_caps;
        }
        if c.or_next {
            if !ok {
                i += 1;
                continue;
            }
            while conds.get(i).is_some_and(|c| c.or_next) {
                i += 1;
            }
        } else if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// One condition, `!` applied. Captures are taken only when something reads `%N` and
/// the condition is a positive regex (Apache keeps no groups for `!` or comparisons).
/// `trace` hears the expanded test string and the verdict.
fn test(
    c: &Cond,
    cx: &Cx<'_>,
    keep: bool,
    trace: &mut impl FnMut(&str, bool),
) -> (bool, Option<(String, CaptureLocations)>) {
    if !keep || c.negate || !matches!(c.test, Test::Regex(_)) {
        let held = c.test_string.with_expanded(cx, |input| {
            let held = c.holds(input, cx) != c.negate;
            trace(input, held);
            held
        });
        return (held, None);
    }
    let mut input = String::new();
    c.test_string.expand_plain(cx, &mut input);
    let mut locs = None;
    let held = c.holds_capturing(&input, cx, &mut locs);
    trace(&input, held);
    match held {
        true => (true, locs.map(|l| (input, l))),
        false => (false, None),
    }
}

/// After the last rule: an internal rewrite must be a path that can travel.
fn finish(st: State<'_>) -> Decision {
    let Some(rule) = st.rewritten_by else {
        return Decision::Pass;
    };
    let path = st.wire_path.unwrap_or_default();
    if !path.starts_with('/') {
        let shown: String = path.chars().take(200).collect();
        return refused(
            rule,
            format!("the rules rewrote the path to {shown:?}, which does not start with / (Apache answers 400)"),
        );
    }
    let path_and_query = join(&path, &st.query);
    match wire_problem(&path_and_query, false) {
        Some(why) => refused(rule, why),
        None => Decision::Rewritten { path_and_query, rule },
    }
}
