//! A RabbitMQ consumer that ships each order once, however often it is delivered: the
//! same order published twice (a publisher that timed out and sent it again under a new
//! `message_id`) is shipped once, the shipment row and the order's idempotency record
//! written in one SQLite transaction, each delivery acked only after it commits.
//!
//! Run it with RabbitMQ at `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`):
//!
//! ```text
//! cargo run -p example-consume-amqp
//! ```
//!
//! It declares the queue `example.orders.<pid>` (with its `.retry` and `.dead` queues),
//! publishes, consumes, prints the number of shipments (1), and deletes the queues.

use std::time::Duration;

use async_trait::async_trait;
use idem::{Scope, StoredResponse, TTL_FOREVER};
use idem_consume::amqp::{self, AmqpSettler};
use idem_consume::{Config, Failure, KeySource, Received, TransactionalConsumer, TxHandler};
use idem_sql::SqliteStore;
use lapin::options::{BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

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
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let queue = format!("example.orders.{}", std::process::id());
    let settler = AmqpSettler::declare(connection.create_channel().await?, &queue).await?;

    std::fs::create_dir_all("idem-data")?;
    let store = SqliteStore::connect(&format!("sqlite://idem-data/{queue}.db?mode=rwc")).await?;
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

    let publisher = connection.create_channel().await?;
    for message_id in ["publish-1", "publish-1-resent"] {
        publisher
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                br#"{"order_id":"order-42","sku":"tea"}"#,
                BasicProperties::default().with_message_id(message_id.into()),
            )
            .await?;
    }
    let consuming = settler.clone();
    let running =
        tokio::spawn(async move { amqp::run(&consuming, "shipping", &consumer, 8).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.abort();

    let shipments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shipments")
        .fetch_one(store.pool())
        .await?;
    println!("orders published: 2, shipments: {shipments}");
    for name in [
        queue.clone(),
        amqp::retry_queue(&queue),
        amqp::dead_letter_queue(&queue),
    ] {
        publisher
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
    }
    Ok(())
}
