//! Members named by DNS, active health checks and slow start, against the real binary:
//! a DNS server written here (UDP and TCP on 127.0.0.1, answers changed while traffic
//! flows, encoded with hickory-proto) and replicas on distinct loopback addresses
//! (127.0.0.2, 127.0.0.3, …) sharing one port, as pods behind a headless Service do.
//! Each test prints the figures it measured (`cargo test --test it dns:: -- --nocapture`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use serde_json::Value;

use crate::support::backend::{response, ws_echo_reply, Reply};
use crate::support::json;
use crate::support::{
    admin_get, run_binary, wait_until, ws_open, ws_round_trip, Backend, Conn, Sidecar, TempDir, WsClient,
};

// ---------------------------------------------------------------------------------
// A DNS server
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Rec {
    A(Ipv4Addr),
    /// priority, weight, port, target
    Srv(u16, u16, u16, &'static str),
}

#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<Rec>>,
    /// SRV targets whose addresses go into the additional section.
    glue: HashSet<String>,
    /// A UDP answer with more records than this comes back truncated (TC).
    truncate_over: usize,
    ttl: u32,
}

/// An authoritative-looking server for a few names, on 127.0.0.1 (UDP and TCP, one
/// port). Stops answering (its sockets close) on `stop` or Drop.
struct FakeDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    fn start() -> FakeDns {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind DNS (UDP)");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let zone = Arc::new(Mutex::new(Zone { truncate_over: usize::MAX, ttl: 1, ..Zone::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (udp_queries, tcp_queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        udp.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let (z, s, n) = (Arc::clone(&zone), Arc::clone(&stop), Arc::clone(&udp_queries));
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(SeqCst) {
                let Ok((len, peer)) = udp.recv_from(&mut buf) else { continue };
                n.fetch_add(1, SeqCst);
                if let Some(reply) = answer(&z.lock().expect("zone"), &buf[..len], true) {
                    let _ = udp.send_to(&reply, peer);
                }
            }
        });
        let (z, s, n) = (Arc::clone(&zone), Arc::clone(&stop), Arc::clone(&tcp_queries));
        let tcp_thread = std::thread::spawn(move || {
            while !s.load(SeqCst) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if c.read_exact(&mut q).is_err() {
                    continue;
                }
                n.fetch_add(1, SeqCst);
                if let Some(reply) = answer(&z.lock().expect("zone"), &q, false) {
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    let _ = c.write_all(&framed);
                }
            }
        });
        FakeDns { addr, zone, stop, udp_queries, tcp_queries, threads: vec![udp_thread, tcp_thread] }
    }

    fn set(&self, name: &str, records: Vec<Rec>) {
        self.zone.lock().expect("zone").records.insert(name.to_string(), records);
    }

    fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.set(name, ips.iter().map(|&ip| Rec::A(ip)).collect());
    }

    fn stop(&mut self) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The reply to `query`: the zone's records of the asked type, NOERROR with none for a
