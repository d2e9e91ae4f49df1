//! Shared harness for the integration tests: `Sidecar` runs the real binary
//! with a temp sidecar.toml on 127.0.0.1:0 and kills it on Drop; `Conn` is a raw
//! client connection whose every wait has a deadline; `parse_responses` reads the
//! bytes that crossed the wire. Backends live in `backend.rs`, certificates in `tls.rs`.

pub mod backend;
pub mod json;
pub mod prom;
pub mod tls;
pub mod ws_frames;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Future};

pub use backend::Backend;

/// How long any single client-side wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// How long sidecar may take to log its listening line.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `fut` with a deadline; `None` when the deadline passed first.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await
}

/// `async_io::block_on(within(..))`, panicking with `what` when the deadline passes.
pub fn block_within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match async_io::block_on(within(limit, fut)) {
        Some(v) => v,
        None => panic!("deadline of {limit:?} passed while waiting for: {what}"),
    }
}

/// Polls `cond` every 5 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------
// Temp directories
// ---------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on Drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sidecar-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sidecar")
}

/// How `Sidecar::launch` starts the binary.
#[derive(Default, Clone, Copy)]
pub struct Launch {
    /// `ulimit -n` for the process (through `sh -c`, which then execs sidecar).
    pub max_fds: Option<u32>,
    /// Stdout is a pipe nobody reads: once the pipe buffer is full, writes block.
    pub stdout_unread: bool,
}

/// The running proxy. Kills and reaps its child on Drop; prints its logs if the test
/// is failing.
pub struct Sidecar {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// Stdout lines (the access log).
    out: Arc<Mutex<Vec<String>>>,
    /// With `Launch::stdout_unread`: the pipe, held open and never read.
    _unread_stdout: Option<std::process::ChildStdout>,
    addr: SocketAddr,
    https: bool,
    dir: TempDir,
}

impl Sidecar {
    /// Starts `sidecar --config sidecar.toml` in a fresh temp dir.
    pub fn start(config_toml: &str) -> Sidecar {
        Sidecar::start_in(TempDir::new(), config_toml)
    }

    /// Starts sidecar with its config in `dir` (which may already hold certificates).
    pub fn start_in(dir: TempDir, config_toml: &str) -> Sidecar {
        Sidecar::start_with_env(dir, config_toml, &[])
    }

    /// `start_in` with extra environment variables (the test-build hooks).
    pub fn start_with_env(dir: TempDir, config_toml: &str, env: &[(&str, &str)]) -> Sidecar {
        Sidecar::launch(dir, config_toml, env, Launch::default())
    }

