//! THE GLUE. One client connection: read a head, decide where it goes, forward it and
//! relay the answer (or open a tunnel), log it, and go round again while the
//! connection is kept alive (SPEC §4). Requests on a connection are handled one at a
//! time, so pipelined requests are answered in order and sidecar never reads more
//! than one request ahead (SECURITY S20, L7).

mod body;
mod decide;
mod error;
mod exchange;
mod forward;
mod relay;
pub mod tunnel;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::AccessRecord;
use crate::config::{Config, SharedBalancer};
use crate::h1::canned::canned;
use crate::h1::head::{parse_request_head, HeadError, RequestHead};
use crate::h1::scan::HeadScanner;
use crate::net::pool::Pool;
use crate::net::stream::{deadline, with_timeout, Conn, Stream};
use crate::shared::Shared;

pub use error::{ProxyError, UpstreamError};

/// Per worker thread: the config in force, the backend pool, counters. Shared by the
/// worker's connection tasks through `Rc`: no locks on the hot path.
pub struct Worker {
    config: RefCell<Arc<Config>>,
    pub shared: Arc<Shared>,
    pub pool: Pool,
    pub open_connections: Cell<usize>,
    /// Set once SIGTERM/SIGINT arrived: no new requests on kept-alive connections.
    pub draining: Cell<bool>,
    /// Closed when draining starts; every wait that should end then listens on it.
    shutdown: async_channel::Receiver<()>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, shutdown: async_channel::Receiver<()>) -> Self {
        let config = shared.config();
        let pool = Pool::new(config.timeouts.pool_idle);
        Self {
            config: RefCell::new(config),
            shared,
            pool,
            open_connections: Cell::new(0),
            draining: Cell::new(false),
            shutdown,
        }
    }

    /// The config in force now; a request keeps the one it started with.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.borrow())
    }

    /// SIGHUP: new connections and requests use `config` from now on.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.borrow_mut() = config;
    }

    /// Completes when draining starts.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.recv().await;
        self.draining.set(true);
    }
}

/// Facts about the client connection.
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub peer_ip: String,
    pub local: SocketAddr,
    pub https: bool,
}

/// What the connection does after a request.
pub enum Next {
    KeepAlive,
    Close,
    /// Tunnel to this backend; the 101 has been written.
    Tunnel(Box<Upgraded>),
}

/// A connection switched to a tunnel.
pub struct Upgraded {
    pub backend: Conn,
    pub record: AccessRecord,
    pub started: Instant,
    /// The balancer and replica the tunnel counts against, until it closes.
    pub lease: Option<(Arc<SharedBalancer>, usize)>,
}

