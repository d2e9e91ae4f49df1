//! benchkit: the backend and the WebSocket load generators that `scripts/bench` drives.
//! It owns only load and measurement; the proxies, `wrk` and the report belong to the script.
//!
//! ```text
//! benchkit backend [PORT] [--tls CERT KEY]  HTTP/1.1 keep-alive + WebSocket echo on 127.0.0.1:PORT (0);
//!                                           GET /64k… answers 65,536 bytes, any other path 13
//! benchkit ws-echo URL CONNS SECONDS [MSG_BYTES [PAUSE_MS]]   round trips: messages_per_sec, p99_us
//! benchkit ws-handshakes URL CONNS SECONDS  CONNS workers loop connect, upgrade, close handshake,
//!                                           server's FIN: handshakes_per_sec, p99_us (connect→101)
//! benchkit ws-idle URL COUNT HOLD_SECONDS   opens COUNT tunnels, prints open=N, holds them
//! benchkit http-idle URL COUNT HOLD_SECONDS opens COUNT keep-alive connections, one GET each,
//!                                           prints open=N, holds them idle
//! benchkit tls-cert DIR                     writes DIR/cert.pem and DIR/key.pem (self-signed,
//!                                           for 127.0.0.1 and localhost)
//! benchkit free-port                        prints a loopback port that was free a moment ago
//! ```
//!
//! Client URLs are ws://, wss://, http:// or https:// with an IP address; the TLS ones
//! need `--ca FILE` after the other arguments (the certificate to trust).
//!
//! Everything runs on one async-executor `LocalExecutor` thread, so the load generator costs one core
//! (the script pins it next to the backend, away from the proxy under test).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt, StreamExt};

type Ws = WebSocketStream<Net>;

const USAGE: &str = "usage:
  benchkit backend [PORT] [--tls CERT KEY]
  benchkit ws-echo URL CONNS SECONDS [MSG_BYTES [PAUSE_MS]] [--ca FILE]
  benchkit ws-handshakes URL CONNS SECONDS [--ca FILE]
  benchkit ws-idle URL COUNT HOLD_SECONDS [--ca FILE]
  benchkit http-idle URL COUNT HOLD_SECONDS [--ca FILE]
  benchkit tls-cert DIR
  benchkit free-port
URL is ws://127.0.0.1:PORT/path (an IP address, not a name); wss:// and https:// need --ca.";