    /// Starts sidecar the way `launch` says (a lowered descriptor limit, a stdout
    /// nobody reads).
    pub fn launch(dir: TempDir, config_toml: &str, env: &[(&str, &str)], launch: Launch) -> Sidecar {
        let config = dir.write("sidecar.toml", config_toml);
        let mut command = match launch.max_fds {
            None => Command::new(binary()),
            // `exec` keeps the pid: the child this test holds is sidecar itself.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(binary());
                c
            }
        };
        command.arg("--config").arg(&config).envs(env.iter().copied());
        Sidecar::spawn(dir, command, config_toml, launch.stdout_unread)
    }

    /// Starts the binary with `args` in `dir` (`["demo", "--port", "0"]`) and waits for
    /// its `listening on` line; `what` describes the run in failure messages.
    pub fn start_args(dir: TempDir, args: &[&str], what: &str) -> Sidecar {
        let mut command = Command::new(binary());
        command.args(args);
        Sidecar::start_command(dir, command, what)
    }

    /// Starts `command` (the binary, or a shell that execs it) and waits for its
    /// `listening on` line.
    pub fn start_command(dir: TempDir, command: Command, what: &str) -> Sidecar {
        Sidecar::spawn(dir, command, what, false)
    }

    fn spawn(dir: TempDir, mut command: Command, what: &str, stdout_unread: bool) -> Sidecar {
        let mut child = command
            .env("RUST_LOG", "info,access=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sidecar");
        let logs = collect_lines(child.stderr.take().expect("stderr piped"));
        let (out, unread_stdout) = match stdout_unread {
            false => (collect_lines(child.stdout.take().expect("stdout piped")), None),
            true => (Arc::new(Mutex::new(Vec::new())), child.stdout.take()),
        };
        let end = Instant::now() + START_DEADLINE;
        let found = loop {
            if let Some(found) = logs.lock().expect("logs").iter().find_map(|l| parse_listening(l)) {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50)); // let the reader drain stderr
                panic!(
                    "sidecar exited with {status} before listening; run:\n{what}\nlogs:\n{}",
                    logs.lock().expect("logs").join("\n")
                );
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sidecar did not log `listening on` within {START_DEADLINE:?}; logs:\n{}",
                    logs.lock().expect("logs").join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Sidecar { child, logs, out, _unread_stdout: unread_stdout, addr: found.0, https: found.1, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id of the child this test started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the listening line said `(https)`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Every stdout line so far (the access log).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.out.lock().expect("stdout lines").clone()
    }

    /// Waits until `n` stdout lines have arrived (or the deadline) and returns them all.
    pub fn wait_for_stdout_lines(&self, n: usize, limit: Duration) -> Vec<String> {
        wait_until(limit, || self.stdout_lines().len() >= n);
        self.stdout_lines()
    }

    /// The config file sidecar was started with (rewrite it, then `signal("HUP")`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sidecar.toml")
    }

    /// Replaces the config file's contents.
    pub fn rewrite_config(&self, config_toml: &str) {
        std::fs::write(self.config_path(), config_toml).expect("rewrite sidecar.toml");
    }

    /// The admin listener's address, from its startup line (`admin endpoint on ADDR`,
    /// or `admin listening on ADDR`).
    pub fn admin_addr(&self) -> SocketAddr {
        let mut found = None;
        wait_until(DEADLINE, || {
            found = self.logs().iter().find_map(|l| parse_admin(l));
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no admin listener line in the logs:\n{}", self.logs().join("\n")))
    }

    /// One `GET path` on a fresh connection; the response.
    pub fn get(&self, path: &str) -> Response {
        let mut c = self.conn();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send to sidecar");
        c.read_response()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.logs().iter().any(|l| l.contains(needle)))
    }

    /// A new plain TCP connection to the listener.
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"HUP"`) to the process this test started.
    /// Sent at once: the handlers are in place before the listening line (operations.rs
    /// `signal_right_after_the_listening_line_is_handled_not_fatal`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; its exit code, or `None` at the deadline.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- sidecar logs ----\n{}\n----------------------", self.logs().join("\n"));
        }
    }
}

/// Reads `from` line by line into a shared list until EOF.
fn collect_lines(from: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line).trim_end().to_string();
                    sink.lock().expect("lines").push(s);
                }
            }
        }
    });
    lines
}

/// `admin endpoint on 127.0.0.1:PORT ...` (or `admin listening on ...`) → the address.
fn parse_admin(line: &str) -> Option<SocketAddr> {
    let at = ["admin endpoint on ", "admin listening on "].iter().find_map(|m| line.find(m).map(|i| i + m.len()))?;
    line[at..].split_whitespace().next()?.parse().ok()
}

/// A GET on a fresh connection to the admin listener; its response.
pub fn admin_get(admin: SocketAddr, path: &str) -> Response {
    let mut c = Conn::open(admin);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).expect("send to the admin listener");
    c.read_response()
}

/// `listening on 127.0.0.1:PORT (http)` → (addr, https). Admin lines are not listeners.
fn parse_listening(line: &str) -> Option<(SocketAddr, bool)> {
    if line.contains("admin ") {
        return None;
    }
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let mut parts = rest.split_whitespace();
    let addr: SocketAddr = parts.next()?.parse().ok()?;
    let kind = parts.next().unwrap_or("(http)");
    Some((addr, kind.contains("https")))
}

/// The result of running the binary to completion.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A `[resolver]` section that keeps name lookups on loopback: the tests must never
/// query the machine's own nameservers. Nothing answers DNS on 127.0.0.1:9, so a name
/// does not resolve, which `sidecar check` reports as a warning.
pub const LOOPBACK_RESOLVER: &str =
    "\n[resolver]\nnameservers = [\"127.0.0.1:9\"]\nsearch = []\ntimeout = \"500ms\"\nattempts = 1\n";

/// Runs the binary with `args`, in `dir`, and waits (with a deadline) for it to exit.
pub fn run_binary(dir: &Path, args: &[&str]) -> Ran {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidecar");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`sidecar {}` still running after 10 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).to_string();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).to_string();
    Ran { code, stdout, stderr }
}

// ---------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------

/// `[server]` on 127.0.0.1:0 with one worker (so pool reuse is observable), plus
/// `extra_server` lines, and `[[proxy]] path = "/"` to `http://BACKEND/`.
pub fn config_to(backend: SocketAddr, extra_server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n{extra_server}\n\n[[proxy]]\npath = \"/\"\nto = \"http://{backend}/\"\n"
    )
}

