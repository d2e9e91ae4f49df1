//! A TLS connection over rustls's unbuffered API, with the `futures-io` traits.
//!
//! rustls's buffered connection keeps a 4 KiB receive buffer for as long as the
//! connection lives, two per TLS tunnel. Here sidecar owns the record buffers: records
//! are read into, and encrypted into, one scratch buffer per worker, and a connection
//! keeps only what a call could not finish: the tail of a record the last read cut, the
//! rest of a record the reader had no room for, the encrypted bytes the socket would
//! not take yet. An idle TLS connection holds none of them.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::TcpStream;
use std::ops::DerefMut;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus, WriteTraffic,
};

use super::buffers::{count_pooled, with_worker_buffer};
use crate::rt::Io;

/// The largest TLS record on the wire: 16 KiB of payload, TLS 1.2's 2 KiB allowance
/// for expansion, the 5-byte header.
const MAX_RECORD_BYTES: usize = 16 * 1024 + 2048 + 5;
/// The worker's read scratch: a record cut by the last read plus a tunnel read's worth
/// (32 KiB of plaintext and its records' overhead).
const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// Plaintext encrypted per write call: a tunnel read is one encryption and one `send`.
const WRITE_CHUNK_BYTES: usize = 32 * 1024;
/// Slices written together up to this many bytes go out as one record: below it,
/// copying them costs less than a record's own work (a seal here, an open at the
/// peer, 22–29 bytes on the wire). A small response's head and body are one record.
const GATHER_AT_MOST_BYTES: usize = 4 * 1024;
/// Records kept unprocessed before a read: a cut record and a handshake message
/// (a session ticket, a key update) spread over records. More is refused.
const MAX_HELD_RECORD_BYTES: usize = 2 * MAX_RECORD_BYTES;
/// What a connection holds at most between calls: one write's records the socket has
/// not taken, records read but not processed (what a read brought beyond the
/// reader's buffer, a record it cut), and the rest of a decrypted record. For
/// `sidecar check`.
pub const HELD_AT_MOST_BYTES: usize = WRITE_CHUNK_BYTES + 1024 + MAX_HELD_RECORD_BYTES + 1024 + 16 * 1024;
/// A handshake flight may carry a certificate chain in several records; rustls
/// accepts handshake messages up to 64 KiB.
const MAX_HANDSHAKE_BUFFER_BYTES: usize = 64 * 1024 + MAX_RECORD_BYTES;
/// The handshake's first read buffer: a ClientHello, or a server's flight with a
/// short chain.
const FIRST_HANDSHAKE_BUFFER_BYTES: usize = 8 * 1024;

/// What both sides of rustls's unbuffered API have in common, so one stream serves
/// both.
pub trait Session: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> {
    type Data;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Session for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Session for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

pub type ServerTlsStream = TlsStream<UnbufferedServerConnection>;
pub type ClientTlsStream = TlsStream<UnbufferedClientConnection>;

thread_local! {
    /// The worker's scratch buffers for reading and for encrypting records, and for
    /// gathering small slices into one record's plaintext.
    static READ_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static WRITE_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static GATHER_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed connection without sending TLS close_notify")
}

/// Bytes kept between calls, from `start`; holds no memory once empty.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    start: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.start == self.bytes.len()
    }
    fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..]
    }
    fn push(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
    }
    /// Drops the first `n` bytes, and the memory once none are left.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            *self = Self::default();
        }
    }
    /// Copies as much as fits into `out` and consumes it.
    fn drain_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.as_slice().len());
        out[..n].copy_from_slice(&self.as_slice()[..n]);
        self.consume(n);
        n
    }
}

pub struct TlsStream<S> {
    io: Io<TcpStream>,
    session: S,
    /// Records read and not yet processed: one cut by the last read, or ones the
    /// reader had no room for.
    records: Held,
    /// Decrypted bytes the reader had no room for.
    plaintext: Held,
    /// Encrypted bytes the socket has not taken yet; they go before anything else.
    outgoing: Held,
    /// The peer sent close_notify: reads return end-of-file once `plaintext` is empty.
    peer_closed: bool,
    /// close_notify is queued in `outgoing`.
    close_sent: bool,
    /// A TLS error ended the connection: every later call fails with its kind.
    failed: Option<io::ErrorKind>,
}

/// What a step of the state machine asks for next.
enum Next {
    /// More records from the peer.
    Read,
    /// The step was taken; ask again.
    Again,
}

impl<S: Session> TlsStream<S> {
    fn new(io: Io<TcpStream>, session: S) -> Self {
        Self {
            io,
            session,
            records: Held::default(),
            plaintext: Held::default(),
            outgoing: Held::default(),
            peer_closed: false,
            close_sent: false,
            failed: None,
        }
    }

