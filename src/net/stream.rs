//! A byte stream to a client or a backend, plain or TLS, and `Conn`: a stream with the
//! bytes read from it but not yet used (a pipelined request, the first WebSocket
//! frame after a 101). Also the one place that turns a future plus a deadline into a
//! result.

use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::buffers::spare::{self, LargeRead, LARGE_READ_BYTES};
use super::buffers::Counted;
use super::tls_stream::{ClientTlsStream, ServerTlsStream};
use crate::h1::scan::{blank_lines, HeadScanner, ScanError};
use crate::rt::Io;

/// Bytes read from a socket per read call when streaming a body; also the most a
/// `Conn` buffers beyond a head.
pub const READ_BYTES: usize = 16 * 1024;
/// Bytes read per call from one side of a tunnel, into the worker's one shared buffer:
/// a message of 16 KiB with its frame header, or a run of small ones, takes one read
/// and one write instead of two. What the other side cannot take yet is kept, so a
/// tunnel holds at most this much per direction.
pub const TUNNEL_READ_BYTES: usize = 32 * 1024;
/// Bytes a relay (a body copy, a tunnel direction) moves before it lets the other tasks
/// of its worker run. Sockets on loopback or a fast LAN can stay ready for as long as a
/// peer keeps sending, and an executor task runs until it returns `Pending`: without
/// this, one tunnel fed faster than it drains would keep its worker from everyone else.
/// 128 KiB is eight body reads or four tunnel reads; the yield costs one readiness
/// registration.
pub const FAIR_SHARE_BYTES: u64 = 128 * 1024;
/// A connection's first buffer: most request and response heads fit, and allocating it
/// per request (buffers are released between requests) stays cheap.
const FIRST_BUFFER_BYTES: usize = spare::SPARE_BYTES;

pub enum Stream {
    Plain(Io<TcpStream>),
    ServerTls(Box<ServerTlsStream>),
    ClientTls(Box<ClientTlsStream>),
}

impl Stream {
    /// The TCP socket under any TLS.
    pub fn tcp(&self) -> &Io<TcpStream> {
        match self {
            Self::Plain(s) => s,
            Self::ServerTls(s) => s.tcp(),
            Self::ClientTls(s) => s.tcp(),
        }
    }

    /// A pooled connection is usable only if the peer has neither closed it nor sent
    /// anything unasked (docs/security.md, B6). The poller's flags say so without a
    /// syscall; only a possibly stale readable flag costs a non-blocking peek.
    pub fn is_idle_and_open(&self) -> bool {
        self.tcp().is_quiet(|tcp| tcp.peek(&mut [0u8; 1]))
    }

