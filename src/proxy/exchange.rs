//! One attempt on one replica, up to the response head: a pooled or fresh connection,
//! the request head and body written, `100 Continue` handled, the response head read
//! within `proxy_timeout`. What went wrong is classified for the balancer.

use std::time::Duration;

use crate::h1::framing::Framing;
use crate::h1::head::{parse_response_head_into, HeadError, ResponseHead, MAX_RESPONSE_HEAD_BYTES};
use crate::h1::headers::{write_request_head, Forwarding, Outgoing, CONTINUE};
use crate::h1::scan::ScanError;
use crate::net::clock;
use crate::net::connect::{connect, ConnectError};
use crate::net::stream::{with_timeout, Conn, HeadReadError};
use crate::target::Url;

use super::body::{copy_body, CopyError, Encoding, ReadPace};
use super::decide::Destination;
use super::error::{ProxyError, UpstreamError};
use super::request::Request;

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
/// once, for a request that can be replayed), sends the request with `target` as its
/// request-target, reads the head.
pub(super) async fn attempt(
    req: &mut Request,
    dest: &Destination<'_>,
    client: &mut Conn,
    url: &Url,
    target: &str,
) -> Tried {
    // The head is written into the request's scratch buffer and the response head
    // parsed into its scratch head: both are put back for the next attempt or request.
    let mut out = std::mem::take(&mut req.scratch().out);
    let mut res = std::mem::take(&mut req.scratch().response);
    out.clear();
    let (host, port) = match (dest.preserve_host, req.head.host()) {
        (true, Some(h)) => (h, None),
        _ => (url.host.as_str(), url.explicit_port()),
    };
    let outgoing = Outgoing { target, host, port, framing: req.framing, websocket: dest.websocket };
    let fwd = Forwarding {
        peer_ip: &req.info.peer_ip,
        proto: if req.info.https { "https" } else { "http" },
        via: req.config.via_pseudonym(),
    };
    write_request_head(&req.head, &outgoing, &fwd, &mut out);
    let tried = send_to_replica(req, client, url, &mut out, &mut res).await;
    req.scratch().out = out;
    match tried {
        Ok(backend) => Tried::Response(backend, res),
        Err(tried) => {
            req.scratch().response = res;
            tried
        }
    }
}

/// `attempt`'s connection and exchange, with the head written in `out`; the response
/// head is parsed into `res`. `Err` is every outcome but a response.
async fn send_to_replica(
    req: &mut Request,
    client: &mut Conn,
    url: &Url,
    out: &mut Vec<u8>,
    res: &mut ResponseHead,
) -> Result<Conn, Tried> {
    let head_len = out.len();
    let mut fresh_only = false;
    loop {
        let pooled = if fresh_only { None } else { req.worker.pool().take(url, clock::now()) };
        let reused = pooled.is_some();
        let mut backend = match pooled {
            Some(c) => {
                req.counts.pooled += 1;
                c
            }
            None => {
                req.counts.fresh += 1;
                match connect(url, &req.config.backend_tls, req.config.timeouts.connect).await {
                    Ok(c) => c,
                    Err(e) => return Err(Tried::ConnectFailed(e)),
                }
            }
        };
        // Only a request without a body is sent again, and `out` still holds its head
        // (a body would have been appended, or streamed through `out`).
        out.truncate(head_len);
        match send(req, client, &mut backend, out, res).await {
            Ok(Sent::Response) => return Ok(backend),
            Ok(Sent::Failed(cause)) => {
                // A pooled connection the backend closed just now says nothing about
                // the replica: try a fresh one, if the request can be sent again. Only
                // a connection that proved dead (reset, end of file) qualifies: after a
                // timeout the backend may be working on the request.
                if reused
                    && proved_dead(&cause)
                    && req.progress.body_done
                    && req.framing == Framing::None
                    && !fresh_only
                {
                    log::debug!("{}: pooled connection failed ({cause}), retrying on a fresh one", url.origin());
                    fresh_only = true;
                    continue;
                }
                return Err(Tried::Failed(cause));
            }
            Err(e) => return Err(Tried::Client(e)),
        }
    }
}

/// The backend closed or reset the connection, as a stale pooled connection does.
fn proved_dead(cause: &UpstreamError) -> bool {
    match cause {
        UpstreamError::Closed => true,
        UpstreamError::Io(e) => e.kind() != std::io::ErrorKind::TimedOut,
        _ => false,
    }
}

enum Sent {
    /// The final (or 101) response head from the backend is in the caller's head.
    Response,
    /// The backend failed before any response byte.
    Failed(UpstreamError),
}

