//! The crate's one error type: why the layer refused a request or could not finish it.
//! Each variant becomes a problem+json response in [`crate::problem`].

use std::time::Duration;

use idem::{BoxError, StoreError};

/// Why the layer refused a request, or could not finish it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint requires an idempotency key and the request has none (HTTP 400).
    #[error("the request has no idempotency key")]
    KeyMissing,
    /// The key is malformed: bad sf-string syntax, not ASCII, empty or too long (HTTP 400).
    #[error("the idempotency key is invalid: {reason}")]
    KeyInvalid {
        /// What is wrong with it, safe to show the client.
        reason: String,
    },
    /// The key was used before for a request with another payload (HTTP 422).
    #[error("the idempotency key was used for another request")]
    KeyReused,
    /// The first request with this key is still running (HTTP 409 with `Retry-After`).
    #[error("a request with this idempotency key is still in progress")]
    InFlight {
        /// How long until its lease ends.
        retry_after: Duration,
    },
    /// The request body is larger than the layer keeps (HTTP 413).
    #[error("the request body is larger than {limit_bytes} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit_bytes: usize,
    },
    /// The request body could not be read from the client (HTTP 400).
    #[error("the request body could not be read")]
    BodyRead(#[source] BoxError),
    /// The request body did not arrive whole before its deadline (HTTP 408): see
    /// [`DeadlineBody`](crate::DeadlineBody). Nothing was claimed or run.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The idempotency store failed; whatever was acquired has been released (HTTP 503).
    #[error("the idempotency store failed")]
    Store(#[from] StoreError),
    /// The wrapped service's response body failed while it was being kept (HTTP 502).
    #[error("the response body could not be read")]
    ResponseBody(#[source] BoxError),
}

impl Error {
    /// True when the same request sent again later may succeed (in flight, store down,
    /// the wrapped service's body broke off): the client should retry with the same key.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::InFlight { .. } | Self::ResponseBody(_) => true,
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}