/// The body of every 200: 13 bytes, the same as the classic nginx "hello, world" bench.
const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world\n";
const HELLO_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n";
/// The body `GET /64k` answers: a bulk response, the size the HTTP 64 KiB figure is made of.
const BIG_BODY_BYTES: usize = 64 * 1024;
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Request bodies are read whole before answering; a bench never sends a big one.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Connections opened at once by `ws-idle`; more would just queue in the proxy's backlog.
const IDLE_BATCH: usize = 200;
/// Bound on one connect + handshake, and on one echo round trip.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors printed in full on stderr; the rest are only counted.
const MAX_PRINTED_ERRORS: usize = 5;
/// Bound on one close handshake, from our close frame to the server's FIN.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed handshake a worker waits this long, so a refusing server is not spun on.
const FAILURE_PAUSE: Duration = Duration::from_millis(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server_tls = match take_option(&mut args, "--tls", 2) {
        Some(v) => match server_tls(v[0], v[1]) {
            Ok(tls) => Some(tls),
            Err(e) => usage_error(Some(e)),
        },
        None => None,
    };
    let ca = take_option(&mut args, "--ca", 1).map(|v| v[0].to_owned());
    let client_tls = match ca.as_deref().map(client_tls) {
        Some(Ok(tls)) => Some(tls),
        Some(Err(e)) => usage_error(Some(e)),
        None => None,
    };
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    let result = match args.as_slice() {
        ["backend"] => future::block_on(ex.run(backend(ex, 0, server_tls))),
        ["backend", port] => match number(port, "PORT").map(u16::try_from) {
            Ok(Ok(port)) => future::block_on(ex.run(backend(ex, port, server_tls))),
            _ => usage_error(None),
        },
        ["tls-cert", dir] => tls_cert(std::path::Path::new(dir)),
        ["ws-echo", url, conns, secs, rest @ ..] if rest.len() <= 2 => {
            let msg_bytes = rest.first().map_or(Ok(32), |m| number(m, "MSG_BYTES"));
            // A pause between round trips paces the load (the soak script), 0: flat out.
            let pause = rest.get(1).map_or(Ok(0), |m| number(m, "PAUSE_MS"));
            match (Target::parse(url, &client_tls), number(conns, "CONNS"), number(secs, "SECONDS"), msg_bytes, pause) {
                (Ok(target), Ok(conns), Ok(secs), Ok(msg_bytes), Ok(pause)) => {
                    let pause = Duration::from_millis(pause as u64);
                    future::block_on(ex.run(ws_echo(ex, target, conns, secs as u64, msg_bytes, pause)))
                }
                (a, b, c, d, e) => usage_error(a.err().or(b.err()).or(c.err()).or(d.err()).or(e.err())),
            }
        }
        ["ws-handshakes", url, conns, secs] => {
            match (Target::parse(url, &client_tls), number(conns, "CONNS"), number(secs, "SECONDS")) {
                (Ok(target), Ok(conns), Ok(secs)) => {
                    future::block_on(ex.run(ws_handshakes(ex, target, conns, secs as u64)))
                }
                (a, b, c) => usage_error(a.err().or(b.err()).or(c.err())),
            }
        }
        [kind @ ("ws-idle" | "http-idle"), url, count, hold] => {
            match (Target::parse(url, &client_tls), number(count, "COUNT"), number(hold, "HOLD_SECONDS")) {
                (Ok(target), Ok(count), Ok(hold)) => {
                    let websocket = *kind == "ws-idle";
                    future::block_on(ex.run(hold_idle(ex, target, websocket, count, hold as u64)))
                }
                (a, b, c) => usage_error(a.err().or(b.err()).or(c.err())),
            }
        }
        ["free-port"] => free_port(),
        _ => usage_error(None),
    };
    match result {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("benchkit: {e}");
            std::process::exit(1)
        }
    }
}

fn usage_error(why: Option<String>) -> ! {
    if let Some(why) = why {
        eprintln!("benchkit: {why}");
    }
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn number(s: &str, what: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("{what}: not a number: {s:?}"))
}

/// Removes `name` and the `values` arguments after it; `None` when it is not there.
fn take_option<'a>(args: &mut Vec<&'a str>, name: &str, values: usize) -> Option<Vec<&'a str>> {
    let at = args.iter().position(|a| *a == name)?;
    if at + values >= args.len() {
        usage_error(Some(format!("{name} needs {values} value(s)")));
    }
    let taken: Vec<&str> = args.drain(at..=at + values).skip(1).collect();
    Some(taken)
}

/// Where a client connects: the URL as given, its address, and TLS when it says so.
#[derive(Clone)]
struct Target {
    url: String,
    addr: SocketAddr,
    /// The path and query, for `http-idle`'s GET.
    path: String,
    tls: Option<futures_rustls::TlsConnector>,
}

impl Target {
    /// `ws://127.0.0.1:8080/chat` → 127.0.0.1:8080. No DNS: a bench names its address.
    fn parse(url: &str, tls: &Option<futures_rustls::TlsConnector>) -> Result<Target, String> {
        let (rest, secure) = [("ws://", false), ("wss://", true), ("http://", false), ("https://", true)]
            .iter()
            .find_map(|(scheme, secure)| url.strip_prefix(scheme).map(|r| (r, *secure)))
            .ok_or_else(|| format!("URL must start with ws://, wss://, http:// or https://: {url:?}"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = authority.parse().map_err(|_| format!("URL needs IP:PORT after the scheme: {url:?}"))?;
        let path = format!("/{}", rest.get(authority.len() + 1..).unwrap_or(""));
        let tls = match (secure, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => return Err(format!("{url}: a TLS URL needs --ca FILE")),
        };
        Ok(Target { url: url.to_owned(), addr, path, tls })
    }

    /// A TCP connection, with TLS when the URL says so.
    async fn connect(&self) -> Result<Net, String> {
        let addr = self.addr;
        let stream = Async::<TcpStream>::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.get_ref().set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Net::Plain(stream)) };
        let name = futures_rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tls.connect(name, stream).await.map_err(|e| format!("TLS to {addr}: {e}"))?;
        Ok(Net::Client(Box::new(tls)))
    }
}

