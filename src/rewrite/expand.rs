//! Templates: a test string, substitution or `E=` value parsed once at load into
//! literal text, `%{VAR}` server variables, `$N` (rule) and `%N` (condition)
//! back-references and `${map:key|default}` lookups, then expanded per request in a
//! single pass (as Apache's `do_expand`: an expanded value is never expanded again).
//!
//! Two ways out: `with_expanded` hands a test string to a matcher, borrowing a single
//! variable instead of copying it (no allocation on a plain request); `expand_target`
//! writes a substitution, re-encoding each value by where it came from (`escape.rs`).
//!
//! Apache differences, on purpose: an unknown `%{VAR}` or an unterminated `%{`/`${` is a
//! load error (Apache silently expands to "" or copies the text). sidecar has no
//! RewriteMap, so `${map:key|default}` yields its default or "" — which is what Apache
//! does for a map that is not defined, e.g. the tutorial typo `${HTTP:Upgrade}`.

use regex::CaptureLocations;

use super::args::Located;
use super::escape::{push_b_escaped, push_escaped, BEscape, Source};
use super::vars::{with_var, Var};
use super::RequestVars;

/// One part of a template.
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Lit(Box<str>),
    Var(Var),
    RuleRef(usize),
    CondRef(usize),
    /// `${map:key|default}`: no maps exist, so the default (or "").
    Map(Option<Template>),
}

/// A parsed test string, substitution or `E=` value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Template {
    pub pieces: Vec<Piece>,
}

/// Back-references of one match: the text matched and where the groups are.
#[derive(Clone, Copy, Default)]
pub(crate) struct Refs<'a> {
    pub text: &'a str,
    pub locs: Option<&'a CaptureLocations>,
}

impl<'a> Refs<'a> {
    /// Group `n`, or "" when absent (Apache: an unset back-reference is empty).
    pub fn get(&self, n: usize) -> &'a str {
        self.locs.and_then(|l| l.get(n)).and_then(|(s, e)| self.text.get(s..e)).unwrap_or("")
    }
}

/// Everything a template can refer to during one request.
pub(crate) struct Cx<'a> {
    pub req: &'a dyn RequestVars,
    /// The rewritten path, or `None` for the request's own (`req.path()`).
    pub filename: Option<&'a str>,
    pub query: &'a str,
    pub env: &'a [(String, String)],
    pub rule_refs: Refs<'a>,
    pub cond_refs: Refs<'a>,
}

/// How a substitution is encoded (per rule flags).
#[derive(Clone, Copy)]
pub(crate) struct TargetMode<'m> {
    /// `B` and friends: escape back-references fully.
    pub b: Option<&'m BEscape>,
    /// `NE` on a redirect: values are copied unencoded (the wire check still runs).
    pub noescape: bool,
}

/// A substitution after expansion, with the position of the first *literal* `?`: only
/// the administrator's own text may start the query (CVE-2024-38474).
#[derive(Default, Debug)]
pub(crate) struct Expanded {
    pub text: String,
    pub query_at: Option<usize>,
}

