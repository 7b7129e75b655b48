//! The proxy's one error type: why `idem proxy` could not start, or why a request could not
//! be forwarded. The layer's own refusals (a missing key, a reused one, …) are
//! [`idem_http::Error`]s and never reach this type.

use std::error::Error as _;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use idem::BoxError;
use idem_http::Problem;

/// Why `idem proxy` could not start, or could not forward a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is unusable: an unknown method, a bad header name or upstream URL, a zero
    /// lease or TTL, a database URL of an unknown kind.
    #[error("invalid option: {0}")]
    Config(String),
    /// The store could not be opened: unreachable, refused, or failed to migrate.
    #[error("could not open the idempotency store")]
    StoreOpen(#[source] BoxError),
    /// The listening socket could not be bound or served, or the data directory created.
    #[error("I/O failed: {what}")]
    Io {
        /// What was being done, such as `bind 127.0.0.1:8080`.
        what: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The upstream could not be reached or broke off while answering (HTTP 502).
    #[error("the upstream did not answer")]
    Upstream(#[source] BoxError),
    /// The client's body, streamed to the upstream unguarded, did not arrive whole before
    /// its deadline (HTTP 408 `request_timeout`).
    #[error("the request body did not arrive in time")]
    BodyTimeout,
}

impl Error {
    /// True when the same request sent again later may succeed (the upstream was down):
    /// the client should retry with the same key. Start-up failures are never transient.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Upstream(_))
    }

    /// What a client is shown: `upstream_failed` (502), as the layer answers when the
    /// service it wraps fails; anything else is an internal error, its cause not shown.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Upstream(_) => Problem::upstream_failed(),
            Self::BodyTimeout => Problem::request_timeout(),
            Self::Config(_) | Self::StoreOpen(_) | Self::Io { .. } => Problem {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                title: "Internal error",
                detail: "An internal error occurred.".to_owned(),
            },
        }
    }
}

/// A request that could not be forwarded: problem+json, with `Retry-After: 1` when a retry
/// may succeed; the cause is logged, never shown.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status.is_server_error() {
            tracing::error!(error = %self, cause = ?self.source(), code = problem.code, "request failed");
        } else {
            tracing::debug!(error = %self, code = problem.code, "request refused");
        }
        problem.to_response(self.is_transient().then_some(Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, RETRY_AFTER};

    #[test]
    fn an_unreachable_upstream_is_502_with_retry_after_and_no_internals() {
        let cause = std::io::Error::other("connection refused by 10.0.0.7:3000");
        let response = Error::Upstream(Box::new(cause)).into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let json = Error::Upstream("down".into())
            .problem()
            .to_json()
            .to_string();
        assert!(
            json.contains("\"urn:idem:problem:upstream_failed\""),
            "{json}"
        );
        assert!(!json.contains("10.0.0.7"), "{json}");
    }

    #[test]
    fn start_up_failures_are_not_transient() {
        assert!(!Error::Config("x".into()).is_transient());
        assert!(!Error::StoreOpen("x".into()).is_transient());
        let problem = Error::Config("--methods: secret".into()).problem();
        assert_eq!(problem.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!problem.to_json().to_string().contains("secret"));
    }
}
