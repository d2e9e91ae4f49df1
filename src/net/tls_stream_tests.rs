//! The TLS stream against rustls's own buffered streams, on loopback.

use super::*;

use std::future::Future;
use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use socket2::SockRef;

use crate::net::clock::sleep;
use crate::rt::{self, Ready};

#[test]
fn a_whole_record_is_told_from_a_cut_one() {
    let cases: &[(&[u8], bool)] = &[
        (&[], false),
        (&[23, 3, 3, 0], false),
        (&[23, 3, 3, 0, 0], true),
        (&[23, 3, 3, 0, 2, 1], false),
        (&[23, 3, 3, 0, 2, 1, 2], true),
        (&[23, 3, 3, 0, 2, 1, 2, 23], true),
    ];
    for (records, whole) in cases {
        assert_eq!(holds_whole_record(records), *whole, "{records:?}");
    }
}

#[test]
fn held_bytes_keep_no_memory_once_drained() {
    let mut held = Held::default();
    held.push(b"hello");
    let mut out = [0u8; 3];
    assert_eq!(held.drain_into(&mut out), 3);
    assert_eq!(&out, b"hel");
    assert_eq!(held.as_slice(), b"lo");
    assert_eq!(held.drain_into(&mut out), 2);
    assert!(held.is_empty());
    assert_eq!(held.bytes.capacity(), 0);
}

// The stream against an independent peer: rustls's buffered API (`StreamOwned` over a
// blocking std socket, read and write timeouts of 10 s) on a thread of its own, over
// a loopback pair; sidecar's side runs on its runtime (`rt::block_on`), bounded by
// `SIDECAR_LIMIT`.

/// The peer's socket timeouts: no blocking call of the peer waits longer.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest sidecar's side of a test may take.
const SIDECAR_LIMIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

/// Which end sidecar's stream is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Server,
    Client,
}
const ROLES: [Role; 2] = [Role::Server, Role::Client];

/// The protocol versions the peer offers or accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Version {
    /// The crate's own configs (TLS 1.3 is negotiated).
    Default,
    /// The peer allows TLS 1.2 only.
    Tls12,
}

/// A self-signed certificate for "localhost" and its key.
struct Identity {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    fn new() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("self-signed certificate");
        Self { cert: ck.cert.der().clone(), key: ck.signing_key.serialize_der() }
    }
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.clone()).into()
    }
    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("trust anchor");
        roots
    }
    /// The crate's listener config presenting this certificate.
    fn server_config(&self) -> Arc<ServerConfig> {
        crate::tls::server_config_from(vec![self.cert.clone()], self.key()).expect("server config")
    }
    /// The crate's backend config trusting this certificate only.
    fn client_config(&self) -> Arc<ClientConfig> {
        crate::tls::client_config_with_roots(self.roots(), None).expect("client config")
    }
    fn peer_server_config(&self, version: Version) -> Arc<ServerConfig> {
        match version {
            Version::Default => self.server_config(),
            Version::Tls12 => Arc::new(
                ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS12])
                    .expect("TLS 1.2")
                    .with_no_client_auth()
                    .with_single_cert(vec![self.cert.clone()], self.key())
                    .expect("server cert"),
            ),
        }
    }
    fn peer_client_config(&self, version: Version) -> Arc<ClientConfig> {
        match version {
            Version::Default => self.client_config(),
            Version::Tls12 => Arc::new(
                ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS12])
                    .expect("TLS 1.2")
                    .with_root_certificates(self.roots())
                    .with_no_client_auth(),
            ),
        }
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("server name")
}

/// A connected loopback pair: sidecar's end (non-blocking, registered by the test's
/// runtime) and the peer's (blocking, with timeouts). `buffer`: the sockets' kernel
/// buffer sizes, small to make a writer fill them.
fn tcp_pair(buffer: Option<usize>) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    if let Some(size) = buffer {
        let _ = SockRef::from(&listener).set_recv_buffer_size(size);
    }
    let near = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (far, _) = listener.accept().expect("accept");
    if let Some(size) = buffer {
        for s in [&near, &far] {
            let _ = SockRef::from(s).set_recv_buffer_size(size);
            let _ = SockRef::from(s).set_send_buffer_size(size);
        }
    }
    near.set_nonblocking(true).expect("nonblocking");
    far.set_read_timeout(Some(PEER_TIMEOUT)).expect("read timeout");
    far.set_write_timeout(Some(PEER_TIMEOUT)).expect("write timeout");
    (near, far)
}

/// Runs `future` on sidecar's runtime, failing the test if it takes longer than
/// `SIDECAR_LIMIT`.
fn block_on_bounded<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
    rt::block_on(async move {
        let limit = async {
            sleep(SIDECAR_LIMIT).await;
            panic!("sidecar's side did not finish within {SIDECAR_LIMIT:?}");
        };
        futures_lite::future::or(future, limit).await
    })
    .expect("runtime")
}