    pub fn tcp(&self) -> &Io<TcpStream> {
        &self.io
    }

    /// Whether a read can make progress without the socket: decrypted bytes are
    /// waiting, or a whole record, or the peer's close.
    pub fn has_pending_read(&self) -> bool {
        !self.plaintext.is_empty() || self.peer_closed || holds_whole_record(self.records.as_slice())
    }

    /// Runs the handshake to its end. Application data that came with the peer's last
    /// flight stays for the first read.
    async fn handshake(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut used = 0;
        loop {
            let status = self.session.process(&mut buf[..used]);
            let plaintext = &mut self.plaintext;
            let Stepped { next, discard, error } =
                step(status.state, &mut self.outgoing, &mut self.peer_closed, |p| plaintext.push(p))?;
            let discard = status.discard + discard;
            buf.copy_within(discard..used, 0);
            used -= discard;
            if let Some(e) = error {
                let e = self.fail(e, &mut buf[..used]);
                let _ = poll_fn(|cx| self.poll_flush_outgoing(cx)).await;
                return Err(e);
            }
            if !self.outgoing.is_empty() {
                poll_fn(|cx| self.poll_flush_outgoing(cx)).await?;
            }
            if let Next::Read = next {
                if !self.session.is_handshaking() {
                    self.records.push(&buf[..used]);
                    return Ok(());
                }
                if used == buf.len() {
                    if buf.len() >= MAX_HANDSHAKE_BUFFER_BYTES {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS handshake message too large"));
                    }
                    let grown = (buf.len() * 2).clamp(FIRST_HANDSHAKE_BUFFER_BYTES, MAX_HANDSHAKE_BUFFER_BYTES);
                    buf.resize(grown, 0);
                }
                let io = &mut self.io;
                let n = poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut buf[used..])).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection in the TLS handshake",
                    ));
                }
                used += n;
            }
        }
    }

    /// Marks the connection failed by `e`: the alert rustls queued for the peer goes
    /// to `outgoing`, and no record is processed again (rustls keeps neither the error
    /// nor its place for some failures: processing the same bytes again would fail
    /// them twice). `incoming`: the records the failed call was given.
    fn fail(&mut self, e: rustls::Error, incoming: &mut [u8]) -> io::Error {
        // The alert comes first, before rustls looks at the records again.
        if let state @ Ok(ConnectionState::EncodeTlsData(_)) = self.session.process(incoming).state {
            let _ = step(state, &mut self.outgoing, &mut self.peer_closed, |_| {});
        }
        let e = tls_error(e);
        self.failed = Some(e.kind());
        e
    }

    /// The error every call returns once the connection failed.
    fn failed_before(&self) -> Option<io::Error> {
        self.failed.map(|kind| io::Error::new(kind, "the TLS connection failed earlier"))
    }

    /// Steps in which rustls may process every held record before it can say
    /// anything else, with room for the states that queue records to send.
    fn steps_allowed(&self) -> usize {
        16 + self.records.as_slice().len() / 5
    }

    /// Writes `outgoing` until it is empty.
    fn poll_flush_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, self.outgoing.as_slice()) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.outgoing.consume(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Decrypts into `out` what the records held and the socket give, until `out` has
    /// something (or is full) and no whole record is left to process.
    fn poll_read_records(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        with_worker_buffer(&READ_SCRATCH, READ_SCRATCH_BYTES, |scratch| {
            let mut used = self.records.as_slice().len();
            if used > scratch.len() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "TLS message too large")));
            }
            scratch[..used].copy_from_slice(self.records.as_slice());
            self.records = Held::default();
            let mut filled = 0;
            let result = loop {
                let status = self.session.process(&mut scratch[..used]);
                let plaintext = &mut self.plaintext;
                let stepped = step(status.state, &mut self.outgoing, &mut self.peer_closed, |payload| {
                    let n = payload.len().min(out.len() - filled);
                    out[filled..filled + n].copy_from_slice(&payload[..n]);
                    filled += n;
                    plaintext.push(&payload[n..]);
                });
                let Stepped { next, discard, error } = match stepped {
                    Ok(stepped) => stepped,
                    Err(e) => break Poll::Ready(Err(e)),
                };
                let discard = status.discard + discard;
                scratch.copy_within(discard..used, 0);
                used -= discard;
                if let Some(e) = error {
                    break Poll::Ready(Err(self.fail(e, &mut scratch[..used])));
                }
                if filled == out.len() || !self.plaintext.is_empty() {
                    break Poll::Ready(Ok(filled));
                }
                if let Next::Again = next {
                    continue;
                }
                if filled > 0 || self.peer_closed {
                    break Poll::Ready(Ok(filled));
                }
                // Read at most what `out` can take (and a whole record), so a small
                // reader does not leave a large remainder to keep.
                let end = scratch.len().min(used + (out.len() + 1024).max(MAX_RECORD_BYTES));
                if used > MAX_HELD_RECORD_BYTES || used == end {
                    break Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "TLS message too large")));
                }
                match Pin::new(&mut self.io).poll_read(cx, &mut scratch[used..end]) {
                    Poll::Ready(Ok(0)) => break Poll::Ready(Err(truncated())),
                    Poll::Ready(Ok(n)) => used += n,
                    Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                    Poll::Pending => break Poll::Pending,
                }
            };
            self.records.push(&scratch[..used]);
            result
        })
    }

    /// Encrypts as much of `bufs` as one chunk holds, and sends it (or keeps it in
    /// `outgoing`). Returns the plaintext bytes taken.
    fn poll_write_records(&mut self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.poll_flush_outgoing(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if let Some(e) = self.failed_before() {
            return Poll::Ready(Err(e));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.close_sent {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "TLS connection closed for writing")));
        }
        let take = total.min(WRITE_CHUNK_BYTES);
        let gather = take <= GATHER_AT_MOST_BYTES && bufs.iter().filter(|b| !b.is_empty()).nth(1).is_some();
        let records = if gather { 1 } else { take.div_ceil(16 * 1024) + bufs.len() };
        let result = with_worker_buffer(&WRITE_SCRATCH, take + records * 64, |scratch| -> io::Result<usize> {
            let len = if gather {
                with_worker_buffer(&GATHER_SCRATCH, take, |plain| {
                    let mut at = 0;
                    for buf in bufs {
                        plain[at..at + buf.len()].copy_from_slice(buf);
                        at += buf.len();
                    }
                    self.encrypt(&plain[..at], scratch, 0)
                })?
            } else {
                self.encrypt_each(bufs, take, scratch)?
            };
            // What the socket does not take now is sent before the next write.
            let mut sent = 0;
            if self.outgoing.is_empty() {
                while sent < len {
                    match Pin::new(&mut self.io).poll_write(cx, &scratch[sent..len]) {
                        Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                        Poll::Ready(Ok(n)) => sent += n,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => break,
                    }
                }
            }
            self.outgoing.push(&scratch[sent..len]);
            Ok(take)
        });
        Poll::Ready(result)
    }

    /// Encrypts the first `take` bytes of `bufs` into `out`, slice by slice; returns
    /// the bytes written.
    fn encrypt_each(&mut self, bufs: &[io::IoSlice<'_>], take: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut len = 0;
        let mut left = take;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let part = &buf[..buf.len().min(left)];
            if !part.is_empty() {
                len += self.encrypt(part, out, len)?;
                left -= part.len();
            }
        }
        Ok(len)
    }

    /// Encrypts `plain` into `out[at..]`, growing `out` if it is short; returns the
    /// bytes written.
    fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>, at: usize) -> io::Result<usize> {
        let written = self.with_write_traffic(|traffic| match traffic.encrypt(plain, &mut out[at..]) {
            Err(EncryptError::InsufficientSize(e)) => {
                let before = out.capacity();
                out.resize(at + e.required_size, 0);
                count_pooled(out.capacity() - before);
                traffic.encrypt(plain, &mut out[at..])
            }
            other => other,
        })?;
        written.map_err(|e| io::Error::other(e.to_string()))
    }

    /// Queues close_notify once.
    fn queue_close_notify(&mut self) {
        if self.close_sent || self.failed.is_some() {
            return;
        }
        let mut record = [0u8; 64];
        if let Ok(Ok(n)) = self.with_write_traffic(|traffic| traffic.queue_close_notify(&mut record)) {
            self.outgoing.push(&record[..n]);
            self.close_sent = true;
        }
    }

    /// Brings the connection to where it may send and runs `f` there. Held records are
    /// processed first (rustls hands back each whole one before it lets a write
    /// through; their plaintext is kept for the reader), and records it queues to send
    /// go to `outgoing`.
    fn with_write_traffic<R>(&mut self, f: impl FnOnce(&mut WriteTraffic<'_, S::Data>) -> R) -> io::Result<R> {
        for _ in 0..self.steps_allowed() {
            let status = self.session.process(self.records.as_mut_slice());
            let held_discard = status.discard;
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state {
                let result = f(&mut traffic);
                self.records.consume(held_discard);
                return Ok(result);
            }
            let plaintext = &mut self.plaintext;
            let Stepped { next, discard, error } =
                step(status.state, &mut self.outgoing, &mut self.peer_closed, |p| plaintext.push(p))?;
            let discard = held_discard + discard;
            self.records.consume(discard);
            if let Some(e) = error {
                return Err(self.fail_on_held(e));
            }
            if let Next::Read = next {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "TLS connection cannot send"));
            }
        }
        Err(io::Error::other("TLS connection did not reach a state to send"))
    }

    /// `fail` for a failure while processing the held records.
    fn fail_on_held(&mut self, e: rustls::Error) -> io::Error {
        let mut records = std::mem::take(&mut self.records);
        let e = self.fail(e, records.as_mut_slice());
        self.records = records;
        e
    }
}

