//! One request: check its framing, decide where it goes, pick a replica, and let
//! exchange.rs send it and relay.rs relay the answer. Retries happen only where the
//! request cannot have reached the application: a replica that could not be connected
//! to (any method), and, once, a request without a body whose replica failed before
//! any response byte.

use std::borrow::Cow;
use std::sync::Arc;

use crate::balance::{key_hash, Affinity, Failure, Outcome};
use crate::config::SharedBalancer;
use crate::h1::answer::{Answer, Body};
use crate::h1::chunked::check_prefix;
use crate::h1::framing::{request_framing, Framing};
use crate::h1::head::RequestHead;
use crate::h1::upgrade::{classify_upgrade, Upgrade};
use crate::net::connect::ConnectError;
use crate::net::stream::{with_timeout, Conn};
use crate::route::join_paths;
use crate::target::{Target, Url};
use crate::throttle;

use super::affinity::hash_key;
use super::decide::{decide, Decided, Destination, RouteBufs};
use super::error::{ProxyError, UpstreamError};
use super::exchange::{attempt, Tried};
use super::lease::Lease;
use super::relay::relay;
use super::request::Request;
use super::Next;

/// How much of a chunked body is read ahead to judge its first size line (a size line
/// may carry 4 KiB of extensions, `h1::chunked`).
const CHUNK_LOOKAHEAD_BYTES: usize = 16 * 1024;

