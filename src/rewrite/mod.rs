//! PURE. The mod_rewrite engine: `[[rewrite]]` entries (RewriteCond / RewriteRule
//! argument strings, exactly as Apache takes them) compiled once at load and evaluated
//! per request. No I/O, no clock. The README says which flags and variables are
//! supported; docs/security.md ("Rewrite back-references and SSRF") what must never
//! leave the engine.
//!
//! This file owns the interface the proxy codes against (`RuleSource`, `RequestVars`,
//! `Decision`, `Rules`) and load errors. The work is split by noun:
//!
//! ```text
//! args.rs    Apache argument lines: quotes, `[flags]`, columns
//! flags.rs   RewriteRule flags            cond.rs   RewriteCond patterns (+ glob.rs)
//! expand.rs  %{VAR} $N %N ${map:…}        escape.rs what a value becomes on the wire
//! vars.rs    server variables (%{NAME})
//! rule.rs    one compiled entry           eval.rs   running the rules over a request
//! outcome.rs query string, P target, R Location, the final byte check
//! describe.rs `sidecar check` text        lint.rs   copy-paste mistakes, SSRF risks
//! ```
//!
//! Apache behaviour kept (✓ = checked against Debian's Apache 2.4.71 on loopback):
//! server-context order (pattern, then conditions), `OR`/`C`/`S`/`L`/`END`/`P`/`F`/`G`;
//! `%20` in a substitution is `%2` then `0` ✓ (write `\%20`; a lint says so); a failing
//! `[OR]` on the last condition is skipped ✓; `<`/`>` compare lengths first ✓; an
//! undefined `${map:key}` is "" ✓; the query rules of `splitout_queryargs` (`?`, `QSA`,
//! `QSD`, trailing `?`) ✓; `P` appends the query ✓; a decoded CR LF from
//! `%{REQUEST_URI}` reaches the backend as `%0D%0A` ✓; `- [R]` does nothing ✓; `NE`
//! keeps a `#` fragment ✓.
//!
//! Different on purpose:
//! - Request data is re-encoded rather than refused: since 2.4.56/2.4.60 Apache answers
//!   403 when a back-reference would put a space, control or decoded `?` into the
//!   substitution ✓; sidecar sends `%20`/`%0D`/`%3F` (a `?` from a value is `%3F` in the
//!   query part too, where Apache copies it raw ✓). Refused (400) is left for what
//!   cannot be encoded away: `NE` redirects and unusable `P` targets.
//! - Literal substitution text is wire form as written: `[R]` to `/a\%20b` stays `%20`
//!   (Apache escapes it again to `%2520` unless `NE` ✓); `[R,NE]` puts the query before
//!   the `#fragment` (Apache after it ✓).
//! - `R` ends the rule run; `NE` only affects `R`; `%{ENV:X}` sees only `E=` variables;
//!   no `N`, `CO`, `T`, `H`, `QSL`, RewriteMap, file tests, or `expr` beyond `A op B`.
//! - Load errors where Apache guesses or ignores: unknown variables and flags,
//!   unterminated quotes, `%{` or `${`, text after the flags, `P` to a path.
//! - Regexes are the `regex` crate's, not PCRE: no backreferences (`\1`) or look-around
//!   (a load error says so), `.` is one character, not one byte. As in Apache (✓), `.`
//!   matches a newline (`RegexDefaultOptions DOTALL`) and `$` only the very end.
//! - `R` to a path answers with a path-only `Location` (Apache writes an absolute URL
//!   from the Host header and local port); see `eval.rs`.

mod args;
mod cond;
mod describe;
mod escape;
mod eval;
mod expand;
mod flags;
mod glob;
mod lint;
mod outcome;
mod rule;
#[cfg(test)]
mod test_req;
#[cfg(test)]
mod tests;
mod vars;
#[cfg(test)]
mod wire_tests;

use std::borrow::Cow;
use std::fmt;

use crate::target::{scheme_uses_tls, Target};

pub use lint::lints;

use cond::Cond;
use rule::{Rule, RuleHead};

/// One `[[rewrite]]` entry as written in sidecar.toml.
#[derive(Clone, Copy, Debug)]
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
    /// the client gets 400 (docs/security.md, CVE-2023-25690).
    Refused { rule: usize, reason: String },
}

