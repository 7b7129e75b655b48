//! Latency histograms per kind of request, errors by cause, and the figures made of them.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly, in microseconds (one minute); slower ones saturate.
const LATENCY_US_MAX: u64 = 60_000_000;

/// Latencies and error count of one kind of request.
#[derive(Debug, Clone)]
pub struct Recorder {
    latency_us: Histogram<u64>,
    errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            // Three significant digits over 1 µs..60 s: constant bounds, so construction
            // cannot fail.
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("constant histogram bounds are valid"),
            errors: 0,
        }
    }
}

impl Recorder {
    /// Records one answered request (errors too: their latency is real load).
    pub fn record(&mut self, latency: Duration, error: bool) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(us);
        self.errors += u64::from(error);
    }

    /// Adds another recorder's counts to this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: `add` only fails on a bounds mismatch, and saturates otherwise.
        let _ = self.latency_us.add(&other.latency_us);
        self.errors += other.errors;
    }

    /// Requests recorded.
    pub fn count(&self) -> u64 {
        self.latency_us.len()
    }

    /// The figures of this kind over a run of `elapsed`.
    pub fn figures(&self, elapsed: Duration) -> Figures {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1_000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Figures {
            requests: self.count(),
            errors: self.errors,
            rps: self.count() as f64 / secs,
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: self.latency_us.max() as f64 / 1_000.0,
        }
    }
}

/// Throughput and latency of one kind of request over a run.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Figures {
    /// Requests answered (errors included).
    pub requests: u64,
    /// Requests whose answer was not the expected one, or that got no answer.
    pub errors: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Highest latency, milliseconds.
    pub max_ms: f64,
}

/// Recorders for every kind of one load, plus each cause of error and how often it came.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// By kind name.
    pub kinds: BTreeMap<&'static str, Recorder>,
    /// By "kind: cause".
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Records one request of `kind`; `error` is the cause when the answer was unexpected.
    pub fn record(&mut self, kind: &'static str, latency: Duration, error: Option<String>) {
        self.kinds
            .entry(kind)
            .or_default()
            .record(latency, error.is_some());
        if let Some(cause) = error {
            *self.errors.entry(format!("{kind}: {cause}")).or_default() += 1;
        }
    }

    /// Adds another tally (another client's) to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (kind, recorder) in &other.kinds {
            self.kinds.entry(kind).or_default().merge(recorder);
        }
        for (cause, n) in &other.errors {
            *self.errors.entry(cause.clone()).or_default() += n;
        }
    }

    /// One recorder over every kind.
    pub fn total(&self) -> Recorder {
        let mut all = Recorder::default();
        for recorder in self.kinds.values() {
            all.merge(recorder);
        }
        all
    }

    /// The figures by kind over a run of `elapsed`.
    pub fn figures(&self, elapsed: Duration) -> BTreeMap<String, Figures> {
        self.kinds
            .iter()
            .map(|(k, r)| ((*k).to_owned(), r.figures(elapsed)))
            .collect()
    }
}

/// The median of some numbers (the mean of the middle two for an even count), 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_merges_counts_errors_and_quantiles() {
        let mut a = Tally::default();
        for ms in 1..=100 {
            a.record("fresh", Duration::from_millis(ms), None);
        }
        let mut b = Tally::default();
        b.record("fresh", Duration::from_millis(500), Some("500".into()));
        b.record("replay", Duration::from_millis(2), None);
        a.merge(&b);
        let figures = a.figures(Duration::from_secs(1));
        let fresh = figures["fresh"];
        assert_eq!((fresh.requests, fresh.errors), (101, 1));
        assert!((fresh.p50_ms - 51.0).abs() < 0.1, "p50 {}", fresh.p50_ms);
        assert!((fresh.max_ms - 500.0).abs() < 1.0, "max {}", fresh.max_ms);
        assert_eq!(a.errors["fresh: 500"], 1);
        assert_eq!(a.total().count(), 102);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
