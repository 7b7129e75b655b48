//! The request span as an OpenTelemetry span (feature `otel`): a child of the caller's
//! span when the request came with a valid `traceparent`, so the logged `trace_id` and the
//! exported trace are one. The process installs the exporter (`idem --otlp-endpoint`).

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::Context;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace::{TraceId, TraceParent};

/// Makes `span` a child of `parent` when there is one, and returns the trace id it is
/// exported under (a random one when no OpenTelemetry layer is installed).
pub(crate) fn join(span: &Span, parent: Option<TraceParent>) -> TraceId {
    if let Some(parent) = parent {
        let remote = SpanContext::new(
            OtelTraceId::from_bytes(parent.trace_id.as_u128().to_be_bytes()),
            SpanId::from_bytes(parent.parent_id.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Without an OpenTelemetry layer there is nothing to join; the id stays the caller's.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().trace_id();
    TraceId::from_u128(u128::from_be_bytes(exported.to_bytes()))
        .or(parent.map(|parent| parent.trace_id))
        .unwrap_or_else(TraceId::random)
}
