//! Splits one RewriteCond / RewriteRule argument string into its two or three
//! arguments, and a `[flags]` argument into its flags, the way Apache's `parseargline`
//! and `cmd_parseflagfield` do (mod_rewrite.c). Every piece keeps its 1-based column in
//! the original string so errors can point at it. What the pieces mean is left to
//! `rule.rs`, `cond.rs` and `flags.rs`.
//!
//! Apache quirks kept: `"…"` or `'…'` quote an argument (no escapes inside, the same
//! quote ends it); outside quotes a backslash before a space keeps the space in the
//! argument (the backslash stays too, as in Apache, where the regex or the expander reads
//! it). Deliberately stricter than Apache, which silently ignores or misreads them: an
//! unterminated quote, a quote glued to the next argument, and text after the flags are
//! errors.

/// One argument: its text (quotes removed) and the column where that text starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arg<'a> {
    pub text: &'a str,
    pub column: usize,
}

/// A rule or condition split into arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Args<'a> {
    pub first: Arg<'a>,
    pub second: Arg<'a>,
    pub flags: Option<Arg<'a>>,
}

/// A syntax error at a column, with what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub column: usize,
    pub message: String,
}

impl Located {
    pub fn new(column: usize, message: impl Into<String>) -> Self {
        Self { column, message: message.into() }
    }
}

/// 1-based column (in characters) of byte offset `at` in `s`.
pub(crate) fn column_of(s: &str, at: usize) -> usize {
    s.get(..at).map_or(at, |p| p.chars().count()) + 1
}

/// Splits `s` into `first second [flags]`. `usage` names the arguments for messages,
/// e.g. "Pattern Substitution [flags]".
pub(crate) fn split_args<'a>(s: &'a str, usage: &str) -> Result<Args<'a>, Located> {
    let mut pos = 0;
    let mut args: Vec<Arg<'a>> = Vec::with_capacity(3);
    loop {
        pos += s[pos..].len() - s[pos..].trim_start_matches(|c: char| c.is_ascii_whitespace()).len();
        if pos >= s.len() {
            break;
        }
        if args.len() == 3 {
            return Err(Located::new(
                column_of(s, pos),
                format!("unexpected text after the flags (expected {usage}; quote an argument that contains spaces)"),
            ));
        }
        let (arg, next) = one_arg(s, pos)?;
        if args.len() == 2 && !(arg.text.starts_with('[') && arg.text.ends_with(']') && arg.text.len() >= 2) {
            return Err(Located::new(
                arg.column,
                format!("expected flags in brackets such as [NC] (expected {usage}; no spaces inside the brackets unless quoted)"),
            ));
        }
        args.push(arg);
        pos = next;
    }
    let mut it = args.into_iter();
    let (Some(first), Some(second)) = (it.next(), it.next()) else {
        return Err(Located::new(column_of(s, s.len()), format!("expected {usage}")));
    };
    Ok(Args { first, second, flags: it.next() })
}

/// Reads one argument starting at byte `start` (not whitespace). Returns it and the
/// offset just after it (after a closing quote).
fn one_arg(s: &str, start: usize) -> Result<(Arg<'_>, usize), Located> {
    let bytes = s.as_bytes();
    let quote = match bytes[start] {
        q @ (b'"' | b'\'') => Some(q),
        _ => None,
    };
    let body = start + usize::from(quote.is_some());
    let mut i = body;
    while i < bytes.len() {
        let b = bytes[i];
        if Some(b) == quote || (quote.is_none() && b.is_ascii_whitespace()) {
            break;
        }
        // Apache: `\ ` keeps the space inside an unquoted argument.
        if b == b'\\' && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i += 2;
            continue;
        }
        i += 1;
    }
    let arg = Arg { text: &s[body..i], column: column_of(s, body) };
    match quote {
        None => Ok((arg, i)),
        Some(q) if i >= bytes.len() => {
            Err(Located::new(column_of(s, start), format!("unterminated quote (expected a closing {})", q as char)))
        }
        Some(_) => match bytes.get(i + 1) {
            Some(b) if !b.is_ascii_whitespace() => {
                Err(Located::new(column_of(s, i + 1), "expected a space after the closing quote"))
            }
            _ => Ok((arg, i + 1)),
        },
    }
}