/// Runs `peer` on a thread of its own and `sidecar` on this one; then reports the
/// peer's panic first (it is usually the cause of the other side's).
fn together<T, U>(peer: impl FnOnce() -> U + Send + 'static, sidecar: impl Future<Output = T> + 'static) -> (T, U)
where
    T: 'static,
    U: Send + 'static,
{
    let peer = std::thread::spawn(peer);
    let ours = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on_bounded(sidecar)));
    let theirs = peer.join();
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => (ours, theirs),
        (_, Err(panic)) | (Err(panic), _) => std::panic::resume_unwind(panic),
    }
}

/// Sidecar's stream in either role.
enum Sidecar {
    Server(ServerTlsStream),
    Client(ClientTlsStream),
}

impl Sidecar {
    async fn open(role: Role, near: TcpStream, id: &Identity) -> io::Result<Self> {
        let io = Io::new(near, Ready::EMPTY)?;
        Ok(match role {
            Role::Server => Self::Server(ServerTlsStream::accept(io, id.server_config()).await?),
            Role::Client => Self::Client(ClientTlsStream::connect(io, id.client_config(), localhost()).await?),
        })
    }
    fn outgoing_len(&self) -> usize {
        match self {
            Self::Server(s) => s.outgoing.as_slice().len(),
            Self::Client(s) => s.outgoing.as_slice().len(),
        }
    }
    fn plaintext_len(&self) -> usize {
        match self {
            Self::Server(s) => s.plaintext.as_slice().len(),
            Self::Client(s) => s.plaintext.as_slice().len(),
        }
    }
    fn has_pending_read(&self) -> bool {
        match self {
            Self::Server(s) => s.has_pending_read(),
            Self::Client(s) => s.has_pending_read(),
        }
    }
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Server(s) => s.tcp().get_ref(),
            Self::Client(s) => s.tcp().get_ref(),
        }
    }

    /// Waits (at most 5 s) until `len` bytes are readable on the socket, as from a
    /// peer that sent them all before sidecar reads.
    async fn wait_for_bytes(&self, len: usize) {
        let mut peek = vec![0u8; len];
        for _ in 0..5000 {
            if self.tcp().peek(&mut peek).unwrap_or(0) >= len {
                return;
            }
            sleep(Duration::from_millis(1)).await;
        }
        panic!("{len} bytes did not arrive");
    }

    /// The usual end: flush, close_notify, the write half shut; then what is left
    /// to read, to the peer's end.
    async fn finish(&mut self) -> (Vec<u8>, io::Result<()>) {
        self.flush().await.expect("flush");
        self.close().await.expect("close");
        assert_eq!(self.outgoing_len(), 0, "close left bytes unsent");
        let _ = self.tcp().shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        let end = self.read_to_end(&mut rest).await.map(|_| ());
        (rest, end)
    }
}

impl AsyncRead for Sidecar {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_read(cx, buf),
            Self::Client(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Sidecar {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_write(cx, buf),
            Self::Client(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Client(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_flush(cx),
            Self::Client(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Server(s) => Pin::new(s).poll_close(cx),
            Self::Client(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// The peer: rustls's buffered connection, the opposite role of sidecar's.
enum Peer {
    Server(StreamOwned<ServerConnection, TcpStream>),
    Client(StreamOwned<ClientConnection, TcpStream>),
}

impl Peer {
    /// The peer for sidecar in `role`; its handshake runs with its first read or write.
    fn new(role: Role, version: Version, id: &Identity, far: TcpStream) -> Self {
        match role {
            Role::Client => {
                let conn = ServerConnection::new(id.peer_server_config(version)).expect("server connection");
                Self::Server(StreamOwned::new(conn, far))
            }
            Role::Server => {
                let conn =
                    ClientConnection::new(id.peer_client_config(version), localhost()).expect("client connection");
                Self::Client(StreamOwned::new(conn, far))
            }
        }
    }
    fn handshake(&mut self) -> io::Result<()> {
        match self {
            Self::Server(s) => {
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
            }
            Self::Client(s) => {
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
            }
        }
        Ok(())
    }
    fn version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            Self::Server(s) => s.conn.protocol_version(),
            Self::Client(s) => s.conn.protocol_version(),
        }
    }
    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Self::Server(s) => &mut s.sock,
            Self::Client(s) => &mut s.sock,
        }
    }
    /// Sends a TLS 1.3 key update (asking for sidecar's) before the next record.
    fn refresh_traffic_keys(&mut self) {
        match self {
            Self::Server(s) => s.conn.refresh_traffic_keys(),
            Self::Client(s) => s.conn.refresh_traffic_keys(),
        }
        .expect("key update");
    }
    fn send_close_notify(&mut self) {
        match self {
            Self::Server(s) => s.conn.send_close_notify(),
            Self::Client(s) => s.conn.send_close_notify(),
        }
        self.flush().expect("send close_notify");
    }
    /// Encrypts `data` as one record of its own, kept for `send_queued`.
    fn queue_record(&mut self, data: &[u8]) {
        match self {
            Self::Server(s) => s.conn.writer().write_all(data),
            Self::Client(s) => s.conn.writer().write_all(data),
        }
        .expect("queue a record");
    }
    /// The encrypted bytes queued, taken out instead of sent.
    fn take_queued(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Server(s) => {
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut out).expect("write_tls");
                }
            }
            Self::Client(s) => {
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut out).expect("write_tls");
                }
            }
        }
        out
    }
    /// Reads to the end; the end is clean only after sidecar's close_notify
    /// (a bare FIN is an `UnexpectedEof` error in rustls).
    fn read_all(&mut self) -> (Vec<u8>, io::Result<usize>) {
        let mut got = Vec::new();
        let end = self.read_to_end(&mut got);
        (got, end)
    }
    /// Waits for sidecar to hang up, whatever it sent before.
    fn wait_for_hang_up(&mut self) {
        let mut sink = [0u8; 4096];
        while matches!(self.tcp().read(&mut sink), Ok(1..)) {}
    }
}

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Server(s) => s.read(buf),
            Self::Client(s) => s.read(buf),
        }
    }
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Server(s) => s.write(buf),
            Self::Client(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Server(s) => s.flush(),
            Self::Client(s) => s.flush(),
        }
    }
}

