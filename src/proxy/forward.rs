//! One request: decide, pick a replica, send the head and body, read the answer, relay
//! it or switch to a tunnel. Retries happen only where the request cannot have reached
//! the application (STYLE §3): a stale pooled connection that died before any response
//! byte, and a replica that could not be connected to.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::{AccessFormat, AccessRecord};
use crate::balance::{Attempt, Failure, Outcome, Pick, Work};
use crate::config::{Config, SharedBalancer};
use crate::h1::canned::canned;
use crate::h1::chunked::check_prefix;
use crate::h1::framing::{request_framing, Framing};
use crate::h1::head::RequestHead;
use crate::h1::upgrade::{classify_upgrade, Upgrade};
use crate::net::connect::ConnectError;
use crate::net::stream::{with_timeout, Conn};
use crate::target::{Target, Url};

use super::decide::{decide, Decided, Destination};
use super::error::{ProxyError, UpstreamError};
use super::exchange::{attempt, Tried};
use super::relay::relay;
use super::{finish, ClientInfo, Next, Worker};

/// How much of a chunked body is read ahead to judge its first size line (a size line
/// may carry 4 KiB of extensions, `h1::chunked`).
const CHUNK_LOOKAHEAD_BYTES: usize = 16 * 1024;

/// The facts of one request that every step reads.
#[derive(Clone, Copy)]
pub(super) struct Exchange<'a> {
    pub w: &'a Worker,
    /// The config the request started with, kept even if a reload lands meanwhile.
    pub config: &'a Config,
    pub info: &'a ClientInfo,
    pub head: &'a RequestHead,
    pub framing: Framing,
    pub dest: &'a Destination,
}

/// Where the request stands, so an error is answered correctly.
pub(super) struct Progress {
    /// When the request head started arriving.
    pub started: Instant,
    /// The request body has been read completely from the client (or there was none).
    pub body_done: bool,
    /// Bytes of the response have reached the client: no error page can follow.
    pub responded: bool,
    /// A `100 Continue` went to the client.
    pub sent_continue: bool,
}

