//! RFC 6455 at the frame level, for tests that must see exactly which frames crossed
//! the wire, with which flags, masking and timing: `encode`/`parse` for single frames,
//! `FrameClient` (a raw client over a std `TcpStream` that does the upgrade handshake
//! through sidecar) and `FrameBackend` (a raw WebSocket server on 127.0.0.1 that accepts
//! the upgrade, records every frame it receives with its arrival time, and echoes,
//! answers Close and Ping, or stays silent as scripted). Every read has a deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{show, wait_until};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// RSV1, the bit permessage-deflate uses (RFC 7692).
pub const RSV1: u8 = 0b100;

/// The mask key `FrameClient` uses unless a test picks one.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The key of RFC 6455 §1.3's example handshake.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// ---------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------

/// One frame as it crossed the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits (RSV1 = 0b100).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
    /// When the read that completed the frame returned.
    pub at: Instant,
    /// The frame's bytes exactly as received (still masked).
    pub raw: Vec<u8>,
}

impl Frame {
    pub fn is_close(&self) -> bool {
        self.opcode == OP_CLOSE
    }

    /// A Close frame's status code (None for other frames or an empty Close).
    pub fn close_code(&self) -> Option<u16> {
        match (self.is_close(), self.payload.as_slice()) {
            (true, [a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A Close frame's reason text (lossy).
    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or(&[])).to_string()
    }

    /// One line for failure messages.
    pub fn describe(&self) -> String {
        let payload = if self.payload.len() > 48 {
            format!("{} bytes", self.payload.len())
        } else {
            format!("[{}]", show(&self.payload))
        };
        format!("fin={} rsv={:03b} op={:#x} masked={} payload={payload}", self.fin, self.rsv, self.opcode, self.masked)
    }
}

/// Every frame of `frames`, one per line, for failure messages.
pub fn describe_all(frames: &[Frame]) -> String {
    frames.iter().map(|f| format!("  {}", f.describe())).collect::<Vec<_>>().join("\n")
}

/// A frame's bytes: FIN, RSV bits (low three bits of `rsv`), opcode, the shortest
/// length form (7, 16 or 64 bits), and with `mask` the key and the masked payload.
pub fn encode(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (rsv & 0b111) << 4 | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client's frame: masked with `MASK`.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, 0, opcode, Some(MASK), payload)
}

/// A server's frame: unmasked.
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, 0, opcode, None, payload)
}

/// A Close payload: the code, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// The first frame in `buf`: the frame without its arrival time (set to `now`) and how
/// many bytes it took; None while the frame is incomplete.
pub fn parse(buf: &[u8], now: Instant) -> Option<(Frame, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let key: Option<[u8; 4]> = match masked {
        true => {
            let k = buf.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(k)
        }
        false => None,
    };
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    let body = buf.get(at..end)?;
    let payload = match key {
        Some(k) => body.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => body.to_vec(),
    };
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0b111,
        opcode: b0 & 0x0f,
        masked,
        payload,
        at: now,
        raw: buf[..end].to_vec(),
    };
    Some((frame, end))
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2: SHA-1 of key + GUID, base64).
pub fn accept_for(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    data_encoding::BASE64.encode(digest.as_ref())
}

// ---------------------------------------------------------------------------------
// Reading with a deadline
// ---------------------------------------------------------------------------------

/// Why no frame was read.
#[derive(Debug)]
pub enum End {
    /// The deadline passed; the bytes of an incomplete frame so far.
    Timeout(Vec<u8>),
    /// The peer closed (EOF or a reset).
    Closed,
}

/// What one read produced.
enum Got {
    Data,
    Eof,
    Timeout,
}

/// Reads once into `buf`, waiting at most until `until`.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> Got {
    let now = Instant::now();
    if now >= until {
        return Got::Timeout;
    }
    if stream.set_read_timeout(Some((until - now).max(Duration::from_millis(1)))).is_err() {
        return Got::Eof;
    }
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => Got::Eof,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Got::Data
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Got::Timeout,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Got::Data,
        Err(_) => Got::Eof,
    }
}

