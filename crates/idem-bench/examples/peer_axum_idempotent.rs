//! The `axum-idempotent` crate's entry in the peer comparison: its `IdempotentLayer` in
//! header mode (`Idempotency-Key`) over a `ruts` session kept in Redis, as its README
//! sets it up. It caches only for requests that carry a session, so `GET /session` opens
//! one and the load driver sends its cookie; `POST /cleanup` deletes it at the end.
//!
//! ```text
//! cargo run --release -p idem-bench --example peer_axum_idempotent -- --redis redis://127.0.0.1:6379/0
//! ```

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use axum_idempotent::{IdempotentLayer, IdempotentOptions};
use clap::Parser;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use ruts::store::moka::MokaStore;
use ruts::store::redis::RedisStore;
use ruts::store::{SessionStore, Ttl};
use ruts::{CookieOptions, Session, SessionLayer};
use tower_cookies::CookieManagerLayer;

/// Serve the comparison's endpoint with axum-idempotent on Redis.
#[derive(Debug, Parser)]
struct Cli {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Where sessions (and so the cached responses) live: `redis`, or `memory` (its moka
    /// store, in this process) to see the layer's own behaviour where the Redis store fails.
    #[arg(long, default_value = "redis")]
    store: String,
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

async fn open_session<S: SessionStore>(session: Session<S>) -> &'static str {
    let Ok(ttl) = Ttl::new(3600) else {
        return "session not opened";
    };
    match session.set("bench", &1u8, ttl, None).await {
        Ok(()) => "session opened",
        Err(e) => {
            eprintln!("session not opened: {e}");
            "session not opened"
        }
    }
}

async fn cleanup<S: SessionStore>(session: Session<S>) -> &'static str {
    match session.delete().await {
        Ok(_) => "deleted",
        Err(_) => "not deleted",
    }
}

fn app<S: SessionStore + Send + Sync + 'static>(store: Arc<S>, runs: Arc<AtomicU64>) -> Router {
    let options = IdempotentOptions::default()
        .use_idempotency_key_header(Some("Idempotency-Key"), true)
        .expire_after(3600);
    let cookie = CookieOptions::build()
        .name("session")
        .path("/")
        .secure(false);
    Router::new()
        .route(
            "/work",
            post(common::work).layer(IdempotentLayer::<S>::new(options)),
        )
        .route("/session", get(open_session::<S>))
        .route("/cleanup", post(cleanup::<S>))
        .layer(SessionLayer::new(store).with_cookie_options(cookie))
        .layer(CookieManagerLayer::new())
        .route("/runs", get(common::runs))
        .with_state(runs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runs = Arc::new(AtomicU64::new(0));
    let app = if cli.store == "memory" {
        app(Arc::new(MokaStore::builder().build()), runs)
    } else {
        let client = Client::new(
            fred::types::config::Config::from_url(&cli.redis)?,
            None,
            None,
            None,
        );
        client.init().await?;
        app(Arc::new(RedisStore::new(Arc::new(client)).await?), runs)
    };
    common::serve(&cli.listen, app).await?;
    Ok(())
}
