//! Relaying a backend's answer: the response head rewritten for the client
//! (hop-by-hop, framing, ProxyPassReverse), the body streamed, the backend connection
//! pooled when clean. A 101 goes to tunnel.rs.

use crate::h1::framing::{response_framing, Framing};
use crate::h1::head::{ResponseHead, Version};
use crate::h1::headers::ClientConnection;
use crate::net::clock;
use crate::net::stream::Conn;
use crate::target::Url;

use super::body::{copy_body, CopyError, Encoding, ReadPace};
use super::decide::Destination;
use super::error::{ProxyError, UpstreamError};
use super::request::Request;
use super::{tunnel, Next};

/// Relays a response (or opens the tunnel) and returns the backend connection to the
/// pool when it is clean.
pub(super) async fn relay(
    req: &mut Request,
    dest: &Destination<'_>,
    client: &mut Conn,
    url: &Url,
    mut backend: Conn,
    res: ResponseHead,
) -> Result<Next, ProxyError> {
    let bad = |why: String| ProxyError::Upstream { replica: url.origin(), cause: UpstreamError::Malformed(why) };
    req.record.status = res.status;
    req.record.ttfb = Some(clock::since(req.started));
    if res.status == 101 {
        let next = tunnel::switch(req, dest, client, url, backend, &res).await;
        req.scratch().response = res;
        return next;
    }
    let rf = response_framing(&req.head.method, &res).map_err(|e| bad(e.0.to_string()))?;
    let client_11 = req.head.version == Version::Http11;
    let (client_framing, encoding) = match rf.framing {
        Framing::None => (Framing::None, Encoding::Raw),
        Framing::Length(n) => (Framing::Length(n), Encoding::Raw),
        // A close-delimited body is re-chunked for a 1.1 client, so its connection
        // survives; an HTTP/1.0 client gets it until close.
        Framing::Chunked | Framing::UntilClose if client_11 => (Framing::Chunked, Encoding::Chunked),
        Framing::Chunked | Framing::UntilClose => (Framing::UntilClose, Encoding::Raw),
    };
    let keep_alive = !req.must_close() && client_framing != Framing::UntilClose;
    let connection = if keep_alive { ClientConnection::KeepAlive } else { ClientConnection::Close };
    // The head and the body go through the request's scratch buffer, put back after.
    let mut out = std::mem::take(&mut req.scratch().out);
    out.clear();
    req.write_client_head(&res, dest, req.head.version, client_framing, connection, &mut out);
    req.progress.responded = true;
    let backend_keeps = rf.reusable
        && rf.framing != Framing::UntilClose
        && req.progress.body_done
        && match res.version {
            Version::Http11 => !res.headers.has_token("Connection", "close"),
            Version::Http10 => res.headers.has_token("Connection", "keep-alive"),
        };
    req.scratch().response = res;
    let idle = req.config.timeouts.proxy;
    let copied =
        copy_body(&mut backend, &mut client.stream, rf.framing, encoding, ReadPace::Idle(idle), idle, &mut out, None)
            .await;
    req.scratch().out = out;
    match copied {
        Ok(n) => req.record.bytes = Some(n),
        Err(CopyError::Write(e)) => return Err(ProxyError::ClientGone(e)),
        Err(e) => {
            // The client has the head and part of the body: it must see truncation,
            // so its connection closes without a last chunk (docs/security.md, B5).
            let why = match e {
                CopyError::Chunk(why) => format!("bad chunked body: {why}"),
                CopyError::Read(e) => format!("body read failed: {e}"),
                _ => "closed inside the body".to_string(),
            };
            return Err(bad(why));
        }
    }
    if backend_keeps {
        req.worker.pool().put(url, backend, clock::now());
    }
    Ok(if keep_alive { Next::KeepAlive } else { Next::Close })
}
