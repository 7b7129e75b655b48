//! idem's entry in the peer comparison: an axum app whose `POST /work` sits behind
//! `idem_http::IdempotencyLayer` over `idem_redis::RedisStore`. The handler does the
//! comparison's fixed work (1 ms of waiting) and counts its runs (`GET /runs`).
//!
//! ```text
//! cargo run --release -p idem-bench --example peer_idem -- --redis redis://127.0.0.1:6379 --prefix bench:idem:
//! ```

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
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
            post(common::work).layer(IdempotencyLayer::new(store, config)),
        )
        .route("/runs", get(common::runs))
        .route("/session", get(|| async { "no session needed" }))
        .with_state(runs);
    common::serve(&cli.listen, app).await?;
    Ok(())
}
