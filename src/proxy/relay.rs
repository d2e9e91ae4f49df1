//! Relaying a backend's answer: the response head rewritten for the client
//! (hop-by-hop, framing, ProxyPassReverse), the body streamed, the backend connection
//! pooled when clean; or, for a valid 101, the hand-over to the tunnel.

use std::time::Instant;

use crate::access_log::AccessRecord;
use crate::h1::framing::{response_framing, Framing};
use crate::h1::head::{RequestHead, ResponseHead, Version};
use crate::h1::headers::{write_response_head, ClientConnection};
use crate::h1::upgrade::check_switch;
use crate::net::stream::Conn;
use crate::route::reverse_url;
use crate::target::Url;

use super::body::{copy_body, CopyError, Encoding};
use super::error::{ProxyError, UpstreamError};
use super::exchange::write_flush;
use super::forward::{Exchange, Progress};
use super::{ClientInfo, Next, Upgraded};

/// Relays a response (or opens the tunnel) and returns the backend connection to the
/// pool when it is clean.
pub(super) async fn relay(
    x: &Exchange<'_>,
    client: &mut Conn,
    url: &Url,
    mut backend: Conn,
    res: ResponseHead,
    record: &mut AccessRecord,
    progress: &mut Progress,
) -> Result<Next, ProxyError> {
    let Exchange { w, config, info, head, dest, .. } = *x;
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
