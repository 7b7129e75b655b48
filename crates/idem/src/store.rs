//! The [`Store`] trait every backend implements, its [`Outcome`] and its [`StoreError`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{FencingToken, Fingerprint, Key, Record, Scope, StoredResponse};

/// What `begin` decided, in the order of DESIGN §2's table. Exactly one per call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an Outcome says whether the caller may run the operation"]
pub enum Outcome {
    /// No live record (or an abandoned one with the same fingerprint whose lease ended):
    /// the caller holds the record under `token` and runs the operation.
    Acquired {
        /// The fencing token to pass to `complete` or `release`.
        token: FencingToken,
        /// True when this took over an abandoned in-progress record.
        recovered: bool,
    },
    /// The operation completed before with the same fingerprint: return this, run nothing.
    Replay(StoredResponse),
    /// A live record has another fingerprint: the key was reused for another request.
    Mismatch,
    /// The same request is still running elsewhere and its lease has not ended.
    InFlight {
        /// How long until the lease ends and a retry might take over.
        retry_after: Duration,
    },
}

/// What one `begin` asks for: claim `(scope, key)` for the request with `fingerprint`,
/// leased for `lease` and kept for `ttl` (DESIGN §2). Every store's `begin` takes it whole.
///
/// # Example
///
/// ```
/// # use std::time::Duration;
/// use idem::{Claim, Fingerprint, Key, Scope};
/// let (scope, key) = (Scope::global(), Key::new("order-1").unwrap());
/// let fp = Fingerprint::of_bytes("POST", "/pay", b"amount=5");
/// let claim = Claim::new(&scope, &key, &fp, Duration::from_secs(30), Duration::from_secs(86_400));
/// assert_eq!(claim.key.as_str(), "order-1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// Whose key it is and for what: keys of different scopes never meet.
    pub scope: &'a Scope,
    /// The client's request id.
    pub key: &'a Key,
    /// What the request is: the same key with another fingerprint is a `Mismatch`.
    pub fingerprint: &'a Fingerprint,
    /// How long a new or taken-over record belongs to its holder.
    pub lease: Duration,
    /// How long the record lives ([`crate::TTL_FOREVER`]: for ever).
    pub ttl: Duration,
}

impl<'a> Claim<'a> {
    /// A claim on `(scope, key)` for the request with `fingerprint`.
    pub fn new(
        scope: &'a Scope,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Self {
        Self {
            scope,
            key,
            fingerprint,
            lease,
            ttl,
        }
    }
}

impl<'a> Claim<'a> {
    /// The record this claim acquired, held under `token`: what `complete` and `release`
    /// take.
    pub fn held(self, token: FencingToken) -> Hold<'a> {
        Hold::new(self.scope, self.key, token)
    }
}

/// A record its holder holds under a fencing token: what `complete` and `release` act on.
/// A store refuses both (`Fenced`) when the token is no longer the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold<'a> {
    /// The record's scope.
    pub scope: &'a Scope,
    /// The record's key.
    pub key: &'a Key,
    /// The token `begin` gave the holder.
    pub token: FencingToken,
}

impl<'a> Hold<'a> {
    /// The record `(scope, key)` held under `token`.
    pub fn new(scope: &'a Scope, key: &'a Key, token: FencingToken) -> Self {
        Self { scope, key, token }
    }
}

/// A boxed error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller's token is no longer the record's (taken over, released, completed or
    /// expired): its result must not be stored.
    #[error("fenced: the record is no longer held with this token")]
    Fenced,
    /// The store could not be reached or timed out; the operation may or may not have
    /// happened. Transient.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store refused under contention (deadlock, serialization failure) and nothing
    /// happened. Transient.
    #[error("store contention, the operation was rolled back")]
    Contention(#[source] BoxError),
    /// Any other backend failure (bad schema, permission, protocol).
    #[error("store backend failed")]
    Backend(#[source] BoxError),
    /// A stored record could not be read back (a response that does not decode).
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when retrying the same call may succeed. A caller that gives up after a
    /// transient failure should `release` the key it holds, never silently keep it: an
    /// unreleased key only frees itself when its lease ends.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Contention(_))
    }
}

/// Where idempotency records live. Every operation is one atomic step of the store, and
/// every time is the store's own clock, so any number of nodes may share one store.
///
/// The semantics are DESIGN §2; [`crate::conformance`] (feature `conformance`) checks them.
#[async_trait]
pub trait Store: Send + Sync {
    /// Claims `claim.key` in `claim.scope` for the request with `claim.fingerprint`, or
    /// says why not. A new or taken-over record is leased for `claim.lease` and lives for
    /// `claim.ttl`.
    ///
    /// # Errors
    /// A [`StoreError`] when the store fails; no record changed unless it was transient
    /// `Unavailable`, in which case a retry sees the truth.
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError>;

    /// Stores `response` for the record `hold` names, held with `hold.token`.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the record is not in progress under `hold.token`.
    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError>;

    /// Frees the in-progress record `hold` names, held with `hold.token`: the operation failed before any
    /// effect, and a retry (with any fingerprint) may run it again. The record is absent
    /// from then on, but the store keeps its token until it expires
    /// ([`crate::RecordState::Released`]), so the next holder's token is larger.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the record is not in progress under `hold.token`.
    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError>;

    /// The live record of `(scope, key)`, if any; an expired or released record is absent.
    ///
    /// # Errors
    /// A [`StoreError`] when the store fails or the record does not decode.
    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError>;

    /// Deletes at most `limit` expired records and says how many it deleted.
    ///
    /// # Errors
    /// A [`StoreError`] when the store fails.
    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError>;

    /// The store's kind as metrics and spans name it (`sqlite`, `redis`, …): the `store`
    /// label of [`crate::metrics`]' series.
    fn name(&self) -> &'static str {
        "custom"
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        (**self).begin(claim).await
    }
    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        (**self).complete(hold, response).await
    }
    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        (**self).release(hold).await
    }
    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        (**self).get(scope, key).await
    }
    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        (**self).purge_expired(limit).await
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}
