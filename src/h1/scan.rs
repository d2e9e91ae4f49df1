//! PURE. Finding where an HTTP/1 head ends, incrementally, while refusing bare CR and
//! bare LF before httparse ever sees the bytes (docs/security.md, S13 and S14: httparse
//! accepts a bare LF as a line end, a proxy must not).
//!
//! The scanner remembers how far it has looked, so a head that arrives one byte per
//! read costs O(head) in total, not O(head²).

/// Why a head's line endings are unacceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    BareLf,
    BareCr,
    TooLarge,
}

/// Incremental end-of-head search over a growing buffer.
#[derive(Debug, Default)]
pub struct HeadScanner {
    scanned: usize,
}

impl HeadScanner {
    /// Looks at `buf` (the same growing buffer on every call) and returns the length of
    /// the head including its final CRLFCRLF once it is complete.
    pub fn scan(&mut self, buf: &[u8], max_bytes: usize) -> Result<Option<usize>, ScanError> {
        let mut i = self.scanned;
        while i < buf.len() {
            match buf[i] {
                b'\n' => {
                    if i == 0 || buf[i - 1] != b'\r' {
                        return Err(ScanError::BareLf);
                    }
                    if i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
                        self.scanned = 0;
                        return Ok(Some(i + 1));
                    }
                }
                b'\r' => match buf.get(i + 1) {
                    Some(b'\n') => {}
                    Some(_) => return Err(ScanError::BareCr),
                    // A CR at the very end: decide when the next byte arrives.
                    None => break,
                },
                _ => {}
            }
            i += 1;
        }
        self.scanned = i;
        if buf.len() >= max_bytes {
            return Err(ScanError::TooLarge);
        }
        Ok(None)
    }
}

/// How many bytes at the start of `buf` are empty lines (whole CRLF pairs), which a
/// server ignores before a request line (RFC 9112 §2.2). A lone LF is not counted: the
/// scanner refuses it.
pub fn blank_lines(buf: &[u8]) -> usize {
    buf.chunks_exact(2).take_while(|pair| *pair == b"\r\n").count() * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_whole_crlf_pairs() {
        for (buf, want) in
            [(&b""[..], 0), (b"GET", 0), (b"\r\nGET", 2), (b"\r\n\r\n\r", 4), (b"\n\r\n", 0), (b"\r\r\n", 0)]
        {
            assert_eq!(blank_lines(buf), want, "{buf:?}");
        }
    }

    #[test]
    fn finds_head_end_at_any_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for split in 0..head.len() {
            let mut s = HeadScanner::default();
            let first = s.scan(&head[..split], 1024);
            let got = match first {
                Ok(Some(n)) => n,
                Ok(None) => s.scan(head, 1024).expect("valid").expect("complete"),
                Err(e) => panic!("split {split}: {e:?}"),
            };
            assert_eq!(got, head.len() - 4, "split {split}");
        }
    }

    #[test]
    fn refuses_bad_line_endings() {
        for (input, want) in [
            (&b"GET / HTTP/1.1\nHost: a\n\n"[..], Err(ScanError::BareLf)),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Err(ScanError::BareCr)),
            (b"GET / HTTP/1.0\r\r", Err(ScanError::BareCr)),
            (b"GET / HTTP/1.1\r\nX: a\r\n\rX", Err(ScanError::BareCr)),
            (b"GET / HTTP/1.1\r\nX: a\r\n\r\n", Ok(Some(24))),
            (b"GET / HTTP/1.1\r\nX: a\r", Ok(None)),
            (b"GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaa", Err(ScanError::TooLarge)),
        ] {
            assert_eq!(HeadScanner::default().scan(input, 32), want, "input {:?}", String::from_utf8_lossy(input));
        }
    }
}
