//! Backends written for the tests: a recording HTTP/1.1 server on raw TCP
//! (optionally behind TLS) that keeps every byte it received and every request it
//! parsed, and answers through a function the test chooses. Each runs on its own
//! thread with its own executor; dropping the `Backend` stops it and closes its
//! connections. Misbehaving variants are named for what they do.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use futures_rustls::rustls::ServerConfig;
use futures_rustls::TlsAcceptor;

use super::{within, Io};

/// The biggest request head a backend reads before giving up on the connection.
const MAX_HEAD: usize = 4 * 1024 * 1024;

/// One request as the backend parsed it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Index of the backend connection it arrived on (0-based, accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// In order, names in their original case.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// The raw head bytes up to and including the blank line.
    pub head: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.head).to_string()
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name).iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn is_websocket_handshake(&self) -> bool {
        self.has_token("upgrade", "websocket") && self.has_token("connection", "upgrade")
    }
}

/// What the backend does with a request.
pub enum Reply {
    /// Write these bytes and wait for the next request.
    Send(Vec<u8>),
    /// Write these bytes, then wait at most this long for the next request.
    SendThenIdleClose(Vec<u8>, Duration),
    /// Write these bytes and close the connection.
    SendThenClose(Vec<u8>),
    /// Write the first bytes, wait, write the second ones, then wait for the next request.
    SendTwice(Vec<u8>, Duration, Vec<u8>),
    /// Never answer; keep the connection open until the backend is dropped.
    Silence,
    /// Close without answering.
    Close,
    /// Write these bytes (a 101) and become a WebSocket echo server.
    WebSocketEcho(Vec<u8>),
    /// Hand the connection to this function; `Some` returns it to the request loop.
    Custom(Box<dyn FnOnce(Peer) -> LocalFuture<Option<Peer>>>),
}

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    /// Bytes received, per connection in accept order.
    received: Vec<Vec<u8>>,
    requests: Vec<Request>,
    notes: Vec<String>,
    tls_failures: usize,
}

