//! PURE. The mod_rewrite engine: `[[rewrite]]` entries (RewriteCond / RewriteRule
//! argument strings, exactly as Apache takes them) compiled once at load and evaluated
//! per request. No I/O, no clock. See SPEC §3 and issue 3.
//!
//! Placeholder until the engine lands: it recognises nothing and passes every request on.

use std::borrow::Cow;

use crate::target::Target;

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

/// The compiled rule set.
#[derive(Default, Debug)]
pub struct Rules {}

impl Rules {
    pub fn parse(_entries: &[RuleSource<'_>]) -> Result<Rules, Vec<RuleError>> {
        Ok(Rules {})
    }

    pub fn evaluate(&self, _req: &dyn RequestVars) -> Decision {
        Decision::Pass
    }
}

/// A rule that parses but probably does not do what its author meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    pub entry: usize,
    pub field: Field,
    pub message: String,
}

/// Placeholder until the engine lands.
pub fn lints(_entries: &[RuleSource<'_>]) -> Vec<Lint> {
    Vec::new()
}