/// Serves one client connection until it closes.
pub async fn serve(worker: Rc<Worker>, stream: Stream, info: ClientInfo) {
    let mut client = Conn::new(stream);
    let mut first = true;
    loop {
        let config = worker.config();
        client.shrink();
        if worker.draining.get() {
            return;
        }
        if client.buffered().is_empty() {
            // Between requests a connection may idle for the keep-alive timeout; the
            // first request must start within the header timeout. Draining ends the wait.
            let wait = if first { config.timeouts.header } else { config.timeouts.keepalive };
            let next = futures_lite::future::or(with_timeout(wait, client.fill(config.limits.max_head_bytes)), async {
                worker.shutdown().await;
                Ok(0)
            });
            match next.await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
        let started = Instant::now();
        let head = match deadline(
            config.timeouts.header,
            read_head(&mut client, config.limits.max_head_bytes, config.limits.max_headers),
        )
        .await
        {
            Some(Ok(head)) => head,
            Some(Err(ReadHeadError::Closed)) => return,
            Some(Err(ReadHeadError::Head(e))) => {
                let (status, reason) = match e {
                    HeadError::TooLarge => (431, "request head too large".to_string()),
                    HeadError::MethodNotAllowed => (405, e.to_string()),
                    HeadError::Malformed(why) => (400, why.to_string()),
                };
                let _ = client.write_all(&canned(status, &[], true)).await;
                let _ = client.flush().await;
                let record = AccessRecord {
                    peer: Some(info.peer),
                    status,
                    elapsed: started.elapsed(),
                    reason: Some(reason),
                    ..Default::default()
                };
                finish(&worker, &record);
                return;
            }
            None => {
                let _ = client.write_all(&canned(408, &[], true)).await;
                let record = AccessRecord {
                    peer: Some(info.peer),
                    status: 408,
                    elapsed: started.elapsed(),
                    reason: Some("request head not complete within header_timeout".into()),
                    ..Default::default()
                };
                finish(&worker, &record);
                return;
            }
        };
        // Boxed: the request path's state (~4 KiB) lives only while a request is in
        // flight, instead of in every connection task for its whole life, so an idle
        // keep-alive connection or WebSocket tunnel stays small.
        match Box::pin(forward::handle(&worker, &mut client, &info, head, started)).await {
            Next::KeepAlive => continue,
            Next::Close => {
                let _ = futures_lite::AsyncWriteExt::close(&mut client.stream).await;
                return;
            }
            Next::Tunnel(upgraded) => {
                let Upgraded { backend, mut record, started, lease } = *upgraded;
                worker.shared.metrics.open_tunnels.fetch_add(1, Relaxed);
                let (client_stream, to_backend) = client.into_parts();
                let (backend_stream, to_client) = backend.into_parts();
                let stats = tunnel::run(
                    client_stream,
                    to_backend,
                    backend_stream,
                    to_client,
                    config.timeouts.tunnel_idle,
                    async {
                        // Draining, or its member left DNS: drain_timeout more, then close.
                        let member_left = async {
                            match &lease {
                                Some((balancer, replica)) => balancer.removed(*replica).await,
                                None => std::future::pending().await,
                            }
                        };
                        futures_lite::future::or(worker.shutdown(), member_left).await;
                        async_io::Timer::after(config.timeouts.drain).await;
                    },
                )
                .await;
                record.elapsed = started.elapsed();
                record.tunnel = Some((stats.up, stats.down));
                if stats.end != tunnel::TunnelEnd::Closed {
                    record.reason = Some(format!("tunnel ended: {:?}", stats.end));
                }
                if let Some((balancer, replica)) = lease {
                    balancer.lock().finish(replica, crate::balance::Work::Tunnel, stats.up + stats.down);
                }
                let m = &worker.shared.metrics;
                m.open_tunnels.fetch_sub(1, Relaxed);
                m.bytes_in.fetch_add(stats.up, Relaxed);
                m.bytes_out.fetch_add(stats.down, Relaxed);
                finish(&worker, &record);
                return;
            }
        }
    }
}

enum ReadHeadError {
    /// The client closed (or sent only blank lines) before a request began.
    Closed,
    Head(HeadError),
}

/// Reads one request head, skipping blank lines before it (RFC 9112 §2.2).
async fn read_head(client: &mut Conn, max_bytes: usize, max_headers: usize) -> Result<RequestHead, ReadHeadError> {
    let mut scanner = HeadScanner::default();
    loop {
        let leading = client.buffered().iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        // Only whole CRLF pairs are blank lines; a lone LF is left for the scanner to refuse.
        let blank = leading - leading % 2;
        if blank > 0 && client.buffered()[..blank].chunks(2).all(|p| p == b"\r\n") {
            client.consume(blank);
            scanner = HeadScanner::default();
        }
        if !client.buffered().is_empty() {
            if let Some(len) = scanner.scan(client.buffered(), max_bytes).map_err(|e| ReadHeadError::Head(e.into()))? {
                let head = parse_request_head(&client.buffered()[..len], max_headers).map_err(ReadHeadError::Head)?;
                client.consume(len);
                return Ok(head);
            }
        }
        match client.fill(max_bytes).await {
            Ok(0) if client.buffered().is_empty() => return Err(ReadHeadError::Closed),
            Ok(0) => return Err(ReadHeadError::Head(HeadError::Malformed("connection closed inside a request head"))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return Err(ReadHeadError::Head(HeadError::TooLarge))
            }
            Err(_) => return Err(ReadHeadError::Closed),
        }
    }
}

/// The end of a request: its access line and its counters.
pub fn finish(worker: &Worker, record: &AccessRecord) {
    if let Some(line) = record.line(worker.config.borrow().access_log, std::time::SystemTime::now()) {
        use std::io::Write;
        // stdout is line-buffered: one write per line, lines from workers never interleave.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
    let m = &worker.shared.metrics;
    m.request(record.route.as_deref().unwrap_or("-"), record.status, record.elapsed);
    if let Some(bytes) = record.bytes {
        m.bytes_out.fetch_add(bytes, Relaxed);
    }
}