/// What a step of the state machine came to.
struct Stepped {
    next: Next,
    /// Bytes of records to discard beyond the status's own.
    discard: usize,
    /// rustls failed: the connection is over.
    error: Option<rustls::Error>,
}

/// Takes one state of the machine: each decrypted record goes to `on_record`, records
/// to send are queued in `outgoing` (and count as sent: nothing is written before
/// them), the peer's close is remembered in `peer_closed`.
fn step<D>(
    state: Result<ConnectionState<'_, '_, D>, rustls::Error>,
    outgoing: &mut Held,
    peer_closed: &mut bool,
    mut on_record: impl FnMut(&[u8]),
) -> io::Result<Stepped> {
    let state = match state {
        Ok(state) => state,
        Err(e) => return Ok(Stepped { next: Next::Read, discard: 0, error: Some(e) }),
    };
    let next = match state {
        ConnectionState::ReadTraffic(mut traffic) => {
            let mut discard = 0;
            while let Some(record) = traffic.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        on_record(record.payload);
                    }
                    Err(e) => return Ok(Stepped { next: Next::Read, discard, error: Some(e) }),
                }
            }
            return Ok(Stepped { next: Next::Again, discard, error: None });
        }
        ConnectionState::EncodeTlsData(mut encode) => {
            let mut out = [0u8; 0];
            let size = match encode.encode(&mut out) {
                Ok(_) => 0,
                Err(EncodeError::InsufficientSize(e)) => e.required_size,
                Err(e) => return Err(io::Error::other(e.to_string())),
            };
            let at = outgoing.bytes.len();
            outgoing.bytes.resize(at + size, 0);
            encode.encode(&mut outgoing.bytes[at..]).map_err(|e| io::Error::other(e.to_string()))?;
            Next::Again
        }
        ConnectionState::TransmitTlsData(transmit) => {
            transmit.done();
            Next::Again
        }
        // Edge-triggered: asking again moves on (writing may go on after it).
        ConnectionState::PeerClosed => {
            *peer_closed = true;
            Next::Again
        }
        ConnectionState::Closed => {
            *peer_closed = true;
            Next::Read
        }
        ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => Next::Read,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS early data is not accepted")),
    };
    Ok(Stepped { next, discard: 0, error: None })
}

