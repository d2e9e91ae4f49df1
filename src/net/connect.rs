//! Opening a connection to a backend: resolve, TCP connect within the connect
//! timeout, TLS with SNI and verification for https/wss. Every failure is classified
//! so the balancer can tell a dead replica from a slow one.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::stream::{Conn, Stream};
use super::tls_stream::ClientTlsStream;
use crate::rt::{self, Io};
use crate::target::Url;

/// Why a backend connection could not be opened. The replica's fault (or the
/// network's), never the client's, except `Local`: sidecar's own shortage.
#[derive(Debug)]
pub enum ConnectError {
    Resolve(io::Error),
    Refused(io::Error),
    Timeout,
    Tls(io::Error),
    /// This process or host ran out of descriptors, socket buffers or memory
    /// (EMFILE, ENFILE, ENOBUFS, ENOMEM). Says nothing about the replica.
    Local(io::Error),
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// Whether `e` is this host running short rather than a peer answering: no descriptor
/// for a socket (EMFILE per process, ENFILE system-wide), no socket buffer (ENOBUFS),
/// no memory (ENOMEM). std has no `ErrorKind` for most of these, so the numbers are
/// compared (Linux values; ENOBUFS is 55 on the BSDs and macOS).
pub fn is_local_shortage(e: &io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "cannot resolve: {e}"),
            Self::Refused(e) => write!(f, "connect failed: {e}"),
            Self::Timeout => f.write_str("connect timed out"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Local(e) => write!(f, "cannot open a backend connection here: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Resolve(e) | Self::Refused(e) | Self::Tls(e) | Self::Local(e) => Some(e),
            Self::Timeout => None,
        }
    }
}

/// Opens a connection to `url` (plain or TLS by scheme), all within `timeout`.
pub async fn connect(url: &Url, tls: &Arc<ClientConfig>, timeout: Duration) -> Result<Conn, ConnectError> {
    let deadline = super::clock::sleep(timeout);
    let attempt = async {
        let addrs = resolve(url).await?;
        let tcp = connect_any(&addrs).await?;
        if !url.scheme.is_tls() {
            return Ok(Conn::new(Stream::Plain(tcp)));
        }
        // An IP literal becomes ServerName::IpAddress: rustls sends no SNI for it and
        // checks the IP SAN (RFC 6066; docs/security.md, T3).
        let name = ServerName::try_from(url.bare_host().to_string())
            .map_err(|e| ConnectError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let stream =
            ClientTlsStream::connect(tcp, Arc::clone(tls), name).await.map_err(|e| match is_local_shortage(&e) {
                true => ConnectError::Local(e),
                false => ConnectError::Tls(e),
            })?;
        Ok(Conn::new(Stream::ClientTls(Box::new(stream))))
    };
    futures_lite::future::or(attempt, async {
        deadline.await;
        Err(ConnectError::Timeout)
    })
    .await
}

async fn resolve(url: &Url) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Some(addr) = url.addr {
        // A DNS-discovered member: resolved ahead of time, off the request path.
        return Ok(vec![addr]);
    }
    if let Ok(ip) = url.bare_host().parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let host = url.bare_host().to_string();
    let port = url.port;
    // getaddrinfo blocks; it runs on the `blocking` crate's thread pool, whose waker
    // reaches the worker through the runtime's cross-thread queue.
    let addrs = blocking::unblock(move || (host.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    let addrs = addrs.await.map_err(|e| match is_local_shortage(&e) {
        true => ConnectError::Local(e),
        false => ConnectError::Resolve(e),
    })?;
    if addrs.is_empty() {
        return Err(ConnectError::Resolve(io::Error::new(io::ErrorKind::NotFound, "no addresses")));
    }
    Ok(addrs)
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<Io<TcpStream>, ConnectError> {
    let mut last = None;
    for addr in addrs {
        match rt::connect(*addr).await {
            Ok(s) => return Ok(s),
            // Another address will not find a descriptor either.
            Err(e) if is_local_shortage(&e) => return Err(ConnectError::Local(e)),
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Refused(last.unwrap_or_else(|| io::Error::other("no address"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")] // errno numbers are Linux's
    fn local_shortages_are_told_from_peer_failures() {
        for (errno, want) in [
            (24, true),   // EMFILE: this process is out of descriptors
            (23, true),   // ENFILE: the system is
            (105, true),  // ENOBUFS: no socket buffer
            (12, true),   // ENOMEM
            (111, false), // ECONNREFUSED: the replica's answer
            (113, false), // EHOSTUNREACH: the network's
            (110, false), // ETIMEDOUT
        ] {
            assert_eq!(is_local_shortage(&io::Error::from_raw_os_error(errno)), want, "errno {errno}");
        }
        assert!(!is_local_shortage(&io::Error::other("no errno")));
    }
}