/// A running backend on 127.0.0.1.
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    /// A plain HTTP backend answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::spawn(Arc::new(handler), None)
    }

    /// The same behind TLS with `tls`.
    pub fn start_tls(tls: Arc<ServerConfig>, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::spawn(Arc::new(handler), Some(tls))
    }

    /// A plain HTTP backend on a listener the test made (see `DeadPort::into_listener`).
    pub fn start_on_listener(
        listener: std::net::TcpListener,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        Backend::spawn_on(listener, Arc::new(handler), None)
    }

    fn spawn(handler: Handler, tls: Option<Arc<ServerConfig>>) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind backend");
        Backend::spawn_on(listener, handler, tls)
    }

    fn spawn_on(listener: std::net::TcpListener, handler: Handler, tls: Option<Arc<ServerConfig>>) -> Backend {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let st = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let ex = LocalExecutor::new();
            let listener = async_net::TcpListener::try_from(listener).expect("async listener");
            let accept_loop = async {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { continue };
                    let _ = tcp.set_nodelay(true);
                    let idx = {
                        let mut s = st.lock().expect("state");
                        s.received.push(Vec::new());
                        s.received.len() - 1
                    };
                    let st = Arc::clone(&st);
                    let handler = Arc::clone(&handler);
                    let tls = tls.clone();
                    ex.spawn(async move {
                        let io: Box<dyn Io> = match tls {
                            None => Box::new(tcp),
                            Some(cfg) => match within(Duration::from_secs(5), TlsAcceptor::from(cfg).accept(tcp)).await
                            {
                                Some(Ok(s)) => {
                                    let kind = s.get_ref().1.handshake_kind();
                                    st.lock().expect("state").notes.push(format!("tls handshake: {kind:?}"));
                                    Box::new(s)
                                }
                                Some(Err(e)) => {
                                    let mut s = st.lock().expect("state");
                                    s.tls_failures += 1;
                                    s.notes.push(format!("tls handshake failed: {e}"));
                                    return;
                                }
                                None => {
                                    st.lock().expect("state").tls_failures += 1;
                                    return;
                                }
                            },
                        };
                        let peer = Peer {
                            io: RecIo { inner: io, state: Arc::clone(&st), conn: idx },
                            buf: Vec::new(),
                            idx,
                            state: st,
                            idle: None,
                        };
                        serve(peer, handler).await;
                    })
                    .detach();
                }
            };
            async_io::block_on(ex.run(futures_lite::future::or(accept_loop, async {
                let _ = stop_rx.recv().await;
            })));
            // Dropping `ex` cancels every connection task, closing its socket.
        });
        Backend { addr, state, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("state").received.len()
    }

    /// Every request parsed so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("state").requests.clone()
    }

    /// Every byte received on every connection, in accept order.
    pub fn received(&self) -> Vec<u8> {
        self.state.lock().expect("state").received.concat()
    }

    pub fn received_on(&self, conn: usize) -> Vec<u8> {
        self.state.lock().expect("state").received.get(conn).cloned().unwrap_or_default()
    }

    pub fn notes(&self) -> Vec<String> {
        self.state.lock().expect("state").notes.clone()
    }

    pub fn tls_failures(&self) -> usize {
        self.state.lock().expect("state").tls_failures
    }

    /// Waits until `n` requests have arrived (or the deadline) and returns them all.
    pub fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<Request> {
        super::wait_until(limit, || self.requests().len() >= n);
        self.requests()
    }

    /// Waits until a note containing `needle` was made.
    pub fn wait_for_note(&self, needle: &str, limit: Duration) -> bool {
        super::wait_until(limit, || self.notes().iter().any(|n| n.contains(needle)))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A stream that appends every byte it reads to the backend's record.
pub struct RecIo {
    inner: Box<dyn Io>,
    state: Arc<Mutex<State>>,
    conn: usize,
}

impl AsyncRead for RecIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if let Some(v) = this.state.lock().expect("state").received.get_mut(this.conn) {
                v.extend_from_slice(&buf[..n]);
            }
        }
        r
    }
}

impl AsyncWrite for RecIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// One accepted backend connection, given to `Reply::Custom`.
pub struct Peer {
    pub io: RecIo,
    /// Bytes read but not yet consumed.
    pub buf: Vec<u8>,
    pub idx: usize,
    state: Arc<Mutex<State>>,
    idle: Option<Duration>,
}

