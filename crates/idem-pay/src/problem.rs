//! Errors as `application/problem+json` (RFC 9457): the one place where an [`Error`] becomes
//! an HTTP response, with a stable `code` member clients branch on. Internals are logged here
//! and never shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::Outcome;
use crate::Error;

/// The `Content-Type` of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable `code` of a problem answer: DESIGN §5 names them, clients are written against
/// them, and they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// 400: bad JSON, a bad or unknown field, a bad path segment or header.
    InvalidRequest,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 413: the body is over 64 KiB.
    PayloadTooLarge,
    /// 408: the body did not arrive whole before its deadline.
    RequestTimeout,
    /// 401: no live API key (DESIGN §5a).
    Unauthorized,
    /// 404: no such route.
    NotFound,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 404: no such account.
    AccountNotFound,
    /// 404: no payment has this order id.
    PaymentNotFound,
    /// 422: the account id exists with another balance.
    AccountConflict,
    /// 422: the order id was paid with other parameters.
    OrderIdConflict,
    /// 422: the refund id was used with another amount.
    RefundIdConflict,
    /// 422: the refunds would exceed the payment.
    RefundExceedsPayment,
    /// 402: the paying side lacks the funds (not final).
    InsufficientFunds,
    /// 503: the database is busy or unreachable; retry later.
    Unavailable,
    /// 500: something broke inside; the details are in the log.
    Internal,
}

impl Code {
    /// Every code, for the OpenAPI document and tests.
    pub const ALL: [Code; 16] = [
        Code::InvalidRequest,
        Code::UnsupportedMediaType,
        Code::PayloadTooLarge,
        Code::RequestTimeout,
        Code::Unauthorized,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::AccountNotFound,
        Code::PaymentNotFound,
        Code::AccountConflict,
        Code::OrderIdConflict,
        Code::RefundIdConflict,
        Code::RefundExceedsPayment,
        Code::InsufficientFunds,
        Code::Unavailable,
        Code::Internal,
    ];

    /// The `code` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::PayloadTooLarge => "payload_too_large",
            Code::RequestTimeout => "request_timeout",
            Code::Unauthorized => "unauthorized",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::AccountNotFound => "account_not_found",
            Code::PaymentNotFound => "payment_not_found",
            Code::AccountConflict => "account_conflict",
            Code::OrderIdConflict => "order_id_conflict",
            Code::RefundIdConflict => "refund_id_conflict",
            Code::RefundExceedsPayment => "refund_exceeds_payment",
            Code::InsufficientFunds => "insufficient_funds",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status it is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::NotFound | Code::AccountNotFound | Code::PaymentNotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::AccountConflict
            | Code::OrderIdConflict
            | Code::RefundIdConflict
            | Code::RefundExceedsPayment => StatusCode::UNPROCESSABLE_ENTITY,
            Code::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `title` member: a short summary that does not change from call to call.
    pub fn title(self) -> &'static str {
        match self {
            Code::InvalidRequest => "Invalid request",
            Code::UnsupportedMediaType => "Unsupported media type",
            Code::PayloadTooLarge => "Payload too large",
            Code::RequestTimeout => "Request timeout",
            Code::Unauthorized => "Unauthorized",
            Code::NotFound => "Not found",
            Code::MethodNotAllowed => "Method not allowed",
            Code::AccountNotFound => "Account not found",
            Code::PaymentNotFound => "Payment not found",
            Code::AccountConflict => "Account exists with another balance",
            Code::OrderIdConflict => "Order id already used with other parameters",
            Code::RefundIdConflict => "Refund id already used with another amount",
            Code::RefundExceedsPayment => "Refunds would exceed the payment",
            Code::InsufficientFunds => "Insufficient funds",
            Code::Unavailable => "Service unavailable",
            Code::Internal => "Internal error",
        }
    }

    /// The `type` member: a stable URI per code.
    pub fn type_uri(self) -> String {
        format!("urn:idem:problem:{}", self.as_str())
    }

    /// How the request counts in `/metrics`.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Code::InvalidRequest
            | Code::UnsupportedMediaType
            | Code::PayloadTooLarge
            | Code::RequestTimeout
            | Code::MethodNotAllowed => Outcome::Invalid,
            Code::Unauthorized => Outcome::Unauthorized,
            Code::NotFound | Code::AccountNotFound | Code::PaymentNotFound => Outcome::NotFound,
            Code::AccountConflict | Code::OrderIdConflict | Code::RefundIdConflict => {
                Outcome::Mismatch
            }
            Code::RefundExceedsPayment | Code::InsufficientFunds => Outcome::Declined,
            Code::Unavailable | Code::Internal => Outcome::Failed,
        }
    }
}

