//! One client connection: read a request head, hand the request to forward.rs, relay
//! the answer or run the tunnel, log it, and go round again while the connection is
//! kept alive. Requests on a connection are handled one at a time, so pipelined
//! requests are answered in order and sidecar never reads more than one request ahead
//! (docs/security.md, S20 and L7).
//!
//! ```text
//! mod.rs      the connection loop: head → Request → forward::handle → finish | tunnel
//! request.rs  one request's state from head to access line (config, lease, record), and
//!             the buffers its worker hands from one request to the next (Scratch)
//! forward.rs  framing checks, routing (decide.rs), replica choice and retries
//! exchange.rs one attempt on one replica, up to the response head
//! relay.rs    the response to the client; a 101 goes to tunnel.rs
//! tunnel.rs   a tunnel's set-up and tear-down; pump.rs moves its bytes
//! lease.rs    a balancer member's count of one request or tunnel, given back on drop
//! affinity.rs the `byhash` key of a request (query parameter, cookie, header, client IP)
//! body.rs     bodies streamed with bounded buffers · error.rs what goes wrong, whose fault
//! ```

mod affinity;
mod body;
mod decide;
mod error;
mod exchange;
mod forward;
mod lease;
mod pump;
mod relay;
mod request;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::AccessRecord;
use crate::config::Config;
use crate::h1::answer::Answer;
use crate::h1::head::{parse_request_head_into, HeadError, RequestHead};
use crate::net::clock;
use crate::net::stream::{deadline, with_timeout, Conn, HeadReadError, Stream};
use crate::server::Worker;

use request::{log_access, Request, RequestEnd};

pub(crate) use affinity::hash_key;
pub(crate) use decide::{decide_traced, Decided, RouteBufs};
pub(crate) use forward::sticky_route;
pub(crate) use request::Scratch;

/// Facts about the client connection.
pub(crate) struct ClientInfo {
    pub peer: SocketAddr,
    pub peer_ip: String,
    pub local: SocketAddr,
    pub https: bool,
}

/// What the connection does after a request.
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Tunnel to this backend; the 101 has been written.
    Tunnel(Conn, pump::Session),
}

/// A connection that became a WebSocket tunnel: the 101 has been written.
pub(crate) struct Tunnel {
    req: Box<RequestEnd>,
    client: Conn,
    backend: Conn,
    session: pump::Session,
}

impl Tunnel {
    /// Relays until both sides close (or sidecar closes the tunnel), then writes the
    /// access line; `connection` stays counted until then.
    pub(crate) fn run(self, connection: crate::server::OpenConnection) -> impl std::future::Future<Output = ()> {
        tunnel::run(self.req, self.client, self.backend, self.session, connection)
    }
}

