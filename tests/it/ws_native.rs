//! WebSocket-native tunnels, seen frame by frame on both sides of sidecar: Close 1001
//! spread over `drain_spread` on SIGTERM, Close 1012 for tunnels to a member a reload
//! removed or set draining, keepalive pings (`ws_ping_interval`, `ws_pong_timeout`,
//! `ws_ping_backend`) whose pongs stay with sidecar, framing checks that end a stream
//! violating RFC 6455 with 1002 on both sides, and frames that pass byte for byte
//! however they are fragmented, interleaved or split across writes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ws_frames::*;
use crate::support::*;

/// `[server]` on 127.0.0.1:0 with one worker plus `server` lines, and `[[proxy]] /` to
/// `backend` with `route` lines.
fn ws_config(backend: SocketAddr, server: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n{server}\n\n[[proxy]]\npath = \"/\"\nto = \"http://{backend}/\"\n{route}\n"
    )
}

/// Asserts `f` is a Close from sidecar to a client: FIN, unmasked, `code`, a non-empty
/// UTF-8 reason.
fn assert_close_to_client(f: &Frame, code: u16, what: &str) {
    assert!(f.is_close() && f.fin, "{what}: expected a Close, got {}", f.describe());
    assert_eq!(f.close_code(), Some(code), "{what}: {}", f.describe());
    assert!(!f.masked, "{what}: a server's Close is unmasked: {}", f.describe());
    assert!(std::str::from_utf8(&f.payload[2..]).is_ok(), "{what}: the reason is UTF-8: {}", f.describe());
    assert!(!f.close_reason().is_empty(), "{what}: a short reason: {}", f.describe());
}

/// Asserts the backend's tunnel got exactly one Close, from sidecar as a client:
/// masked, `code`, a non-empty UTF-8 reason.
fn assert_close_to_backend(c: &BackendConn, code: u16, what: &str) {
    let closes = c.closes();
    assert_eq!(closes.len(), 1, "{what}: one Close to the backend; it got\n{}", describe_all(&c.frames));
    let f = closes[0];
    assert_eq!(f.close_code(), Some(code), "{what}: {}", f.describe());
    assert!(f.masked && f.fin, "{what}: a client's Close is masked: {}", f.describe());
    assert!(std::str::from_utf8(&f.payload[2..]).is_ok(), "{what}: the reason is UTF-8: {}", f.describe());
    assert!(!f.close_reason().is_empty(), "{what}: a short reason: {}", f.describe());
}

