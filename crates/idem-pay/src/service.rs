//! The payment service as a library: validated requests in, [`Answer`]s or [`Error`]s out.
//! Each call is one database transaction (see `flows`), retried here, bounded and with
//! jittered backoff, when the database reports a transient failure; settled answers are
//! served from this node's memory ([`Recent`]) and from the Redis cache when configured.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::cache::{Cache, CachedPayment, CachedRefund};
use crate::db::Db;
use crate::flows;
use crate::memory::Recent;
use crate::metrics::Metrics;
use crate::model::Answer;
use crate::validate::{NewAccount, NewPayment, NewRefund};
#[cfg(doc)]
use crate::Error;
use crate::Result;

/// Attempts of one transaction before the call answers 503.
pub const ATTEMPTS_MAX: u32 = 10;
const BACKOFF_BASE_MS: u64 = 4;
const BACKOFF_CAP_MS: u64 = 250;

/// The service: a database, an optional cache, its metrics.
#[derive(Debug, Clone)]
pub struct Service {
    db: Db,
    cache: Option<Cache>,
    recent: Arc<RecentAnswers>,
    metrics: Arc<Metrics>,
    unsafe_disable_idempotency: bool,
}

/// Settled answers this node remembers: payments by order id, refunds by (order, refund).
#[derive(Debug)]
struct RecentAnswers {
    payments: Recent<String, CachedPayment>,
    refunds: Recent<(String, String), CachedRefund>,
}

impl RecentAnswers {
    fn new(capacity: usize) -> Self {
        Self {
            payments: Recent::new(capacity),
            refunds: Recent::new(capacity),
        }
    }

    /// True when answers are remembered at all.
    fn remembers(&self) -> bool {
        self.payments.capacity() > 0
    }
}

