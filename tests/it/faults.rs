//! Faults: a backend reached through a misbehaving network, and hostile clients.
//!
//! `FaultRelay` is a userspace TCP relay written here, between sidecar and a backend,
//! that delays, throttles, stalls, resets at byte N, half-closes, or accepts and never
//! reads (the kernel on this machine has no netem). The hostile clients are slow
//! uploaders, clients that leave while their request waits, a tunnel peer that never
//! stops sending, a stdout nobody reads and a process out of descriptors.
//!
//! The cases are docs/security.md's L3, L4, L6 and L11–L13. Every test ends with
//! `settled`: the open-connection and open-tunnel gauges in `/metrics` back to 0 and the
//! proxy's proportional memory (PSS) under a generous bound; most also check that
//! another client was served while the fault lasted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::backend::{self, response, Backend, Peer, Reply};
use crate::support::*;

/// PSS bound for a debug build under any of these faults: idle it is a few MiB, and no
/// test moves more than a few MiB at once, so crossing this means a body was buffered.
const PSS_BOUND_KIB: u64 = 96 * 1024;

// ---------------------------------------------------------------------------------
// The fault relay
// ---------------------------------------------------------------------------------

/// What the relay does to a connection. Faults act on the backend → sidecar direction
/// unless they say otherwise.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every piece, both ways, waits this long before it is passed on.
    Delay(Duration),
    /// At most this many bytes per second.
    Bandwidth(usize),
    /// Passes this many bytes on, then nothing more (both sockets stay open).
    StallAfter(usize),
    /// Passes this many bytes on, then resets the sidecar side (RST).
    ResetAt(usize),
    /// Passes this many bytes on, then half-closes towards sidecar (FIN) and keeps
    /// reading.
    HalfCloseAfter(usize),
    /// Accepts sidecar's connection and never reads from it (no backend connection).
    NeverRead,
}

/// A relay on 127.0.0.1 in front of `backend`, applying one fault to every connection.
/// Dropping it stops every thread it started (each wait is at most `TICK`).
struct FaultRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections from sidecar accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Connections on which sidecar's side ended (EOF or error) while the relay read it.
    closed_by_sidecar: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_thread: Option<JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(20);

impl FaultRelay {
    fn start(backend: SocketAddr, fault: Fault) -> FaultRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_sidecar = Arc::new(AtomicUsize::new(0));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (st, acc, closed, ths) = (stop.clone(), accepted.clone(), closed_by_sidecar.clone(), threads.clone());
        let accept_thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((front, _)) = listener.accept() else {
                    std::thread::sleep(TICK);
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let _ = front.set_nonblocking(false);
                let (st, closed) = (st.clone(), closed.clone());
                let t = std::thread::spawn(move || relay_one(front, backend, fault, &st, &closed));
                ths.lock().expect("threads").push(t);
            }
        });
        FaultRelay { addr, stop, accepted, closed_by_sidecar, threads, accept_thread: Some(accept_thread) }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed_by_sidecar(&self) -> usize {
        self.closed_by_sidecar.load(Ordering::SeqCst)
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for t in self.threads.lock().expect("threads").drain(..) {
            let _ = t.join();
        }
    }
}

/// Sleeps `d` in ticks; false when the relay is stopping.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(TICK.min(end - Instant::now()));
    }
    !stop.load(Ordering::SeqCst)
}