/// The client's answer to a Close: a masked Close with the same code.
fn close_reply(f: &Frame) -> Vec<u8> {
    client_frame(true, OP_CLOSE, &f.payload[..f.payload.len().min(2)])
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---- the frame codec these tests rely on ------------------------------------------------------

#[test]
fn frame_codec_matches_the_rfc_6455_examples_and_round_trips_every_length_form() {
    // RFC 6455 §5.7 and §1.3.
    assert_eq!(server_frame(true, OP_TEXT, b"Hello"), b"\x81\x05Hello");
    assert_eq!(
        client_frame(true, OP_TEXT, b"Hello"),
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    assert_eq!(server_frame(true, OP_BINARY, &[0; 256])[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(server_frame(true, OP_BINARY, &[0; 65536])[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let now = Instant::now();
    for len in [0usize, 125, 126, 65535, 65536] {
        for (rsv, mask) in [(0, None), (0b101, Some([9, 8, 7, 6]))] {
            let payload = noise(len, len as u64 + 3);
            let mut bytes = encode(false, rsv, OP_BINARY, mask, &payload);
            let whole = bytes.len();
            assert!(parse(&bytes[..whole - 1], now).is_none(), "{len}: incomplete until the last byte");
            bytes.extend_from_slice(b"next");
            let (f, used) = parse(&bytes, now).expect("a frame");
            assert_eq!((used, f.fin, f.rsv, f.opcode, f.masked), (whole, false, rsv, OP_BINARY, mask.is_some()));
            assert!(f.payload == payload && f.raw == bytes[..whole], "{len}: payload and raw bytes");
        }
    }
    let (close, _) = parse(&server_frame(true, OP_CLOSE, &close_payload(1001, "bye")), now).expect("a Close");
    assert_eq!((close.close_code(), close.close_reason().as_str()), (Some(1001), "bye"));
}

// ---- drain: Close 1001 ------------------------------------------------------------------------

/// What one client saw of the drain.
struct Drained {
    /// Frames before and including the first Close.
    frames: Vec<Frame>,
    /// Frames after the client answered the Close, until EOF.
    after: Vec<Frame>,
    eof: bool,
}

#[test]
fn sigterm_closes_100_tunnels_with_1001_spread_over_drain_spread_and_exits_0() {
    const N: usize = 100;
    let (timeout, spread) = (Duration::from_secs(4), Duration::from_secs(2));
    let b = FrameBackend::echo();
    let mut p = Sidecar::start(&ws_config(b.addr, "drain_timeout = \"4s\"\ndrain_spread = \"2s\"", ""));
    let mut clients: Vec<FrameClient> = (0..N).map(|i| FrameClient::connect(p.addr(), &format!("/t{i}"))).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.round_trip(&format!("hello {i}"));
    }
    assert!(b.wait_for(DEADLINE, |cs| cs.len() == N), "{} backend tunnels", b.connections());

    // Each client reads on its own thread so the arrival times are the wire's.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(7);
                let mut frames = Vec::new();
                while let Ok(f) = c.read_frame(until.saturating_duration_since(Instant::now())) {
                    let close = f.is_close().then(|| close_reply(&f));
                    frames.push(f);
                    if let Some(reply) = close {
                        c.send_lossy(&reply);
                        let (after, eof) = c.frames_until_eof(Duration::from_secs(3));
                        return Drained { frames, after, eof };
                    }
                }
                Drained { frames, after: Vec::new(), eof: false }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // the readers are in read()
    let signalled = Instant::now();
    p.signal("TERM");
    let code = p.wait_exit(Duration::from_secs(6));
    let exited = signalled.elapsed();
    let seen: Vec<Drained> = readers.into_iter().map(|r| r.join().expect("reader thread")).collect();

    let mut times = Vec::new();
    for (i, d) in seen.iter().enumerate() {
        let what = format!("client {i}");
        let last = d.frames.last().unwrap_or_else(|| panic!("{what} got no Close at all"));
        assert_eq!(d.frames.len(), 1, "{what}: only the Close, got\n{}", describe_all(&d.frames));
        assert_close_to_client(last, 1001, &what);
        assert!(
            d.after.is_empty(),
            "{what}: nothing after sidecar's Close (the backend's Close reply stays with sidecar), got\n{}",
            describe_all(&d.after)
        );
        assert!(d.eof, "{what}: sidecar closes the connection once the client answered the Close");
        times.push(last.at.saturating_duration_since(signalled));
    }
    times.sort();
    let (first, latest) = (times[0], times[N - 1]);
    let shown: Vec<String> = times.iter().map(|t| format!("{:.2}", secs(*t))).collect();
    assert!(first <= spread.mul_f64(0.3), "the first Close comes early in the window; times: {shown:?}");
    assert!(latest >= spread.mul_f64(0.6), "the closes are spread over drain_spread; times: {shown:?}");
    assert!(latest < timeout, "every Close before drain_timeout; times: {shown:?}");
    let tenth = spread.as_secs_f64() / 10.0;
    let mut bins = [0usize; 20];
    for t in &times {
        bins[((secs(*t) / tenth) as usize).min(19)] += 1;
    }
    let busiest = bins.iter().copied().max().unwrap_or(0);
    assert!(busiest <= N / 4, "at most a quarter of the closes in any tenth of drain_spread; per tenth: {bins:?}");

    assert!(b.wait_for(DEADLINE, |cs| cs.iter().all(|c| !c.closes().is_empty())), "every backend tunnel gets a Close");
    for c in b.conns() {
        assert_close_to_backend(&c, 1001, &format!("backend tunnel {}", c.target));
    }
    assert_eq!(code, Some(0), "exit code; logs:\n{}", p.logs().join("\n"));
    assert!(
        exited < timeout - Duration::from_millis(400),
        "every tunnel ended by {:.2}s: the process exits then, not at drain_timeout; exited after {exited:?}",
        secs(latest)
    );
}

#[test]
fn client_that_never_answers_the_close_keeps_its_connection_until_drain_timeout() {
    let b = FrameBackend::echo();
    let mut p = Sidecar::start(&ws_config(b.addr, "drain_timeout = \"2s\"\ndrain_spread = \"500ms\"", ""));
    let mut c = FrameClient::connect(p.addr(), "/mute");
    c.round_trip("hello");
    let signalled = Instant::now();
    p.signal("TERM");
    let close = c.expect_frame(Duration::from_millis(1500), "Close 1001");
    assert_close_to_client(&close, 1001, "the client");
    let (after, eof) = c.frames_until_eof(Duration::from_secs(4));
    let ended = signalled.elapsed();
    assert!(after.is_empty(), "nothing after the Close:\n{}", describe_all(&after));
    assert!(eof, "the connection is closed at drain_timeout");
    assert!(
        ended >= Duration::from_millis(1800) && ended < Duration::from_millis(3500),
        "the unanswered tunnel lives until drain_timeout (2s); the client's connection ended (read EOF) \
         after {ended:?} (the backend answered sidecar's Close and then shut its write side)"
    );
    assert_eq!(p.wait_exit(Duration::from_secs(2)), Some(0), "{}", p.logs().join("\n"));
    let bc = b.conn_for("/mute").expect("the backend tunnel");
    assert_close_to_backend(&bc, 1001, "the backend");
}

#[test]
fn sigterm_while_a_16mib_frame_is_in_flight_delivers_it_whole_then_1001() {
    // The test writes every byte the backend sends on this tunnel: the frame, then the
    // backend's answer to sidecar's Close (its own thread must not write in between).
    let b = FrameBackend::start(Script { answer_close: false, ..Script::SILENT });
    let mut p = Sidecar::start(&ws_config(b.addr, "drain_timeout = \"6s\"\ndrain_spread = \"200ms\"", ""));
    // A small receive window: the client pushes back at once and sidecar holds the
    // frame's tail.
    let mut c = FrameClient::connect_with(p.addr(), "/big", "", Some(16 * 1024));
    assert!(b.wait_for(DEADLINE, |cs| cs.len() == 1), "the backend tunnel");
    // 16 MiB: more than the kernel holds between the backend and a stalled client on
    // loopback (a 64 KiB MSS lets a send buffer grow to `tcp_wmem`'s 4 MiB maximum).
    let payload = noise(16 << 20, 11);
    let frame = server_frame(true, OP_BINARY, &payload);
    let mut w = b.writer("/big");
    socket2::SockRef::from(&w).set_send_buffer_size(16 * 1024).expect("SO_SNDBUF");
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (wr, dn) = (Arc::clone(&written), Arc::clone(&done));
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for chunk in frame.chunks(16 * 1024) {
            if w.write_all(chunk).is_err() {
                return;
            }
            wr.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        dn.store(true, Ordering::SeqCst);
        let _ = w.write_all(&server_frame(true, OP_CLOSE, &1001u16.to_be_bytes()));
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    assert!(wait_until(DEADLINE, || written.load(Ordering::SeqCst) >= 64 * 1024), "the backend started the frame");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "the whole 16 MiB frame left the backend before SIGTERM ({} bytes): the test needs it in flight",
        written.load(Ordering::SeqCst)
    );
    p.signal("TERM");
    std::thread::sleep(Duration::from_millis(600)); // past drain_spread: the Close is due
    let at_signal = written.load(Ordering::SeqCst);
    assert!(at_signal < payload.len(), "still mid-frame when the Close was due ({at_signal} bytes written)");

    let big = c.expect_frame(Duration::from_secs(5), "the 16 MiB frame");
    assert!(
        big.opcode == OP_BINARY && big.fin && !big.masked && big.payload.len() == payload.len(),
        "the frame in flight arrives whole first, got {}",
        big.describe()
    );
    assert_eq!(digest(&big.payload), digest(&payload), "the 16 MiB payload arrives intact");
    let close = c.expect_frame(DEADLINE, "Close 1001 after the frame");
    assert_close_to_client(&close, 1001, "after the big frame");
    c.send_lossy(&close_reply(&close));
    let (after, eof) = c.frames_until_eof(DEADLINE);
    assert!(after.is_empty() && eof, "closed after the Close handshake, got\n{}", describe_all(&after));
    let _ = writer.join();
    assert!(done.load(Ordering::SeqCst), "the backend's whole frame was taken");
    let bc = b.wait_conn("/big", DEADLINE, |bc| bc.closed_at.is_some()).expect("the backend tunnel ends");
    assert_close_to_backend(&bc, 1001, "the backend");
    assert_eq!(p.wait_exit(DEADLINE), Some(0), "{}", p.logs().join("\n"));
}

// ---- a member leaves: Close 1012 --------------------------------------------------------------

fn balanced_ws(members: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\ndrain_timeout = \"2s\"\ndrain_spread = \"500ms\"\n\n\
         [[proxy]]\npath = \"/\"\nto = \"balancer://app/\"\n\n[balancer.app]\nmethod = \"byrequests\"\nmembers = [{members}]\n"
    )
}

/// Opens 6 tunnels over members A and B, reloads with `after(A, B)` as the members,
/// and checks A's tunnels get Close 1012 on both sides while B's keep echoing.
fn reload_ends_the_tunnels_of_member_a_with_1012(after: impl Fn(SocketAddr, SocketAddr) -> String) {
    let (a, bb) = (FrameBackend::echo(), FrameBackend::echo());
    let p = Sidecar::start(&balanced_ws(&format!("\"ws://{}\", \"ws://{}\"", a.addr, bb.addr)));
    let mut clients: Vec<(String, FrameClient)> = (0..6)
        .map(|i| {
            let path = format!("/m{i}");
            let mut c = FrameClient::connect(p.addr(), &path);
            c.round_trip("before");
            (path, c)
        })
        .collect();
    let (on_a, on_b): (Vec<_>, Vec<_>) = clients.iter_mut().partition(|(path, _)| a.conn_for(path).is_some());
    assert!(
        !on_a.is_empty()
            && !on_b.is_empty()
            && on_a.iter().chain(&on_b).all(|(path, _)| a.conn_for(path).is_some() != bb.conn_for(path).is_some()),
        "byrequests puts tunnels on both members: A {} B {}",
        a.connections(),
        bb.connections()
    );
    p.rewrite_config(&balanced_ws(&after(a.addr, bb.addr)));
    p.signal("HUP");
    for (path, c) in on_a {
        let close = c.expect_frame(Duration::from_secs(4), &format!("Close 1012 on {path}"));
        assert_close_to_client(&close, 1012, path);
        c.send_lossy(&close_reply(&close));
        let (after, eof) = c.frames_until_eof(DEADLINE);
        assert!(after.is_empty() && eof, "{path}: closed after the Close handshake, got\n{}", describe_all(&after));
        let bc = a
            .wait_conn(path, DEADLINE, |bc| !bc.closes().is_empty())
            .unwrap_or_else(|| panic!("{path}: the removed member gets a Close: {:?}", a.conn_for(path)));
        assert_close_to_backend(&bc, 1012, path);
    }
    std::thread::sleep(Duration::from_millis(300));
    for (path, c) in on_b {
        match c.read_frame(Duration::from_millis(100)) {
            Err(End::Timeout(rest)) if rest.is_empty() => {}
            other => panic!("{path} on the remaining member got something: {other:?}"),
        }
        c.round_trip("after the reload");
        let bc = bb.conn_for(path).expect("the tunnel on B");
        assert!(
            bc.closes().is_empty() && bc.closed_at.is_none(),
            "{path}: B's tunnel untouched:\n{}",
            describe_all(&bc.frames)
        );
    }
}

#[test]
fn member_removed_by_sighup_gets_1012_and_the_other_members_tunnels_keep_echoing() {
    reload_ends_the_tunnels_of_member_a_with_1012(|_, b| format!("\"ws://{b}\""));
}

#[test]
fn member_set_draining_by_sighup_gets_1012_and_the_other_members_tunnels_keep_echoing() {
    reload_ends_the_tunnels_of_member_a_with_1012(|a, b| {
        format!("{{ url = \"ws://{a}\", status = \"+N\" }}, \"ws://{b}\"")
    });
}

// ---- keepalive pings --------------------------------------------------------------------------

const PINGS: &str = "ws_ping_interval = \"1s\"\nws_pong_timeout = \"1s\"";

/// Reads frames until `until`, answering each Ping with its Pong; every frame read.
/// Panics if the connection ends.
fn answer_pings_until(c: &mut FrameClient, until: Instant, what: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        match c.read_frame(until.saturating_duration_since(Instant::now())) {
            Ok(f) => {
                if f.opcode == OP_PING {
                    c.send(&client_frame(true, OP_PONG, &f.payload));
                }
                frames.push(f);
            }
            Err(End::Timeout(_)) => return frames,
            Err(End::Closed) => panic!("{what}: the connection ended; frames so far:\n{}", describe_all(&frames)),
        }
    }
}

/// Sends `text` and expects its echo, answering any of sidecar's Pings that come first.
fn round_trip_answering_pings(c: &mut FrameClient, text: &str) {
    c.send_text(text);
    let until = Instant::now() + DEADLINE;
    loop {
        let f = c.expect_frame(until.saturating_duration_since(Instant::now()), &format!("the echo of {text:?}"));
        if f.opcode == OP_PING && !f.masked {
            c.send(&client_frame(true, OP_PONG, &f.payload));
            continue;
        }
        assert!(
            f.opcode == OP_TEXT && f.fin && !f.masked && f.payload == text.as_bytes(),
            "expected the echo of {text:?}, got {}",
            f.describe()
        );
        return;
    }
}

/// Asserts `f` is a Ping from sidecar that arrived 0.8–2.5 s after `since`.
fn assert_ping_after_about_1s(f: &Frame, since: Instant, masked: bool, what: &str) {
    assert!(f.opcode == OP_PING && f.fin, "{what}: expected a Ping, got {}", f.describe());
    assert_eq!(f.masked, masked, "{what}: masking of sidecar's Ping: {}", f.describe());
    let after = f.at.saturating_duration_since(since);
    assert!(
        after >= Duration::from_millis(800) && after <= Duration::from_millis(2500),
        "{what}: the Ping comes after the 1s interval, came after {after:?}"
    );
}

#[test]
fn silent_client_is_pinged_and_its_pong_never_reaches_the_backend() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, PINGS, ""));
    let mut c = FrameClient::connect(p.addr(), "/quiet");
    let opened = Instant::now();
    let ping = c.expect_frame(Duration::from_secs(3), "sidecar's Ping");
    assert_ping_after_about_1s(&ping, opened, false, "to the client");
    assert!(ping.payload.len() <= 125);
    c.send(&client_frame(true, OP_PONG, &ping.payload));
    round_trip_answering_pings(&mut c, "still here");
    // Answered pings keep it open past interval + timeout, several times over.
    let more = answer_pings_until(&mut c, Instant::now() + Duration::from_millis(2600), "the answering client");
    assert!(more.iter().all(|f| f.opcode == OP_PING && !f.masked), "only Pings:\n{}", describe_all(&more));
    assert!(!more.is_empty(), "a silent client keeps being pinged");
    round_trip_answering_pings(&mut c, "and still here");
    std::thread::sleep(Duration::from_millis(100));
    let bc = b.conn_for("/quiet").expect("the backend tunnel");
    assert!(
        !bc.has_opcode(OP_PONG),
        "the Pongs answering sidecar's Pings reached the backend:\n{}",
        describe_all(&bc.frames)
    );
    assert!(!bc.has_opcode(OP_PING), "no Pings to the backend without ws_ping_backend:\n{}", describe_all(&bc.frames));
    let texts: Vec<&[u8]> = bc.frames.iter().map(|f| f.payload.as_slice()).collect();
    assert_eq!(texts, [&b"still here"[..], b"and still here"], "the backend got the two messages only");
}

