//! What the peer comparison's servers share, so that each entry differs only in the
//! idempotency layer it puts in front: the fixed work behind `POST /work`, the run count
//! behind `GET /runs`, and how a server listens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{Json, Router};

/// `POST /work`: the comparison's fixed work (1 ms of waiting), counted as one run.
pub(crate) async fn work(
    State(runs): State<Arc<AtomicU64>>,
    Json(body): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({ "key": body.get("key"), "run": run }))
}

/// `GET /runs`: how many times the work ran.
pub(crate) async fn runs(State(runs): State<Arc<AtomicU64>>) -> String {
    runs.load(Ordering::SeqCst).to_string()
}

/// Serves `app` on `listen`, after printing the address it got (port 0: any free port).
///
/// # Errors
/// Binding or serving failed.
pub(crate) async fn serve(listen: &str, app: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