/// Reads with a short timeout so the stop flag is seen. `Some(0)`: EOF; `None`: error.
fn read_some(s: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Option<usize> {
    let _ = s.set_read_timeout(Some(TICK));
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match s.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

fn relay_one(mut front: TcpStream, backend: SocketAddr, fault: Fault, stop: &Arc<AtomicBool>, closed: &AtomicUsize) {
    if let Fault::NeverRead = fault {
        // Hold the socket without reading until sidecar closes it or the test ends;
        // only a zero-byte peek is done, so nothing is consumed.
        let _ = front.set_read_timeout(Some(TICK));
        let mut b = [0u8; 1];
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            let _ = front.set_nonblocking(true);
            let peeked = front.peek(&mut b);
            let _ = front.set_nonblocking(false);
            if matches!(peeked, Ok(0)) {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        return;
    }
    let Ok(mut back) = TcpStream::connect(backend) else { return };
    let _ = back.set_nodelay(true);
    let _ = front.set_nodelay(true);
    // Up: sidecar → backend, delayed only by `Delay`.
    let (mut f2, mut b2) = (front.try_clone().expect("clone"), back.try_clone().expect("clone"));
    let st = Arc::clone(stop);
    let up_closed = Arc::new(AtomicBool::new(false));
    let uc = Arc::clone(&up_closed);
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read_some(&mut f2, &mut buf, &st) {
                Some(0) | None => {
                    uc.store(true, Ordering::SeqCst);
                    let _ = b2.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Some(n) => {
                    if let Fault::Delay(d) = fault {
                        if !nap(d, &st) {
                            return;
                        }
                    }
                    if b2.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // Down: backend → sidecar, with the fault.
    let mut passed = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let limit = match fault {
        Fault::StallAfter(n) | Fault::ResetAt(n) | Fault::HalfCloseAfter(n) => n,
        _ => usize::MAX,
    };
    while passed < limit {
        let want = match fault {
            Fault::Bandwidth(bps) => (bps / 10).clamp(1, buf.len()),
            _ => buf.len(),
        };
        let want = want.min(limit - passed);
        let n = match read_some(&mut back, &mut buf[..want], stop) {
            Some(0) | None => break,
            Some(n) => n,
        };
        match fault {
            Fault::Delay(d) if !nap(d, stop) => break,
            Fault::Bandwidth(bps) if !nap(Duration::from_secs_f64(n as f64 / bps as f64), stop) => break,
            _ => {}
        }
        if front.write_all(&buf[..n]).is_err() {
            break;
        }
        passed += n;
    }
    match fault {
        Fault::ResetAt(_) => {
            // Linger 0 turns the close into a RST; the up thread's copy of the socket
            // must be gone first, so it is woken (its reads end) and joined.
            let _ = socket2::SockRef::from(&front).set_linger(Some(Duration::ZERO));
            let _ = front.shutdown(std::net::Shutdown::Read);
            let _ = up.join();
            drop(front);
            drop(back);
            return;
        }
        Fault::HalfCloseAfter(_) | Fault::StallAfter(_) => {
            if let Fault::HalfCloseAfter(_) = fault {
                let _ = front.shutdown(std::net::Shutdown::Write);
            }
            // Keep both sockets open until sidecar gives up on them.
            while !stop.load(Ordering::SeqCst) && !up_closed.load(Ordering::SeqCst) {
                std::thread::sleep(TICK);
            }
        }
        _ => {
            let _ = front.shutdown(std::net::Shutdown::Write);
        }
    }
    let _ = up.join();
    if up_closed.load(Ordering::SeqCst) {
        closed.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------
// Probes of the running proxy
// ---------------------------------------------------------------------------------

/// The proportional set size of process `pid`, in KiB.
fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("read smaps_rollup");
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no Pss line in smaps_rollup:\n{text}"))
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn metrics(admin: SocketAddr) -> Vec<prom::Sample> {
    let r = admin_get(admin, "/metrics");
    assert_eq!(r.status, 200, "/metrics");
    prom::parse(&r.body_str()).unwrap_or_else(|e| panic!("/metrics: {e}"))
}

fn metric(admin: SocketAddr, name: &str) -> f64 {
    prom::value(&metrics(admin), name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The gauges back to 0 and memory bounded, once the fault is over.
fn settled(p: &Sidecar) {
    let admin = p.admin_addr();
    let mut last = (f64::NAN, f64::NAN);
    let ok = wait_until(Duration::from_secs(5), || {
        let s = metrics(admin);
        last = (
            prom::value(&s, "sidecar_open_connections", &[]).unwrap_or(-1.0),
            prom::value(&s, "sidecar_open_tunnels", &[]).unwrap_or(-1.0),
        );
        last == (0.0, 0.0)
    });
    assert!(ok, "open connections / tunnels did not go back to 0: {last:?}");
    let pss = pss_kib(p.pid());
    assert!(pss < PSS_BOUND_KIB, "sidecar PSS {pss} KiB, bound {PSS_BOUND_KIB} KiB");
}

/// Another client gets its answer from the healthy backend while a fault lasts.
fn served_meanwhile(p: &Sidecar) {
    let r = p.get("/healthy/meanwhile");
    assert_eq!(r.status, 200, "a client on the healthy route while the fault lasts");
}

/// One worker (a starved or blocked worker shows), an admin listener, `/healthy/` to a
/// good echo backend and `/` to `faulty`.
fn config(faulty: SocketAddr, healthy: &Backend, extra_server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n{extra_server}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[proxy]]\npath = \"/healthy/\"\nto = \"http://{}/\"\n\n[[proxy]]\npath = \"/\"\nto = \"http://{faulty}/\"\n",
        healthy.addr
    )
}

fn start(faulty: SocketAddr, healthy: &Backend, extra_server: &str) -> Sidecar {
    Sidecar::start(&config(faulty, healthy, extra_server))
}

/// A backend answering every request with `body` (Content-Length framed).
fn answers_body(body: Vec<u8>) -> Backend {
    Backend::start(move |_| Reply::Send(response(200, &[("Content-Type", "application/octet-stream")], &body)))
}

/// A backend that reads a request and never answers, noting when the connection ends.
fn never_answers_noting_close() -> Backend {
    Backend::start(|_| {
        Reply::Custom(Box::new(|mut peer: Peer| {
            Box::pin(async move {
                let (_, eof) = peer.read_to_eof(Duration::from_secs(30)).await;
                if eof {
                    peer.note("connection closed by sidecar");
                }
                None
            })
        }))
    })
}

// ---------------------------------------------------------------------------------
// The network between sidecar and the backend
// ---------------------------------------------------------------------------------

#[test]
fn delayed_backend_is_relayed_intact() {
    let body = noise(64 * 1024, 1);
    let b = answers_body(body.clone());
    let relay = FaultRelay::start(b.addr, Fault::Delay(Duration::from_millis(150)));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "proxy_timeout = \"5s\"");
    let mut c = p.conn();
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    served_meanwhile(&p);
    let r = c.read_response();
    assert_eq!((r.status, digest(&r.body)), (200, digest(&body)), "the delayed body arrives whole");
    drop(c);
    settled(&p);
}

#[test]
fn bandwidth_capped_backend_streams_a_large_body_intact() {
    let body = noise(2 * 1024 * 1024, 2);
    let b = answers_body(body.clone());
    let relay = FaultRelay::start(b.addr, Fault::Bandwidth(2 * 1024 * 1024));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "proxy_timeout = \"5s\"");
    let mut c = p.conn();
    c.timeout = Duration::from_secs(10);
    c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    served_meanwhile(&p);
    let r = c.read_response();
    assert_eq!((r.status, r.body.len(), digest(&r.body)), (200, body.len(), digest(&body)));
    drop(c);
    settled(&p);
}

#[test]
fn backend_stalling_mid_body_truncates_and_closes_the_client() {
    let body = noise(256 * 1024, 3);
    let b = answers_body(body);
    let relay = FaultRelay::start(b.addr, Fault::StallAfter(100 * 1024));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "proxy_timeout = \"1s\"");
    let mut c = p.conn();
    c.send("GET /stall HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    served_meanwhile(&p);
    let r = c.try_read_response(false, Duration::from_secs(5)).expect("the head and part of the body");
    assert_eq!(r.status, 200);
    assert!(!r.complete, "a stalled body must reach the client truncated, got {} bytes", r.body.len());
    assert!(
        wait_until(DEADLINE, || relay.closed_by_sidecar() == 1),
        "sidecar must drop the stalled backend connection"
    );
    drop(c);
    settled(&p);
}

#[test]
fn backend_reset_before_the_head_gives_502() {
    let b = answers_body(b"never seen".to_vec());
    let relay = FaultRelay::start(b.addr, Fault::ResetAt(10));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "");
    let r = p.get("/reset");
    r.assert_error(502);
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn backend_reset_mid_body_closes_the_client() {
    let body = noise(512 * 1024, 4);
    let b = answers_body(body);
    let relay = FaultRelay::start(b.addr, Fault::ResetAt(64 * 1024));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "");
    let mut c = p.conn();
    c.send("GET /reset-mid-body HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    let r = c.try_read_response(false, DEADLINE).expect("the head and part of the body");
    assert_eq!(r.status, 200);
    assert!(!r.complete && r.body.len() < 512 * 1024, "the client must see the truncation");
    c.expect_closed(DEADLINE);
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn backend_half_closing_before_answering_gives_502() {
    let b = never_answers_noting_close();
    let relay = FaultRelay::start(b.addr, Fault::HalfCloseAfter(0));
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "proxy_timeout = \"10s\"");
    let started = Instant::now();
    let r = p.get("/half-closed");
    r.assert_error(502);
    assert!(started.elapsed() < Duration::from_secs(5), "a FIN is an answer, not a wait for proxy_timeout");
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn backend_that_never_reads_an_upload_gets_one_proxy_timeout() {
    // docs/security.md, L4: a write deadline that restarted whenever the backend's
    // socket took a few more bytes would hold the client for 2 × proxy_timeout or more.
    let b = backend::echo();
    let relay = FaultRelay::start(b.addr, Fault::NeverRead);
    let healthy = backend::echo();
    let p = start(relay.addr, &healthy, "proxy_timeout = \"2s\"");
    let len = 256 * 1024 * 1024;
    let mut client = TcpStream::connect(p.addr()).expect("connect");
    client
        .write_all(format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .expect("head");
    let mut upload = client.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    // The upload, as fast as sidecar takes it, until it stops taking it.
    let writer = std::thread::spawn(move || {
        let _ = upload.set_write_timeout(Some(Duration::from_millis(100)));
        let chunk = vec![b'y'; 256 * 1024];
        let (mut sent, mut last_progress) = (0, Instant::now());
        while sent < len && !st.load(Ordering::SeqCst) && last_progress.elapsed() < Duration::from_secs(10) {
            match upload.write(&chunk) {
                Ok(n) => {
                    sent += n;
                    last_progress = Instant::now();
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        sent
    });
    let started = Instant::now();
    client.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = loop {
        match client.read(&mut buf) {
            Ok(0) => break Some(started.elapsed()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break Some(started.elapsed());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break Some(started.elapsed()),
        }
        if started.elapsed() > Duration::from_secs(15) {
            break None;
        }
    };
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().expect("writer");
    let at = answered.expect("sidecar must answer or close within 15 s");
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 504"), "want 504 or a close, got {head:?}");
    eprintln!("uploaded {sent} bytes; answered after {at:?}");
    // One proxy_timeout (2 s) after the socket buffers filled (well under a second on
    // loopback); restarting deadlines made it 4 s or more.
    assert!(at < Duration::from_millis(3500), "answered after {at:?}: more than one proxy_timeout");
    assert_eq!(relay.accepted(), 1, "an upload is never sent twice");
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn request_head_written_to_a_backend_that_never_reads_has_a_deadline() {
    // A head bigger than what a backend's small receive buffer and sidecar's send
    // buffer hold together: the write itself blocks, and must time out.
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    listener.set_recv_buffer_size(1024).expect("rcvbuf");
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    listener.listen(16).expect("listen");
    let listener: TcpListener = listener.into();
    let addr = listener.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let end = Instant::now() + Duration::from_secs(10);
        let mut conns = Vec::new();
        while Instant::now() < end {
            if let Ok((s, _)) = listener.accept() {
                conns.push(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let healthy = backend::echo();
    let p = start(addr, &healthy, "proxy_timeout = \"1s\"\nmax_head_bytes = 4194304\nmax_headers = 256");
    let mut head = String::from("GET /big-head HTTP/1.1\r\nHost: a\r\n");
    for i in 0..250 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "v".repeat(8100)));
    }
    head.push_str("\r\n");
    let mut c = p.conn();
    c.send(&head).expect("send the head");
    let r = c.try_read_response(false, Duration::from_secs(5)).expect("an answer within the write deadline");
    r.assert_error(504);
    served_meanwhile(&p);
    drop(c);
    settled(&p);
    drop(p);
    let _ = held.join();
}

// ---------------------------------------------------------------------------------
// Hostile and impatient clients
// ---------------------------------------------------------------------------------

#[test]
fn slow_request_body_is_cut_off_with_408_and_the_backend_released() {
    // docs/security.md, L3 (R-U-Dead-Yet): one byte every 200 ms of a 1 MB body.
    let b = never_answers_noting_close();
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "body_timeout = \"1s\"\nbody_min_rate = 500");
    let mut c = p.conn();
    c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nx").expect("send head");
    let started = Instant::now();
    let mut answer = None;
    while started.elapsed() < Duration::from_secs(6) {
        if c.send("x").is_err() {
            break;
        }
        if let Ok(r) = c.try_read_response(false, Duration::from_millis(200)) {
            answer = Some(r);
            break;
        }
    }
    let r = answer.expect("a 408 for a body that does not progress");
    r.assert_error(408);
    assert!(r.says_close(), "the connection closes after a body timeout");
    c.expect_closed(DEADLINE);
    assert!(b.wait_for_note("body cut short", DEADLINE), "the backend connection must be closed too");
    let log = p.wait_for_stdout_lines(1, DEADLINE).join("\n");
    assert!(log.contains(" 408 ") && log.contains("body_timeout"), "access line with the reason:\n{log}");
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn upload_at_a_steady_pace_outlasting_body_timeout_is_not_cut_off() {
    let b = backend::echo();
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "body_timeout = \"1s\"\nbody_min_rate = 500");
    let body = noise(60 * 1024, 5);
    let mut c = p.conn();
    c.send(format!("POST /steady HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len())).expect("send head");
    // 2 s in all, 30 KiB/s: far above the minimum rate, twice the body_timeout.
    for piece in body.chunks(3 * 1024) {
        c.send(piece).expect("send a piece");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.read_response();
    assert_eq!((r.status, digest(&r.body)), (200, digest(&body)));
    drop(c);
    settled(&p);
}

#[test]
fn client_that_closes_while_waiting_aborts_the_backend_request() {
    // docs/security.md, L11: nginx aborts the upstream request when the client closes;
    // so does sidecar.
    let b = never_answers_noting_close();
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "proxy_timeout = \"30s\"");
    let mut c = p.conn();
    c.send("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(b.wait_for_requests(1, DEADLINE).len(), 1, "the request reached the backend");
    drop(c);
    assert!(b.wait_for_note("closed by sidecar", DEADLINE), "the backend request must be aborted at once");
    let lines = p.wait_for_stdout_lines(1, DEADLINE);
    let line = lines.iter().find(|l| l.contains("/wait")).unwrap_or_else(|| panic!("no access line: {lines:?}"));
    assert!(line.contains("\" 499 ") && line.contains("client closed"), "access line: {line}");
    served_meanwhile(&p);
    settled(&p);
}

#[test]
fn pipelined_request_behind_a_slow_answer_is_not_taken_for_a_close() {
    let b = Backend::start(|req| {
        let body = req.target.clone().into_bytes();
        if req.target == "/slow" {
            Reply::SendTwice(Vec::new(), Duration::from_millis(400), response(200, &[], &body))
        } else {
            Reply::Send(response(200, &[], &body))
        }
    });
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "");
    let mut c = p.conn();
    c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    let (first, second) = (c.read_response(), c.read_response());
    assert_eq!((first.status, first.body_str()), (200, "/slow".to_string()));
    assert_eq!((second.status, second.body_str()), (200, "/next".to_string()));
    drop(c);
    settled(&p);
}

#[test]
fn half_closed_client_waiting_for_its_answer_is_aborted_like_a_closed_one() {
    // A FIN after the request reads as end-of-file, the same as a client that left
    // (nginx, without proxy_ignore_client_abort, does the same).
    let b = never_answers_noting_close();
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "proxy_timeout = \"30s\"");
    let mut c = p.conn();
    c.send("GET /half HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    assert_eq!(b.wait_for_requests(1, DEADLINE).len(), 1);
    c.shutdown_write();
    assert!(b.wait_for_note("closed by sidecar", DEADLINE), "the backend request must be aborted");
    c.expect_closed(DEADLINE);
    settled(&p);
}

#[test]
fn slow_reading_client_is_cut_off_with_memory_bounded() {
    let body = noise(24 * 1024 * 1024, 6);
    let b = answers_body(body);
    let healthy = backend::echo();
    let p = start(b.addr, &healthy, "proxy_timeout = \"1s\"");
    let mut c = p.conn();
    c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    // Read nothing for a while: sidecar stops reading from the backend and, after one
    // proxy_timeout without progress, closes.
    std::thread::sleep(Duration::from_millis(2500));
    let pss = pss_kib(p.pid());
    assert!(pss < PSS_BOUND_KIB, "PSS {pss} KiB while a client reads nothing of a 24 MiB body");
    served_meanwhile(&p);
    let (got, closed) = c.read_until_close(Duration::from_secs(5));
    assert!(closed && got.len() < 24 * 1024 * 1024, "the slow reader is cut off, got {} bytes", got.len());
    settled(&p);
}

/// A WebSocket backend whose tunnel side throws away whatever arrives, without even
/// copying it (`MSG_TRUNC`), so it always keeps up with sidecar.
fn discarding_ws_backend(stop: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return 0 };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let key = String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").map(str::to_string))
            .unwrap_or_default();
        let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        let reply = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        if s.write_all(reply.as_bytes()).is_err() {
            return 0;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let sock = socket2::SockRef::from(&s);
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 4 * 1024 * 1024];
        let (mut total, end) = (0u64, Instant::now() + Duration::from_secs(20));
        const MSG_TRUNC: i32 = 0x20;
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            match sock.recv_with_flags(&mut buf, MSG_TRUNC) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        total
    });
    (addr, t)
}

#[test]
fn firehose_tunnel_does_not_starve_other_requests() {
    // A tunnel whose client never stops sending and whose backend takes everything at
    // once: without a fairness budget the relay never finds a socket not ready, never
    // yields, and the worker (one here) serves nobody else.
    let stop = Arc::new(AtomicBool::new(false));
    let (ws, backend_thread) = discarding_ws_backend(Arc::clone(&stop));
    let healthy = backend::echo();
    let p = start(ws, &healthy, "");
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").expect("send");
    c.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "101, got {}", show(&head));
    // The client sends from a file with `sendfile` (std's `io::copy` uses it for a
    // file into a socket), which costs it no copy either.
    // One masked binary frame (all-zero mask key) too long ever to end: everything the
    // client sends after this header is its payload.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    c.write_all(&header).expect("the frame header");
    let dir = TempDir::new();
    let file = dir.write("firehose", b"");
    std::fs::OpenOptions::new().write(true).open(&file).and_then(|f| f.set_len(32 * 1024 * 1024)).expect("size");
    let sent = Arc::new(AtomicUsize::new(0));
    let (st, sn) = (Arc::clone(&stop), Arc::clone(&sent));
    let writer = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
        let Ok(mut f) = std::fs::File::open(&file) else { return };
        while !st.load(Ordering::SeqCst) && Instant::now() < end {
            use std::io::Seek;
            let _ = f.rewind();
            match std::io::copy(&mut f, &mut c) {
                Ok(n) => {
                    sn.fetch_add(n as usize, Ordering::SeqCst);
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    });
    assert!(wait_until(DEADLINE, || sent.load(Ordering::SeqCst) > 64 * 1024 * 1024), "the firehose flows");
    // Plain requests, each on a fresh connection, while the firehose runs.
    for i in 0..10 {
        let mut g = p.conn();
        g.send(format!("GET /healthy/{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send");
        let r = g.try_read_response(false, Duration::from_secs(5));
        assert!(matches!(&r, Ok(r) if r.status == 200), "GET {i} during the firehose: {:?}", r.map(|r| r.status));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = writer.join();
    let moved = backend_thread.join().expect("backend");
    assert!(moved > 64 * 1024 * 1024, "the tunnel moved {moved} bytes");
    settled(&p);
}

#[test]
fn stalled_stdout_drops_access_lines_instead_of_blocking() {
    // docs/security.md, L13: an access line written from the request path would stop
    // every worker once the stdout pipe is full.
    let b = backend::echo();
    let launch = Launch { stdout_unread: true, ..Launch::default() };
    let p = Sidecar::launch(TempDir::new(), &config(b.addr, &b, ""), &[], launch);
    let mut c = p.conn();
    c.timeout = Duration::from_secs(5);
    // A 64 KiB pipe holds a few hundred lines and the queue 4,096: 5,000 requests
    // overflow both. Sent 500 at a time; the answers are counted by their status lines.
    let mut answered = 0;
    let mut seen = Vec::new();
    for batch in 0..10 {
        let mut out = String::new();
        for i in 0..500 {
            out.push_str(&format!("GET /r/{batch}/{i} HTTP/1.1\r\nHost: a\r\n\r\n"));
        }
        c.send(out).expect("send a batch");
        while answered < (batch + 1) * 500 {
            let got = c.read_available(Duration::from_secs(5));
            assert!(!got.is_empty(), "requests stopped being answered after {answered} of 5000");
            seen.extend_from_slice(&got);
            let text = String::from_utf8_lossy(&seen);
            answered += text.matches("HTTP/1.1 200 OK\r\n").count();
            let keep = seen.len().saturating_sub(16);
            seen.drain(..keep);
        }
    }
    let admin = p.admin_addr();
    assert_eq!(admin_get(admin, "/healthz").status, 200);
    let dropped = metric(admin, "sidecar_access_log_dropped_total");
    assert!(dropped > 0.0, "lines that could not be written are counted, got {dropped}");
    assert!(p.wait_for_log("access log lines dropped", DEADLINE), "one warning says so");
    drop(c);
    settled(&p);
}

#[test]
fn repeated_connect_failures_are_logged_once_with_a_count() {
    let dead = DeadPort::new();
    let healthy = backend::echo();
    let p = start(dead.addr, &healthy, "");
    for _ in 0..30 {
        p.get("/dead").assert_error(502);
    }
    let lines: Vec<String> = p.logs().into_iter().filter(|l| l.contains("connect failed")).collect();
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "30 identical failures, {} log lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    settled(&p);
}

/// Opens client connections until sidecar's `accept` fails for lack of descriptors (its
/// own log line says so), then `extra_pending` more that wait in the kernel's queue.
/// Returns them and whether the limit was reached. The log line, not a count of
/// `/proc/PID/fd`, decides: descriptors the process inherited or holds for itself make
/// any count a guess.
fn exhaust_descriptors(p: &Sidecar, limit: usize, extra_pending: usize) -> (Vec<Conn>, bool) {
    const AT_LIMIT: &str = "accept failed: Too many open files";
    let at_limit = || p.logs().iter().any(|l| l.contains(AT_LIMIT));
    let mut held = Vec::new();
    for _ in 0..limit + 16 {
        if at_limit() {
            break;
        }
        let before = open_fds(p.pid());
        held.push(p.conn());
        wait_until(Duration::from_millis(500), || at_limit() || open_fds(p.pid()) > before);
    }
    let reached = at_limit();
    for _ in 0..extra_pending {
        held.push(p.conn());
    }
    (held, reached)
}

/// What the failure message of a test that could not exhaust descriptors shows.
fn descriptor_state(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let limit = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("no limits line");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.sort_unstable();
    format!("{} open: {fds:?}; {limit}", fds.len())
}

#[test]
fn descriptor_exhaustion_on_connect_answers_503_and_leaves_members_healthy() {
    // docs/security.md, L6: EMFILE on a backend connect is sidecar's own shortage, not
    // the replica's.
    let (b1, b2) = (backend::echo(), backend::echo());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n[balancer.app]\nretry = \"60s\"\n\
         members = [\"http://{}\", \"http://{}\"]\n",
        b1.addr, b2.addr
    );
    let launch = Launch { max_fds: Some(64), ..Launch::default() };
    let p = Sidecar::launch(TempDir::new(), &config, &[], launch);
    let admin = p.admin_addr();
    let (mut held, reached) = exhaust_descriptors(&p, 64, 0);
    assert!(reached, "could not bring sidecar to its descriptor limit ({})", descriptor_state(p.pid()));
    for c in held.iter_mut().take(8) {
        c.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").expect("send");
    }
    let mut refused = 0;
    for c in held.iter_mut().take(8) {
        let r = c.try_read_response(false, DEADLINE).expect("an answer at the descriptor limit");
        match r.status {
            200 => {}
            503 => {
                r.assert_error(503);
                assert!(r.header("retry-after").is_some(), "503 without Retry-After:\n{}", r.head_str());
                refused += 1;
            }
            other => panic!("want 200 or 503 at the descriptor limit, got {other}"),
        }
    }
    assert!(refused > 0, "no request met the descriptor limit");
    drop(held);
    let status = admin_get(admin, "/status").body_str();
    let json = json::parse(&status).expect("/status JSON");
    let members = json["balancers"][0]["members"].as_array().expect("members");
    for m in members {
        assert_eq!(m["state"].as_str(), Some("healthy"), "member after EMFILE: {status}");
        assert_eq!(m["failures"].as_u64(), Some(0), "member after EMFILE: {status}");
    }
    settled(&p);
}

#[test]
fn admin_answers_while_the_proxy_is_out_of_descriptors() {
    // docs/security.md, L6: a liveness probe must not restart a proxy that is busy but
    // working.
    let b = backend::echo();
    let launch = Launch { max_fds: Some(64), ..Launch::default() };
    let p = Sidecar::launch(TempDir::new(), &config(b.addr, &b, ""), &[], launch);
    let admin = p.admin_addr();
    let (held, reached) = exhaust_descriptors(&p, 64, 4);
    assert!(reached, "could not bring sidecar to its descriptor limit ({})", descriptor_state(p.pid()));
    for path in ["/healthz", "/metrics", "/healthz"] {
        let mut c = Conn::open(admin);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).expect("send");
        let r = c.try_read_response(false, DEADLINE).unwrap_or_else(|e| panic!("{path} at the descriptor limit: {e}"));
        assert_eq!(r.status, 200, "{path}");
    }
    drop(held);
    settled(&p);
}