/// Runs `peer` against sidecar's stream in `role` (opened with the crate's configs
/// for one fresh certificate), `sidecar` on the stream once its handshake is done.
fn exchange<T, U, F>(
    role: Role,
    version: Version,
    buffer: Option<usize>,
    peer: impl FnOnce(&mut Peer) -> U + Send + 'static,
    sidecar: impl FnOnce(Sidecar) -> F + 'static,
) -> (T, U)
where
    T: 'static,
    U: Send + 'static,
    F: Future<Output = T> + 'static,
{
    let id = Arc::new(Identity::new());
    let (near, far) = tcp_pair(buffer);
    let peer_id = Arc::clone(&id);
    together(
        move || {
            let mut p = Peer::new(role, version, &peer_id, far);
            peer(&mut p)
        },
        async move {
            let stream = Sidecar::open(role, near, &id).await.expect("sidecar's handshake");
            sidecar(stream).await
        },
    )
}

/// `len` bytes in which every position tells its own value, from `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i % 251) as u8) ^ ((i / 251) as u8).rotate_left(3) ^ seed).collect()
}

/// Asserts `got == want` without printing megabytes: the lengths and the first
/// difference.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    panic!("{what}: got {} bytes, want {}; first difference at {at:?}", got.len(), want.len());
}

/// The peer's usual end: sidecar's data to its close_notify, then its own.
fn peer_finish(peer: &mut Peer) -> Vec<u8> {
    let (got, end) = peer.read_all();
    end.expect("the peer reads to sidecar's close_notify");
    peer.send_close_notify();
    got
}

#[test]
fn a_message_makes_a_round_trip_in_either_role() {
    let cases = [
        (Role::Server, Version::Default, rustls::ProtocolVersion::TLSv1_3),
        (Role::Client, Version::Default, rustls::ProtocolVersion::TLSv1_3),
        (Role::Server, Version::Tls12, rustls::ProtocolVersion::TLSv1_2),
        (Role::Client, Version::Tls12, rustls::ProtocolVersion::TLSv1_2),
    ];
    for (role, version, negotiated) in cases {
        let ((asked, rest), (answer, seen_version)) = exchange(
            role,
            version,
            None,
            |peer| {
                peer.write_all(b"ping from the peer").expect("peer write");
                peer.flush().expect("peer flush");
                let answer = peer_finish(peer);
                (answer, peer.version())
            },
            |mut s| async move {
                let mut asked = [0u8; 18];
                s.read_exact(&mut asked).await.expect("sidecar read");
                s.write_all(b"pong: ").await.expect("sidecar write");
                s.write_all(&asked).await.expect("sidecar write");
                let (rest, end) = s.finish().await;
                end.expect("sidecar reads to the peer's close_notify");
                (asked, rest)
            },
        );
        assert_eq!(&asked, b"ping from the peer", "{role:?} {version:?}");
        assert_eq!(answer, b"pong: ping from the peer", "{role:?} {version:?}");
        assert!(rest.is_empty(), "{role:?} {version:?}: {rest:?} after the message");
        assert_eq!(seen_version, Some(negotiated), "{role:?} {version:?}");
    }
}

