//! The Redis replay cache (`--redis`): completed answers, with the request parameters they
//! answer, kept under `<prefix>payment:<order_id>` and `<prefix>refund:<order_id>/<refund_id>`
//! so a replay is served without touching SQL.
//!
//! SQL stays the truth. A cached answer is used only when its stored parameters equal the
//! request's (else SQL decides, and answers 422); an unreachable, slow or emptied Redis
//! changes no answer: every failure is logged, counted, and the call goes to SQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::validate::{NewPayment, NewRefund};

/// How long a cached answer lives; SQL keeps it for ever.
const TTL_S: u64 = 24 * 3600;
/// A Redis call slower than this is abandoned for SQL.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connection attempt, SQL alone answers for this long.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A payment's answer and the parameters it answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CachedPayment {
    pub(crate) payer: String,
    pub(crate) payee: String,
    pub(crate) amount: i64,
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl CachedPayment {
    pub(crate) fn answers(&self, request: &NewPayment) -> bool {
        self.payer == request.payer && self.payee == request.payee && self.amount == request.amount
    }
}

/// A refund's answer and the amount it answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CachedRefund {
    pub(crate) amount: i64,
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl CachedRefund {
    pub(crate) fn answers(&self, request: &NewRefund) -> bool {
        self.amount == request.amount
    }
}

struct Link {
    manager: Option<ConnectionManager>,
    retry_at: Instant,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.manager.is_some())
            .field("retry_at", &self.retry_at)
            .finish()
    }
}

/// A best-effort Redis cache of completed answers.
#[derive(Debug, Clone)]
pub struct Cache {
    client: redis::Client,
    link: Arc<Mutex<Link>>,
    prefix: String,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// A cache on `url` with keys under `prefix`. Connects lazily: a Redis down at start is
    /// the same as a Redis lost later.
    ///
    /// # Errors
    /// When `url` is not a Redis URL.
    pub fn new(url: &str, prefix: &str, metrics: Arc<Metrics>) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            link: Arc::new(Mutex::new(Link {
                manager: None,
                retry_at: Instant::now(),
            })),
            prefix: prefix.to_owned(),
            metrics,
        })
    }

    pub(crate) fn payment_key(&self, order_id: &str) -> String {
        format!("{}payment:{order_id}", self.prefix)
    }

    // `/` is not allowed in ids, so no (order, refund) pair can spell another's key.
    pub(crate) fn refund_key(&self, order_id: &str, refund_id: &str) -> String {
        format!("{}refund:{order_id}/{refund_id}", self.prefix)
    }

    async fn manager(&self) -> Option<ConnectionManager> {
        let mut link = self.link.lock().await;
        if let Some(manager) = &link.manager {
            return Some(manager.clone());
        }
        if Instant::now() < link.retry_at {
            return None;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        match tokio::time::timeout(CALL_TIMEOUT * 2, connect).await {
            Ok(Ok(manager)) => {
                tracing::info!("connected to redis");
                link.manager = Some(manager.clone());
                Some(manager)
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(%error, "redis unreachable; answering from SQL");
                self.metrics.cache_error();
                link.retry_at = Instant::now() + RECONNECT_PAUSE;
                None
            }
        }
    }

    /// The value under `key`, or `None` when absent, unreadable or Redis fails.
    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut manager = self.manager().await?;
        let call = manager.get::<_, Option<String>>(key);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(Some(text))) => match serde_json::from_str(&text) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(%key, %error, "unreadable cache entry; answering from SQL");
                    None
                }
            },
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                tracing::warn!(%key, %error, "redis GET failed; answering from SQL");
                self.metrics.cache_error();
                None
            }
            Err(_) => {
                tracing::warn!(%key, "redis GET timed out; answering from SQL");
                self.metrics.cache_error();
                None
            }
        }
    }

    /// Stores `value` under `key` for a day; failures are logged and otherwise ignored.
    pub(crate) async fn put<T: Serialize>(&self, key: &str, value: &T) {
        let Ok(text) = serde_json::to_string(value) else {
            return;
        };
        let Some(mut manager) = self.manager().await else {
            return;
        };
        let call = manager.set_ex::<_, _, ()>(key, text, TTL_S);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%key, %error, "redis SET failed");
                self.metrics.cache_error();
            }
            Err(_) => {
                tracing::warn!(%key, "redis SET timed out");
                self.metrics.cache_error();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answers_are_used_only_for_equal_parameters() {
        let cached = CachedPayment {
            payer: "a".into(),
            payee: "b".into(),
            amount: 5,
            status: 201,
            body: "{}".into(),
        };
        let mut request = NewPayment {
            order_id: "o".into(),
            payer: "a".into(),
            payee: "b".into(),
            amount: 5,
        };
        assert!(cached.answers(&request));
        request.amount = 6;
        assert!(!cached.answers(&request));
        request.amount = 5;
        request.payee = "c".into();
        assert!(!cached.answers(&request));
    }

    #[test]
    fn keys_are_prefixed_and_unambiguous() {
        let cache = Cache::new("redis://127.0.0.1:1", "t:", Arc::default()).expect("valid url");
        assert_eq!(cache.payment_key("o1"), "t:payment:o1");
        assert_ne!(cache.refund_key("a:b", "c"), cache.refund_key("a", "b:c"));
    }

    #[tokio::test]
    async fn a_dead_redis_answers_nothing_and_counts_errors() {
        let metrics = Arc::new(Metrics::default());
        // Port 1 is closed: the connection is refused at once.
        let cache = Cache::new("redis://127.0.0.1:1", "t:", metrics.clone()).expect("valid url");
        assert_eq!(cache.get::<CachedRefund>("k").await, None);
        cache.put("k", &1).await;
        assert!(metrics.render().contains("idem_pay_cache_errors_total 1"));
    }
}
