//! [`Idempotency`]: the service that guards each request of the service it wraps.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use idem::BoxError;
use tower_service::Service;
use tracing::Instrument;

use crate::flow;
use crate::future::ResponseFuture;
use crate::layer::Shared;

/// Wraps a service so that guarded requests (POST and PATCH by default) run once per
/// idempotency key and their answer is replayed to retries. Built by
/// [`crate::IdempotencyLayer`].
///
/// The inner service sees `Request<axum::body::Body>`: a guarded body arrives buffered,
/// an unguarded one streamed.
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Idempotency<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Use the service `poll_ready` made ready; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        if !shared.config.guards(request.method()) {
            return ResponseFuture::new(flow::pass_through(inner, request.map(Body::new)));
        }
        // One span per guarded request: the key only as its hash, never the body.
        let span = tracing::info_span!(
            "idem_request",
            method = %request.method(),
            path = request.uri().path(),
            store = shared.store.name(),
            key_hash = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        ResponseFuture::new(flow::guard(shared, inner, request).instrument(span))
    }
}

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}