#[test]
fn a_small_reader_gets_a_large_message_intact() {
    const LEN: usize = 100 * 1024;
    for role in ROLES {
        for buffer in [1, 100, 16 * 1024 + 1] {
            let ((got, overflowed), ()) = exchange(
                role,
                Version::Default,
                None,
                |peer| {
                    peer.write_all(&pattern(LEN, 7)).expect("peer write");
                    peer.send_close_notify();
                    let (_, _) = peer.read_all();
                },
                move |mut s| async move {
                    let mut got = Vec::with_capacity(LEN);
                    let mut chunk = vec![0u8; buffer];
                    let mut overflowed = false;
                    loop {
                        let n = s.read(&mut chunk).await.expect("sidecar read");
                        if n == 0 {
                            break;
                        }
                        assert!(n <= buffer);
                        got.extend_from_slice(&chunk[..n]);
                        if s.plaintext_len() > 0 {
                            overflowed = true;
                            assert!(s.has_pending_read(), "decrypted bytes wait, has_pending_read says no");
                        }
                    }
                    let _ = s.finish().await;
                    (got, overflowed)
                },
            );
            assert_same(&got, &pattern(LEN, 7), &format!("{role:?}, {buffer}-byte reads"));
            if buffer < 16 * 1024 {
                assert!(overflowed, "{role:?}, {buffer}-byte reads: no plaintext was ever kept");
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    SidecarSends,
    PeerSends,
}

#[test]
fn large_transfers_fill_the_socket_and_arrive_intact() {
    const LEN: usize = 4 * MIB;
    for role in ROLES {
        for direction in [Direction::SidecarSends, Direction::PeerSends] {
            let what = format!("{role:?} {direction:?}");
            let ((got, used_outgoing), peer_got) = exchange(
                role,
                Version::Default,
                Some(32 * 1024),
                move |peer| match direction {
                    Direction::SidecarSends => {
                        // A slow reader, in small pieces: sidecar's writes fill the socket.
                        std::thread::sleep(Duration::from_millis(200));
                        let mut got = Vec::with_capacity(LEN);
                        let mut piece = [0u8; 1000];
                        loop {
                            let n = peer.read(&mut piece).expect("peer read to close_notify");
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&piece[..n]);
                            if got.len() % (256 * 1024) < 1000 {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        peer.send_close_notify();
                        got
                    }
                    Direction::PeerSends => {
                        let data = pattern(LEN, 99);
                        for part in data.chunks(5000) {
                            peer.write_all(part).expect("peer write");
                        }
                        peer.send_close_notify();
                        let (rest, end) = peer.read_all();
                        end.expect("the peer reads to sidecar's close_notify");
                        rest
                    }
                },
                move |mut s| async move {
                    match direction {
                        Direction::SidecarSends => {
                            let data = pattern(LEN, 42);
                            let mut at = 0;
                            let mut used_outgoing = false;
                            while at < data.len() {
                                let n = s.write(&data[at..]).await.expect("sidecar write");
                                assert!(n > 0 && n <= data.len() - at, "wrote {n} of {}", data.len() - at);
                                at += n;
                                used_outgoing |= s.outgoing_len() > 0;
                            }
                            let (rest, end) = s.finish().await;
                            end.expect("sidecar reads to the peer's close_notify");
                            (rest, used_outgoing)
                        }
                        Direction::PeerSends => {
                            // A slow reader in small pieces: the peer's writes fill the socket.
                            sleep(Duration::from_millis(200)).await;
                            let mut got = Vec::with_capacity(LEN);
                            let mut piece = [0u8; 1000];
                            loop {
                                let n = s.read(&mut piece).await.expect("sidecar read to close_notify");
                                if n == 0 {
                                    break;
                                }
                                got.extend_from_slice(&piece[..n]);
                                if got.len() % (256 * 1024) < 1000 {
                                    sleep(Duration::from_millis(5)).await;
                                }
                            }
                            let (rest, end) = s.finish().await;
                            end.expect("a second end after close_notify");
                            assert!(rest.is_empty());
                            (got, false)
                        }
                    }
                },
            );
            match direction {
                Direction::SidecarSends => {
                    assert_same(&peer_got, &pattern(LEN, 42), &what);
                    assert!(got.is_empty(), "{what}");
                    assert!(used_outgoing, "{what}: the socket never filled, `outgoing` was not used");
                }
                Direction::PeerSends => {
                    assert_same(&got, &pattern(LEN, 99), &what);
                    assert!(peer_got.is_empty(), "{what}");
                }
            }
        }
    }
}

#[test]
fn a_vectored_write_arrives_in_order() {
    let parts: Vec<Vec<u8>> = vec![
        b"alpha-".to_vec(),
        Vec::new(),
        b"beta-".to_vec(),
        pattern(300_000, 1),
        b"-gamma-".to_vec(),
        pattern(16 * 1024, 2),
        b"-end".to_vec(),
    ];
    let want: Vec<u8> = parts.concat();
    for role in ROLES {
        let parts = parts.clone();
        let (calls, got) = exchange(role, Version::Default, None, peer_finish, move |mut s| async move {
            let mut calls = 0;
            let (mut part, mut offset) = (0, 0);
            while part < parts.len() {
                let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[part][offset..])
                    .chain(parts[part + 1..].iter().map(Vec::as_slice))
                    .map(IoSlice::new)
                    .collect();
                let offered: usize = slices.iter().map(|b| b.len()).sum();
                let mut n = s.write_vectored(&slices).await.expect("sidecar write_vectored");
                calls += 1;
                assert!(n > 0 && n <= offered, "took {n} of {offered}");
                while part < parts.len() && n >= parts[part].len() - offset {
                    n -= parts[part].len() - offset;
                    part += 1;
                    offset = 0;
                }
                offset += n;
            }
            let (rest, end) = s.finish().await;
            end.expect("sidecar reads to the peer's close_notify");
            assert!(rest.is_empty());
            calls
        });
        assert_same(&got, &want, &format!("{role:?}"));
        // Set-up check: the stream took the slices over several calls, so the
        // partial vectored write (a cut inside a slice) was exercised.
        assert!(calls >= 2, "{role:?}: {} bytes in {calls} call", want.len());
    }
}

#[test]
fn small_slices_written_together_leave_as_one_record() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec();
    // (slices, records before close_notify)
    let cases: [(Vec<Vec<u8>>, usize); 4] = [
        (vec![head.clone(), b"hello".to_vec()], 1),
        (vec![Vec::new(), head.clone(), Vec::new(), b"he".to_vec(), b"llo".to_vec()], 1),
        (vec![head.clone(), pattern(GATHER_AT_MOST_BYTES - head.len(), 3)], 1),
        (vec![head.clone(), pattern(GATHER_AT_MOST_BYTES, 3)], 2),
    ];
    for version in [Version::Default, Version::Tls12] {
        for (parts, want_records) in &cases {
            let parts = parts.clone();
            let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
            let total: usize = lens.iter().sum();
            // sidecar is the client: after its handshake it sends nothing unasked, so
            // the peer's socket holds what this write and close_notify put there.
            let ((), wire) = exchange(
                Role::Client,
                version,
                None,
                |peer| {
                    peer.handshake().expect("peer's handshake");
                    peer.write_all(b"go").expect("send go");
                    peer.flush().expect("flush go");
                    let mut wire = Vec::new();
                    peer.tcp().read_to_end(&mut wire).expect("read the raw records");
                    wire
                },
                move |mut s| async move {
                    let mut go = [0u8; 2];
                    s.read_exact(&mut go).await.expect("read go");
                    let slices: Vec<IoSlice<'_>> = parts.iter().map(Vec::as_slice).map(IoSlice::new).collect();
                    let n = s.write_vectored(&slices).await.expect("write_vectored");
                    assert_eq!(n, total, "one call takes it all");
                    s.flush().await.expect("flush");
                    s.close().await.expect("close");
                    let _ = s.tcp().shutdown(Shutdown::Write);
                },
            );
            let records = record_lengths(&wire);
            let what = format!("{version:?}, slices of {lens:?} bytes: records {records:?}");
            assert_eq!(records.len(), want_records + 1, "{what}");
            // A record adds at most 29 bytes on the wire (TLS 1.2: header, nonce, tag).
            let data: usize = records[..*want_records].iter().sum();
            assert!(data >= total && data <= total + want_records * 29, "{what}");
        }
    }
}

/// The payload lengths of the TLS records in `wire`, in order.
fn record_lengths(mut wire: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    while let Some(len) = record_payload_len(wire) {
        lengths.push(len);
        wire = &wire[(5 + len).min(wire.len())..];
    }
    lengths
}

/// How the peer ends its data.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    CloseNotify,
    /// A FIN with no close_notify before it.
    Fin,
    /// Half a record, then a FIN.
    FinMidRecord,
}

#[test]
fn the_end_of_the_peer_s_data_is_told_by_how_it_ends() {
    const LEN: usize = 50 * 1024;
    for role in ROLES {
        for ending in [Ending::CloseNotify, Ending::Fin, Ending::FinMidRecord] {
            let what = format!("{role:?} {ending:?}");
            let ((got, end, again), peer_saw) = exchange(
                role,
                Version::Default,
                None,
                move |peer| {
                    peer.write_all(&pattern(LEN, 3)).expect("peer write");
                    peer.flush().expect("peer flush");
                    match ending {
                        Ending::CloseNotify => {
                            // The socket stays open: only close_notify can tell the end.
                            peer.send_close_notify();
                            Some(peer.read_all())
                        }
                        Ending::Fin => {
                            peer.tcp().shutdown(Shutdown::Write).expect("FIN");
                            peer.wait_for_hang_up();
                            None
                        }
                        Ending::FinMidRecord => {
                            peer.queue_record(b"a record cut in half");
                            let record = peer.take_queued();
                            peer.tcp().write_all(&record[..record.len() / 2]).expect("half a record");
                            peer.tcp().shutdown(Shutdown::Write).expect("FIN");
                            peer.wait_for_hang_up();
                            None
                        }
                    }
                },
                move |mut s| async move {
                    let mut got = Vec::new();
                    let end = s.read_to_end(&mut got).await;
                    let mut one = [0u8; 10];
                    let again = s.read(&mut one).await;
                    if ending == Ending::CloseNotify {
                        s.write_all(b"reply").await.expect("write after the peer's close_notify");
                        s.close().await.expect("close");
                        let _ = s.tcp().shutdown(Shutdown::Write);
                    }
                    (got, end, again)
                },
            );
            assert_same(&got, &pattern(LEN, 3), &what);
            match ending {
                Ending::CloseNotify => {
                    assert_eq!(end.expect("Ok at close_notify"), LEN, "{what}");
                    assert_eq!(again.expect("Ok again"), 0, "{what}: a read after the end");
                    let (reply, peer_end) = peer_saw.expect("the peer read");
                    peer_end.expect("the peer reads to sidecar's close_notify");
                    assert_eq!(reply, b"reply", "{what}");
                }
                Ending::Fin | Ending::FinMidRecord => {
                    let e = end.expect_err("a FIN without close_notify is an error");
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{what}: {e}");
                    let e = again.expect_err("still an error");
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{what}: {e}");
                }
            }
        }
    }
}

#[test]
fn close_sends_a_close_notify_the_peer_reads_as_a_clean_end() {
    for role in ROLES {
        let (after_close, (got, end)) = exchange(
            role,
            Version::Default,
            None,
            |peer| {
                // A read returns Ok(0) only at close_notify; a FIN alone is an error.
                let (got, end) = peer.read_all();
                peer.send_close_notify();
                (got, end)
            },
            |mut s| async move {
                s.write_all(b"last words").await.expect("write");
                s.close().await.expect("close");
                let after_close = s.write(b"more").await;
                // Sidecar's socket stays open until the peer answers: the end the peer
                // sees is the close_notify.
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.expect("the peer's close_notify");
                after_close
            },
        );
        assert_eq!(got, b"last words", "{role:?}");
        assert_eq!(end.expect("a clean end at the peer"), 10, "{role:?}");
        let e = after_close.expect_err("a write after close");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{role:?}: {e}");
    }
}

#[test]
fn a_key_update_from_the_peer_keeps_data_flowing_both_ways() {
    const LEN: usize = 40_000;
    for role in ROLES {
        let (echoed, peer_got) = exchange(
            role,
            Version::Default,
            None,
            |peer| {
                let mut rounds = Vec::new();
                for (round, seed) in [10u8, 11, 12].into_iter().enumerate() {
                    if round > 0 {
                        peer.refresh_traffic_keys();
                    }
                    peer.write_all(&pattern(LEN, seed)).expect("peer write");
                    peer.flush().expect("peer flush");
                    let mut back = vec![0u8; LEN];
                    peer.read_exact(&mut back).expect("the peer reads the echo");
                    rounds.push(back);
                }
                peer.send_close_notify();
                let (rest, end) = peer.read_all();
                end.expect("the peer reads to sidecar's close_notify");
                assert!(rest.is_empty());
                rounds
            },
            |mut s| async move {
                let mut echoed = 0;
                let mut buf = vec![0u8; 10_000];
                loop {
                    let n = s.read(&mut buf).await.expect("sidecar read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.expect("sidecar echo");
                    echoed += n;
                }
                s.close().await.expect("close");
                echoed
            },
        );
        assert_eq!(echoed, 3 * LEN, "{role:?}");
        for (round, (got, seed)) in peer_got.iter().zip([10u8, 11, 12]).enumerate() {
            assert_same(got, &pattern(LEN, seed), &format!("{role:?}, round {round}"));
        }
    }
}

/// The rustls error inside an `io::Error`.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Roots without the server's certificate, the client's error and the alert it
/// sends for it.
fn untrusting_roots() -> Vec<(&'static str, RootCertStore, rustls::Error, rustls::AlertDescription)> {
    use rustls::{AlertDescription, CertificateError, Error};
    vec![
        (
            "no roots",
            RootCertStore::empty(),
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
            AlertDescription::UnknownCA,
        ),
        // rcgen's simple self-signed certificates share one subject: the other one is
        // taken for the issuer, and its key does not verify the signature.
        (
            "another certificate of the same name",
            Identity::new().roots(),
            Error::InvalidCertificate(CertificateError::BadSignature),
            AlertDescription::DecryptError,
        ),
    ]
}

#[test]
fn a_client_that_does_not_trust_the_server_fails_its_handshake() {
    for (case, roots, error, alert) in untrusting_roots() {
        let server_config = Identity::new().server_config();
        let untrusting = crate::tls::client_config_with_roots(roots, None).expect("client config");
        let (near, far) = tcp_pair(None);
        let (ours, theirs) = together(
            move || {
                let mut peer = StreamOwned::new(ServerConnection::new(server_config).expect("server"), far);
                let mut sink = Vec::new();
                peer.read_to_end(&mut sink)
            },
            async move {
                let io = Io::new(near, Ready::EMPTY).expect("register");
                ClientTlsStream::connect(io, untrusting, localhost()).await.map(|_| ())
            },
        );
        let e = ours.expect_err("sidecar's handshake with an untrusted certificate");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{case}: {e}");
        assert_eq!(rustls_error(&e), Some(&error), "{case}: {e}");
        // Sidecar's alert reached the server before its socket closed.
        let e = theirs.expect_err("the peer's handshake");
        assert_eq!(rustls_error(&e), Some(&rustls::Error::AlertReceived(alert)), "{case}: {e}");
    }
}

#[test]
fn a_server_the_peer_does_not_trust_fails_its_handshake() {
    for (case, roots, error, alert) in untrusting_roots() {
        let server_id = Identity::new();
        let untrusting = crate::tls::client_config_with_roots(roots, None).expect("client config");
        let (near, far) = tcp_pair(None);
        let (ours, theirs) = together(
            move || {
                let conn = ClientConnection::new(untrusting, localhost()).expect("client");
                let mut peer = Peer::Client(StreamOwned::new(conn, far));
                let shook = peer.handshake();
                peer.wait_for_hang_up();
                shook
            },
            async move {
                let io = Io::new(near, Ready::EMPTY).expect("register");
                ServerTlsStream::accept(io, server_id.server_config()).await.map(|_| ())
            },
        );
        let e = theirs.expect_err("the peer's handshake");
        assert_eq!(rustls_error(&e), Some(&error), "{case}: {e}");
        let e = ours.expect_err("sidecar's handshake");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{case}: {e}");
        assert_eq!(rustls_error(&e), Some(&rustls::Error::AlertReceived(alert)), "{case}: {e}");
    }
}

#[test]
// rustls does not remember every failure (one it finds splitting records leaves the
// bytes in place): processing them again would raise a second fatal alert, which a
// build with debug assertions turns into a panic.
fn plain_text_to_the_server_fails_its_handshake_with_an_alert() {
    let id = Identity::new();
    let (near, mut far) = tcp_pair(None);
    let (ours, answer) = together(
        move || {
            far.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("plain text");
            let mut answer = Vec::new();
            let end = far.read_to_end(&mut answer);
            (answer, end.map(|_| ()).map_err(|e| e.kind()))
        },
        async move {
            let io = Io::new(near, Ready::EMPTY).expect("register");
            ServerTlsStream::accept(io, id.server_config()).await.map(|_| ())
        },
    );
    let e = ours.expect_err("a handshake on plain text");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let invalid = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
    assert_eq!(rustls_error(&e), Some(&invalid), "{e}");
    // One fatal alert record (content type 21, record version 3.3, 2 bytes: level
    // fatal, description decode_error), then the connection's clean end (a FIN).
    let (answer, end) = answer;
    assert_eq!(end, Ok(()), "the connection ends with a FIN");
    let decode_error = u8::from(rustls::AlertDescription::DecodeError);
    assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, decode_error], "the client's answer");
}