impl Service {
    /// A service on `db`, with `cache` in front for replays when given.
    pub fn new(db: Db, cache: Option<Cache>, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            cache,
            recent: Arc::new(RecentAnswers::new(0)),
            metrics,
            unsafe_disable_idempotency: false,
        }
    }

    /// Remembers up to `entries` settled payments and as many refunds in this process, so
    /// their replays skip the database (0, the default, remembers none). Safe on any number
    /// of nodes: a settled answer never changes, and a request whose parameters differ from
    /// the remembered ones still goes to the database.
    pub fn with_replay_memory(mut self, entries: usize) -> Self {
        self.recent = Arc::new(RecentAnswers::new(entries));
        self
    }

    /// TEST GUARD ONLY: pay every execution again, ignoring the order's uniqueness, so that
    /// the chaos checker can prove it catches double payments. Never for real use.
    pub fn with_unsafe_disable_idempotency(mut self, disable: bool) -> Self {
        self.unsafe_disable_idempotency = disable;
        self
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Opens an account; the same call again replays, another balance is a conflict.
    ///
    /// # Errors
    /// [`Error::AccountConflict`], or a database failure.
    pub async fn open_account(&self, request: &NewAccount) -> Result<Answer> {
        self.retry(|| flows::open_account(&self.db, request)).await
    }

    /// Reads an account.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], or a database failure.
    pub async fn account(&self, account_id: &str) -> Result<Answer> {
        self.retry(|| flows::account(&self.db, account_id)).await
    }

    /// Pays an order at most once; replays the first answer to an equal request.
    ///
    /// # Errors
    /// [`Error::OrderIdConflict`], [`Error::AccountNotFound`], [`Error::InsufficientFunds`],
    /// or a database failure.
    pub async fn pay(&self, request: &NewPayment) -> Result<Answer> {
        if !self.unsafe_disable_idempotency {
            if let Some(hit) = self.recent.payments.get(request.order_id.as_str()) {
                if hit.answers(request) {
                    self.metrics.memory_hit();
                    return Ok(Answer::replayed(hit.status, hit.body.clone().into_bytes()));
                }
            }
        }
        let cache = self
            .cache
            .as_ref()
            .filter(|_| !self.unsafe_disable_idempotency);
        let key = cache.map(|c| c.payment_key(&request.order_id));
        if let (Some(cache), Some(key)) = (cache, &key) {
            match cache.get::<CachedPayment>(key).await {
                Some(hit) if hit.answers(request) => {
                    self.metrics.cache_hit();
                    let answer = Answer::replayed(hit.status, hit.body.clone().into_bytes());
                    self.recent.payments.insert(request.order_id.clone(), hit);
                    return Ok(answer);
                }
                _ => self.metrics.cache_miss(),
            }
        }
        let answer = self
            .retry(|| {
                flows::pay(
                    &self.db,
                    request,
                    !self.recent.remembers(),
                    self.unsafe_disable_idempotency,
                )
            })
            .await?;
        // `flows::pay` answers Ok only for a committed payment: final, safe to remember.
        let Ok(body) = std::str::from_utf8(&answer.body) else {
            return Ok(answer);
        };
        let entry = CachedPayment {
            payer: request.payer.clone(),
            payee: request.payee.clone(),
            amount: request.amount,
            status: answer.status,
            body: body.to_owned(),
        };
        if let (Some(cache), Some(key)) = (cache, key) {
            let (cache, entry) = (cache.clone(), entry.clone());
            tokio::spawn(async move { cache.put(&key, &entry).await });
        }
        if !self.unsafe_disable_idempotency {
            self.recent.payments.insert(request.order_id.clone(), entry);
        }
        Ok(answer)
    }

    /// Reads a payment by its order id.
    ///
    /// # Errors
    /// [`Error::PaymentNotFound`], or a database failure.
    pub async fn payment(&self, order_id: &str) -> Result<Answer> {
        self.retry(|| flows::payment(&self.db, order_id)).await
    }

    /// Refunds part or all of a payment, once per refund id.
    ///
    /// # Errors
    /// [`Error::PaymentNotFound`], [`Error::RefundIdConflict`],
    /// [`Error::RefundExceedsPayment`], [`Error::InsufficientFunds`], or a database failure.
    pub async fn refund(&self, order_id: &str, request: &NewRefund) -> Result<Answer> {
        let memory_key = (order_id.to_owned(), request.refund_id.clone());
        if let Some(hit) = self.recent.refunds.get(&memory_key) {
            if hit.answers(request) {
                self.metrics.memory_hit();
                return Ok(Answer::replayed(hit.status, hit.body.clone().into_bytes()));
            }
        }
        let key = self
            .cache
            .as_ref()
            .map(|c| c.refund_key(order_id, &request.refund_id));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            match cache.get::<CachedRefund>(key).await {
                Some(hit) if hit.answers(request) => {
                    self.metrics.cache_hit();
                    let answer = Answer::replayed(hit.status, hit.body.clone().into_bytes());
                    self.recent.refunds.insert(memory_key, hit);
                    return Ok(answer);
                }
                _ => self.metrics.cache_miss(),
            }
        }
        let answer = self
            .retry(|| flows::refund(&self.db, order_id, request))
            .await?;
        // `flows::refund` answers Ok only for a committed refund: final, safe to remember.
        let Ok(body) = std::str::from_utf8(&answer.body) else {
            return Ok(answer);
        };
        let entry = CachedRefund {
            amount: request.amount,
            status: answer.status,
            body: body.to_owned(),
        };
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            let (cache, entry) = (cache.clone(), entry.clone());
            tokio::spawn(async move { cache.put(&key, &entry).await });
        }
        self.recent.refunds.insert(memory_key, entry);
        Ok(answer)
    }

    async fn retry<F, Fut>(&self, mut op: F) -> Result<Answer>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(error) if error.transient() && attempt < ATTEMPTS_MAX => {
                    self.metrics.retried();
                    let delay = backoff(attempt);
                    tracing::debug!(%error, attempt, ?delay, "transient database failure, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) if error.transient() => {
                    tracing::warn!(%error, attempt, "transient database failure, giving up");
                    return Err(error);
                }
                outcome => return outcome,
            }
        }
    }
}

/// Exponential backoff with jitter in its upper half: attempts that collided once do not
/// collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = BACKOFF_BASE_MS
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP_MS);
    let ms = rand::thread_rng().gen_range(ceiling_ms / 2..=ceiling_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..20 {
            let d = backoff(attempt).as_millis() as u64;
            assert!(d <= BACKOFF_CAP_MS, "attempt {attempt}: {d}");
            assert!(d >= (BACKOFF_BASE_MS << attempt.min(16)).min(BACKOFF_CAP_MS) / 2);
        }
    }
}