impl Peer {
    /// Reads more into `buf`; false on EOF/error/deadline.
    async fn fill(&mut self, limit: Option<Duration>) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        let read = self.io.read(&mut chunk);
        let r = match limit {
            Some(l) => match within(l, read).await {
                Some(r) => r,
                None => return false,
            },
            None => read.await,
        };
        match r {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Whatever arrives within `limit` after what is already buffered.
    pub async fn read_for(&mut self, limit: Duration) -> Vec<u8> {
        let end = Instant::now() + limit;
        loop {
            let now = Instant::now();
            if now >= end || !self.fill(Some(end - now)).await {
                return std::mem::take(&mut self.buf);
            }
        }
    }

    /// Reads until EOF (or `limit`); returns everything and whether EOF was seen.
    pub async fn read_to_eof(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let end = Instant::now() + limit;
        loop {
            let now = Instant::now();
            if now >= end {
                return (std::mem::take(&mut self.buf), false);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match within(end - now, self.io.read(&mut chunk)).await {
                None => return (std::mem::take(&mut self.buf), false),
                Some(Ok(0)) | Some(Err(_)) => return (std::mem::take(&mut self.buf), true),
                Some(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok() && self.io.flush().await.is_ok()
    }

    pub async fn shutdown_write(&mut self) {
        let _ = self.io.close().await;
    }

    /// Records a free-form observation the test can read with `Backend::notes`.
    pub fn note(&self, s: impl Into<String>) {
        self.state.lock().expect("state").notes.push(s.into());
    }

    /// Reads one request; None on EOF, idle timeout or an unparseable head.
    async fn read_request(&mut self) -> Option<Request> {
        let limit = self.idle;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD || !self.fill(limit).await {
                return None;
            }
        };
        let head: Vec<u8> = self.buf[..head_end].to_vec();
        let mut hdrs = [httparse::EMPTY_HEADER; 512];
        let mut req = httparse::Request::new(&mut hdrs);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            self.note(format!("unparseable request head: {}", head.escape_ascii()));
            return None;
        }
        let mut r = Request {
            conn: self.idx,
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
            version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).to_string()))
                .collect(),
            body: Vec::new(),
            head,
            chunked: false,
        };
        self.buf.drain(..head_end);
        let te = r.headers_named("transfer-encoding").join(",");
        r.chunked = te.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        let cl: Option<usize> = r.header("content-length").and_then(|v| v.trim().parse().ok());
        let expects_body = r.chunked || cl.is_some_and(|n| n > 0);
        if expects_body
            && r.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && self.buf.is_empty()
        {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        if r.chunked {
            r.body = self.read_chunked_body().await?;
        } else if let Some(n) = cl {
            while self.buf.len() < n {
                if !self.fill(None).await {
                    self.note(format!("body cut short: wanted {n}, got {}", self.buf.len()));
                    return None;
                }
            }
            r.body = self.buf.drain(..n).collect();
        }
        Some(r)
    }

    async fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(l);
            }
            if self.buf.len() > MAX_HEAD || !self.fill(None).await {
                return None;
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let s = String::from_utf8_lossy(&line).to_string();
            let Ok(size) = usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16) else {
                self.note(format!("bad chunk size line {s:?}"));
                return None;
            };
            if size == 0 {
                loop {
                    if self.read_line().await?.is_empty() {
                        return Some(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill(None).await {
                    return None;
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                self.note("chunk data not followed by CRLF");
                return None;
            }
            self.buf.drain(..size + 2);
        }
    }
}

async fn serve(mut peer: Peer, handler: Handler) {
    loop {
        let Some(req) = peer.read_request().await else { return };
        peer.state.lock().expect("state").requests.push(req.clone());
        match handler(&req) {
            Reply::Send(b) => {
                if !peer.write(&b).await {
                    return;
                }
            }
            Reply::SendThenIdleClose(b, idle) => {
                if !peer.write(&b).await {
                    return;
                }
                peer.idle = Some(idle);
            }
            Reply::SendThenClose(b) => {
                peer.write(&b).await;
                return;
            }
            Reply::SendTwice(a, wait, b) => {
                if !peer.write(&a).await {
                    return;
                }
                async_io::Timer::after(wait).await;
                if !peer.write(&b).await {
                    return;
                }
            }
            Reply::Silence => {
                // Keep reading (and recording) until the proxy gives up.
                let _ = peer.read_to_eof(Duration::from_secs(60)).await;
                return;
            }
            Reply::Close => return,
            Reply::WebSocketEcho(b) => {
                if !peer.write(&b).await {
                    return;
                }
                websocket_echo(peer).await;
                return;
            }
            Reply::Custom(f) => match f(peer).await {
                Some(p) => peer = p,
                None => return,
            },
        }
    }
}

/// Echoes text and binary messages until the peer closes.
async fn websocket_echo(peer: Peer) {
    let Peer { io, buf, state, .. } = peer;
    let mut ws = WebSocketStream::from_partially_read(io, buf, Role::Server, None).await;
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            state.lock().expect("state").notes.push("websocket close received".into());
        } else if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------

/// `HTTP/1.1 {status} {reason}` with Content-Length and `extra` header lines.
pub fn response(status: u16, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        426 => "Upgrade Required",
        _ => "Whatever",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (n, v) in extra {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// The 101 a real WebSocket server sends for `req`.
pub fn switching_protocols(req: &Request) -> Vec<u8> {
    let key = req.header("sec-websocket-key").unwrap_or("");
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------
// Named behaviours
// ---------------------------------------------------------------------------------

/// 200 with `X-Echo-Target: <target>` and the request body as the body.
pub fn echo() -> Backend {
    Backend::start(echo_reply)
}

pub fn echo_reply(req: &Request) -> Reply {
    Reply::Send(response(
        200,
        &[("Content-Type", "application/octet-stream"), ("X-Echo-Target", &req.target)],
        &req.body,
    ))
}

/// 200 with the given text body for every request.
pub fn answers_ok(body: &'static str) -> Backend {
    Backend::start(move |_| Reply::Send(response(200, &[("Content-Type", "text/plain")], body.as_bytes())))
}

/// Writes exactly `bytes` for every request and keeps the connection open.
pub fn answers_raw(bytes: impl Into<Vec<u8>>) -> Backend {
    let bytes = bytes.into();
    Backend::start(move |_| Reply::Send(bytes.clone()))
}

/// Writes exactly `bytes` for every request, then closes.
pub fn answers_raw_then_closes(bytes: impl Into<Vec<u8>>) -> Backend {
    let bytes = bytes.into();
    Backend::start(move |_| Reply::SendThenClose(bytes.clone()))
}

/// The first request gets exactly `bytes` (connection kept open); every later one a
/// well-formed `200` with body `fine`.
pub fn answers_raw_once_then_fine(bytes: impl Into<Vec<u8>>) -> Backend {
    let bytes = bytes.into();
    let n = AtomicUsize::new(0);
    Backend::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Send(bytes.clone())
        } else {
            Reply::Send(response(200, &[], b"fine"))
        }
    })
}

/// Reads requests, never answers.
pub fn never_answers() -> Backend {
    Backend::start(|_| Reply::Silence)
}

/// Answers `200 ok` (keep-alive, no `Connection: close`) and then closes the socket,
/// like a server whose keep-alive limit is one request.
pub fn closes_after_each_response() -> Backend {
    Backend::start(|req| Reply::SendThenClose(response(200, &[("X-Echo-Target", &req.target)], b"ok")))
}

/// Answers `200 ok` and closes a connection idle for `idle`.
pub fn closes_idle_after(idle: Duration) -> Backend {
    Backend::start(move |req| Reply::SendThenIdleClose(response(200, &[("X-Echo-Target", &req.target)], b"ok"), idle))
}

/// A canary: accepts, records, never answers. Tests assert it saw nothing.
pub fn canary() -> Backend {
    Backend::start(|_| Reply::Silence)
}

/// A WebSocket echo server that also answers plain requests like `echo()`.
/// `Sec-WebSocket-Version` other than 13 gets `426` with `Sec-WebSocket-Version: 13`
/// (RFC 6455 §4.4) and the connection stays HTTP.
pub fn ws_echo() -> Backend {
    Backend::start(ws_echo_reply)
}

pub fn ws_echo_tls(tls: Arc<ServerConfig>) -> Backend {
    Backend::start_tls(tls, ws_echo_reply)
}

pub fn ws_echo_reply(req: &Request) -> Reply {
    if req.method == "GET" && req.is_websocket_handshake() {
        if req.header("sec-websocket-version") != Some("13") {
            return Reply::Send(response(426, &[("Sec-WebSocket-Version", "13")], b""));
        }
        return Reply::WebSocketEcho(switching_protocols(req));
    }
    echo_reply(req)
}

/// Answers a handshake with a 101 whose `Sec-WebSocket-Accept` is wrong.
pub fn ws_wrong_accept() -> Backend {
    Backend::start(|req| {
        if req.is_websocket_handshake() {
            Reply::WebSocketEcho(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".to_vec(),
            )
        } else {
            echo_reply(req)
        }
    })
}
