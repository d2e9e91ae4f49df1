//! The bytes of a tunnel: both directions at once, leftover bytes first, half-close
//! propagated, an idle deadline over both directions; and the WebSocket session on top
//! of them. Each direction is read frame by frame (`websocket::filter`) without
//! touching payloads, so sidecar can put frames of its own between two frames:
//! - a Close on drain (1001) or when the tunnel's member leaves (1012), sent at a
//!   moment the caller spreads over `drain_spread`, then the closing handshake awaited;
//! - keepalive Pings to a peer that has been quiet (`ws_ping_interval`), whose Pongs are
//!   not passed on; no answer in `ws_pong_timeout` closes the tunnel (1011);
//! - a Close 1002 to both sides when a peer breaks the framing rules.
//!
//! tunnel.rs sets a tunnel up and tears it down; this file moves bytes and keeps time.
//!
//! Memory is the point here (docs/security.md, L9): an idle tunnel owns no copy buffer.
//! Reads go into one scratch buffer per worker thread, borrowed only inside a single
//! `poll`, and are written straight on; only what the peer cannot take right now is
//! copied into a per-direction `Vec`, freed again once drained.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::net::buffers::{self, Counted};
use crate::net::clock::{self, Sleep};
use crate::net::stream::{Stream, FAIR_SHARE_BYTES, TUNNEL_READ_BYTES};
use crate::websocket::filter::{Filter, HEADROOM, TAILROOM};
use crate::websocket::frame::{self, PING};
use crate::websocket::Keepalive;

thread_local! {
    /// One read buffer per worker thread, shared by all its tunnels, with room around
    /// the read for the frame filter.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Mask keys and Ping payloads. They need to be unpredictable to no one: sidecar's
    /// own frames carry no attacker-chosen bytes (RFC 6455 section 10.3's concern).
    static RANDOM: Cell<u64> = Cell::new(seed());
}

/// The shared read buffer's size.
const SCRATCH_BYTES: usize = HEADROOM + TUNNEL_READ_BYTES + TAILROOM;

/// After sidecar's own Close (except on drain, which has `drain_timeout`), how long it
/// waits for the closing handshake before it closes the connections.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// After a peer broke the framing rules, how long its Close waits for the other side's
/// answer (see `Closing::deferred`).
const VIOLATION_GRACE: Duration = Duration::from_secs(1);

/// One end of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Backend => "backend",
        })
    }
}

/// Why sidecar closed a tunnel itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// SIGTERM/SIGINT: 1001 Going Away.
    Drain,
    /// The tunnel's member was removed (reload, DNS) or set to drain: 1012 Service Restart.
    MemberLeft,
    /// A Ping went unanswered for `ws_pong_timeout`: 1011.
    NoPong(Side, Duration),
    /// A peer broke RFC 6455's framing rules: 1002 Protocol Error.
    Violation(Side, &'static str),
}

impl Cause {
    fn code(self) -> u16 {
        match self {
            Cause::Drain => 1001,
            Cause::MemberLeft => 1012,
            Cause::NoPong(..) => 1011,
            Cause::Violation(..) => 1002,
        }
    }

    /// The Close frame's reason text.
    fn reason(self) -> &'static str {
        match self {
            Cause::Drain => "sidecar is shutting down",
            Cause::MemberLeft => "replica removed",
            Cause::NoPong(Side::Client, _) => "client did not answer ping",
            Cause::NoPong(Side::Backend, _) => "backend did not answer ping",
            Cause::Violation(_, why) => why,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Drain => write!(f, "closed by sidecar: draining (1001)"),
            Cause::MemberLeft => write!(f, "closed by sidecar: replica removed (1012)"),
            Cause::NoPong(side, t) => write!(f, "{side} did not answer ping within {}s (1011)", t.as_secs_f64()),
            Cause::Violation(side, why) => write!(f, "{side} broke WebSocket framing: {why} (1002)"),
        }
    }
}

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed their write halves.
    Closed,
    IdleTimeout,
    /// A read or write failed (reset, broken pipe).
    Error,
    /// sidecar sent its Close and the closing handshake finished.
    ClosedBySidecar(Cause),
    /// sidecar sent its Close; the handshake did not finish in time.
    CloseTimedOut(Cause),
}

