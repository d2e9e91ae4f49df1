//! PURE. The mod_rewrite engine: `[[rewrite]]` entries (RewriteCond / RewriteRule
//! argument strings, exactly as Apache takes them) compiled once at load and evaluated
//! per request, in order, with Apache's server-context semantics: the rule's pattern is
//! matched against the (decoded) URL path first, then its conditions; `$N` are the
//! rule's groups, `%N` the last matched condition's (SPEC §3, issue 3).
//!
//! Differences from Apache, on purpose: patterns are Rust `regex` (no look-around or
//! back-references inside a pattern); a substitution's request-derived parts are
//! escaped and the result must be a valid request-target, or the request is refused
//! (SECURITY §1.4); a `P` target must be http, https, ws, wss or balancer. A request
//! that no rule changes costs no allocation.

mod cond;
mod expand;
mod lint;
mod parse;

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

use crate::target::{is_target_byte, parse_target, Target};
use cond::{build_regex, matches, parse_pattern, Pattern};
use expand::{expand, lookup, Env, Escape, Refs};
use parse::{parse_flags, tokenize, Template};

pub use lint::lints;

/// One `[[rewrite]]` entry as written in sidecar.toml.
pub struct RuleSource<'a> {
    pub conds: &'a [String],
    pub rule: &'a str,
}

/// What the engine needs to know about a request (Apache's server variables).
pub trait RequestVars {
    fn method(&self) -> &str;
    /// The %-decoded, dot-segment-free path (Apache `r->uri`, `%{REQUEST_URI}`).
    fn path(&self) -> &str;
    /// The raw query string without `?` (never decoded).
    fn query(&self) -> &str;
    /// All lines of a header joined with ", ", or `None` when absent. Name is case-insensitive.
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The request line, `%{THE_REQUEST}`.
    fn request_line(&self) -> &str;
    fn remote_addr(&self) -> &str;
    fn server_name(&self) -> &str;
    fn server_port(&self) -> u16;
    fn https(&self) -> bool;
}

/// The outcome of running the rules over one request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// No rule changed anything: route by `[[proxy]]` on the original path.
    Pass,
    /// A rule rewrote the URL without `P`: route by `[[proxy]]` on this path and query
    /// (`/path?query`, already valid on the wire).
    Rewritten { path_and_query: String, rule: usize },
    /// `P`: proxy to this target (path and query valid on the wire). `rule` is the
    /// `[[rewrite]]` index, for logs.
    Proxy { target: Target, rule: usize },
    /// `R[=code]`: answer with a redirect to `location` (already escaped for a header).
    Redirect { status: u16, location: String, rule: usize },
    /// `F` → 403.
    Forbidden { rule: usize },
    /// `G` → 410.
    Gone { rule: usize },
    /// The substitution would have put bytes on the wire that do not belong in a
    /// request-target (CR, LF, NUL, space, ...), or named a scheme that is not allowed:
    /// the client gets 400 (SECURITY §1.4, CVE-2023-25690).
    Refused { rule: usize, reason: String },
}

/// Which string of a `[[rewrite]]` entry an error is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Cond(usize),
    Rule,
}

/// A rule that does not parse: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub entry: usize,
    pub field: Field,
    /// 1-based column in the cond/rule string.
    pub column: usize,
    pub message: String,
}

/// A rule that parses but probably does not do what its author meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    pub entry: usize,
    pub field: Field,
    pub message: String,
}

#[derive(Debug)]
struct Cond {
    test: Template,
    negate: bool,
    pattern: Pattern,
    nocase: bool,
    or_next: bool,
}

#[derive(Debug, Default)]
struct Flags {
    proxy: bool,
    last: bool,
    forbidden: bool,
    gone: bool,
    redirect: Option<u16>,
    qsa: bool,
    qsd: bool,
    noescape: bool,
    escape_refs: bool,
    chain: bool,
    skip: usize,
    env: Vec<(String, Template)>,
}

