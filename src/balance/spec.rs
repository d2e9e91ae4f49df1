//! PURE. What a balancer is told at load: its replicas, their weights, Apache status
//! letters and health settings (`[balancer.NAME]` in sidecar.toml). Config resolution
//! (`config/resolve.rs`) fills these in with every default applied; this file only
//! names the values and parses the few words config borrows from Apache.

use std::fmt;
use std::time::Duration;

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
}
