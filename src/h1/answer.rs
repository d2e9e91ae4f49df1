//! PURE. Every response sidecar makes up itself, from one type: error statuses of the
//! proxy, redirects of `R` rules, the `OPTIONS *` answer, the over-`max_connections`
//! 503 and everything the admin endpoint says. Nothing taken from the request goes into
//! an error body (Apache CVE-2019-10092 echoed the URL into its error page).

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

/// What follows the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// `status reason\n` as plain text: every error and redirect.
    Reason,
    /// No body at all (`Content-Length: 0`, no type).
    Empty,
    /// A body of the given media type.
    Text { content_type: &'static str, text: &'a str },
}

/// One made-up response. Build with `Answer::new(status)` and the setters; `write`
/// renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: Body<'a>,
    /// `Connection: close` is sent and the caller closes after writing.
    pub close: bool,
    /// Seconds for `Retry-After` (a 503 when no replica can take the request).
    pub retry_after: Option<u64>,
    /// `Location` of a redirect.
    pub location: Option<&'a str>,
    /// `Allow` of an `OPTIONS *` answer.
    pub allow: Option<&'static str>,
    /// `Cache-Control: no-store`: probes and metrics must never be cached.
    pub no_store: bool,
    /// The answer to a HEAD request: the head says the body's length, no body follows.
    pub head_only: bool,
}

impl<'a> Answer<'a> {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            body: Body::Reason,
            close: false,
            retry_after: None,
            location: None,
            allow: None,
            no_store: false,
            head_only: false,
        }
    }

    pub fn close(mut self, close: bool) -> Self {
        self.close = close;
        self
    }

    /// `Retry-After` in whole seconds, at least 1 (0 would invite an immediate retry).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn location(mut self, location: &'a str) -> Self {
        self.location = Some(location);
        self
    }

    pub fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }

    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    pub fn head_only(mut self, head_only: bool) -> Self {
        self.head_only = head_only;
        self
    }

    /// Appends the whole response to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let status = self.status;
        let reason = reason(status);
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
        let (content_type, len) = match self.body {
            Body::Reason => (Some("text/plain; charset=utf-8"), 3 + 1 + reason.len() + 1),
            Body::Empty => (None, 0),
            Body::Text { content_type, text } => (Some(content_type), text.len()),
        };
        if let Some(t) = content_type {
            let _ = write!(out, "Content-Type: {t}\r\n");
        }
        let _ = write!(out, "Content-Length: {len}\r\n");
        if let Some(secs) = self.retry_after {
            let _ = write!(out, "Retry-After: {secs}\r\n");
        }
        if let Some(location) = self.location {
            let _ = write!(out, "Location: {location}\r\n");
        }
        if let Some(allow) = self.allow {
            let _ = write!(out, "Allow: {allow}\r\n");
        }
        if self.no_store {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.head_only {
            return;
        }
        match self.body {
            Body::Reason => {
                let _ = writeln!(out, "{status} {reason}");
            }
            Body::Empty => {}
            Body::Text { text, .. } => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// The response as bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_well_framed() {
        for (answer, want) in [
            (Answer::new(404), "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n"),
            (Answer::new(503).retry_after(7).close(true), "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 7\r\nConnection: close\r\n\r\n503 Service Unavailable\n"),
            // Zero would invite an immediate retry.
            (Answer::new(503).retry_after(0), "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 1\r\n\r\n503 Service Unavailable\n"),
            (Answer::new(302).location("/new"), "HTTP/1.1 302 Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nLocation: /new\r\n\r\n302 Found\n"),
            (Answer::new(200).allow("GET, HEAD").body(Body::Empty), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAllow: GET, HEAD\r\n\r\n"),
            (Answer::new(200).body(Body::Text { content_type: "text/plain", text: "ok\n" }).no_store().close(true), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nok\n"),
            // HEAD: the length of the body that a GET would get, and no body.
            (Answer::new(200).body(Body::Text { content_type: "text/plain", text: "ok\n" }).head_only(true), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"),
        ] {
            assert_eq!(String::from_utf8(answer.to_bytes()).expect("ascii"), want, "{answer:?}");
        }
    }
}
