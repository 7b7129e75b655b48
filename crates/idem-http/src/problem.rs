//! The one place where errors become HTTP responses: `application/problem+json` (RFC 9457)
//! with a stable `code` member, a `type` of `urn:idem:problem:<code>` (as `idem serve`
//! answers, DESIGN §4) and a human `detail`. Internal causes (store and upstream failures)
//! are logged, never shown. [`Problem`] is public so that a surface built on the layer (the
//! reverse proxy of `idem-proxy`) answers its own errors the same way.

use std::error::Error as _;
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::Error;

/// The media type of every error this crate answers with.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What precedes the `code` in every problem `type` URI, on every surface of idem; a type
/// never changes once published.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:idem:problem:";

/// What a client sees of an [`Error`]: status, stable code, title, detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine-readable `code` member, such as `idempotency_key_reused`; the
    /// `type` URI ends with it.
    pub code: &'static str,
    /// A short summary that is the same for every occurrence.
    pub title: &'static str,
    /// This occurrence, in words, with nothing internal in it.
    pub detail: String,
}

impl Problem {
    /// The problem a client is shown for `error`.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::KeyMissing => Self::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_missing",
                "Idempotency-Key is missing",
                "This endpoint requires an Idempotency-Key header, such as Idempotency-Key: \"8e03978e-40d5\".".to_owned(),
            ),
            Error::KeyInvalid { reason } => Self::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                "Idempotency-Key is invalid",
                format!("The Idempotency-Key must be a structured-field string of 1 to 255 printable ASCII characters: {reason}."),
            ),
            Error::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key reused with another payload",
                "This Idempotency-Key was already used for a request with another method, path or body; use a new key for a new request.".to_owned(),
            ),
            Error::InFlight { retry_after } => Self::new(
                StatusCode::CONFLICT,
                "request_in_flight",
                "A request with this Idempotency-Key is in progress",
                format!(
                    "The first request with this Idempotency-Key is still running; retry in {} s with the same key.",
                    retry_after_secs(*retry_after)
                ),
            ),
            Error::BodyTooLarge { limit_bytes } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
                format!("The request body is larger than {limit_bytes} bytes."),
            ),
            Error::BodyRead(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "Request body could not be read",
                "The request body ended or failed before it was complete.".to_owned(),
            ),
            Error::BodyTimeout => Self::request_timeout(),
            Error::Store(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Idempotency store unavailable",
                "The idempotency store could not be reached; nothing was done. Retry with the same key.".to_owned(),
            ),
            Error::ResponseBody(_) => Self::upstream_failed(),
        }
    }

    /// 502 `upstream_failed`: the service behind the layer (or behind a proxy) failed
    /// before its answer was complete; the client may retry with the same key.
    pub fn upstream_failed() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            "Upstream failed",
            "The service behind this endpoint did not answer; retry with the same key.".to_owned(),
        )
    }

    /// 408 `request_timeout`: the request body did not arrive whole before its deadline;
    /// nothing was run. `idem serve` answers the same code.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request timeout",
            "The request body did not arrive in time; nothing was done. Send it again, faster."
                .to_owned(),
        )
    }

    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            code,
            title,
            detail,
        }
    }

    /// The `type` URI: `urn:idem:problem:<code>`.
    pub fn type_uri(&self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.code)
    }

    /// The problem+json document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        })
    }

    /// This problem as an `application/problem+json` response, with a `Retry-After` header
    /// when `retry_after` is given (whole seconds, rounded up, at least 1).
    pub fn to_response(&self, retry_after: Option<Duration>) -> Response {
        let mut response = Response::new(Body::from(self.to_json().to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(retry_after) = retry_after {
            headers.insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
        }
        response
    }
}

/// `Retry-After` is whole seconds: round up, and never tell a client to retry at once.
pub(crate) fn retry_after_secs(retry_after: Duration) -> u64 {
    retry_after.as_millis().div_ceil(1000).max(1) as u64
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = Problem::of(&self);
        if problem.status.is_server_error() {
            tracing::error!(error = %self, cause = ?self.source(), code = problem.code, "request failed");
        } else {
            tracing::debug!(error = %self, code = problem.code, "request refused");
        }
        let retry_after = match &self {
            Error::InFlight { retry_after } => Some(*retry_after),
            _ if self.is_transient() || matches!(self, Error::Store(_)) => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        };
        problem.to_response(retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn store_failure_hides_its_cause() {
        let cause = std::io::Error::other("password=hunter2 at db.internal:5432");
        let error = Error::Store(idem::StoreError::Unavailable(Box::new(cause)));
        let json = Problem::of(&error).to_json().to_string();
        assert!(
            json.contains("\"urn:idem:problem:store_unavailable\""),
            "{json}"
        );
        assert!(!json.contains("hunter2") && !json.contains("db.internal"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn type_is_the_urn_of_the_code() {
        let errors = [
            Error::KeyMissing,
            Error::KeyInvalid { reason: "x".into() },
            Error::KeyReused,
            Error::InFlight {
                retry_after: Duration::from_secs(1),
            },
            Error::BodyTooLarge { limit_bytes: 1 },
            Error::BodyRead("cut".into()),
            Error::BodyTimeout,
            Error::Store(idem::StoreError::Unavailable("down".into())),
            Error::ResponseBody("cut".into()),
        ];
        for error in &errors {
            let json = Problem::of(error).to_json();
            let code = json["code"].as_str().expect("a code member");
            assert_eq!(json["type"], format!("urn:idem:problem:{code}"));
            // snake_case, like the payment service's codes.
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn in_flight_is_409_with_retry_after() {
        let response = Error::InFlight {
            retry_after: Duration::from_millis(2500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
    }
}
