//! One RewriteCond: its test string, its CondPattern (regex, `=`, `<`, `>`, `<=`, `>=`,
//! `-eq`…`-ne`, or `expr` with `-strmatch`/`-strcmatch`/`-fnmatch`/`==`/`!=`), `!` and
//! the `NC`, `OR`, `NV` flags — parsed as Apache's `cmd_rewritecond` and tested as its
//! `apply_rewrite_cond` (mod_rewrite.c). How conditions combine is `eval.rs`'s job.
//!
//! Apache quirks kept: `<`/`>` compare lengths first, then bytes (`compare_lexicography`),
//! but with `NC` they are plain case-insensitive comparisons; `=""` is the empty string;
//! an operator needs at least two characters (`=` alone is the regex "="); integers are
//! read like C `atoi`; `NC` is ignored on integer tests. Differences: file tests
//! (`-f`, `-d`, …) and lookups (`-U`, `-F`) are load errors (no filesystem, no
//! subrequests); `expr` understands only `A op B` with the operators above.

use regex::{CaptureLocations, Regex, RegexBuilder};

use super::args::{split_args, split_flags, Arg, Located};
use super::expand::{Cx, Template};
use super::glob::{glob_match, GlobFlags};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        matches!(
            (self, ord),
            (Self::Lt, Less)
                | (Self::Le, Less | Equal)
                | (Self::Eq, Equal)
                | (Self::Gt, Greater)
                | (Self::Ge, Greater | Equal)
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExprOp {
    StrMatch,
    StrCMatch,
    FnMatch,
    Equal,
    NotEqual,
}

/// What a condition checks its test string with.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Regex(Regex),
    Str(Cmp, Box<str>),
    Int(Cmp, i64),
    Expr { left: Template, op: ExprOp, right: Template },
}

#[derive(Clone, Debug)]
pub(crate) struct Cond {
    pub test_string: Template,
    /// As written, for `sidecar check`.
    pub test_src: Box<str>,
    pub pattern_src: Box<str>,
    pub negate: bool,
    pub test: Test,
    pub nocase: bool,
    pub or_next: bool,
    /// The regex is a plain ASCII word such as `websocket`: searched for directly,
    /// which costs a few nanoseconds instead of a regex run (the WebSocket rule set's conditions).
    /// ASCII-only case folding, as PCRE without UTF mode does.
    literal: Option<Box<str>>,
}

impl Cond {
    /// Parses one `cond` string; every problem found is returned.
    pub fn parse(src: &str) -> Result<Self, Vec<Located>> {
        let args = split_args(src, "TestString CondPattern [flags]").map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let (mut nocase, mut or_next) = (false, false);
        if let Some(flags) = args.flags {
            match split_flags(flags) {
                Err(e) => errors.push(e),
                Ok(items) => {
                    for f in items {
                        let slot = match f.key.to_ascii_lowercase().as_str() {
                            "nc" | "nocase" => &mut nocase,
                            "or" | "ornext" => &mut or_next,
                            "nv" | "novary" => &mut false, // no Vary: sidecar does not cache
                            _ => {
                                errors.push(Located::new(
                                    f.column,
                                    format!("unknown condition flag {:?} (expected NC, OR or NV)", f.key),
                                ));
                                continue;
                            }
                        };
                        *slot = true;
                        if f.value.is_some() {
                            errors.push(Located::new(f.column, format!("flag {} takes no value", f.key)));
                        }
                    }
                }
            }
        }
        let is_expr = args.first.text.eq_ignore_ascii_case("expr");
        let test_string = match is_expr {
            true => Ok(Template::default()),
            false => Template::parse(args.first.text, args.first.column),
        };
        let negate = args.second.text.starts_with('!');
        let pat =
            Arg { text: &args.second.text[usize::from(negate)..], column: args.second.column + usize::from(negate) };
        let test = match is_expr {
            true => parse_expr(pat),
            false => parse_pattern(pat, nocase),
        };
        let (test_string, test) = match (test_string, test) {
            (Ok(t), Ok(p)) if errors.is_empty() => (t, p),
            (t, p) => {
                errors.extend(t.err());
                errors.extend(p.err());
                errors.sort_by_key(|e| e.column);
                return Err(errors);
            }
        };
        // `-ne` is `!-eq`, as Apache stores it; NC only means something to regexes and
        // string comparisons (Apache warns and drops it elsewhere).
        let negate = negate ^ (matches!(test, Test::Int(..)) && pat.text.starts_with("-ne"));
        let nocase = nocase && matches!(test, Test::Regex(_) | Test::Str(..));
        let literal = match &test {
            Test::Regex(_) if !pat.text.is_empty() && pat.text.is_ascii() && regex::escape(pat.text) == pat.text => {
                Some(pat.text.into())
            }
            _ => None,
        };
        Ok(Self {
            test_string,
            test_src: args.first.text.into(),
            pattern_src: args.second.text.into(),
            negate,
            test,
            nocase,
            or_next,
            literal,
        })
    }

