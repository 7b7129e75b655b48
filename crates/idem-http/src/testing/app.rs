//! [`counting_app`]: a small service that counts how many times its handlers ran, and
//! answers `GET /count` with that number, so a test can see through any proxy whether a
//! request really ran.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The counting app's routes:
///
/// - `POST /orders`: 201 echoing the run number, the `Authorization` header and the body,
///   with `location`, `set-cookie` and `x-unstored` headers; sleeps `x-delay-ms` first.
/// - `GET /orders`: 200, counted, never guarded.
/// - `POST /flaky`: 503 on its first run, 201 after.
/// - `POST /panic`: panics on its first run, 201 after.
/// - `GET /count`: how many times the handlers above ran (not counted itself).
pub fn counting_app() -> Router {
    let runs = Arc::new(AtomicUsize::new(0));
    Router::new()
        .route("/orders", post(order).get(list))
        .route("/flaky", post(flaky))
        .route("/panic", post(panics))
        .route("/count", get(count))
        .with_state(runs)
}

/// A server running on a background task; aborted on drop.
#[derive(Debug)]
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on 127.0.0.1 with a free port.
///
/// # Panics
/// When no loopback port can be bound (a broken test machine).
pub async fn serve_counting_app(app: Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("test server stopped: {error}");
        }
    });
    Served { addr, task }
}

fn run(runs: &AtomicUsize) -> usize {
    runs.fetch_add(1, Ordering::SeqCst) + 1
}

async fn count(State(runs): State<Arc<AtomicUsize>>) -> String {
    runs.load(Ordering::SeqCst).to_string()
}

async fn order(State(runs): State<Arc<AtomicUsize>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = run(&runs);
    let delay_ms = headers
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let body = serde_json::json!({
        "run": n,
        "user": user,
        "body": String::from_utf8_lossy(&body),
    });
    (
        StatusCode::CREATED,
        [
            ("content-type", "application/json".to_owned()),
            ("location", format!("/orders/{n}")),
            ("set-cookie", format!("session=secret-{n}")),
            ("x-unstored", "1".to_owned()),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn list(State(runs): State<Arc<AtomicUsize>>) -> String {
    format!("list {}", run(&runs))
}

async fn flaky(State(runs): State<Arc<AtomicUsize>>) -> Response {
    match run(&runs) {
        1 => (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
        n => (StatusCode::CREATED, format!("ok on run {n}")).into_response(),
    }
}

#[allow(clippy::panic)]
async fn panics(State(runs): State<Arc<AtomicUsize>>) -> Response {
    let n = run(&runs);
    if n == 1 {
        panic!("the counting app panics on the first POST /panic, as tests want");
    }
    (StatusCode::CREATED, format!("ok on run {n}")).into_response()
}