/// A bench connection, plain or TLS.
enum Net {
    Plain(Async<TcpStream>),
    Client(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
    Server(Box<futures_rustls::server::TlsStream<Async<TcpStream>>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Net::Plain($s) => $e,
            Net::Client($s) => $e,
            Net::Server($s) => $e,
        }
    };
}

impl futures_lite::AsyncRead for Net {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl futures_lite::AsyncWrite for Net {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }
    fn poll_close(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_close(cx))
    }
}

fn provider() -> std::sync::Arc<futures_rustls::rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(futures_rustls::rustls::crypto::ring::default_provider())
}

/// The backend's TLS: a certificate chain and key from PEM files.
fn server_tls(cert: &str, key: &str) -> Result<futures_rustls::TlsAcceptor, String> {
    use futures_rustls::pki_types::pem::PemObject;
    use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let config = futures_rustls::rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert}: {e}"))?;
    Ok(futures_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// The clients' TLS: trusts the certificates in `ca` only.
fn client_tls(ca: &str) -> Result<futures_rustls::TlsConnector, String> {
    use futures_rustls::pki_types::pem::PemObject;
    use futures_rustls::pki_types::CertificateDer;
    let mut roots = futures_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots.add(cert.map_err(|e| format!("{ca}: {e}"))?).map_err(|e| format!("{ca}: {e}"))?;
    }
    let config = futures_rustls::rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(futures_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

/// A self-signed certificate for 127.0.0.1 and localhost, for a bench's TLS mode.
fn tls_cert(dir: &std::path::Path) -> io::Result<bool> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
    let cert = rcgen::CertificateParams::new(names).and_then(|p| p.self_signed(&key)).map_err(io::Error::other)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(true)
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn free_port() -> io::Result<bool> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    say(&listener.local_addr()?.port().to_string());
    Ok(true)
}

/// Races `fut` against a timer; `None` on timeout.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

// ---------------------------------------------------------------------------------
// backend
// ---------------------------------------------------------------------------------

async fn backend(
    ex: &'static LocalExecutor<'static>,
    port: u16,
    tls: Option<futures_rustls::TlsAcceptor>,
) -> io::Result<bool> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], port))?;
    say(&format!("listening on {}", listener.get_ref().local_addr()?));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.get_ref().set_nodelay(true);
                let tls = tls.clone();
                ex.spawn(async move {
                    let stream = match tls {
                        None => Net::Plain(stream),
                        Some(tls) => match within(CONNECT_TIMEOUT, tls.accept(stream)).await {
                            Some(Ok(s)) => Net::Server(Box::new(s)),
                            _ => return,
                        },
                    };
                    serve(stream).await
                })
                .detach();
            }
            // EMFILE and friends: back off instead of spinning, keep serving the others.
            Err(e) => {
                eprintln!("backend: accept: {e}");
                Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One keep-alive connection: answers every complete request in the buffer (so pipelined
/// requests get one write), or hands the socket to the WebSocket echo after a 101.
async fn serve(mut stream: Net) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut close = false;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
            };
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let upgrade = header("upgrade").is_some_and(|u| u.to_ascii_lowercase().contains("websocket"));
            if let (true, Some(key)) = (upgrade, header("sec-websocket-key")) {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Accept: {}\r\n\r\n",
                        derive_accept_key(key.trim().as_bytes())
                    )
                    .as_bytes(),
                );
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                let leftover = buf.split_off(head_len);
                let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
                echo(ws).await;
                return;
            }
            let body_len = match header("content-length").map(|v| v.trim().parse::<usize>()) {
                None => 0,
                Some(Ok(n)) if n <= MAX_BODY_BYTES => n,
                Some(_) => {
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
            };
            if buf.len() < head_len + body_len {
                break; // the body is still on its way
            }
            let is_head = req.method == Some("HEAD");
            let big = req.path.is_some_and(|p| p.starts_with("/64k"));
            let version_10 = req.version == Some(0);
            let conn = header("connection").map(|c| c.to_ascii_lowercase()).unwrap_or_default();
            close = conn.contains("close") || (version_10 && !conn.contains("keep-alive"));
            buf.drain(..head_len + body_len);
            if big {
                // 64 KiB is not copied into `out`: what is queued goes first, then the
                // prebuilt response in one write.
                let (response, head) = big_response();
                let response = if is_head { &response[..head] } else { response };
                if !out.is_empty() {
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                if stream.write_all(response).await.is_err() {
                    return;
                }
            } else {
                out.extend_from_slice(if is_head { HELLO_HEAD } else { HELLO });
            }
            if close {
                break;
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `GET /64k` response, head and body, built once; and the length of its head.
fn big_response() -> (&'static [u8], usize) {
    static RESPONSE: std::sync::OnceLock<(Vec<u8>, usize)> = std::sync::OnceLock::new();
    let (response, head) = RESPONSE.get_or_init(|| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY_BYTES}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        let head = r.len();
        r.resize(head + BIG_BODY_BYTES, b'x');
        (r, head)
    });
    (response, *head)
}

/// Sends every text and binary message back; pings and closes are answered by tungstenite.
async fn echo(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------
// clients
// ---------------------------------------------------------------------------------

async fn connect(target: &Target) -> Result<Ws, String> {
    let attempt = async {
        let stream = target.connect().await?;
        let url = &target.url;
        let (ws, _response) =
            async_tungstenite::client_async(url, stream).await.map_err(|e| format!("handshake {url}: {e}"))?;
        Ok(ws)
    };
    within(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|| Err(format!("connect + handshake {}: no answer in {CONNECT_TIMEOUT:?}", target.url)))
}

/// A keep-alive connection that has had one `GET` answered in full.
async fn connect_http(target: &Target) -> Result<Net, String> {
    let attempt = async {
        let mut stream = target.connect().await?;
        let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", target.path, target.addr);
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        stream.flush().await.map_err(|e| format!("flush: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed before the response ended".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = res.parse(&buf) {
                let len = res
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .ok_or("a response without Content-Length")?;
                if buf.len() >= head + len {
                    return Ok(stream);
                }
            }
        }
    };
    within(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|| Err(format!("GET {}: no answer in {CONNECT_TIMEOUT:?}", target.url)))
}

/// Prints the first few errors in full; all of them are counted by the caller.
fn report_error(printed: &mut usize, what: &str) {
    if *printed < MAX_PRINTED_ERRORS {
        eprintln!("benchkit: {what}");
    } else if *printed == MAX_PRINTED_ERRORS {
        eprintln!("benchkit: (further errors only counted)");
    }
    *printed += 1;
}

struct EchoResult {
    latencies_us: Vec<u32>,
    error: Option<String>,
}

async fn ws_echo(
    ex: &'static LocalExecutor<'static>,
    target: Target,
    conns: usize,
    secs: u64,
    msg_bytes: usize,
    pause: Duration,
) -> io::Result<bool> {
    // Open everything first so the measured window has all connections busy.
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let target = target.clone();
            ex.spawn(async move { connect(&target).await })
        })
        .collect();
    let mut printed = 0;
    let mut streams = Vec::with_capacity(conns);
    for t in tasks {
        match t.await {
            Ok(ws) => streams.push(ws),
            Err(e) => report_error(&mut printed, &e),
        }
    }
    let connect_errors = conns - streams.len();

    let payload: Utf8Bytes = "x".repeat(msg_bytes).into();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> =
        streams.into_iter().map(|ws| ex.spawn(echo_loop(ws, payload.clone(), deadline, pause))).collect();
    let mut latencies: Vec<u32> = Vec::new();
    let mut echo_errors = 0;
    for t in tasks {
        let r = t.await;
        latencies.extend_from_slice(&r.latencies_us);
        if let Some(e) = r.error {
            echo_errors += 1;
            report_error(&mut printed, &e);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    say(&format!("connections={}", conns - connect_errors));
    say(&format!("connect_errors={connect_errors}"));
    say(&format!("echo_errors={echo_errors}"));
    say(&format!("messages={}", latencies.len()));
    say(&format!("messages_per_sec={:.0}", latencies.len() as f64 / elapsed));
    say(&format!("p50_us={}", pct(0.50)));
    say(&format!("p99_us={}", pct(0.99)));
    say(&format!("max_us={}", latencies.last().copied().unwrap_or(0)));
    Ok(connect_errors == 0 && echo_errors == 0 && !latencies.is_empty())
}

/// The `p` quantile (0 < p ≤ 1) of sorted latencies, nearest rank; 0 when there are none.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// One connection: send, wait for the same bytes back, repeat until `deadline`.
async fn echo_loop(mut ws: Ws, payload: Utf8Bytes, deadline: Instant, pause: Duration) -> EchoResult {
    let mut latencies_us = Vec::with_capacity(64 * 1024);
    let error = loop {
        if Instant::now() >= deadline {
            let _ = within(Duration::from_secs(1), ws.close(None)).await;
            break None;
        }
        let t0 = Instant::now();
        if let Err(e) = ws.send(Message::Text(payload.clone())).await {
            break Some(format!("send: {e}"));
        }
        let answer = loop {
            match within(ECHO_TIMEOUT, ws.next()).await {
                None => break Err(format!("no echo in {ECHO_TIMEOUT:?}")),
                Some(None) => break Err("connection closed before the echo".to_owned()),
                Some(Some(Err(e))) => break Err(format!("read: {e}")),
                Some(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Some(Some(Ok(Message::Text(t)))) if t == payload => break Ok(()),
                Some(Some(Ok(other))) => break Err(format!("echo differs: got {} bytes of {other:?}", other.len())),
            }
        };
        if let Err(e) = answer {
            break Some(e);
        }
        latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !pause.is_zero() {
            Timer::after(pause).await;
        }
    };
    EchoResult { latencies_us, error }
}

struct HandshakeResult {
    /// Connect → 101 of every handshake that succeeded.
    latencies_us: Vec<u32>,
    handshake_errors: usize,
    close_errors: usize,
    /// The first few errors, for stderr.
    errors: Vec<String>,
}

/// `conns` workers, each looping until the deadline: connect (and TLS), upgrade, close
/// handshake, the server's FIN. One handshake counts when its 101 carried the right
/// `Sec-WebSocket-Accept`; a close that went wrong is counted apart.
async fn ws_handshakes(
    ex: &'static LocalExecutor<'static>,
    target: Target,
    conns: usize,
    secs: u64,
) -> io::Result<bool> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let target = target.clone();
            ex.spawn(async move { handshake_loop(&target, deadline).await })
        })
        .collect();
    let (mut latencies, mut handshake_errors, mut close_errors, mut printed) = (Vec::new(), 0, 0, 0);
    for t in tasks {
        let r = t.await;
        latencies.extend_from_slice(&r.latencies_us);
        handshake_errors += r.handshake_errors;
        close_errors += r.close_errors;
        for e in &r.errors {
            report_error(&mut printed, e);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    say(&format!("workers={conns}"));
    say(&format!("handshakes={}", latencies.len()));
    say(&format!("handshakes_per_sec={:.0}", latencies.len() as f64 / elapsed));
    say(&format!("handshake_errors={handshake_errors}"));
    say(&format!("close_errors={close_errors}"));
    say(&format!("p50_us={}", percentile(&latencies, 0.50)));
    say(&format!("p99_us={}", percentile(&latencies, 0.99)));
    say(&format!("max_us={}", latencies.last().copied().unwrap_or(0)));
    Ok(handshake_errors == 0 && close_errors == 0 && !latencies.is_empty())
}

async fn handshake_loop(target: &Target, deadline: Instant) -> HandshakeResult {
    let mut r = HandshakeResult {
        latencies_us: Vec::with_capacity(16 * 1024),
        handshake_errors: 0,
        close_errors: 0,
        errors: Vec::new(),
    };
    let keep = |r: &mut HandshakeResult, e: String| {
        if r.errors.len() < MAX_PRINTED_ERRORS {
            r.errors.push(e);
        }
    };
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let upgraded = within(CONNECT_TIMEOUT, upgrade(target))
            .await
            .unwrap_or_else(|| Err(format!("connect + upgrade {}: no answer in {CONNECT_TIMEOUT:?}", target.url)));
        let (stream, key) = match upgraded {
            Ok(upgraded) => upgraded,
            Err(e) => {
                r.handshake_errors += 1;
                keep(&mut r, e);
                Timer::after(FAILURE_PAUSE).await;
                continue;
            }
        };
        r.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        let closed = within(CLOSE_TIMEOUT, close_handshake(stream, key))
            .await
            .unwrap_or_else(|| Err(format!("close {}: no close frame and FIN in {CLOSE_TIMEOUT:?}", target.url)));
        if let Err(e) = closed {
            r.close_errors += 1;
            keep(&mut r, e);
        }
    }
    r
}

/// Connect and upgrade: the 101 and its `Sec-WebSocket-Accept` are checked. Returns the
/// stream and the key that was sent (its bytes mask the close frame).
async fn upgrade(target: &Target) -> Result<(Net, String), String> {
    let mut stream = target.connect().await?;
    let key = async_tungstenite::tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.addr
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the 101".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                if res.code != Some(101) {
                    return Err(format!("status {} instead of 101", res.code.unwrap_or(0)));
                }
                let accept = res.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
                if accept.map(|h| h.value.trim_ascii()) != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
                    return Err("101 without the right Sec-WebSocket-Accept".to_owned());
                }
                if buf.len() > head {
                    return Err(format!("{} bytes after the 101 before any message was sent", buf.len() - head));
                }
                return Ok((stream, key));
            }
            Ok(httparse::Status::Partial) if buf.len() <= 16 * 1024 => {}
            Ok(httparse::Status::Partial) => return Err("a 101 head over 16 KiB".to_owned()),
            Err(e) => return Err(format!("bad response head: {e}")),
        }
    }
}