    /// Whether the test (before `!`) holds for the expanded test string.
    pub fn holds(&self, input: &str, cx: &Cx<'_>) -> bool {
        match &self.test {
            Test::Regex(re) => match &self.literal {
                Some(word) => contains(input.as_bytes(), word.as_bytes(), self.nocase),
                None => re.is_match(input),
            },
            Test::Str(cmp, pattern) => compare(*cmp, input, pattern, self.nocase),
            Test::Int(cmp, n) => cmp.holds(atoi(input).cmp(n)),
            Test::Expr { left, op, right } => {
                left.with_expanded(cx, |l| right.with_expanded(cx, |r| expr_holds(*op, l, r)))
            }
        }
    }

    /// `holds`, keeping the groups of a regex match for `%N`.
    pub fn holds_capturing(&self, input: &str, cx: &Cx<'_>, locs: &mut Option<CaptureLocations>) -> bool {
        match &self.test {
            Test::Regex(re) => {
                let l = locs.get_or_insert_with(|| re.capture_locations());
                re.captures_read(l, input).is_some()
            }
            _ => self.holds(input, cx),
        }
    }
}

/// Substring search for a non-empty ASCII needle (headers are short: a plain scan).
fn contains(haystack: &[u8], needle: &[u8], nocase: bool) -> bool {
    haystack.windows(needle.len()).any(|w| if nocase { w.eq_ignore_ascii_case(needle) } else { w == needle })
}

fn expr_holds(op: ExprOp, left: &str, right: &str) -> bool {
    let (l, r) = (left.as_bytes(), right.as_bytes());
    match op {
        ExprOp::StrMatch => glob_match(r, l, GlobFlags::default()),
        ExprOp::StrCMatch => glob_match(r, l, GlobFlags { nocase: true, pathname: false }),
        ExprOp::FnMatch => glob_match(r, l, GlobFlags { nocase: false, pathname: true }),
        ExprOp::Equal => left == right,
        ExprOp::NotEqual => left != right,
    }
}

fn compare(cmp: Cmp, input: &str, pattern: &str, nocase: bool) -> bool {
    let ord = match (cmp, nocase) {
        (Cmp::Eq, false) => return input == pattern,
        // Apache uses strcasecmp here: a plain comparison, ASCII case folded.
        (_, true) => input.bytes().map(|b| b.to_ascii_lowercase()).cmp(pattern.bytes().map(|b| b.to_ascii_lowercase())),
        // Apache's compare_lexicography: the longer string is greater.
        (_, false) => input.len().cmp(&pattern.len()).then_with(|| input.as_bytes().cmp(pattern.as_bytes())),
    };
    cmp.holds(ord)
}

/// C `atoi`: leading spaces, a sign, digits up to the first non-digit; 0 otherwise.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| n.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    if neg {
        -n
    } else {
        n
    }
}

fn parse_pattern(pat: Arg<'_>, nocase: bool) -> Result<Test, Located> {
    let p = pat.text;
    let b = p.as_bytes();
    if b.len() >= 2 {
        if b[0] == b'-' && b.len() == 2 && b"fsdxhLlUF".contains(&b[1]) {
            return Err(Located::new(pat.column, format!("{p} tests a file or runs a subrequest, which sidecar cannot do (expected a regex, =, <, >, <=, >=, -eq/-ne/-lt/-le/-gt/-ge or expr)")));
        }
        for glob_op in ["-strmatch", "-strcmatch", "-fnmatch"] {
            if p.starts_with(glob_op) {
                return Err(Located::new(pat.column, format!("{glob_op} is an Apache expression operator, not a CondPattern: write RewriteCond expr \"%{{VAR}} {glob_op} 'pattern'\"")));
            }
        }
        if b[0] == b'-' && b.len() >= 4 {
            let cmp = match p.get(1..3).unwrap_or("") {
                "lt" => Some(Cmp::Lt),
                "le" => Some(Cmp::Le),
                "gt" => Some(Cmp::Gt),
                "ge" => Some(Cmp::Ge),
                "eq" | "ne" => Some(Cmp::Eq),
                _ => None,
            };
            if let Some(cmp) = cmp {
                return Ok(Test::Int(cmp, atoi(&p[3..])));
            }
        }
        let (cmp, operand) = match (b[0], b[1]) {
            (b'>', b'=') => (Some(Cmp::Ge), &p[2..]),
            (b'>', _) => (Some(Cmp::Gt), &p[1..]),
            (b'<', b'=') => (Some(Cmp::Le), &p[2..]),
            (b'<', _) => (Some(Cmp::Lt), &p[1..]),
            (b'=', _) if &p[1..] == "\"\"" => (Some(Cmp::Eq), ""),
            (b'=', _) => (Some(Cmp::Eq), &p[1..]),
            _ => (None, p),
        };
        if let Some(cmp) = cmp {
            return Ok(Test::Str(cmp, operand.into()));
        }
    }
    compile_regex(p, nocase, pat.column).map(Test::Regex)
}