/// Serves one client connection until it closes, or until it becomes a tunnel, which
/// is returned for the caller to run. A tunnel may stay open for hours, so it runs as
/// a task of its own, apart from the state this connection needed for its requests.
pub(crate) async fn serve(worker: Rc<Worker>, stream: Stream, info: ClientInfo) -> Option<Tunnel> {
    let info = Rc::new(info);
    let mut client = Conn::new(stream);
    let mut first = true;
    loop {
        client.shrink();
        if worker.is_draining() {
            return None;
        }
        if client.buffered().is_empty() {
            // Between requests a connection may idle for the keep-alive timeout; the
            // first request must start within the header timeout. Draining ends the wait.
            let (timeouts, limits) = {
                let c = worker.config();
                (c.timeouts, c.limits)
            };
            let wait = if first { timeouts.header } else { timeouts.keepalive };
            // The buffer is taken only once bytes are there to read.
            let read = async {
                client.readable().await?;
                client.fill(limits.max_head_bytes).await
            };
            let next = futures_lite::future::or(with_timeout(wait, read), async {
                worker.shutdown().await;
                Ok(0)
            });
            match next.await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
        first = false;
        // The config in force when the request begins (a reload during the idle wait
        // applies to it); the request keeps this snapshot to its end.
        let config = worker.config();
        let started = clock::now();
        let limits = config.limits;
        let mut scratch = worker.take_scratch();
        let read = read_head(&mut client, &mut scratch.head, limits.max_head_bytes, limits.max_headers);
        let refused = match deadline(config.timeouts.header, read).await {
            Some(Ok(())) => None,
            Some(Err(None)) => return None,
            Some(Err(Some(e))) => Some(match e {
                HeadError::TooLarge => (431, "request head too large".to_string()),
                HeadError::MethodNotAllowed => (405, e.to_string()),
                HeadError::Malformed(why) => (400, why.to_string()),
            }),
            None => Some((408, "request head not complete within header_timeout".to_string())),
        };
        if let Some((status, reason)) = refused {
            worker.give_scratch(scratch);
            refuse(&worker, &config, &mut client, &info, status, reason, started).await;
            return None;
        }
        // The request runs in a box the worker reuses: this connection's task holds a
        // pointer to it only while the request is in flight, so an idle keep-alive
        // connection or a tunnel stays small, and no request allocates its state.
        let running = worker
            .requests()
            .run(|| run_request(Rc::clone(&worker), Rc::clone(&info), config, scratch, started, client));
        let (back, ended) = running.await;
        client = back;
        match ended {
            Ended::KeepAlive => {}
            Ended::Closed => return None,
            Ended::Tunnel(req, backend, session) => return Some(Tunnel { req, client, backend, session }),
        }
    }
}

/// How a request left its client connection.
enum Ended {
    KeepAlive,
    /// Answered and closed.
    Closed,
    /// The 101 has been written: the connection becomes this tunnel. What is left of
    /// the request is boxed (once per tunnel) to keep every other request's outcome
    /// small.
    Tunnel(Box<RequestEnd>, Conn, pump::Session),
}

/// One request, from its parsed head (in `scratch`) to its access line, or to the
/// tunnel it opens. Owns what it uses, so that it can run in a pooled box; the client
/// connection comes back with the outcome.
async fn run_request(
    worker: Rc<Worker>,
    info: Rc<ClientInfo>,
    config: Arc<Config>,
    scratch: Box<Scratch>,
    started: Instant,
    mut client: Conn,
) -> (Conn, Ended) {
    let mut req = Request::new(worker, info, config, scratch, started);
    let ended = match forward::handle(&mut req, &mut client).await {
        Next::KeepAlive => {
            req.finish();
            Ended::KeepAlive
        }
        Next::Close => {
            req.finish();
            let _ = futures_lite::AsyncWriteExt::close(&mut client.stream).await;
            Ended::Closed
        }
        Next::Tunnel(backend, session) => Ended::Tunnel(Box::new(req.into_end()), backend, session),
    };
    (client, ended)
}

/// Answers a request whose head could not be read, logs it and lets the caller close.
async fn refuse(
    worker: &Worker,
    config: &Config,
    client: &mut Conn,
    info: &ClientInfo,
    status: u16,
    reason: String,
    started: Instant,
) {
    let _ = client.write_flush(&Answer::new(status).close(true).to_bytes()).await;
    let record = AccessRecord {
        peer: Some(info.peer),
        status,
        elapsed: clock::since(started),
        reason: Some(reason),
        ..Default::default()
    };
    log_access(worker, config, &record);
}

/// Reads one request head into `head`, skipping blank lines before it. `Err(None)`:
/// the client closed (or sent only blank lines) before a request began.
async fn read_head(
    client: &mut Conn,
    head: &mut RequestHead,
    max_bytes: usize,
    max_headers: usize,
) -> Result<(), Option<HeadError>> {
    let len = client.read_head(max_bytes, true).await.map_err(|e| match e {
        HeadReadError::Closed | HeadReadError::Io(_) => None,
        HeadReadError::ClosedInside => Some(HeadError::Malformed("connection closed inside a request head")),
        HeadReadError::Scan(e) => Some(HeadError::from(e)),
    })?;
    parse_request_head_into(&client.buffered()[..len], max_headers, head).map_err(Some)?;
    client.consume(len);
    Ok(())
}
