//! Keeps balancers' DNS-named members fresh and runs their active health checks, off
//! the request path: a few tasks on the first worker (like the admin endpoint; a
//! thread of their own in async-io's one reactor would steal the workers' socket
//! events). For each name in each balancer of the config in force: look it up, hand
//! the answer to the balancer (`balance::membership` decides what changes), log what
//! changed, and look again after `refresh` or the answer's TTL clamped to 1 s … 30 s.
//! A failed lookup keeps the last set and is logged once per distinct error. On a
//! reload the tasks follow the new config at once: the worker tells `run` of each one,
//! so an idle sidecar without names or checks never wakes up for discovery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;

use crate::balance::{found_from_addresses, found_from_srv, Found, Lookup, SrvRecord};
use crate::config::{Config, SharedBalancer};
use crate::dns::{lookup_ip, lookup_srv, ResolverConfig};
use crate::net::clock;
use crate::shared::Shared;

/// An answer's TTL is followed, within these bounds: under a second would hammer the
/// nameserver (some answer TTL 0), over 30 s leaves a scaled-in pod in rotation too
/// long (Kubernetes' CoreDNS answers with 5 s, Consul with 0).
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(30);
/// A name that never resolved yet is asked again this soon: nothing can be served.
const RETRY_UNRESOLVED: Duration = Duration::from_secs(1);
/// The first lookups, before listening, wait at most this long: a dead nameserver
/// with Kubernetes' `ndots:5` search list would otherwise hold the start for a minute
/// (timeout × attempts × candidates). Names still unanswered resolve in the background.
const FIRST_LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// Runs for the life of the worker: one task per discovered name and per balancer
/// with `[balancer.NAME.health]`, replaced whenever the config is. `reloaded` yields
/// once per config the worker takes; it closes when the worker stops.
pub async fn run(shared: Arc<Shared>, reloaded: async_channel::Receiver<()>) {
    let ex = LocalExecutor::new();
    ex.run(async {
        let mut current: Option<Arc<Config>> = None;
        let mut tasks = Vec::new();
        loop {
            let config = shared.config();
            if current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &config)) {
                tasks.clear(); // dropping a task cancels it
                for b in &config.balancers {
                    for entry in 0..b.definition.discovered.len() {
                        let (resolver, b) = (config.resolver.clone(), Arc::clone(b));
                        tasks.push(ex.spawn(keep_fresh(resolver, b, entry)));
                    }
                    if let Some(check) = b.definition.check.clone() {
                        let tls = Arc::clone(&config.backend_tls);
                        tasks.push(ex.spawn(crate::health_check::run(Arc::clone(b), check, tls)));
                    }
                }
                current = Some(config);
            }
            if reloaded.recv().await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Looks every name of `config` up once, all at the same time, for at most
/// `FIRST_LOOKUP_LIMIT`: at startup, before anything listens, so the first requests
/// find members; and for `sidecar check`.
pub fn resolve_now(config: &Config) {
    // Without names there is nothing to wait for, and no reason to start async-io's
    // reactor and its thread (about 0.1 MiB that would stay for the process's life).
    if config.balancers.iter().all(|b| b.definition.discovered.is_empty()) {
        return;
    }
    let ex = LocalExecutor::new();
    let work = ex.run(async {
        let tasks: Vec<_> = config
            .balancers
            .iter()
            .flat_map(|b| (0..b.definition.discovered.len()).map(move |entry| (b, entry)))
            .map(|(b, entry)| ex.spawn(refresh(&config.resolver, b, entry)))
            .collect();
        for t in tasks {
            t.await;
        }
    });
    async_io::block_on(futures_lite::future::or(work, async {
        clock::sleep(FIRST_LOOKUP_LIMIT).await;
    }));
}

async fn keep_fresh(resolver: ResolverConfig, b: Arc<SharedBalancer>, entry: usize) {
    loop {
        let wait = refresh(&resolver, &b, entry).await;
        clock::sleep(wait).await;
    }
}

/// One lookup of `b`'s discovered entry `entry`, applied. Returns when to look again.
async fn refresh(resolver: &ResolverConfig, b: &SharedBalancer, entry: usize) -> Duration {
    let Some(d) = b.definition.discovered.get(entry) else { return MAX_REFRESH };
    let answer: Result<(Vec<Found>, Duration), String> = match &d.lookup {
        Lookup::Address(name) => {
            lookup_ip(resolver, name).await.map(|a| (found_from_addresses(&d.template, &a.addrs), a.ttl))
        }
        Lookup::Service(name) => lookup_srv(resolver, name).await.map(|s| {
            let records: Vec<SrvRecord> = s
                .targets
                .into_iter()
                .map(|t| SrvRecord {
                    priority: t.priority,
                    weight: t.weight,
                    port: t.port,
                    host: t.host,
                    addrs: t.addrs,
                })
                .collect();
            (found_from_srv(&d.template, &records), s.ttl)
        }),
    }
    .map_err(|e| e.to_string());
    let what = format!("balancer://{}: {} ({})", b.name, d.lookup.name(), d.lookup.kind());
    let mut bal = b.lock();
    let known = bal.names().get(entry).map_or(0, |n| n.addresses.len());
    let last_ttl = bal.names().get(entry).and_then(|n| n.ttl);
    match answer {
        Ok((found, ttl)) if !found.is_empty() => {
            let change = bal.update_members(entry, found, ttl, Instant::now());
            let now_known = bal.names().get(entry).map_or(0, |n| n.addresses.len());
            drop(bal);
            if let Some(error) = change.recovered_from {
                log::info!("{what} resolves again (was: {error})");
            }
            if !change.added.is_empty() || !change.removed.is_empty() {
                let list = |urls: &[crate::target::Url]| {
                    urls.iter().filter_map(|u| u.addr).map(|a: SocketAddr| a.to_string()).collect::<Vec<_>>().join(" ")
                };
                let mut line = format!("{what}: {now_known} member(s)");
                if !change.added.is_empty() {
                    line.push_str(&format!("; joined: {}", list(&change.added)));
                }
                if !change.removed.is_empty() {
                    line.push_str(&format!("; left: {}", list(&change.removed)));
                }
                log::info!("{line}");
            }
            if !change.removed.is_empty() {
                b.members_removed();
            }
            next_refresh(resolver, ttl)
        }
        Ok(_) | Err(_) => {
            let error = answer.err().unwrap_or_else(|| "no addresses in the answer".to_string());
            if bal.lookup_failed(entry, error.clone()) {
                log::warn!("{what}: lookup failed: {error}; keeping the last {known} member(s)");
            }
            match (known, last_ttl) {
                (0, _) | (_, None) => RETRY_UNRESOLVED,
                (_, Some(ttl)) => next_refresh(resolver, ttl),
            }
        }
    }
}

/// `[resolver] refresh` when set, else the TTL within `MIN_REFRESH` … `MAX_REFRESH`.
fn next_refresh(resolver: &ResolverConfig, ttl: Duration) -> Duration {
    resolver.refresh.unwrap_or_else(|| ttl.clamp(MIN_REFRESH, MAX_REFRESH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_follows_the_ttl_within_bounds_unless_fixed() {
        let s = Duration::from_secs;
        for (fixed, ttl, want) in [
            (None, s(0), s(1)),
            (None, s(5), s(5)),
            (None, s(300), s(30)),
            (Some(Duration::from_millis(200)), s(300), Duration::from_millis(200)),
        ] {
            let r = ResolverConfig { refresh: fixed, ..ResolverConfig::default() };
            assert_eq!(next_refresh(&r, ttl), want, "refresh {fixed:?} ttl {ttl:?}");
        }
    }
}
