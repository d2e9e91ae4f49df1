//! The running process: one thread per worker, each with its own runtime (`rt`: its
//! own epoll, run queue and deadlines), its own listening sockets (SO_REUSEPORT) and
//! its own backend pool; nothing on the request path crosses threads.
//! Workers share the metrics (atomics) and each balancer's state (one mutex per
//! balancer, taken briefly to pick a member and to report on it), so a dead replica is
//! found once for the whole process and `bybusyness` sees every worker's load.
//!
//! worker.rs holds one thread's state, listener.rs accepts and hands connections to
//! the proxy, after_burst.rs decides when memory a burst left free goes back to the
//! system.

mod after_burst;
mod listener;
mod worker;

pub(crate) use worker::{OpenConnection, Worker};

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::clock;
use crate::net::listen::bind;
use crate::rt::{self, Io, Ready};
use crate::shared::Shared;

/// How often a worker closes pooled connections idle past their timeout.
const POOL_PRUNE_EVERY: Duration = Duration::from_secs(5);
/// How long a reload waits for the workers to take the new config. A worker is busy
/// for microseconds at a time, so only a stuck one makes the wait this long.
pub(crate) const RELOAD_WAIT: Duration = Duration::from_secs(2);

/// A new config for a worker, and where it says that the config is in force.
type Reload = (Arc<Config>, mpsc::Sender<()>);

/// The started proxy.
pub struct Running {
    /// Every bound address with whether it speaks TLS.
    pub addrs: Vec<(SocketAddr, bool)>,
    threads: Vec<JoinHandle<()>>,
    /// Dropped to start draining (a closed channel wakes every worker).
    shutdown: Option<async_channel::Sender<()>>,
    reloads: Vec<async_channel::Sender<Reload>>,
    listen: Vec<SocketAddr>,
    workers: usize,
    pub shared: Arc<Shared>,
}

impl Running {
    /// Stops accepting everywhere and lets in-flight work finish: requests end, tunnels
    /// get up to `drain_timeout`.
    pub fn drain(&mut self) {
        self.shutdown = None;
    }

    /// Hands a new config to every worker and waits until each has it in force, so
    /// that what follows (the "reloaded" line) is true for the next connection. Returns
    /// how many running workers had not taken it within `RELOAD_WAIT`. Listener addresses are
    /// bound at start and stay; a changed `listen` is reported and needs a restart.
    pub fn reload(&mut self, config: Arc<Config>) -> usize {
        if config.listen != self.listen || config.workers != self.workers {
            log::warn!("reload: server.listen and server.workers changes take effect only after a restart");
        }
        self.shared.set_config(Arc::clone(&config));
        let (applied_tx, applied_rx) = mpsc::channel();
        let (mut sent, mut late) = (0, 0);
        for tx in &self.reloads {
            match tx.try_send((Arc::clone(&config), applied_tx.clone())) {
                Ok(()) => sent += 1,
                // Earlier reloads still queued: this one follows them.
                Err(async_channel::TrySendError::Full(_)) => late += 1,
                // The worker has stopped (a drain ended).
                Err(async_channel::TrySendError::Closed(_)) => {}
            }
        }
        let deadline = Instant::now() + RELOAD_WAIT;
        let mut applied = 0;
        while applied < sent {
            match applied_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) => applied += 1,
                Err(_) => break,
            }
        }
        late + sent - applied
    }

    /// The worker threads, for a caller that joins them itself.
    pub fn take_threads(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.threads)
    }
}

/// Binds every listener for every worker (so a bind error is reported before anything
/// runs) and starts the workers. The admin endpoint runs apart from them (`admin`).
pub fn start(shared: Arc<Shared>) -> io::Result<Running> {
    let config = shared.config();
    let reuse_port = config.workers > 1;
    let mut per_worker: Vec<Vec<TcpListener>> = (0..config.workers).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for want in &config.listen {
        let first =
            bind(*want, reuse_port).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {want}: {e}")))?;
        // With port 0 the first socket picks the port; the others join it.
        let actual = first.local_addr()?;
        per_worker[0].push(first);
        for listeners in per_worker.iter_mut().skip(1) {
            listeners.push(
                bind(actual, true).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {actual}: {e}")))?,
            );
        }
        let https = config.server_tls.is_some();
        log::info!("listening on {actual} ({})", if https { "https" } else { "http" });
        addrs.push((actual, https));
    }
    let (shutdown_tx, shutdown_rx) = async_channel::bounded::<()>(1);
    let mut threads = Vec::new();
    let mut reloads = Vec::new();
    let workers = config.workers;
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let shutdown = shutdown_rx.clone();
        let (reload_tx, reload_rx) = async_channel::bounded(4);
        reloads.push(reload_tx);
        let thread = std::thread::Builder::new()
            .name(format!("sidecar-worker-{i}"))
            .spawn(move || run_worker(shared, listeners, shutdown, reload_rx, i == 0))?;
        threads.push(thread);
    }
    let listen = config.listen.clone();
    Ok(Running { addrs, threads, shutdown: Some(shutdown_tx), reloads, listen, workers, shared })
}

fn run_worker(
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    shutdown: async_channel::Receiver<()>,
    reloads: async_channel::Receiver<Reload>,
    first: bool,
) {
    let worker = Rc::new(Worker::new(shared));
    // Tells discovery (first worker only) that a reload landed; reloads in a burst
    // coalesce into one.
    let (reloaded_tx, reloaded_rx) = async_channel::bounded::<()>(1);
    let main = async move {
        if first {
            // DNS refreshes and active health checks: a few packets a second at most.
            rt::spawn(crate::discovery::run(Arc::clone(worker.shared()), reloaded_rx)).detach();
        }
        for listener in listeners {
            match Io::new(listener, Ready::EMPTY) {
                Ok(l) => rt::spawn(listener::accept_loop(l, Rc::clone(&worker))).detach(),
                Err(e) => log::error!("cannot register a listener: {e}"),
            }
        }
        // The main thread's messages: their wakers reach this thread through the
        // runtime's cross-thread queue, never on the request path.
        let w = Rc::clone(&worker);
        rt::spawn(async move {
            while let Ok((config, applied)) = reloads.recv().await {
                w.set_config(config);
                let _ = applied.send(());
                let _ = reloaded_tx.try_send(());
            }
        })
        .detach();
        let w = Rc::clone(&worker);
        rt::spawn(async move {
            let _ = shutdown.recv().await;
            w.start_draining();
        })
        .detach();
        // The worker's housekeeping: pooled connections past their timeout close, and
        // what a burst of connections left behind (spare buffers, grown tables) is freed
        // and its pages given back to the system.
        let prune = async {
            loop {
                clock::sleep(POOL_PRUNE_EVERY).await;
                worker.pool().prune(clock::now());
                crate::net::buffers::spare::trim();
                worker.trim();
                rt::compact();
                if worker.burst_over() {
                    let gave = heap_release::release_free_pages();
                    log::debug!("a burst of connections closed: free heap pages given back to the system: {gave}");
                }
            }
        };
        futures_lite::future::or(prune, worker.shutdown()).await;
        // Draining: the listeners close themselves; wait for open connections (tunnels
        // end by themselves at the drain timeout), with one last deadline.
        let last = Instant::now() + worker.config().timeouts.drain + Duration::from_secs(1);
        while worker.open_connections() > 0 && Instant::now() < last {
            clock::sleep(Duration::from_millis(20)).await;
        }
    };
    if let Err(e) = rt::block_on(main) {
        log::error!("worker stopped: {e}");
    }
}
