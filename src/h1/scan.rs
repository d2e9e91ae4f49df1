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
            // Most of a head is text: step over it a word at a time, up to the next
            // CR, LF or other control byte.
            while let Some(Ok(word)) = buf.get(i..i + 8).map(<[u8; 8]>::try_from) {
                if has_byte_below_14(u64::from_ne_bytes(word)) {
                    break;
                }
                i += 8;
            }
            let Some(&byte) = buf.get(i) else { break };
            match byte {
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

/// Whether any byte of `word` is below 14 (CR is 13, LF 10). Exact for any bytes,
/// those of 0x80 and above included ("hasless", Sean Anderson's bit hacks).
fn has_byte_below_14(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    word.wrapping_sub(ONES * 14) & !word & (ONES * 0x80) != 0
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
    fn finds_a_control_byte_anywhere_in_a_word() {
        for at in 0..8 {
            for control in [0u8, b'\t', b'\n', b'\r'] {
                let mut word = [b'a'; 8];
                word[at] = control;
                assert!(has_byte_below_14(u64::from_ne_bytes(word)), "{control} at {at}");
            }
            let mut word = [b'~'; 8];
            word[at] = [14u8, 0x80, 0x8d, 0xff][at % 4];
            assert!(!has_byte_below_14(u64::from_ne_bytes(word)), "{word:?}");
        }
    }

    #[test]
    fn long_lines_are_scanned_alike_at_every_split_and_every_offset() {
        let head = b"GET /a-rather-long-path/of/several/segments?q=1 HTTP/1.1\r\nUser-Agent: a long \xc3\xa9 value\r\nX: y\r\n\r\n";
        for split in 0..head.len() {
            let mut s = HeadScanner::default();
            let got = match s.scan(&head[..split], 1024) {
                Ok(Some(n)) => n,
                Ok(None) => s.scan(head, 1024).expect("valid").expect("complete"),
                Err(e) => panic!("split {split}: {e:?}"),
            };
            assert_eq!(got, head.len(), "split {split}");
        }
        // A bare CR or LF at any place of a long line is found.
        for at in 20..40 {
            for (bad, want) in [(b'\n', ScanError::BareLf), (b'\r', ScanError::BareCr)] {
                let mut input = head.to_vec();
                input[at] = bad;
                assert_eq!(HeadScanner::default().scan(&input, 1024), Err(want), "{bad} at {at}");
            }
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
