//! ws_echo: the WebSocket echo backend that `scripts/autobahn` drives Autobahn|Testsuite
//! against, directly and through sidecar. It owns the echo and its certificates only.
//!
//! ```text
//! ws_echo DIR    writes DIR/ca.pem, DIR/cert.pem, DIR/key.pem (an rcgen CA and a leaf for
//!                127.0.0.1 and localhost), then echoes on two loopback ports and prints
//!                "ws listening on ADDR" and "wss listening on ADDR" (the leaf's TLS)
//! ```
//!
//! Every text and binary message is sent back as it came; pings, closes and protocol
//! errors are tungstenite's (default limits: 64 MiB messages, 16 MiB frames). One async-executor
//! `LocalExecutor` thread: Autobahn runs its cases one connection at a time.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use async_tungstenite::tungstenite::Message;
use futures_lite::{future, AsyncRead, AsyncWrite, StreamExt};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use futures_rustls::TlsAcceptor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: ws_echo DIR   (writes DIR/ca.pem, cert.pem, key.pem; echoes on ws and wss)");
        std::process::exit(2);
    };
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    if let Err(e) = future::block_on(ex.run(serve(ex, Path::new(dir)))) {
        eprintln!("ws_echo: {e}");
        std::process::exit(1);
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Writes a CA and a leaf for the loopback names; returns the TLS config presenting it.
fn certificates(dir: &Path) -> Result<Arc<ServerConfig>, String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA params", &e))?;
    ca.distinguished_name.push(DnType::CommonName, "ws_echo test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("CA certificate", &e))?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| err("leaf params", &e))?;
    leaf.distinguished_name.push(DnType::CommonName, "ws_echo");
    let key = KeyPair::generate().map_err(|e| err("leaf key", &e))?;
    let cert = leaf.signed_by(&key, &issuer).map_err(|e| err("leaf certificate", &e))?;
    for (name, pem) in [("ca.pem", ca_cert.pem()), ("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
        std::fs::write(dir.join(name), pem).map_err(|e| err(&dir.join(name).display().to_string(), &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .map_err(|e| err("TLS certificate", &e))?;
    Ok(Arc::new(config))
}

async fn serve(ex: &'static LocalExecutor<'static>, dir: &Path) -> Result<(), String> {
    let tls = TlsAcceptor::from(certificates(dir)?);
    let bind = || Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).map_err(|e| format!("bind: {e}"));
    let (plain, secure) = (bind()?, bind()?);
    let addr = |l: &Async<TcpListener>| l.get_ref().local_addr().map_err(|e| format!("local address: {e}"));
    say(&format!("ws listening on {}", addr(&plain)?));
    say(&format!("wss listening on {}", addr(&secure)?));
    let plain_loop = async {
        loop {
            if let Some(stream) = accept(&plain).await {
                ex.spawn(echo(stream)).detach();
            }
        }
    };
    let secure_loop = async {
        loop {
            if let Some(stream) = accept(&secure).await {
                let tls = tls.clone();
                ex.spawn(async move {
                    let handshake = async { Some(tls.accept(stream).await) };
                    let timeout = async {
                        Timer::after(HANDSHAKE_TIMEOUT).await;
                        None
                    };
                    if let Some(Ok(stream)) = future::or(handshake, timeout).await {
                        echo(stream).await;
                    }
                })
                .detach();
            }
        }
    };
    future::or(plain_loop, secure_loop).await
}

async fn accept(listener: &Async<TcpListener>) -> Option<Async<TcpStream>> {
    match listener.accept().await {
        Ok((stream, _)) => {
            let _ = stream.get_ref().set_nodelay(true);
            Some(stream)
        }
        // EMFILE and friends: back off instead of spinning.
        Err(e) => {
            eprintln!("ws_echo: accept: {e}");
            Timer::after(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Sends every text and binary message back until the peer closes or breaks the protocol.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let handshake = async { Some(async_tungstenite::accept_async(stream).await) };
    let timeout = async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        None
    };
    let Some(Ok(mut ws)) = future::or(handshake, timeout).await else { return };
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
