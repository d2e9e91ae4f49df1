//! The running process: one thread per worker, each with its own single-threaded
//! executor, its own listening sockets (SO_REUSEPORT), its own pool and counters. No
//! state is shared between workers on the hot path.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_rustls::TlsAcceptor;
use smol::LocalExecutor;

use crate::config::Config;
use crate::h1::canned::canned;
use crate::net::clock;
use crate::net::listen::bind;
use crate::net::stream::{with_timeout, Stream};
use crate::proxy::{serve, ClientInfo, Worker};
use crate::shared::Shared;

/// After `accept` fails for lack of descriptors, wait this long before the next try
/// rather than spinning (SECURITY L6).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a worker closes pooled connections idle past their timeout.
const POOL_PRUNE_EVERY: Duration = Duration::from_secs(5);

/// The started proxy.
pub struct Running {
    /// Every bound address with whether it speaks TLS.
    pub addrs: Vec<(SocketAddr, bool)>,
    threads: Vec<JoinHandle<()>>,
    /// Dropped to start draining (a closed channel wakes every worker).
    shutdown: Option<async_channel::Sender<()>>,
    reloads: Vec<async_channel::Sender<Arc<Config>>>,
    listen: Vec<SocketAddr>,
    workers: usize,
    pub shared: Arc<Shared>,
}

impl Running {
    /// Stops accepting everywhere and lets in-flight work finish (SPEC §4).
    pub fn drain(&mut self) {
        self.shutdown = None;
    }

    /// Hands a new config to every worker. Listener addresses are bound at start and
    /// stay; a changed `listen` is reported and needs a restart.
    pub fn reload(&mut self, config: Arc<Config>) {
        if config.listen != self.listen || config.workers != self.workers {
            log::warn!("reload: server.listen and server.workers changes take effect only after a restart");
        }
        self.shared.set_config(Arc::clone(&config));
        for tx in &self.reloads {
            let _ = tx.try_send(Arc::clone(&config));
        }
    }

    /// The worker threads, for a caller that joins them itself.
    pub fn take_threads(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.threads)
    }

    /// Blocks until every worker stops.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Binds every listener for every worker (so a bind error is reported before anything
/// runs) and starts the workers.
/// `admin` is served by the first worker (its own thread in async-io's one reactor
/// would steal the workers' socket events).
pub fn start(shared: Arc<Shared>, admin: Option<TcpListener>) -> io::Result<Running> {
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
    let mut admin = admin;
    let workers = config.workers;
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let admin = admin.take();
        let shutdown = shutdown_rx.clone();
        let (reload_tx, reload_rx) = async_channel::bounded(4);
        reloads.push(reload_tx);
        let thread = std::thread::Builder::new()
            .name(format!("sidecar-worker-{i}"))
            .spawn(move || run_worker(shared, listeners, admin, shutdown, reload_rx, i == 0))?;
        threads.push(thread);
    }
    let listen = config.listen.clone();
    Ok(Running { addrs, threads, shutdown: Some(shutdown_tx), reloads, listen, workers, shared })
}

fn run_worker(
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    shutdown: async_channel::Receiver<()>,
    reloads: async_channel::Receiver<Arc<Config>>,
    first: bool,
) {
    let ex = Rc::new(LocalExecutor::new());
    let worker = Rc::new(Worker::new(shared, shutdown));
    let main = async {
        ex.spawn(clock::run_ticker()).detach();
        if first {
            // DNS refreshes and active health checks: a few packets a second at most.
            ex.spawn(crate::discovery::run(Arc::clone(&worker.shared))).detach();
        }
        if let Some(admin) = admin {
            match Async::new(admin) {
                Ok(l) => ex.spawn(crate::admin::accept_loop(Rc::clone(&ex), l, Arc::clone(&worker.shared))).detach(),
                Err(e) => log::error!("cannot register the admin listener: {e}"),
            }
        }
        for listener in listeners {
            match Async::new(listener) {
                Ok(l) => ex.spawn(accept_loop(Rc::clone(&ex), l, Rc::clone(&worker))).detach(),
                Err(e) => log::error!("cannot register a listener: {e}"),
            }
        }
        let w = Rc::clone(&worker);
        ex.spawn(async move {
            while let Ok(config) = reloads.recv().await {
                w.set_config(config);
            }
        })
        .detach();
        let prune = async {
            loop {
                Timer::after(POOL_PRUNE_EVERY).await;
                worker.pool.prune(Instant::now());
            }
        };
        futures_lite::future::or(prune, worker.shutdown()).await;
        // Draining: the listeners close themselves; wait for open connections (tunnels
        // end by themselves at the drain timeout), with one last deadline.
        let last = Instant::now() + worker.config().timeouts.drain + Duration::from_secs(1);
        while worker.open_connections.get() > 0 && Instant::now() < last {
            Timer::after(Duration::from_millis(20)).await;
        }
    };
    smol::block_on(ex.run(main));
}

async fn accept_loop(ex: Rc<LocalExecutor<'static>>, listener: Async<TcpListener>, worker: Rc<Worker>) {
    let local = listener.get_ref().local_addr().ok();
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            worker.shutdown().await;
            None
        });
        let Some(accepted) = accepted.await else {
            // Returning drops the listener: the socket closes and new connections are refused.
            return;
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.get_ref().set_nodelay(true);
                let local = tcp.get_ref().local_addr().ok().or(local).unwrap_or(peer);
                // TLS settings are read per connection, so SIGHUP reloads certificates.
                let tls = worker.config().server_tls.clone().map(TlsAcceptor::from);
                ex.spawn(connection(Rc::clone(&worker), tcp, peer, local, tls)).detach();
            }
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a transient error: log at most
                // once a second, back off, keep serving what is established.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log::error!("accept failed: {e}");
                    last_error_log = Some(Instant::now());
                }
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Counts an open client connection for as long as it lives, panics included.
struct Open(Rc<Worker>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections.set(self.0.open_connections.get() - 1);
        self.0.shared.metrics.open_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn connection(
    worker: Rc<Worker>,
    tcp: Async<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    worker.open_connections.set(worker.open_connections.get() + 1);
    worker.shared.metrics.open_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let open = Open(Rc::clone(&worker));
    let config = worker.config();
    if worker.open_connections.get() > config.limits.max_connections {
        // Over the limit: a clear answer beats a silent queue (documented in README).
        let mut s = Stream::Plain(tcp);
        if tls.is_none() {
            let _ = futures_lite::AsyncWriteExt::write_all(&mut s, &canned(503, &[("Retry-After", "1")], true)).await;
        }
        log::warn!("{peer}: refused, max_connections ({}) reached", config.limits.max_connections);
        drop(open);
        return;
    }
    let https = tls.is_some();
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => match with_timeout(config.timeouts.header, Box::pin(acceptor.accept(tcp))).await {
            Ok(s) => Stream::ServerTls(Box::new(s)),
            Err(e) => {
                log::info!(target: "access", "{peer} \"-\" - - 0ms reason=\"TLS handshake failed: {e}\"");
                return;
            }
        },
    };
    let info = ClientInfo { peer, peer_ip: peer.ip().to_string(), local, https };
    serve(Rc::clone(&worker), stream, info).await;
    drop(open);
}
