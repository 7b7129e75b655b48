//! The proxy's admin side, on a listener of its own (`--admin-listen`): `/metrics` (the
//! Prometheus text of the recorder the binary installed), `/healthz` (the process lives)
//! and `/readyz` (the store answers within `--ready-timeout-ms`, else 503). None of these
//! ever reaches the upstream, and the guarded listener never answers them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use idem::{Key, Scope, Store};
use idem_http::Problem;
use metrics_exporter_prometheus::PrometheusHandle;

/// What the admin routes read.
#[derive(Clone)]
struct Admin {
    store: Arc<dyn Store>,
    exposition: Option<PrometheusHandle>,
    ready_timeout: Duration,
}

/// The admin routes over `store`; `/metrics` renders `exposition` (empty without one).
pub(crate) fn router(
    store: Arc<dyn Store>,
    exposition: Option<PrometheusHandle>,
    ready_timeout: Duration,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Admin {
            store,
            exposition,
            ready_timeout,
        })
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let text = admin
        .exposition
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers a read of a key no client can send (the scope is the
/// admin's own) within the deadline: the answer itself does not matter, only that it came.
async fn readyz(State(admin): State<Admin>) -> Response {
    let probe = Scope::new("idem-proxy:readyz").and_then(|scope| Ok((scope, Key::new("probe")?)));
    let Ok((scope, key)) = probe else {
        return not_ready("The readiness probe could not be built.".to_owned());
    };
    match tokio::time::timeout(admin.ready_timeout, admin.store.get(&scope, &key)).await {
        Ok(Ok(_)) => "ready\n".into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the store failed");
            not_ready("The idempotency store failed.".to_owned())
        }
        Err(_) => not_ready(format!(
            "The idempotency store did not answer within {} ms.",
            admin.ready_timeout.as_millis()
        )),
    }
}

fn not_ready(detail: String) -> Response {
    Problem {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "not_ready",
        title: "Not ready",
        detail,
    }
    .to_response(None)
}