/// known name without them, NXDOMAIN for an unknown name.
fn answer(zone: &Zone, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries().first()?.clone();
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let mut m = Message::new();
    m.set_id(q.id()).set_message_type(MessageType::Response).set_op_code(OpCode::Query);
    m.set_recursion_desired(true).set_recursion_available(true);
    m.add_query(question.clone());
    let Some(records) = zone.records.get(&name) else {
        m.set_response_code(ResponseCode::NXDomain);
        return m.to_vec().ok();
    };
    let owner = question.name().clone();
    let a = |owner: Name, ip: Ipv4Addr| Record::from_rdata(owner, zone.ttl, RData::A(A(ip)));
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for r in records {
        match (r, question.query_type()) {
            (Rec::A(ip), RecordType::A) => answers.push(a(owner.clone(), *ip)),
            (Rec::Srv(prio, weight, port, target), RecordType::SRV) => {
                let t = Name::from_ascii(format!("{target}.")).ok()?;
                answers.push(Record::from_rdata(
                    owner.clone(),
                    zone.ttl,
                    RData::SRV(SRV::new(*prio, *weight, *port, t.clone())),
                ));
                if zone.glue.contains(*target) {
                    for g in zone.records.get(*target).into_iter().flatten() {
                        if let Rec::A(ip) = g {
                            additionals.push(a(t.clone(), *ip));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if udp && answers.len() > zone.truncate_over {
        m.set_truncated(true);
    } else {
        m.add_answers(answers);
        m.add_additionals(additionals);
    }
    m.to_vec().ok()
}

// ---------------------------------------------------------------------------------
// Replicas on 127.0.0.N, one port
// ---------------------------------------------------------------------------------

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A replica that answers with its own address, echoes WebSockets, and answers
/// `/healthz` with 200, or 500 while `unwell` is set.
struct Replica {
    unwell: Arc<AtomicBool>,
    _backend: Backend,
}

/// Replicas on 127.0.0.`first`…, all on one free port.
fn replicas(first: u8, count: u8) -> (u16, Vec<Replica>) {
    for _ in 0..50 {
        let Ok(probe) = TcpListener::bind((ip(first), 0)) else { continue };
        let port = probe.local_addr().expect("addr").port();
        let mut listeners = vec![probe];
        for n in first + 1..first + count {
            match TcpListener::bind((ip(n), port)) {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() < usize::from(count) {
            continue;
        }
        let started = listeners
            .into_iter()
            .zip(first..)
            .map(|(l, n)| {
                let unwell = Arc::new(AtomicBool::new(false));
                let (me, sick) = (ip(n).to_string(), Arc::clone(&unwell));
                let backend = Backend::start_on_listener(l, move |req| {
                    if req.target == "/healthz" {
                        let status = if sick.load(SeqCst) { 500 } else { 200 };
                        return Reply::Send(response(status, &[], b"health"));
                    }
                    if req.is_websocket_handshake() {
                        return ws_echo_reply(req);
                    }
                    Reply::Send(response(200, &[("Content-Type", "text/plain")], me.as_bytes()))
                });
                Replica { unwell, _backend: backend }
            })
            .collect();
        return (port, started);
    }
    panic!("no port free on 127.0.0.{first}..{}", first + count - 1);
}

// ---------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------

/// Clients sending GETs on kept-alive connections until stopped; every answer is
/// tallied by the replica that gave it, with its time.
struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, log, failures) = (Arc::clone(&stop), Arc::clone(&log), Arc::clone(&failures));
                std::thread::spawn(move || {
                    let end = Instant::now() + Duration::from_secs(60); // bounded whatever happens
                    let mut conn = Conn::open(addr);
                    while !stop.load(SeqCst) && Instant::now() < end {
                        let sent = conn.send("GET /who HTTP/1.1\r\nHost: app\r\n\r\n");
                        match sent.map_err(|e| e.to_string()).and_then(|_| {
                            conn.try_read_response(false, Duration::from_secs(5)).map_err(|e| e.to_string())
                        }) {
                            Ok(r) if r.status == 200 => log.lock().expect("log").push((Instant::now(), r.body_str())),
                            Ok(r) => failures.lock().expect("failures").push(format!("status {}", r.status)),
                            Err(e) => {
                                failures.lock().expect("failures").push(e);
                                conn = Conn::open(addr);
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, log, failures, threads }
    }

    /// Answers per replica so far.
    fn tally(&self) -> BTreeMap<String, usize> {
        let mut t = BTreeMap::new();
        for (_, who) in self.log.lock().expect("log").iter() {
            *t.entry(who.clone()).or_insert(0) += 1;
        }
        t
    }

    fn wait_for(&self, limit: Duration, cond: impl Fn(&BTreeMap<String, usize>) -> bool) -> bool {
        wait_until(limit, || cond(&self.tally()))
    }

    /// Stops the clients; the answers and the failures.
    fn finish(mut self) -> (Vec<(Instant, String)>, Vec<String>) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let log = std::mem::take(&mut *self.log.lock().expect("log"));
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures"));
        (log, failures)
    }
}

fn config(dns: &FakeDns, members: &str, balancer: &str, server: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 2
{server}

[admin]
listen = "127.0.0.1:0"

[resolver]
nameservers = ["{}"]
refresh = "200ms"
timeout = "300ms"
attempts = 1

[[proxy]]
path = "/"
to = "balancer://app/"

[balancer.app]
members = [{members}]
{balancer}
"#,
        dns.addr
    )
}

fn status(p: &Sidecar) -> Value {
    let r = admin_get(p.admin_addr(), "/status");
    json::parse(&r.body_str()).expect("/status is JSON")
}

/// `/status` members of balancer `app` as (the address, or the URL of a member written as an address), status, state.
fn members(p: &Sidecar) -> Vec<(String, String, String)> {
    let s = status(p);
    let b = &s.get("balancers").and_then(Value::as_array).expect("balancers")[0];
    let field = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    b.get("members")
        .and_then(Value::as_array)
        .expect("members")
        .iter()
        .map(|m| {
            let at = match field(m, "address") {
                a if a.is_empty() => field(m, "url"),
                a => a,
            };
            (at, field(m, "status"), field(m, "state"))
        })
        .collect()
}

fn ips_of(range: std::ops::Range<u8>) -> Vec<Ipv4Addr> {
    range.map(ip).collect()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn members_follow_dns_from_3_to_10_to_2_under_load_with_no_failed_request_or_cut_tunnel() {
    let dns = FakeDns::start();
    dns.zone.lock().expect("zone").truncate_over = 4; // ten addresses only fit over TCP
    let (port, _replicas) = replicas(2, 10);
    dns.set_a("app.test", &ips_of(2..5));
    let p = Sidecar::start(&config(&dns, &format!("\"http://app.test:{port}\""), "", "drain_timeout = \"30s\""));
    // WebSockets opened on the first three, kept open through every change.
    let mut tunnels: Vec<WsClient> = (0..3).map(|_| ws_open(p.addr(), "/chat")).collect();
    let load = Load::start(p.addr(), 4);
    let three = load.wait_for(Duration::from_secs(5), |t| t.len() == 3);
    assert!(three, "3 members serve: {:?}", load.tally());

    let scaled = Instant::now();
    dns.set_a("app.test", &ips_of(2..12));
    let ten = load.wait_for(Duration::from_secs(5), |t| t.len() == 10);
    assert!(ten, "10 members serve: {:?}", load.tally());
    let scale_out = scaled.elapsed();
    for (i, t) in tunnels.iter_mut().enumerate() {
        ws_round_trip(t, &format!("tunnel {i} after the scale-out"));
    }

    let shrunk = Instant::now();
    dns.set_a("app.test", &ips_of(2..4));
    assert!(p.wait_for_log("; left: ", Duration::from_secs(5)), "the scale-in was seen");
    let scale_in = shrunk.elapsed();
    std::thread::sleep(Duration::from_millis(300)); // requests already in flight land
    let before = load.tally();
    std::thread::sleep(Duration::from_secs(1));
    // The tunnel on a member that left gets a Close 1012 at a random moment within
    // drain_spread (15 s here); until then it echoes. Either way it is never cut.
    let mut closed = 0;
    for (i, t) in tunnels.iter_mut().enumerate() {
        if !echo_or_close_1012(t, &format!("tunnel {i} after the scale-in")) {
            closed += 1;
        }
    }
    assert!(closed <= 1, "only the removed member's tunnel is closed, {closed} were");
    let (log, failures) = load.finish();
    let after = {
        let mut t = BTreeMap::new();
        for (_, who) in &log {
            *t.entry(who.clone()).or_insert(0usize) += 1;
        }
        t
    };
    let gone: Vec<String> = ips_of(4..12).iter().map(ToString::to_string).collect();
    for g in &gone {
        assert_eq!(before.get(g), after.get(g), "{g} got new requests after it left DNS: {before:?} → {after:?}");
    }
    let remaining: usize = ["127.0.0.2", "127.0.0.3"].iter().map(|k| after[*k] - before[*k]).sum();
    assert!(remaining > 0, "the two remaining members serve");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // The removed members show as removed; 127.0.0.4 keeps its tunnel (the three
    // tunnels went one to each of the first three members: bybusyness).
    let m = members(&p);
    assert_eq!(m.iter().filter(|(_, s, _)| s == "normal").count(), 2, "{m:?}");
    let held_by_removed = || {
        let s = status(&p);
        s.get("balancers").and_then(Value::as_array).expect("balancers")[0]
            .get("members")
            .and_then(Value::as_array)
            .expect("members")
            .iter()
            .find(|m| m.get("address").and_then(Value::as_str) == Some(&format!("127.0.0.4:{port}")))
            .map(|m| {
                (m.get("status").and_then(Value::as_str).map(String::from), m.get("tunnels").and_then(Value::as_f64))
            })
    };
    // A tunnel that has its Close is counted until its close handshake ends; one that
    // echoed above may get its Close before the status is read, and must then have it.
    let mut held = held_by_removed();
    let settled = Instant::now() + Duration::from_secs(3);
    while closed == 1 && held.as_ref().and_then(|h| h.1) != Some(0.0) && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(50));
        held = held_by_removed();
    }
    if closed == 0 && held.as_ref().and_then(|h| h.1) == Some(0.0) {
        closed = tunnels
            .iter_mut()
            .enumerate()
            .map(|(i, t)| echo_or_close_1012(t, &format!("tunnel {i} after its member's count fell")))
            .filter(|echoed| !echoed)
            .count();
        assert_eq!(closed, 1, "the removed member's tunnel ended with a Close 1012");
    }
    let want = Some((Some("removed".to_string()), Some(if closed == 0 { 1.0 } else { 0.0 })));
    assert_eq!(held, want, "a removed member's tunnel stays until its Close");
    assert!(dns.tcp_queries.load(SeqCst) > 0, "the truncated answer was asked again over TCP");
    println!(
        "3→10→2: {} requests, 0 failed; scale-out seen by every member in {scale_out:?}, scale-in applied in {scale_in:?}; \
         {} DNS queries over UDP, {} over TCP; 3 tunnels never cut, {closed} of them closed with 1012 by the end",
        log.len(),
        dns.udp_queries.load(SeqCst),
        dns.tcp_queries.load(SeqCst)
    );
    for t in &mut tunnels {
        let _ = crate::support::block_within(crate::support::DEADLINE, "close", t.close(None));
    }
}

/// Sends `text`: `true` when it comes back, `false` when sidecar's Close 1012 (the
/// member left) comes instead; anything else fails the test.
fn echo_or_close_1012(ws: &mut WsClient, text: &str) -> bool {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    crate::support::block_within(crate::support::DEADLINE, "an echo or a Close", async {
        if ws.send(Message::text(text)).await.is_err() {
            // Closed already: the Close is next in the stream.
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == text => return true,
                Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == 1012 => {
                    // Reading on sends our Close in reply (the client's half of the
                    // closing handshake); sidecar then closes the connection.
                    while let Some(Ok(_)) = ws.next().await {}
                    return false;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("{text}: expected its echo or a Close 1012, got {other:?}"),
            }
        }
    })
}

#[test]
fn a_tunnel_on_a_member_that_left_dns_gets_a_close_1012_within_drain_spread() {
    let dns = FakeDns::start();
    let (port, _replicas) = replicas(2, 2);
    dns.set_a("app.test", &[ip(2)]);
    let p = Sidecar::start(&config(&dns, &format!("\"http://app.test:{port}\""), "", "drain_timeout = \"1s\""));
    let mut tunnel = ws_open(p.addr(), "/chat");
    ws_round_trip(&mut tunnel, "before");
    dns.set_a("app.test", &[ip(3)]);
    assert!(p.wait_for_log("; left: ", Duration::from_secs(5)));
    let left = Instant::now();
    // drain_spread is half of drain_timeout: the Close comes within 0.5 s of the removal.
    assert_eq!(crate::support::ws_next_close_code(&mut tunnel, Duration::from_secs(3)), Some(1012), "Service Restart");
    let closed_after = left.elapsed();
    assert!(closed_after < Duration::from_millis(900), "within drain_spread: {closed_after:?}");
    assert!(
        crate::support::ws_wait_closed(&mut tunnel, Duration::from_secs(3)),
        "the connection closes after the handshake"
    );
    assert_eq!(p.get("/who").body_str(), "127.0.0.3");
    println!("tunnel on a removed member got its Close 1012 {closed_after:?} after the removal was logged");
}

#[test]
fn srv_weights_are_respected_within_10_percent() {
    let dns = FakeDns::start();
    let (port, _replicas) = replicas(2, 3);
    dns.set(
        "_http._tcp.app.test",
        vec![Rec::Srv(10, 1, port, "a.test"), Rec::Srv(10, 2, port, "b.test"), Rec::Srv(10, 3, port, "c.test")],
    );
    dns.set_a("a.test", &[ip(2)]);
    dns.set_a("b.test", &[ip(3)]);
    dns.set_a("c.test", &[ip(4)]); // not in the additional section: looked up
    dns.zone.lock().expect("zone").glue = ["a.test", "b.test"].map(String::from).into();
    // byrequests: shares follow weights exactly, so what is measured is the mapping of
    // SRV weights to loadfactor, not the randomness of a tie break.
    let p = Sidecar::start(&config(&dns, "\"srv+http://_http._tcp.app.test\"", "method = \"byrequests\"", ""));
    let mut c = p.conn();
    let total = 1200;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..total {
        c.send("GET /who HTTP/1.1\r\nHost: app\r\n\r\n").expect("send");
        let r = c.read_response();
        assert_eq!(r.status, 200);
        *tally.entry(r.body_str()).or_insert(0) += 1;
    }
    let mut shares = Vec::new();
    for (who, weight) in [("127.0.0.2", 1.0), ("127.0.0.3", 2.0), ("127.0.0.4", 3.0)] {
        let want = f64::from(total) * weight / 6.0;
        let got = tally.get(who).copied().unwrap_or(0) as f64;
        let off = (got - want).abs() / want;
        assert!(off <= 0.10, "{who} weight {weight}: {got} of {total}, want {want} ± 10 %: {tally:?}");
        shares.push(format!("{who} w{weight}: {got} (want {want}, {:.1} % off)", off * 100.0));
    }
    let m = members(&p);
    assert_eq!(m.len(), 3, "{m:?}");
    println!("SRV weights 1:2:3 over {total} requests (byrequests): {}", shares.join("; "));
}

#[test]
fn traffic_continues_on_the_last_set_when_the_dns_server_stops() {
    let mut dns = FakeDns::start();
    let (port, _replicas) = replicas(2, 3);
    dns.set_a("app.test", &ips_of(2..5));
    let p = Sidecar::start(&config(&dns, &format!("\"http://app.test:{port}\""), "", ""));
    let load = Load::start(p.addr(), 2);
    assert!(load.wait_for(Duration::from_secs(5), |t| t.len() == 3), "{:?}", load.tally());
    dns.stop();
    assert!(p.wait_for_log("lookup failed", Duration::from_secs(5)), "the failure is logged");
    let before = load.tally();
    std::thread::sleep(Duration::from_millis(1500)); // several refresh intervals
    let (log, failures) = load.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let after: BTreeMap<String, usize> = log.iter().fold(BTreeMap::new(), |mut t, (_, w)| {
        *t.entry(w.clone()).or_insert(0) += 1;
        t
    });
    for who in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        assert!(after[who] > before[who], "{who} still serves with the DNS server gone: {before:?} → {after:?}");
    }
    let logged = p.logs().iter().filter(|l| l.contains("lookup failed")).count();
    assert_eq!(logged, 1, "the error is logged once: {:?}", p.logs());
    let s = status(&p);
    let name = &s.get("balancers").and_then(Value::as_array).expect("balancers")[0]
        .get("names")
        .and_then(Value::as_array)
        .expect("names")[0];
    assert_eq!(name.get("name").and_then(Value::as_str), Some("app.test"));
    assert!(name.get("error").and_then(Value::as_str).is_some_and(|e| !e.is_empty()), "/status shows the error");
    assert_eq!(name.get("addresses").and_then(Value::as_array).map(Vec::len), Some(3));
    let metrics = admin_get(p.admin_addr(), "/metrics").body_str();
    assert!(metrics.contains("sidecar_dns_failing{balancer=\"app\",name=\"app.test\"} 1"), "{metrics}");
    println!(
        "DNS stopped: {} requests after, 0 failed, all 3 members kept; error logged once, shown in /status",
        log.len() - before.values().sum::<usize>()
    );
}

#[test]
fn active_checks_take_a_failing_member_out_within_fall_intervals_and_back_within_rise() {
    let (port, replicas) = replicas(2, 2);
    let (interval, rise, fall) = (Duration::from_millis(200), 2u32, 3u32);
    let p = Sidecar::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[proxy]]
path = "/"
to = "balancer://app/"

[balancer.app]
members = ["http://127.0.0.2:{port}", "http://127.0.0.3:{port}"]

[balancer.app.health]
path = "/healthz"
interval = "200ms"
timeout = "150ms"
rise = {rise}
fall = {fall}
expect = "200-399"
"#
    ));
    let state_of =
        |who: &str| members(&p).into_iter().find(|(a, _, _)| a.contains(who)).map(|(_, _, s)| s).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(2), || state_of("127.0.0.3") == "healthy"));
    std::thread::sleep(interval * 2); // a few good checks first
    let sick = Instant::now();
    replicas[1].unwell.store(true, SeqCst);
    assert!(wait_until(Duration::from_secs(5), || state_of("127.0.0.3") == "failed"), "taken out");
    let out_after = sick.elapsed();
    for _ in 0..30 {
        assert_eq!(p.get("/who").body_str(), "127.0.0.2", "no request goes to the member the checks took out");
    }
    let well = Instant::now();
    replicas[1].unwell.store(false, SeqCst);
    assert!(wait_until(Duration::from_secs(5), || state_of("127.0.0.3") == "healthy"), "back");
    let back_after = well.elapsed();
    let seen: HashSet<String> = (0..20).map(|_| p.get("/who").body_str()).collect();
    assert!(seen.contains("127.0.0.3"), "it takes traffic again: {seen:?}");
    // Within fall × interval (and rise × interval), plus one interval for where in its
    // cycle the change landed and the time to see it in /status.
    assert!(out_after <= interval * (fall + 1), "out after {out_after:?}, fall × interval = {:?}", interval * fall);
    assert!(back_after <= interval * (rise + 1), "back after {back_after:?}, rise × interval = {:?}", interval * rise);
    assert!(p.logs().iter().any(|l| l.contains("health check answered 500")), "{:?}", p.logs());
    println!(
        "active checks (interval 200ms, fall 3, rise 2): out after {out_after:?} (fall × interval = 600ms), back after {back_after:?} (rise × interval = 400ms)"
    );
}