/// A sidecar in front of `backend` with the default route.
pub fn sidecar_for(backend: &Backend) -> Sidecar {
    Sidecar::start(&config_to(backend.addr, ""))
}

/// A port on 127.0.0.1 that refuses connections for as long as this lives: a socket
/// bound there that does not listen, so no other socket (another test's backend on
/// port 0) can take the port meanwhile. `into_listener` starts listening on it (a
/// replica restarted on its old port).
pub struct DeadPort {
    socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        let addr = socket.local_addr().expect("local addr").as_socket().expect("an inet address");
        DeadPort { socket, addr }
    }

    /// Listens on the reserved port from now on.
    pub fn into_listener(self) -> TcpListener {
        self.socket.listen(128).expect("listen");
        self.socket.into()
    }
}

impl Default for DeadPort {
    fn default() -> Self {
        DeadPort::new()
    }
}

// ---------------------------------------------------------------------------------
// Client connection
// ---------------------------------------------------------------------------------

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a read produced.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Fill {
    Data,
    Eof,
    Timeout,
}

/// A client connection with a read buffer; every wait is bounded by `timeout`.
pub struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    eof: bool,
    /// Deadline for each `read_response` / `send`.
    pub timeout: Duration,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let tcp = block_within(DEADLINE, "connect", async_net::TcpStream::connect(addr)).expect("connect to sidecar");
        let _ = tcp.set_nodelay(true);
        Conn::from_io(Box::new(tcp))
    }

    pub fn from_io(io: Box<dyn Io>) -> Conn {
        Conn { io, buf: Vec::new(), eof: false, timeout: DEADLINE }
    }

    /// Writes all of `bytes` in one write call (as far as the kernel allows).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let io = &mut self.io;
        let bytes = bytes.as_ref();
        match async_io::block_on(within(self.timeout, async {
            io.write_all(bytes).await?;
            io.flush().await
        })) {
            Some(r) => r,
            None => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline")),
        }
    }

    /// Shuts down our write side (TCP FIN / TLS close_notify + FIN).
    pub fn shutdown_write(&mut self) {
        let io = &mut self.io;
        let _ = async_io::block_on(within(self.timeout, io.close()));
    }

    /// Reads more bytes into the buffer, waiting at most until `until`.
    fn fill(&mut self, until: Instant) -> Fill {
        if self.eof {
            return Fill::Eof;
        }
        let now = Instant::now();
        if now >= until {
            return Fill::Timeout;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let io = &mut self.io;
        match async_io::block_on(within(until - now, io.read(&mut chunk))) {
            None => Fill::Timeout,
            Some(Ok(0)) | Some(Err(_)) => {
                self.eof = true;
                Fill::Eof
            }
            Some(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
        }
    }

    /// Reads one response (to a non-HEAD request), panicking after `timeout`.
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// Reads one response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        self.read_response_to(true)
    }

    fn read_response_to(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request, self.timeout) {
            Ok(r) => r,
            Err(e) => panic!("expected a response: {e}"),
        }
    }

    /// Reads one response within `limit`. A response cut short by EOF is returned with
    /// `complete == false`; EOF or a timeout before a full head is an error.
    pub fn try_read_response(&mut self, head_request: bool, limit: Duration) -> Result<Response, ReadError> {
        let until = Instant::now() + limit;
        let mut r = Reader { conn: self, pos: 0, until };
        let res = read_message(&mut r, head_request);
        let pos = r.pos;
        match res {
            Ok(resp) => {
                self.buf.drain(..pos);
                Ok(resp)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads until the peer closes or `limit` passes; returns every byte not yet
    /// consumed and whether the connection was closed.
    pub fn read_until_close(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let until = Instant::now() + limit;
        loop {
            match self.fill(until) {
                Fill::Data => continue,
                Fill::Eof => return (std::mem::take(&mut self.buf), true),
                Fill::Timeout => return (std::mem::take(&mut self.buf), false),
            }
        }
    }

    /// Whatever arrives within `limit` (possibly nothing).
    pub fn read_available(&mut self, limit: Duration) -> Vec<u8> {
        let until = Instant::now() + limit;
        if self.buf.is_empty() {
            let _ = self.fill(until);
        }
        std::mem::take(&mut self.buf)
    }

    /// Asserts the peer closes within `limit` without sending anything more.
    pub fn expect_closed(&mut self, limit: Duration) {
        let (rest, closed) = self.read_until_close(limit);
        assert!(
            rest.is_empty(),
            "expected the connection to close with nothing more, got {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert!(closed, "expected the connection to be closed within {limit:?}");
    }

    /// Reads exactly `n` bytes (panics on EOF/deadline).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let until = Instant::now() + self.timeout;
        while self.buf.len() < n {
            match self.fill(until) {
                Fill::Data => {}
                f => panic!("wanted {n} bytes, got {f:?} after {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// Why no response could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The deadline passed; the bytes seen so far.
    Timeout(Vec<u8>),
    /// The peer closed before a complete head; the bytes seen so far.
    Closed(Vec<u8>),
    /// The bytes are not an HTTP/1.x response.
    Malformed(String, Vec<u8>),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Timeout(b) => write!(f, "deadline passed; got {:?}", String::from_utf8_lossy(b)),
            ReadError::Closed(b) => write!(f, "connection closed; got {:?}", String::from_utf8_lossy(b)),
            ReadError::Malformed(m, b) => write!(f, "malformed response ({m}): {:?}", String::from_utf8_lossy(b)),
        }
    }
}

/// A cursor over a growing buffer; `more()` fetches bytes (or reports EOF/timeout).
trait Source {
    fn data(&self) -> &[u8];
    fn more(&mut self) -> Fill;
    fn pos(&mut self) -> &mut usize;
}

struct Reader<'a> {
    conn: &'a mut Conn,
    pos: usize,
    until: Instant,
}

impl Source for Reader<'_> {
    fn data(&self) -> &[u8] {
        &self.conn.buf
    }
    fn more(&mut self) -> Fill {
        self.conn.fill(self.until)
    }
    fn pos(&mut self) -> &mut usize {
        &mut self.pos
    }
}

struct SliceSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    fn data(&self) -> &[u8] {
        self.data
    }
    fn more(&mut self) -> Fill {
        Fill::Eof
    }
    fn pos(&mut self) -> &mut usize {
        &mut self.pos
    }
}

/// A response as it crossed the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// e.g. `HTTP/1.1 200 OK`
    pub status_line: String,
    pub status: u16,
    /// In order, names with their original case.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// The raw head bytes, up to and including the blank line.
    pub head: Vec<u8>,
    /// Whether the body was chunked on the wire.
    pub chunked: bool,
    /// False when the connection ended before the framing said the body was complete
    /// (for chunked: no terminating 0-size chunk).
    pub complete: bool,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.head).to_string()
    }

    /// Whether the response announces `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.headers_named("connection").iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// Asserts a sidecar-made error answer: the status, a plain-text content type and
    /// a short non-empty body.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "want {status}, got {}\n{}", self.status_line, self.head_str());
        assert!(self.status_line.starts_with("HTTP/1."), "status line {:?}", self.status_line);
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("text/plain"), "error answers are plain text; Content-Type {ct:?}");
        assert!(!self.body.is_empty() && self.body.len() < 1024, "short non-empty body, got {:?}", self.body_str());
    }
}