#[derive(Debug)]
struct Rule {
    pattern: Regex,
    negate: bool,
    /// `None` for `-`.
    subst: Option<Template>,
    flags: Flags,
    conds: Vec<Cond>,
}

/// The compiled rule set.
#[derive(Default, Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

fn err(entry: usize, field: Field, (column, message): (usize, String)) -> RuleError {
    RuleError { entry, field, column, message }
}

fn parse_cond(s: &str) -> Result<Cond, (usize, String)> {
    let mut toks = tokenize(s)?;
    // `-strmatch pattern` and `-gt 5` may be written as two tokens (quoted as one in
    // Apache's documentation); join them.
    const OPERATORS: [&str; 7] = ["-strmatch", "-eq", "-ne", "-lt", "-le", "-gt", "-ge"];
    if toks.len() >= 3 && OPERATORS.contains(&toks[1].text.trim_start_matches('!')) && !toks[2].text.starts_with('[') {
        let operand = toks.remove(2);
        toks[1].text = format!("{} {}", toks[1].text, operand.text);
    }
    let (test, pattern, flags) = match toks.as_slice() {
        [t, p] => (t, p, None),
        [t, p, f] => (t, p, Some(f)),
        _ => return Err((1, "expected TestString CondPattern [flags]".into())),
    };
    let mut nocase = false;
    let mut or_next = false;
    for (name, _) in flags.map(parse_flags).transpose()?.unwrap_or_default() {
        match name.as_str() {
            "NC" | "NOCASE" => nocase = true,
            "OR" | "ORNEXT" => or_next = true,
            "NV" | "NOVARY" => {}
            other => {
                return Err((
                    flags.map_or(1, |f| f.column),
                    format!("unknown condition flag {other:?} (expected NC, OR, NV)"),
                ))
            }
        }
    }
    let (negate, pat) = match pattern.text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern.text.as_str()),
    };
    let pattern_parsed = parse_pattern(pat, nocase).map_err(|m| (pattern.column, m))?;
    Ok(Cond { test: Template::parse(&test.text, test.column)?, negate, pattern: pattern_parsed, nocase, or_next })
}

fn parse_rule(s: &str) -> Result<Rule, (usize, String)> {
    let toks = tokenize(s)?;
    let (pattern, subst, flags_tok) = match toks.as_slice() {
        [p, s] => (p, s, None),
        [p, s, f] => (p, s, Some(f)),
        _ => return Err((1, "expected Pattern Substitution [flags]".into())),
    };
    let mut flags = Flags::default();
    let mut nocase = false;
    let fcol = flags_tok.map_or(1, |f| f.column);
    for (name, value) in flags_tok.map(parse_flags).transpose()?.unwrap_or_default() {
        match (name.as_str(), value) {
            ("P" | "PROXY", _) => flags.proxy = true,
            ("L" | "LAST" | "END", _) => flags.last = true,
            ("F" | "FORBIDDEN", _) => flags.forbidden = true,
            ("G" | "GONE", _) => flags.gone = true,
            ("R" | "REDIRECT", v) => {
                let code = match v.as_deref() {
                    None | Some("temp") => 302,
                    Some("permanent") => 301,
                    Some("seeother") => 303,
                    Some(n) => n.parse::<u16>().ok().filter(|c| (300..400).contains(c)).ok_or((fcol, format!("R={n}: expected a 3xx status")))?,
                };
                flags.redirect = Some(code);
            }
            ("QSA" | "QSAPPEND", _) => flags.qsa = true,
            ("QSD" | "QSDISCARD", _) => flags.qsd = true,
            ("NE" | "NOESCAPE", _) => flags.noescape = true,
            ("B", _) => flags.escape_refs = true,
            ("NC" | "NOCASE", _) => nocase = true,
            ("C" | "CHAIN", _) => flags.chain = true,
            ("S" | "SKIP", Some(n)) => flags.skip = n.parse().map_err(|_| (fcol, format!("S={n}: expected a number")))?,
            ("E" | "ENV", Some(kv)) => {
                let (k, v) = kv.split_once(':').unwrap_or((kv.as_str(), ""));
                flags.env.push((k.to_string(), Template::parse(v, fcol)?));
            }
            ("NV" | "NOVARY" | "NS" | "NOSUBREQ", _) => {}
            (other, _) => {
                return Err((fcol, format!("unknown or unsupported rule flag {other:?} (expected P, L, END, F, G, R, QSA, QSD, NE, B, NC, C, S=N, E=VAR:VAL)")))
            }
        }
    }
    let (negate, pat) = match pattern.text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern.text.as_str()),
    };
    let regex = build_regex(pat, nocase).map_err(|m| (pattern.column, m))?;
    let subst = if subst.text == "-" { None } else { Some(Template::parse(&subst.text, subst.column)?) };
    if flags.proxy {
        flags.last = true; // P implies L, as in Apache
    }
    Ok(Rule { pattern: regex, negate, subst, flags, conds: Vec::new() })
}

