//! Percent-encoding of what lands in a substitution, and percent-decoding of a rewritten
//! path for the next rule to match. This is where the request-splitting class dies:
//! Apache matches rules against the *decoded* path, so `%{REQUEST_URI}` and
//! back-references can hold raw CR, LF and SP (CVE-2023-25690) or a `?` that was `%3F`
//! on the wire (CVE-2024-38474); both are cases in docs/security.md. Every value is
//! re-encoded here according to where it came from; `eval.rs` then checks the final
//! bytes with `target::is_target_byte`.

use crate::target::is_target_byte;

/// Where a value came from, which decides what must be re-encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// Decoded text (the path, back-references, header values, ENV): encode controls,
    /// space, DEL, non-ASCII, `#`, `%` and `?`, so the value means on the wire what it
    /// meant when matched, and can neither split the request nor start a query.
    Decoded,
    /// Text that is still in wire form (`%{QUERY_STRING}`, `%{THE_REQUEST}`): encode only
    /// bytes that may not travel, and `?` while still in the path part.
    Raw,
    /// The administrator's own substitution text: already wire form, kept as written
    /// except bytes that may not travel (a `\ ` space, non-ASCII, `#`). `#` stays for an
    /// `[R,NE]` redirect, where it starts a fragment (Apache's documented NE use).
    Literal { keep_hash: bool },
}

/// Whether byte `b` of a value from `source` must be percent-encoded.
fn must_encode(b: u8, source: Source, in_query: bool) -> bool {
    match source {
        Source::Decoded => !is_target_byte(b) || b == b'%' || b == b'?',
        Source::Raw => !is_target_byte(b) || (b == b'?' && !in_query),
        Source::Literal { keep_hash } => !(is_target_byte(b) || (keep_hash && b == b'#')),
    }
}

/// Appends `%XX` (upper-case hex, RFC 3986 §2.1).
pub(crate) fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Appends `value`, encoding what `source` requires. `in_query`: a literal `?` has
/// already been written, so the value lands in the query part.
pub(crate) fn push_escaped(out: &mut String, value: &str, source: Source, in_query: bool) {
    let bytes = value.as_bytes();
    let mut run = 0; // start of the current run of bytes copied as they are
    for (i, &b) in bytes.iter().enumerate() {
        if must_encode(b, source, in_query) {
            // Every byte of a non-ASCII character is encoded, so a non-empty run is
            // ASCII and both ends are character boundaries.
            if run < i {
                out.push_str(&value[run..i]);
            }
            push_pct(out, b);
            run = i + 1;
        }
    }
    out.push_str(value.get(run..).unwrap_or(""));
}

/// Apache's `[B]` escaping of a back-reference (`escape_backref` in mod_rewrite.c):
/// without a list, everything but ASCII letters, digits and `_` is encoded and a space
/// becomes `+` (unless `BNP`); with `B=list`, only the listed characters are. `except`
/// is `BNE=list`. Bytes B leaves alone still get the `Decoded` encoding, so B can only
/// add escaping, never remove it.
pub(crate) fn push_b_escaped(out: &mut String, value: &str, b: &BEscape, in_query: bool) {
    for (i, ch) in value.char_indices() {
        let chosen = match &b.only {
            Some(list) => list.contains(ch),
            None => !(ch.is_ascii_alphanumeric() || ch == '_'),
        } && !b.except.as_deref().is_some_and(|e| e.contains(ch));
        if chosen && ch == ' ' && !b.no_plus {
            out.push('+');
        } else if chosen {
            for &byte in &value.as_bytes()[i..i + ch.len_utf8()] {
                push_pct(out, byte);
            }
        } else {
            push_escaped(out, &value[i..i + ch.len_utf8()], Source::Decoded, in_query);
        }
    }
}

/// The `B`, `B=list`, `BNP` and `BNE=list` flags of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BEscape {
    pub only: Option<String>,
    pub except: Option<String>,
    pub no_plus: bool,
}

/// Percent-decodes a rewritten path so the next rule matches it as Apache would match
/// `r->filename` (decoded). Malformed escapes stay as they are; invalid UTF-8 becomes
/// U+FFFD (only used for matching, never sent).
pub(crate) fn decode_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_by_source() {
        for (value, source, in_query, want) in [
            ("/a\r\nX-Injected: 1\r\n", Source::Decoded, false, "/a%0D%0AX-Injected:%201%0D%0A"),
            ("/a?b#c%d", Source::Decoded, false, "/a%3Fb%23c%25d"),
            ("/a?b", Source::Decoded, true, "/a%3Fb"), // CVE-2024-38474 in either part
            ("/é", Source::Decoded, false, "/%C3%A9"),
            ("\x7f", Source::Decoded, false, "%7F"),
            ("a=%20&b=?", Source::Raw, true, "a=%20&b=?"), // already wire form
            ("a=%20&b=?", Source::Raw, false, "a=%20&b=%3F"),
            ("GET /x HTTP/1.1", Source::Raw, true, "GET%20/x%20HTTP/1.1"),
            ("/x%20y?q#f", Source::Literal { keep_hash: false }, false, "/x%20y?q%23f"),
            ("/x#f", Source::Literal { keep_hash: true }, false, "/x#f"),
            ("/a b", Source::Literal { keep_hash: false }, false, "/a%20b"),
        ] {
            let mut out = String::new();
            push_escaped(&mut out, value, source, in_query);
            assert_eq!(out, want, "value {value:?} {source:?} in_query={in_query}");
        }
    }

    #[test]
    fn b_escapes_like_apache() {
        let all = BEscape::default();
        let no_plus = BEscape { no_plus: true, ..BEscape::default() };
        let only = BEscape { only: Some("&?".into()), ..BEscape::default() };
        let except = BEscape { except: Some("/".into()), ..BEscape::default() };
        for (value, b, want) in [
            ("a b&c/d_e", &all, "a+b%26c%2Fd_e"),
            ("a b", &no_plus, "a%20b"),
            ("a&b?c d/e", &only, "a%26b%3Fc%20d/e"), // space still encoded: Decoded rules
            ("a/b c", &except, "a/b+c"),
            ("\r\n", &all, "%0D%0A"),
        ] {
            let mut out = String::new();
            push_b_escaped(&mut out, value, b, true);
            assert_eq!(out, want, "value {value:?} {b:?}");
        }
    }

    #[test]
    fn decodes_paths() {
        for (input, want) in [
            ("/a%20b", "/a b"),
            ("/a%3fb", "/a?b"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("/%C3%A9", "/é"),
            ("/%FF", "/\u{FFFD}"),
        ] {
            assert_eq!(decode_path(input), want, "input {input:?}");
        }
    }
}