/// Handles one request and says how the connection continues.
pub async fn handle(w: &Worker, client: &mut Conn, info: &ClientInfo, head: RequestHead, started: Instant) -> Next {
    // One config for the whole request, even if a reload lands meanwhile.
    let config = w.config();
    let mut record =
        AccessRecord { peer: Some(info.peer), request_line: Some(head.request_line()), ..Default::default() };
    if config.access_log != AccessFormat::Off {
        let header = |name| head.headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
        record.referer = header("Referer");
        record.user_agent = header("User-Agent");
    }
    let mut progress = Progress { started, body_done: true, responded: false, sent_continue: false };
    let result = run(w, &config, client, info, &head, &mut record, &mut progress).await;
    record.elapsed = started.elapsed();
    match result {
        Ok(Next::Tunnel(mut upgraded)) => {
            upgraded.started = started;
            Next::Tunnel(upgraded)
        }
        Ok(next) => {
            finish(w, &record);
            next
        }
        Err(e) => {
            record.reason = Some(e.to_string());
            let close = e.closes_connection() || !progress.body_done || progress.responded;
            if let (Some(status), false) = (e.status(), progress.responded) {
                record.status = status;
                let retry_after;
                let extra: &[(&str, &str)] = match &e {
                    ProxyError::AllReplicasDown { retry_after: r, .. } => {
                        retry_after = r.as_secs().max(1).to_string();
                        &[("Retry-After", retry_after.as_str())]
                    }
                    _ => &[],
                };
                let _ = client.write_all(&canned(status, extra, close)).await;
                let _ = client.flush().await;
            }
            // Connect failures were logged per attempt; other replica faults here.
            if let ProxyError::Upstream { cause, .. } = &e {
                if !matches!(cause, UpstreamError::Connect(_)) {
                    log::warn!("{}: {e}", record.label_or_dash());
                }
            }
            finish(w, &record);
            if close {
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
    }
}

impl AccessRecord {
    fn label_or_dash(&self) -> &str {
        self.route.as_deref().unwrap_or("-")
    }
}

async fn run(
    w: &Worker,
    config: &Config,
    client: &mut Conn,
    info: &ClientInfo,
    head: &RequestHead,
    record: &mut AccessRecord,
    progress: &mut Progress,
) -> Result<Next, ProxyError> {
    let framing = request_framing(head).map_err(|e| ProxyError::BadRequest(e.0))?;
    if let (Framing::Length(n), Some(max)) = (framing, config.limits.max_body_bytes) {
        if n > max {
            progress.body_done = false;
            return Err(ProxyError::BodyTooLarge);
        }
    }
    progress.body_done = framing == Framing::None;
    if framing == Framing::Chunked {
        // Judge at least the first size line before anything reaches a backend (unless
        // the client waits for `100 Continue` before sending any of it).
        while check_prefix(client.buffered()).map_err(|e| ProxyError::BadRequest(e.0))? && !head.expects_continue() {
            match with_timeout(config.timeouts.header, client.fill(CHUNK_LOOKAHEAD_BYTES)).await {
                Ok(n) if n > 0 => {}
                Ok(_) => return Err(ProxyError::BadRequest("connection closed inside a chunk size line")),
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => break,
                Err(e) => return Err(ProxyError::ClientGone(e)),
            }
        }
    }
    let upgrade = classify_upgrade(head);
    if let Upgrade::Invalid(why) = upgrade {
        return Err(ProxyError::BadRequest(why));
    }
    let dest = match decide(config, head, info, upgrade)? {
        Decided::Forward(d) => d,
        Decided::Redirect { status, location, label } => {
            record.route = Some(label);
            record.status = status;
            let close = !progress.body_done;
            client
                .write_all(&canned(status, &[("Location", &location)], close))
                .await
                .map_err(ProxyError::ClientGone)?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
        Decided::OptionsStar => {
            record.status = 200;
            client
                .write_all(b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\nContent-Length: 0\r\n\r\n")
                .await
                .map_err(ProxyError::ClientGone)?;
            return Ok(if progress.body_done { Next::KeepAlive } else { Next::Close });
        }
    };
    record.route = Some(dest.label.clone());
    let x = Exchange { w, config, info, head, framing, dest: &dest };
    forward(&x, client, record, progress).await
}

/// Sends the request to a replica of `dest` and relays the answer, trying another
/// replica where that is safe (issue 4): after a failed connect whatever the method;
/// once, for a request without a body, after a replica failed before any response byte.
async fn forward(
    x: &Exchange<'_>,
    client: &mut Conn,
    record: &mut AccessRecord,
    progress: &mut Progress,
) -> Result<Next, ProxyError> {
    let Exchange { w, config, head, framing, dest, .. } = *x;
    let balancer = match &dest.target {
        Target::Url(_) => None,
        Target::Balancer { name, .. } => Some(config.balancer(name).ok_or(ProxyError::NoRoute("unknown balancer"))?),
    };
    let (max_attempts, sticky) = match balancer {
        None => (1, None),
        Some(b) => {
            let bal = b.lock();
            let spec = bal.spec();
            (spec.max_attempts as usize, spec.sticky_session.as_deref().and_then(|c| sticky_route(head, c)))
        }
    };
    let replayable = framing == Framing::None
        && matches!(head.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE");
    let mut tried: Vec<usize> = Vec::new();
    let mut replayed = false;
    let mut last_error = None;
    for _ in 0..max_attempts {
        let (url, lease) = match (balancer, &dest.target) {
            // The target's own path is already in `upstream_target`.
            (None, Target::Url(u)) => (Url { path: "/".to_string(), ..u.clone() }, None),
            (Some(b), _) => {
                let mut bal = b.lock();
                match bal.pick(Instant::now(), &tried, sticky.as_deref()) {
                    Pick::Replica(attempt) => {
                        bal.start(attempt.replica, Work::Request);
                        tried.push(attempt.replica);
                        (bal.spec().replicas[attempt.replica].url.clone(), Some(Lease { balancer: b, attempt }))
                    }
                    Pick::NoneAvailable { retry_after } => {
                        return Err(ProxyError::AllReplicasDown { balancer: b.name.clone(), retry_after })
                    }
                }
            }
            (None, Target::Balancer { .. }) => return Err(ProxyError::NoRoute("unknown balancer")),
        };
        record.tries += 1;
        record.replica = Some(url.origin());
        let upstream = |cause: UpstreamError| ProxyError::Upstream { replica: url.origin(), cause };
        match attempt(x, client, &url, progress).await {
            Tried::Response(backend, res) => {
                let status_failure =
                    lease.as_ref().is_some_and(|l| l.balancer.lock().is_failure_status(l.attempt.replica, res.status));
                let status = res.status;
                let result = relay(x, client, &url, backend, res, record, progress).await;
                if let Some(lease) = &lease {
                    let outcome = match &result {
                        Err(ProxyError::Upstream { cause, .. }) => Outcome::Failure(failure_of(cause)),
                        _ if status_failure => Outcome::Failure(Failure::Status(status)),
                        _ => Outcome::Success,
                    };
                    lease.report(outcome);
                    lease.finish(Work::Request, record.bytes.unwrap_or(0));
                }
                return match result {
                    Ok(Next::Tunnel(mut upgraded)) => {
                        if let Some(lease) = &lease {
                            lease.balancer.lock().start(lease.attempt.replica, Work::Tunnel);
                            upgraded.lease = Some((Arc::clone(lease.balancer), lease.attempt.replica));
                        }
                        Ok(Next::Tunnel(upgraded))
                    }
                    other => other,
                };
            }
            Tried::ConnectFailed(e) => {
                // Nothing was sent: another replica may take it, whatever the method.
                log::warn!("{}: {e}", url.origin());
                w.shared.metrics.connect_errors.fetch_add(1, Relaxed);
                let cause = UpstreamError::Connect(e);
                if let Some(lease) = &lease {
                    lease.report(Outcome::Failure(failure_of(&cause)));
                    lease.finish(Work::Request, 0);
                }
                last_error = Some(upstream(cause));
            }
            Tried::Failed(cause) => {
                if let Some(lease) = &lease {
                    lease.report(Outcome::Failure(failure_of(&cause)));
                    lease.finish(Work::Request, 0);
                }
                // No response byte arrived: a request without a body may go once more,
                // to another replica; one whose body was sent never is.
                if balancer.is_some() && replayable && !replayed {
                    log::warn!("{}: {cause}; retrying on another replica", url.origin());
                    replayed = true;
                    last_error = Some(upstream(cause));
                    continue;
                }
                return Err(upstream(cause));
            }
            Tried::Client(e) => {
                if let Some(lease) = &lease {
                    lease.report(Outcome::Abandoned);
                    lease.finish(Work::Request, 0);
                }
                return Err(e);
            }
        }
    }
    // Every attempt failed. If no replica could take a request now, that is SPEC §4's
    // "every replica down": 503 with Retry-After.
    if let Some(b) = balancer {
        let bal = b.lock();
        let now = Instant::now();
        if !bal.usable(now) || tried.len() == bal.spec().replicas.len() {
            let retry_after = bal.retry_after(now);
            return Err(ProxyError::AllReplicasDown { balancer: b.name.clone(), retry_after });
        }
    }
    Err(last_error.unwrap_or(ProxyError::NoRoute("no replica configured")))
}

/// One attempt's replica in a balancer, to report to.
struct Lease<'a> {
    balancer: &'a Arc<SharedBalancer>,
    attempt: Attempt,
}

impl Lease<'_> {
    fn report(&self, outcome: Outcome) {
        let change = self.balancer.lock().report(self.attempt, Instant::now(), outcome);
        if let Some(t) = change {
            if t.is_fault() {
                log::warn!("{t}");
            } else {
                log::info!("{t}");
            }
        }
    }

    fn finish(&self, work: Work, bytes: u64) {
        self.balancer.lock().finish(self.attempt.replica, work, bytes);
    }
}

/// What the balancer is told about an upstream error.
fn failure_of(cause: &UpstreamError) -> Failure {
    match cause {
        UpstreamError::Connect(ConnectError::Resolve(_)) => Failure::Resolve,
        UpstreamError::Connect(ConnectError::Refused(_)) => Failure::ConnectRefused,
        UpstreamError::Connect(ConnectError::Timeout) => Failure::ConnectTimeout,
        UpstreamError::Connect(ConnectError::Tls(_)) => Failure::Tls,
        UpstreamError::Timeout => Failure::ResponseTimeout,
        UpstreamError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Failure::ResponseTimeout,
        UpstreamError::Io(_) | UpstreamError::Closed => Failure::Reset,
        UpstreamError::Malformed(_) | UpstreamError::BadSwitch(_) => Failure::Malformed,
    }
}

/// The route part of the sticky cookie `name` (Apache: the value after its last '.').
fn sticky_route(head: &RequestHead, name: &str) -> Option<String> {
    head.headers.all("Cookie").flat_map(|v| v.split(|&b| b == b';')).find_map(|pair| {
        let pair = crate::h1::head::trim(pair);
        let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        (k == name.as_bytes()).then(|| {
            let v = &v[1..];
            let route = v.rsplit(|&b| b == b'.').next().unwrap_or(v);
            String::from_utf8_lossy(route).into_owned()
        })
    })
}