/// Sends a close frame (1000) and reads until the server's FIN, which must follow its
/// own close frame. The server closes the TCP connection first (RFC 6455 §7.1.1).
async fn close_handshake(mut stream: Net, key: String) -> Result<(), String> {
    let mask: [u8; 4] = key.as_bytes()[..4].try_into().unwrap_or([0x5a; 4]);
    let code = 1000u16.to_be_bytes();
    let frame = [0x88, 0x82, mask[0], mask[1], mask[2], mask[3], code[0] ^ mask[0], code[1] ^ mask[1]];
    stream.write_all(&frame).await.map_err(|e| format!("write close: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush close: {e}"))?;
    let mut first = None;
    let mut chunk = [0u8; 256];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(_) => {
                first.get_or_insert(chunk[0]);
            }
            // A TLS peer that ends with a FIN and no close_notify: still the server's FIN.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read after close: {e}")),
        }
    }
    match first {
        Some(0x88) => Ok(()),
        Some(b) => Err(format!("a frame with first byte {b:#04x} instead of a close frame")),
        None => Err("FIN without a close frame".to_owned()),
    }
}

/// Opens `count` tunnels (`websocket`) or keep-alive connections that had one GET,
/// then holds them idle.
async fn hold_idle(
    ex: &'static LocalExecutor<'static>,
    target: Target,
    websocket: bool,
    count: usize,
    hold_secs: u64,
) -> io::Result<bool> {
    let mut open: Vec<Box<dyn std::any::Any>> = Vec::with_capacity(count);
    let mut printed = 0;
    let mut failed = 0;
    let mut next = 0;
    while next < count {
        let batch = IDLE_BATCH.min(count - next);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let target = target.clone();
                ex.spawn(async move {
                    if websocket {
                        connect(&target).await.map(|ws| Box::new(ws) as Box<dyn std::any::Any>)
                    } else {
                        connect_http(&target).await.map(|c| Box::new(c) as Box<dyn std::any::Any>)
                    }
                })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok(conn) => open.push(conn),
                Err(e) => {
                    failed += 1;
                    report_error(&mut printed, &e);
                }
            }
        }
        next += batch;
    }
    say(&format!("open={}", open.len()));
    if failed > 0 {
        say(&format!("failed={failed}"));
    }
    let hold = Timer::after(Duration::from_secs(hold_secs));
    if stdin_is_dev_null() {
        hold.await;
    } else {
        // A script can end the hold early by closing our stdin.
        future::or(
            async {
                hold.await;
            },
            async {
                let _ = blocking::unblock(|| io::copy(&mut io::stdin().lock().take(u64::MAX), &mut io::sink())).await;
            },
        )
        .await;
    }
    drop(open);
    Ok(failed == 0)
}

/// A background job in a script reads /dev/null; that EOF must not end the hold at once.
fn stdin_is_dev_null() -> bool {
    std::fs::read_link("/proc/self/fd/0").is_ok_and(|p| p == std::path::Path::new("/dev/null"))
}
