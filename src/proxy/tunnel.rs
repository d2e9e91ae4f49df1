//! A WebSocket tunnel from the backend's 101 to its access line. Set-up: the 101 is
//! checked against the handshake (a 101 nobody asked for, or with a wrong
//! `Sec-WebSocket-Accept`, closes both sides: docs/security.md, B7 and W8), relayed to
//! the client, and the balancer lease becomes an open tunnel on its member. Run: frames
//! move in pump.rs until both sides close, the idle timeout, or sidecar closes the
//! tunnel itself (drain, the member's removal, an unanswered Ping, broken framing).
//! Tear-down: the tunnel's byte counts go to the lease, the metrics and the access line.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::config::MemberRemoved;
use crate::h1::framing::Framing;
use crate::h1::head::{ResponseHead, Version};
use crate::h1::headers::ClientConnection;
use crate::h1::upgrade::check_switch;
use crate::net::stream::Conn;
use crate::rt::{Signal, Wait};
use crate::server::{OpenConnection, Worker};
use crate::target::Url;

use super::decide::Destination;
use super::error::{ProxyError, UpstreamError};
use super::lease::Lease;
use super::pump::{self, Cause, Leave, Session, TunnelEnd, TunnelStats};
use super::request::{Request, RequestEnd};
use super::Next;

/// Accepts a backend's 101 for `req`: checks it and relays it to the client. The caller
/// counts the tunnel on the member (`Lease::into_tunnel`) and runs it with `run`.
pub(super) async fn switch(
    req: &mut Request,
    dest: &Destination<'_>,
    client: &mut Conn,
    url: &Url,
    backend: Conn,
    res: &ResponseHead,
) -> Result<Next, ProxyError> {
    let bad_switch =
        |why: &str| ProxyError::Upstream { replica: url.origin(), cause: UpstreamError::BadSwitch(why.to_string()) };
    if !dest.websocket {
        return Err(bad_switch("101 to a request that was not a WebSocket handshake"));
    }
    check_switch(&req.head, res).map_err(bad_switch)?;
    let mut out = std::mem::take(&mut req.scratch().out);
    out.clear();
    req.write_client_head(res, dest, Version::Http11, Framing::None, ClientConnection::Upgrade, &mut out);
    let written = client.write_flush(&out).await;
    req.scratch().out = out;
    written.map_err(ProxyError::ClientGone)?;
    req.progress.responded = true;
    let session = Session {
        idle: req.config.timeouts.tunnel_idle,
        keepalive: dest.keepalive,
        extensions: res.headers.get("sec-websocket-extensions").is_some(),
    };
    Ok(Next::Tunnel(backend, session))
}

/// The tunnel of `req`, to run as a task of its own until it ends; it then writes its
/// access line. It may stay open for hours, so the task holds only what relaying and
/// the access line need: the pump, the request's record and lease, and the counts.
pub(super) fn run(
    req: Box<RequestEnd>,
    client: Conn,
    backend: Conn,
    session: Session,
    connection: OpenConnection,
) -> impl Future<Output = ()> {
    let worker = Rc::clone(&req.worker);
    worker.metrics().open_tunnels.fetch_add(1, Relaxed);
    worker.tunnel_opened();
    let (client_stream, to_backend) = client.into_parts();
    let (backend_stream, to_client) = backend.into_parts();
    let timeouts = &req.config.timeouts;
    let leave = LeaveWatch {
        drain: worker.shutdown_owned(),
        member: req.lease.as_ref().map(Lease::member_left),
        worker,
        spread: timeouts.drain_spread,
        within: timeouts.drain,
    };
    let pump = pump::run(client_stream, to_backend, backend_stream, to_client, session, leave);
    Running { pump, req: Some(*req), _connection: connection }
}

/// A tunnel's task: a plain struct rather than an `async` block, which would keep
/// room for its arguments beside the pump they were moved into.
struct Running<P> {
    pump: P,
    /// `None` once the access line is written.
    req: Option<RequestEnd>,
    _connection: OpenConnection,
}

impl<P: Future<Output = TunnelStats> + Unpin> Future for Running<P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let stats = std::task::ready!(Pin::new(&mut self.pump).poll(cx));
        let Some(mut req) = self.req.take() else { return Poll::Ready(()) };
        tunnel_closed(&req.worker);
        req.record.tunnel = Some((stats.up, stats.down));
        if stats.end != TunnelEnd::Closed {
            req.record.reason = Some(format!("tunnel ended: {}", stats.end));
        }
        if let Some(lease) = req.lease.as_mut() {
            lease.add_bytes(stats.up + stats.down);
        }
        req.finish();
        Poll::Ready(())
    }
}

/// An open tunnel is counted in the metrics and on its worker for as long as its task
/// lives, panics included.
impl<P> Drop for Running<P> {
    fn drop(&mut self) {
        if let Some(req) = &self.req {
            tunnel_closed(&req.worker);
        }
    }
}

fn tunnel_closed(worker: &Worker) {
    worker.metrics().open_tunnels.fetch_sub(1, Relaxed);
    worker.tunnel_closed();
}

/// When a tunnel is to leave: the worker drains (SIGTERM), or the tunnel's member
/// left the balancer. Its Close goes at this tunnel's moment in `drain_spread`, and the
/// closing handshake gets `drain_timeout`. Every open tunnel holds one, so it is a
/// plain struct rather than an `async` block over two futures.
struct LeaveWatch {
    worker: Rc<Worker>,
    drain: Wait<Rc<Signal>>,
    member: Option<MemberRemoved>,
    spread: Duration,
    within: Duration,
}

impl Future for LeaveWatch {
    type Output = Leave;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Leave> {
        let (cause, after) = if Pin::new(&mut self.drain).poll(cx).is_ready() {
            (Cause::Drain, self.worker.drain_close_offset(self.spread))
        } else if self.member.as_mut().is_some_and(|m| Pin::new(m).poll(cx).is_ready()) {
            self.member = None;
            (Cause::MemberLeft, spread_at_random(self.spread))
        } else {
            return Poll::Pending;
        };
        Poll::Ready(Leave { cause, after, within: self.within })
    }
}

/// A moment in `spread` for a member's tunnel: members leave one at a time, so there is
/// no count to divide by; uniform moments spread the reconnects all the same.
fn spread_at_random(spread: Duration) -> Duration {
    let nanos = spread.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(pump::random() % nanos)
}
