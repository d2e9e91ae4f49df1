//! Wildcard matching as Apache's `-strmatch`, `-strcmatch` and `-fnmatch` expression
//! operators do it (`apr_fnmatch`): `*` any run, `?` one byte, `[a-z]`/`[!x]`/`[^x]`
//! classes, `\` escapes. Byte-wise and allocation-free; at most one backtracking point,
//! so the cost is O(pattern × input) in the worst case.

/// Options, as the `apr_fnmatch` flags the three operators pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GlobFlags {
    /// `APR_FNM_CASE_BLIND` (`-strcmatch`): ASCII case-insensitive.
    pub nocase: bool,
    /// `APR_FNM_PATHNAME` (`-fnmatch`): wildcards never match `/`.
    pub pathname: bool,
}

/// Whether `input` matches the wildcard `pattern` as a whole.
pub(crate) fn glob_match(pattern: &[u8], input: &[u8], flags: GlobFlags) -> bool {
    let eq = |a: u8, b: u8| {
        if flags.nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut s) = (0, 0);
    // After a `*`: where the pattern resumes and the input position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while s < input.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, s));
                continue;
            }
            Some(b'?') if !(flags.pathname && input[s] == b'/') => Some(1),
            Some(b'[') => match class(&pattern[p..], input[s], flags) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None if input[s] == b'[' => Some(1), // unterminated: a literal `[`
                None => None,
            },
            Some(b'\\') if p + 1 < pattern.len() => eq(pattern[p + 1], input[s]).then_some(2),
            Some(&c) if c != b'?' => eq(c, input[s]).then_some(1),
            _ => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                s += 1;
            }
            // Let the last `*` swallow one more byte, unless that byte is a `/` it may
            // not cross; an earlier `*` could not do better, so that is a mismatch.
            (None, Some((sp, ss))) if !(flags.pathname && input[ss] == b'/') => {
                star = Some((sp, ss + 1));
                p = sp;
                s = ss + 1;
            }
            (None, _) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class at the start of `pat` (`[` included). Returns
/// whether it matched and the class length, or `None` when the class is unterminated.
fn class(pat: &[u8], c: u8, flags: GlobFlags) -> Option<(bool, usize)> {
    let fold = |b: u8| {
        if flags.nocase {
            b.to_ascii_lowercase()
        } else {
            b
        }
    };
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *pat.get(i)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *pat.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if pat.get(i) == Some(&b'-') && pat.get(i + 1).is_some_and(|&b| b != b']') {
            hi = *pat.get(i + 1)?;
            if hi == b'\\' {
                i += 1;
                hi = *pat.get(i + 1)?;
            }
            i += 2;
        }
        if (fold(lo)..=fold(hi)).contains(&fold(c)) || (lo..=hi).contains(&c) {
            matched = true;
        }
    }
    let ok = matched != negate && !(flags.pathname && c == b'/');
    Some((ok, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_apr_fnmatch() {
        let plain = GlobFlags::default();
        let nocase = GlobFlags { nocase: true, ..plain };
        let path = GlobFlags { pathname: true, ..plain };
        for (pattern, input, flags, want) in [
            ("*.example.com", "ws.example.com", plain, true),
            ("*.example.com", "example.com", plain, false),
            ("*.example.com", "a.b.example.com", plain, true),
            ("*.EXAMPLE.com", "ws.example.com", plain, false),
            ("*.EXAMPLE.com", "ws.example.com", nocase, true),
            ("/api/*", "/api/x/y", plain, true),
            ("/api/*", "/api/x/y", path, false),
            ("/api/*/y", "/api/x/y", path, true),
            ("a?c", "abc", plain, true),
            ("a?c", "a/c", path, false),
            ("[a-c]x", "bx", plain, true),
            ("[!a-c]x", "bx", plain, false),
            ("[^a-c]x", "dx", plain, true),
            ("[]]", "]", plain, true),
            ("[A-C]", "b", nocase, true),
            ("[a-", "[a-", plain, true), // unterminated class: literal
            (r"\*", "*", plain, true),
            (r"\*", "x", plain, false),
            ("*", "", plain, true),
            ("", "", plain, true),
            ("", "x", plain, false),
            ("**a*b*", "xxaxxbxx", plain, true),
            ("*a*b", "xxaxxbxxc", plain, false),
            ("*ab", "aab", plain, true),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), input.as_bytes(), flags),
                want,
                "{pattern:?} vs {input:?} {flags:?}"
            );
        }
    }
}