// As `plain_text_to_the_server_fails_its_handshake_with_an_alert`, after the
// handshake: one alert, and no second look at the record.
#[test]
fn a_corrupted_record_is_an_error_and_a_bad_record_mac_alert() {
    for role in ROLES {
        let (ours, theirs) = exchange(
            role,
            Version::Default,
            None,
            |peer| {
                peer.write_all(b"intact").expect("peer write");
                peer.flush().expect("peer flush");
                peer.queue_record(b"this record is altered on the way");
                let mut record = peer.take_queued();
                let last = record.len() - 1;
                record[last] ^= 1;
                peer.tcp().write_all(&record).expect("the altered record");
                let mut rest = Vec::new();
                peer.read_to_end(&mut rest).map_err(|e| rustls_error(&e).cloned())
            },
            |mut s| async move {
                let mut intact = [0u8; 6];
                s.read_exact(&mut intact).await.expect("the intact record");
                assert_eq!(&intact, b"intact");
                let mut buf = [0u8; 100];
                let read = s.read(&mut buf).await;
                read.map_err(|e| (e.kind(), rustls_error(&e).cloned()))
            },
        );
        let (kind, error) = ours.expect_err("a read of the altered record");
        assert_eq!(kind, io::ErrorKind::InvalidData, "{role:?}");
        assert_eq!(error, Some(rustls::Error::DecryptError), "{role:?}");
        let error = theirs.expect_err("the peer's read after its altered record");
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac);
        assert_eq!(error, Some(alert), "{role:?}");
    }
}