#[test]
fn client_that_never_pongs_is_closed_after_the_timeout_with_1011_and_a_log_line_saying_ping() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, PINGS, ""));
    let mut c = FrameClient::connect(p.addr(), "/gone");
    let opened = Instant::now();
    let (frames, eof) = c.frames_until_eof(Duration::from_secs(5));
    let ended = opened.elapsed();
    assert!(eof, "the unanswered client is closed; frames:\n{}", describe_all(&frames));
    assert!(
        ended >= Duration::from_millis(1800) && ended <= Duration::from_millis(4000),
        "closed after interval + timeout (2s), closed after {ended:?}"
    );
    let first = frames.first().unwrap_or_else(|| panic!("no Ping before the close"));
    assert_ping_after_about_1s(first, opened, false, "to the client");
    for f in &frames[1..] {
        let ok = (f.opcode == OP_PING && !f.masked) || (f.is_close() && f.close_code() == Some(1011) && !f.masked);
        assert!(ok, "only Pings and a Close 1011 may reach the client, got {}", f.describe());
    }
    let bc = b
        .wait_conn("/gone", DEADLINE, |bc| !bc.closes().is_empty())
        .unwrap_or_else(|| panic!("the backend gets a Close: {:?}", b.conn_for("/gone")));
    assert_close_to_backend(&bc, 1011, "the backend");
    assert!(!bc.has_opcode(OP_PING) && !bc.has_opcode(OP_PONG), "{}", describe_all(&bc.frames));
    let lines = p.wait_for_stdout_lines(1, DEADLINE);
    let line = lines.iter().find(|l| l.contains("/gone")).unwrap_or_else(|| panic!("no access-log line: {lines:?}"));
    assert!(line.to_ascii_lowercase().contains("ping"), "the tunnel's access-log line says why it ended: {line}");
}