/// A buffered frame reader over one connection.
struct Frames {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Frames {
    fn read_frame(&mut self, until: Instant) -> Result<Frame, End> {
        loop {
            if let Some((frame, used)) = parse(&self.buf, Instant::now()) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            if self.eof {
                return Err(End::Closed);
            }
            match fill(&mut self.stream, &mut self.buf, until) {
                Got::Data => {}
                Got::Eof => self.eof = true,
                Got::Timeout => return Err(End::Timeout(self.buf.clone())),
            }
        }
    }

    /// Reads until CRLFCRLF; the head (with it), leaving what follows in the buffer.
    fn read_head(&mut self, until: Instant) -> Result<Vec<u8>, End> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(self.buf.drain(..i + 4).collect());
            }
            if self.eof || self.buf.len() > 64 * 1024 {
                return Err(End::Closed);
            }
            match fill(&mut self.stream, &mut self.buf, until) {
                Got::Data => {}
                Got::Eof => self.eof = true,
                Got::Timeout => return Err(End::Timeout(self.buf.clone())),
            }
        }
    }
}

/// The value of header `name` in a raw head (case-insensitive name).
fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

// ---------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------

/// A raw WebSocket client connected through sidecar.
pub struct FrameClient {
    io: Frames,
    /// The 101 response head.
    pub response_head: String,
}

impl FrameClient {
    /// Opens `ws://addr{path}` through sidecar; panics unless the answer is a 101 with
    /// the right `Sec-WebSocket-Accept`.
    pub fn connect(addr: SocketAddr, path: &str) -> FrameClient {
        FrameClient::connect_with(addr, path, "", None)
    }

    /// `connect` with `extra` header lines (each ending in CRLF) and, with `rcvbuf`, a
    /// receive buffer of that size set before connecting (a client that reads slowly
    /// pushes back on sidecar sooner).
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &str, rcvbuf: Option<usize>) -> FrameClient {
        let stream = match rcvbuf {
            None => TcpStream::connect_timeout(&addr, super::DEADLINE),
            Some(size) => {
                use socket2::{Domain, Socket, Type};
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
                s.set_recv_buffer_size(size).expect("SO_RCVBUF");
                s.connect_timeout(&addr.into(), super::DEADLINE).map(|()| TcpStream::from(s))
            }
        }
        .unwrap_or_else(|e| panic!("connect to sidecar at {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let mut io = Frames { stream, buf: Vec::new(), eof: false };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        io.stream.write_all(request.as_bytes()).expect("send the handshake");
        let head = match io.read_head(Instant::now() + super::DEADLINE) {
            Ok(h) => String::from_utf8_lossy(&h).to_string(),
            Err(e) => panic!("no 101 for {path}: {e:?}"),
        };
        assert!(head.starts_with("HTTP/1.1 101"), "the upgrade of {path} was answered\n{head}");
        assert_eq!(
            header_value(&head, "sec-websocket-accept").as_deref(),
            Some(accept_for(KEY).as_str()),
            "Sec-WebSocket-Accept in\n{head}"
        );
        FrameClient { io, response_head: head }
    }

    /// Writes `bytes` in one write.
    pub fn send(&mut self, bytes: &[u8]) {
        self.io.stream.write_all(bytes).expect("write to sidecar");
    }

    /// Writes `bytes` one byte per write, sleeping `gap` between writes.
    pub fn send_dribbled(&mut self, bytes: &[u8], gap: Duration) {
        for b in bytes {
            self.io.stream.write_all(&[*b]).expect("write to sidecar");
            std::thread::sleep(gap);
        }
    }

    /// Writes, ignoring errors (the peer may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.io.stream.write_all(bytes);
    }

    /// A masked text frame with FIN.
    pub fn send_text(&mut self, text: &str) {
        self.send(&client_frame(true, OP_TEXT, text.as_bytes()));
    }

    /// The next frame within `limit`.
    pub fn read_frame(&mut self, limit: Duration) -> Result<Frame, End> {
        self.io.read_frame(Instant::now() + limit)
    }

    /// The next frame, panicking with `what` when none arrives within `limit`.
    pub fn expect_frame(&mut self, limit: Duration, what: &str) -> Frame {
        match self.read_frame(limit) {
            Ok(f) => f,
            Err(e) => panic!("expected {what} within {limit:?}: {e:?}"),
        }
    }

    /// Every frame until the connection ends or `limit` passes; whether it ended.
    pub fn frames_until_eof(&mut self, limit: Duration) -> (Vec<Frame>, bool) {
        let until = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            match self.io.read_frame(until) {
                Ok(f) => frames.push(f),
                Err(End::Closed) => return (frames, true),
                Err(End::Timeout(_)) => return (frames, false),
            }
        }
    }

    /// Sends `text` and expects exactly its echo (one text frame, unmasked) back.
    pub fn round_trip(&mut self, text: &str) {
        self.send_text(text);
        let f = self.expect_frame(super::DEADLINE, &format!("the echo of {text:?}"));
        assert!(
            f.opcode == OP_TEXT && f.fin && !f.masked && f.payload == text.as_bytes(),
            "expected the echo of {text:?}, got {}",
            f.describe()
        );
    }
}

