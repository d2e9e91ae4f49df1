//! The checked configuration: what the proxy runs on. `load` reads sidecar.toml,
//! `resolve` turns the serde mirror into a `Config` or into every `Diagnostic` at once.

mod diag;
#[cfg(test)]
mod documented;
mod duration;
pub mod file;
mod resolve;
mod server_tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::Stream;
use rustls::{ClientConfig, ServerConfig};

pub use diag::Diagnostic;
use resolve::Disk;
pub use server_tls::{SelfSigned, Source as SelfSignedSource};

use crate::access_log::AccessFormat;
use crate::balance::{Balancer, BalancerSpec};
use crate::rewrite::{Rules, SourceLines};
use crate::route::{ReverseRule, Routes};

/// Everything the proxy needs, checked.
pub struct Config {
    pub path: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// TLS on the listeners, when `[server.tls]` is set.
    pub server_tls: Option<Arc<ServerConfig>>,
    /// With `[server.tls] self_signed = true`: the development certificate in use.
    pub self_signed: Option<SelfSigned>,
    pub server_name: Option<String>,
    pub workers: usize,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// `[server]`'s keepalive Pings for tunnels (a `[[proxy]]` route may have its own).
    pub ws_keepalive: crate::websocket::Keepalive,
    pub via: bool,
    pub access_log: AccessFormat,
    pub admin: Option<SocketAddr>,
    pub rules: Rules,
    /// The `[[rewrite]]` sources, for `check` and lints.
    pub rule_sources: Vec<(Vec<String>, String)>,
    /// Their lines in the file.
    pub rule_lines: Vec<SourceLines>,
    pub routes: Routes,
    pub reverse: Vec<ReverseRule>,
    pub balancers: Vec<Arc<SharedBalancer>>,
    pub backend_tls: Arc<ClientConfig>,
    /// How balancer member names are resolved (`[resolver]`, else /etc/resolv.conf).
    pub resolver: crate::dns::ResolverConfig,
}

/// Every wait has a deadline (docs/security.md, principle 4).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Backend response (Apache `ProxyTimeout`) → 504.
    pub proxy: Duration,
    pub connect: Duration,
    /// The whole request head must arrive within this (slowloris: docs/security.md, L2).
    pub header: Duration,
    /// An idle client connection between requests.
    pub keepalive: Duration,
    pub tunnel_idle: Duration,
    pub drain: Duration,
    /// After SIGTERM (or a member's removal) the tunnels' Close frames go out spread
    /// over this, so clients do not all reconnect at once.
    pub drain_spread: Duration,
    /// A pooled backend connection unused this long is closed.
    pub pool_idle: Duration,
    /// A request body: no read waits longer, and all reads together wait at most this
    /// plus one second per `Limits::body_min_rate` bytes (slow POST, docs/security.md L3) → 408.
    pub body: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    /// Header lines per request head; more → 431.
    pub max_headers: usize,
    pub max_connections: usize,
    /// Request bodies over this are refused with 413; `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// Bytes per second a request body must average (with `Timeouts::body`); at least 1.
    pub body_min_rate: u64,
}

/// A balancer's live state, shared by every worker (one lock per pick and report,
/// held for microseconds): a dead replica is found once for the whole process, and
/// `bybusyness` counts every worker's requests and tunnels.
pub struct SharedBalancer {
    pub name: String,
    /// As configured (its member list as written, not as resolved): a reload compares
    /// it to tell whether the balancer changed.
    pub definition: BalancerSpec,
    state: Mutex<Balancer>,
    /// Replaced, closing the old channel, each time members leave: wakes every tunnel
    /// waiting in `removed` to look whether its member was one of them.
    removals: Mutex<(async_channel::Sender<()>, async_channel::Receiver<()>)>,
}

impl SharedBalancer {
    pub fn new(spec: BalancerSpec) -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
        Self {
            name: spec.name.clone(),
            definition: spec.clone(),
            state: Mutex::new(Balancer::new(spec, seed)),
            removals: Mutex::new(async_channel::bounded(1)),
        }
    }

    /// Members have left (a DNS answer no longer lists them): wake their tunnels.
    pub fn members_removed(&self) {
        *self.removals.lock().unwrap_or_else(|e| e.into_inner()) = async_channel::bounded(1);
    }

    /// Completes once `replica` has left the balancer. Its slot cannot be reused while
    /// the caller's tunnel counts against it, so the index is safe to hold.
    pub fn removed(self: &Arc<Self>, replica: usize) -> MemberRemoved {
        MemberRemoved { balancer: Arc::clone(self), replica, changes: None }
    }

    /// The balancer, locked. A poisoned lock (a panic while held) is still usable: its
    /// state is counters and timestamps, never half-written.
    pub fn lock(&self) -> MutexGuard<'_, Balancer> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any member could take traffic now (`/readyz`).
    pub fn usable(&self) -> bool {
        self.lock().usable(std::time::Instant::now())
    }
}

