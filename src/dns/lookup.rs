//! A name's addresses (A and AAAA) or its SRV targets: `/etc/hosts` first, then each
//! candidate of the search list in turn, each asked of the nameservers in order for
//! `attempts` rounds, as glibc's stub resolver does. The TTL of an answer is the
//! smallest TTL of the records it used.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::resolv_conf::ResolverConfig;
use super::search::candidates;
use super::transport::{exchange, ExchangeError};
use super::wire::{Data, Kind, Rcode, Reply};

/// The TTL given to `/etc/hosts` answers, which have none: they change only when the
/// file does, and the file is read again on SIGHUP.
const HOSTS_TTL_SECS: u32 = 3600;

/// A name resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub addrs: Vec<IpAddr>,
    pub ttl: Duration,
}

/// One SRV target with its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower-case, without the final dot.
    pub host: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Services {
    pub targets: Vec<SrvTarget>,
    pub ttl: Duration,
}

/// Why a lookup found nothing.
#[derive(Debug)]
pub enum LookupError {
    /// NXDOMAIN for every candidate name.
    NotFound,
    /// The name exists but has no record of the kind asked (or every SRV target is
    /// without addresses).
    NoRecords,
    /// No nameserver gave a usable reply; the last reason.
    NoReply(String),
    /// The nameservers answered with this error code (SERVFAIL = 2, REFUSED = 5, …).
    ServerError(u16),
    BadName(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such name (NXDOMAIN)"),
            Self::NoRecords => f.write_str("no addresses in the answer"),
            Self::NoReply(why) => write!(f, "no nameserver answered ({why})"),
            Self::ServerError(code) => write!(f, "nameserver error (rcode {code})"),
            Self::BadName(n) => write!(f, "{n:?} is not a valid DNS name"),
        }
    }
}

impl std::error::Error for LookupError {}

/// Every address of `name`.
pub async fn lookup_ip(cfg: &ResolverConfig, name: &str) -> Result<Addresses, LookupError> {
    let from_hosts = cfg.hosts_entry(name);
    if !from_hosts.is_empty() {
        return Ok(Addresses { addrs: from_hosts, ttl: Duration::from_secs(u64::from(HOSTS_TTL_SECS)) });
    }
    let mut last = LookupError::NotFound;
    for fqdn in candidates(name, &cfg.search, cfg.ndots) {
        match addresses_of(cfg, &fqdn).await {
            Ok(found) => return Ok(found),
            // Try the next candidate only when this one does not exist or has no
            // address; a dead nameserver is not an answer.
            Err(e @ (LookupError::NotFound | LookupError::NoRecords)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Every SRV target of `name`, with its addresses (from the reply's additional
/// section when the server put them there, else looked up).
pub async fn lookup_srv(cfg: &ResolverConfig, name: &str) -> Result<Services, LookupError> {
    let mut last = LookupError::NotFound;
    for fqdn in candidates(name, &cfg.search, cfg.ndots) {
        let reply = match ask(cfg, &fqdn, Kind::Srv).await {
            Ok(r) => r,
            Err(e @ (LookupError::NotFound | LookupError::NoRecords)) => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut ttl = u32::MAX;
        let mut targets = Vec::new();
        for r in &reply.answers {
            let Data::Srv { priority, weight, port, target } = &r.data else { continue };
            // RFC 2782: a target of "." means the service is decidedly not available.
            if target.is_empty() {
                continue;
            }
            ttl = ttl.min(r.ttl);
            let mut addrs: Vec<IpAddr> = reply
                .additionals
                .iter()
                .filter(|a| &a.name == target)
                .filter_map(|a| match a.data {
                    Data::Ip(ip) => {
                        ttl = ttl.min(a.ttl);
                        Some(ip)
                    }
                    Data::Srv { .. } => None,
                })
                .collect();
            if addrs.is_empty() {
                // The target is a host name, looked up as given (it is absolute).
                match addresses_of(cfg, &format!("{target}.")).await {
                    Ok(found) => {
                        ttl = ttl.min(found.ttl.as_secs() as u32);
                        addrs = found.addrs;
                    }
                    Err(LookupError::NotFound | LookupError::NoRecords) => continue,
                    Err(e) => return Err(e),
                }
            }
            targets.push(SrvTarget { priority: *priority, weight: *weight, port: *port, host: target.clone(), addrs });
        }
        if targets.is_empty() {
            last = LookupError::NoRecords;
            continue;
        }
        return Ok(Services { targets, ttl: Duration::from_secs(u64::from(ttl)) });
    }
    Err(last)
}

/// A and AAAA of one fully qualified name, asked at the same time.
async fn addresses_of(cfg: &ResolverConfig, fqdn: &str) -> Result<Addresses, LookupError> {
    let (v4, v6) = futures_lite::future::zip(ask(cfg, fqdn, Kind::A), ask(cfg, fqdn, Kind::Aaaa)).await;
    let mut ttl = u32::MAX;
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    for reply in [v4, v6] {
        match reply {
            Ok(reply) => {
                for r in reply.answers {
                    if let Data::Ip(ip) = r.data {
                        ttl = ttl.min(r.ttl);
                        addrs.push(ip);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !addrs.is_empty() {
        return Ok(Addresses { addrs, ttl: Duration::from_secs(u64::from(ttl)) });
    }
    // Both failed: the more telling error (a dead server beats "no such name").
    errors.sort_by_key(|e| matches!(e, LookupError::NotFound | LookupError::NoRecords));
    Err(errors.into_iter().next().unwrap_or(LookupError::NoRecords))
}

/// One question, to each nameserver in turn, for `attempts` rounds. NXDOMAIN and an
/// empty answer are answers; errors and silence move on to the next server.
async fn ask(cfg: &ResolverConfig, fqdn: &str, kind: Kind) -> Result<Reply, LookupError> {
    let mut last: Option<LookupError> = None;
    for _ in 0..cfg.attempts.max(1) {
        for &server in &cfg.nameservers {
            match exchange(server, fqdn, kind, cfg.timeout).await {
                Ok(reply) => match reply.rcode {
                    Rcode::NxDomain => return Err(LookupError::NotFound),
                    Rcode::NoError if reply.answers.is_empty() => return Err(LookupError::NoRecords),
                    Rcode::NoError => return Ok(reply),
                    Rcode::Failed(code) => last = Some(LookupError::ServerError(code)),
                },
                Err(ExchangeError::Wire(super::wire::WireError::BadName(n))) => return Err(LookupError::BadName(n)),
                Err(e) => last = Some(LookupError::NoReply(format!("{server}: {e}"))),
            }
        }
    }
    Err(last.unwrap_or_else(|| LookupError::NoReply("no nameserver configured".into())))
}