#[test]
fn ws_ping_backend_pings_a_silent_backend_and_its_pongs_never_reach_the_client() {
    let b = FrameBackend::start(Script::SILENT);
    let p = Sidecar::start(&ws_config(b.addr, &format!("{PINGS}\nws_ping_backend = true"), ""));
    let mut c = FrameClient::connect(p.addr(), "/pb");
    let opened = Instant::now();
    let frames = answer_pings_until(&mut c, opened + Duration::from_millis(3300), "the client");
    assert!(
        frames.iter().all(|f| f.opcode == OP_PING && !f.masked),
        "the client sees only sidecar's own Pings, never the backend's Pongs:\n{}",
        describe_all(&frames)
    );
    let bc = b.conn_for("/pb").expect("the backend tunnel");
    let pings: Vec<&Frame> = bc.frames.iter().filter(|f| f.opcode == OP_PING).collect();
    assert!(!pings.is_empty(), "the silent backend is pinged:\n{}", describe_all(&bc.frames));
    assert_ping_after_about_1s(pings[0], opened, true, "to the backend");
    assert!(pings.iter().all(|f| f.masked), "sidecar pings the backend as a client, masked");
    assert!(
        bc.closes().is_empty() && bc.closed_at.is_none(),
        "a backend that answers the Pings stays open past interval + timeout:\n{}",
        describe_all(&bc.frames)
    );
    assert!(!bc.has_opcode(OP_PONG), "the client's Pongs to sidecar's Pings stay with sidecar");
}