/// The body of a problem answer (RFC 9457), sent as `application/problem+json`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:idem:problem:<code>`).
    #[serde(rename = "type")]
    #[schema(format = "uri", pattern = "^urn:idem:problem:[a-z_]+$")]
    pub type_uri: String,
    /// A short summary of the kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The stable code: what clients branch on.
    pub code: Code,
    /// The field (or header) at fault, for `invalid_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

impl Error {
    /// The stable code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidRequest { .. } => Code::InvalidRequest,
            Error::UnsupportedMediaType => Code::UnsupportedMediaType,
            Error::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Error::RequestTimeout => Code::RequestTimeout,
            Error::Unauthorized => Code::Unauthorized,
            Error::RouteNotFound => Code::NotFound,
            Error::MethodNotAllowed => Code::MethodNotAllowed,
            Error::AccountNotFound { .. } => Code::AccountNotFound,
            Error::PaymentNotFound { .. } => Code::PaymentNotFound,
            Error::AccountConflict { .. } => Code::AccountConflict,
            Error::OrderIdConflict { .. } => Code::OrderIdConflict,
            Error::RefundIdConflict { .. } => Code::RefundIdConflict,
            Error::RefundExceedsPayment { .. } => Code::RefundExceedsPayment,
            Error::InsufficientFunds { .. } => Code::InsufficientFunds,
            error if error.transient() => Code::Unavailable,
            _ => Code::Internal,
        }
    }

    /// The problem body: internals stay out of `detail` for 5xx answers.
    pub fn problem(&self) -> Problem {
        let code = self.code();
        let detail = match code {
            Code::Unavailable => "the database is busy or unreachable; retry later".to_owned(),
            Code::Internal => "an internal error occurred; it has been logged".to_owned(),
            _ => match self {
                // The detail always names the field (DESIGN §5: "naming the field").
                Error::InvalidRequest { field, detail } if detail.contains(field.as_str()) => {
                    detail.clone()
                }
                Error::InvalidRequest { field, detail } => format!("{field}: {detail}"),
                _ => self.to_string(),
            },
        };
        let field = match self {
            Error::InvalidRequest { field, .. } => Some(field.clone()),
            _ => None,
        };
        Problem {
            type_uri: code.type_uri(),
            title: code.title(),
            status: code.status().as_u16(),
            detail,
            code,
            field,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        match code {
            Code::Internal => tracing::error!(error = %self, "request failed"),
            Code::Unavailable => tracing::warn!(error = %self, "request failed, transient"),
            _ => tracing::debug!(code = code.as_str(), detail = %self, "request refused"),
        }
        // Serializing a struct of strings and integers cannot fail; the fallback keeps the
        // answer well-formed even so.
        let body = serde_json::to_vec(&self.problem()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (code.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match code {
            Code::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Code::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(code.outcome());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(error: Error) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(http_body_util::BodyExt::collect(response.into_body()))
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            serde_json::from_slice(&body).expect("json"),
        )
    }

    #[test]
    fn invalid_request_names_the_field() {
        let (status, content_type, body) = body_of(Error::invalid("amount", "must be > 0"));
        assert_eq!(status, 400);
        assert_eq!(content_type.expect("content type"), PROBLEM_JSON);
        assert_eq!(body["code"], "invalid_request");
        assert_eq!(body["field"], "amount");
        assert_eq!(body["status"], 400);
        assert_eq!(body["type"], "urn:idem:problem:invalid_request");
        assert!(body["detail"].as_str().expect("detail").contains("amount"));
    }

    #[test]
    fn every_code_has_its_status_and_a_distinct_name() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        let (status, _, body) = body_of(Error::InsufficientFunds {
            account_id: "a".into(),
        });
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (402, Some("insufficient_funds"))
        );
        let (status, _, body) = body_of(Error::OrderIdConflict {
            order_id: "o".into(),
            differs: "amount",
        });
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (422, Some("order_id_conflict"))
        );
    }

    #[test]
    fn internals_are_not_shown() {
        let (status, _, body) = body_of(Error::Corrupt("row 7 has secret".into()));
        assert_eq!(status, 500);
        assert!(!body["detail"].as_str().expect("detail").contains("secret"));
        assert!(body.get("field").is_none());
    }
}
