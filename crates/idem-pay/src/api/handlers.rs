//! The handlers: read and check the request, call the [`Service`](crate::service::Service),
//! answer. Service calls run in their own task, so a client that hangs up mid-call does not
//! cut a transaction short.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{App, BODY_LIMIT_BYTES};
use crate::model::Answer;
use crate::validate::{self, NewAccount, NewPayment, NewRefund};
use crate::{Error, Result, Tenant};

/// A JSON request body, at most [`BODY_LIMIT_BYTES`]: declared as JSON, or undeclared (a
/// client that omits `Content-Type` still sends JSON here; another declared type is 415).
pub(crate) struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(request: Request, _: &S) -> Result<Self> {
        check_idempotency_key(request.headers())?;
        let declared_json = match request.headers().get(header::CONTENT_TYPE) {
            None => true,
            Some(value) => value
                .to_str()
                .ok()
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase()
                })
                .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json")),
        };
        if !declared_json {
            return Err(Error::UnsupportedMediaType);
        }
        let too_large = Error::PayloadTooLarge {
            limit_bytes: BODY_LIMIT_BYTES,
        };
        let declared_len = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Body = request.into_body();
        if declared_len.is_some_and(|n| n > BODY_LIMIT_BYTES as u64) {
            drain(body).await;
            return Err(too_large);
        }
        let mut body = body;
        let mut bytes = Vec::new();
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|error| {
                // The server gives every body a deadline (`idem_http::server`): past it,
                // 408 and nothing read or changed.
                if idem_http::BodyDeadlineElapsed::found_in(&error) {
                    return Error::RequestTimeout;
                }
                Error::invalid("body", format!("the body could not be read: {error}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > BODY_LIMIT_BYTES {
                    drain(body).await;
                    return Err(too_large);
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(Self(bytes.into()))
    }
}

/// Reads and drops what is left of an oversized body (up to [`DRAIN_MAX_BYTES`], for at most
/// a second), so that the client, still sending, reads the 413 instead of a reset connection.
async fn drain(body: Body) {
    let limited = http_body_util::Limited::new(body, DRAIN_MAX_BYTES);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        http_body_util::BodyExt::collect(limited),
    )
    .await;
}

/// The most of an oversized body read before answering 413; past it the connection closes.
const DRAIN_MAX_BYTES: usize = 1024 * 1024;

/// Payments are keyed by `order_id` whatever `Idempotency-Key` says; a key that is sent
/// must still be a valid one (DESIGN §4: an invalid key is 400). It is read by
/// [`idem::key_from_header`], as the layer and `idem proxy` read it: an sf-string (`"abc"`)
/// or a bare token.
fn check_idempotency_key(headers: &HeaderMap) -> Result<()> {
    let values = headers.get_all(idem::KEY_HEADER).iter();
    idem::key_from_header(values.map(HeaderValue::as_bytes))
        .map(drop)
        .map_err(|error| Error::invalid(idem::KEY_HEADER, error.to_string()))
}

fn path_id(field: &str, path: Result<Path<String>, PathRejection>) -> Result<String> {
    let Path(value) = path.map_err(|e| Error::invalid(field, e.body_text()))?;
    validate::id(field, &value)?;
    Ok(value)
}

async fn spawn<F>(call: F) -> Result<Answer>
where
    F: std::future::Future<Output = Result<Answer>> + Send + 'static,
{
    tokio::spawn(call)
        .await
        .map_err(|e| Error::Internal(format!("service task failed: {e}")))?
}

pub(super) async fn open_account(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let request = NewAccount::from_json(&body)?;
    spawn(async move { app.service.open_account(&tenant, &request).await }).await
}

pub(super) async fn account(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer> {
    let account_id = path_id("account_id", path)?;
    app.service.account(&tenant, &account_id).await
}

pub(super) async fn pay(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let request = NewPayment::from_json(&body)?;
    spawn(async move { app.service.pay(&tenant, &request).await }).await
}

pub(super) async fn payment(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer> {
    let order_id = path_id("order_id", path)?;
    app.service.payment(&tenant, &order_id).await
}

pub(super) async fn refund(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let order_id = path_id("order_id", path)?;
    let request = NewRefund::from_json(&body)?;
    spawn(async move { app.service.refund(&tenant, &order_id, &request).await }).await
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn metrics(State(app): State<App>) -> Response {
    let text = app.service.metrics().render();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(super) async fn openapi(State(app): State<App>) -> Response {
    let mut response = app.openapi.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) async fn no_route() -> Error {
    Error::RouteNotFound
}
