//! One worker thread's state, read by every connection task on that thread: the
//! config in force, the backend pool, the open-connection count, the drain signal and
//! what its requests reuse from one to the next.
//! Connection tasks share it through `Rc` on the worker's single-threaded executor, so
//! its cells need no lock. What all threads share (metrics, balancers inside the
//! config) sits behind `Shared`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::pool::Pool;
use crate::proxy::Scratch;
use crate::rt::{FreeList, FuturePool, Signal, Wait};
use crate::shared::Shared;

use super::after_burst::AfterBurst;

/// Request boxes and buffer sets kept for reuse, each: as many as requests run at once
/// on a busy worker. A box is about 4 KiB, a buffer set 1–2 KiB (at most 33 KiB, after
/// a body relay): 256 KiB of boxes and usually less of buffers, freed when the worker
/// is quiet.
const KEPT_PER_REQUEST_STORE: usize = 64;

pub(crate) struct Worker {
    config: RefCell<Arc<Config>>,
    shared: Arc<Shared>,
    pool: Pool,
    open_connections: Cell<usize>,
    /// WebSocket tunnels open on this worker.
    tunnels: Cell<usize>,
    /// On drain: (tunnels open when it began, Close moments handed out so far).
    drain_closes: Cell<Option<(usize, usize)>>,
    /// Fired once SIGTERM/SIGINT arrived: no new requests on kept-alive connections,
    /// and every wait that should end then listens on it.
    drain: Rc<Signal>,
    /// The boxes request futures run in (`proxy::serve`).
    requests: FuturePool,
    /// The buffers requests parse and write into.
    scratch: FreeList<Box<Scratch>>,
    /// When to give the allocator's free pages back to the system.
    after_burst: RefCell<AfterBurst>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Self {
        let config = shared.config();
        let pool = Pool::new(config.timeouts.pool_idle);
        Self {
            config: RefCell::new(config),
            shared,
            pool,
            open_connections: Cell::new(0),
            tunnels: Cell::new(0),
            drain_closes: Cell::new(None),
            drain: Rc::default(),
            requests: FuturePool::new(KEPT_PER_REQUEST_STORE),
            scratch: FreeList::new(KEPT_PER_REQUEST_STORE),
            after_burst: RefCell::new(AfterBurst::default()),
        }
    }

    /// Where requests run, each in a box reused from an earlier one.
    pub fn requests(&self) -> &FuturePool {
        &self.requests
    }

    /// Buffers for a new request: an earlier request's, or new ones.
    pub fn take_scratch(&self) -> Box<Scratch> {
        self.scratch.take().unwrap_or_default()
    }

    /// Keeps a finished request's buffers for the next one, unless they grew unusually
    /// large.
    pub fn give_scratch(&self, scratch: Box<Scratch>) {
        if scratch.worth_keeping() {
            self.scratch.give(scratch);
        }
    }

    /// Frees what went unused since the last call: request boxes and buffers, and the
    /// drain signal's waiter slots a burst of connections left behind.
    pub fn trim(&self) {
        self.requests.trim();
        self.scratch.trim();
        self.drain.compact();
    }

    /// At a housekeeping round: whether a burst of connections has just closed, so
    /// that the allocator's free pages should go back to the system.
    pub fn burst_over(&self) -> bool {
        self.after_burst.borrow_mut().due(self.open_connections.get())
    }

    /// The config in force now. A request takes it once and keeps it to its end.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.borrow())
    }

    /// SIGHUP: new connections and requests use `config` from now on.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.borrow_mut() = config;
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_fired()
    }

    /// Completes when draining starts. Waiting allocates nothing (it is on every
    /// keep-alive wait).
    pub fn shutdown(&self) -> Wait<&Signal> {
        self.drain.wait()
    }

    /// `shutdown` for a task that outlives its borrow of the worker.
    pub fn shutdown_owned(&self) -> Wait<Rc<Signal>> {
        self.drain.wait_owned()
    }

    /// Starts draining: every `shutdown` wait completes.
    pub fn start_draining(&self) {
        self.drain.fire();
    }

    pub fn tunnel_opened(&self) {
        self.tunnels.set(self.tunnels.get() + 1);
    }

    pub fn tunnel_closed(&self) {
        self.tunnels.set(self.tunnels.get().saturating_sub(1));
    }

    /// On drain, when the next tunnel's Close goes out, counted from now: the k-th of
    /// the n tunnels open when draining began gets k/n of `spread`, so clients come
    /// back evenly over the window rather than all at once.
    pub fn drain_close_offset(&self, spread: std::time::Duration) -> std::time::Duration {
        let (n, k) = self.drain_closes.get().unwrap_or((self.tunnels.get().max(1), 0));
        self.drain_closes.set(Some((n, k + 1)));
        spread.mul_f64((k.min(n) as f64) / n as f64)
    }

    /// Client connections open on this worker.
    pub fn open_connections(&self) -> usize {
        self.open_connections.get()
    }

    /// Counts a client connection as open for as long as the guard lives, panics
    /// included.
    pub fn connection_opened(self: &Rc<Self>) -> OpenConnection {
        let open = self.open_connections.get() + 1;
        self.open_connections.set(open);
        self.after_burst.borrow_mut().opened(open);
        self.metrics().open_connections.fetch_add(1, Relaxed);
        OpenConnection(Rc::clone(self))
    }
}

/// One open client connection, counted until dropped.
pub(crate) struct OpenConnection(Rc<Worker>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let w = &self.0;
        w.open_connections.set(w.open_connections.get() - 1);
        w.metrics().open_connections.fetch_sub(1, Relaxed);
    }
}
