//! `method = "byhash"` through the real binary (docs/configuration.md, "Hash affinity";
//! README, "socket.io and engine.io"): one key, one replica, for plain requests and
//! WebSocket upgrades alike; a member removed by a reload takes only its own keys
//! along; and the engine.io recipes keep each session on the replica that holds it,
//! where hashing the `sid` alone does not. Clients that need distinct addresses
//! connect from 127.0.0.2, 127.0.0.3, … (all of 127.0.0.0/8 is loopback).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{balanced, urls};
use crate::support::backend::{self, response, switching_protocols, Backend, Reply};
use crate::support::*;

/// `hash` lines for `[balancer.app]`.
fn byhash(hash: &str, fallback: Option<&str>) -> String {
    let fallback = fallback.map(|f| format!("\nhash_fallback = \"{f}\"")).unwrap_or_default();
    format!("method = \"byhash\"\nhash = \"{hash}\"{fallback}")
}

/// A TCP connection to `to` from the loopback address `from`.
fn tcp_from(from: IpAddr, to: SocketAddr) -> async_net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket.connect_timeout(&to.into(), DEADLINE).unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    socket.set_nonblocking(true).expect("non-blocking");
    let tcp = async_net::TcpStream::try_from(std::net::TcpStream::from(socket)).expect("an async stream");
    let _ = tcp.set_nodelay(true);
    tcp
}

/// `GET target` on a fresh connection from `from`.
fn get_from(p: &Sidecar, from: IpAddr, target: &str) -> Response {
    let mut c = Conn::from_io(Box::new(tcp_from(from, p.addr())));
    c.send(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send");
    c.try_read_response(false, DEADLINE).unwrap_or_else(|e| panic!("GET {target} from {from}: {e}"))
}

/// A WebSocket handshake to `target` from `from`; the handshake error, if any.
fn ws_from(p: &Sidecar, from: IpAddr, target: &str) -> Result<WsClient, String> {
    let addr = p.addr();
    let req = ws_handshake_request(addr, target)?;
    let tcp = tcp_from(from, addr);
    block_within(DEADLINE, "WebSocket handshake", async_tungstenite::client_async(req, tcp))
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake: {e}"))
}

fn loopback(i: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, i])
}

/// Which backend received requests carrying `needle` in their target, by index.
fn receivers(backends: &[&Backend], needle: &str) -> BTreeSet<usize> {
    (0..backends.len()).filter(|&i| backends[i].requests().iter().any(|r| r.target.contains(needle))).collect()
}

#[test]
fn byhash_sends_every_request_of_one_sid_to_one_replica_websocket_upgrade_included() {
    let (a, b, c) = (backend::ws_echo(), backend::ws_echo(), backend::ws_echo());
    let p = Sidecar::start(&balanced(&urls(&[a.addr, b.addr, c.addr]), &byhash("query:sid", None)));
    let sids: Vec<String> = (0..24).map(|i| format!("s{i}x")).collect();
    for sid in &sids {
        for _ in 0..2 {
            let r = p.get(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
            assert_eq!(r.status, 200, "{sid}: {}", r.head_str());
        }
        let mut ws = ws_open(p.addr(), &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"));
        ws_round_trip(&mut ws, sid);
    }
    let backends = [&a, &b, &c];
    let mut used = BTreeSet::new();
    for sid in &sids {
        let got = receivers(&backends, &format!("sid={sid}"));
        assert_eq!(got.len(), 1, "{sid} reached replicas {got:?}");
        let i = *got.first().expect("one replica");
        let of_sid: Vec<_> =
            backends[i].requests().into_iter().filter(|r| r.target.ends_with(&format!("sid={sid}"))).collect();
        assert_eq!(of_sid.len(), 3, "{sid}: two polls and the upgrade on replica {i}");
        assert_eq!(of_sid.iter().filter(|r| r.is_websocket_handshake()).count(), 1, "{sid}: the upgrade");
        used.insert(i);
    }
    assert!(used.len() >= 2, "24 sids spread over more than one replica: {used:?}");
    let status = json::parse(&admin_get(p.admin_addr(), "/status").body_str()).expect("/status is JSON");
    let app = &status["balancers"][0];
    let shown = [&app["method"], &app["hash"], &app["hash_fallback"]].map(|v| v.as_str().unwrap_or("-").to_string());
    assert_eq!(shown, ["byhash", "query:sid", "bybusyness"], "/status: {app}");
}

#[test]
fn removing_a_member_by_reload_keeps_every_other_members_keys_in_place() {
    let named = |name: &'static str| Backend::start(move |_| Reply::Send(response(200, &[], name.as_bytes())));
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let config = |addrs: &[SocketAddr]| balanced(&urls(addrs), &byhash("query:sid", None));
    let p = Sidecar::start(&config(&[a.addr, b.addr, c.addr]));
    let owners = |p: &Sidecar| -> Vec<String> {
        let mut conn = p.conn();
        (0..90)
            .map(|i| {
                conn.send(format!("GET /x?sid=key-{i} HTTP/1.1\r\nHost: a\r\n\r\n")).expect("send");
                let r = conn.read_response();
                assert_eq!(r.status, 200, "key-{i}: {}", r.head_str());
                r.body_str()
            })
            .collect()
    };
    let before = owners(&p);
    assert_eq!(owners(&p), before, "the same keys reach the same replicas");
    assert!(before.iter().any(|o| o == "c"), "c owns some of 90 keys: {before:?}");
    p.rewrite_config(&config(&[a.addr, b.addr]));
    p.signal("HUP");
    assert!(p.wait_for_log("reloaded", DEADLINE), "{:?}", p.logs());
    let after = owners(&p);
    for (i, (was, now)) in before.iter().zip(&after).enumerate() {
        if was == "c" {
            assert!(now == "a" || now == "b", "key-{i}: was on the removed c, now on {now}");
        } else {
            assert_eq!(now, was, "key-{i} moved from {was} though {was} stayed");
        }
    }
}

/// A replica of an engine.io server, as far as stickiness goes: a polling handshake
/// (no `sid`) opens a session in this replica's memory and answers its id; a request
/// with a `sid` it did not issue is `400 Session ID unknown`, as engine.io answers;
/// one with its own `sid` gets `200` with the replica's name, or the WebSocket upgrade.
fn engine_io(name: &'static str) -> Backend {
    let sessions = Arc::new(Mutex::new(HashSet::<String>::new()));
    let issued = AtomicUsize::new(0);
    Backend::start(move |req| {
        let query = req.target.split_once('?').map_or("", |(_, q)| q);
        let sid = query.split('&').find_map(|p| p.strip_prefix("sid="));
        let mut sessions = sessions.lock().expect("sessions");
        match sid {
            None => {
                let sid = format!("{name}{}", issued.fetch_add(1, Ordering::SeqCst));
                sessions.insert(sid.clone());
                Reply::Send(response(
                    200,
                    &[],
                    format!("0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"]}}").as_bytes(),
                ))
            }
            Some(sid) if !sessions.contains(sid) => {
                Reply::Send(response(400, &[], b"{\"code\":1,\"message\":\"Session ID unknown\"}"))
            }
            Some(_) if req.is_websocket_handshake() => Reply::WebSocketEcho(switching_protocols(req)),
            Some(_) => Reply::Send(response(200, &[], name.as_bytes())),
        }
    })
}

