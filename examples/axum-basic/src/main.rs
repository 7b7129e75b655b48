//! An axum service whose `POST /orders` runs once per `Idempotency-Key`, however often a
//! client retries: `IdempotencyLayer` in front of an ordinary router, records in SQLite.
//!
//! Run it with `cargo run -p example-axum-basic` (it listens on 127.0.0.1:3000, or on the
//! address in `LISTEN`; records go to `./idem-data/example.db`), then send the same
//! request twice:
//!
//! ```text
//! curl -i -X POST localhost:3000/orders -H 'x-user-id: alice' \
//!      -H 'Idempotency-Key: "order-1"' -H 'content-type: application/json' \
//!      -d '{"item":"book","qty":1}'
//! ```
//!
//! The second answer is the first, byte for byte, with `Idempotent-Replayed: true`, and
//! the order count (`GET /orders`) has grown by one. Send other JSON under the same key and
//! get 422; leave the key out and get 400; send it as `bob` and bob gets his own order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use idem_http::{Config, IdempotencyLayer, InFlight};
use idem_sql::SqliteStore;
use serde::{Deserialize, Serialize};

/// What a client orders.
#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    qty: u32,
}

/// An order as stored and answered.
#[derive(Debug, Clone, Serialize)]
struct Order {
    id: u64,
    user: String,
    item: String,
    qty: u32,
}

/// The business state: a stand-in for your database.
#[derive(Default)]
struct Orders {
    by_id: BTreeMap<u64, Order>,
}

type Shared = Arc<Mutex<Orders>>;

/// Creates an order. Without the layer, a retried request would create a second one.
async fn create_order(
    State(orders): State<Shared>,
    headers: HeaderMap,
    Json(new): Json<NewOrder>,
) -> impl IntoResponse {
    let user = user_of(&headers).unwrap_or_else(|| "anonymous".to_owned());
    let order = {
        let mut orders = orders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = orders.by_id.len() as u64 + 1;
        let order = Order {
            id,
            user,
            item: new.item,
            qty: new.qty,
        };
        orders.by_id.insert(id, order.clone());
        order
    };
    let location = format!("/orders/{}", order.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
}

/// Lists every order (GET is not guarded: it always runs).
async fn list_orders(State(orders): State<Shared>) -> Json<Vec<Order>> {
    let orders = orders
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(orders.by_id.values().cloned().collect())
}

/// The authenticated user. A real service takes it from its auth middleware; this example
/// trusts a header to stay short.
fn user_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-user-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();

    std::fs::create_dir_all("idem-data")?;
    let store = SqliteStore::connect("sqlite://idem-data/example.db").await?;

    let config = Config::default()
        // Each user's keys are their own: alice can never be answered with bob's order.
        .principal(|request| user_of(&request.headers))
        // A duplicate sent while the first still runs waits for its answer (instead of 409).
        .in_flight(InFlight::Wait {
            max: Duration::from_secs(10),
        });

    let app = Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .with_state(Shared::default())
        .layer(IdempotencyLayer::new(store, config));

    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
