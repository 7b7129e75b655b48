//! The payment service's series, recorded through the [`metrics`] facade: requests by
//! route and outcome, a latency histogram per route, retries of transient database
//! failures, and replays served from this node's memory or from Redis. `GET /metrics`
//! renders them in the Prometheus text format, with every other idem series of the process
//! (the stores', the Redis front's: `idem::metrics`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Requests by `method`, `route` and `outcome`.
pub const REQUESTS_TOTAL: &str = "idem_pay_requests_total";
/// Request latency in seconds by `method` and `route`.
pub const REQUEST_DURATION_SECONDS: &str = "idem_pay_request_duration_seconds";
/// Transactions tried again after a transient database failure.
pub const DB_RETRIES_TOTAL: &str = "idem_pay_db_retries_total";
/// Replays served from this node's memory of settled answers.
pub const MEMORY_HITS_TOTAL: &str = "idem_pay_memory_hits_total";
/// Replays served from the Redis front.
pub const CACHE_HITS_TOTAL: &str = "idem_pay_cache_hits_total";
/// Lookups in the Redis front that found nothing usable.
pub const CACHE_MISSES_TOTAL: &str = "idem_pay_cache_misses_total";

/// How a request ended, as counted in `idem_pay_requests_total{outcome=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// The call ran and its answer was made now.
    Executed,
    /// The first answer was returned again. A duplicate that arrives while the first is
    /// running waits on the order's row and then replays, so it counts here too.
    Replayed,
    /// The key was reused with other parameters (422 `*_conflict`).
    Mismatch,
    /// The same key is being executed elsewhere. Payments never answer this (see
    /// `Replayed`); kept so that the series exists, as the layer's does.
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
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::Replayed => "replayed",
            Outcome::Mismatch => "mismatch",
            Outcome::InFlight => "in_flight",
            Outcome::Declined => "declined",
            Outcome::Invalid => "invalid",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not_found",
            Outcome::Failed => "failed",
        }
    }
}

/// A Prometheus recorder with idem's buckets (histograms rendered as buckets, not
/// summaries): latency in seconds, and items per batch for [`idem::metrics::BATCH_ITEMS`];
/// what `idem serve` and `idem proxy` install, and [`Metrics::isolated`] keeps.
pub fn prometheus_builder() -> PrometheusBuilder {
    let batch_items = Matcher::Full(idem::metrics::BATCH_ITEMS.to_owned());
    // Fails only on an empty list of buckets.
    PrometheusBuilder::new()
        .set_buckets(&idem::metrics::LATENCY_BUCKETS_S)
        .and_then(|b| b.set_buckets_for_metric(batch_items, &idem::metrics::BATCH_ITEMS_BUCKETS))
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Where the service's series go and what `GET /metrics` shows.
///
/// [`Metrics::global`] records through the process's recorder (installed by the binary);
/// [`Metrics::isolated`] keeps a recorder of its own, for tests and for several services in
/// one process.
#[derive(Clone, Default)]
pub struct Metrics {
    own: Option<Arc<PrometheusRecorder>>,
    exposition: Option<PrometheusHandle>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("isolated", &self.own.is_some())
            .field("exposed", &self.exposition.is_some())
            .finish()
    }
}

impl Metrics {
    /// Records through the process's recorder; `/metrics` renders `exposition`, the handle
    /// of the Prometheus recorder the binary installed (with none, it is empty).
    pub fn global(exposition: Option<PrometheusHandle>) -> Self {
        let metrics = Self {
            own: None,
            exposition,
        };
        metrics.describe();
        metrics
    }

    /// Records into a Prometheus recorder of this value's own, which `/metrics` renders:
    /// counts of one service alone (idem's other series go to the process's recorder).
    pub fn isolated() -> Self {
        let recorder = prometheus_builder().build_recorder();
        let exposition = Some(recorder.handle());
        let metrics = Self {
            own: Some(Arc::new(recorder)),
            exposition,
        };
        metrics.describe();
        metrics
    }

    fn with<T>(&self, record: impl FnOnce() -> T) -> T {
        match &self.own {
            Some(recorder) => metrics::with_local_recorder(&**recorder, record),
            None => record(),
        }
    }

    /// Describes the series and makes the counters exist at 0, so a scrape shows every one
    /// from the start.
    fn describe(&self) {
        self.with(|| {
            describe_counter!(REQUESTS_TOTAL, "Requests by route and outcome.");
            describe_histogram!(
                REQUEST_DURATION_SECONDS,
                Unit::Seconds,
                "Request latency by route."
            );
            let counters = [
                (
                    DB_RETRIES_TOTAL,
                    "Transactions retried after a serialization failure, deadlock or busy database.",
                ),
                (
                    MEMORY_HITS_TOTAL,
                    "Replays served from this node's memory of settled answers.",
                ),
                (CACHE_HITS_TOTAL, "Replays served from Redis."),
                (CACHE_MISSES_TOTAL, "Redis lookups that found nothing usable."),
            ];
            for (name, help) in counters {
                describe_counter!(name, help);
                counter!(name).increment(0);
            }
        });
    }

    /// Counts one request on `route` (the route template, e.g. `/v1/payments/{order_id}`).
    pub fn observe(&self, method: &str, route: &str, outcome: Outcome, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.with(|| {
            counter!(REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "outcome" => outcome.as_str())
                .increment(1);
            histogram!(REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
                .record(elapsed.as_secs_f64());
        });
    }

    /// Counts one retry of a transaction after a transient failure.
    pub fn retried(&self) {
        self.with(|| counter!(DB_RETRIES_TOTAL).increment(1));
    }

    pub(crate) fn memory_hit(&self) {
        self.with(|| counter!(MEMORY_HITS_TOTAL).increment(1));
    }

    pub(crate) fn cache_hit(&self) {
        self.with(|| counter!(CACHE_HITS_TOTAL).increment(1));
    }

    pub(crate) fn cache_miss(&self) {
        self.with(|| counter!(CACHE_MISSES_TOTAL).increment(1));
    }

    /// The exposition text: every series of the recorder this value renders.
    pub fn render(&self) -> String {
        self.exposition
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_outcome() {
        let metrics = Metrics::isolated();
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
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "no {line} in {text}");
        has("idem_pay_requests_total{method=\"POST\",route=\"/v1/payments\",outcome=\"replayed\"} 2");
        has("idem_pay_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/payments\",le=\"0.005\"} 2");
        has("idem_pay_request_duration_seconds_count{method=\"POST\",route=\"/v1/payments\"} 3");
        has("idem_pay_db_retries_total 1");
        has("idem_pay_memory_hits_total 0");
    }

    #[test]
    fn batch_sizes_have_item_buckets() {
        let metrics = Metrics::isolated();
        metrics.with(|| idem::metrics::batch("postgres", 40, true));
        let text = metrics.render();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "no {line} in {text}");
        has("idem_batch_items_bucket{store=\"postgres\",le=\"32\"} 0");
        has("idem_batch_items_bucket{store=\"postgres\",le=\"64\"} 1");
    }

    #[test]
    fn an_isolated_service_counts_alone() {
        let (one, other) = (Metrics::isolated(), Metrics::isolated());
        one.retried();
        assert!(one.render().contains("idem_pay_db_retries_total 1"));
        assert!(other.render().contains("idem_pay_db_retries_total 0"));
    }
}