/// The sid in an engine.io handshake answer.
fn sid_of(r: &Response) -> String {
    let body = r.body_str();
    let rest = body.split("\"sid\":\"").nth(1).unwrap_or_else(|| panic!("no sid in {body:?}"));
    rest.split('"').next().unwrap_or_default().to_string()
}

/// One engine.io session as a browser runs it: the polling handshake, two polls with
/// its sid, then the WebSocket upgrade with its sid, all from `from`, each request on a
/// new connection; `extra` is appended to every query (a client-chosen key). The
/// replica that answered the polls, or the first failure.
fn session(p: &Sidecar, from: IpAddr, extra: &str) -> Result<String, String> {
    let handshake = get_from(p, from, &format!("/socket.io/?EIO=4&transport=polling{extra}"));
    if handshake.status != 200 {
        return Err(format!("handshake: {}", handshake.head_str()));
    }
    let sid = sid_of(&handshake);
    let mut replica = String::new();
    for i in 0..2 {
        let poll = get_from(p, from, &format!("/socket.io/?EIO=4&transport=polling&sid={sid}{extra}"));
        if poll.status != 200 {
            return Err(format!("poll {i} of {sid}: {} {}", poll.status, poll.body_str()));
        }
        replica = poll.body_str();
    }
    let mut ws = ws_from(p, from, &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}{extra}"))
        .map_err(|e| format!("upgrade of {sid}: {e}"))?;
    ws_round_trip(&mut ws, "2probe");
    if !sid.starts_with(&replica) {
        return Err(format!("{sid} was issued by another replica than {replica}"));
    }
    Ok(replica)
}

fn engine_io_cluster() -> [Backend; 3] {
    [engine_io("a"), engine_io("b"), engine_io("c")]
}

#[test]
fn engine_io_recipe_hash_client_ip_keeps_handshake_polls_and_upgrade_on_one_replica() {
    let replicas = engine_io_cluster();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let p = Sidecar::start(&balanced(&urls(&addrs), &byhash("client_ip", None)));
    let mut spread = BTreeMap::new();
    for i in 2..18 {
        let from = loopback(i);
        match session(&p, from, "") {
            Ok(replica) => *spread.entry(replica).or_insert(0) += 1,
            Err(e) => panic!("session from {from}: {e}"),
        }
    }
    assert!(spread.len() >= 2, "16 client addresses spread over more than one replica: {spread:?}");
}

#[test]
fn engine_io_recipe_client_chosen_key_keeps_sessions_whole_from_one_address() {
    // Clients behind one address (a NAT, a corporate proxy): each chooses its own key
    // (`io({ query: { affinity } })`), sent from the handshake on.
    let replicas = engine_io_cluster();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let p = Sidecar::start(&balanced(&urls(&addrs), &byhash("query:affinity", None)));
    let mut spread = BTreeMap::new();
    for i in 0..16 {
        match session(&p, loopback(1), &format!("&affinity=client-{i}")) {
            Ok(replica) => *spread.entry(replica).or_insert(0) += 1,
            Err(e) => panic!("client {i}: {e}"),
        }
    }
    assert!(spread.len() >= 2, "16 client keys spread over more than one replica: {spread:?}");
}

#[test]
fn hashing_the_engine_io_sid_alone_loses_sessions_whose_sid_hashes_elsewhere() {
    // What the README warns about: the handshake has no sid, so the fallback picks the
    // replica that creates the session; the sid then hashes to any replica.
    let replicas = engine_io_cluster();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let p = Sidecar::start(&balanced(&urls(&addrs), &byhash("query:sid", Some("byrequests"))));
    let lost = (0..24).filter(|_| session(&p, loopback(1), "").is_err()).count();
    assert!(lost > 0, "with 3 replicas about 2 in 3 of 24 sessions hash away from their replica; none did");
}