#[test]
fn a_peer_that_hangs_up_mid_handshake_is_an_unexpected_eof() {
    for role in ROLES {
        let id = Arc::new(Identity::new());
        let (near, mut far) = tcp_pair(None);
        let (ours, ()) = together(
            move || {
                if role == Role::Client {
                    // Reads the ClientHello record whole (so closing sends a FIN,
                    // not a reset), then hangs up.
                    let mut header = [0u8; 5];
                    far.read_exact(&mut header).expect("ClientHello");
                    assert_eq!(header[0], 0x16, "a handshake record");
                    let mut body = vec![0u8; record_payload_len(&header).expect("a whole header")];
                    far.read_exact(&mut body).expect("ClientHello");
                }
                far.shutdown(Shutdown::Write).expect("FIN");
                let mut sink = Vec::new();
                let _ = far.read_to_end(&mut sink);
            },
            async move { Sidecar::open(role, near, &id).await.map(|_| ()) },
        );
        let e = ours.expect_err("a handshake the peer left");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{role:?}: {e}");
    }
}

/// What sidecar's side saw in `with_records_waiting`: the write's outcome (if it
/// wrote), the bytes it read, and how its read to the end ended.
struct Waiting {
    wrote: Option<Result<(), String>>,
    got: Vec<u8>,
    end: Result<(), String>,
    /// Whole records held unprocessed after the first read.
    held: bool,
}