fn find_crlfcrlf(data: &[u8], from: usize) -> Option<usize> {
    data[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4)
}

fn read_message(src: &mut dyn Source, head_request: bool) -> Result<Response, ReadError> {
    let start = *src.pos();
    // The head.
    let head_end = loop {
        if let Some(end) = find_crlfcrlf(src.data(), start) {
            break end;
        }
        match src.more() {
            Fill::Data => {}
            Fill::Eof => return Err(ReadError::Closed(src.data()[start..].to_vec())),
            Fill::Timeout => return Err(ReadError::Timeout(src.data()[start..].to_vec())),
        }
    };
    let head = src.data()[start..head_end].to_vec();
    let mut hdrs = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Response::new(&mut hdrs);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Malformed("partial head".into(), head)),
        Err(e) => return Err(ReadError::Malformed(e.to_string(), head)),
    }
    let status = parsed.code.unwrap_or(0);
    let headers: Vec<(String, String)> =
        parsed.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).to_string())).collect();
    let status_line =
        String::from_utf8_lossy(&head[..head.windows(2).position(|w| w == b"\r\n").unwrap_or(0)]).to_string();
    *src.pos() = head_end;
    let mut resp = Response { status_line, status, headers, body: Vec::new(), head, chunked: false, complete: true };
    let te = resp.headers_named("transfer-encoding").join(",");
    let chunked = te.rsplit(',').next().map(|t| t.trim().eq_ignore_ascii_case("chunked")).unwrap_or(false);
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(resp);
    }
    if chunked {
        resp.chunked = true;
        resp.complete = read_chunked(src, &mut resp.body)?;
    } else if let Some(cl) = resp.header("content-length") {
        let n: usize =
            cl.trim().parse().map_err(|_| ReadError::Malformed(format!("Content-Length {cl:?}"), resp.head.clone()))?;
        loop {
            let have = src.data().len() - *src.pos();
            if have >= n {
                let p = *src.pos();
                resp.body = src.data()[p..p + n].to_vec();
                *src.pos() = p + n;
                break;
            }
            match src.more() {
                Fill::Data => {}
                Fill::Eof => {
                    let p = *src.pos();
                    resp.body = src.data()[p..].to_vec();
                    *src.pos() = src.data().len();
                    resp.complete = false;
                    break;
                }
                Fill::Timeout => return Err(ReadError::Timeout(src.data()[start..].to_vec())),
            }
        }
    } else {
        // Close-delimited.
        loop {
            match src.more() {
                Fill::Data => {}
                Fill::Eof => break,
                Fill::Timeout => return Err(ReadError::Timeout(src.data()[start..].to_vec())),
            }
        }
        let p = *src.pos();
        resp.body = src.data()[p..].to_vec();
        *src.pos() = src.data().len();
    }
    Ok(resp)
}

