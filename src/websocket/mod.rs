//! WebSocket frames as the tunnel sees them (RFC 6455): `frame` reads headers and
//! writes the proxy's own control frames, `filter` follows one direction of a tunnel
//! frame by frame. Pure: no I/O, no clock.

pub mod filter;
pub mod frame;

use std::time::Duration;

/// Keepalive Pings for a tunnel (`ws_ping_interval`, `ws_pong_timeout`,
/// `ws_ping_backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Ping a peer that has sent nothing for this long; `None`: no Pings.
    pub interval: Option<Duration>,
    /// A Ping unanswered (nothing at all from the peer) this long closes the tunnel.
    pub pong_timeout: Duration,
    /// Ping the backend too, not only the client.
    pub backend: bool,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self { interval: None, pong_timeout: Duration::from_secs(10), backend: false }
    }
}