// ---------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------

/// What the backend does with the frames it receives.
#[derive(Clone, Copy, Debug)]
pub struct Script {
    /// Send data frames (text, binary, continuation) back unmasked with the same FIN,
    /// RSV bits and opcode.
    pub echo: bool,
    /// Answer a Close with a Close carrying the same code, then shut down writing.
    pub answer_close: bool,
    /// Answer a Ping with a Pong carrying the same payload.
    pub answer_ping: bool,
    /// A `Sec-WebSocket-Extensions` value to put in the 101.
    pub extensions: Option<&'static str>,
}

impl Script {
    /// Echoes, answers Close and Ping.
    pub const ECHO: Script = Script { echo: true, answer_close: true, answer_ping: true, extensions: None };
    /// Sends nothing of its own accord, answers Close and Ping.
    pub const SILENT: Script = Script { echo: false, answer_close: true, answer_ping: true, extensions: None };
}

/// One tunnel as the backend saw it.
#[derive(Clone, Debug)]
pub struct BackendConn {
    /// The request target of the handshake.
    pub target: String,
    /// The handshake head.
    pub head: String,
    /// Every byte received after the handshake head, as received.
    pub raw: Vec<u8>,
    /// The frames parsed from `raw`.
    pub frames: Vec<Frame>,
    /// When the connection ended (EOF or reset), if it did.
    pub closed_at: Option<Instant>,
}

impl BackendConn {
    pub fn closes(&self) -> Vec<&Frame> {
        self.frames.iter().filter(|f| f.is_close()).collect()
    }

    pub fn has_opcode(&self, opcode: u8) -> bool {
        self.frames.iter().any(|f| f.opcode == opcode)
    }
}

#[derive(Default)]
struct State {
    conns: Vec<BackendConn>,
    writers: Vec<TcpStream>,
}

