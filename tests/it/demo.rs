//! `sidecar demo` behaves like the server: the page and the WebSocket echo through the
//! proxy (over https/wss with `--tls`), the same start-up and shutdown lines, SIGINT or
//! SIGTERM drain and exit 0, a second SIGINT exits 130, SIGINT works even when the
//! starting shell ignored it.

use std::process::Command;
use std::time::Duration;

use crate::support::tls;
use crate::support::*;
use async_tungstenite::tungstenite::{http, Message};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};

/// The demo's drain timeout is 2 s; this covers it with room for a loaded machine.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

fn demo(extra: &[&str]) -> Sidecar {
    let mut args = vec!["demo", "--port", "0"];
    args.extend_from_slice(extra);
    Sidecar::start_args(TempDir::new(), &args, &format!("sidecar {}", args.join(" ")))
}

/// Sends `text` on `ws` and returns the text frame that comes back.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut async_tungstenite::WebSocketStream<S>, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send a WebSocket message");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected an echo of {text:?}, got {other:?}"),
        }
    }
}

/// The `SHA-256 fingerprint XX:..` sidecar logged.
fn logged_fingerprint(p: &Sidecar) -> String {
    assert!(p.wait_for_log("SHA-256 fingerprint ", DEADLINE), "no fingerprint line:\n{}", p.logs().join("\n"));
    let logs = p.logs();
    let line = logs.iter().find(|l| l.contains("SHA-256 fingerprint ")).expect("fingerprint line");
    let at = line.find("SHA-256 fingerprint ").expect("marker") + "SHA-256 fingerprint ".len();
    line[at..].split_whitespace().next().expect("fingerprint").to_string()
}

#[test]
fn demo_serves_the_page_and_echoes_websocket_messages_through_the_proxy() {
    let p = demo(&[]);
    assert!(!p.is_https());
    let page = p.get("/");
    assert_eq!(page.status, 200, "{}", page.head_str());
    assert!(page.header("content-type").unwrap_or("").starts_with("text/html"), "{}", page.head_str());
    let body = page.body_str();
    assert!(body.contains("Served by replica") && body.contains("new WebSocket("), "{body}");
    let hello = p.get("/hello");
    assert!(hello.body_str().starts_with("hello from replica "), "{}", hello.body_str());
    let mut ws = ws_open(p.addr(), "/echo");
    let reply = block_within(DEADLINE, "demo echo", echo(&mut ws, "ping 1"));
    assert!(reply.starts_with("replica ") && reply.ends_with(" echoes: ping 1"), "{reply:?}");
}

#[test]
fn demo_tls_serves_https_and_wss_with_a_certificate_clients_must_be_told_to_trust() {
    let p = demo(&["--tls"]);
    assert!(p.is_https(), "the listening line says https:\n{}", p.logs().join("\n"));
    assert!(p.logs().iter().any(|l| l.contains("for development only")), "{}", p.logs().join("\n"));
    let fingerprint = logged_fingerprint(&p);

    let stranger = tls::client_config(&tls::self_signed(&["localhost"]).cert_der, &[b"http/1.1"]);
    let refused = block_within(DEADLINE, "TLS handshake", tls::connect(p.addr(), "localhost", stranger));
    let Err(err) = refused else { panic!("a client that does not trust the certificate must fail the handshake") };
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");

    let pinned = tls::pinned_client_config(&fingerprint, &[b"http/1.1"]);
    let (mut c, _) = tls::tls_conn(p.addr(), "localhost", pinned);
    c.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let page = c.read_response();
    assert_eq!(page.status, 200, "{}", page.head_str());
    assert!(page.body_str().contains("location.protocol === \"https:\" ? \"wss://\""), "{}", page.body_str());

    let ws_config = tls::pinned_client_config(&fingerprint, &[]);
    let reply = block_within(DEADLINE, "wss echo through the demo", async {
        let stream = tls::connect(p.addr(), "localhost", ws_config).await.expect("TLS to the demo");
        let req = http::Request::builder()
            .uri(format!("wss://localhost:{}/echo", p.port()))
            .header("Host", format!("localhost:{}", p.port()))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", async_tungstenite::tungstenite::handshake::client::generate_key())
            .body(())
            .expect("request");
        let (mut ws, _) = async_tungstenite::client_async(req, stream).await.expect("wss handshake");
        echo(&mut ws, "over wss").await
    });
    assert!(reply.ends_with(" echoes: over wss"), "{reply:?}");
}

