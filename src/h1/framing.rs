//! PURE. Where a message body ends (RFC 9112 §6.3). Every smuggling bug is a proxy and
//! a backend disagreeing on this, so the rules are strict: reject, never repair
//! (docs/security.md, "Principles"). The forwarded message always carries framing that
//! sidecar wrote itself, never the peer's raw header. Ids in comments refer to
//! docs/security.md.

use super::head::{tokens, trim, Headers, RequestHead, ResponseHead, Version};

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the backend closes.
    UntilClose,
}

/// A framing violation; the text goes into the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

/// The body framing of a request (S1–S8). A request without Content-Length or
/// Transfer-Encoding has no body, whatever its version (S8: never read until close).
pub fn request_framing(head: &RequestHead) -> Result<Framing, FramingError> {
    let chunked = transfer_coding(&head.headers)?;
    let length = content_length(&head.headers)?;
    match (chunked, length) {
        (Some(_), Some(_)) => Err(FramingError("both Content-Length and Transfer-Encoding")),
        (Some(_), None) if head.version == Version::Http10 => {
            Err(FramingError("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (Some(()), None) => Ok(Framing::Chunked),
        (None, Some(0)) | (None, None) => Ok(Framing::None),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// What the backend's framing means for reuse of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFraming {
    pub framing: Framing,
    /// Both CL and TE were present: framed by TE (RFC 9112 §6.3), but the connection is
    /// not trusted afterwards (docs/security.md, B3).
    pub reusable: bool,
}

/// The body framing of a response to a request with `method` (B3, B4, B8).
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<ResponseFraming, FramingError> {
    let bodiless = method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304;
    let chunked = transfer_coding(&head.headers)?;
    let length = content_length(&head.headers)?;
    let reusable = !(chunked.is_some() && length.is_some());
    let framing = if bodiless {
        Framing::None
    } else if chunked.is_some() {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(ResponseFraming { framing, reusable })
}

/// `Some(())` when Transfer-Encoding says exactly `chunked` (empty list elements
/// ignored, RFC 9110 §5.6.1); any other coding, parameter or a second `chunked` is an
/// error (S3, S4, S7; B4).
fn transfer_coding(headers: &Headers) -> Result<Option<()>, FramingError> {
    let mut seen = 0;
    for value in headers.all("Transfer-Encoding") {
        for coding in tokens(value) {
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(FramingError("Transfer-Encoding other than a single chunked"));
            }
            seen += 1;
        }
    }
    match seen {
        0 if headers.get("Transfer-Encoding").is_some() => Err(FramingError("empty Transfer-Encoding")),
        0 => Ok(None),
        1 => Ok(Some(())),
        _ => Err(FramingError("chunked applied more than once")),
    }
}

/// One Content-Length of `1*DIGIT` that fits in u64. A second line, even an identical
/// one, or a list is refused (S5, S6): the simplest rule that cannot be confused.
fn content_length(headers: &Headers) -> Result<Option<u64>, FramingError> {
    let mut values = headers.all("Content-Length");
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(FramingError("more than one Content-Length"));
    }
    parse_length(trim(first)).map(Some).ok_or(FramingError("invalid Content-Length"))
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{parse_request_head, parse_response_head, MAX_HEADERS};

    fn framing_of(extra: &str) -> Result<Framing, FramingError> {
        let version = if extra.starts_with("1.0") { "HTTP/1.0" } else { "HTTP/1.1" };
        let extra = extra.trim_start_matches("1.0");
        let head = format!("POST / {version}\r\nHost: a\r\n{extra}\r\n");
        request_framing(&parse_request_head(head.as_bytes(), MAX_HEADERS).expect("valid head"))
    }

    #[test]
    fn request_framing_table() {
        use Framing::*;
        for (headers, want) in [
            ("", Ok(None)),
            ("Content-Length: 5\r\n", Ok(Length(5))),
            ("Content-Length: 005\r\n", Ok(Length(5))), // leading zeros are legal
            ("Content-Length: 0\r\n", Ok(None)),
            ("Transfer-Encoding: chunked\r\n", Ok(Chunked)),
            ("TRANSFER-ENCODING: CHUNKED\r\n", Ok(Chunked)),
            ("Transfer-Encoding:\tchunked\r\n", Ok(Chunked)),
            ("Transfer-Encoding: ,chunked\r\n", Ok(Chunked)),
            ("Content-Length: 13\r\nTransfer-Encoding: chunked\r\n", Err(())), // S1
            ("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", Err(())),  // S2
            ("Transfer-Encoding: xchunked\r\n", Err(())),                      // S3
            ("Transfer-Encoding: chunk\r\n", Err(())),
            ("Transfer-Encoding: \"chunked\"\r\n", Err(())),
            ("Transfer-Encoding: cow\r\nTransfer-Encoding: chunked\r\n", Err(())),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", Err(())), // S4
            ("Transfer-Encoding: chunked, chunked\r\n", Err(())),
            ("Transfer-Encoding: chunked, gzip\r\n", Err(())), // S7
            ("Transfer-Encoding: gzip, chunked\r\n", Err(())),
            ("Transfer-Encoding: identity\r\n", Err(())),
            ("Transfer-Encoding: chunked;foo=bar\r\n", Err(())),
            ("Transfer-Encoding: \r\n", Err(())),
            ("Content-Length: 0\r\nContent-Length: 31\r\n", Err(())), // S5
            ("Content-Length: 5\r\nContent-Length: 5\r\n", Err(())),
            ("Content-Length: 5, 6\r\n", Err(())),
            ("Content-Length: +5\r\n", Err(())), // S6
            ("Content-Length: -1\r\n", Err(())),
            ("Content-Length: 0x10\r\n", Err(())),
            ("Content-Length: \r\n", Err(())),
            ("Content-Length: 5 5\r\n", Err(())),
            ("Content-Length: 1_0\r\n", Err(())),
            ("Content-Length: 18446744073709551616\r\n", Err(())),
            ("Content-Length: 99999999999999999999999\r\n", Err(())),
            ("1.0Transfer-Encoding: chunked\r\n", Err(())), // S8
            ("1.0Content-Length: 3\r\n", Ok(Length(3))),
        ] {
            assert_eq!(framing_of(headers).map_err(|_| ()), want, "headers {headers:?}");
        }
    }

    #[test]
    fn response_framing_table() {
        use Framing::*;
        for (method, head, want, reusable) in [
            ("GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", Ok(Length(2)), true),
            ("GET", "HTTP/1.1 200 OK\r\n\r\n", Ok(UntilClose), true),
            ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Chunked), true),
            ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n", Ok(Chunked), false), // B3
            ("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Ok(None), true), // B8
            ("GET", "HTTP/1.1 204 No Content\r\n\r\n", Ok(None), true),
            ("GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Ok(None), true),
            ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Err(()), true), // B4
            ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(()), true),
            ("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Err(()), true),
            ("GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Err(()), true),
        ] {
            let head = parse_response_head(head.as_bytes()).expect("valid head");
            let got = response_framing(method, &head);
            assert_eq!(got.map(|f| f.framing).map_err(|_| ()), want, "{method} {head:?}");
            if let Ok(f) = got {
                assert_eq!(f.reusable, reusable, "{method} {head:?}");
            }
        }
    }
}