/// The subset of Apache's `expr` syntax sidecar evaluates: `A op B` where A and B are
/// `%{VAR}` or quoted strings (which may contain `%{VAR}`).
fn parse_expr(pat: Arg<'_>) -> Result<Test, Located> {
    let usage = "expected an expression such as \"%{HTTP_HOST} -strmatch '*.example.com'\" (sidecar supports -strmatch, -strcmatch, -fnmatch, == and !=)";
    let s = pat.text;
    let col = |i: usize| pat.column + s[..i].chars().count();
    let mut pos = 0;
    let mut words = Vec::new();
    while words.len() < 4 {
        pos += s[pos..].len() - s[pos..].trim_start().len();
        if pos >= s.len() {
            break;
        }
        let start = pos;
        let (text, text_at, end) = match s.as_bytes()[pos] {
            q @ (b'\'' | b'"') => {
                let close =
                    s[pos + 1..].find(q as char).ok_or_else(|| Located::new(col(pos), "unterminated quote in expr"))?;
                (&s[pos + 1..pos + 1 + close], pos + 1, pos + close + 2)
            }
            b'%' if s[pos..].starts_with("%{") => {
                let close = s[pos..].find('}').ok_or_else(|| Located::new(col(pos), "unterminated %{ in expr"))?;
                (&s[pos..pos + close + 1], pos, pos + close + 1)
            }
            _ => {
                let end = s[pos..].find(char::is_whitespace).map_or(s.len(), |e| pos + e);
                (&s[pos..end], pos, end)
            }
        };
        words.push((text, text_at, start));
        pos = end;
    }
    let [(l, l_at, l_start), (op, _, op_at), (r, r_at, r_start)] = words[..] else {
        let at = words.get(3).map_or(0, |w| w.2);
        return Err(Located::new(col(at), usage));
    };
    let op = match op {
        "-strmatch" => ExprOp::StrMatch,
        "-strcmatch" => ExprOp::StrCMatch,
        "-fnmatch" => ExprOp::FnMatch,
        "==" | "=" => ExprOp::Equal,
        "!=" => ExprOp::NotEqual,
        _ => return Err(Located::new(col(op_at), format!("unsupported expr operator {op:?} ({usage})"))),
    };
    let operand = |text: &str, at: usize, start: usize| {
        if start == at && !text.starts_with("%{") {
            return Err(Located::new(col(at), format!("expected a quoted string or %{{VAR}}, found {text:?}")));
        }
        Template::parse(text, col(at))
    };
    Ok(Test::Expr { left: operand(l, l_at, l_start)?, op, right: operand(r, r_at, r_start)? })
}

/// Compiles a RewriteRule or RewriteCond regex. `.` matches a newline, as in Apache,
/// whose `RegexDefaultOptions` is `DOTALL` since 2.4.30 (checked: `^/dot/a.b$` matches a
/// decoded `/dot/a\nb`). The error names the column where the pattern starts and carries
/// the regex crate's own explanation.
pub(crate) fn compile_regex(pattern: &str, nocase: bool, column: usize) -> Result<Regex, Located> {
    RegexBuilder::new(pattern).case_insensitive(nocase).dot_matches_new_line(true).build().map_err(|e| {
        let text = e.to_string();
        let why =
            text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(text.lines().next().unwrap_or(""));
        // regex quotes the pattern (its first two lines) and draws carets under the
        // offending part on the next, indented by four spaces; the quoted pattern itself
        // may start with `^`.
        let at = text
            .lines()
            .skip(2)
            .find(|l| l.trim_start().starts_with('^') && l.chars().all(|c| c == ' ' || c == '^'))
            .map(|l| l.chars().take_while(|&c| c == ' ').count().saturating_sub(4));
        let hint = if why.contains("not supported") {
            " (sidecar uses the Rust regex crate: unlike Apache's PCRE it has no backreferences or look-around)"
        } else if why.contains("Unicode property not found") {
            " (sidecar knows the general categories such as \\p{L} and \\p{Lu}, not scripts or other properties such as \\p{Greek})"
        } else {
            ""
        };
        let place = at.map(|a| format!(" at character {} of the pattern", a + 1)).unwrap_or_default();
        Located::new(column, format!("invalid regular expression {pattern:?}: {why}{place}{hint}"))
    })
}

#[cfg(test)]
#[path = "cond_tests.rs"]
mod tests;
