//! One question to one nameserver: a UDP datagram from a socket of our own (async-io,
//! so a worker never blocks), and the same question again over TCP when the reply
//! comes back truncated (RFC 7766 §5). Each exchange has one deadline for both.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::wire::{decode_reply, encode_query, Kind, Reply, WireError};

/// A UDP reply without EDNS is at most 512 bytes (RFC 1035 §4.2.1); room for more
/// costs nothing and accepts a server that sends larger datagrams anyway.
const UDP_BUFFER_BYTES: usize = 4096;

/// Why a nameserver gave no usable reply.
#[derive(Debug)]
pub enum ExchangeError {
    Timeout,
    Io(io::Error),
    Wire(WireError),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("no reply in time"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Wire(e) => write!(f, "{e}"),
        }
    }
}

/// Asks `server` about `name` (fully qualified), all within `timeout`.
pub async fn exchange(server: SocketAddr, name: &str, kind: Kind, timeout: Duration) -> Result<Reply, ExchangeError> {
    let id = query_id();
    let query = encode_query(id, name, kind).map_err(ExchangeError::Wire)?;
    let work = async {
        let reply = over_udp(server, &query, id, name, kind).await?;
        if !reply.truncated {
            return Ok(reply);
        }
        over_tcp(server, &query, id, name, kind).await
    };
    futures_lite::future::or(work, async {
        crate::net::clock::sleep(timeout).await;
        Err(ExchangeError::Timeout)
    })
    .await
}

async fn over_udp(server: SocketAddr, query: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply, ExchangeError> {
    let socket = Async::<UdpSocket>::bind(local_for(server)).map_err(ExchangeError::Io)?;
    // A connected socket only receives datagrams from the server itself.
    socket.get_ref().connect(server).map_err(ExchangeError::Io)?;
    socket.send(query).await.map_err(ExchangeError::Io)?;
    let mut buf = vec![0u8; UDP_BUFFER_BYTES];
    loop {
        let n = socket.recv(&mut buf).await.map_err(ExchangeError::Io)?;
        match decode_reply(&buf[..n], id, name, kind) {
            Ok(reply) => return Ok(reply),
            // A late reply to an earlier query, or a forgery: keep waiting for ours.
            Err(WireError::Mismatch) => continue,
            Err(e) => return Err(ExchangeError::Wire(e)),
        }
    }
}

async fn over_tcp(server: SocketAddr, query: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply, ExchangeError> {
    let mut tcp = Async::<TcpStream>::connect(server).await.map_err(ExchangeError::Io)?;
    let len = u16::try_from(query.len()).map_err(|_| ExchangeError::Wire(WireError::BadName(name.to_string())))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    tcp.write_all(&framed).await.map_err(ExchangeError::Io)?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(ExchangeError::Io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut buf).await.map_err(ExchangeError::Io)?;
    decode_reply(&buf, id, name, kind).map_err(ExchangeError::Wire)
}

/// The local address to send from: loopback for a loopback server (so nothing but
/// loopback is ever bound for one), else any address of the server's family.
fn local_for(server: SocketAddr) -> SocketAddr {
    match (server.is_ipv4(), server.ip().is_loopback()) {
        (true, true) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        (true, false) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        (false, true) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        (false, false) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// An unpredictable query id (with the kernel's random source port, the defence
/// against forged replies, RFC 5452 §9.2): SipHash with the process's random keys over
/// a counter.
fn query_id() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Relaxed));
    h.finish() as u16
}
