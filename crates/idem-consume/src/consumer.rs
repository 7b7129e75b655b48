//! [`Consumer`]: the store mode, over any [`Store`]: claim, run, complete, ack.

use async_trait::async_trait;
use idem::{Claim, Outcome, Store, StoreError, StoredResponse};

use crate::message::fingerprint;
use crate::{Config, Disposition, Failure, Message, Received};

/// The work a message asks for, done where the store cannot see it (another service, a
/// file, a cache). Its effects and the record are not one transaction: see [`Consumer`].
#[async_trait]
pub trait Handler: Send + Sync {
    /// Does the message's work and says what it answered (stored, replayed to
    /// duplicates, carried by a reply).
    ///
    /// # Errors
    /// A [`Failure`]: the key is released and the message retried (or dead-lettered).
    async fn handle(&self, message: Received<'_>) -> Result<StoredResponse, Failure>;
}

/// An idempotent consumer over any idem [`Store`] (Apache Camel's Idempotent Consumer
/// with an eager claim): each message's key is claimed before the handler runs, a
/// finished key is acked without running it, a key held by another consumer is retried
/// after its lease, and a failed handler releases the key.
///
/// The handler's effect and the `complete` are two steps: a consumer that dies between
/// them leaves the key in progress, and once its lease ends another consumer runs the
/// handler again. When the handler writes to SQL, [`crate::TransactionalConsumer`] closes
/// that gap.
#[derive(Debug, Clone)]
pub struct Consumer<S> {
    store: S,
    config: Config,
}

impl<S: Store> Consumer<S> {
    /// A consumer claiming keys in `store` as `config` says.
    pub fn new(store: S, config: Config) -> Self {
        Self { store, config }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decides `message`, running `handler` when its key is new, and says what to do with
    /// the delivery. Never fails: a store failure is a [`Disposition::Retry`].
    pub async fn process(
        &self,
        message: &(impl Message + ?Sized),
        handler: &impl Handler,
    ) -> Disposition {
        let config = &self.config;
        let attempt = message.attempt().max(1);
        let key = match config.key.key_of(message) {
            Ok(key) => key,
            Err(reason) => return Disposition::DeadLetter { reason },
        };
        let fp = fingerprint(message.payload());
        let claim = Claim::new(&config.scope, &key, &fp, config.lease, config.ttl);
        let token = match self.store.begin(claim).await {
            Ok(Outcome::Acquired { token, .. }) => token,
            Ok(outcome) => return settled(outcome, &key),
            Err(e) => return config.after_failure(attempt, &store_failure(&e)),
        };
        let received = Received {
            key: &key,
            payload: message.payload(),
            attempt,
        };
        match handler.handle(received).await {
            Ok(response) => match self.store.complete(claim.held(token), &response).await {
                Ok(()) => Disposition::Ack {
                    response,
                    replayed: false,
                },
                // Taken over after our lease ended: the new holder's answer is the one
                // kept, and the next delivery replays it.
                Err(e) => Disposition::Retry {
                    delay: config.retry_delay,
                    reason: format!("completing the record failed: {e}"),
                },
            },
            Err(failure) => {
                if let Err(e) = self.store.release(claim.held(token)).await {
                    // The key frees itself when its lease ends.
                    tracing::warn!(key = key.as_str(), error = %e, "release after a failed handler");
                }
                config.after_failure(attempt, &failure)
            }
        }
    }
}

/// The disposition of a key that was not acquired.
pub(crate) fn settled(outcome: Outcome, key: &idem::Key) -> Disposition {
    match outcome {
        Outcome::Replay(response) => Disposition::Ack {
            response,
            replayed: true,
        },
        Outcome::Mismatch => Disposition::DeadLetter {
            reason: format!(
                "the key {:?} was used before for another payload",
                key.as_str()
            ),
        },
        Outcome::InFlight { retry_after } => Disposition::Retry {
            delay: retry_after,
            reason: format!(
                "the key {:?} is in flight on another consumer",
                key.as_str()
            ),
        },
        Outcome::Acquired { .. } => Disposition::Retry {
            delay: std::time::Duration::ZERO,
            reason: "acquired outcome where none was expected".to_owned(),
        },
    }
}

/// A store failure as a handler failure: transient ones retry; the others too, since
/// nothing was kept, until the last attempt.
pub(crate) fn store_failure(e: &StoreError) -> Failure {
    Failure::transient(format!("store: {e}"))
}
