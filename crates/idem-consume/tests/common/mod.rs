//! What the consumer's tests share: handlers that count their runs or write a row in the
//! record's transaction, and a transactional consumer on a fresh SQLite file.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idem::{Scope, StoredResponse};
use idem_consume::{
    Config, Failure, Handler, KeySource, Received, TransactionalConsumer, TxHandler,
};
use idem_sql::SqliteStore;

/// A configuration with short retry delays and three attempts.
pub fn config(key: KeySource) -> Config {
    let mut config = Config::new(Scope::new("test|consume").expect("scope"), key);
    config.retry_delay = Duration::from_millis(100);
    config.max_attempts = 3;
    config
}

/// Counts its runs; fails with `fail` while set.
#[derive(Default, Clone)]
pub struct Counting {
    pub runs: Arc<AtomicU32>,
    pub fail: Option<Failure>,
}

impl Counting {
    pub fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Handler for Counting {
    async fn handle(&self, message: Received<'_>) -> Result<StoredResponse, Failure> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match &self.fail {
            Some(failure) => Err(failure.clone()),
            None => Ok(StoredResponse::new(
                200,
                format!("done {}", message.key.as_str()),
            )),
        }
    }
}

/// Inserts one row per message into `effects`, in the record's transaction.
#[derive(Clone, Default)]
pub struct Insert {
    pub fail: bool,
}

#[async_trait]
impl TxHandler<sqlx::Sqlite> for Insert {
    async fn handle(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        message: Received<'_>,
    ) -> Result<StoredResponse, Failure> {
        sqlx::query("INSERT INTO effects (message_key) VALUES (?)")
            .bind(message.key.as_str())
            .execute(&mut **tx)
            .await
            .map_err(Failure::transient)?;
        if self.fail {
            return Err(Failure::transient("failed after its write"));
        }
        Ok(StoredResponse::new(201, "inserted"))
    }
}

pub async fn sqlite_consumer(config: Config) -> TransactionalConsumer<SqliteStore> {
    let url = idem_test_support::sqlite_url("idem-consume-core");
    let store = SqliteStore::connect(&url).await.expect("sqlite");
    sqlx::query("CREATE TABLE effects (message_key TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("effects table");
    TransactionalConsumer::new(store, config)
}

pub async fn effects(consumer: &TransactionalConsumer<SqliteStore>) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(consumer.store().pool())
        .await
        .expect("count")
}
