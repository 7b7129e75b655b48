//! idem's entry in the peer comparison: an axum app whose `POST /work` sits behind
//! `idem_http::IdempotencyLayer` over `idem_redis::RedisStore`. The handler does the
//! comparison's fixed work (1 ms of waiting) and counts its runs (`GET /runs`).
//!
//! ```text
//! cargo run --release -p idem-bench --example peer_idem -- --redis redis://127.0.0.1:6379 --prefix bench:idem:
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use idem_http::{Config, IdempotencyLayer};
use idem_redis::{RedisOptions, RedisStore};

/// Serve the comparison's endpoint with idem on Redis.
#[derive(Debug, Parser)]
struct Cli {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Prefix of every Redis key this server writes.
    #[arg(long, default_value = "idem-bench:peer:idem:")]
    prefix: String,
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

async fn work(
    State(runs): State<Arc<AtomicU64>>,
    Json(body): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({ "key": body.get("key"), "run": run }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = RedisOptions::from_url(&cli.redis)?.prefix(cli.prefix);
    let store = RedisStore::connect_with(&options).await?;
    let runs = Arc::new(AtomicU64::new(0));
    // DESIGN §4 as it ships: a duplicate of a running request gets 409 at once.
    let config = Config::default();
    let app = Router::new()
        .route(
            "/work",
            post(work).layer(IdempotencyLayer::new(store, config)),
        )
        .route(
            "/runs",
            get(|State(runs): State<Arc<AtomicU64>>| async move {
                runs.load(Ordering::SeqCst).to_string()
            }),
        )
        .route("/session", get(|| async { "no session needed" }))
        .with_state(runs);
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
