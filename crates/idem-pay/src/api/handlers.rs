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
use crate::model::{AccountBody, Answer, PaymentBody, RefundBody};
use crate::openapi::{
    AccountProblems, KeyHeader, OpenAccountProblems, PayProblems, PaymentProblems, RefundProblems,
    Replayed,
};
use crate::validate::{self, Id, NewAccount, NewPayment, NewRefund};
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

/// Names the request's business key on its span (`pay_request`), as a hash only.
fn record_key_hash(key: &str) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("key_hash", tracing::field::display(idem::key_hash(key)));
    }
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

#[utoipa::path(
    post,
    path = "/v1/accounts",
    operation_id = "open_account",
    summary = "Open an account",
    description = "Opens `account_id` with `balance`. The same call again replays the first answer; the same id with another balance is 422 `account_conflict`.",
    params(KeyHeader),
    request_body(content = NewAccount, examples(
        ("alice" = (summary = "A funded account", value = json!({"account_id": "alice", "balance": 1000}))),
        ("bob" = (summary = "An empty account", value = json!({"account_id": "bob", "balance": 0})))
    )),
    responses(
        (status = 201, description = "The account, opened by this call or by an equal one before it.", body = AccountBody<'static>,
            headers(("Idempotent-Replayed" = Replayed, description = "`true` when this is the first answer replayed, byte for byte; absent otherwise.")),
            links(("GetAccount" = (operation_id = "get_account", parameters(("account_id" = "$response.body#/account_id")))))
        ),
        OpenAccountProblems
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn open_account(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let request = NewAccount::from_json(&body)?;
    spawn(async move { app.service.open_account(&tenant, &request).await }).await
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account_id}",
    operation_id = "get_account",
    summary = "Read an account",
    params(("account_id" = Id, Path, description = "The account's id.", example = "alice")),
    responses(
        (status = 200, description = "The account.", body = AccountBody<'static>),
        AccountProblems
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn account(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer> {
    let account_id = path_id("account_id", path)?;
    app.service.account(&tenant, &account_id).await
}

#[utoipa::path(
    post,
    path = "/v1/payments",
    operation_id = "pay",
    summary = "Pay an order",
    description = "Moves `amount` from `payer` to `payee`, once per `order_id`, whatever node gets it. The same order with the same payer, payee and amount replays the first answer byte for byte with `Idempotent-Replayed: true`; with anything else different it is 422 `order_id_conflict`. `payee` must differ from `payer` (400 `invalid_request` naming `payee`). A payer short of funds is 402, not final: the same order may be paid later.",
    params(KeyHeader),
    request_body(content = NewPayment, examples(
        ("order-1" = (summary = "alice pays bob 250", value = json!({"order_id": "order-1", "payer": "alice", "payee": "bob", "amount": 250})))
    )),
    responses(
        (status = 201, description = "The payment, made by this call or by an equal one before it.", body = PaymentBody<'static>,
            headers(("Idempotent-Replayed" = Replayed, description = "`true` when this is the first answer replayed, byte for byte; absent otherwise.")),
            links(
                ("GetPayment" = (operation_id = "get_payment", parameters(("order_id" = "$response.body#/order_id")))),
                ("RefundPayment" = (operation_id = "refund_payment", parameters(("order_id" = "$response.body#/order_id"))))
            )
        ),
        PayProblems
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn pay(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let request = NewPayment::from_json(&body)?;
    record_key_hash(&request.order_id);
    spawn(async move { app.service.pay(&tenant, &request).await }).await
}

#[utoipa::path(
    get,
    path = "/v1/payments/{order_id}",
    operation_id = "get_payment",
    summary = "Read a payment by its order id",
    params(("order_id" = Id, Path, description = "The payment's order id.", example = "order-1")),
    responses(
        (status = 200, description = "The payment.", body = PaymentBody<'static>,
            links(("RefundPayment" = (operation_id = "refund_payment", parameters(("order_id" = "$response.body#/order_id")))))
        ),
        PaymentProblems
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn payment(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer> {
    let order_id = path_id("order_id", path)?;
    app.service.payment(&tenant, &order_id).await
}

#[utoipa::path(
    post,
    path = "/v1/payments/{order_id}/refunds",
    operation_id = "refund_payment",
    summary = "Refund a payment",
    description = "Moves `amount` back from the payment's payee to its payer, once per `refund_id` (unique within the payment), never more in total than the payment. The same refund again replays the first answer; the same `refund_id` with another amount is 422 `refund_id_conflict`; past the payment, 422 `refund_exceeds_payment`; a payee short of funds, 402.",
    params(
        ("order_id" = Id, Path, description = "The refunded payment's order id.", example = "order-1"),
        KeyHeader
    ),
    request_body(content = NewRefund, examples(
        ("refund-1" = (summary = "bob gives 100 back", value = json!({"refund_id": "refund-1", "amount": 100})))
    )),
    responses(
        (status = 201, description = "The refund, made by this call or by an equal one before it.", body = RefundBody<'static>,
            headers(("Idempotent-Replayed" = Replayed, description = "`true` when this is the first answer replayed, byte for byte; absent otherwise.")),
            links(("GetPayment" = (operation_id = "get_payment", parameters(("order_id" = "$response.body#/order_id")))))
        ),
        RefundProblems
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn refund(
    State(app): State<App>,
    Extension(tenant): Extension<Tenant>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> Result<Answer> {
    let order_id = path_id("order_id", path)?;
    let request = NewRefund::from_json(&body)?;
    record_key_hash(&request.refund_id);
    spawn(async move { app.service.refund(&tenant, &order_id, &request).await }).await
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "`ok`: the process serves.", body = String, content_type = "text/plain"))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Requests by route and outcome, latency, database retries, in the Prometheus text format.",
    responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(State(app): State<App>) -> Response {
    let text = app.service.metrics().render();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document of the API.", body = Object, content_type = "application/json"))
)]
pub(crate) async fn openapi(State(app): State<App>) -> Response {
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
