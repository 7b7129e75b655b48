//! The payment service as a library: validated requests in, [`Answer`]s or [`Error`]s out.
//! Each call is one database transaction on idem-sql's transactional mode (see `flows`),
//! run again on a transient failure by idem-sql's [`Retry::TRANSACTION`]. Settled answers
//! are served from this node's [`ReplayMemory`] and, when configured, from a
//! [`ReplayCache`] in Redis — both the library's, keyed by the same scope, key and
//! fingerprint as the records.

use std::future::Future;
use std::sync::Arc;

use idem::{ReplayMemory, StoredResponse, TTL_FOREVER};
use idem_redis::ReplayCache;
use idem_sql::Retry;

use crate::batch::Batchers;
use crate::db::{on_engine, Db};
use crate::error::Error;
use crate::flows::{self, Claim, PreparedPayment};
use crate::metrics::Metrics;
use crate::model::Answer;
use crate::validate::{NewAccount, NewPayment, NewRefund};

/// The longest one call of the service spends on the database, retries included. Longer
/// than the database's own bounds on a stuck transaction (`db::LOCK_WAIT_MAX`,
/// `db::IDLE_IN_TRANSACTION_MAX`), so it ends only what those cannot: a node waiting for an
/// answer that a partitioned or half-open connection will never bring.
pub(crate) const DATABASE_CALL_MAX: std::time::Duration = std::time::Duration::from_secs(8);
use crate::Result;
use crate::Tenant;

/// Attempts of one transaction before the call answers 503.
pub const ATTEMPTS_MAX: u32 = Retry::TRANSACTION.attempts_max;

/// The service: a database, an optional Redis front, its metrics.
#[derive(Debug, Clone)]
pub struct Service {
    db: Db,
    cache: Option<ReplayCache>,
    memory: Arc<ReplayMemory>,
    metrics: Arc<Metrics>,
    batch: Option<Batchers>,
    unsafe_disable_idempotency: bool,
}