#[test]
fn without_ws_ping_interval_no_ping_is_ever_sent() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "ws_pong_timeout = \"1s\"", ""));
    let mut c = FrameClient::connect(p.addr(), "/none");
    match c.read_frame(Duration::from_secs(3)) {
        Err(End::Timeout(rest)) if rest.is_empty() => {}
        other => panic!("a silent tunnel without ws_ping_interval sees nothing, got {other:?}"),
    }
    c.round_trip("alive");
    let bc = b.conn_for("/none").expect("the backend tunnel");
    assert_eq!(bc.frames.len(), 1, "the backend saw only the message:\n{}", describe_all(&bc.frames));
}

#[test]
fn a_routes_ws_ping_interval_overrides_the_servers() {
    let (fast_b, slow_b) = (FrameBackend::echo(), FrameBackend::echo());
    let p = Sidecar::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nws_ping_interval = \"30s\"\nws_pong_timeout = \"1s\"\n\n\
         [[proxy]]\npath = \"/fast\"\nto = \"http://{}/\"\nws_ping_interval = \"1s\"\n\n\
         [[proxy]]\npath = \"/\"\nto = \"http://{}/\"\n",
        fast_b.addr, slow_b.addr
    ));
    let mut fast = FrameClient::connect(p.addr(), "/fast/x");
    let mut slow = FrameClient::connect(p.addr(), "/slow/x");
    let opened = Instant::now();
    let ping = fast.expect_frame(Duration::from_secs(3), "a Ping on the route with ws_ping_interval = 1s");
    assert_ping_after_about_1s(&ping, opened, false, "the /fast route");
    fast.send(&client_frame(true, OP_PONG, &ping.payload));
    match slow.read_frame((opened + Duration::from_millis(2500)).saturating_duration_since(Instant::now())) {
        Err(End::Timeout(rest)) if rest.is_empty() => {}
        other => panic!("the route on the server's 30s interval is not pinged yet, got {other:?}"),
    }
    round_trip_answering_pings(&mut fast, "fast");
    slow.round_trip("slow");
    assert_eq!(fast_b.connections(), 1);
    assert_eq!(slow_b.connections(), 1);
}

