//! What can go wrong while proxying one request, whose fault it is, and what the client
//! is told. Only a replica's fault (`Upstream`) counts against a balancer member.
//!
//! Sidecar's own statuses beyond the usual: `503` + `Retry-After` when sidecar itself
//! is out of descriptors or buffers (`Shortage`), `408` for a request body that stopped
//! progressing (`body_timeout`), and `499` in the access line (never on the wire: the
//! client is gone) for a client that closed while its request waited, as nginx logs it.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::h1::answer::Answer;
use crate::net::connect::ConnectError;

/// A backend's failure. Always the replica's fault.
#[derive(Debug)]
pub enum UpstreamError {
    Connect(ConnectError),
    /// No response head within `proxy_timeout`.
    Timeout,
    /// The connection broke while sending or receiving.
    Io(io::Error),
    /// The backend closed before a complete response head.
    Closed,
    /// The response violates HTTP or sidecar's rules (docs/security.md, section B).
    Malformed(String),
    /// A 101 that was not asked for or does not complete the handshake: both
    /// connections close (docs/security.md, B7 and W8).
    BadSwitch(String),
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Connect(c) => c.is_timeout(),
            Self::Io(e) => e.kind() == io::ErrorKind::TimedOut,
            _ => false,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => e.fmt(f),
            Self::Timeout => f.write_str("no response within proxy_timeout"),
            Self::Io(e) => write!(f, "connection failed: {e}"),
            Self::Closed => f.write_str("closed before a complete response head"),
            Self::Malformed(why) => write!(f, "bad response: {why}"),
            Self::BadSwitch(why) => write!(f, "bad switch: {why}"),
        }
    }
}

#[derive(Debug)]
pub enum ProxyError {
    /// The client's request is malformed; the text says how.
    BadRequest(&'static str),
    /// Over `max_body_bytes`: 413.
    BodyTooLarge,
    NoRoute(&'static str),
    Forbidden,
    Gone,
    /// A backend failed; `replica` names it.
    Upstream {
        replica: String,
        cause: UpstreamError,
    },
    /// No replica can take the request now.
    AllReplicasDown {
        balancer: String,
        retry_after: Duration,
    },
    /// The client went away or broke the connection; nobody to answer.
    ClientGone(io::Error),
    /// The client closed its connection while its request waited for the backend's
    /// answer; the backend request was abandoned.
    ClientClosed,
    /// The request body did not progress as `body_timeout` / `body_min_rate` demand.
    BodyTimeout,
    /// Sidecar could not open a backend connection for lack of descriptors, buffers or
    /// memory: its own shortage, not the replica's.
    Shortage(io::Error),
}

/// What the access line shows for a client that closed while its request waited
/// (nginx's 499 "client closed request"); nothing is sent.
pub const CLIENT_CLOSED_STATUS: u16 = 499;
/// `Retry-After` when sidecar is short of descriptors: they free up as connections end.
const SHORTAGE_RETRY_AFTER_SECS: u64 = 1;

impl ProxyError {
    /// What the client is sent; `None` when the client is already gone.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadRequest(_) => Some(400),
            Self::BodyTooLarge => Some(413),
            Self::NoRoute(_) => Some(404),
            Self::Forbidden => Some(403),
            Self::Gone => Some(410),
            Self::Upstream { cause, .. } if cause.is_timeout() => Some(504),
            Self::Upstream { .. } => Some(502),
            Self::AllReplicasDown { .. } | Self::Shortage(_) => Some(503),
            Self::BodyTimeout => Some(408),
            Self::ClientGone(_) | Self::ClientClosed => None,
        }
    }

    /// What sidecar answers, before the connection's keep-alive is decided; `None`
    /// when the client is already gone.
    pub fn answer(&self) -> Option<Answer<'static>> {
        let answer = Answer::new(self.status()?);
        Some(match self {
            Self::AllReplicasDown { retry_after, .. } => answer.retry_after(retry_after.as_secs_f64().ceil() as u64),
            Self::Shortage(_) => answer.retry_after(SHORTAGE_RETRY_AFTER_SECS),
            _ => answer,
        })
    }

    /// Client errors close the connection: after a framing problem nothing that follows
    /// can be trusted to be a request (docs/security.md, S22). A shortage closes it too:
    /// that gives a descriptor back.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_)
                | Self::BodyTooLarge
                | Self::BodyTimeout
                | Self::ClientGone(_)
                | Self::ClientClosed
                | Self::Shortage(_)
                | Self::Upstream { cause: UpstreamError::BadSwitch(_), .. }
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRequest(why) => f.write_str(why),
            Self::BodyTooLarge => f.write_str("request body over max_body_bytes"),
            Self::NoRoute(why) => f.write_str(why),
            Self::Forbidden => f.write_str("forbidden by a rewrite rule"),
            Self::Gone => f.write_str("gone by a rewrite rule"),
            Self::Upstream { replica, cause } => write!(f, "{replica}: {cause}"),
            Self::AllReplicasDown { balancer, retry_after } => {
                write!(f, "no usable replica in balancer {balancer:?} (next retry in {}s)", retry_after.as_secs())
            }
            Self::ClientGone(e) => write!(f, "client connection lost: {e}"),
            Self::ClientClosed => f.write_str("client closed the connection while waiting for the answer"),
            Self::BodyTimeout => f.write_str("request body too slow (body_timeout, body_min_rate)"),
            Self::Shortage(e) => write!(f, "no backend connection: sidecar is short of resources ({e})"),
        }
    }
}