impl fmt::Display for TunnelEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelEnd::Closed => write!(f, "closed"),
            TunnelEnd::IdleTimeout => write!(f, "idle timeout"),
            TunnelEnd::Error => write!(f, "connection error"),
            TunnelEnd::ClosedBySidecar(c) => write!(f, "{c}"),
            TunnelEnd::CloseTimedOut(c) => write!(f, "{c}; no closing handshake in time"),
        }
    }
}

/// When a tunnel should be closed by sidecar (drain or member removal), from the
/// moment the caller's `leave` future completes.
pub struct Leave {
    pub cause: Cause,
    /// Send the Close this long from now (its place in the spread).
    pub after: Duration,
    /// Close the connections this long from now at the latest.
    pub within: Duration,
}

/// What a tunnel needs to know of its WebSocket session.
#[derive(Clone, Copy, Debug)]
pub struct Session {
    pub idle: Duration,
    pub keepalive: Keepalive,
    /// The 101 named an extension (which may use the RSV bits).
    pub extensions: bool,
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

struct Direction {
    /// Frames, so sidecar's own can go between them.
    filter: Filter,
    /// Bytes read but not yet accepted by the writer (counted in the buffer gauge).
    pending: Counted,
    pos: usize,
    /// Everything handed to the writer has been flushed.
    flushed: bool,
    read_done: bool,
    done: bool,
    /// The destination's write half is to be shut (its closing handshake is over)…
    shut_dest: bool,
    /// …and has been: nothing more is written to it.
    dest_shut: bool,
    /// The source has ended but its end is not passed on yet: sidecar sent the
    /// destination a Close and waits for its answer, which the destination must be
    /// able to give before its connection ends.
    hold_end: bool,
    bytes: u64,
    /// Bytes arrived since the owner last looked.
    got_bytes: bool,
    /// Bytes read since this direction last let the worker's other tasks run.
    since_yield: u64,
    /// A fairness yield is under way (`Stream::poll_yield_before_read`).
    yielded: bool,
}

impl Direction {
    fn new(from_client: bool, extensions: bool, early: Vec<u8>) -> Self {
        let mut filter = Filter::new(from_client, extensions);
        let bytes = early.len() as u64;
        // Bytes that came with the handshake go through the filter like any others.
        let pending = if early.is_empty() {
            early
        } else {
            let mut buf = vec![0u8; HEADROOM + early.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + early.len()].copy_from_slice(&early);
            let out = filter.scan(&mut buf, HEADROOM, HEADROOM + early.len());
            buf[out].to_vec()
        };
        let mut counted = Counted::default();
        counted.replace(pending);
        Self {
            filter,
            pending: counted,
            pos: 0,
            flushed: true,
            read_done: false,
            done: false,
            shut_dest: false,
            dest_shut: false,
            hold_end: false,
            bytes,
            got_bytes: false,
            since_yield: 0,
            yielded: false,
        }
    }