/// What `OPTIONS *` is told: the methods sidecar forwards.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// Handles one request and says how the connection continues. Every error is answered
/// here (when the client can still be answered) and recorded in the request.
pub(super) async fn handle(req: &mut Request, client: &mut Conn) -> Next {
    match route_and_forward(req, client).await {
        Ok(next) => next,
        Err(e) => {
            // Connect failures were logged per attempt; other replica faults here.
            if let ProxyError::Upstream { cause, .. } = &e {
                if !matches!(cause, UpstreamError::Connect(_)) {
                    let route = req.record.route.map_or_else(|| "-".to_string(), |r| r.to_string());
                    throttle::warn(&format!("{route}: {e}"));
                }
            }
            if req.answer_error(client, &e).await {
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
    }
}

async fn route_and_forward(req: &mut Request, client: &mut Conn) -> Result<Next, ProxyError> {
    let framing = request_framing(&req.head).map_err(|e| ProxyError::BadRequest(e.0))?;
    req.framing = framing;
    req.progress.body_done = framing == Framing::None;
    if let (Framing::Length(n), Some(max)) = (framing, req.config.limits.max_body_bytes) {
        if n > max {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    if framing == Framing::Chunked {
        // Judge at least the first size line before anything reaches a backend (unless
        // the client waits for `100 Continue` before sending any of it).
        while check_prefix(client.buffered()).map_err(|e| ProxyError::BadRequest(e.0))? && !req.head.expects_continue()
        {
            match with_timeout(req.config.timeouts.header, client.fill(CHUNK_LOOKAHEAD_BYTES)).await {
                Ok(n) if n > 0 => {}
                Ok(_) => return Err(ProxyError::BadRequest("connection closed inside a chunk size line")),
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => break,
                Err(e) => return Err(ProxyError::ClientGone(e)),
            }
        }
    }
    let upgrade = classify_upgrade(&req.head);
    if let Upgrade::Invalid(why) = upgrade {
        return Err(ProxyError::BadRequest(why));
    }
    // The destination borrows the config and the routing buffers, not the request,
    // which forwarding goes on changing: a handle of its own on the config, and the
    // buffers out of the request's scratch until the request is done with them.
    let config = Arc::clone(&req.config);
    let mut bufs = std::mem::take(&mut req.scratch().route);
    let result = route_with(req, client, &config, upgrade, &mut bufs).await;
    req.scratch().route = bufs;
    result
}

async fn route_with(
    req: &mut Request,
    client: &mut Conn,
    config: &crate::config::Config,
    upgrade: Upgrade,
    bufs: &mut RouteBufs,
) -> Result<Next, ProxyError> {
    let dest = match decide(config, &req.head, &req.info, upgrade, bufs)? {
        Decided::Forward(d) => d,
        Decided::Redirect { status, location, label } => {
            req.record.route = Some(label);
            let close = req.answer(client, Answer::new(status).location(&location)).await?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
        Decided::OptionsStar => {
            let answer = Answer::new(200).allow(ALLOWED_METHODS).body(Body::Empty);
            let close = req.answer(client, answer).await?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
    };
    req.record.route = Some(dest.label);
    forward(req, &dest, client).await
}

/// Sends the request to a replica of `dest` and relays the answer, trying another
/// replica where that is safe.
async fn forward(req: &mut Request, dest: &Destination<'_>, client: &mut Conn) -> Result<Next, ProxyError> {
    // A balanced request picks into buffers out of its scratch: the members it tried
    // and the URL of the one it is on.
    let mut tried = std::mem::take(&mut req.scratch().tried);
    let mut member = req.scratch().member.take();
    tried.clear();
    let result = forward_with(req, dest, client, &mut tried, &mut member).await;
    let scratch = req.scratch();
    scratch.tried = tried;
    scratch.member = member;
    result
}

async fn forward_with(
    req: &mut Request,
    dest: &Destination<'_>,
    client: &mut Conn,
    tried: &mut Vec<usize>,
    member: &mut Option<Url>,
) -> Result<Next, ProxyError> {
    let upstream = match &*dest.target {
        Target::Url(u) => Upstream::Direct(u),
        Target::Balancer { name, .. } => {
            Upstream::Balanced(Arc::clone(req.config.balancer(name).ok_or(ProxyError::NoRoute("unknown balancer"))?))
        }
    };
    let (max_attempts, sticky, key) = match &upstream {
        Upstream::Direct(_) => (1, None, None),
        Upstream::Balanced(b) => {
            let b = b.lock();
            let spec = b.spec();
            let hashed = spec.hash.as_ref().and_then(|h| hash_key(&req.head, &h.source, &req.info.peer_ip));
            (
                spec.max_attempts as usize,
                spec.sticky_session.as_deref().and_then(|c| sticky_route(&req.head, c)),
                hashed.map(key_hash),
            )
        }
    };
    let replayable = req.framing == Framing::None
        && matches!(req.head.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE");
    let mut replayed = false;
    let mut last_error = None;
    for _ in 0..max_attempts {
        let url = match &upstream {
            Upstream::Direct(url) => *url,
            Upstream::Balanced(b) => {
                match Lease::pick(b, tried, Affinity { sticky_route: sticky.as_deref(), hash_key: key }, member) {
                    Ok((lease, url)) => {
                        tried.push(lease.member());
                        req.lease = Some(lease);
                        url
                    }
                    Err(retry_after) => {
                        return Err(ProxyError::AllReplicasDown { balancer: b.name.clone(), retry_after })
                    }
                }
            }
        };
        // A direct target's own path is already in `upstream_target`; a member's goes
        // in front of it.
        let target = match &upstream {
            Upstream::Balanced(_) if url.path != "/" => Cow::Owned(join_paths(&url.path, dest.upstream_target)),
            _ => Cow::Borrowed(dest.upstream_target),
        };
        req.record.tries += 1;
        req.note_replica(url);
        #[cfg(debug_assertions)]
        panic_for_tests(&req.head.target);
        let failed = |cause: UpstreamError| ProxyError::Upstream { replica: url.origin(), cause };
        match attempt(req, dest, client, url, &target).await {
            Tried::Response(backend, res) => {
                let failed_status = req.lease.as_ref().is_some_and(|l| l.is_failure_status(res.status));
                let status = res.status;
                let result = relay(req, dest, client, url, backend, res).await;
                if let Some(lease) = req.lease.as_mut() {
                    lease.report(match &result {
                        Err(ProxyError::Upstream { cause, .. }) => outcome_of(cause),
                        _ if failed_status => Outcome::Failure(Failure::Status(status)),
                        _ => Outcome::Success,
                    });
                    lease.add_bytes(req.record.bytes.unwrap_or(0));
                }
                if let Ok(Next::Tunnel(..)) = &result {
                    req.lease = req.lease.take().map(Lease::into_tunnel);
                }
                return result;
            }
            Tried::ConnectFailed(ConnectError::Local(e)) => {
                // Out of descriptors or buffers here: another replica would fail the
                // same way, and this one is not to blame.
                throttle::error(&format!("{}: no backend connection: {e}", url.origin()));
                end_attempt(req, Outcome::Abandoned);
                return Err(ProxyError::Shortage(e));
            }
            Tried::ConnectFailed(e) => {
                // Nothing was sent: another replica may take it, whatever the method.
                throttle::warn(&format!("{}: {e}", url.origin()));
                req.counts.connect_errors += 1;
                let cause = UpstreamError::Connect(e);
                end_attempt(req, outcome_of(&cause));
                last_error = Some(failed(cause));
            }
            Tried::Failed(cause) => {
                end_attempt(req, outcome_of(&cause));
                // No response byte arrived: a request without a body may go once more,
                // to another replica; one whose body was sent never is.
                if matches!(upstream, Upstream::Balanced(_)) && replayable && !replayed {
                    throttle::warn(&format!("{}: {cause}; retrying on another replica", url.origin()));
                    replayed = true;
                    last_error = Some(failed(cause));
                    continue;
                }
                return Err(failed(cause));
            }
            Tried::Client(e) => {
                end_attempt(req, Outcome::Abandoned);
                return Err(e);
            }
        }
    }
    // Every attempt failed. If no replica could take a request now, every replica is
    // down: 503 with Retry-After.
    if let Upstream::Balanced(b) = &upstream {
        if let Some(retry_after) = all_down(b, tried) {
            return Err(ProxyError::AllReplicasDown { balancer: b.name.clone(), retry_after });
        }
    }
    Err(last_error.unwrap_or(ProxyError::NoRoute("no replica configured")))
}

/// Debug builds only: a request whose target is `$SIDECAR_TEST_PANIC_TARGET` panics
/// here, while it holds a balancer lease, so the integration tests can show that a
/// panicking connection task gives its member's count back and nobody else notices.
#[cfg(debug_assertions)]
fn panic_for_tests(target: &str) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = TARGET.get_or_init(|| std::env::var("SIDECAR_TEST_PANIC_TARGET").ok());
    if armed.as_deref() == Some(target) {
        panic!("SIDECAR_TEST_PANIC_TARGET: panicking on {target} as asked");
    }
}

/// Where the replicas of a destination come from.
enum Upstream<'d> {
    /// One fixed backend.
    Direct(&'d Url),
    Balanced(Arc<SharedBalancer>),
}

/// Reports a failed attempt and gives its member's count back.
fn end_attempt(req: &mut Request, outcome: Outcome) {
    if let Some(mut lease) = req.lease.take() {
        lease.report(outcome);
    }
}

/// After every attempt failed: `Some(retry_after)` when no member could take a
/// request now, or every member was tried.
fn all_down(balancer: &SharedBalancer, tried: &[usize]) -> Option<std::time::Duration> {
    let b = balancer.lock();
    let now = std::time::Instant::now();
    (!b.usable(now) || tried.len() == b.spec().replicas.len()).then(|| b.retry_after(now))
}

/// What the balancer is told about an upstream error.
fn outcome_of(cause: &UpstreamError) -> Outcome {
    Outcome::Failure(match cause {
        // Sidecar's own shortage says nothing about the member.
        UpstreamError::Connect(ConnectError::Local(_)) => return Outcome::Abandoned,
        UpstreamError::Connect(ConnectError::Resolve(_)) => Failure::Resolve,
        UpstreamError::Connect(ConnectError::Refused(_)) => Failure::ConnectRefused,
        UpstreamError::Connect(ConnectError::Timeout) => Failure::ConnectTimeout,
        UpstreamError::Connect(ConnectError::Tls(_)) => Failure::Tls,
        UpstreamError::Timeout => Failure::ResponseTimeout,
        UpstreamError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Failure::ResponseTimeout,
        UpstreamError::Io(_) | UpstreamError::Closed => Failure::Reset,
        UpstreamError::Malformed(_) | UpstreamError::BadSwitch(_) => Failure::Malformed,
    })
}

/// The route part of the sticky cookie `name` (Apache: the value after its last '.').
pub(crate) fn sticky_route(head: &RequestHead, name: &str) -> Option<String> {
    let v = head.cookie(name)?;
    let route = v.rsplit(|&b| b == b'.').next().unwrap_or(v);
    Some(String::from_utf8_lossy(route).into_owned())
}
