//! Active health checks (`[balancer.NAME.health]`), the I/O half: every `interval`, a
//! `GET path` to each member in service, over the member's own transport (`ws` is
//! checked as `http`, `wss` as `https`, verified like traffic), all at once, each
//! within `timeout`; the status line is all that is read. What the answers mean (rise,
//! fall, the guard, passive health) is `balance::probe`'s business. Runs on the first
//! worker, started by `discovery`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use rustls::ClientConfig;

use crate::balance::HealthCheck;
use crate::config::SharedBalancer;
use crate::net::connect::connect;
use crate::net::stream::deadline;
use crate::target::Url;

/// A status line longer than this is not HTTP.
const MAX_STATUS_LINE_BYTES: usize = 1024;

pub async fn run(b: Arc<SharedBalancer>, check: HealthCheck, tls: Arc<ClientConfig>) {
    loop {
        let started = Instant::now();
        let members: Vec<(usize, Url)> = {
            let bal = b.lock();
            let replicas = bal.spec().replicas.iter().enumerate();
            replicas.filter(|(_, r)| r.status.in_service()).map(|(i, r)| (i, r.url.clone())).collect()
        };
        let ex = LocalExecutor::new();
        let statuses = ex
            .run(async {
                let tasks: Vec<_> = members.iter().map(|(_, url)| ex.spawn(probe(url.clone(), &check, &tls))).collect();
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    out.push(t.await);
                }
                out
            })
            .await;
        let now = Instant::now();
        let mut transitions = Vec::new();
        {
            let mut bal = b.lock();
            for ((i, url), status) in members.iter().zip(statuses) {
                // A slot reused while its check ran belongs to another member now.
                if bal.spec().replicas.get(*i).is_some_and(|r| &r.url == url) {
                    transitions.extend(bal.check_result(*i, status, now));
                }
            }
        }
        for t in transitions {
            if t.is_fault() {
                log::warn!("{t}");
            } else {
                log::info!("{t}");
            }
        }
        let next = started + check.interval;
        crate::net::clock::sleep_until(next.max(Instant::now() + Duration::from_millis(10))).await;
    }
}

/// One check: the status of `GET path`, or `None` when no valid status line came in time.
async fn probe(url: Url, check: &HealthCheck, tls: &Arc<ClientConfig>) -> Option<u16> {
    let work = async {
        let mut conn = connect(&url, tls, check.timeout).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sidecar-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            check.path,
            url.authority()
        );
        conn.write_flush(request.as_bytes()).await.ok()?;
        loop {
            if let Some(end) = conn.buffered().iter().position(|&b| b == b'\n') {
                return parse_status_line(&conn.buffered()[..end]);
            }
            if conn.buffered().len() > MAX_STATUS_LINE_BYTES || conn.fill(MAX_STATUS_LINE_BYTES).await.ok()? == 0 {
                return None;
            }
        }
    };
    deadline(check.timeout, work).await.flatten()
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=599).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        for (line, want) in [
            (&b"HTTP/1.1 200 OK\r"[..], Some(200)),
            (b"HTTP/1.0 503 Service Unavailable", Some(503)),
            (b"HTTP/1.1 204", Some(204)),
            (b"HTTP/2 200", None),
            (b"HTTP/1.1 2000 OK", None),
            (b"HTTP/1.1 099 x", None),
            (b"SSH-2.0-OpenSSH", None),
            (b"\xff\xfe", None),
        ] {
            assert_eq!(parse_status_line(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
