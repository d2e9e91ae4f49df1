//! `sidecar demo`: two example replicas (an HTTP page and a WebSocket echo, on one port
//! each) and the proxy in front of them, all on loopback, configured from a TOML
//! string through the same loader as a real sidecar.toml and served by the same
//! start-up and shutdown sequence as `sidecar` (`run::serve`): Ctrl-C drains and exits
//! 0, a second Ctrl-C exits 130. `--tls` adds `[server.tls] self_signed = true`.
//!
//! The replicas run on async-io with a local executor: they stand in for an application
//! and are not sidecar's request path; their WebSocket echo is `demo_ws`. The proxy
//! itself runs on its own workers' runtime (`rt`), as in production.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::demo_ws;

use crate::config;
use crate::h1::head::{parse_request_head, trim, RequestHead, MAX_HEADERS};
use crate::h1::scan::HeadScanner;
use crate::h1::upgrade::{accept_key, classify_upgrade, Upgrade};
use crate::server::Running;

/// A browser keeps the page's WebSocket open; a short drain lets Ctrl-C end the demo
/// promptly while still showing the drain (the server's default is 30 s).
const DEMO_DRAIN_TIMEOUT: &str = "2s";

pub fn demo(port: u16, tls: bool) -> i32 {
    super::init_logging();
    let mut replicas = Vec::new();
    for n in 1..=2 {
        match start_replica(n) {
            Ok(addr) => replicas.push(addr),
            Err(e) => {
                eprintln!("demo: cannot start replica {n}: {e}");
                return 1;
            }
        }
    }
    let listen =
        if TcpListener::bind(("127.0.0.1", port)).is_ok() { format!("127.0.0.1:{port}") } else { "127.0.0.1:0".into() };
    let source = demo_config(&listen, &replicas, tls);
    let config = match config::parse(Path::new("(demo)"), &source) {
        Ok(c) => c,
        Err(diagnostics) => {
            for d in diagnostics {
                eprintln!("{d}");
            }
            return 1;
        }
    };
    super::run::serve(config, None, |running| print_banner(running, &replicas))
}

/// The demo's sidecar.toml: the WebSocket rule of the README's example sending
/// upgrades to one balancer, everything else to another, over the same two replicas.
fn demo_config(listen: &str, replicas: &[SocketAddr], tls: bool) -> String {
    let members: Vec<String> = replicas.iter().map(|a| format!("\"http://{a}\"")).collect();
    let ws_members: Vec<String> = replicas.iter().map(|a| format!("\"ws://{a}\"")).collect();
    let tls = if tls { "\n[server.tls]\nself_signed = true\n" } else { "" };
    format!(
        r#"
[server]
listen = "{listen}"
drain_timeout = "{DEMO_DRAIN_TIMEOUT}"
{tls}
[[rewrite]]
cond = ["%{{HTTP:Upgrade}} websocket [NC]", "%{{HTTP:Connection}} upgrade [NC]"]
rule = ".* balancer://demo-ws%{{REQUEST_URI}} [P,L]"

[[proxy]]
path = "/"
to = "balancer://demo/"

[balancer.demo]
members = [{}]

[balancer.demo-ws]
members = [{}]
"#,
        members.join(", "),
        ws_members.join(", ")
    )
}

fn print_banner(running: &Running, replicas: &[SocketAddr]) {
    let Some(&(proxy, https)) = running.addrs.first() else { return };
    let (http, ws, insecure) = if https { ("https", "wss", "-k ") } else { ("http", "ws", "") };
    println!(
        "sidecar demo: proxy on {http}://{proxy}/ in front of replicas {}",
        replicas.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
    );
    println!();
    println!("  browser:    {http}://{proxy}/            (the page opens a WebSocket through the proxy)");
    if https {
        println!("              (self-signed certificate: the browser asks you to accept it once)");
    }
    println!("  curl:       curl {insecure}-i {http}://{proxy}/hello");
    println!("  websocket:  curl {insecure}-i -N --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \\");
    println!("                -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' {http}://{proxy}/echo");
    println!("              (or: websocat {}{ws}://{proxy}/echo)", if https { "-k " } else { "" });
    println!();
    println!(
        "Requests are spread over the replicas; Ctrl-C drains (open WebSockets get {DEMO_DRAIN_TIMEOUT}) and stops."
    );
}

/// Starts one replica on an ephemeral loopback port, on its own thread.
fn start_replica(n: u32) -> std::io::Result<SocketAddr> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    std::thread::Builder::new().name(format!("demo-replica-{n}")).spawn(move || {
        let ex = LocalExecutor::new();
        async_io::block_on(ex.run(async {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    ex.spawn(replica_connection(n, stream)).detach();
                }
            }
        }));
    })?;
    Ok(addr)
}

async fn replica_connection(n: u32, mut stream: Async<TcpStream>) {
    let mut buf = Vec::new();
    loop {
        let Some((head, len)) = read_head(&mut stream, &mut buf).await else { return };
        buf.drain(..len);
        if classify_upgrade(&head) == Upgrade::WebSocket {
            let key = head.headers.get("Sec-WebSocket-Key").map(trim).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            demo_ws::echo(n, stream).await;
            return;
        }
        let body = if head.target == "/" {
            PAGE.replace("{n}", &n.to_string())
        } else {
            format!("hello from replica {n}: {} {}\n", head.method, head.target)
        };
        let kind = if head.target == "/" { "text/html" } else { "text/plain" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\nX-Replica: {n}\r\n\r\n",
            body.len()
        );
        let mut out = response.into_bytes();
        if head.method != "HEAD" {
            out.extend_from_slice(body.as_bytes());
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn read_head(stream: &mut Async<TcpStream>, buf: &mut Vec<u8>) -> Option<(RequestHead, usize)> {
    let mut scanner = HeadScanner::default();
    loop {
        if let Ok(Some(len)) = scanner.scan(buf, 64 * 1024) {
            return parse_request_head(&buf[..len], MAX_HEADERS).ok().map(|h| (h, len));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>sidecar demo</title>
<h1>Served by replica {n} through sidecar</h1>
<p>WebSocket: <span id="state">connecting…</span></p>
<form id="f"><input id="m" value="hello" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo");
const log = (t) => document.getElementById("log").textContent += t + "\n";
ws.onopen = () => { document.getElementById("state").textContent = "open"; ws.send("hello"); };
ws.onclose = () => document.getElementById("state").textContent = "closed";
ws.onmessage = (e) => log(e.data);
document.getElementById("f").onsubmit = (e) => { e.preventDefault(); ws.send(document.getElementById("m").value); };
</script>
"#;