impl Template {
    pub fn parse(text: &str, column: usize) -> Result<Self, Located> {
        let col = |i: usize| column + text[..i].chars().count();
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let next = bytes.get(i + 1).copied();
            let piece = match (bytes[i], next) {
                (b'\\', Some(_)) => {
                    let ch = text[i + 1..].chars().next().unwrap_or('\\');
                    lit.push(ch);
                    i += 1 + ch.len_utf8();
                    continue;
                }
                (b'%', Some(b'{')) => {
                    let end = text[i + 2..]
                        .find('}')
                        .ok_or_else(|| Located::new(col(i), "unterminated %{ (expected a closing })"))?;
                    let var = Var::parse(&text[i + 2..i + 2 + end]).map_err(|m| Located::new(col(i), m))?;
                    i += end + 3;
                    Piece::Var(var)
                }
                (b'$', Some(b'{')) => {
                    let end = closing_curly(&text[i + 2..])
                        .ok_or_else(|| Located::new(col(i), "unterminated ${ (expected a closing })"))?;
                    let inner = &text[i + 2..i + 2 + end];
                    let Some(colon) = find_at_depth(inner, b':') else {
                        // Apache: not a map lookup, the two characters are literal.
                        lit.push_str("${");
                        i += 2;
                        continue;
                    };
                    let default = match find_at_depth(&inner[colon..], b'|') {
                        Some(bar) => {
                            let at = i + 2 + colon + bar + 1;
                            Some(Template::parse(&inner[colon + bar + 1..], col(at))?)
                        }
                        None => None,
                    };
                    i += end + 3;
                    Piece::Map(default)
                }
                (b @ (b'$' | b'%'), Some(d)) if d.is_ascii_digit() => {
                    i += 2;
                    let n = usize::from(d - b'0');
                    if b == b'$' {
                        Piece::RuleRef(n)
                    } else {
                        Piece::CondRef(n)
                    }
                }
                _ => {
                    let ch = text[i..].chars().next().unwrap_or('\u{FFFD}');
                    lit.push(ch);
                    i += ch.len_utf8();
                    continue;
                }
            };
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
            }
            pieces.push(piece);
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit.into()));
        }
        Ok(Self { pieces })
    }

    /// Calls `f` with the expanded text, unencoded. A template that is one variable,
    /// one back-reference or one literal is lent as it is, without a copy.
    pub fn with_expanded<R>(&self, cx: &Cx<'_>, f: impl FnOnce(&str) -> R) -> R {
        match self.pieces.as_slice() {
            [] => f(""),
            [Piece::Lit(s)] => f(s),
            [Piece::Var(v)] => with_var(v, cx, f),
            [Piece::RuleRef(n)] => f(cx.rule_refs.get(*n)),
            [Piece::CondRef(n)] => f(cx.cond_refs.get(*n)),
            _ => {
                let mut s = String::new();
                self.expand_plain(cx, &mut s);
                f(&s)
            }
        }
    }

    /// Appends the expansion without encoding (test strings, `E=` values).
    pub fn expand_plain(&self, cx: &Cx<'_>, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => with_var(v, cx, |s| out.push_str(s)),
                Piece::RuleRef(n) => out.push_str(cx.rule_refs.get(*n)),
                Piece::CondRef(n) => out.push_str(cx.cond_refs.get(*n)),
                Piece::Map(Some(d)) => d.expand_plain(cx, out),
                Piece::Map(None) => {}
            }
        }
    }

    /// Appends the expansion as a substitution: literal text as written (bytes that may
    /// not travel encoded), every value re-encoded by its source.
    pub fn expand_target(&self, cx: &Cx<'_>, mode: TargetMode<'_>, out: &mut Expanded) {
        for piece in &self.pieces {
            let in_query = out.query_at.is_some();
            // B applies even with NE, as in Apache (it escapes while expanding; NE only
            // turns off the escaping of the finished URL).
            let value = |out: &mut Expanded, s: &str, source: Source, backref: bool| match (mode.b, backref) {
                (Some(b), true) => push_b_escaped(&mut out.text, s, b, in_query),
                _ if mode.noescape => out.text.push_str(s),
                _ => push_escaped(&mut out.text, s, source, in_query),
            };
            match piece {
                Piece::Lit(s) => {
                    let literal = Source::Literal { keep_hash: mode.noescape };
                    match (in_query, s.find('?')) {
                        (false, Some(q)) => {
                            push_escaped(&mut out.text, &s[..q], literal, false);
                            out.query_at = Some(out.text.len());
                            out.text.push('?');
                            push_escaped(&mut out.text, &s[q + 1..], literal, true);
                        }
                        _ => push_escaped(&mut out.text, s, literal, in_query),
                    }
                }
                Piece::Var(v) => with_var(v, cx, |s| value(out, s, v.source(), false)),
                Piece::RuleRef(n) => value(out, cx.rule_refs.get(*n), Source::Decoded, true),
                Piece::CondRef(n) => value(out, cx.cond_refs.get(*n), Source::Decoded, true),
                Piece::Map(Some(d)) => d.expand_target(cx, mode, out),
                Piece::Map(None) => {}
            }
        }
    }

    /// Every piece, looking inside map defaults.
    pub fn walk(&self, f: &mut impl FnMut(&Piece)) {
        for p in &self.pieces {
            f(p);
            if let Piece::Map(Some(d)) = p {
                d.walk(f);
            }
        }
    }

    /// Whether any `$N` (rule) or `%N` (condition) back-reference appears.
    pub fn uses_refs(&self) -> (bool, bool) {
        let (mut rule, mut cond) = (false, false);
        self.walk(&mut |p| match p {
            Piece::RuleRef(_) => rule = true,
            Piece::CondRef(_) => cond = true,
            _ => {}
        });
        (rule, cond)
    }
}

/// Offset of the `}` closing a `{` whose content starts `s`, counting nesting
/// (Apache `find_closing_curly`).
fn closing_curly(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Offset of `c` outside any nested braces (Apache `find_char_in_curlies`).
fn find_at_depth(s: &str, c: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if b == c && depth == 0 => return Some(i),
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
