//! PURE. What one attempt on a replica taught us: the `Outcome` the proxy reports
//! and, for a failure, the `Failure` that names it. The proxy classifies its errors into
//! these (connect errors, timeouts, `Balancer::is_failure_status`); health.rs decides
//! what they do to the replica.

use std::fmt;

/// Why an attempt failed, as far as the replica is concerned. Client faults and our
/// own never get here: those attempts are reported `Outcome::Abandoned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The replica's name did not resolve.
    Resolve,
    /// The TCP connect failed: refused, unreachable, reset during the handshake.
    ConnectRefused,
    ConnectTimeout,
    Tls,
    /// The connection broke or closed before a complete response head.
    Reset,
    /// The response head did not arrive within `proxy_timeout`.
    ResponseTimeout,
    /// The response head broke HTTP or sidecar's rules (including a bad 101).
    Malformed,
    /// A status listed in `fail_on_status` (see `Balancer::is_failure_status`).
    Status(u16),
    /// `fall` active health checks in a row failed: the last one got this status, or
    /// no answer at all.
    HealthCheck(Option<u16>),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve => f.write_str("name does not resolve"),
            Self::ConnectRefused => f.write_str("cannot connect"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::Tls => f.write_str("TLS handshake failed"),
            Self::Reset => f.write_str("connection lost before a response"),
            Self::ResponseTimeout => f.write_str("response timed out"),
            Self::Malformed => f.write_str("malformed response"),
            Self::Status(s) => write!(f, "answered {s}, listed in failonstatus"),
            Self::HealthCheck(Some(s)) => write!(f, "health check answered {s}"),
            Self::HealthCheck(None) => f.write_str("health check got no answer"),
        }
    }
}

/// What one attempt taught us about its replica. Every `Pick::Replica` gets exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived whose status is not a failure (a 101 included).
    Success,
    Failure(Failure),
    /// The attempt ended with no verdict on the replica: the client left or sent a bad
    /// body, or the proxy gave up for its own reasons. A trial in flight is released so
    /// the next pick tries again.
    Abandoned,
}
