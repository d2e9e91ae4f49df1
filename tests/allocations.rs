//! Heap allocations per proxied request, counted: sidecar runs in this process (its
//! `run` entry point on a thread) behind a counting global allocator, between a
//! backend and a client that allocate nothing in their loops (fixed buffers, blocking
//! std sockets). Every allocation counted while they exchange N requests is therefore
//! sidecar's. Prints the counts (`--nocapture`) and fails when they grow past the
//! ceilings below: a regression guard, not a timing test.
//!
//! A keep-alive GET allocates nothing: its head is parsed into buffers its worker
//! reuses from request to request, its future runs in a reused box, and heads are
//! written into a reused buffer. So does one sent through a balancer (the member's
//! URL is copied into strings the last request used), and one with an access log on
//! (the line is written straight into the access log's shared buffer, which grows
//! only when more lines wait than ever before, from strings the last request's record
//! used: however late the writer thread runs, a line costs nothing). Those are measured in child runs of this binary, one
//! sidecar per process, whose stdout (the access lines) is discarded.
//!
//! The counting allocator needs `unsafe impl GlobalAlloc`: this file is the only
//! place the crate allows unsafe code (the lint is `deny`, overridden here; the
//! library and the binary keep `#![forbid(unsafe_code)]`).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is
// an atomic and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests (or messages) measured, after as many to warm up.
const ROUNDS: u64 = 2000;
/// Ceilings: nothing per request. The count is process-wide, so the worker's periodic
/// background work (discovery's config poll) adds a few allocations per run: a
/// ceiling is a hundredth, not 0.
const MAX_PER_GET: f64 = 0.01;
const MAX_PER_MESSAGE: f64 = 0.01;

/// Set in a child run: its `Setup`, as `Setup::name` says it.
const CHILD_SETUP: &str = "SIDECAR_ALLOCATIONS_SETUP";
/// What a child prints before its count.
const CHILD_SAYS: &str = "heap allocations per proxied keep-alive GET:";

/// What sidecar is configured with.
#[derive(Clone, Copy)]
struct Setup {
    /// `[server] access_log`.
    access_log: &'static str,
    /// Proxied to a one-member balancer instead of a URL.
    balanced: bool,
}

impl Setup {
    const PLAIN: Setup = Setup { access_log: "off", balanced: false };
    /// Measured in child runs.
    const CHILDREN: [Setup; 3] = [
        Setup { access_log: "combined", balanced: false },
        Setup { access_log: "json", balanced: false },
        Setup { access_log: "off", balanced: true },
    ];

    fn name(self) -> String {
        format!("access_log = {}{}", self.access_log, if self.balanced { ", through a balancer" } else { "" })
    }

    fn named(name: &str) -> Option<Setup> {
        Self::CHILDREN.into_iter().find(|s| s.name() == name)
    }
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world\n";
const UPGRADE_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Reads until `buf[..n]` holds a whole head; returns its length. No allocation.
fn read_head(s: &mut TcpStream, buf: &mut [u8], n: &mut usize) -> usize {
    loop {
        if let Some(i) = buf[..*n].windows(4).position(|w| w == b"\r\n\r\n") {
            return i + 4;
        }
        let k = s.read(&mut buf[*n..]).expect("read");
        assert!(k > 0, "closed inside a head");
        *n += k;
    }
}

fn consume(buf: &mut [u8], n: &mut usize, len: usize) {
    buf.copy_within(len..*n, 0);
    *n -= len;
}

/// The backend: answers every request on a connection with `RESPONSE`; a WebSocket
/// upgrade gets a 101 and then each masked 64-byte frame echoed back unmasked (a
/// server's frames are never masked).
fn backend(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { return };
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut n = 0;
            loop {
                let len = read_head(&mut s, &mut buf, &mut n);
                let upgrade = buf[..len].windows(9).any(|w| w.eq_ignore_ascii_case(b"websocket"));
                consume(&mut buf, &mut n, len);
                if upgrade {
                    s.write_all(UPGRADE_RESPONSE).expect("101");
                    let mut frame = [0u8; 70];
                    loop {
                        if s.read_exact(&mut frame).is_err() {
                            return;
                        }
                        // The mask key is all zeros: the payload is as sent.
                        frame[4] = 0x82;
                        frame[5] = 64;
                        s.write_all(&frame[4..]).expect("echo");
                    }
                }
                if s.write_all(RESPONSE).is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads one response with a Content-Length body; no allocation.
fn read_response(s: &mut TcpStream, buf: &mut [u8], n: &mut usize) {
    let len = read_head(s, buf, n);
    let head = &buf[..len];
    let cl = head
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"content-length: ").or_else(|| l.strip_prefix(b"Content-Length: ")))
        .map(|v| v.iter().take_while(|b| b.is_ascii_digit()).fold(0usize, |a, b| a * 10 + (b - b'0') as usize))
        .expect("a Content-Length");
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(head));
    while *n < len + cl {
        let k = s.read(&mut buf[*n..]).expect("read body");
        assert!(k > 0);
        *n += k;
    }
    consume(buf, n, len + cl);
}

