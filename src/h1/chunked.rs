//! PURE. A streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1) that
//! refuses every malformed size line, extension and terminator (docs/security.md,
//! S9–S12 and L8), and the canonical re-encoding sidecar forwards instead of the peer's
//! raw chunk lines.
//! Extensions and trailers are read, bounded, and dropped.

use std::ops::Range;

/// 16 hex digits fill a u64; more is an overflow attempt (hyper CVE-2021-32714).
const MAX_SIZE_DIGITS: u8 = 16;
/// Bytes of chunk extension allowed on one size line (Go CVE-2023-39326 amplification).
const MAX_EXT_BYTES_PER_LINE: u32 = 4 * 1024;
/// Extension bytes allowed over the whole body.
const MAX_EXT_BYTES_TOTAL: u32 = 64 * 1024;
/// Trailer section bytes allowed (trailers are dropped, but still read).
const MAX_TRAILER_BYTES: u32 = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size: only allowed before `;`.
    SizeWs,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// The decoder's output for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used up (framing and data).
    pub consumed: usize,
    /// Chunk data within the input, possibly empty.
    pub data: Range<usize>,
}

#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    ext_line: u32,
    ext_total: u32,
    trailer: u32,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self { state: State::Size { digits: 0 }, size: 0, ext_line: 0, ext_total: 0, trailer: 0 }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes from `input` up to the next run of chunk data (which it
    /// returns) or the end of the input or body.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Decoded { consumed: i + n, data: i..i + n });
            }
            self.step(input[i])?;
            i += 1;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Decoded { consumed: i, data: i..i })
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match (self.state, b) {
            (State::Size { digits }, b) if b.is_ascii_hexdigit() => {
                if digits == MAX_SIZE_DIGITS {
                    return Err(ChunkError("chunk size too large"));
                }
                let d = (b as char).to_digit(16).unwrap_or(0);
                self.size = (self.size << 4) | u64::from(d);
                State::Size { digits: digits + 1 }
            }
            (State::Size { digits: 0 }, _) => return Err(ChunkError("invalid chunk size")),
            (State::Size { .. } | State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::Size { .. } | State::SizeWs, b';') => {
                self.ext_line = 0;
                State::Ext
            }
            (State::Size { .. }, b'\r') => State::SizeLf,
            (State::Size { .. } | State::SizeWs, _) => return Err(ChunkError("invalid chunk size line")),
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                self.ext_line += 1;
                self.ext_total += 1;
                if self.ext_line > MAX_EXT_BYTES_PER_LINE || self.ext_total > MAX_EXT_BYTES_TOTAL {
                    return Err(ChunkError("chunk extensions too long"));
                }
                State::Ext
            }
            (State::Ext, _) => return Err(ChunkError("control byte in chunk extension")),
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::SizeLf, _) => return Err(ChunkError("bare CR in chunk size line")),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            (State::DataCr | State::DataLf, _) => return Err(ChunkError("chunk data not followed by CRLF")),
            (State::TrailerStart, b'\r') => State::TrailerLf { empty: true },
            (State::TrailerLine, b'\r') => State::TrailerLf { empty: false },
            (State::TrailerStart | State::TrailerLine, b'\n') => return Err(ChunkError("bare LF in trailer")),
            (State::TrailerStart | State::TrailerLine, _) => {
                self.trailer += 1;
                if self.trailer > MAX_TRAILER_BYTES {
                    return Err(ChunkError("trailer section too large"));
                }
                State::TrailerLine
            }
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => State::TrailerStart,
            (State::TrailerLf { .. }, _) => return Err(ChunkError("bare CR in trailer")),
            (State::Data | State::Done, _) => return Err(ChunkError("bytes after the last chunk")),
        };
        Ok(())
    }
}

/// Checks the part of a chunked body already received, so a malformed body that is in
/// hand is refused before anything reaches a backend (a rejected request sends nothing
/// anywhere). What arrives later is checked while it streams.
/// Returns whether the bytes end inside a size line (more must be read to judge it).
pub fn check_prefix(bytes: &[u8]) -> Result<bool, ChunkError> {
    let mut d = ChunkedDecoder::default();
    let mut rest = bytes;
    while !rest.is_empty() && !d.is_done() {
        let out = d.decode(rest)?;
        rest = &rest[out.consumed..];
    }
    Ok(matches!(d.state, State::Size { .. } | State::SizeWs | State::Ext | State::SizeLf))
}

/// The size line sidecar writes before `len` bytes of chunk data.
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:X}\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body or the error.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            loop {
                let out = d.decode(&pending)?;
                body.extend_from_slice(&pending[out.data.clone()]);
                pending.drain(..out.consumed);
                if out.consumed == 0 || d.is_done() || pending.is_empty() {
                    break;
                }
            }
            if d.is_done() {
                break;
            }
        }
        Ok((body, d.is_done()))
    }

    #[test]
    fn decodes_at_any_split() {
        let input = b"5\r\nhello\r\n6;a=b\r\n world\r\nA \t;x\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n";
        for step in 1..input.len() {
            let (body, done) = decode_all(input, step).expect("valid");
            assert_eq!(body, b"hello world0123456789", "step {step}");
            assert!(done, "step {step}");
        }
    }

    #[test]
    fn round_trips_with_encoder() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        for part in body.chunks(777) {
            chunk_header(part.len(), &mut wire);
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(LAST_CHUNK);
        for step in [1, 3, 100, 4096, wire.len()] {
            assert_eq!(decode_all(&wire, step).expect("valid").0, body, "step {step}");
        }
    }

    #[test]
    fn refuses_malformed_chunks() {
        let long_ext = format!("1;{}\r\nA\r\n0\r\n\r\n", "x".repeat(5000));
        let cases: Vec<&[u8]> = vec![
            b"ffffffffffffffffff\r\n", // S9
            b"10000000000000000\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n", // S10
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-0\r\n\r\n",
            b" 0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5_0\r\n",
            b"\r\n",
            b"Z\r\nZZ\r\n",
            b"2\r\r;a\r\n02\r\n41\r\n0\r\n\r\n", // S11
            b"5;a\nhello\r\n0\r\n\r\n",
            long_ext.as_bytes(),
            b"4\r\nSEE-THIS\r\n0\r\n\r\n", // S12
            b"a\r\n0123456789\n0\r\n\r\n",
            b"1\r\nAXX0\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
        ];
        for input in cases {
            assert!(check_prefix(input).is_err(), "prefix check {:?}", String::from_utf8_lossy(input));
            assert!(decode_all(input, input.len()).is_err(), "input {:?}", String::from_utf8_lossy(input));
            assert!(decode_all(input, 1).is_err(), "bytewise {:?}", String::from_utf8_lossy(input));
        }
    }
}