// ---- framing ----------------------------------------------------------------------------------

/// Every frame the backend sent back, read by the client until `n` arrived.
fn read_n(c: &mut FrameClient, n: usize, what: &str) -> Vec<Frame> {
    (0..n).map(|i| c.expect_frame(DEADLINE, &format!("{what}: frame {i}"))).collect()
}

#[test]
fn fragmented_message_with_interleaved_pings_passes_byte_for_byte_and_echoes() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    let mut c = FrameClient::connect(p.addr(), "/frag");
    let sent = [
        encode(false, 0, OP_TEXT, Some([1, 2, 3, 4]), b"Hel"),
        encode(true, 0, OP_PING, Some([5, 6, 7, 8]), b"p1"),
        encode(false, 0, OP_CONT, Some([9, 10, 11, 12]), b"lo, "),
        encode(true, 0, OP_PING, Some([13, 14, 15, 16]), b"p2"),
        encode(false, 0, OP_CONT, Some([17, 18, 19, 20]), b""),
        encode(true, 0, OP_CONT, Some([21, 22, 23, 24]), b"world"),
    ];
    for f in &sent {
        c.send(f);
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = read_n(&mut c, sent.len(), "the echo");
    let want: [(bool, u8, &[u8]); 6] = [
        (false, OP_TEXT, b"Hel"),
        (true, OP_PONG, b"p1"),
        (false, OP_CONT, b"lo, "),
        (true, OP_PONG, b"p2"),
        (false, OP_CONT, b""),
        (true, OP_CONT, b"world"),
    ];
    let shape: Vec<(bool, u8, &[u8])> = got.iter().map(|f| (f.fin, f.opcode, f.payload.as_slice())).collect();
    assert_eq!(shape, want, "the client gets the fragments and pongs in order:\n{}", describe_all(&got));
    let message: Vec<u8> = got.iter().filter(|f| f.opcode != OP_PONG).flat_map(|f| f.payload.clone()).collect();
    assert_eq!(message, b"Hello, world");
    let bc = b.conn_for("/frag").expect("the backend tunnel");
    assert_eq!(show(&bc.raw), show(&sent.concat()), "the backend got the client's bytes exactly");
}

#[test]
fn frames_of_every_length_form_pass_both_ways_byte_for_byte() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    let mut c = FrameClient::connect(p.addr(), "/lengths");
    let mut sent = Vec::new();
    for (i, len) in [0usize, 1, 125, 126, 127, 65535, 65536, 300_000].into_iter().enumerate() {
        let payload = noise(len, i as u64 + 1);
        let frame = encode(true, 0, OP_BINARY, Some([0xa0, i as u8, 0x5c, 0x11]), &payload);
        c.send(&frame);
        let echo = c.expect_frame(DEADLINE, &format!("the echo of {len} bytes"));
        assert_eq!(echo.raw, server_frame(true, OP_BINARY, &payload), "the echo of {len} bytes crossed intact");
        sent.push(frame);
    }
    let bc = b.conn_for("/lengths").expect("the backend tunnel");
    assert!(
        bc.raw == sent.concat(),
        "the backend got the client's bytes exactly ({} vs {} bytes)",
        bc.raw.len(),
        sent.concat().len()
    );
}

/// A stream that breaks RFC 6455 on the client's side: `prefix` is valid, `bad` is not.
struct Violation {
    name: &'static str,
    prefix: Vec<Vec<u8>>,
    bad: Vec<u8>,
}

const BAD_KEY: Option<[u8; 4]> = Some([0xde, 0xad, 0xbe, 0xef]);

