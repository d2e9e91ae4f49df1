//! PURE. The answers sidecar writes itself (the error statuses): a status line, a short
//! constant plain-text body and nothing taken from the request (Apache CVE-2019-10092
//! echoed the URL into its error page).

use std::io::Write;

/// The reason phrase sidecar uses for its own statuses.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A complete response: `status`, optional extra header lines (each `Name: value`,
/// sidecar-made), a body of `status reason\n`, and `Connection: close` when `close`.
pub fn canned(status: u16, extra_headers: &[(&str, &str)], close: bool) -> Vec<u8> {
    let reason = reason(status);
    let body_len = 3 + 1 + reason.len() + 1;
    let mut out = Vec::with_capacity(160);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\n"
    );
    for (name, value) in extra_headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    let _ = write!(out, "\r\n{status} {reason}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_are_well_framed() {
        for (status, extra, close, want) in [
            (404, vec![], false, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n"),
            (503, vec![("Retry-After", "7")], true, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 7\r\nConnection: close\r\n\r\n503 Service Unavailable\n"),
        ] {
            assert_eq!(String::from_utf8(canned(status, &extra, close)).expect("ascii"), want);
        }
    }
}
