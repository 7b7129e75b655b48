//! A JetStream consumer that ships each order once, however often it is delivered: the
//! same order published twice (a publisher that timed out and sent it again under a new
//! message id) is shipped once, the shipment row and the order's idempotency record written
//! in one SQLite transaction, each message acked only after it commits.
//!
//! Run it with NATS (JetStream on) at `NATS_URL` (default `nats://127.0.0.1:4222`):
//!
//! ```text
//! cargo run -p example-consume-nats
//! ```
//!
//! It creates the stream `EXAMPLE_ORDERS_<pid>`, publishes, consumes, prints each
//! disposition and the number of shipments (1), and deletes the stream.

use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use idem::{Scope, StoredResponse, TTL_FOREVER};
use idem_consume::nats::{self, JetStreamSettler};
use idem_consume::{Config, Failure, KeySource, Received, TransactionalConsumer, TxHandler};
use idem_sql::SqliteStore;

/// Ships an order: one row in `shipments`, inside the record's transaction.
struct Ship;

#[async_trait]
impl TxHandler<sqlx::Sqlite> for Ship {
    async fn handle(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        order: Received<'_>,
    ) -> Result<StoredResponse, Failure> {
        sqlx::query("INSERT INTO shipments (order_id) VALUES (?)")
            .bind(order.key.as_str())
            .execute(&mut **tx)
            .await
            .map_err(Failure::transient)?;
        println!(
            "shipping {} (attempt {})",
            order.key.as_str(),
            order.attempt
        );
        Ok(StoredResponse::new(
            200,
            format!("shipped {}", order.key.as_str()),
        ))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = jetstream::new(async_nats::connect(&url).await?);
    let name = format!("EXAMPLE_ORDERS_{}", std::process::id());
    let (work, dead) = (format!("{name}.orders"), format!("{name}.dead"));
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![work.clone(), dead.clone()],
            ..Default::default()
        })
        .await?;
    let pull = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("shipping".into()),
            filter_subject: work.clone(),
            ..Default::default()
        })
        .await?;

    std::fs::create_dir_all("idem-data")?;
    let store = SqliteStore::connect(&format!("sqlite://idem-data/{name}.db?mode=rwc")).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS shipments (order_id TEXT NOT NULL)")
        .execute(store.pool())
        .await?;
    // The key is the business key: the same order under any message id is one order.
    let mut config = Config::new(
        Scope::new("orders|ship")?,
        KeySource::json_field("order_id"),
    );
    config.ttl = TTL_FOREVER;
    let consumer = TransactionalConsumer::new(store.clone(), config).with_handler(Ship);
    let settler = JetStreamSettler::new(js.clone(), dead);

    for message_id in ["publish-1", "publish-1-resent"] {
        let order = jetstream::message::PublishMessage::build()
            .payload(r#"{"order_id":"order-42","sku":"tea"}"#.into())
            .message_id(message_id);
        js.send_publish(work.clone(), order).await?.await?;
    }
    let running = tokio::spawn(async move { nats::run(&pull, &consumer, &settler, 8).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.abort();

    let shipments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shipments")
        .fetch_one(store.pool())
        .await?;
    println!("orders published: 2, shipments: {shipments}");
    js.delete_stream(&name).await?;
    Ok(())
}