    /// Lets the worker's other tasks run before the next read from this stream: returns
    /// `Pending` once, with a wake-up arranged, then `Ready` on the next call (`*yielded`
    /// remembers which). On a plain socket the wake-up is the socket's own readiness,
    /// which comes through the reactor, so tasks waiting for I/O (an `accept`, another
    /// client's request) are woken in the same turn. Under TLS the stream may already hold
    /// plaintext with nothing left on the socket to signal, so the task only goes to the
    /// back of the executor's queue.
    pub fn poll_yield_before_read(&self, cx: &mut Context<'_>, yielded: &mut bool) -> Poll<()> {
        if *yielded {
            *yielded = false;
            return Poll::Ready(());
        }
        *yielded = true;
        if let Self::Plain(s) = self {
            // A readiness left over from an earlier wake-up is consumed first; the second
            // call registers for the next one.
            for _ in 0..2 {
                if s.poll_readable(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// `poll_yield_before_read` as a future.
    pub async fn yield_before_read(&self) {
        let mut yielded = false;
        std::future::poll_fn(|cx| self.poll_yield_before_read(cx, &mut yielded)).await
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ClientTls($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    /// Ends the write half: flush (and TLS close_notify), then a TCP `shutdown(Write)`
    /// so the peer reads end-of-file while it may still send (half-close,
    /// docs/security.md W10). async-io's own `poll_close` only flushes.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = match self.as_mut().get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s).poll_close(cx),
            Stream::ClientTls(s) => Pin::new(s).poll_close(cx),
        };
        match flushed {
            Poll::Ready(_) => {
                // A peer that already went away makes this fail; the half is closed either way.
                let _ = self.tcp().get_ref().shutdown(std::net::Shutdown::Write);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stream and its read-ahead. `buf[start..end]` holds bytes read and not yet used;
/// the buffer is zeroed once when it grows, never per read. Between requests it holds
/// no buffer (`shrink`).
pub struct Conn {
    pub stream: Stream,
    buf: Counted,
    start: usize,
    end: usize,
    /// Held while `buf` may be `LARGE_READ_BYTES` long.
    large: Option<LargeRead>,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Self { stream, buf: Counted::default(), start: 0, end: 0, large: None }
    }

    /// Bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once more, appending to the buffered bytes, letting the buffer grow to
    /// `limit` bytes. Returns the number of new bytes; 0 means the peer closed.
    pub async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= limit {
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, "read buffer full"));
            }
            if self.buf.is_empty() && limit >= FIRST_BUFFER_BYTES {
                self.buf.replace(spare::take());
            }
            if self.end == self.buf.len() {
                let grown = if self.buf.is_empty() { FIRST_BUFFER_BYTES } else { self.buf.len() * 2 };
                self.buf.resize(grown.min(limit));
            }
        }
        let n = futures_lite::AsyncReadExt::read(&mut self.stream, &mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Completes once the stream has something for `fill` (bytes, end-of-file or an
    /// error), without a buffer meanwhile: an idle keep-alive connection borrows one
    /// only when its next request arrives. Under TLS that is when the stream holds no
    /// decrypted bytes or whole record and the socket becomes readable.
    pub async fn readable(&self) -> io::Result<()> {
        match &self.stream {
            Stream::Plain(s) => s.readable().await,
            Stream::ServerTls(s) if !s.has_pending_read() => s.tcp().readable().await,
            Stream::ClientTls(s) if !s.has_pending_read() => s.tcp().readable().await,
            _ => Ok(()),
        }
    }

    /// Makes room for a full read of a streamed body, growing the buffer once: to
    /// `LARGE_READ_BYTES` when `large` is asked for and the worker has one to spare,
    /// else to `READ_BYTES`. Only an empty buffer grows.
    pub fn reserve_read(&mut self, large: bool) {
        if self.start != self.end {
            return;
        }
        if large && self.large.is_none() {
            if let Some((read, buf)) = LargeRead::lend() {
                spare::give(self.buf.replace(buf));
                self.large = Some(read);
                self.start = 0;
                self.end = 0;
            }
        }
        let size = if self.large.is_some() { LARGE_READ_BYTES } else { READ_BYTES };
        if self.buf.len() < size {
            self.buf.resize(size);
        }
    }

    /// Releases the buffer's memory once it is empty (an idle keep-alive connection or
    /// a pooled one should not hold 16 KiB).
    pub fn shrink(&mut self) {
        if self.start == self.end {
            self.release();
        }
    }

    /// Gives the buffer back to the worker's pools, and the large read with it.
    fn release(&mut self) {
        let buf = self.buf.take();
        match self.large.take() {
            Some(read) => read.give_back(buf),
            None => spare::give(buf),
        }
        self.start = 0;
        self.end = 0;
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes `bytes` and flushes them out of any TLS buffer.
    pub async fn write_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The stream and the read-ahead, for a tunnel.
    pub fn into_parts(mut self) -> (Stream, Vec<u8>) {
        let rest = self.take_buffered();
        (self.stream, rest)
    }

    /// Takes the read-ahead out, leaving the buffer empty and released.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buffered().to_vec();
        self.release();
        rest
    }
}

impl Conn {
    /// Completes when the peer has closed the connection (or broken it), while its
    /// request waits for an answer. Bytes that arrive instead are not a close: they are
    /// the next pipelined request, so the watch stops there and they stay where they
    /// are. A plain socket is only peeked at (nothing is consumed); under TLS a
    /// close_notify cannot be told from data without decrypting, so records are read
    /// into this connection's buffer (at most `read_ahead` bytes) for the next request.
    pub async fn closed(&mut self, read_ahead: usize) -> io::Error {
        let gone = || io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection");
        if let Stream::Plain(s) = &self.stream {
            loop {
                if let Err(e) = s.readable().await {
                    return e;
                }
                let mut byte = [0u8; 1];
                match s.peek(&mut byte) {
                    Ok(0) => return gone(),
                    Ok(_) => return std::future::pending().await,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return e,
                }
            }
        }
        loop {
            match self.fill(read_ahead).await {
                Ok(0) => return gone(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => return std::future::pending().await,
                Err(e) => return e,
            }
        }
    }
}

/// Why `Conn::read_head` found no head.
#[derive(Debug)]
pub enum HeadReadError {
    /// The peer closed before sending a byte of it.
    Closed,
    /// The peer closed in the middle of it.
    ClosedInside,
    /// Bad line endings, or more than the limit without an end.
    Scan(ScanError),
    Io(io::Error),
}

impl Conn {
    /// Reads until the buffered bytes begin with one complete head of at most `max`
    /// bytes and returns its length; the head stays buffered for the caller to parse
    /// and consume. With `skip_blank_lines`, CRLFs before a request are dropped (RFC
    /// 9112 §2.2). Cancel-safe: bytes read stay buffered.
    pub async fn read_head(&mut self, max: usize, skip_blank_lines: bool) -> Result<usize, HeadReadError> {
        let mut scanner = HeadScanner::default();
        loop {
            if skip_blank_lines {
                let blank = blank_lines(self.buffered());
                if blank > 0 {
                    self.consume(blank);
                    scanner = HeadScanner::default();
                }
            }
            if !self.buffered().is_empty() {
                if let Some(len) = scanner.scan(self.buffered(), max).map_err(HeadReadError::Scan)? {
                    return Ok(len);
                }
            }
            match self.fill(max).await {
                Ok(0) if self.buffered().is_empty() => return Err(HeadReadError::Closed),
                Ok(0) => return Err(HeadReadError::ClosedInside),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    return Err(HeadReadError::Scan(ScanError::TooLarge))
                }
                Err(e) => return Err(HeadReadError::Io(e)),
            }
        }
    }
}

/// The error a deadline produces.
pub fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Runs `fut` for at most `limit`; `None` when the time ran out.
pub async fn deadline<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        super::clock::sleep(limit).await;
        None
    })
    .await
}

/// Runs `fut` for at most `limit`.
pub async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        super::clock::sleep(limit).await;
        Err(timed_out())
    })
    .await
}