/// One flag from `[key=value,…]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlagItem<'a> {
    pub key: &'a str,
    pub value: Option<&'a str>,
    pub column: usize,
}

/// Splits a bracketed flag argument (checked by `split_args`) at commas, trimming
/// spaces, and each flag at its first `=`. Empty items are errors, except `[]`.
pub(crate) fn split_flags(arg: Arg<'_>) -> Result<Vec<FlagItem<'_>>, Located> {
    let inner = &arg.text[1..arg.text.len() - 1];
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut offset = 1; // byte offset of `inner` within arg.text
    for item in inner.split(',') {
        let lead = item.len() - item.trim_start().len();
        let trimmed = item.trim();
        let column = arg.column + arg.text[..offset + lead].chars().count();
        if trimmed.is_empty() {
            return Err(Located::new(column, "empty flag (expected a flag name between commas)"));
        }
        let (key, value) = match trimmed.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v.trim_start())),
            None => (trimmed, None),
        };
        out.push(FlagItem { key, value, column });
        offset += item.len() + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(a: &Args<'_>) -> (String, String, Option<String>) {
        (a.first.text.into(), a.second.text.into(), a.flags.map(|f| f.text.into()))
    }

    #[test]
    fn splits_like_apache() {
        for (input, first, second, flags) in [
            (".* wss://h%{REQUEST_URI} [P,L]", ".*", "wss://h%{REQUEST_URI}", Some("[P,L]")),
            (
                r#".* "wss://localhost:3000%{REQUEST_URI}" [P,L]"#,
                ".*",
                "wss://localhost:3000%{REQUEST_URI}",
                Some("[P,L]"),
            ),
            ("  ^/a   /b  ", "^/a", "/b", None),
            ("'^/a b' /c", "^/a b", "/c", None),
            (r"^/a\ b /c", r"^/a\ b", "/c", None),
            ("%{HTTP:Upgrade} websocket \"[NC, OR]\"", "%{HTTP:Upgrade}", "websocket", Some("[NC, OR]")),
            ("%{X} =\"\"", "%{X}", "=\"\"", None),
            ("\"\" x", "", "x", None),
            ("a\tb\t[L]", "a", "b", Some("[L]")),
        ] {
            let got = split_args(input, "A B [flags]").map(|a| texts(&a));
            let want = (first.to_string(), second.to_string(), flags.map(str::to_string));
            assert_eq!(got, Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn reports_bad_argument_lines_with_columns() {
        for (input, column, needle) in [
            ("", 1, "expected A B [flags]"),
            (".*", 3, "expected A B [flags]"),
            ("\"abc x", 1, "unterminated quote"),
            ("a \"b\"c", 6, "space after the closing quote"),
            ("a b [P, L]", 5, "flags in brackets"),
            ("a b [L] x", 9, "unexpected text after the flags"),
            ("a b L", 5, "flags in brackets"),
        ] {
            let got = split_args(input, "A B [flags]").expect_err(input);
            assert_eq!(got.column, column, "input {input:?}: {got:?}");
            assert!(got.message.contains(needle), "input {input:?}: {got:?}");
        }
    }

    #[test]
    fn splits_flags_with_columns() {
        let arg = Arg { text: "[P, R=301 ,E=X:a=b]", column: 10 };
        let got = split_flags(arg).expect("flags");
        assert_eq!(
            got,
            vec![
                FlagItem { key: "P", value: None, column: 11 },
                FlagItem { key: "R", value: Some("301"), column: 14 },
                FlagItem { key: "E", value: Some("X:a=b"), column: 21 },
            ]
        );
        assert_eq!(split_flags(Arg { text: "[]", column: 1 }), Ok(vec![]));
        assert_eq!(split_flags(Arg { text: "[L,,P]", column: 1 }).map_err(|e| e.column), Err(4));
    }
}
