//! PURE. What a balancer is told at load: its replicas, their weights, Apache status
//! letters and health settings (`[balancer.NAME]` in sidecar.toml). Config resolution
//! (`config/resolve.rs`) fills these in with every default applied; this file only
//! names the values and parses the few words config borrows from Apache.

use std::fmt;
use std::time::Duration;

use super::hash::Hashing;
use super::method::Method;
use crate::target::Url;

/// What `max_ejected_percent` should default to: every replica but one may be
/// ejected. Up to 100 replicas `floor(n × 99 / 100) = n - 1`, and below 100 the rule is
/// capped at `n - 1` anyway. So a failed replica gets no traffic until
/// every replica has failed; then the last one standing keeps taking requests, like
/// Apache's `forcerecovery`, and a restarted app is back on its very next request
/// instead of after a back-off that may have grown to `retry_max`.
pub const RECOMMENDED_MAX_EJECTED_PERCENT: u8 = 99;

/// One `[balancer.NAME]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerSpec {
    pub name: String,
    pub method: Method,
    /// With `method = "byhash"`: where the key comes from and the fallback method.
    pub hash: Option<Hashing>,
    pub replicas: Vec<ReplicaSpec>,
    /// Apache `stickysession`: the cookie name. The proxy reads the cookie and passes
    /// its route part to `Balancer::pick`.
    pub sticky_session: Option<String>,
    /// Tries per request, read by the proxy's retry loop; the balancer only honours the
    /// `tried` list it is given.
    pub max_attempts: u32,
    /// The guard (mod.rs, "The guard"): at most this share of the in-service replicas,
    /// rounded down, may be ejected at once. Below 100 at least one replica always
    /// stays in service; 100 lets every replica be ejected, and `pick` then answers
    /// `NoneAvailable` until the earliest retry time. Values over 100 count as 100.
    pub max_ejected_percent: u8,
    /// Members that stand for what a DNS name resolves to. Their addresses join
    /// `replicas` at run time (membership.rs), each inheriting the entry's options.
    pub discovered: Vec<Discovery>,
    /// A new or recovered member's share ramps up linearly over this long; zero: off.
    pub slow_start: Duration,
    /// Active health checks, when `[balancer.NAME.health]` is set.
    pub check: Option<HealthCheck>,
}

impl BalancerSpec {
    /// The method for requests that no key ties to a member: `hash_fallback` under
    /// `byhash`, else `method`.
    pub fn unkeyed_method(&self) -> Method {
        self.hash.as_ref().map_or(self.method, |h| h.fallback)
    }
}

/// One member entry whose host is a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// What each address becomes: url (with the name as host), weight, status, route
    /// and health settings. For SRV, port and weight come from each record instead.
    pub template: ReplicaSpec,
    pub lookup: Lookup,
}

/// What is asked of DNS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// A and AAAA of the name: one member per address, on the entry's port.
    Address(String),
    /// SRV records of the name (`srv+http://_http._tcp.app…`): one member per target
    /// address, on the record's port, with its weight as `loadfactor`.
    Service(String),
}

impl Lookup {
    pub fn name(&self) -> &str {
        match self {
            Self::Address(n) | Self::Service(n) => n,
        }
    }

    /// `A/AAAA` or `SRV`, for `/status` and `check`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Address(_) => "A/AAAA",
            Self::Service(_) => "SRV",
        }
    }
}

/// `[balancer.NAME.health]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query of the `GET` sent to each member.
    pub path: String,
    pub interval: Duration,
    /// For the whole check: connect, TLS, request and status line.
    pub timeout: Duration,
    /// Good checks in a row that bring an ejected member back.
    pub rise: u32,
    /// Failed checks in a row that take a member out.
    pub fall: u32,
    /// Statuses that count as good.
    pub expect: StatusRanges,
}

/// Inclusive ranges of HTTP statuses: `"200-399"`, `"200,204"`, `"200-299,302"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    pub fn parse(s: &str) -> Option<Self> {
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let (lo, hi) = (lo.trim().parse::<u16>().ok()?, hi.trim().parse::<u16>().ok()?);
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return None;
            }
            ranges.push((lo, hi));
        }
        Some(Self(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            if lo == hi {
                write!(f, "{sep}{lo}")?;
            } else {
                write!(f, "{sep}{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// One member of a balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub url: Url,
    /// Apache `loadfactor`: its share relative to the others. 0 counts as 1.
    pub weight: u32,
    pub status: Status,
    /// Apache `route`: matched against the part of the sticky cookie after its last '.'.
    pub route: Option<String>,
    pub health: Health,
}

/// Passive health settings of one replica (member overrides already applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Rest after the first failure, before a trial request (Apache `retry`).
    pub retry: Duration,
    /// Each failed trial doubles the rest, up to this. Less than `retry` counts as `retry`.
    pub retry_max: Duration,
    /// Apache `failonstatus`: these response statuses count as a failure of the replica.
    pub fail_on_status: Vec<u16>,
}

/// Apache's BalancerMember status letters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Status {
    #[default]
    Normal,
    /// `+H`: takes traffic only while no normal replica can.
    HotStandby,
    /// `+N`: takes no new traffic; what it already has (open tunnels, requests in
    /// flight) runs to its end. Unlike Apache it also refuses sticky sessions: a
    /// drained replica is one about to go away.
    Draining,
    /// `+D`: never picked.
    Disabled,
    /// Not an Apache letter: the address left its name's DNS answer, or a reload
    /// dropped (or drained) the member. Like `+N`, nothing new is sent; requests in
    /// flight run to their end and its tunnels get a Close (1012). Never parsed from
    /// config.
    Removed,
}

impl Status {
    /// `""`, `"+H"`, `"+N"`, `"+D"`; the `+` is optional and letters are
    /// case-insensitive, as in Apache's `status=` parameter.
    pub fn parse(s: &str) -> Option<Self> {
        let letter = s.strip_prefix('+').unwrap_or(s);
        match letter.to_ascii_uppercase().as_str() {
            "" => Some(Self::Normal),
            "H" => Some(Self::HotStandby),
            "N" => Some(Self::Draining),
            "D" => Some(Self::Disabled),
            _ => None,
        }
    }

    /// Normal replicas and hot standbys may be picked; draining and disabled ones not.
    pub fn in_service(self) -> bool {
        matches!(self, Self::Normal | Self::HotStandby)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::HotStandby => "hot-standby",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
            Self::Removed => "removed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apache_status_letters() {
        for (input, want) in [
            ("", Some(Status::Normal)),
            ("+H", Some(Status::HotStandby)),
            ("h", Some(Status::HotStandby)),
            ("+N", Some(Status::Draining)),
            ("+d", Some(Status::Disabled)),
            ("+S", None), // Apache's "stopped": not supported
            ("+HD", None),
            ("++H", None),
        ] {
            assert_eq!(Status::parse(input), want, "status {input:?}");
        }
    }

    #[test]
    fn parses_status_ranges() {
        for (input, want) in [
            ("200-399", Some("200-399")),
            ("200", Some("200")),
            ("200-299, 302", Some("200-299,302")),
            ("399-200", None),
            ("200-", None),
            ("99", None),
            ("600", None),
            ("2xx", None),
            ("", None),
        ] {
            assert_eq!(StatusRanges::parse(input).map(|r| r.to_string()).as_deref(), want, "{input:?}");
        }
        let r = StatusRanges::parse("200-299,302").unwrap();
        for (status, want) in [(200, true), (299, true), (300, false), (302, true), (500, false)] {
            assert_eq!(r.contains(status), want, "{status}");
        }
    }
}