    /// Everything meant for the destination, sidecar's Close included, is written.
    fn delivered(&self) -> bool {
        self.pending.is_empty() && self.flushed && !self.filter.has_injection()
    }
}

/// Writes `bytes` to `to`; what it cannot take now goes to `d.pending`.
fn write_or_keep(to: &mut Stream, d: &mut Direction, bytes: &[u8], cx: &mut Context<'_>) -> io::Result<()> {
    let mut off = 0;
    while off < bytes.len() {
        match Pin::new(&mut *to).poll_write(cx, &bytes[off..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(k)) => {
                off += k;
                d.flushed = false;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {
                d.pending.replace(bytes[off..].to_vec());
                break;
            }
        }
    }
    Ok(())
}

/// Moves bytes from `from` to `to` until `from` ends and `to` is shut down, until the
/// next read/write would block, until `FAIR_SHARE_BYTES` moved (then it yields, so a
/// peer that never stops sending cannot keep the worker to itself), or until the
/// filter saw something the tunnel must act on (`Ready(Ok)` with `done` unset).
fn pump(from: &mut Stream, to: &mut Stream, d: &mut Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    loop {
        if let Some(frames) = d.filter.take_injection() {
            d.pending.extend_from_slice(&frames);
        }
        while d.pos < d.pending.len() {
            if d.dest_shut {
                d.pos = d.pending.len();
                break;
            }
            match Pin::new(&mut *to).poll_write(cx, &d.pending[d.pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    d.pos += n;
                    d.flushed = false;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !d.pending.is_empty() {
            d.pending.take();
            d.pos = 0;
        }
        // TLS keeps written records in rustls until flushed.
        if !d.flushed && !d.dest_shut {
            match Pin::new(&mut *to).poll_flush(cx) {
                Poll::Ready(Ok(())) => d.flushed = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if d.read_done && d.hold_end && !d.shut_dest {
            // Woken again by the other direction, when the destination answers.
            return Poll::Pending;
        }
        if d.read_done || (d.shut_dest && !d.dest_shut) {
            if !d.dest_shut {
                match Pin::new(&mut *to).poll_close(cx) {
                    Poll::Ready(_) => d.dest_shut = true,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if d.read_done {
                d.done = true;
                return Poll::Ready(Ok(()));
            }
        }
        if d.since_yield >= FAIR_SHARE_BYTES {
            match from.poll_yield_before_read(cx, &mut d.yielded) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => d.since_yield = 0,
            }
        }
        let step = buffers::with_worker_buffer(&SCRATCH, SCRATCH_BYTES, |scratch| {
            let n = match Pin::new(&mut *from).poll_read(cx, &mut scratch[HEADROOM..HEADROOM + TUNNEL_READ_BYTES]) {
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
            d.got_bytes = true;
            let out = d.filter.scan(scratch, HEADROOM, HEADROOM + n);
            if !d.dest_shut {
                write_or_keep(to, d, &scratch[out], cx)?;
            }
            Poll::Ready(Ok(()))
        });
        match step {
            Poll::Ready(Ok(())) if d.filter.has_news() => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => continue,
            other => return other,
        }
    }
}

/// sidecar's own Close, decided.
struct Closing {
    cause: Cause,
    /// When the Close frames go out.
    send_at: Instant,
    sent: bool,
    /// When the connections close, handshake or not.
    give_up: Instant,
    /// A peer not waited for: its Close goes out, then its connection is shut.
    cut: Option<Side>,
    /// A peer that broke the framing rules gets its Close only once the other side has
    /// answered sidecar's (or at the instant given): what the other side sent in reply
    /// to the frames before the bad one reaches it first, as it would without a proxy.
    deferred: Option<(Side, Instant)>,
}

/// A keepalive Ping awaiting its Pong.
#[derive(Clone, Copy)]
struct Ping {
    sent: Instant,
}

struct Pump<L: Future<Output = Leave>> {
    client: Stream,
    backend: Stream,
    /// Client → backend.
    up: Direction,
    /// Backend → client.
    down: Direction,
    session: Session,
    last_active: Instant,
    /// When each side last sent anything: [client, backend].
    last_heard: [Instant; 2],
    pings: [Option<Ping>; 2],
    /// Each side sent a Close: [client, backend].
    close_from: [bool; 2],
    timer: Sleep,
    leave: Option<Pin<Box<L>>>,
    /// Boxed: every open tunnel holds the option, few ever close it themselves.
    closing: Option<Box<Closing>>,
}

impl<L: Future<Output = Leave>> Pump<L> {
    fn new(
        client: Stream,
        to_backend: Vec<u8>,
        backend: Stream,
        to_client: Vec<u8>,
        session: Session,
        leave: L,
    ) -> Self {
        let now = clock::now();
        let mut pump = Pump {
            client,
            backend,
            up: Direction::new(true, session.extensions, to_backend),
            down: Direction::new(false, session.extensions, to_client),
            session,
            last_active: now,
            last_heard: [now; 2],
            pings: [None; 2],
            close_from: [false; 2],
            timer: clock::sleep_until(now),
            leave: Some(Box::pin(leave)),
            closing: None,
        };
        pump.timer.set_at(pump.next_deadline());
        pump
    }

    /// Looks at what the filters saw; whether frames of sidecar's own were queued.
    fn take_news(&mut self, now: Instant) -> bool {
        let mut queued = false;
        for side in [Side::Client, Side::Backend] {
            if !self.from(side).filter.has_news() {
                continue;
            }
            let seen = std::mem::take(&mut self.from(side).filter.seen);
            if seen.close.is_some() {
                self.close_from[side as usize] = true;
            }
            if seen.own_pong {
                self.pings[side as usize] = None;
            }
            if let Some(why) = seen.violation {
                queued |= self.start_closing(Cause::Violation(side, why), now, Duration::ZERO, CLOSE_TIMEOUT);
            }
        }
        queued
    }

    /// The direction whose source is `side`.
    fn from(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.up,
            Side::Backend => &mut self.down,
        }
    }

    /// The direction whose destination is `side`.
    fn to(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.down,
            Side::Backend => &mut self.up,
        }
    }

    /// Decides sidecar's own Close; whether frames were queued at once. A Close already
    /// decided stands, unless it has not gone out yet and this one is more urgent.
    fn start_closing(&mut self, cause: Cause, now: Instant, after: Duration, within: Duration) -> bool {
        if self.closing.as_ref().is_some_and(|c| c.sent || c.send_at <= now + after) {
            return false;
        }
        let cut = match cause {
            Cause::NoPong(side, _) | Cause::Violation(side, _) => Some(side),
            Cause::Drain | Cause::MemberLeft => None,
        };
        self.closing = Some(Box::new(Closing {
            cause,
            send_at: now + after,
            sent: false,
            give_up: now + within,
            cut,
            deferred: None,
        }));
        self.timer.set_at(self.next_deadline());
        self.send_closes_if_due(now)
    }

    fn send_closes_if_due(&mut self, now: Instant) -> bool {
        let Some(c) = self.closing.as_mut().filter(|c| !c.sent && c.send_at <= now) else { return false };
        c.sent = true;
        let (cause, cut) = (c.cause, c.cut);
        let violator = match cause {
            Cause::Violation(side, _) => Some(side),
            _ => None,
        };
        if let Some(v) = violator {
            c.deferred = Some((v, now + VIOLATION_GRACE));
            self.from(v.other()).filter.swallow_close();
        }
        for side in [Side::Client, Side::Backend] {
            if Some(side) != violator {
                self.send_close(side, cause);
            }
        }
        if let Some(side) = cut.filter(|&s| Some(s) != violator) {
            self.to(side).shut_dest = true;
        }
        true
    }

    fn send_close(&mut self, side: Side, cause: Cause) {
        let mut f = Vec::with_capacity(frame::MAX_CONTROL_FRAME);
        frame::write_close(&mut f, cause.code(), cause.reason(), mask_for(side));
        self.to(side).filter.queue(&f, true);
    }

    /// Sends the violator its deferred Close once the other side answered or its time
    /// came; whether it went.
    fn send_deferred_close(&mut self, now: Instant) -> bool {
        let Some(c) = self.closing.as_ref() else { return false };
        let Some((v, at)) = c.deferred else { return false };
        let cause = c.cause;
        let other = v.other();
        if now < at && !self.close_from[other as usize] && !self.from(other).read_done {
            return false;
        }
        if let Some(c) = self.closing.as_mut() {
            c.deferred = None;
        }
        self.send_close(v, cause);
        self.to(v).shut_dest = true;
        true
    }

    /// Whether `side` has answered sidecar's Close (or hung up, or is not waited for).
    fn answered(&mut self, side: Side) -> bool {
        let cut = self.closing.as_ref().is_some_and(|c| c.cut == Some(side));
        self.close_from[side as usize] || self.from(side).read_done || cut
    }

    /// Whether `side`'s part of sidecar's closing handshake is over: it was sent a
    /// Close and answered.
    fn handshake_over(&mut self, side: Side) -> bool {
        let answered = self.answered(side);
        let to = self.to(side);
        to.filter.close_passed() && to.delivered() && answered
    }

    /// While sidecar's Close to a side awaits its answer, the other side's end of
    /// connection is held back from it.
    fn hold_ends(&mut self) {
        if self.closing.is_none() {
            return;
        }
        let sent = self.closing.as_ref().is_some_and(|c| c.sent);
        let deferred = self.closing.as_ref().and_then(|c| c.deferred).map(|(side, _)| side);
        for side in [Side::Client, Side::Backend] {
            let hold = sent && (!self.answered(side) || deferred == Some(side));
            self.to(side).hold_end = hold;
        }
    }

    /// The tunnel's end, if it has come.
    fn end(&mut self) -> Option<TunnelEnd> {
        let by_sidecar = self.closing.as_ref().filter(|c| c.sent).map(|c| c.cause);
        if self.up.done && self.down.done {
            return Some(by_sidecar.map_or(TunnelEnd::Closed, TunnelEnd::ClosedBySidecar));
        }
        let cause = by_sidecar?;
        let client_over = self.handshake_over(Side::Client);
        if client_over {
            // As the server of the client's connection, sidecar closes it first
            // (RFC 6455 section 7.1.1).
            self.down.shut_dest = true;
        }
        (client_over && self.handshake_over(Side::Backend)).then_some(TunnelEnd::ClosedBySidecar(cause))
    }

    fn next_deadline(&self) -> Instant {
        let idle = self.last_active + self.session.idle;
        match &self.closing {
            Some(c) if c.sent => return c.deferred.map_or(c.give_up, |(_, at)| at.min(c.give_up)),
            Some(c) => return idle.min(c.send_at),
            None => {}
        }
        let mut next = idle;
        if let Some(interval) = self.session.keepalive.interval {
            for side in [Side::Client, Side::Backend].into_iter().filter(|&s| self.pinged(s)) {
                next = next.min(match self.pings[side as usize] {
                    Some(p) => p.sent + self.session.keepalive.pong_timeout,
                    None => self.last_heard[side as usize] + interval,
                });
            }
        }
        next
    }

    /// Whether `side` gets keepalive Pings (when they are on).
    fn pinged(&self, side: Side) -> bool {
        side == Side::Client || self.session.keepalive.backend
    }

    /// The timer fired: whatever is due. `Some`: the tunnel ends now.
    fn on_time(&mut self, now: Instant) -> Option<TunnelEnd> {
        if let Some(c) = self.closing.as_ref().filter(|c| c.sent) {
            if now >= c.give_up {
                return Some(TunnelEnd::CloseTimedOut(c.cause));
            }
            self.send_deferred_close(now);
            return None;
        }
        if now >= self.last_active + self.session.idle {
            return Some(TunnelEnd::IdleTimeout);
        }
        if self.closing.is_some() {
            self.send_closes_if_due(now);
            return None;
        }
        let interval = self.session.keepalive.interval?;
        let pong_timeout = self.session.keepalive.pong_timeout;
        for side in [Side::Client, Side::Backend] {
            if !self.pinged(side) {
                continue;
            }
            let i = side as usize;
            if let Some(p) = self.pings[i] {
                if self.last_heard[i] > p.sent {
                    // Anything from the peer shows it is alive.
                    self.pings[i] = None;
                } else if now >= p.sent + pong_timeout {
                    self.start_closing(Cause::NoPong(side, pong_timeout), now, Duration::ZERO, CLOSE_TIMEOUT);
                    return None;
                }
            }
            if self.pings[i].is_none() && now >= self.last_heard[i] + interval {
                let payload = ping_payload();
                let mut f = Vec::with_capacity(2 + 4 + payload.len());
                frame::write_control(&mut f, PING, &payload, mask_for(side));
                self.to(side).filter.queue(&f, false);
                self.from(side).filter.expect_pong(&payload);
                self.pings[i] = Some(Ping { sent: now });
            }
        }
        None
    }
}

impl<L: Future<Output = Leave>> Future for Pump<L> {
    type Output = TunnelStats;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TunnelStats> {
        let t = self.get_mut();
        let end = std::task::ready!(t.poll_end(cx));
        Poll::Ready(TunnelStats { up: t.up.bytes, down: t.down.bytes, end })
    }
}

impl<L: Future<Output = Leave>> Pump<L> {
    /// Moves bytes until the tunnel ends, and says how.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<TunnelEnd> {
        let t = self;
        let mut rounds = 0;
        loop {
            let mut again = false;
            t.hold_ends();
            for side in [Side::Client, Side::Backend] {
                let (from, to, d) = match side {
                    Side::Client => (&mut t.client, &mut t.backend, &mut t.up),
                    Side::Backend => (&mut t.backend, &mut t.client, &mut t.down),
                };
                if d.done {
                    continue;
                }
                match pump(from, to, d, cx) {
                    Poll::Ready(Err(_)) => {
                        let by_sidecar = t.closing.as_ref().filter(|c| c.sent).map(|c| c.cause);
                        return Poll::Ready(by_sidecar.map_or(TunnelEnd::Error, TunnelEnd::ClosedBySidecar));
                    }
                    Poll::Ready(Ok(())) => again |= !d.done,
                    Poll::Pending => {}
                }
            }
            if t.up.got_bytes || t.down.got_bytes {
                let now = clock::now();
                for (i, d) in [&mut t.up, &mut t.down].into_iter().enumerate() {
                    if std::mem::take(&mut d.got_bytes) {
                        t.last_heard[i] = now;
                        t.last_active = now;
                    }
                }
            }
            if t.up.filter.has_news() || t.down.filter.has_news() {
                let now = clock::now();
                again |= t.take_news(now);
                again |= t.send_deferred_close(now);
            } else if t.up.read_done || t.down.read_done {
                again |= t.send_deferred_close(clock::now());
            }
            let shut = t.down.shut_dest;
            if let Some(end) = t.end() {
                return Poll::Ready(end);
            }
            // More to do this turn: the filter stopped to report, frames were queued,
            // or the client's connection is to be shut. A bound keeps one tunnel from
            // holding the worker.
            again |= t.down.shut_dest && !shut;
            rounds += 1;
            if !again {
                break;
            }
            if rounds == 4 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if let Some(leave) = t.leave.as_mut() {
            if let Poll::Ready(l) = leave.as_mut().poll(cx) {
                t.leave = None;
                t.start_closing(l.cause, clock::now(), l.after, l.within);
                cx.waker().wake_by_ref();
            }
        }
        // The timer is re-armed only when it fires, not on every byte: what bytes
        // change only pushes deadlines later.
        while Pin::new(&mut t.timer).poll(cx).is_ready() {
            let now = clock::now();
            if let Some(end) = t.on_time(now) {
                return Poll::Ready(end);
            }
            if t.up.filter.has_injection() || t.down.filter.has_injection() || t.closing.is_some() {
                cx.waker().wake_by_ref();
            }
            t.timer.set_at(t.next_deadline().max(now));
            if t.next_deadline() <= now {
                // Due again at once (a Close decided this instant): the next poll runs it.
                cx.waker().wake_by_ref();
                break;
            }
        }
        Poll::Pending
    }
}

/// The mask for a frame sidecar sends to `side`: frames to a server are masked.
fn mask_for(side: Side) -> Option<[u8; 4]> {
    match side {
        Side::Client => None,
        Side::Backend => Some((random() as u32).to_ne_bytes()),
    }
}

/// A keepalive Ping's payload: recognisable, and different each time so a late Pong
/// to an earlier Ping is not taken for an answer.
fn ping_payload() -> [u8; 15] {
    let mut p = *b"sidecar\0\0\0\0\0\0\0\0";
    p[7..].copy_from_slice(&random().to_ne_bytes());
    p
}

fn seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_ne_bytes(b) | 1
}

/// xorshift64*, per thread.
pub(super) fn random() -> u64 {
    RANDOM.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Runs a tunnel until it ends. `to_backend` / `to_client` are bytes already read from
/// the other side (frames sent right behind the handshake); they go first. When `leave`
/// completes, sidecar closes the tunnel as it says.
///
/// A plain function returning the pump itself, not an `async fn`: an `async fn` would
/// keep its arguments beside the pump they were moved into, for the tunnel's life.
pub fn run(
    client: Stream,
    to_backend: Vec<u8>,
    backend: Stream,
    to_client: Vec<u8>,
    session: Session,
    leave: impl Future<Output = Leave>,
) -> impl Future<Output = TunnelStats> {
    Pump::new(client, to_backend, backend, to_client, session, leave)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    use crate::net::test_sockets::{fill, pair};

    #[test]
    fn one_poll_moves_at_most_a_fair_share_of_a_peer_that_keeps_sending() {
        let (client, mut client_far) = pair();
        let (backend, mut backend_far) = pair();
        let waiting = 512 * 1024;
        // One masked binary frame (an all-zero mask key) filling all of it.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&((waiting - 14) as u64).to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        client_far.write_all(&header).expect("frame header");
        fill(&mut client_far, &client, 7, waiting - header.len());
        let session = Session { idle: Duration::from_secs(60), keepalive: Keepalive::default(), extensions: false };
        let mut pump = Pump::new(
            Stream::Plain(client),
            Vec::new(),
            Stream::Plain(backend),
            Vec::new(),
            session,
            std::future::pending::<Leave>(),
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut pump).poll(&mut cx).is_pending());
        let moved = pump.up.bytes;
        assert!(
            moved >= FAIR_SHARE_BYTES && moved <= FAIR_SHARE_BYTES + TUNNEL_READ_BYTES as u64,
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
