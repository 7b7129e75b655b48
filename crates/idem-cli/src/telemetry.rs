//! The process's metrics recorder for `idem serve` and `idem proxy`: the Prometheus
//! exporter, installed once, its text served by `/metrics`. The libraries record through
//! the `metrics` facade; only the binary chooses the exporter.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// How often the recorder drains its histograms' samples into buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's and returns the handle that renders it.
///
/// # Errors
/// When a recorder is already installed (this is called once, by `run`).
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    idem_pay::metrics::prometheus_builder()
        .install_recorder()
        .map_err(|error| anyhow::anyhow!("installing the metrics recorder: {error}"))
}

/// Keeps the recorder's memory bounded between scrapes; runs until the runtime stops.
pub(crate) fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}
