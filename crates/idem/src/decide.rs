//! The protocol's decisions as pure functions over a record and the store's time.
//!
//! Stores that hold records in their own memory (the in-memory store) call these directly;
//! SQL and Lua stores encode the same rules in one statement or script. Keeping them here,
//! beside the table of DESIGN §2, makes the rules one thing to read.

use std::time::Duration;

use crate::{
    Claim, FencingToken, Fingerprint, Outcome, Record, RecordState, StoredResponse, Timestamp,
};

/// What `begin` does to the record it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginStep {
    /// Write a new in-progress record with this token (absent, expired, or taken over).
    Write {
        /// The new holder's token.
        token: FencingToken,
        /// True when an abandoned in-progress record is taken over.
        recovered: bool,
    },
    /// Leave the record as it is and answer this.
    Answer(Outcome),
}

/// Decides `begin` for the record found (if any) at store time `now`.
///
/// The checks run in this order: absent, expired or released; another fingerprint;
/// completed; in progress with a running lease; in progress with an ended lease.
pub fn begin_step(
    existing: Option<&Record>,
    fingerprint: &Fingerprint,
    now: Timestamp,
) -> BeginStep {
    let Some(record) = existing else {
        return BeginStep::Write {
            token: FencingToken::FIRST,
            recovered: false,
        };
    };
    if !live(record, now) {
        // A later generation must never share a token with an expired or released one: a
        // stale holder of that token would pass for the new holder.
        return BeginStep::Write {
            token: record.token().next(),
            recovered: false,
        };
    }
    if record.fingerprint != *fingerprint {
        return BeginStep::Answer(Outcome::Mismatch);
    }
    match &record.state {
        RecordState::Completed { response, .. } => {
            BeginStep::Answer(Outcome::Replay(response.clone()))
        }
        RecordState::InProgress { lease_until, .. } if *lease_until > now => {
            BeginStep::Answer(Outcome::InFlight {
                retry_after: retry_after(now, *lease_until),
            })
        }
        RecordState::InProgress { token, .. } => BeginStep::Write {
            token: token.next(),
            recovered: true,
        },
        // Not live, so answered as absent above; the same answer here keeps the rule total.
        RecordState::Released { token } => BeginStep::Write {
            token: token.next(),
            recovered: false,
        },
    }
}

/// How long a caller told `InFlight` should wait: until the lease ends, at least 1 ms.
pub fn retry_after(now: Timestamp, lease_until: Timestamp) -> Duration {
    now.until(lease_until).max(Duration::from_millis(1))
}

/// True when `record` has outlived its retention at `now`: from then on it is absent to
/// every caller, and `purge_expired` may delete it.
pub fn expired(record: &Record, now: Timestamp) -> bool {
    expiry_passed(record.expires_at, now)
}

/// True when a record that expires at `expires_at` has expired at `now` (see [`expired`]),
/// for a store that keeps the expiry apart from the record.
pub fn expiry_passed(expires_at: Timestamp, now: Timestamp) -> bool {
    expires_at <= now
}

/// True when `record` is there for callers at `now`: neither expired nor released. `get`
/// returns only live records; `begin` treats any other as absent.
pub fn live(record: &Record, now: Timestamp) -> bool {
    !expired(record, now) && !matches!(record.state, RecordState::Released { .. })
}

/// True when `complete` or `release` with `token` may act on `existing` at `now`.
pub fn holds(existing: Option<&Record>, token: FencingToken, now: Timestamp) -> bool {
    match existing {
        Some(record) if !expired(record, now) => {
            matches!(record.state, RecordState::InProgress { token: held, .. } if held == token)
        }
        _ => false,
    }
}

/// The state `complete` with `token` and `response` leaves `existing` in at `now`, or
/// `None` when the caller does not hold it (`Fenced`). The expiry stays as it was.
pub fn complete_step(
    existing: Option<&Record>,
    token: FencingToken,
    response: &StoredResponse,
    now: Timestamp,
) -> Option<RecordState> {
    holds(existing, token, now).then(|| RecordState::Completed {
        token,
        response: response.clone(),
    })
}

/// The state `release` with `token` leaves `existing` in at `now`, or `None` when the
/// caller does not hold it (`Fenced`).
///
/// The record is not deleted: it becomes [`RecordState::Released`] and keeps its token and
/// its expiry, so the next `begin` writes a larger token. Deleting it would let the next
/// holder start again at [`FencingToken::FIRST`], the token of a holder this one may have
/// taken over from — who could then `complete` the new holder's record (docs/MODEL.md).
pub fn release_step(
    existing: Option<&Record>,
    token: FencingToken,
    now: Timestamp,
) -> Option<RecordState> {
    holds(existing, token, now).then_some(RecordState::Released { token })
}

/// The lease end and expiry of a record written by `begin` at `now`.
pub fn lease_and_expiry(now: Timestamp, lease: Duration, ttl: Duration) -> (Timestamp, Timestamp) {
    let lease_until = now.plus(lease);
    // A record never expires while its lease runs.
    let expires_at = now.plus(ttl).max(lease_until);
    (lease_until, expires_at)
}

/// The in-progress record `begin` writes for `claim` at `now`, held under `token`: leased
/// for the claim's lease and kept for its TTL.
pub fn claimed(claim: Claim<'_>, token: FencingToken, now: Timestamp) -> Record {
    let (lease_until, expires_at) = lease_and_expiry(now, claim.lease, claim.ttl);
    Record {
        scope: claim.scope.clone(),
        key: claim.key.clone(),
        fingerprint: *claim.fingerprint,
        state: RecordState::InProgress { token, lease_until },
        created_at: now,
        expires_at,
    }
}