/// Decodes a chunked body; Ok(false) when the stream ended before the last chunk.
fn read_chunked(src: &mut dyn Source, body: &mut Vec<u8>) -> Result<bool, ReadError> {
    // Returns the line (without CRLF) at pos, advancing past it; None on EOF.
    fn line(src: &mut dyn Source) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            let p = *src.pos();
            if let Some(i) = src.data()[p..].windows(2).position(|w| w == b"\r\n") {
                let l = src.data()[p..p + i].to_vec();
                *src.pos() = p + i + 2;
                return Ok(Some(l));
            }
            match src.more() {
                Fill::Data => {}
                Fill::Eof => return Ok(None),
                Fill::Timeout => return Err(ReadError::Timeout(src.data().to_vec())),
            }
        }
    }
    loop {
        let Some(size_line) = line(src)? else { return Ok(false) };
        let s = String::from_utf8_lossy(&size_line);
        let hex = s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ReadError::Malformed(format!("chunk size line {s:?}"), src.data().to_vec()))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                match line(src)? {
                    None => return Ok(false),
                    Some(l) if l.is_empty() => return Ok(true),
                    Some(_) => {}
                }
            }
        }
        loop {
            let have = src.data().len() - *src.pos();
            if have >= size + 2 {
                break;
            }
            match src.more() {
                Fill::Data => {}
                Fill::Eof => {
                    let p = *src.pos();
                    let take = (src.data().len() - p).min(size);
                    body.extend_from_slice(&src.data()[p..p + take]);
                    *src.pos() = src.data().len();
                    return Ok(false);
                }
                Fill::Timeout => return Err(ReadError::Timeout(src.data().to_vec())),
            }
        }
        let p = *src.pos();
        body.extend_from_slice(&src.data()[p..p + size]);
        if &src.data()[p + size..p + size + 2] != b"\r\n" {
            return Err(ReadError::Malformed("chunk not followed by CRLF".into(), src.data().to_vec()));
        }
        *src.pos() = p + size + 2;
    }
}