#[test]
fn sigint_drains_open_tunnels_and_exits_0_with_the_servers_lines() {
    let mut p = demo(&[]);
    assert!(p.logs().iter().any(|l| l.contains(&format!("listening on {} (http)", p.addr()))), "{:?}", p.logs());
    let mut ws = ws_open(p.addr(), "/echo");
    block_within(DEADLINE, "echo before the drain", echo(&mut ws, "before"));
    p.signal("INT");
    assert!(p.wait_for_log("SIGINT: draining", DEADLINE), "{}", p.logs().join("\n"));
    let code = p.wait_exit(EXIT_DEADLINE);
    assert_eq!(code, Some(0), "exit after the drain; logs:\n{}", p.logs().join("\n"));
    assert!(p.logs().iter().any(|l| l.contains("drained, exiting")), "{}", p.logs().join("\n"));
    assert!(ws_wait_closed(&mut ws, DEADLINE), "the tunnel was closed by the drain");
}

#[test]
fn sigterm_drains_and_exits_0() {
    let mut p = demo(&[]);
    assert_eq!(p.get("/hello").status, 200);
    p.signal("TERM");
    assert_eq!(p.wait_exit(EXIT_DEADLINE), Some(0), "logs:\n{}", p.logs().join("\n"));
    let logs = p.logs().join("\n");
    assert!(logs.contains("SIGTERM: draining") && logs.contains("drained, exiting"), "{logs}");
}

#[test]
fn a_second_sigint_while_draining_exits_130_at_once() {
    let mut p = demo(&[]);
    // An open tunnel keeps the drain going for the demo's 2 s.
    let mut ws = ws_open(p.addr(), "/echo");
    block_within(DEADLINE, "echo", echo(&mut ws, "hold"));
    p.signal("INT");
    assert!(p.wait_for_log("SIGINT: draining", DEADLINE), "{}", p.logs().join("\n"));
    p.signal("INT");
    assert_eq!(p.wait_exit(EXIT_DEADLINE), Some(130), "logs:\n{}", p.logs().join("\n"));
    assert!(p.logs().iter().any(|l| l.contains("second SIGINT")), "{}", p.logs().join("\n"));
    assert!(!p.logs().iter().any(|l| l.contains("drained, exiting")), "it did not wait for the drain");
}

#[test]
fn sigint_stops_the_demo_even_when_the_starting_shell_ignored_it() {
    // `cmd &` in a non-interactive shell starts cmd with SIGINT ignored; `trap '' INT`
    // then `exec` does the same explicitly.
    let mut command = Command::new("sh");
    command.args(["-c", "trap '' INT; exec \"$0\" demo --port 0", binary()]);
    let mut p = Sidecar::start_command(TempDir::new(), command, "sh -c \"trap '' INT; exec sidecar demo\"");
    p.signal("INT");
    assert_eq!(p.wait_exit(EXIT_DEADLINE), Some(0), "logs:\n{}", p.logs().join("\n"));
}

#[test]
fn sighup_is_logged_and_ignored_by_the_demo() {
    let mut p = demo(&[]);
    p.signal("HUP");
    assert!(p.wait_for_log("SIGHUP: ignored", DEADLINE), "{}", p.logs().join("\n"));
    assert!(p.is_running());
    assert_eq!(p.get("/hello").status, 200, "still serving after SIGHUP");
}
