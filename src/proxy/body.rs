//! Streaming a message body from one side to the other with bounded memory:
//! decode the incoming framing, write sidecar's own framing out. Never buffers a body
//! whole; backpressure comes from awaiting each write.
//!
//! Deadlines. Reads follow a `ReadPace`: a backend's body may pause up to
//! `proxy_timeout` between reads; a client's body is held to `body_timeout` and
//! `body_min_rate` (Apache's `RequestReadTimeout body=…,MinRate=…`, plus nginx's
//! per-read `client_body_timeout`). Writes have a progress deadline: it moves only when
//! the peer has taken `WRITE_PROGRESS_BYTES` since it was last set, so a peer that never
//! reads is given up on one `proxy_timeout` after it stopped taking bytes, however its
//! socket buffers trickle in between.

use std::io;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;

use crate::h1::chunked::{chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::h1::framing::Framing;
use crate::net::buffers::spare::LARGE_READ_BYTES;
use crate::net::clock;
use crate::net::stream::{timed_out, with_timeout, Conn, Stream, FAIR_SHARE_BYTES, READ_BYTES};

/// How much a peer must take before a write deadline moves: four reads' worth. A
/// receiver that does not read still frees a few KiB now and then (the kernel
/// compacts its queue); that is not progress.
const WRITE_PROGRESS_BYTES: usize = 4 * READ_BYTES;

/// How sidecar frames the body it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As many bytes as the incoming framing says (Content-Length or until close).
    Raw,
    Chunked,
}

/// How long reading the body may wait.
#[derive(Clone, Copy, Debug)]
pub enum ReadPace {
    /// Each read may wait this long.
    Idle(Duration),
    /// No read waits longer than `timeout`, and all reads together wait at most
    /// `timeout` plus one second per `min_rate` bytes received.
    MinRate { timeout: Duration, min_rate: u64 },
}

impl ReadPace {
    /// How long the next read may wait, after `waited` in reads that brought `received`
    /// bytes.
    pub fn next_wait(self, waited: Duration, received: u64) -> Duration {
        match self {
            Self::Idle(d) => d,
            Self::MinRate { timeout, min_rate } => {
                let earned =
                    Duration::try_from_secs_f64(received as f64 / min_rate.max(1) as f64).unwrap_or(Duration::MAX);
                timeout.min(timeout.saturating_add(earned).saturating_sub(waited))
            }
        }
    }
}

#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed (timeout included).
    Read(io::Error),
    /// Writing the destination failed (timeout included).
    Write(io::Error),
    /// The source closed before the body ended.
    Truncated,
    /// The source's chunked coding is malformed.
    Chunk(&'static str),
    /// More body than `max_bytes`.
    TooLarge,
}

/// A write deadline that only the peer's progress moves.
struct WriteDeadline {
    at: Instant,
    /// Bytes taken since `at` was last set.
    taken: usize,
    idle: Duration,
}

impl WriteDeadline {
    fn new(idle: Duration) -> Self {
        Self { at: clock::now() + idle, taken: 0, idle }
    }

    /// Writes all of `buf`; each write waits at most until the deadline.
    async fn write_all(&mut self, to: &mut Stream, buf: &[u8]) -> io::Result<()> {
        self.write_all_after(to, &[], buf).await
    }

