//! A WebSocket tunnel from the backend's 101 to its access line. Set-up: the 101 is
//! checked against the handshake (a 101 nobody asked for, or with a wrong
//! `Sec-WebSocket-Accept`, closes both sides: docs/security.md, B7 and W8), relayed to
//! the client, and the balancer lease becomes an open tunnel on its member. Run: frames
//! move in pump.rs until both sides close, the idle timeout, or sidecar closes the
//! tunnel itself (drain, the member's removal, an unanswered Ping, broken framing).
//! Tear-down: the tunnel's byte counts go to the lease, the metrics and the access line.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::h1::framing::Framing;
use crate::h1::head::{ResponseHead, Version};
use crate::h1::headers::ClientConnection;
use crate::h1::upgrade::check_switch;
use crate::net::stream::Conn;
use crate::server::Worker;
use crate::target::Url;

use super::decide::Destination;
use super::error::{ProxyError, UpstreamError};
use super::pump::{self, Cause, Leave, Session, TunnelEnd};
use super::request::Request;
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

/// Runs the tunnel of `req` until it ends, then writes its access line.
pub(super) async fn run(mut req: Box<Request>, client: Conn, backend: Conn, session: Session) {
    // A tunnel may stay open for hours; its request head and buffers are not needed
    // any more, and the worker's next request can use them.
    req.release_scratch();
    let worker = Rc::clone(&req.worker);
    let worker = &*worker;
    let open = OpenTunnel::new(worker);
    let (client_stream, to_backend) = client.into_parts();
    let (backend_stream, to_client) = backend.into_parts();
    let timeouts = req.config.timeouts;
    let lease = req.lease.as_ref();
    // Draining, or the member left: a Close at this tunnel's moment in `drain_spread`,
    // and `drain_timeout` for the closing handshake.
    let leave = async {
        let member_left = async {
            match lease {
                Some(lease) => lease.member_left().await,
                None => std::future::pending().await,
            }
        };
        let cause = futures_lite::future::or(
            async {
                worker.shutdown().await;
                Cause::Drain
            },
            async {
                member_left.await;
                Cause::MemberLeft
            },
        )
        .await;
        let after = match cause {
            Cause::Drain => worker.drain_close_offset(timeouts.drain_spread),
            _ => spread_at_random(timeouts.drain_spread),
        };
        Leave { cause, after, within: timeouts.drain }
    };
    let stats = pump::run(client_stream, to_backend, backend_stream, to_client, session, leave).await;
    drop(open);
    req.record.tunnel = Some((stats.up, stats.down));
    if stats.end != TunnelEnd::Closed {
        req.record.reason = Some(format!("tunnel ended: {}", stats.end));
    }
    if let Some(lease) = req.lease.as_mut() {
        lease.add_bytes(stats.up + stats.down);
    }
    req.finish();
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

/// Counts an open tunnel in the metrics and on its worker for as long as it lives,
/// panics included.
struct OpenTunnel<'w>(&'w Worker);

impl<'w> OpenTunnel<'w> {
    fn new(worker: &'w Worker) -> Self {
        worker.metrics().open_tunnels.fetch_add(1, Relaxed);
        worker.tunnel_opened();
        Self(worker)
    }
}

impl Drop for OpenTunnel<'_> {
    fn drop(&mut self) {
        self.0.metrics().open_tunnels.fetch_sub(1, Relaxed);
        self.0.tunnel_closed();
    }
}
