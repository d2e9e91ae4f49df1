//! One attempt on one replica, up to the response head: a pooled or fresh connection,
//! the request head and body written, `100 Continue` handled, the response head read
//! within `proxy_timeout`. What went wrong is classified for the balancer.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::h1::framing::Framing;
use crate::h1::head::{parse_response_head, HeadError, RequestHead, ResponseHead, MAX_RESPONSE_HEAD_BYTES};
use crate::h1::headers::{write_request_head, Forwarding, Outgoing, CONTINUE};
use crate::h1::scan::HeadScanner;
use crate::metrics::Metrics;
use crate::net::clock;
use crate::net::connect::{connect, ConnectError};
use crate::net::stream::Conn;
use crate::route::join_paths;
use crate::target::Url;

use super::body::{copy_body, CopyError, Encoding};
use super::error::{ProxyError, UpstreamError};
use super::forward::{Exchange, Progress};

/// How long to wait for a backend's `100 Continue` before sending the body anyway
/// (RFC 9110 §10.1.1: a client "MAY proceed to send content" without it; curl waits 1 s).
const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// How one attempt on one replica went, up to the response head.
pub(super) enum Tried {
    Response(Conn, ResponseHead),
    ConnectFailed(ConnectError),
    /// The replica failed before any response byte.
    Failed(UpstreamError),
    /// The client's side failed: no verdict on the replica.
    Client(ProxyError),
}

/// Connects (or reuses a pooled connection: a stale one is replaced by a fresh one
/// once, for a request that can be replayed), sends the request, reads the head.
pub(super) async fn attempt(x: &Exchange<'_>, client: &mut Conn, url: &Url, progress: &mut Progress) -> Tried {
    let Exchange { w, config, info, head, framing, dest } = *x;
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
        match send(x, &w.shared.metrics, client, &mut backend, out, progress, url).await {
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
async fn send(
    x: &Exchange<'_>,
    metrics: &Metrics,
    client: &mut Conn,
    backend: &mut Conn,
    mut out: Vec<u8>,
    progress: &mut Progress,
    url: &Url,
) -> Result<Sent, ProxyError> {
    let Exchange { config, head, framing, .. } = *x;
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

pub(super) async fn write_flush(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
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
    let max = MAX_RESPONSE_HEAD_BYTES;
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
