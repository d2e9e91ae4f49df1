//! benchkit: the backend and the WebSocket load generators that `scripts/bench` drives.
//! It owns only load and measurement; the proxies, `wrk` and the report belong to the script.
//!
//! ```text
//! benchkit backend [PORT]                   HTTP/1.1 keep-alive + WebSocket echo on 127.0.0.1:PORT (0)
//! benchkit ws-echo URL CONNS SECONDS [MSG_BYTES [PAUSE_MS]]   round trips: messages_per_sec, p99_us
//! benchkit ws-idle URL COUNT HOLD_SECONDS   opens COUNT tunnels, prints open=N, holds them
//! benchkit free-port                        prints a loopback port that was free a moment ago
//! ```
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

type Ws = WebSocketStream<Async<TcpStream>>;

const USAGE: &str = "usage:
  benchkit backend [PORT]
  benchkit ws-echo URL CONNS SECONDS [MSG_BYTES [PAUSE_MS]]
  benchkit ws-idle URL COUNT HOLD_SECONDS
  benchkit free-port
URL is ws://127.0.0.1:PORT/path (an IP address, not a name).";

/// The body of every 200: 13 bytes, the same as the classic nginx "hello, world" bench.
const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world\n";
const HELLO_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n";
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    let result = match args.as_slice() {
        ["backend"] => future::block_on(ex.run(backend(ex, 0))),
        ["backend", port] => match number(port, "PORT").map(u16::try_from) {
            Ok(Ok(port)) => future::block_on(ex.run(backend(ex, port))),
            _ => usage_error(None),
        },
        ["ws-echo", url, conns, secs, rest @ ..] if rest.len() <= 2 => {
            let msg_bytes = rest.first().map_or(Ok(32), |m| number(m, "MSG_BYTES"));
            // A pause between round trips paces the load (the soak script), 0: flat out.
            let pause = rest.get(1).map_or(Ok(0), |m| number(m, "PAUSE_MS"));
            match (parse_ws_url(url), number(conns, "CONNS"), number(secs, "SECONDS"), msg_bytes, pause) {
                (Ok(addr), Ok(conns), Ok(secs), Ok(msg_bytes), Ok(pause)) => {
                    let pause = Duration::from_millis(pause as u64);
                    future::block_on(ex.run(ws_echo(ex, url, addr, conns, secs as u64, msg_bytes, pause)))
                }
                (a, b, c, d, e) => usage_error(a.err().or(b.err()).or(c.err()).or(d.err()).or(e.err())),
            }
        }
        ["ws-idle", url, count, hold] => {
            match (parse_ws_url(url), number(count, "COUNT"), number(hold, "HOLD_SECONDS")) {
                (Ok(addr), Ok(count), Ok(hold)) => future::block_on(ex.run(ws_idle(ex, url, addr, count, hold as u64))),
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

fn usage_error(why: Option<String>) -> io::Result<bool> {
    if let Some(why) = why {
        eprintln!("benchkit: {why}");
    }
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn number(s: &str, what: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("{what}: not a number: {s:?}"))
}

/// `ws://127.0.0.1:8080/chat` → 127.0.0.1:8080. No DNS: a bench names its address.
fn parse_ws_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| format!("URL must start with ws://: {url:?}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.parse().map_err(|_| format!("URL needs IP:PORT after ws://: {url:?}"))
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

async fn backend(ex: &'static LocalExecutor<'static>, port: u16) -> io::Result<bool> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], port))?;
    say(&format!("listening on {}", listener.get_ref().local_addr()?));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.get_ref().set_nodelay(true);
                ex.spawn(serve(stream)).detach();
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
async fn serve(mut stream: Async<TcpStream>) {
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
            let version_10 = req.version == Some(0);
            let conn = header("connection").map(|c| c.to_ascii_lowercase()).unwrap_or_default();
            close = conn.contains("close") || (version_10 && !conn.contains("keep-alive"));
            out.extend_from_slice(if is_head { HELLO_HEAD } else { HELLO });
            buf.drain(..head_len + body_len);
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

async fn connect(url: &str, addr: SocketAddr) -> Result<Ws, String> {
    let attempt = async {
        let stream = Async::<TcpStream>::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.get_ref().set_nodelay(true);
        let (ws, _response) =
            async_tungstenite::client_async(url, stream).await.map_err(|e| format!("handshake {url}: {e}"))?;
        Ok(ws)
    };
    within(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|| Err(format!("connect + handshake {url}: no answer in {CONNECT_TIMEOUT:?}")))
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
    url: &str,
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    msg_bytes: usize,
    pause: Duration,
) -> io::Result<bool> {
    // Open everything first so the measured window has all connections busy.
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let url = url.to_owned();
            ex.spawn(async move { connect(&url, addr).await })
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
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64) * p).ceil() as usize;
        latencies[i.clamp(1, latencies.len()) - 1]
    };
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

async fn ws_idle(
    ex: &'static LocalExecutor<'static>,
    url: &str,
    addr: SocketAddr,
    count: usize,
    hold_secs: u64,
) -> io::Result<bool> {
    let mut open: Vec<Ws> = Vec::with_capacity(count);
    let mut printed = 0;
    let mut failed = 0;
    let mut next = 0;
    while next < count {
        let batch = IDLE_BATCH.min(count - next);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let url = url.to_owned();
                ex.spawn(async move { connect(&url, addr).await })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok(ws) => open.push(ws),
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
