//! [`TransactionalConsumer`]: the transactional mode, for handlers that write to SQL.

use async_trait::async_trait;
use idem::{Claim, Outcome, StoredResponse};
use idem_sql::TransactionalStore;
use sqlx::{Database, Transaction};

use crate::consumer::{settled, store_failure};
use crate::message::fingerprint;
use crate::{Config, Disposition, Failure, Message, Received};

/// The work a message asks for, written inside the transaction that also holds the
/// message's record: both commit, or neither.
#[async_trait]
pub trait TxHandler<DB: Database>: Send + Sync {
    /// Does the message's work in `tx` (never commits it) and says what it answered.
    ///
    /// # Errors
    /// A [`Failure`]: the transaction rolls back, record included, and the message is
    /// retried (or dead-lettered).
    async fn handle(
        &self,
        tx: &mut Transaction<'static, DB>,
        message: Received<'_>,
    ) -> Result<StoredResponse, Failure>;
}

/// An idempotent consumer whose handler writes to the same SQL database as the records
/// (DESIGN §2's transactional mode): the claim, the handler's writes and the completed
/// record are one transaction, and the delivery is acked only after it commits. A
/// consumer that dies anywhere before the commit leaves nothing; one that dies after it
/// leaves a finished key, and the redelivery is acked without running the handler.
#[derive(Debug, Clone)]
pub struct TransactionalConsumer<S> {
    store: S,
    config: Config,
}

impl<S: TransactionalStore> TransactionalConsumer<S> {
    /// A consumer claiming keys in `store` as `config` says.
    pub fn new(store: S, config: Config) -> Self {
        Self { store, config }
    }

    /// The store, whose pool the handler's tables live in.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decides `message`, running `handler` inside the record's transaction when its key
    /// is new, and says what to do with the delivery. Never fails: a database failure is
    /// a [`Disposition::Retry`] (a lost commit is resolved by the retry, which replays).
    pub async fn process(
        &self,
        message: &(impl Message + ?Sized),
        handler: &impl TxHandler<S::Database>,
    ) -> Disposition {
        let config = &self.config;
        let attempt = message.attempt().max(1);
        let key = match config.key.key_of(message) {
            Ok(key) => key,
            Err(reason) => return Disposition::DeadLetter { reason },
        };
        let fp = fingerprint(message.payload());
        let claim = Claim::new(&config.scope, &key, &fp, config.lease, config.ttl);
        let mut tx = match self.store.begin_write().await {
            Ok(tx) => tx,
            Err(e) => return config.after_failure(attempt, &store_failure(&e)),
        };
        // A concurrent duplicate waits here on the record's key until this commits.
        let token = match self.store.begin_in(&mut tx, claim).await {
            Ok(Outcome::Acquired { token, .. }) => token,
            Ok(outcome) => return settled(outcome, &key),
            Err(e) => return config.after_failure(attempt, &store_failure(&e)),
        };
        let received = Received {
            key: &key,
            payload: message.payload(),
            attempt,
        };
        // Any early return drops `tx`, which rolls back the record with the writes.
        let response = match handler.handle(&mut tx, received).await {
            Ok(response) => response,
            Err(failure) => return config.after_failure(attempt, &failure),
        };
        if let Err(e) = self
            .store
            .complete_in(&mut tx, claim.held(token), &response)
            .await
        {
            return config.after_failure(attempt, &store_failure(&e));
        }
        match tx.commit().await {
            Ok(()) => Disposition::Ack {
                response,
                replayed: false,
            },
            // The commit may have landed: never dead-letter on it; the next delivery finds
            // the record and replays, or runs the handler when nothing was kept.
            Err(e) => Disposition::Retry {
                delay: config.retry_delay,
                reason: format!("commit: {e}"),
            },
        }
    }
}
