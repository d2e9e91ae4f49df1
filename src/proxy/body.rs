//! Streaming a message body from one side to the other with bounded memory:
//! decode the incoming framing, write sidecar's own framing out. Never buffers a body
//! whole; backpressure comes from awaiting each write.

use std::io;
use std::time::Duration;

use futures_lite::AsyncWriteExt;

use crate::h1::chunked::{chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::h1::framing::Framing;
use crate::net::stream::{with_timeout, Conn, Stream, READ_BYTES};

/// How sidecar frames the body it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As many bytes as the incoming framing says (Content-Length or until close).
    Raw,
    Chunked,
}

#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed (timeout included).
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
    /// The source closed before the body ended.
    Truncated,
    /// The source's chunked coding is malformed.
    Chunk(&'static str),
    /// More body than `max_bytes`.
    TooLarge,
}

/// Copies one body of at most `max_bytes`. `prefix` (a head written just before) goes
/// out with the first body bytes in one write. Returns the body bytes copied.
pub async fn copy_body(
    from: &mut Conn,
    to: &mut Stream,
    framing: Framing,
    encoding: Encoding,
    idle: Duration,
    prefix: Vec<u8>,
    max_bytes: Option<u64>,
) -> Result<u64, CopyError> {
    let mut out = prefix;
    let mut copied = 0u64;
    let mut decoder = ChunkedDecoder::default();
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let finished = |decoder: &ChunkedDecoder, remaining: u64| match framing {
        Framing::None => true,
        Framing::Length(_) => remaining == 0,
        Framing::Chunked => decoder.is_done(),
        Framing::UntilClose => false,
    };
    while !finished(&decoder, remaining) {
        if from.buffered().is_empty() {
            from.reserve_read();
            let n = with_timeout(idle, from.fill(READ_BYTES)).await.map_err(CopyError::Read)?;
            if n == 0 {
                if framing == Framing::UntilClose {
                    break;
                }
                return Err(CopyError::Truncated);
            }
        }
        let input = from.buffered();
        let (data, consumed) = match framing {
            Framing::Chunked => {
                let d = decoder.decode(input).map_err(|e| CopyError::Chunk(e.0))?;
                (d.data, d.consumed)
            }
            _ => {
                let n = input.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                remaining -= n as u64;
                (0..n, n)
            }
        };
        if !data.is_empty() {
            let bytes = &input[data];
            if encoding == Encoding::Chunked {
                chunk_header(bytes.len(), &mut out);
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(bytes);
            }
            copied += bytes.len() as u64;
            if max_bytes.is_some_and(|max| copied > max) {
                return Err(CopyError::TooLarge);
            }
        }
        from.consume(consumed);
        if !out.is_empty() && (out.len() >= READ_BYTES || from.buffered().is_empty()) {
            with_timeout(idle, to.write_all(&out)).await.map_err(CopyError::Write)?;
            out.clear();
        }
    }
    if encoding == Encoding::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    if !out.is_empty() {
        with_timeout(idle, to.write_all(&out)).await.map_err(CopyError::Write)?;
    }
    with_timeout(idle, to.flush()).await.map_err(CopyError::Write)?;
    Ok(copied)
}
