//! One request: decide, pick a replica, send the head and body, read the answer, relay
//! it or switch to a tunnel. Retries happen only where the request cannot have reached
//! the application (STYLE §3): a stale pooled connection that died before any response
//! byte, and a replica that could not be connected to.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::AccessRecord;
use crate::balance::{Attempt, Failure, Outcome, Pick, Work};
use crate::config::{Config, SharedBalancer};
use crate::h1::canned::canned;
use crate::h1::chunked::check_prefix;
use crate::h1::framing::{request_framing, response_framing, Framing};
use crate::h1::head::{parse_response_head, HeadError, RequestHead, ResponseHead, Version};
use crate::h1::headers::{write_request_head, write_response_head, ClientConnection, Forwarding, Outgoing, CONTINUE};
use crate::h1::scan::HeadScanner;
use crate::h1::upgrade::{check_switch, classify_upgrade, Upgrade};
use crate::metrics::Metrics;
use crate::net::clock;
use crate::net::connect::{connect, ConnectError};
use crate::net::stream::{with_timeout, Conn};
use crate::route::{join_paths, reverse_url};
use crate::target::{Target, Url};

use super::body::{copy_body, CopyError, Encoding};
use super::decide::{decide, Decided, Destination};
use super::error::{ProxyError, UpstreamError};
use super::{finish, ClientInfo, Next, Upgraded, Worker};

/// How long to wait for a backend's `100 Continue` before sending the body anyway
/// (RFC 9110 §10.1.1: a client "MAY proceed to send content" without it; curl waits 1 s).
const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// How much of a chunked body is read ahead to judge its first size line (a size line
/// may carry 4 KiB of extensions, `h1::chunked`).
const CHUNK_LOOKAHEAD_BYTES: usize = 16 * 1024;

/// Where the request stands, so an error is answered correctly.
struct Progress {
    /// When the request head started arriving.
    started: Instant,
    /// The request body has been read completely from the client (or there was none).
    body_done: bool,
    /// Bytes of the response have reached the client: no error page can follow.
    responded: bool,
    /// A `100 Continue` went to the client.
    sent_continue: bool,
}

/// Handles one request and says how the connection continues.
pub async fn handle(w: &Worker, client: &mut Conn, info: &ClientInfo, head: RequestHead, started: Instant) -> Next {
    let mut record =
        AccessRecord { peer: Some(info.peer), request_line: Some(head.request_line()), ..Default::default() };
    let header = |name| head.headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
    record.referer = header("Referer");
    record.user_agent = header("User-Agent");
    let mut progress = Progress { started, body_done: true, responded: false, sent_continue: false };
    // One config for the whole request, even if a reload lands meanwhile.
    let config = w.config();
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
    forward(w, config, client, info, head, framing, &dest, record, progress).await
}