    /// Writes all of `head` then all of `body`, both in one write as long as `head`
    /// lasts, so a head and the body bytes read with it leave in one system call
    /// without being copied together first.
    async fn write_all_after(&mut self, to: &mut Stream, head: &[u8], body: &[u8]) -> io::Result<()> {
        let (mut h, mut b) = (0, 0);
        while h < head.len() || b < body.len() {
            let left = self.at.saturating_duration_since(clock::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let n = if h < head.len() {
                let bufs = [io::IoSlice::new(&head[h..]), io::IoSlice::new(&body[b..])];
                with_timeout(left, to.write_vectored(&bufs)).await?
            } else {
                with_timeout(left, to.write(&body[b..])).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let of_head = n.min(head.len() - h);
            h += of_head;
            b += n - of_head;
            self.taken += n;
            if self.taken >= WRITE_PROGRESS_BYTES {
                self.at = clock::now() + self.idle;
                self.taken = 0;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, to: &mut Stream) -> io::Result<()> {
        let left = self.at.saturating_duration_since(clock::now());
        with_timeout(left.max(Duration::from_millis(1)), to.flush()).await
    }
}

/// Copies one body of at most `max_bytes`. What `out` holds (a head written just
/// before) goes out with the first body bytes in one write; `out` is the copy's write
/// buffer, passed in so that a connection's requests reuse one, and holds nothing of
/// use afterwards. Reads wait as `read` says; writes give up `write_idle` after the
/// peer stopped taking bytes. Returns the body bytes copied.
#[allow(clippy::too_many_arguments)]
pub async fn copy_body(
    from: &mut Conn,
    to: &mut Stream,
    framing: Framing,
    encoding: Encoding,
    read: ReadPace,
    write_idle: Duration,
    out: &mut Vec<u8>,
    max_bytes: Option<u64>,
) -> Result<u64, CopyError> {
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
    let mut writes = WriteDeadline::new(write_idle);
    // Bytes that go out as they came in are written from the read buffer itself; only
    // a body whose framing changes on the way (chunks decoded or made) is assembled in
    // `out`, where several small chunks also gather into one write.
    let direct = encoding == Encoding::Raw && framing != Framing::Chunked;
    // What the pace is judged on: time spent waiting for the source, bytes it sent.
    let (mut waited, mut received) = (Duration::ZERO, from.buffered().len() as u64);
    let mut since_yield = 0u64;
    while !finished(&decoder, remaining) {
        if from.buffered().is_empty() {
            if since_yield >= FAIR_SHARE_BYTES {
                from.stream.yield_before_read().await;
                since_yield = 0;
            }
            // Large reads only where the bytes go out as they came: an assembled body
            // would gather them in `out`, which is kept for the next request only while
            // it stays small.
            from.reserve_read(direct);
            let started = clock::now();
            let n = with_timeout(read.next_wait(waited, received), from.fill(LARGE_READ_BYTES))
                .await
                .map_err(CopyError::Read)?;
            waited += clock::since(started);
            received += n as u64;
            since_yield += n as u64;
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
            copied += bytes.len() as u64;
            if max_bytes.is_some_and(|max| copied > max) {
                return Err(CopyError::TooLarge);
            }
            if direct {
                // Straight from the read buffer, after whatever head waits in `out`.
                writes.write_all_after(to, out, bytes).await.map_err(CopyError::Write)?;
                out.clear();
            } else if encoding == Encoding::Chunked {
                chunk_header(bytes.len(), out);
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(bytes);
            }
        }
        from.consume(consumed);
        if !out.is_empty() && (out.len() >= READ_BYTES || from.buffered().is_empty()) {
            writes.write_all(to, out).await.map_err(CopyError::Write)?;
            out.clear();
        }
    }
    if encoding == Encoding::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    if !out.is_empty() {
        writes.write_all(to, out).await.map_err(CopyError::Write)?;
    }
    writes.flush(to).await.map_err(CopyError::Write)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::Read;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use crate::net::test_sockets::{fill, pair};

    #[test]
    fn a_body_copy_yields_after_a_fair_share_when_the_source_stays_ready() {
        let (from, mut from_far) = pair();
        let (to, mut to_far) = pair();
        let len = 512 * 1024;
        fill(&mut from_far, &from, 1, len);
        let mut from = Conn::new(Stream::Plain(from));
        let mut to = Stream::Plain(to);
        let idle = Duration::from_secs(5);
        let mut out = Vec::new();
        let mut copy = pin!(copy_body(
            &mut from,
            &mut to,
            Framing::Length(len as u64),
            Encoding::Raw,
            ReadPace::Idle(idle),
            idle,
            &mut out,
            None
        ));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(copy.as_mut().poll(&mut cx).is_pending(), "512 KiB ready at once must not go in one poll");
        let mut first = vec![0u8; len];
        to_far.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut relayed = 0;
        while let Ok(n) = to_far.read(&mut first[relayed..]) {
            if n == 0 {
                break;
            }
            relayed += n;
        }
        assert!(relayed as u64 <= FAIR_SHARE_BYTES + LARGE_READ_BYTES as u64, "one poll relayed {relayed} bytes");
        let mut done = None;
        for _ in 0..200 {
            if let Poll::Ready(r) = copy.as_mut().poll(&mut cx) {
                done = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(done.map(|r| r.ok()), Some(Some(len as u64)), "the copy completes on later polls");
    }

    #[test]
    fn a_body_read_waits_no_longer_than_its_pace_allows() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let rate = ReadPace::MinRate { timeout: s(20), min_rate: 500 };
        for (pace, waited, received, want) in [
            (ReadPace::Idle(s(60)), s(500), 0, s(60)), // a backend's body: per read only
            (rate, s(0), 0, s(20)),                    // the grace period
            (rate, s(15), 0, s(5)),                    // what is left of it
            (rate, s(19), 1_000, s(3)),                // 1,000 bytes earned 2 s
            (rate, s(30), 1_000_000, s(20)),           // much earned, still 20 s per read
            (rate, s(25), 2, ms(0)),                   // a byte now and then: cut off
            (ReadPace::MinRate { timeout: s(1), min_rate: u64::MAX }, s(0), u64::MAX, s(1)),
        ] {
            assert_eq!(pace.next_wait(waited, received), want, "{pace:?} waited {waited:?} received {received}");
        }
    }
}
