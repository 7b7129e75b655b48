//! [`serve`]: the HTTP/1.1 server `idem serve` and `idem proxy` both run, with the limits
//! that keep hostile clients from tying it up (feature `server`).
//!
//! hyper does most of the work with its own settings: a header read timeout (a client that
//! trickles its request head, or holds a kept-alive connection idle, is disconnected) and a
//! head size limit (431). On top of them: a cap on open connections (past it, a new
//! connection is closed at once while the open ones carry on) and a deadline for each
//! request body ([`DeadlineBody`]: a body that has not arrived whole in time fails its read,
//! which the services answer 408). SIGTERM-style shutdown stops accepting, lets in-flight
//! requests finish, closes idle connections, and returns.
//!
//! Each request runs in a span, `http_request`, made by tower-http's `TraceLayer` with
//! [`RequestSpan`](crate::trace::RequestSpan): its `trace_id` (the client's W3C
//! `traceparent`'s, else a fresh one) is on every log line written within the request, and
//! `RUST_LOG=tower_http=debug` adds a line per request with its status and latency.
//!
//! HTTP/1.1 (and 1.0) only: hyper bounds the time an HTTP/1 client may take to send a
//! request head, and has no such bound for a cleartext HTTP/2 connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Level;

use crate::trace::RequestSpan;
use crate::DeadlineBody;

/// How long a connection may take to send a complete request head by default.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive whole by default.
pub const BODY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers) accepted by default.
pub const MAX_HEADER_BYTES_DEFAULT: usize = 32 * 1024;
/// How many connections may be open at once by default.
pub const MAX_CLIENTS_DEFAULT: usize = 1024;

/// How long to wait before accepting again after the listener failed (out of file
/// descriptors, say), so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What one client may take of the server: time, head size, connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest a connection may take to send a complete request head, counted from
    /// when it opens or its previous answer was sent; past it the connection is closed. It
    /// also ends idle kept-alive connections.
    pub header_timeout: Duration,
    /// The longest a request body may take to arrive whole, counted from its head; past it
    /// the body's read fails with [`BodyDeadlineElapsed`](crate::BodyDeadlineElapsed).
    pub body_timeout: Duration,
    /// The largest request head accepted, in bytes; a larger one is answered 431 and the
    /// connection closed.
    pub max_header_bytes: usize,
    /// How many connections may be open at once; a new one past it is closed at once.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT_DEFAULT,
            body_timeout: BODY_TIMEOUT_DEFAULT,
            max_header_bytes: MAX_HEADER_BYTES_DEFAULT,
            max_clients: MAX_CLIENTS_DEFAULT,
        }
    }
}

/// The client's address, in every request's extensions (as axum's `ConnectInfo` would be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `service` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish (idle connections are closed) and returns.
/// A failed accept (out of file descriptors, say) is logged and retried, never fatal.
pub async fn serve<S, F>(listener: TcpListener, limits: Limits, service: S, shutdown: F)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    debug_assert!(limits.max_clients > 0, "a server that refuses every client");
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    // A 5xx is the service's own answer, already logged where it arose if it matters.
    let service = TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
        .layer(service);
    let slots = Arc::new(Semaphore::new(limits.max_clients));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refusing = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if !refusing {
                tracing::warn!(
                    max_clients = limits.max_clients,
                    "connection limit reached: refusing new connections until one closes"
                );
                refusing = true;
            }
            drop(stream);
            continue;
        };
        if refusing {
            tracing::info!("below the connection limit again: accepting connections");
            refusing = false;
        }
        let service = service.clone();
        let body_timeout = limits.body_timeout;
        let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut service = service.clone();
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
            request.extensions_mut().insert(PeerAddr(peer));
            async move {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), handler));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
