//! Process-wide counters, shared by all workers as atomics, and their Prometheus text
//! rendering for the admin endpoint. Updating a counter is one relaxed atomic add; the
//! per-route table is behind a read-write lock that every worker read-locks once per
//! request to find its row (write-locked only the first time a route is seen), so the
//! cost of sharing is one uncontended-in-the-common-case reader count per request.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::route::RouteLabel;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Requests of one route by status class (1xx..5xx) plus those with no status.
#[derive(Default)]
pub struct RouteCounters {
    by_class: [AtomicU64; 6],
}

#[derive(Default)]
pub struct Metrics {
    /// Per route label; `None` counts requests that never reached a route.
    routes: RwLock<Vec<(Option<RouteLabel>, Arc<RouteCounters>)>>,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    /// Request bodies and tunnel bytes towards backends.
    pub bytes_in: AtomicU64,
    /// Response bodies and tunnel bytes towards clients.
    pub bytes_out: AtomicU64,
    pub open_connections: AtomicI64,
    pub open_tunnels: AtomicI64,
    pub connect_errors: AtomicU64,
    pub pool_reused: AtomicU64,
    pub pool_new: AtomicU64,
    /// Access lines dropped because stdout did not take them (shared with the writer).
    pub access_log_dropped: Arc<AtomicU64>,
}

impl Metrics {
    fn route(&self, label: Option<RouteLabel>) -> Arc<RouteCounters> {
        if let Ok(routes) = self.routes.read() {
            if let Some((_, c)) = routes.iter().find(|(l, _)| *l == label) {
                return Arc::clone(c);
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = routes.iter().find(|(l, _)| *l == label) {
            return Arc::clone(c);
        }
        let c = Arc::new(RouteCounters::default());
        routes.push((label, Arc::clone(&c)));
        c
    }

    /// Counts one finished request (`label`: `proxy[0]`, `rewrite[1]`, or `None`
    /// shown as `-`).
    pub fn request(&self, label: Option<RouteLabel>, status: u16, elapsed: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100),
            _ => 0,
        };
        self.route(label).by_class[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.duration_buckets[i].fetch_add(1, Relaxed);
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_sum_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP sidecar_requests_total Requests answered, by route and status class.");
        let _ = writeln!(out, "# TYPE sidecar_requests_total counter");
        if let Ok(routes) = self.routes.read() {
            for (label, c) in routes.iter() {
                let label = label.map_or_else(|| "-".to_string(), |l| l.to_string());
                for (class, n) in c.by_class.iter().enumerate() {
                    let n = n.load(Relaxed);
                    let class = if class == 0 { "none".to_string() } else { format!("{class}xx") };
                    let _ = writeln!(out, "sidecar_requests_total{{route=\"{label}\",status=\"{class}\"}} {n}");
                }
            }
        }
        let _ = writeln!(out, "# HELP sidecar_request_duration_seconds Time from request head to end of response.");
        let _ = writeln!(out, "# TYPE sidecar_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.duration_buckets[i].load(Relaxed);
            let _ = writeln!(out, "sidecar_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.duration_count.load(Relaxed);
        let _ = writeln!(out, "sidecar_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.duration_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "sidecar_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "sidecar_request_duration_seconds_count {count}");
        for (name, kind, help, value) in [
            (
                "sidecar_bytes_in_total",
                "counter",
                "Bytes sent to backends (bodies and tunnels).",
                self.bytes_in.load(Relaxed) as i64,
            ),
            (
                "sidecar_bytes_out_total",
                "counter",
                "Bytes sent to clients (bodies and tunnels).",
                self.bytes_out.load(Relaxed) as i64,
            ),
            ("sidecar_open_connections", "gauge", "Open client connections.", self.open_connections.load(Relaxed)),
            ("sidecar_open_tunnels", "gauge", "Open WebSocket tunnels.", self.open_tunnels.load(Relaxed)),
            (
                "sidecar_backend_connect_errors_total",
                "counter",
                "Failed backend connects.",
                self.connect_errors.load(Relaxed) as i64,
            ),
            (
                "sidecar_pool_reused_total",
                "counter",
                "Requests sent on a pooled backend connection.",
                self.pool_reused.load(Relaxed) as i64,
            ),
            ("sidecar_pool_new_total", "counter", "Backend connections opened.", self.pool_new.load(Relaxed) as i64),
            (
                "sidecar_access_log_dropped_total",
                "counter",
                "Access lines dropped because stdout did not take them.",
                self.access_log_dropped.load(Relaxed) as i64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.request(Some(RouteLabel::Proxy(0)), 200, Duration::from_millis(3));
        m.request(Some(RouteLabel::Proxy(0)), 502, Duration::from_millis(30));
        m.request(None, 400, Duration::from_micros(10));
        let mut out = String::new();
        m.render(&mut out);
        for want in [
            "sidecar_requests_total{route=\"proxy[0]\",status=\"2xx\"} 1",
            "sidecar_requests_total{route=\"proxy[0]\",status=\"5xx\"} 1",
            "sidecar_requests_total{route=\"-\",status=\"4xx\"} 1",
            "sidecar_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "sidecar_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "sidecar_request_duration_seconds_count 3",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