/// Sends the request to a replica of `dest` and relays the answer, trying another
/// replica where that is safe (issue 4): after a failed connect whatever the method;
/// once, for a request without a body, after a replica failed before any response byte.
#[allow(clippy::too_many_arguments)]
async fn forward(
    w: &Worker,
    config: &Config,
    client: &mut Conn,
    info: &ClientInfo,
    head: &RequestHead,
    framing: Framing,
    dest: &Destination,
    record: &mut AccessRecord,
    progress: &mut Progress,
) -> Result<Next, ProxyError> {
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
        match attempt(w, config, client, info, head, framing, dest, &url, progress).await {
            Tried::Response(backend, res) => {
                let status_failure =
                    lease.as_ref().is_some_and(|l| l.balancer.lock().is_failure_status(l.attempt.replica, res.status));
                let status = res.status;
                let result = relay(w, config, client, info, head, dest, &url, backend, res, record, progress).await;
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
        let all: Vec<usize> = (0..b.lock().spec().replicas.len()).collect();
        let mut bal = b.lock();
        if !bal.usable(Instant::now()) || tried.len() == all.len() {
            if let Pick::NoneAvailable { retry_after } = bal.pick(Instant::now(), &all, None) {
                return Err(ProxyError::AllReplicasDown { balancer: b.name.clone(), retry_after });
            }
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

/// How one attempt on one replica went, up to the response head.
enum Tried {
    Response(Conn, ResponseHead),
    ConnectFailed(ConnectError),
    /// The replica failed before any response byte.
    Failed(UpstreamError),
    /// The client's side failed: no verdict on the replica.
    Client(ProxyError),
}

/// Connects (or reuses a pooled connection: a stale one is replaced by a fresh one
/// once, for a request that can be replayed), sends the request, reads the head.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    w: &Worker,
    config: &Config,
    client: &mut Conn,
    info: &ClientInfo,
    head: &RequestHead,
    framing: Framing,
    dest: &Destination,
    url: &Url,
    progress: &mut Progress,
) -> Tried {
    let target =
        if url.path == "/" { dest.upstream_target.clone() } else { join_paths(&url.path, &dest.upstream_target) };
    let host = match (dest.preserve_host, head.headers.get("Host")) {
        (true, Some(h)) => String::from_utf8_lossy(h).into_owned(),
        _ => url.authority(),
    };
    let outgoing = Outgoing { target: &target, host: &host, framing, websocket: dest.websocket };
    let via = config.via.then(|| config.server_name.as_deref().unwrap_or("sidecar"));
    let fwd = Forwarding { peer_ip: &info.peer_ip, proto: if info.https { "https" } else { "http" }, via };
    let mut fresh_only = false;
    loop {
        let pooled = if fresh_only { None } else { w.pool.take(url, Instant::now()) };
        let reused = pooled.is_some();
        let counter = if reused { &w.shared.metrics.pool_reused } else { &w.shared.metrics.pool_new };
        counter.fetch_add(1, Relaxed);
        let mut backend = match pooled {
            Some(c) => c,
            None => match connect(url, &config.backend_tls, config.timeouts.connect).await {
                Ok(c) => c,
                Err(e) => return Tried::ConnectFailed(e),
            },
        };
        let mut out = Vec::with_capacity(512);
        write_request_head(head, &outgoing, &fwd, &mut out);
        match send(config, &w.shared.metrics, client, &mut backend, head, framing, out, progress, url).await {
            Ok(Sent::Response(res)) => return Tried::Response(backend, res),
            Ok(Sent::Failed(cause)) => {
                // A pooled connection the backend closed just now says nothing about
                // the replica: try a fresh one, if the request can be sent again.
                if reused && progress.body_done && framing == Framing::None && !fresh_only {
                    log::debug!("{}: pooled connection failed ({cause}), retrying on a fresh one", url.origin());
                    fresh_only = true;
                    continue;
                }
                return Tried::Failed(cause);
            }
            Err(ProxyError::Upstream { cause, .. }) => return Tried::Failed(cause),
            Err(e) => return Tried::Client(e),
        }
    }
}

enum Sent {
    /// The final (or 101) response head from the backend.
    Response(ResponseHead),
    /// The backend failed before any response byte.
    Failed(UpstreamError),
}

/// Writes head and body, reads the response head (relaying `100 Continue`).
#[allow(clippy::too_many_arguments)]
async fn send(
    config: &Config,
    metrics: &Metrics,
    client: &mut Conn,
    backend: &mut Conn,
    head: &RequestHead,
    framing: Framing,
    mut out: Vec<u8>,
    progress: &mut Progress,
    url: &Url,
) -> Result<Sent, ProxyError> {
    let timeouts = &config.timeouts;
    // A small body already in hand goes out with the head, in one write.
    if let Framing::Length(n) = framing {
        if !head.expects_continue() && client.buffered().len() as u64 >= n {
            out.extend_from_slice(&client.buffered()[..n as usize]);
            client.consume(n as usize);
            progress.body_done = true;
            metrics.bytes_in.fetch_add(n, Relaxed);
        }
    }
    if let Err(e) = write_flush(backend, &out).await {
        return Ok(Sent::Failed(UpstreamError::Io(e)));
    }
    if !progress.body_done {
        if head.expects_continue() && !progress.sent_continue {
            let early = futures_lite::future::or(
                async { Some(read_response_head(backend, head, timeouts.proxy).await) },
                async {
                    clock::sleep(EXPECT_WAIT).await;
                    None
                },
            )
            .await;
            match early {
                Some(Ok(res)) if res.status == 100 => {
                    client.write_all(CONTINUE).await.map_err(ProxyError::ClientGone)?;
                    progress.sent_continue = true;
                }
                // A final answer before the body: relay it; the unread body means the
                // client connection closes after it (`body_done` stays false).
                Some(Ok(res)) => return Ok(Sent::Response(res)),
                Some(Err(e)) => return Ok(Sent::Failed(e)),
                None => {
                    client.write_all(CONTINUE).await.map_err(ProxyError::ClientGone)?;
                    progress.sent_continue = true;
                }
            }
        }
        let encoding = if framing == Framing::Chunked { Encoding::Chunked } else { Encoding::Raw };
        match copy_body(
            client,
            &mut backend.stream,
            framing,
            encoding,
            timeouts.proxy,
            Vec::new(),
            config.limits.max_body_bytes,
        )
        .await
        {
            Ok(n) => {
                progress.body_done = true;
                metrics.bytes_in.fetch_add(n, Relaxed);
            }
            Err(CopyError::Write(e)) => {
                return Err(ProxyError::Upstream { replica: url.origin(), cause: UpstreamError::Io(e) })
            }
            Err(CopyError::Chunk(why)) => return Err(ProxyError::BadRequest(why)),
            Err(CopyError::TooLarge) => return Err(ProxyError::BodyTooLarge),
            Err(CopyError::Read(e)) => return Err(ProxyError::ClientGone(e)),
            Err(CopyError::Truncated) => {
                return Err(ProxyError::ClientGone(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "client closed inside the request body",
                )))
            }
        }
    }
    loop {
        match read_response_head(backend, head, timeouts.proxy).await {
            Ok(res) if res.status == 100 => {
                if head.expects_continue() && !progress.sent_continue {
                    client.write_all(CONTINUE).await.map_err(ProxyError::ClientGone)?;
                    progress.sent_continue = true;
                }
            }
            // 102/103 and other interim answers are dropped; the final one follows.
            Ok(res) if res.status != 101 && res.status < 200 => {}
            Ok(res) => return Ok(Sent::Response(res)),
            Err(e) => return Ok(Sent::Failed(e)),
        }
    }
}

async fn write_flush(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    conn.write_all(bytes).await?;
    conn.flush().await
}

/// The backend's response head, within `limit`. Cancel-safe: bytes read stay in the
/// connection's buffer.
async fn read_response_head(
    backend: &mut Conn,
    head: &RequestHead,
    limit: Duration,
) -> Result<ResponseHead, UpstreamError> {
    let _ = head;
    let max = crate::h1::head::MAX_RESPONSE_HEAD_BYTES;
    let read = async {
        let mut scanner = HeadScanner::default();
        loop {
            if !backend.buffered().is_empty() {
                match scanner.scan(backend.buffered(), max) {
                    Ok(Some(len)) => {
                        let res = parse_response_head(&backend.buffered()[..len]).map_err(|e| match e {
                            HeadError::TooLarge => UpstreamError::Malformed("response head too large".into()),
                            e => UpstreamError::Malformed(e.to_string()),
                        })?;
                        backend.consume(len);
                        return Ok(res);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(UpstreamError::Malformed(HeadError::from(e).to_string())),
                }
            }
            match backend.fill(max).await {
                Ok(0) if backend.buffered().is_empty() => return Err(UpstreamError::Closed),
                Ok(0) => return Err(UpstreamError::Malformed("closed inside the response head".into())),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                    return Err(UpstreamError::Malformed("response head too large".into()))
                }
                Err(e) => return Err(UpstreamError::Io(e)),
            }
        }
    };
    futures_lite::future::or(read, async {
        clock::sleep(limit).await;
        Err(UpstreamError::Timeout)
    })
    .await
}

/// Relays a response (or opens the tunnel) and returns the backend connection to the
/// pool when it is clean.
#[allow(clippy::too_many_arguments)]
async fn relay(
    w: &Worker,
    config: &Config,
    client: &mut Conn,
    info: &ClientInfo,
    head: &RequestHead,
    dest: &Destination,
    url: &Url,
    mut backend: Conn,
    res: ResponseHead,
    record: &mut AccessRecord,
    progress: &mut Progress,
) -> Result<Next, ProxyError> {
    let replica = url.origin();
    let bad = |why: String| ProxyError::Upstream { replica: replica.clone(), cause: UpstreamError::Malformed(why) };
    let via = config.via.then(|| config.server_name.as_deref().unwrap_or("sidecar"));
    let reverse = |v: &[u8]| {
        if !dest.reverse {
            return None;
        }
        reverse_url(v, &config.reverse, &front_origin(config.server_name.as_deref(), head, info))
    };
    record.status = res.status;
    record.ttfb = Some(progress.started.elapsed());
    if res.status == 101 {
        let bad_switch = |why: &str| ProxyError::Upstream {
            replica: replica.clone(),
            cause: UpstreamError::BadSwitch(why.to_string()),
        };
        if !dest.websocket {
            return Err(bad_switch("101 to a request that was not a WebSocket handshake"));
        }
        check_switch(head, &res).map_err(bad_switch)?;
        let mut out = Vec::with_capacity(256);
        write_response_head(&res, Version::Http11, Framing::None, ClientConnection::Upgrade, via, &reverse, &mut out);
        write_flush(client, &out).await.map_err(ProxyError::ClientGone)?;
        progress.responded = true;
        return Ok(Next::Tunnel(Box::new(Upgraded {
            backend,
            record: std::mem::take(record),
            started: Instant::now(),
            lease: None,
        })));
    }
    let rf = response_framing(&head.method, &res).map_err(|e| bad(e.0.to_string()))?;
    let client_11 = head.version == Version::Http11;
    let (client_framing, encoding) = match rf.framing {
        Framing::None => (Framing::None, Encoding::Raw),
        Framing::Length(n) => (Framing::Length(n), Encoding::Raw),
        // A close-delimited body is re-chunked for a 1.1 client, so its connection
        // survives; an HTTP/1.0 client gets it until close.
        Framing::Chunked | Framing::UntilClose if client_11 => (Framing::Chunked, Encoding::Chunked),
        Framing::Chunked | Framing::UntilClose => (Framing::UntilClose, Encoding::Raw),
    };
    let keep_alive =
        head.wants_keep_alive() && progress.body_done && client_framing != Framing::UntilClose && !w.draining.get();
    let connection = if keep_alive { ClientConnection::KeepAlive } else { ClientConnection::Close };
    let mut out = Vec::with_capacity(512);
    write_response_head(&res, head.version, client_framing, connection, via, &reverse, &mut out);
    progress.responded = true;
    let backend_keeps = rf.reusable
        && rf.framing != Framing::UntilClose
        && progress.body_done
        && match res.version {
            Version::Http11 => !res.headers.has_token("Connection", "close"),
            Version::Http10 => res.headers.has_token("Connection", "keep-alive"),
        };
    match copy_body(&mut backend, &mut client.stream, rf.framing, encoding, config.timeouts.proxy, out, None).await {
        Ok(n) => record.bytes = Some(n),
        Err(CopyError::Write(e)) => return Err(ProxyError::ClientGone(e)),
        Err(e) => {
            // The client has the head and part of the body: it must see truncation,
            // so its connection closes without a last chunk (SECURITY B5).
            let why = match e {
                CopyError::Chunk(why) => format!("bad chunked body: {why}"),
                CopyError::Read(e) => format!("body read failed: {e}"),
                _ => "closed inside the body".to_string(),
            };
            return Err(bad(why));
        }
    }
    if backend_keeps {
        w.pool.put(url, backend, Instant::now());
    }
    Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
}

/// The client-facing `scheme://host` that ProxyPassReverse writes (Apache uses the
/// request's Host unless `UseCanonicalName On`).
fn front_origin(server_name: Option<&str>, head: &RequestHead, info: &ClientInfo) -> String {
    let scheme = if info.https { "https" } else { "http" };
    let host = head.headers.get("Host").and_then(|h| std::str::from_utf8(h).ok()).map(str::to_string);
    let host = host.or_else(|| server_name.map(str::to_string)).unwrap_or_else(|| info.local.to_string());
    format!("{scheme}://{host}")
}
