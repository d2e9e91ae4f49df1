//! Idle keep-alive connections to backends, per worker thread (no lock: the worker's
//! executor is single-threaded), keyed by transport + host + port (+ the address a
//! DNS-discovered member is pinned to), newest first.
//! A connection is handed out only if it is younger than the idle timeout and a
//! non-blocking peek shows the backend has neither closed it nor sent unasked bytes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::stream::Conn;
use crate::target::Url;

/// Idle connections kept per backend; beyond this the oldest is closed.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// Idle connections in every worker's pool (`sidecar_pool_idle_connections`).
static IDLE: AtomicI64 = AtomicI64::new(0);

/// Idle backend connections pooled by all workers.
pub fn idle_connections() -> i64 {
    IDLE.load(Relaxed)
}

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
            IDLE.fetch_sub(1, Relaxed);
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
            IDLE.fetch_sub(1, Relaxed);
        }
        idle.push(Idle { conn, since: now });
        IDLE.fetch_add(1, Relaxed);
    }

    /// Closes connections idle past the timeout.
    pub fn prune(&self, now: Instant) {
        let mut slots = self.slots.borrow_mut();
        for slot in slots.iter_mut() {
            let before = slot.idle.len();
            slot.idle.retain(|i| now.duration_since(i.since) < self.idle_timeout);
            IDLE.fetch_sub((before - slot.idle.len()) as i64, Relaxed);
            // A burst's worth of room is given back once the burst is over.
            if slot.idle.capacity() > 2 * slot.idle.len() {
                slot.idle.shrink_to_fit();
            }
        }
        // Members come and go with DNS: forget backends with nothing pooled.
        slots.retain(|s| !s.idle.is_empty());
        if slots.is_empty() {
            *slots = Vec::new();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let pooled: usize = self.slots.get_mut().iter().map(|s| s.idle.len()).sum();
        IDLE.fetch_sub(pooled as i64, Relaxed);
    }
}