#[test]
fn slow_start_ramps_up_the_share_of_a_new_member() {
    let dns = FakeDns::start();
    let (port, _replicas) = replicas(2, 4);
    dns.set_a("app.test", &ips_of(2..5));
    let window = 3.0;
    let p = Sidecar::start(&config(&dns, &format!("\"http://app.test:{port}\""), "slow_start = \"3s\"", ""));
    let load = Load::start(p.addr(), 2);
    assert!(load.wait_for(Duration::from_secs(5), |t| t.len() == 3), "{:?}", load.tally());
    dns.set_a("app.test", &ips_of(2..6));
    assert!(load.wait_for(Duration::from_secs(5), |t| t.contains_key("127.0.0.5")), "the new member joins");
    std::thread::sleep(Duration::from_secs_f64(window + 1.2));
    let (log, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    let joined = log.iter().find(|(_, w)| w == "127.0.0.5").map(|(t, _)| *t).expect("a first answer");
    // The new member's share of each second since its first answer; a full share is 25 %.
    let shares: Vec<f64> = (0..4)
        .map(|s| {
            let from = joined + Duration::from_secs(s);
            let to = from + Duration::from_secs(1);
            let in_window: Vec<&String> = log.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, w)| w).collect();
            let new = in_window.iter().filter(|w| w.as_str() == "127.0.0.5").count();
            new as f64 / in_window.len().max(1) as f64
        })
        .collect();
    let shown: Vec<String> = shares.iter().map(|s| format!("{:.1} %", s * 100.0)).collect();
    assert!(shares[0] < 0.125, "first second: at most half its 25 % share: {shown:?}");
    assert!(shares[0] < shares[2], "the share grows: {shown:?}");
    assert!(shares[3] > 0.18, "after the window it has its full share: {shown:?}");
    println!("slow_start 3s, 4th member's share per second since it joined (full share 25 %): {}", shown.join(", "));
}