/// Parses every response in `bytes` (which ended with the connection), in order.
/// `head_requests[i]` says whether the i-th response answers a HEAD. A trailing
/// fragment that is not a full head is returned as the second value.
pub fn parse_responses(bytes: &[u8]) -> (Vec<Response>, Vec<u8>) {
    let mut src = SliceSource { data: bytes, pos: 0 };
    let mut out = Vec::new();
    while src.pos < bytes.len() {
        let at = src.pos;
        match read_message(&mut src, false) {
            Ok(r) => out.push(r),
            Err(_) => return (out, bytes[at..].to_vec()),
        }
    }
    (out, Vec::new())
}

/// Sends `bytes` on a new connection and reads until the peer closes or `limit`.
pub fn send_raw(addr: SocketAddr, bytes: impl AsRef<[u8]>, limit: Duration) -> (Vec<u8>, bool) {
    let mut c = Conn::open(addr);
    let _ = c.send(bytes);
    c.read_until_close(limit)
}

// ---------------------------------------------------------------------------------
// Rejections (docs/security.md, "Rejected requests")
// ---------------------------------------------------------------------------------

/// Sends `bytes` in one write; the answer must be one of `statuses` (an error with a
/// plain-text body), the connection must close with nothing more, and the backend must
/// have seen nothing.
pub fn rejected(bytes: &[u8], statuses: &[u16]) {
    let b = backend::echo();
    let p = sidecar_for(&b);
    rejected_by(&p, &b, bytes, statuses);
}

/// `rejected` against a running sidecar in front of the echo backend `b`.
pub fn rejected_by(p: &Sidecar, b: &Backend, bytes: &[u8], statuses: &[u16]) {
    let mut c = p.conn();
    let _ = c.send(bytes);
    let r = match c.try_read_response(false, DEADLINE) {
        Ok(r) => r,
        Err(e) => panic!("sent {}\nexpected {statuses:?}: {e}", show(bytes)),
    };
    assert!(
        statuses.contains(&r.status),
        "sent {}\nexpected one of {statuses:?}, got {}\n(backend saw {})",
        show(bytes),
        r.status_line,
        show(&b.received())
    );
    r.assert_error(r.status);
    let (rest, closed) = c.read_until_close(DEADLINE);
    assert!(rest.is_empty(), "nothing may follow the rejection, got {}", show(&rest));
    assert!(closed, "the connection must be closed after a rejection");
    nothing_forwarded(p, b);
}

