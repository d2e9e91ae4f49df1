//! A public listener: accept, count, refuse over `max_connections`, TLS handshake, and
//! hand the connection to the proxy.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use crate::h1::answer::Answer;
use crate::net::clock;
use crate::net::stream::{with_timeout, Stream};
use crate::net::tls_stream::ServerTlsStream;
use crate::proxy::{serve, ClientInfo};
use crate::rt::{self, Io};
use crate::throttle;

use super::worker::Worker;

/// After `accept` fails for lack of descriptors, wait this long before the next try
/// rather than spinning (docs/security.md, L6).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// `Retry-After` of the over-`max_connections` 503: connections free up quickly.
const OVER_LIMIT_RETRY_AFTER_SECS: u64 = 1;

pub(super) async fn accept_loop(listener: Io<TcpListener>, worker: Rc<Worker>) {
    let local = listener.get_ref().local_addr().ok();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            worker.shutdown().await;
            None
        });
        let Some(accepted) = accepted.await else {
            // Returning drops the listener: the socket closes and new connections are refused.
            return;
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.get_ref().set_nodelay(true);
                // A listener on one address accepts on that address; only a wildcard
                // one needs to ask (a `getsockname` per connection).
                let local = match local {
                    Some(l) if !l.ip().is_unspecified() => l,
                    _ => tcp.get_ref().local_addr().ok().or(local).unwrap_or(peer),
                };
                // TLS settings are read per connection, so SIGHUP reloads certificates.
                let tls = worker.config().server_tls.clone();
                rt::spawn(connection(Rc::clone(&worker), tcp, peer, local, tls)).detach();
            }
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a transient error: log
                // (throttled), back off, keep serving what is established.
                throttle::error(&format!("accept failed: {e}"));
                clock::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn connection(
    worker: Rc<Worker>,
    tcp: Io<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
) {
    let _open = worker.connection_opened();
    let config = worker.config();
    let over_limit = worker.open_connections() > config.limits.max_connections;
    let https = tls.is_some();
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => match with_timeout(config.timeouts.header, Box::pin(ServerTlsStream::accept(tcp, tls))).await {
            Ok(s) => Stream::ServerTls(Box::new(s)),
            Err(e) => {
                log::info!(target: "access", "{peer} \"-\" - - 0ms reason=\"TLS handshake failed: {e}\"");
                return;
            }
        },
    };
    if over_limit {
        // A clear answer beats a silent queue; over TLS it costs a handshake, but a
        // client that sees a reset cannot tell overload from a broken proxy.
        throttle::warn(&format!("refusing connections: max_connections ({}) reached", config.limits.max_connections));
        let answer = Answer::new(503).retry_after(OVER_LIMIT_RETRY_AFTER_SECS).close(true).to_bytes();
        let write = async {
            futures_lite::AsyncWriteExt::write_all(&mut stream, &answer).await?;
            futures_lite::AsyncWriteExt::close(&mut stream).await
        };
        let _ = with_timeout(config.timeouts.header, write).await;
        return;
    }
    let info = ClientInfo { peer, peer_ip: peer.ip().to_string(), local, https };
    if let Some(tunnel) = serve(worker, stream, info).await {
        // This task's state (sized for the whole request path) is freed now; the
        // tunnel's task holds only what relaying needs, and the connection's count.
        rt::spawn(tunnel.run(_open)).detach();
    }
}