fn violations() -> Vec<Violation> {
    let v = |name, prefix: Vec<Vec<u8>>, bad| Violation { name, prefix, bad };
    let text_start = || encode(false, 0, OP_TEXT, Some([1, 1, 1, 1]), b"first-half");
    vec![
        v("an unmasked text frame", vec![], encode(true, 0, OP_TEXT, None, b"unmasked-from-the-client")),
        v(
            "an unmasked frame after a valid message",
            vec![client_frame(true, OP_TEXT, b"fine")],
            encode(true, 0, OP_BINARY, None, b"unmasked-after-valid"),
        ),
        v("reserved opcode 3", vec![], encode(true, 0, 0x3, BAD_KEY, b"opcode-three")),
        v("reserved opcode 0xB", vec![], encode(true, 0, 0xB, BAD_KEY, b"opcode-eleven")),
        v("a Ping with 126 bytes", vec![], encode(true, 0, OP_PING, BAD_KEY, &[b'P'; 126])),
        v("a Close with 126 bytes", vec![], encode(true, 0, OP_CLOSE, BAD_KEY, &[b'C'; 126])),
        v("a Ping without FIN", vec![], encode(false, 0, OP_PING, BAD_KEY, b"fragmented-ping")),
        v("a continuation with no message open", vec![], encode(true, 0, OP_CONT, BAD_KEY, b"orphan-continuation")),
        v(
            "a continuation after a finished message",
            vec![client_frame(true, OP_TEXT, b"whole")],
            encode(true, 0, OP_CONT, BAD_KEY, b"late-continuation"),
        ),
        v(
            "a text frame inside a fragmented message",
            vec![text_start()],
            encode(true, 0, OP_TEXT, BAD_KEY, b"interloper"),
        ),
        v(
            "a binary frame inside a fragmented message",
            vec![text_start()],
            encode(false, 0, OP_BINARY, BAD_KEY, b"interloper"),
        ),
        v("RSV1 without a negotiated extension", vec![], encode(true, 0b100, OP_TEXT, BAD_KEY, b"rsv1-set")),
        v("RSV2", vec![], encode(true, 0b010, OP_TEXT, BAD_KEY, b"rsv2-set")),
        v("RSV3", vec![], encode(true, 0b001, OP_BINARY, BAD_KEY, b"rsv3-set")),
        v("RSV1 on a Ping", vec![], encode(true, 0b100, OP_PING, BAD_KEY, b"rsv1-ping")),
    ]
}

#[test]
fn framing_violations_from_the_client_close_both_sides_with_1002() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    for (i, case) in violations().into_iter().enumerate() {
        let what = case.name;
        let path = format!("/violation{i}");
        let mut c = FrameClient::connect(p.addr(), &path);
        for f in &case.prefix {
            c.send(f);
        }
        // The valid prefix reaches the backend first, so what follows is judged in order.
        let prefix_len: usize = case.prefix.iter().map(Vec::len).sum();
        assert!(
            b.wait_conn(&path, DEADLINE, |bc| bc.raw.len() >= prefix_len).is_some(),
            "{what}: the valid prefix passes"
        );
        c.send_lossy(&case.bad);
        let (frames, eof) = c.frames_until_eof(DEADLINE);
        let closes: Vec<&Frame> = frames.iter().filter(|f| f.is_close()).collect();
        assert_eq!(closes.len(), 1, "{what}: one Close to the client, got\n{}", describe_all(&frames));
        assert_close_to_client(closes[0], 1002, what);
        assert!(
            frames.last().is_some_and(Frame::is_close),
            "{what}: nothing after the Close:\n{}",
            describe_all(&frames)
        );
        assert!(
            frames.iter().all(|f| f.is_close() || (f.opcode != OP_PING && f.opcode != OP_PONG)),
            "{what}: only echoes of the valid prefix besides the Close:\n{}",
            describe_all(&frames)
        );
        assert!(eof, "{what}: the client connection is closed");
        let bc = b
            .wait_conn(&path, DEADLINE, |bc| bc.closed_at.is_some())
            .unwrap_or_else(|| panic!("{what}: the backend connection is closed: {:?}", b.conn_for(&path)));
        assert!(bc.raw.starts_with(&case.prefix.concat()), "{what}: the prefix passed intact");
        assert!(
            !bc.raw.windows(case.bad.len()).any(|w| w == case.bad.as_slice()),
            "{what}: the bad frame reached the backend:\n{}",
            describe_all(&bc.frames)
        );
        let own: Vec<&Frame> = bc.frames.iter().skip(case.prefix.len()).collect();
        assert!(
            own.len() == 1 && own[0].is_close(),
            "{what}: after the prefix the backend gets only sidecar's Close:\n{}",
            describe_all(&bc.frames)
        );
        assert_close_to_backend(&bc, 1002, what);
    }
}