/// A raw WebSocket server on 127.0.0.1; stops and closes its connections on Drop.
pub struct FrameBackend {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FrameBackend {
    pub fn start(script: Script) -> FrameBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().expect("backend address");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, sp) = (Arc::clone(&st), Arc::clone(&sp));
                        handlers.push(std::thread::spawn(move || serve(stream, script, st, sp)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for h in handlers {
                let _ = h.join();
            }
        });
        FrameBackend { addr, state, stop, thread: Some(thread) }
    }

    /// An echoing backend.
    pub fn echo() -> FrameBackend {
        FrameBackend::start(Script::ECHO)
    }

    /// How many tunnels have completed the handshake.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("backend state").conns.len()
    }

    /// A snapshot of every tunnel, in handshake order.
    pub fn conns(&self) -> Vec<BackendConn> {
        self.state.lock().expect("backend state").conns.clone()
    }

    /// A snapshot of the tunnel whose handshake asked for `target`.
    pub fn conn_for(&self, target: &str) -> Option<BackendConn> {
        self.conns().into_iter().find(|c| c.target == target)
    }

    /// Waits until `cond` holds for the tunnels (or `limit`); whether it held.
    pub fn wait_for(&self, limit: Duration, cond: impl Fn(&[BackendConn]) -> bool) -> bool {
        wait_until(limit, || cond(&self.state.lock().expect("backend state").conns))
    }

    /// Waits until the tunnel for `target` exists and `cond` holds for it; its final
    /// snapshot.
    pub fn wait_conn(&self, target: &str, limit: Duration, cond: impl Fn(&BackendConn) -> bool) -> Option<BackendConn> {
        let ok = self.wait_for(limit, |cs| cs.iter().any(|c| c.target == target && cond(c)));
        let c = self.conn_for(target);
        if ok {
            c
        } else {
            None
        }
    }

    /// A handle that writes on the tunnel for `target` (bytes go straight to sidecar).
    pub fn writer(&self, target: &str) -> TcpStream {
        let s = self.state.lock().expect("backend state");
        let i = s.conns.iter().position(|c| c.target == target).unwrap_or_else(|| panic!("no tunnel for {target}"));
        s.writers[i].try_clone().expect("clone a backend socket")
    }
}

impl Drop for FrameBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(s) = self.state.lock() {
            for w in &s.writers {
                let _ = w.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One backend connection: the handshake, then frames until EOF or stop.
fn serve(stream: TcpStream, script: Script, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut io = Frames { stream, buf: Vec::new(), eof: false };
    let Ok(head) = io.read_head(Instant::now() + Duration::from_secs(10)) else { return };
    let head = String::from_utf8_lossy(&head).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let key = header_value(&head, "sec-websocket-key").unwrap_or_default();
    let ext = script.extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
        accept_for(&key)
    );
    let index = {
        let mut s = state.lock().expect("backend state");
        s.conns.push(BackendConn { target, head, raw: io.buf.clone(), frames: Vec::new(), closed_at: None });
        s.writers.push(writer.try_clone().expect("clone a backend socket"));
        s.conns.len() - 1
    };
    if writer.write_all(answer.as_bytes()).is_err() {
        return;
    }
    let mut pending: Vec<u8> = io.buf.split_off(0);
    loop {
        // Parse what is pending, record, react.
        while let Some((frame, used)) = parse(&pending, Instant::now()) {
            pending.drain(..used);
            let reply = match frame.opcode {
                OP_CONT | OP_TEXT | OP_BINARY if script.echo => {
                    Some(encode(frame.fin, frame.rsv, frame.opcode, None, &frame.payload))
                }
                OP_PING if script.answer_ping => Some(server_frame(true, OP_PONG, &frame.payload)),
                OP_CLOSE if script.answer_close => {
                    Some(server_frame(true, OP_CLOSE, &frame.payload[..frame.payload.len().min(2)]))
                }
                _ => None,
            };
            let is_close = frame.is_close();
            state.lock().expect("backend state").conns[index].frames.push(frame);
            if let Some(bytes) = reply {
                let _ = writer.write_all(&bytes);
                if is_close {
                    let _ = writer.shutdown(Shutdown::Write);
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let before = io.buf.len();
        match fill(&mut io.stream, &mut io.buf, Instant::now() + Duration::from_millis(50)) {
            Got::Data => {
                let new = io.buf.split_off(before);
                io.buf.clear();
                state.lock().expect("backend state").conns[index].raw.extend_from_slice(&new);
                pending.extend_from_slice(&new);
            }
            Got::Timeout => {}
            Got::Eof => {
                state.lock().expect("backend state").conns[index].closed_at = Some(Instant::now());
                return;
            }
        }
    }
}
