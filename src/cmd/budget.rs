//! The memory a config allows at worst, for `sidecar check`: every connection at
//! `max_connections` on every worker, each with its buffers full. What each part costs
//! is documented in docs/operations.md ("Memory"); the constants here are those
//! figures.

use crate::config::Config;
use crate::net::buffers::spare::{LARGE_READS, LARGE_READ_BYTES};
use crate::net::stream::{READ_BYTES, TUNNEL_READ_BYTES};
use crate::net::tls_stream::HELD_AT_MOST_BYTES;

/// A connection's own state (its task, the request it carries, a tunnel's frame
/// state and socket registrations), measured with `scripts/burst`.
pub const STATE_BYTES: usize = 5 * 1024;
/// A TLS session's own state (keys, record layer, the peer's certificate chain towards
/// a backend), measured with `scripts/burst --tls`.
const TLS_SESSION_BYTES: usize = 4 * 1024;
/// One side's TLS at most: the session, and the records and plaintext its stream
/// holds between calls when a peer stalls.
pub const TLS_BYTES: usize = TLS_SESSION_BYTES + HELD_AT_MOST_BYTES;

/// Worst-case bytes of one client connection: its state, a read buffer on each side
/// (a head up to `max_head_bytes`, or a body read `READ_BYTES` at a time; a tunnel's
/// bytes a peer cannot take yet are at most one `TUNNEL_READ_BYTES` read per
/// direction), and rustls on each side that speaks TLS.
pub fn per_connection(max_head_bytes: usize, client_tls: bool, backend_tls: bool) -> usize {
    let buffer = max_head_bytes.max(READ_BYTES).max(TUNNEL_READ_BYTES);
    STATE_BYTES + 2 * buffer + TLS_BYTES * (usize::from(client_tls) + usize::from(backend_tls))
}

/// What a worker holds beyond its connections' own buffers at worst: the larger read
/// buffers of bodies relayed as they came (`LARGE_READS` of them).
pub const PER_WORKER_BYTES: usize = LARGE_READS * LARGE_READ_BYTES;

/// `check`'s line about memory. Whether a backend speaks TLS is known only per request
/// (a rewrite may pick `wss://`), so its share is named apart.
pub fn describe(c: &Config) -> String {
    let client_tls = c.server_tls.is_some();
    let per = per_connection(c.limits.max_head_bytes, client_tls, false);
    let connections = c.limits.max_connections * c.workers;
    let mib = |b: usize| (b * connections + PER_WORKER_BYTES * c.workers) as f64 / (1024.0 * 1024.0);
    format!(
        "memory  at most {:.0} MiB at max_connections ({} per worker x {} worker{}): {:.1} KiB per connection with \
         its buffers full{}, {} KiB more with a TLS backend ({:.0} MiB in all), {} MiB per worker for large body reads \
         included; an idle connection or tunnel holds no buffer\n",
        mib(per),
        c.limits.max_connections,
        c.workers,
        if c.workers == 1 { "" } else { "s" },
        per as f64 / 1024.0,
        if client_tls { " (TLS to clients included)" } else { "" },
        TLS_BYTES / 1024,
        mib(per + TLS_BYTES),
        PER_WORKER_BYTES / (1024 * 1024),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_costs_its_state_two_buffers_and_tls_where_spoken() {
        let k = 1024;
        for (head, client_tls, backend_tls, want) in [
            (8 * k, false, false, STATE_BYTES + 2 * 32 * k),
            (32 * k, false, false, STATE_BYTES + 2 * 32 * k),
            (64 * k, false, false, STATE_BYTES + 2 * 64 * k),
            (8 * k, true, false, STATE_BYTES + 2 * 32 * k + TLS_BYTES),
            (8 * k, true, true, STATE_BYTES + 2 * 32 * k + 2 * TLS_BYTES),
        ] {
            assert_eq!(
                per_connection(head, client_tls, backend_tls),
                want,
                "head {head} tls {client_tls}/{backend_tls}"
            );
        }
    }
}