/// Writes the head in `out` and the body, reads the response head into `res`
/// (relaying `100 Continue`). `out` is the body copy's buffer afterwards. `Err` is the
/// client's fault; the backend's is `Sent::Failed`.
async fn send(
    req: &mut Request,
    client: &mut Conn,
    backend: &mut Conn,
    out: &mut Vec<u8>,
    res: &mut ResponseHead,
) -> Result<Sent, ProxyError> {
    let timeouts = req.config.timeouts;
    let expects_continue = req.head.expects_continue();
    // A small body already in hand goes out with the head, in one write.
    if let Framing::Length(n) = req.framing {
        if !expects_continue && client.buffered().len() as u64 >= n {
            out.extend_from_slice(&client.buffered()[..n as usize]);
            client.consume(n as usize);
            req.progress.body_done = true;
            req.counts.body_in += n;
        }
    }
    // A backend that takes nothing (and a head too big for the socket buffers) must
    // not hold the request past proxy_timeout: one deadline for the whole write.
    if let Err(e) = with_timeout(timeouts.proxy, backend.write_flush(out)).await {
        return Ok(Sent::Failed(UpstreamError::Io(e)));
    }
    if !req.progress.body_done {
        if expects_continue && !req.progress.sent_continue {
            let early = futures_lite::future::or(
                async { Some(read_response_head(backend, timeouts.proxy, res).await) },
                async {
                    clock::sleep(EXPECT_WAIT).await;
                    None
                },
            )
            .await;
            match early {
                Some(Ok(())) if res.status == 100 => send_continue(req, client).await?,
                // A final answer before the body: relay it; the unread body means the
                // client connection closes after it (`body_done` stays false).
                Some(Ok(())) => return Ok(Sent::Response),
                Some(Err(e)) => return Ok(Sent::Failed(e)),
                None => send_continue(req, client).await?,
            }
        }
        let encoding = if req.framing == Framing::Chunked { Encoding::Chunked } else { Encoding::Raw };
        let limits = req.config.limits;
        let pace = ReadPace::MinRate { timeout: timeouts.body, min_rate: limits.body_min_rate };
        out.clear();
        let copied = copy_body(
            client,
            &mut backend.stream,
            req.framing,
            encoding,
            pace,
            timeouts.proxy,
            out,
            limits.max_body_bytes,
        )
        .await;
        match copied {
            Ok(n) => {
                req.progress.body_done = true;
                req.counts.body_in += n;
            }
            Err(CopyError::Write(e)) => return Ok(Sent::Failed(UpstreamError::Io(e))),
            Err(CopyError::Chunk(why)) => return Err(ProxyError::BadRequest(why)),
            Err(CopyError::TooLarge) => return Err(ProxyError::BodyTooLarge),
            Err(CopyError::Read(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Err(ProxyError::BodyTimeout),
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
        // The client may leave while its request waits: then the backend request is
        // abandoned at once, as nginx does, instead of holding both connections until
        // proxy_timeout. Only once the body is in (before that its bytes are the body),
        // and not behind a pipelined request already read: that client is not gone.
        let head = read_response_head(backend, timeouts.proxy, res);
        let read_ahead = req.config.limits.max_head_bytes;
        let waited = match req.progress.body_done && client.buffered().is_empty() {
            true => {
                futures_lite::future::or(async { Waited::Head(head.await) }, async {
                    let e = client.closed(read_ahead).await;
                    log::debug!("client closed while its request waited: {e}");
                    Waited::ClientClosed
                })
                .await
            }
            false => Waited::Head(head.await),
        };
        match waited {
            Waited::ClientClosed => return Err(ProxyError::ClientClosed),
            Waited::Head(Ok(())) if res.status == 100 => {
                if expects_continue && !req.progress.sent_continue {
                    send_continue(req, client).await?;
                }
            }
            // 102/103 and other interim answers are dropped; the final one follows.
            Waited::Head(Ok(())) if res.status != 101 && res.status < 200 => {}
            Waited::Head(Ok(())) => return Ok(Sent::Response),
            Waited::Head(Err(e)) => return Ok(Sent::Failed(e)),
        }
    }
}

/// What came first while a request waited for its answer.
enum Waited {
    Head(Result<(), UpstreamError>),
    ClientClosed,
}

async fn send_continue(req: &mut Request, client: &mut Conn) -> Result<(), ProxyError> {
    client.write_all(CONTINUE).await.map_err(ProxyError::ClientGone)?;
    req.progress.sent_continue = true;
    Ok(())
}

/// The backend's response head, parsed into `res`, within `limit`. Cancel-safe: bytes
/// read stay in the connection's buffer.
async fn read_response_head(backend: &mut Conn, limit: Duration, res: &mut ResponseHead) -> Result<(), UpstreamError> {
    let read = async {
        let len = backend.read_head(MAX_RESPONSE_HEAD_BYTES, false).await.map_err(|e| match e {
            HeadReadError::Closed => UpstreamError::Closed,
            HeadReadError::ClosedInside => UpstreamError::Malformed("closed inside the response head".into()),
            HeadReadError::Scan(ScanError::TooLarge) => UpstreamError::Malformed("response head too large".into()),
            HeadReadError::Scan(e) => UpstreamError::Malformed(HeadError::from(e).to_string()),
            HeadReadError::Io(e) => UpstreamError::Io(e),
        })?;
        parse_response_head_into(&backend.buffered()[..len], res).map_err(|e| match e {
            HeadError::TooLarge => UpstreamError::Malformed("response head too large".into()),
            e => UpstreamError::Malformed(e.to_string()),
        })?;
        backend.consume(len);
        Ok(())
    };
    futures_lite::future::or(read, async {
        clock::sleep(limit).await;
        Err(UpstreamError::Timeout)
    })
    .await
}
