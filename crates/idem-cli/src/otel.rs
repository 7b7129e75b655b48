//! OpenTelemetry export (feature `otel`, off by default): the request spans, with their
//! `trace_id`, `key_hash`, `outcome` and `store`, sent in batches over OTLP/HTTP to a
//! collector named by `--otlp-endpoint` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The span exporter; dropping it flushes the spans not yet sent.
pub(crate) struct Export(SdkTracerProvider);

impl Drop for Export {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("idem: flushing the OTLP span exporter: {error}");
        }
    }
}

/// The layer that exports spans to the collector at `endpoint` (a base URL, as the
/// standard `OTEL_EXPORTER_OTLP_ENDPOINT` is read); none without one.
///
/// # Errors
/// When the exporter cannot be built (an unusable endpoint).
pub(crate) fn layer<S>(
    endpoint: Option<&str>,
) -> anyhow::Result<Option<(OpenTelemetryLayer<S, SdkTracer>, Export)>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(base) = endpoint.filter(|base| !base.is_empty()) else {
        return Ok(None);
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
        .build()
        .map_err(|error| anyhow::anyhow!("building the OTLP span exporter: {error}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("idem").build())
        .build();
    let tracer = provider.tracer("idem");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Export(provider),
    )))
}