/// The peer sends `records` records of 10 bytes in one flight once sidecar's
/// handshake is over; sidecar reads 5 bytes (the other records stay unprocessed),
/// then writes "ack" if `write`, then closes and reads to the end. Returns sidecar's
/// view and the peer's: the bytes it read and how its read ended (Ok only at a
/// close_notify).
fn with_records_waiting(role: Role, records: usize, write: bool) -> (Waiting, (Vec<u8>, Result<(), String>)) {
    const RECORD: usize = 10;
    let flight_len = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flight_len_peer = Arc::clone(&flight_len);
    let sent = pattern(RECORD * records, 5);
    exchange(
        role,
        Version::Default,
        None,
        move |peer| {
            // Sidecar's handshake is over (the flight cannot come with its last
            // read) once its "go" arrives.
            let mut go = [0u8; 2];
            peer.read_exact(&mut go).expect("go");
            for record in sent.chunks(RECORD) {
                peer.queue_record(record);
            }
            let flight = peer.take_queued();
            peer.tcp().write_all(&flight).expect("the flight");
            flight_len_peer.store(flight.len(), std::sync::atomic::Ordering::SeqCst);
            let (got, end) = peer.read_all();
            peer.send_close_notify();
            (got, end.map(|_| ()).map_err(|e| e.to_string()))
        },
        move |mut s| async move {
            s.write_all(b"go").await.expect("go");
            // Every record of the flight is in the socket before the first read.
            for _ in 0..5000 {
                if flight_len.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
            s.wait_for_bytes(flight_len.load(std::sync::atomic::Ordering::SeqCst)).await;
            let mut got = vec![0u8; 5];
            s.read_exact(&mut got).await.expect("the first bytes");
            let held = match &s {
                Sidecar::Server(t) => holds_whole_record(t.records.as_slice()),
                Sidecar::Client(t) => holds_whole_record(t.records.as_slice()),
            };
            let wrote = if write { Some(s.write_all(b"ack").await.map_err(|e| e.to_string())) } else { None };
            let _ = s.close().await;
            let _ = s.tcp().shutdown(Shutdown::Write);
            let mut rest = Vec::new();
            let end = s.read_to_end(&mut rest).await.map(|_| ()).map_err(|e| e.to_string());
            got.extend_from_slice(&rest);
            Waiting { wrote, got, end, held }
        },
    )
}

/// Record counts around 8 (rustls takes one step per waiting record before it lets a
/// write through): 5 bytes read leave `n - 1` whole records unprocessed.
const WAITING_RECORDS: [usize; 4] = [1, 8, 9, 20];

// rustls hands each waiting record back (one `ReadTraffic` each) before it lets a
// write through: however many wait, a write ("ack") or close_notify (a clean end at the
// peer) goes out, and the records' bytes stay readable.
#[test]
fn a_write_and_close_notify_go_out_while_whole_records_wait_unread() {
    let mut failures = Vec::new();
    for write in [true, false] {
        for role in ROLES {
            for records in WAITING_RECORDS {
                let what = format!("{role:?}, {records} records sent, 5 bytes read, write {write}");
                let (ours, (got, peer_end)) = with_records_waiting(role, records, write);
                if records > 1 && !ours.held {
                    failures.push(format!("{what}: no whole record was left unprocessed (test set-up)"));
                }
                match (write, ours.wrote) {
                    (true, Some(Ok(()))) | (false, None) => {}
                    (_, Some(Err(e))) => failures.push(format!("{what}: the write failed: {e}")),
                    (_, other) => failures.push(format!("{what}: unexpected write outcome {other:?}")),
                }
                let want: &[u8] = if write { b"ack" } else { b"" };
                if got != want {
                    failures.push(format!("{what}: the peer got {got:?}, not {want:?}"));
                }
                if let Err(e) = peer_end {
                    failures.push(format!("{what}: the peer saw no close_notify: {e}"));
                }
                if ours.got != pattern(10 * records, 5) {
                    failures.push(format!(
                        "{what}: sidecar read {} bytes, not the {} sent",
                        ours.got.len(),
                        10 * records
                    ));
                }
                if let Err(e) = ours.end {
                    failures.push(format!("{what}: sidecar's read to the end: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
