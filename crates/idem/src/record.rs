//! What a store keeps for one (scope, key): the [`Record`], its state, its times and token.

use std::time::Duration;

use crate::{Fingerprint, Key, Scope, StoredResponse};

/// A point in the store's time: milliseconds since the Unix epoch, read from the store's
/// clock (SQL `now()`, Redis `TIME`), never from a node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This time moved forward by `by` (saturating).
    pub fn plus(self, by: Duration) -> Self {
        Self(self.0.saturating_add(duration_ms(by)))
    }

    /// How long from `self` until `later`; zero when `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

/// The longest duration a store keeps, in milliseconds: 2^52 ms, about 142 000 years.
/// Durations saturate here, so a store adding one to its clock never overflows: an SQL
/// `BIGINT` has room to spare, and a Lua number (a double) still holds the sum exactly.
pub const DURATION_MS_MAX: i64 = 1 << 52;

/// The TTL of a record that never expires: a business key such as an `order_id` is
/// unique for ever, unlike a 24-hour `Idempotency-Key`. Every store keeps such a record
/// until it is released, and `purge_expired` never removes it once completed.
pub const TTL_FOREVER: Duration = Duration::from_millis(1 << 52);

/// A duration in whole milliseconds as stores keep it, saturating at [`DURATION_MS_MAX`].
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).map_or(DURATION_MS_MAX, |ms| ms.min(DURATION_MS_MAX))
}

/// The number that proves who holds a record. It grows on every take-over, and a store
/// refuses `complete` or `release` from a holder whose token is no longer the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token a store gives the first holder of a new record.
    pub const FIRST: FencingToken = FencingToken(1);

    /// The token of the next holder.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The token as stores keep it in a signed 64-bit column.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The token from a signed 64-bit column; negatives (never written) read as 0.
    pub fn from_i64(raw: i64) -> Self {
        Self(u64::try_from(raw).unwrap_or(0))
    }
}

/// Where a record is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// A node runs the operation under `token` until `lease_until`; then another may take over.
    InProgress {
        /// The holder's fencing token.
        token: FencingToken,
        /// When the lease ends, in store time.
        lease_until: Timestamp,
    },
    /// The operation finished; `response` is replayed to every retry.
    Completed {
        /// The token of the holder that completed it.
        token: FencingToken,
        /// The stored answer.
        response: StoredResponse,
    },
    /// The holder released it (its operation failed before any effect). Absent to every
    /// caller — `get` returns nothing, and any request may `begin` — but kept until it
    /// expires, so that the key's next holder gets a larger token than every holder before
    /// it, and a stale holder of an old token stays fenced (docs/MODEL.md).
    Released {
        /// The token of the holder that released it.
        token: FencingToken,
    },
}

/// One (scope, key) as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Whose key it is.
    pub scope: Scope,
    /// The client's request id.
    pub key: Key,
    /// The fingerprint of the request that created it.
    pub fingerprint: Fingerprint,
    /// In progress or completed.
    pub state: RecordState,
    /// When it was created (or last taken over), in store time.
    pub created_at: Timestamp,
    /// When it expires; from then on it is absent.
    pub expires_at: Timestamp,
}

impl Record {
    /// The current holder's (or the completer's, or the releaser's) fencing token.
    pub fn token(&self) -> FencingToken {
        match &self.state {
            RecordState::InProgress { token, .. }
            | RecordState::Completed { token, .. }
            | RecordState::Released { token } => *token,
        }
    }
}
