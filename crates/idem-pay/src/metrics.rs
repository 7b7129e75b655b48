//! `GET /metrics` in the Prometheus text format, written by hand: requests by route and
//! outcome, a latency histogram per route, retries of transient database failures, and the
//! Redis cache's hits, misses and errors.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How a request ended, as counted in `idem_pay_requests_total{outcome=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// The call ran and its answer was made now.
    Executed,
    /// The first answer was returned again.
    Replayed,
    /// The key was reused with other parameters (422 `*_conflict`).
    Conflict,
    /// The same key is being executed elsewhere. Payments never answer this: a duplicate
    /// waits on the order's row and then replays; kept so the series exists.
    InFlight,
    /// A business rule refused it (402, 422 `refund_exceeds_payment`).
    Declined,
    /// The request was malformed (400, 405, 413, 415).
    Invalid,
    /// No live API key (401).
    Unauthorized,
    /// The account, payment or route does not exist (404).
    NotFound,
    /// The service failed (5xx).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Executed,
        Outcome::Replayed,
        Outcome::Conflict,
        Outcome::InFlight,
        Outcome::Declined,
        Outcome::Invalid,
        Outcome::Unauthorized,
        Outcome::NotFound,
        Outcome::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::Replayed => "replayed",
            Outcome::Conflict => "conflict",
            Outcome::InFlight => "in_flight",
            Outcome::Declined => "declined",
            Outcome::Invalid => "invalid",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not_found",
            Outcome::Failed => "failed",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// The service's counters; cheap to update from every request.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, Outcome), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    retries: AtomicU64,
    memory_hits: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// The Redis front, whose own count of failed calls is exposed.
    cache: std::sync::OnceLock<idem_redis::ReplayCache>,
}

impl Metrics {
    /// Counts one request on `route` (the route template, e.g. `/v1/payments/{order_id}`).
    pub fn observe(&self, method: &str, route: &str, outcome: Outcome, elapsed: Duration) {
        // One key; split back into `method` and `route` labels when rendered.
        let route = format!("{method} {route}");
        if let Ok(mut requests) = self.requests.lock() {
            for o in Outcome::ALL {
                requests.entry((route.clone(), o)).or_insert(0);
            }
            *requests.entry((route.clone(), outcome)).or_insert(0) += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let h = latency.entry(route).or_default();
            let s = elapsed.as_secs_f64();
            for (count, bound) in h.counts.iter_mut().zip(BUCKETS_S) {
                if s <= bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum_s += s;
        }
    }

    /// Counts one retry of a transaction after a transient failure.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries counted so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn memory_hit(&self) {
        self.memory_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Exposes `cache`'s failed calls as `idem_pay_cache_errors_total` (the first cache
    /// given is kept).
    pub(crate) fn watch_cache(&self, cache: idem_redis::ReplayCache) {
        let _ = self.cache.set(cache);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP idem_pay_requests_total Requests by route and outcome."
        );
        let _ = writeln!(out, "# TYPE idem_pay_requests_total counter");
        if let Ok(requests) = self.requests.lock() {
            for ((key, outcome), n) in requests.iter() {
                let route = labels(key);
                let _ = writeln!(
                    out,
                    "idem_pay_requests_total{{{route},outcome=\"{}\"}} {n}",
                    outcome.as_str()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP idem_pay_request_duration_seconds Request latency by route."
        );
        let _ = writeln!(out, "# TYPE idem_pay_request_duration_seconds histogram");
        if let Ok(latency) = self.latency.lock() {
            for (key, h) in latency.iter() {
                let route = labels(key);
                for (count, bound) in h.counts.iter().zip(BUCKETS_S) {
                    let _ = writeln!(
                        out,
                        "idem_pay_request_duration_seconds_bucket{{{route},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "idem_pay_request_duration_seconds_bucket{{{route},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "idem_pay_request_duration_seconds_sum{{{route}}} {}",
                    h.sum_s
                );
                let _ = writeln!(
                    out,
                    "idem_pay_request_duration_seconds_count{{{route}}} {}",
                    h.count
                );
            }
        }
        let counters = [
            (
                "idem_pay_db_retries_total",
                "Transactions retried after a serialization failure, deadlock or busy database.",
                &self.retries,
            ),
            (
                "idem_pay_memory_hits_total",
                "Replays served from this node's memory of settled answers.",
                &self.memory_hits,
            ),
            (
                "idem_pay_cache_hits_total",
                "Replays served from Redis.",
                &self.cache_hits,
            ),
            (
                "idem_pay_cache_misses_total",
                "Redis lookups that found nothing usable.",
                &self.cache_misses,
            ),
        ];
        let cache_errors = self.cache.get().map_or(0, |c| c.stats().errors);
        let counters = counters
            .into_iter()
            .map(|(name, help, value)| (name, help, value.load(Ordering::Relaxed)))
            .chain([(
                "idem_pay_cache_errors_total",
                "Redis calls that failed (answered from SQL instead).",
                cache_errors,
            )]);
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// `method="POST",route="/v1/payments"` from the key `POST /v1/payments`.
fn labels(key: &str) -> String {
    let (method, route) = key.split_once(' ').unwrap_or(("", key));
    format!("method=\"{method}\",route=\"{route}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_outcome() {
        let metrics = Metrics::default();
        metrics.observe(
            "POST",
            "/v1/payments",
            Outcome::Executed,
            Duration::from_millis(3),
        );
        metrics.observe(
            "POST",
            "/v1/payments",
            Outcome::Replayed,
            Duration::from_millis(1),
        );
        metrics.observe(
            "POST",
            "/v1/payments",
            Outcome::Replayed,
            Duration::from_secs(9),
        );
        metrics.retried();
        let text = metrics.render();
        assert!(text.contains(
            "idem_pay_requests_total{method=\"POST\",route=\"/v1/payments\",outcome=\"replayed\"} 2"
        ));
        assert!(text.contains(
            "idem_pay_requests_total{method=\"POST\",route=\"/v1/payments\",outcome=\"in_flight\"} 0"
        ));
        assert!(text.contains(
            "idem_pay_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/payments\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "idem_pay_request_duration_seconds_count{method=\"POST\",route=\"/v1/payments\"} 3"
        ));
        assert!(text.contains("idem_pay_db_retries_total 1"));
    }
}
