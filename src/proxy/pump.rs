//! The bytes of a tunnel: both directions at once, leftover bytes first, half-close
//! propagated, an idle deadline over both directions. tunnel.rs sets a tunnel up and
//! tears it down; this file only moves bytes.
//!
//! Memory is the point here (docs/security.md, L9): an idle tunnel owns no copy buffer. Reads go
//! into one scratch buffer per worker thread, borrowed only inside a single `poll`, and
//! are written straight on; only what the peer cannot take right now is copied into a
//! per-direction `Vec`, freed again once drained.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::net::clock::{self, Sleep};
use crate::net::stream::{Stream, FAIR_SHARE_BYTES, READ_BYTES};

thread_local! {
    /// One read buffer per worker thread, shared by all its tunnels.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_BYTES].into_boxed_slice());
}

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed their write halves.
    Closed,
    IdleTimeout,
    /// A read or write failed (reset, broken pipe).
    Error,
    /// Closed by sidecar (drain).
    Shutdown,
}

/// What crossed the tunnel.
#[derive(Clone, Copy, Debug)]
pub struct TunnelStats {
    /// Client → backend bytes.
    pub up: u64,
    /// Backend → client bytes.
    pub down: u64,
    pub end: TunnelEnd,
}

#[derive(Default)]
struct Direction {
    /// Bytes read but not yet accepted by the writer.
    pending: Vec<u8>,
    pos: usize,
    read_done: bool,
    done: bool,
    bytes: u64,
    /// Bytes read since this direction last let the worker's other tasks run.
    since_yield: u64,
    /// A fairness yield is under way (`Stream::poll_yield_before_read`).
    yielded: bool,
}

/// Moves bytes from `from` to `to` until `from` ends and `to` is shut down, until the
/// next read/write would block, or until `FAIR_SHARE_BYTES` moved (then it yields, so a
/// peer that never stops sending cannot keep the worker to itself). Sets `*active`
/// when bytes moved.
fn pump(
    from: &mut Stream,
    to: &mut Stream,
    d: &mut Direction,
    active: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        while d.pos < d.pending.len() {
            match Pin::new(&mut *to).poll_write(cx, &d.pending[d.pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    d.pos += n;
                    *active = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !d.pending.is_empty() {
            d.pending = Vec::new();
            d.pos = 0;
        }
        // TLS keeps written records in rustls until flushed.
        match Pin::new(&mut *to).poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if d.read_done {
            return match Pin::new(&mut *to).poll_close(cx) {
                Poll::Ready(_) => {
                    d.done = true;
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        if d.since_yield >= FAIR_SHARE_BYTES {
            match from.poll_yield_before_read(cx, &mut d.yielded) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => d.since_yield = 0,
            }
        }
        let step = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = match Pin::new(&mut *from).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(0)) => {
                    d.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            d.bytes += n as u64;
            d.since_yield += n as u64;
            *active = true;
            let mut off = 0;
            while off < n {
                match Pin::new(&mut *to).poll_write(cx, &scratch[off..n]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(k)) => off += k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        d.pending = scratch[off..n].to_vec();
                        break;
                    }
                }
            }
            Poll::Ready(Ok(()))
        });
        match step {
            Poll::Ready(Ok(())) => continue,
            other => return other,
        }
    }
}

struct Pump<S: Future<Output = ()>> {
    client: Stream,
    backend: Stream,
    up: Direction,
    down: Direction,
    idle: Duration,
    last_active: Instant,
    timer: Sleep,
    shutdown: Pin<Box<S>>,
}

impl<S: Future<Output = ()>> Future for Pump<S> {
    type Output = TunnelEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TunnelEnd> {
        let t = self.get_mut();
        let mut active = false;
        if !t.up.done {
            if let Poll::Ready(Err(_)) = pump(&mut t.client, &mut t.backend, &mut t.up, &mut active, cx) {
                return Poll::Ready(TunnelEnd::Error);
            }
        }
        if !t.down.done {
            if let Poll::Ready(Err(_)) = pump(&mut t.backend, &mut t.client, &mut t.down, &mut active, cx) {
                return Poll::Ready(TunnelEnd::Error);
            }
        }
        if t.up.done && t.down.done {
            return Poll::Ready(TunnelEnd::Closed);
        }
        if t.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(TunnelEnd::Shutdown);
        }
        let now = clock::now();
        if active {
            t.last_active = now;
        }
        // The timer is re-armed only when it fires, not on every byte.
        while Pin::new(&mut t.timer).poll(cx).is_ready() {
            let deadline = t.last_active + t.idle;
            if deadline <= clock::now() {
                return Poll::Ready(TunnelEnd::IdleTimeout);
            }
            t.timer.set_at(deadline);
        }
        Poll::Pending
    }
}

/// Moves a tunnel's bytes until it ends. `to_backend` / `to_client` are bytes already read from the other
/// side (frames sent right behind the handshake); they go first. `shutdown` ends the
/// tunnel early when it completes (drain).
pub async fn run(
    client: Stream,
    to_backend: Vec<u8>,
    backend: Stream,
    to_client: Vec<u8>,
    idle: Duration,
    shutdown: impl Future<Output = ()>,
) -> TunnelStats {
    let now = clock::now();
    let up = Direction { bytes: to_backend.len() as u64, pending: to_backend, ..Direction::default() };
    let down = Direction { bytes: to_client.len() as u64, pending: to_client, ..Direction::default() };
    let mut pump = Pump {
        client,
        backend,
        up,
        down,
        idle,
        last_active: now,
        timer: clock::sleep_until(now + idle),
        shutdown: Box::pin(shutdown),
    };
    let end = (&mut pump).await;
    TunnelStats { up: pump.up.bytes, down: pump.down.bytes, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::net::test_sockets::{fill, pair};

    #[test]
    fn one_poll_moves_at_most_a_fair_share_of_a_peer_that_keeps_sending() {
        let (client, mut client_far) = pair();
        let (backend, mut backend_far) = pair();
        let waiting = 512 * 1024;
        fill(&mut client_far, &client, 7, waiting);
        let mut pump = Pump {
            client: Stream::Plain(client),
            backend: Stream::Plain(backend),
            up: Direction::default(),
            down: Direction::default(),
            idle: Duration::from_secs(60),
            last_active: Instant::now(),
            timer: clock::sleep(Duration::from_secs(60)),
            shutdown: Box::pin(std::future::pending::<()>()),
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut pump).poll(&mut cx).is_pending());
        let moved = pump.up.bytes;
        assert!(
            moved >= FAIR_SHARE_BYTES && moved <= FAIR_SHARE_BYTES + READ_BYTES as u64,
            "one poll moved {moved} of {waiting} ready bytes; a fair share is {FAIR_SHARE_BYTES}"
        );
        // The rest follows on the next polls.
        let mut got = vec![0u8; waiting];
        backend_far.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        backend_far.read_exact(&mut got[..moved as usize]).expect("the relayed bytes");
        for _ in 0..100 {
            let _ = Pin::new(&mut pump).poll(&mut cx);
            if pump.up.bytes == waiting as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pump.up.bytes, waiting as u64, "every byte is relayed in the end");
    }
}
