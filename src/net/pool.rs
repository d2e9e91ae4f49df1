//! Idle keep-alive connections to backends, per worker thread (no lock: the worker's
//! executor is single-threaded), keyed by transport + host + port (+ the address a
//! DNS-discovered member is pinned to), newest first.
//! A connection is handed out only if it is younger than the idle timeout and a
//! non-blocking peek shows the backend has neither closed it nor sent unasked bytes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stream::Conn;
use crate::target::Url;

/// Idle connections kept per backend; beyond this the oldest is closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Slot {
    tls: bool,
    host: String,
    port: u16,
    addr: Option<SocketAddr>,
    idle: Vec<Idle>,
}

impl Slot {
    fn is_for(&self, url: &Url) -> bool {
        self.tls == url.scheme.is_tls() && self.port == url.port && self.host == url.host && self.addr == url.addr
    }
}

pub struct Pool {
    slots: RefCell<Vec<Slot>>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self { slots: RefCell::new(Vec::new()), idle_timeout }
    }

    /// A live idle connection to `url`'s backend, if there is one.
    pub fn take(&self, url: &Url, now: Instant) -> Option<Conn> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.iter_mut().find(|s| s.is_for(url))?;
        while let Some(idle) = slot.idle.pop() {
            if now.duration_since(idle.since) < self.idle_timeout && idle.conn.stream.is_idle_and_open() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn put(&self, url: &Url, mut conn: Conn, now: Instant) {
        if !conn.buffered().is_empty() {
            return; // bytes after a complete response: never reuse (docs/security.md, B6)
        }
        conn.shrink();
        let mut slots = self.slots.borrow_mut();
        let index = match slots.iter().position(|s| s.is_for(url)) {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    tls: url.scheme.is_tls(),
                    host: url.host.clone(),
                    port: url.port,
                    addr: url.addr,
                    idle: Vec::new(),
                });
                slots.len() - 1
            }
        };
        let idle = &mut slots[index].idle;
        if idle.len() == MAX_IDLE_PER_BACKEND {
            idle.remove(0);
        }
        idle.push(Idle { conn, since: now });
    }

    /// Closes connections idle past the timeout.
    pub fn prune(&self, now: Instant) {
        let mut slots = self.slots.borrow_mut();
        for slot in slots.iter_mut() {
            slot.idle.retain(|i| now.duration_since(i.since) < self.idle_timeout);
        }
        // Members come and go with DNS: forget backends with nothing pooled.
        slots.retain(|s| !s.idle.is_empty());
    }
}