impl Service {
    /// A service on `db`, with `cache` in front for replays when given.
    pub fn new(db: Db, cache: Option<ReplayCache>, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            cache,
            memory: Arc::new(ReplayMemory::new(0)),
            metrics,
            batch: None,
            unsafe_disable_idempotency: false,
        }
    }

    /// Runs concurrent payments and refunds in shared transactions, up to
    /// `options.items_max` in one commit (idem-sql's [`idem_sql::Batcher`]); an
    /// `items_max` of 1 runs each in its own, as without this call. Starts the batcher's
    /// workers on the current tokio runtime.
    pub fn with_batching(mut self, options: idem_sql::BatchOptions) -> Self {
        self.batch = (options.items_max > 1).then(|| Batchers::new(&self.db, options));
        self
    }

    /// What the batcher has done so far (`None` without batching): how its batches ended
    /// and how their items were decided.
    pub fn batch_stats(&self) -> Option<idem_sql::BatchStats> {
        self.batch.as_ref().map(Batchers::stats)
    }

    /// Remembers up to `entries` settled payments and refunds in this process, so their
    /// replays skip the database (0, the default, remembers none). Safe on any number of
    /// nodes: a settled answer never changes, and a request whose parameters differ from
    /// the remembered ones still goes to the database.
    pub fn with_replay_memory(mut self, entries: usize) -> Self {
        self.memory = Arc::new(ReplayMemory::new(entries));
        self
    }

    /// TEST GUARD ONLY: pay every execution again, ignoring the order's uniqueness, so that
    /// the chaos checker can prove it catches double payments. Never for real use, and only
    /// in builds with the cargo feature `unsafe-disable-idempotency`.
    #[cfg(feature = "unsafe-disable-idempotency")]
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

    /// Opens an account of `tenant`; the same call again replays, another balance is a
    /// conflict.
    ///
    /// # Errors
    /// [`Error::AccountConflict`], or a database failure.
    pub async fn open_account(&self, tenant: &Tenant, request: &NewAccount) -> Result<Answer> {
        let (db, sql) = (&self.db, &self.db.sql);
        self.retry(|| async {
            on_engine!(&db.engine, store => flows::open_account(store, sql, tenant, request).await)
        })
        .await
    }

    /// Reads an account of `tenant` (another tenant's is not found).
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], or a database failure.
    pub async fn account(&self, tenant: &Tenant, account_id: &str) -> Result<Answer> {
        let (db, sql) = (&self.db, &self.db.sql);
        self.retry(|| async {
            on_engine!(&db.engine, store => flows::account(store, sql, tenant, account_id).await)
        })
        .await
    }

    /// Pays an order of `tenant` at most once, between two of its accounts; replays the
    /// first answer to an equal request.
    ///
    /// # Errors
    /// [`Error::OrderIdConflict`], [`Error::AccountNotFound`], [`Error::InsufficientFunds`],
    /// or a database failure.
    pub async fn pay(&self, tenant: &Tenant, request: &NewPayment) -> Result<Answer> {
        let (db, sql) = (&self.db, &self.db.sql);
        let unsafe_mode = self.unsafe_disable_idempotency;
        let pay = || async {
            if let Some(batch) = &self.batch {
                let payment = PreparedPayment::new(tenant, request, unsafe_mode)?;
                return batch.pay(db, payment).await;
            }
            on_engine!(&db.engine, store => flows::pay(store, sql, tenant, request, unsafe_mode).await)
        };
        if unsafe_mode {
            return self.retry(pay).await;
        }
        self.settle(&Claim::payment(tenant, request)?, pay).await
    }

    /// Reads a payment of `tenant` by its order id.
    ///
    /// # Errors
    /// [`Error::PaymentNotFound`], or a database failure.
    pub async fn payment(&self, tenant: &Tenant, order_id: &str) -> Result<Answer> {
        let (db, sql) = (&self.db, &self.db.sql);
        self.retry(|| async {
            on_engine!(&db.engine, store => flows::payment(store, sql, tenant, order_id).await)
        })
        .await
    }

    /// Refunds part or all of a payment of `tenant`, once per refund id.
    ///
    /// # Errors
    /// [`Error::PaymentNotFound`], [`Error::RefundIdConflict`],
    /// [`Error::RefundExceedsPayment`], [`Error::InsufficientFunds`], or a database failure.
    pub async fn refund(
        &self,
        tenant: &Tenant,
        order_id: &str,
        request: &NewRefund,
    ) -> Result<Answer> {
        let (db, sql) = (&self.db, &self.db.sql);
        let refund = || async {
            if let Some(batch) = &self.batch {
                return batch.refund(db, tenant, order_id, request).await;
            }
            on_engine!(&db.engine, store => flows::refund(store, sql, tenant, order_id, request).await)
        };
        self.settle(&Claim::refund(tenant, order_id, request)?, refund)
            .await
    }

    /// Answers a claim from this node's memory, then from Redis, and only then runs `call`
    /// (retried); a successful answer is settled for ever (its record was born completed
    /// with it and never expires), so both remember it.
    async fn settle<F, Fut>(&self, claim: &Claim, call: F) -> Result<Answer>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer>>,
    {
        let Claim {
            scope,
            key,
            fingerprint,
        } = claim;
        if let Some(first) = self.memory.replay(scope, key, fingerprint) {
            self.metrics.memory_hit();
            return Ok(Answer::replayed(first.status, first.body));
        }
        if let Some(cache) = &self.cache {
            if let Some(first) = cache.lookup(scope, key, fingerprint).await {
                self.metrics.cache_hit();
                self.memory
                    .remember(scope, key, fingerprint, &first, TTL_FOREVER);
                return Ok(Answer::replayed(first.status, first.body));
            }
            self.metrics.cache_miss();
        }
        let answer = self.retry(call).await?;
        let settled = StoredResponse::new(answer.status, answer.body.clone());
        self.memory
            .remember(scope, key, fingerprint, &settled, TTL_FOREVER);
        if let Some(cache) = &self.cache {
            let (cache, claim) = (cache.clone(), claim.clone());
            tokio::spawn(async move {
                cache
                    .remember_settled(&claim.scope, &claim.key, &claim.fingerprint, &settled)
                    .await;
            });
        }
        Ok(answer)
    }

    /// Runs `op` with [`Retry::TRANSACTION`], all tries within [`DATABASE_CALL_MAX`]: a
    /// statement whose answer was lost with a dead network path would otherwise wait for
    /// ever. Past it, [`Error::DatabaseTimeout`] (503): the transaction kept nothing it did
    /// not commit, and a commit whose answer was lost is found by the client's retry.
    async fn retry<F, Fut>(&self, op: F) -> Result<Answer>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Answer>>,
    {
        let tries = Retry::TRANSACTION.run_counted(op, |_, _| self.metrics.retried());
        tokio::time::timeout(DATABASE_CALL_MAX, tries)
            .await
            .map_err(|_| Error::DatabaseTimeout(DATABASE_CALL_MAX))?
    }
}