#[test]
fn rsv1_frames_pass_when_the_101_negotiated_permessage_deflate() {
    let b = FrameBackend::start(Script { extensions: Some("permessage-deflate"), ..Script::ECHO });
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    let mut c =
        FrameClient::connect_with(p.addr(), "/deflate", "Sec-WebSocket-Extensions: permessage-deflate\r\n", None);
    assert!(
        c.response_head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate"),
        "the 101 relays the extension:\n{}",
        c.response_head
    );
    // "Hello" compressed (RFC 7692 §7.2.3.1), as a single frame and as two fragments.
    let sent = [
        encode(true, RSV1, OP_TEXT, Some(MASK), &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        encode(false, RSV1, OP_TEXT, Some(MASK), &[0xf2, 0x48, 0xcd]),
        encode(true, 0, OP_CONT, Some(MASK), &[0xc9, 0xc9, 0x07, 0x00]),
    ];
    for f in &sent {
        c.send(f);
    }
    let got = read_n(&mut c, 3, "the echoes");
    let shape: Vec<(bool, u8, u8)> = got.iter().map(|f| (f.fin, f.rsv, f.opcode)).collect();
    assert_eq!(shape, [(true, RSV1, OP_TEXT), (false, RSV1, OP_TEXT), (true, 0, OP_CONT)], "{}", describe_all(&got));
    assert_eq!(got[0].payload, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let bc = b.conn_for("/deflate").expect("the backend tunnel");
    assert!(
        bc.head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate"),
        "the offer reaches the backend:\n{}",
        bc.head
    );
    assert_eq!(show(&bc.raw), show(&sent.concat()), "the compressed frames reach the backend untouched");
    assert!(bc.closes().is_empty());
}

#[test]
fn frame_headers_split_one_byte_per_write_pass_intact_both_ways() {
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    let mut c = FrameClient::connect(p.addr(), "/split");
    let gap = Duration::from_millis(15);
    let mut sent = Vec::new();
    for (i, len) in [5usize, 300, 70_000].into_iter().enumerate() {
        let payload = noise(len, 40 + i as u64);
        let frame = encode(true, 0, OP_BINARY, Some([0x11, 0x22, i as u8, 0x44]), &payload);
        let header_len = frame.len() - len;
        c.send_dribbled(&frame[..header_len], gap);
        c.send(&frame[header_len..]);
        let echo = c.expect_frame(DEADLINE, &format!("the echo of the {len}-byte frame"));
        assert_eq!(echo.raw, server_frame(true, OP_BINARY, &payload), "the {len}-byte frame crossed intact");
        sent.push(frame);
    }
    // A whole small frame one byte at a time, header and payload.
    let tiny = client_frame(true, OP_TEXT, b"drip");
    c.send_dribbled(&tiny, gap);
    let echo = c.expect_frame(DEADLINE, "the echo of the dripped frame");
    assert_eq!(echo.payload, b"drip");
    sent.push(tiny);
    let bc = b.conn_for("/split").expect("the backend tunnel");
    assert!(bc.raw == sent.concat(), "the backend got the client's bytes exactly");

    // The other way: the backend writes a 16-bit-length header one byte at a time.
    let payload = noise(1000, 77);
    let frame = server_frame(true, OP_BINARY, &payload);
    let mut w = b.writer("/split");
    {
        use std::io::Write;
        for byte in &frame[..4] {
            w.write_all(&[*byte]).expect("backend write");
            std::thread::sleep(gap);
        }
        w.write_all(&frame[4..]).expect("backend write");
    }
    let got = c.expect_frame(DEADLINE, "the backend's dripped frame");
    assert_eq!(got.raw, frame, "the backend's frame crossed intact");
}

#[test]
fn what_the_backend_answered_before_a_framing_violation_reaches_the_client_before_the_1002() {
    // Autobahn 4.1.3: a valid message, a reserved opcode and a Ping in one write. The
    // backend echoes the message; that echo must reach the client before sidecar's
    // Close, as it would without a proxy in between.
    let b = FrameBackend::echo();
    let p = Sidecar::start(&ws_config(b.addr, "", ""));
    for round in 0..5 {
        let mut c = FrameClient::connect(p.addr(), &format!("/order{round}"));
        let mut bytes = client_frame(true, OP_TEXT, b"answer me first");
        bytes.extend(encode(true, 0, 0x5, BAD_KEY, b"reserved"));
        bytes.extend(client_frame(true, OP_PING, b"after"));
        c.send_lossy(&bytes);
        let (frames, eof) = c.frames_until_eof(DEADLINE);
        assert!(eof, "round {round}: the connection is closed");
        assert_eq!(frames.len(), 2, "round {round}: the echo, then the Close:\n{}", describe_all(&frames));
        assert_eq!(
            (frames[0].opcode, frames[0].payload.as_slice()),
            (OP_TEXT, &b"answer me first"[..]),
            "round {round}"
        );
        assert_close_to_client(&frames[1], 1002, "after the echo");
    }
}