/// The backend's record is exactly one control request on one connection.
pub fn nothing_forwarded(p: &Sidecar, b: &Backend) {
    let mut c = p.conn();
    c.send("GET /control HTTP/1.1\r\nHost: a\r\n\r\n").expect("send to sidecar");
    let r = c.read_response();
    assert_eq!(r.status, 200, "control request");
    let targets: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/control"], "the backend saw more than the control request:\n{}", show(&b.received()));
    assert_eq!(b.connections(), 1, "extra backend connections; the first one received: {}", show(&b.received_on(0)));
    let raw = b.received();
    assert!(raw.starts_with(b"GET /control HTTP/1.1\r\n"), "backend bytes: {}", show(&raw));
}

/// A cheap, stable digest for comparing large bodies (FNV-1a 64).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Deterministic pseudo-random bytes (xorshift), so large bodies are not all zeros.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Encodes `body` as chunks of `size` bytes with the final 0-chunk.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Bytes as an escaped string for messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------
// WebSocket clients
// ---------------------------------------------------------------------------------

/// An async-tungstenite client over plain TCP.
pub type WsClient = async_tungstenite::WebSocketStream<async_net::TcpStream>;

/// Opens a WebSocket to `ws://addr{path}` through sidecar (a real handshake with a fresh
/// key); the error is the handshake's.
pub async fn ws_connect(addr: SocketAddr, path: &str) -> Result<WsClient, String> {
    let tcp = async_net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let req = ws_handshake_request(addr, path)?;
    async_tungstenite::client_async(req, tcp).await.map(|(ws, _)| ws).map_err(|e| format!("handshake: {e}"))
}

/// A WebSocket handshake request for `path` on sidecar at `addr`, with a fresh key.
pub fn ws_handshake_request(
    addr: SocketAddr,
    path: &str,
) -> Result<async_tungstenite::tungstenite::http::Request<()>, String> {
    use async_tungstenite::tungstenite::handshake::client::generate_key;
    use async_tungstenite::tungstenite::http;
    http::Request::builder()
        .uri(format!("ws://{addr}{path}"))
        .header("Host", addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", generate_key())
        .body(())
        .map_err(|e| format!("request: {e}"))
}

/// `ws_connect` with a deadline, panicking on failure.
pub fn ws_open(addr: SocketAddr, path: &str) -> WsClient {
    match block_within(DEADLINE, "WebSocket handshake", ws_connect(addr, path)) {
        Ok(ws) => ws,
        Err(e) => panic!("WebSocket to {addr}{path}: {e}"),
    }
}

/// Sends `text` and expects the same text back, within the deadline.
pub fn ws_round_trip(ws: &mut WsClient, text: &str) {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    block_within(DEADLINE, "WebSocket echo", async {
        ws.send(Message::text(text)).await.expect("send a WebSocket message");
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    assert_eq!(t.as_str(), text, "the echo");
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected the echo of {text:?}, got {other:?}"),
            }
        }
    });
}

/// Waits (at most `limit`) for the WebSocket to end: a close frame, EOF or an error.
/// Whether it ended.
/// The code of the next Close frame `ws` reads; `None` if the connection ends first.
pub fn ws_next_close_code(ws: &mut WsClient, limit: Duration) -> Option<u16> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    block_within(limit, "a Close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
}

pub fn ws_wait_closed(ws: &mut WsClient, limit: Duration) -> bool {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    async_io::block_on(within(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }))
    .is_some()
}