impl Rules {
    /// Compiles every entry; all errors at once.
    pub fn parse(entries: &[RuleSource<'_>]) -> Result<Rules, Vec<RuleError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let mut conds = Vec::new();
            for (j, c) in e.conds.iter().enumerate() {
                match parse_cond(c) {
                    Ok(c) => conds.push(c),
                    Err(x) => errors.push(err(i, Field::Cond(j), x)),
                }
            }
            match parse_rule(e.rule) {
                Ok(mut r) => {
                    r.conds = conds;
                    rules.push(r);
                }
                Err(x) => errors.push(err(i, Field::Rule, x)),
            }
        }
        if errors.is_empty() {
            Ok(Rules { rules })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules over one request.
    pub fn evaluate(&self, req: &dyn RequestVars) -> Decision {
        let mut path: Cow<'_, str> = Cow::Borrowed(req.path());
        let mut query: Option<String> = None;
        let mut env: Env = Vec::new();
        let mut rewritten: Option<usize> = None;
        let mut skip_chain = false;
        let mut i = 0;
        while i < self.rules.len() {
            let rule = &self.rules[i];
            if skip_chain {
                skip_chain = rule.flags.chain;
                i += 1;
                continue;
            }
            let needs_refs = rule.subst.as_ref().is_some_and(Template::uses_rule_refs);
            let rule_refs: Vec<Option<String>> = if needs_refs && !rule.negate {
                match rule.pattern.captures(&path) {
                    Some(c) => c.iter().map(|m| m.map(|m| m.as_str().to_string())).collect(),
                    None => Vec::new(),
                }
            } else {
                Vec::new()
            };
            let matched = if needs_refs && !rule.negate {
                !rule_refs.is_empty()
            } else {
                rule.pattern.is_match(&path) != rule.negate
            };
            let cond_refs = if matched { self.conditions(rule, req, &env, &rule_refs) } else { None };
            let Some(cond_refs) = cond_refs else {
                skip_chain = rule.flags.chain;
                i += 1;
                continue;
            };
            let refs = Refs { rule: rule_refs.iter().map(|r| r.as_deref()).collect(), cond: cond_refs };
            for (k, v) in &rule.flags.env {
                let value = expand(v, req, &env, &refs, Escape::None, Escape::None);
                env.push((k.clone(), value));
            }
            if rule.flags.forbidden {
                return Decision::Forbidden { rule: i };
            }
            if rule.flags.gone {
                return Decision::Gone { rule: i };
            }
            if let Some(subst) = &rule.subst {
                let (vars_escape, refs_escape) = match (rule.flags.noescape, rule.flags.escape_refs) {
                    (true, _) => (Escape::None, Escape::None),
                    (false, true) => (Escape::Wire, Escape::Full),
                    (false, false) => (Escape::Wire, Escape::Wire),
                };
                let out = expand(subst, req, &env, &refs, vars_escape, refs_escape);
                let (base, new_query) = match out.split_once('?') {
                    Some((b, q)) => (b.to_string(), Some(q.to_string())),
                    None => (out, None),
                };
                let original = query.clone().unwrap_or_else(|| req.query().to_string());
                let q = match new_query {
                    Some(nq) if rule.flags.qsa && !rule.flags.qsd && !original.is_empty() => format!("{nq}&{original}"),
                    Some(nq) => nq,
                    None if rule.flags.qsd => String::new(),
                    None => original,
                };
                let url = if q.is_empty() { base.clone() } else { format!("{base}?{q}") };
                let absolute = base.contains("://");
                if let Some(status) = rule.flags.redirect.or((absolute && !rule.flags.proxy).then_some(302)) {
                    if !url.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                        return Decision::Refused {
                            rule: i,
                            reason: "redirect target contains a control, space or non-ASCII byte".into(),
                        };
                    }
                    return Decision::Redirect { status, location: url, rule: i };
                }
                if rule.flags.proxy {
                    return match parse_target(&url) {
                        Ok(target) => Decision::Proxy { target, rule: i },
                        Err(e) => Decision::Refused { rule: i, reason: format!("proxy target {url:?}: {e}") },
                    };
                }
                if !url.bytes().all(is_target_byte) || !base.starts_with('/') {
                    return Decision::Refused {
                        rule: i,
                        reason: "rewritten path is not a valid request target".into(),
                    };
                }
                path = Cow::Owned(base);
                query = Some(q);
                rewritten = Some(i);
            }
            if rule.flags.last {
                break;
            }
            i += 1 + rule.flags.skip;
        }
        match rewritten {
            Some(rule) => {
                let q = query.unwrap_or_default();
                let path_and_query = if q.is_empty() { path.into_owned() } else { format!("{path}?{q}") };
                Decision::Rewritten { path_and_query, rule }
            }
            None => Decision::Pass,
        }
    }

    /// Evaluates a rule's conditions (`A [OR] B C` is `(A || B) && C`). `Some(%N
    /// groups)` when they hold.
    fn conditions(
        &self,
        rule: &Rule,
        req: &dyn RequestVars,
        env: &Env,
        rule_refs: &[Option<String>],
    ) -> Option<Vec<Option<String>>> {
        let needs_cond_refs = rule.subst.as_ref().is_some_and(Template::uses_cond_refs);
        let mut last_groups: Vec<Option<String>> = Vec::new();
        let mut pending_or = false; // a previous condition in this OR group already held
        let refs = Refs { rule: rule_refs.iter().map(|r| r.as_deref()).collect(), cond: Vec::new() };
        for c in &rule.conds {
            let ok = if pending_or {
                true
            } else {
                let value: Cow<'_, str> = match c.test.single_var() {
                    Some(v) => lookup(v, req, env),
                    None => Cow::Owned(expand(&c.test, req, env, &refs, Escape::None, Escape::None)),
                };
                let hit = matches(&c.pattern, &value, c.nocase);
                if hit && !c.negate && needs_cond_refs {
                    if let Pattern::Regex(r) = &c.pattern {
                        if let Some(caps) = r.captures(&value) {
                            last_groups = caps.iter().map(|m| m.map(|m| m.as_str().to_string())).collect();
                        }
                    }
                }
                hit != c.negate
            };
            if c.or_next {
                pending_or = pending_or || ok;
                continue;
            }
            pending_or = false;
            if !ok {
                return None;
            }
        }
        // A trailing [OR] group must still have held.
        if rule.conds.last().is_some_and(|c| c.or_next) && !pending_or {
            return None;
        }
        Some(last_groups)
    }
}

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            writeln!(
                f,
                "rewrite[{i}]: {} conditions, pattern {}{}",
                r.conds.len(),
                if r.negate { "!" } else { "" },
                r.pattern
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
