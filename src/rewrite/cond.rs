//! PURE. RewriteCond patterns: a regex (unanchored, as in Apache), `!` negation,
//! lexicographic `=`, `<`, `>`, `<=`, `>=`, integer `-eq` `-ne` `-lt` `-le` `-gt` `-ge`,
//! and `-strmatch` (a glob with `*` and `?`). File tests (`-f`, `-d`, …) have no meaning
//! in a proxy and are refused at load.

use regex::{Regex, RegexBuilder};

#[derive(Clone, Debug)]
pub enum Pattern {
    Regex(Regex),
    Compare(Compare, String),
    Int(IntCompare, i64),
    StrMatch(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntCompare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Builds a regex as mod_rewrite would use it: `nocase` → case-insensitive, and `.`
/// matches a newline (Apache 2.4's default `RegexDefaultOptions DOTALL`, which is how a
/// decoded CR LF reaches a back-reference in CVE-2023-25690).
pub fn build_regex(pattern: &str, nocase: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern).case_insensitive(nocase).dot_matches_new_line(true).build().map_err(|e| match e {
        regex::Error::Syntax(s) => {
            s.lines().last().unwrap_or("invalid regex").trim_start_matches("error: ").to_string()
        }
        other => other.to_string(),
    })
}

/// Parses a condition pattern (after any `!`).
pub fn parse_pattern(p: &str, nocase: bool) -> Result<Pattern, String> {
    let compare =
        [("<=", Compare::Le), (">=", Compare::Ge), ("=", Compare::Eq), ("<", Compare::Lt), (">", Compare::Gt)];
    for (prefix, op) in compare {
        if let Some(rest) = p.strip_prefix(prefix) {
            // `=""` compares with the empty string.
            let rest = if rest == "\"\"" { "" } else { rest };
            return Ok(Pattern::Compare(op, rest.to_string()));
        }
    }
    let ints = [
        ("-eq", IntCompare::Eq),
        ("-ne", IntCompare::Ne),
        ("-lt", IntCompare::Lt),
        ("-le", IntCompare::Le),
        ("-gt", IntCompare::Gt),
        ("-ge", IntCompare::Ge),
    ];
    for (name, kind) in ints {
        if let Some(rest) = p.strip_prefix(name) {
            let n = rest.trim().parse::<i64>().map_err(|_| format!("{name} expects an integer"))?;
            return Ok(Pattern::Int(kind, n));
        }
    }
    if let Some(rest) = p.strip_prefix("-strmatch") {
        return Ok(Pattern::StrMatch(rest.trim_start().to_string()));
    }
    if ["-f", "-F", "-d", "-s", "-l", "-L", "-h", "-x", "-U"].contains(&p) {
        return Err(format!("file test {p} has no meaning in a proxy"));
    }
    build_regex(p, nocase).map(Pattern::Regex)
}

/// Whether `value` satisfies the pattern; regex captures are returned when asked.
pub fn matches(pattern: &Pattern, value: &str, nocase: bool) -> bool {
    match pattern {
        Pattern::Regex(r) => r.is_match(value),
        Pattern::Compare(op, other) => {
            let ord = if nocase {
                value.to_ascii_lowercase().cmp(&other.to_ascii_lowercase())
            } else {
                value.cmp(other.as_str())
            };
            match op {
                Compare::Eq => ord.is_eq(),
                Compare::Lt => ord.is_lt(),
                Compare::Gt => ord.is_gt(),
                Compare::Le => ord.is_le(),
                Compare::Ge => ord.is_ge(),
            }
        }
        Pattern::Int(op, n) => {
            let Ok(v) = value.trim().parse::<i64>() else { return false };
            match op {
                IntCompare::Eq => v == *n,
                IntCompare::Ne => v != *n,
                IntCompare::Lt => v < *n,
                IntCompare::Le => v <= *n,
                IntCompare::Gt => v > *n,
                IntCompare::Ge => v >= *n,
            }
        }
        Pattern::StrMatch(glob) => glob_match(glob.as_bytes(), value.as_bytes(), nocase),
    }
}

/// `*` any run, `?` one byte (fnmatch without brackets).
fn glob_match(p: &[u8], v: &[u8], nocase: bool) -> bool {
    let eq = |a: u8, b: u8| if nocase { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], v[vi]))) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_patterns() {
        for (pattern, nocase, value, want) in [
            ("websocket", true, "WebSocket", true),
            ("websocket", false, "WebSocket", false),
            ("upgrade", true, "keep-alive, Upgrade", true), // unanchored, as Apache
            ("websocket", true, "xwebsocketx", true),
            ("^websocket$", true, "websocket, h2c", false),
            ("=GET", false, "GET", true),
            ("=\"\"", false, "", true),
            ("=get", true, "GET", true),
            ("<m", false, "a", true),
            (">=m", false, "m", true),
            ("-gt10", false, "11", true),
            ("-le10", false, "11", false),
            ("-strmatch *.example.com", false, "api.example.com", true),
            ("-strmatch a?c", false, "abd", false),
        ] {
            let p = parse_pattern(pattern, nocase).expect("valid");
            assert_eq!(matches(&p, value, nocase), want, "{pattern:?} nocase={nocase} on {value:?}");
        }
        assert!(parse_pattern("(unclosed", false).is_err());
        assert!(parse_pattern("-f", false).is_err());
    }
}
