//! The HTTP API of DESIGN §5 on axum: the routes, how an [`Answer`] is sent, and the
//! middleware that counts every request and turns axum's own plain 404/405 answers into
//! problem+json.

mod auth;
pub(crate) mod handlers;

pub use auth::Auth;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::Outcome;
use crate::model::Answer;
use crate::problem::PROBLEM_JSON;
use crate::service::Service;
use crate::Error;

/// The largest request body accepted (DESIGN §5: over 64 KiB is 413).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) service: Service,
    pub(crate) openapi: Bytes,
}

/// The routes of DESIGN §5 on `service`, plus `GET /openapi.json`; `/v1` requests are
/// authenticated as `auth` says (DESIGN §5a), the service endpoints never.
pub fn router(service: Service, auth: Auth) -> Router {
    let ((v1, open), document) = routes();
    let app = App {
        service,
        openapi: crate::openapi::served(document).to_string().into(),
    };
    let v1 = v1.route_layer(middleware::from_fn_with_state(auth, auth::authenticate));
    Router::new()
        .merge(v1)
        .merge(open)
        .route_layer(middleware::from_fn_with_state(app.clone(), track))
        .fallback(handlers::no_route)
        .layer(middleware::map_response(plain_errors_as_problems))
        .with_state(app)
}

/// The routes, `/v1` and the service endpoints apart, and the OpenAPI document of both:
/// each handler is routed and documented by the same `routes!` call, from its
/// `#[utoipa::path]`, so no route goes undocumented and no documented one unrouted.
pub(crate) fn routes() -> ((Router<App>, Router<App>), utoipa::openapi::OpenApi) {
    let (v1, v1_paths) = OpenApiRouter::with_openapi(crate::openapi::Root::openapi())
        .routes(routes!(handlers::open_account))
        .routes(routes!(handlers::account))
        .routes(routes!(handlers::pay))
        .routes(routes!(handlers::payment))
        .routes(routes!(handlers::refund))
        .split_for_parts();
    let (open, open_paths) = OpenApiRouter::new()
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::openapi))
        .split_for_parts();
    ((v1, open), v1_paths.merge_from(open_paths))
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        let outcome = if self.replayed {
            Outcome::Replayed
        } else {
            Outcome::Executed
        };
        response.extensions_mut().insert(outcome);
        response
    }
}

/// Counts the request by route template and outcome, with its latency, and runs it in a
/// `pay_request` span with the route, the store, the outcome and the business key's hash
/// (`key_hash`, recorded by the handlers of payments and refunds; never the key itself).
async fn track(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "pay_request",
        route = route.as_str(),
        store = app.service.db().backend().name(),
        key_hash = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .copied()
        .unwrap_or_else(|| outcome_of_status(response.status()));
    span.record("outcome", outcome.as_str());
    app.service
        .metrics()
        .observe(method.as_str(), &route, outcome, started.elapsed());
    response
}

fn outcome_of_status(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=399 => Outcome::Executed,
        404 => Outcome::NotFound,
        400..=499 => Outcome::Invalid,
        _ => Outcome::Failed,
    }
}

/// axum answers a wrong method with a bare 405; clients get problem+json everywhere.
async fn plain_errors_as_problems(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = Error::MethodNotAllowed.into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}