#[test]
fn check_resolves_names_once_and_warns_about_those_that_do_not_resolve() {
    let dns = FakeDns::start();
    dns.set_a("app.test", &[ip(2), ip(3)]);
    let dir = TempDir::new();
    let toml = config(&dns, "\"http://app.test:3000\", \"http://nowhere.test:3000\"", "", "");
    dir.write("sidecar.toml", &toml);
    let ran = run_binary(dir.path(), &["check", "--config", "sidecar.toml"]);
    assert_eq!(ran.code, Some(0), "a name that does not resolve is a warning: {}", ran.stderr);
    assert!(ran.stdout.contains("A/AAAA: 127.0.0.2:3000 127.0.0.3:3000"), "{}", ran.stdout);
    assert!(ran.stderr.contains("warning: balancer.app: nowhere.test (A/AAAA) does not resolve now"), "{}", ran.stderr);
}

#[test]
fn a_reload_keeps_the_answer_and_the_health_of_addresses_that_stay() {
    let dns = FakeDns::start();
    let (port, replicas) = replicas(2, 2);
    dns.set_a("app.test", &ips_of(2..4));
    let health = "[balancer.app.health]\npath = \"/healthz\"\ninterval = \"200ms\"\nfall = 2";
    let entry = format!("\"http://app.test:{port}\"");
    let p = Sidecar::start(&config(&dns, &entry, health, ""));
    replicas[1].unwell.store(true, SeqCst);
    let state_of = |who: &str| members_of(&p, who);
    assert!(wait_until(Duration::from_secs(5), || state_of("127.0.0.3") == "failed"), "{:?}", members(&p));
    // A changed definition (another method): a new balancer that takes over the old one's state.
    p.rewrite_config(&config(&dns, &entry, &format!("method = \"byrequests\"\n{health}"), ""));
    p.signal("HUP");
    let method = || status(&p)["balancers"][0]["method"].as_str().map(String::from);
    assert!(wait_until(Duration::from_secs(5), || method().as_deref() == Some("byrequests")), "reloaded");
    assert_eq!(state_of("127.0.0.3"), "failed", "the dead member stays out: {:?}", members(&p));
    assert_eq!(state_of("127.0.0.2"), "healthy");
    for _ in 0..20 {
        let r = p.get("/who");
        assert_eq!((r.status, r.body_str().as_str()), (200, "127.0.0.2"), "no gap, no request to the dead member");
    }
}

/// The state of the member at `who` in `/status`.
fn members_of(p: &Sidecar, who: &str) -> String {
    members(p).into_iter().find(|(a, _, _)| a.contains(who)).map(|(_, _, s)| s).unwrap_or_default()
}