impl Config {
    /// The name sidecar gives itself in `Via` headers, when `via` is on.
    pub fn via_pseudonym(&self) -> Option<&str> {
        self.via.then(|| self.server_name.as_deref().unwrap_or("sidecar"))
    }

    pub fn balancer(&self, name: &str) -> Option<&Arc<SharedBalancer>> {
        self.balancers.iter().find(|b| b.name == name)
    }

    /// After a reload: a balancer whose definition did not change keeps its live state
    /// (health, back-off, load, resolved members), so a SIGHUP does not resurrect a
    /// dead replica; an in-memory development certificate is kept too. A balancer that
    /// changed takes over the health of the members it still has and the last answers
    /// of the names it still uses.
    /// After a reload is accepted: members of `old`'s balancers that the new config
    /// dropped, or set to drain (`+N`) or disable (`+D`), leave their old balancer, so
    /// their open tunnels are closed (1012) the way a member that left DNS is.
    pub fn retire_members(&self, old: &Config) {
        for prev in &old.balancers {
            let now = self.balancer(&prev.name);
            if now.is_some_and(|b| Arc::ptr_eq(b, prev)) {
                continue;
            }
            let stays = |url: &crate::target::Url| {
                now.is_some_and(|b| {
                    b.lock().spec().replicas.iter().any(|r| {
                        &r.url == url
                            && matches!(r.status, crate::balance::Status::Normal | crate::balance::Status::HotStandby)
                    })
                })
            };
            let mut left = false;
            {
                let mut b = prev.lock();
                for i in 0..b.spec().replicas.len() {
                    let url = b.spec().replicas[i].url.clone();
                    if !b.is_removed(i) && !stays(&url) {
                        b.retire(i);
                        left = true;
                    }
                }
            }
            if left {
                prev.members_removed();
            }
        }
    }

    pub fn adopt_state(&mut self, old: &Config) {
        self.adopt_self_signed(old);
        for b in &mut self.balancers {
            if let Some(prev) = old.balancer(&b.name) {
                if prev.definition == b.definition {
                    *b = Arc::clone(prev);
                } else {
                    b.lock().inherit(&prev.lock(), std::time::Instant::now());
                }
            }
        }
    }
}

/// Reads and checks a config file. Errors are sorted by line.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            key: "(file)".to_string(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    resolve::resolve(path, &source, Disk::Read)
}

/// Checks config text; `path` names it in diagnostics and anchors relative paths.
pub fn parse(path: &Path, source: &str) -> Result<Config, Vec<Diagnostic>> {
    resolve::resolve(path, source, Disk::Read)
}

/// Checks config text touching nothing else: every file it names is missing and no
/// system trust store is read (for the fuzz targets).
pub fn parse_text(path: &Path, source: &str) -> Result<Config, Vec<Diagnostic>> {
    resolve::resolve(path, source, Disk::Absent)
}

/// See `SharedBalancer::removed`. A plain struct, as small as it can be: every open
/// tunnel on a balancer member holds one.
pub struct MemberRemoved {
    balancer: Arc<SharedBalancer>,
    replica: usize,
    /// Closed when members leave; subscribed before looking, so a removal in between
    /// is not missed.
    changes: Option<Pin<Box<async_channel::Receiver<()>>>>,
}

impl Future for MemberRemoved {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.changes.as_mut() {
                None => {
                    let changes = self.balancer.removals.lock().unwrap_or_else(|e| e.into_inner()).1.clone();
                    if self.balancer.lock().is_removed(self.replica) {
                        return Poll::Ready(());
                    }
                    self.changes = Some(Box::pin(changes));
                }
                Some(changes) => match changes.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Never sent on: it ended because members left. Look again.
                    Poll::Ready(_) => self.changes = None,
                },
            }
        }
    }
}