/// Which string of a `[[rewrite]]` entry a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `cond[i]`.
    Cond(usize),
    Rule,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cond(i) => write!(f, "cond[{i}]"),
            Self::Rule => f.write_str("rule"),
        }
    }
}

/// Hears what the rules do, step by step, for `sidecar check --explain`. The proxy
/// evaluates with `NoTrace`, whose empty methods compile to nothing.
pub trait Trace {
    /// Rule `rule`'s pattern was tried on the path; `applies` includes its `!`.
    fn pattern<'s>(&mut self, rule: usize, subject: &dyn Fn() -> &'s str, applies: bool) {
        let _ = (rule, subject, applies);
    }

    /// Condition `cond` of rule `rule`: its test string as expanded, and whether it held
    /// (its `!` included).
    fn cond(&mut self, rule: usize, cond: usize, input: &str, held: bool) {
        let _ = (rule, cond, input, held);
    }
}

/// No tracing: what the proxy uses.
pub struct NoTrace;

impl Trace for NoTrace {}

/// The lines of one `[[rewrite]]` entry's strings in their file (sidecar.toml, or the
/// Apache config `import-apache` reads), so a message about a `Field` names its line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceLines {
    /// Each condition's line.
    pub conds: Vec<usize>,
    pub rule: usize,
}

impl SourceLines {
    /// The line of `field`; the rule's when the condition is unknown.
    pub fn line(&self, field: Field) -> usize {
        match field {
            Field::Cond(i) => self.conds.get(i).copied().unwrap_or(self.rule),
            Field::Rule => self.rule,
        }
    }
}

/// A `[[rewrite]]` entry that cannot be loaded. The config layer adds file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// Index of the `[[rewrite]]` entry.
    pub entry: usize,
    pub field: Field,
    /// 1-based, in characters, within that string.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rewrite[{}].{}: column {}: {}", self.entry, self.field, self.column, self.message)
    }
}

impl std::error::Error for RuleError {}

/// The compiled rule set.
#[derive(Clone, Default, Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles every entry; on failure returns every error of every entry.
    pub fn parse(sources: &[RuleSource<'_>]) -> Result<Rules, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut rules = Vec::with_capacity(sources.len());
        for (entry, src) in sources.iter().enumerate() {
            let mut conds = Vec::with_capacity(src.conds.len());
            for (i, c) in src.conds.iter().enumerate() {
                match Cond::parse(c) {
                    Ok(c) => conds.push(c),
                    Err(es) => errors.extend(es.into_iter().map(|e| RuleError {
                        entry,
                        field: Field::Cond(i),
                        column: e.column,
                        message: e.message,
                    })),
                }
            }
            match RuleHead::parse(src.rule) {
                Ok(head) if conds.len() == src.conds.len() => rules.push(head.with_conds(conds)),
                Ok(_) => {}
                Err(es) => errors.extend(es.into_iter().map(|e| RuleError {
                    entry,
                    field: Field::Rule,
                    column: e.column,
                    message: e.message,
                })),
            }
        }
        match errors.is_empty() {
            true => Ok(Rules { rules }),
            false => Err(errors),
        }
    }

    /// Whether a `[P]` rule could send a request to an `https://` or `wss://` backend:
    /// its substitution names such a scheme, or does not start with a literal `http://`,
    /// `ws://` or `balancer://` (a variable or back-reference could supply any scheme).
    pub(crate) fn may_proxy_over_tls(&self) -> bool {
        self.rules.iter().any(|r| {
            r.flags.action == flags::Action::Proxy
                && r.substitution.as_ref().is_some_and(|t| match t.pieces.first() {
                    Some(expand::Piece::Lit(lit)) => {
                        lit.split_once("://").and_then(|(scheme, _)| scheme_uses_tls(scheme)).unwrap_or(true)
                    }
                    _ => true,
                })
        })
    }

    /// Runs the rules over one request (see `eval.rs` for the semantics).
    pub fn evaluate(&self, req: &dyn RequestVars) -> Decision {
        self.evaluate_traced(req, &mut NoTrace)
    }

    /// `evaluate`, telling `trace` each step (`sidecar check --explain`).
    pub fn evaluate_traced(&self, req: &dyn RequestVars, trace: &mut impl Trace) -> Decision {
        if self.rules.is_empty() {
            return Decision::Pass;
        }
        eval::evaluate(&self.rules, req, trace)
    }
}