fn start_sidecar(backend: SocketAddr, setup: Setup) -> SocketAddr {
    let dir = std::env::temp_dir().join(format!("sidecar-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A free port, taken for a moment: sidecar binds it right after.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let front: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = dir.join("sidecar.toml");
    let access_log = setup.access_log;
    let to = match setup.balanced {
        false => format!("\"http://{backend}/\""),
        true => format!("\"balancer://app/\"\n\n[balancer.app]\nmembers = [\"http://{backend}\"]"),
    };
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"{front}\"\nworkers = 1\naccess_log = \"{access_log}\"\n\n[[proxy]]\npath = \"/\"\nto = {to}\n"),
    )
    .expect("config");
    std::thread::spawn(move || sidecar::cmd::run::run(&config));
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(front).is_err() {
        assert!(Instant::now() < end, "sidecar did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Listening means the configuration has been read; nothing else is written there.
    let _ = std::fs::remove_dir_all(&dir);
    front
}

fn per_round(f: &mut impl FnMut()) -> f64 {
    for _ in 0..ROUNDS {
        f();
    }
    let before = ALLOCS.load(Relaxed);
    for _ in 0..ROUNDS {
        f();
    }
    (ALLOCS.load(Relaxed) - before) as f64 / ROUNDS as f64
}

/// A backend, and sidecar in front of it set up as `setup`; returns sidecar's address.
fn start(setup: Setup) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let backend_addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || backend(listener));
    start_sidecar(backend_addr, setup)
}

/// Allocations per keep-alive GET through sidecar at `front`.
fn per_get(front: SocketAddr) -> f64 {
    let mut client = TcpStream::connect(front).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 8192];
    let mut n = 0;
    let mut get = || {
        client.write_all(b"GET /x HTTP/1.1\r\nHost: app\r\nUser-Agent: count\r\n\r\n").expect("send");
        read_response(&mut client, &mut buf, &mut n);
    };
    per_round(&mut get)
}

/// Runs this test again in a child process set up as `setup`, its stdout discarded,
/// and returns the child's count per GET.
fn per_get_in_child(setup: Setup) -> f64 {
    let exe = std::env::current_exe().expect("this test binary");
    let name = setup.name();
    let file = name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let err = std::env::temp_dir().join(format!("sidecar-alloc-{}-{file}.err", std::process::id()));
    let mut child = Command::new(exe)
        .args(["allocations_per_keep_alive_get_and_per_tunnelled_message", "--exact", "--nocapture"])
        .env(CHILD_SETUP, &name)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("child stderr file"))
        .spawn()
        .expect("child run");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child run ({name}) did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    assert!(status.success(), "the child run ({name}) failed:\n{said}");
    said.lines()
        .find_map(|l| l.strip_prefix(CHILD_SAYS))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count from the child run ({name}):\n{said}"))
}

#[test]
fn allocations_per_keep_alive_get_and_per_tunnelled_message() {
    if let Ok(name) = std::env::var(CHILD_SETUP) {
        // A child run: GETs only, their access lines on the discarded stdout.
        let setup = Setup::named(&name).unwrap_or_else(|| panic!("unknown setup {name:?}"));
        let per_get = per_get(start(setup));
        eprintln!("{CHILD_SAYS} {per_get:.2}");
        return;
    }
    let front = start(Setup::PLAIN);
    let per_get = per_get(front);
    let mut buf = [0u8; 8192];

    let mut ws = TcpStream::connect(front).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade");
    let mut n = 0;
    let len = read_head(&mut ws, &mut buf, &mut n);
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..len]));
    // A masked 64-byte binary frame (all-zero mask key); the backend echoes it unmasked.
    let mut frame = [0u8; 70];
    frame[0] = 0x82;
    frame[1] = 0x80 | 64;
    let mut message = || {
        ws.write_all(&frame).expect("send frame");
        ws.read_exact(&mut buf[..66]).expect("echo");
        assert_eq!(&buf[..2], &[0x82, 64], "an unmasked 64-byte binary frame");
    };
    let per_message = per_round(&mut message);

    println!("heap allocations per proxied keep-alive GET: {per_get:.2}");
    println!("heap allocations per tunnelled 64-byte WebSocket message (both ways): {per_message:.2}");
    assert!(per_get <= MAX_PER_GET, "{per_get} allocations per GET (ceiling {MAX_PER_GET})");
    assert!(per_message <= MAX_PER_MESSAGE, "{per_message} allocations per message (ceiling {MAX_PER_MESSAGE})");
    // Measured last: running a child allocates in this process.
    for setup in Setup::CHILDREN {
        let n = per_get_in_child(setup);
        let name = setup.name();
        println!("heap allocations per proxied keep-alive GET ({name}): {n:.2}");
        assert!(n <= MAX_PER_GET, "{n} allocations per GET ({name}; ceiling {MAX_PER_GET})");
    }
}