/// Whether `records` begins with a whole TLS record.
fn holds_whole_record(records: &[u8]) -> bool {
    record_payload_len(records).is_some_and(|len| records.len() >= 5 + len)
}

/// The payload length the record header at the start of `records` announces, once
/// its 5 bytes are there.
fn record_payload_len(records: &[u8]) -> Option<usize> {
    match records {
        [_, _, _, high, low, ..] => Some(usize::from(u16::from_be_bytes([*high, *low]))),
        _ => None,
    }
}

impl ServerTlsStream {
    /// Accepts a TLS client on `io`.
    pub async fn accept(io: Io<TcpStream>, config: std::sync::Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let session = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = Self::new(io, session);
        stream.handshake().await?;
        Ok(stream)
    }
}

impl ClientTlsStream {
    /// Opens TLS to the server `name` on `io`.
    pub async fn connect(
        io: Io<TcpStream>,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self> {
        let session = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        let mut stream = Self::new(io, session);
        stream.handshake().await?;
        Ok(stream)
    }
}

impl<S: Session + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !this.plaintext.is_empty() {
            return Poll::Ready(Ok(this.plaintext.drain_into(buf)));
        }
        if let Some(e) = this.failed_before() {
            return Poll::Ready(Err(e));
        }
        if this.peer_closed {
            return Poll::Ready(Ok(0));
        }
        let read = this.poll_read_records(cx, buf);
        // Records a read produced (a key update's answer, a session ticket's
        // acknowledgement, an alert) go out now; a full socket leaves them for the
        // next write.
        if !this.outgoing.is_empty() {
            if let Poll::Ready(Err(e)) = this.poll_flush_outgoing(cx) {
                if matches!(read, Poll::Pending) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        read
    }
}

impl<S: Session + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_records(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_records(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_outgoing(cx)
    }

    /// Sends close_notify and everything before it; the caller shuts the socket's
    /// write half.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close_notify();
        this.poll_flush_outgoing(cx)
    }
}

#[cfg(test)]
#[path = "tls_stream_tests.rs"]
mod tests;
