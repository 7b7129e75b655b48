//! What every SQL backend shares: the row as stored, the step `begin` takes after reading
//! it, bounded retries and their counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Retry;

use idem::decide::{begin_step, BeginStep};
use idem::{
    FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope, StoreError,
    StoredResponse, Timestamp,
};

/// `state` of a record whose holder still runs the operation.
pub(crate) const IN_PROGRESS: i16 = 0;
/// `state` of a record whose response is stored.
pub(crate) const COMPLETED: i16 = 1;
/// `state` of a record its holder released: absent to callers, kept with its token until
/// it expires so the next holder's token is larger (`idem::RecordState::Released`).
pub(crate) const RELEASED: i16 = 2;

/// How often `begin` goes round when it loses a race (another caller wrote between its read
/// and its write). Each round is a fresh read, so this only runs out under a storm of
/// writers on one key that never settles.
pub(crate) const ROUNDS_MAX: usize = 32;

/// The `state` a record written by `begin` starts in: in progress while its holder runs
/// the operation, or completed at birth when the caller knew its answer before its writes
/// (`begin_answered_in`: the record then commits or vanishes with those writes).
pub(crate) fn birth_state(answer: Option<&[u8]>) -> i16 {
    if answer.is_some() {
        COMPLETED
    } else {
        IN_PROGRESS
    }
}

/// One `idem_records` row as read back, before it is checked.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) token: i64,
    pub(crate) state: i16,
    pub(crate) lease_until: i64,
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl Row {
    /// The record this row holds.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a column holds what no store writes.
    pub(crate) fn into_record(self, scope: &Scope, key: &Key) -> Result<Record, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| corrupt(scope, key, "fingerprint is not 32 bytes"))?;
        let token = FencingToken::from_i64(self.token);
        let state = match (self.state, self.response) {
            (IN_PROGRESS, _) => RecordState::InProgress {
                token,
                lease_until: Timestamp(self.lease_until),
            },
            (COMPLETED, Some(bytes)) => RecordState::Completed {
                token,
                response: StoredResponse::decode(&bytes)
                    .map_err(|e| corrupt(scope, key, &e.to_string()))?,
            },
            (COMPLETED, None) => return Err(corrupt(scope, key, "completed without response")),
            (RELEASED, _) => RecordState::Released { token },
            (other, _) => return Err(corrupt(scope, key, &format!("unknown state {other}"))),
        };
        Ok(Record {
            scope: scope.clone(),
            key: key.clone(),
            fingerprint,
            state,
            created_at: Timestamp(self.created_at),
            expires_at: Timestamp(self.expires_at),
        })
    }
}

fn corrupt(scope: &Scope, key: &Key, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "record ({:?}, {:?}): {what}",
        scope.as_str(),
        key.as_str()
    ))
}

/// What `begin` does after reading the record (if any) at database time `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Answer without writing.
    Answer(Outcome),
    /// No row: insert a new one (token 1) unless another caller inserts first.
    Insert,
    /// Overwrite the row if it still holds `old` and still qualifies: an expired or
    /// released record (`recovered = false`) or an abandoned lease of the same request
    /// (`recovered = true`).
    Replace {
        /// The token the row held when read; the write is conditional on it.
        old: FencingToken,
        /// The new holder's token.
        new: FencingToken,
        /// True for a lease take-over, false for replacing an expired or released record.
        recovered: bool,
    },
}

/// Decides `begin` by `idem::decide`'s rules.
pub(crate) fn next_step(found: Option<&Record>, fingerprint: &Fingerprint, now: Timestamp) -> Next {
    match (begin_step(found, fingerprint, now), found) {
        (BeginStep::Answer(outcome), _) => Next::Answer(outcome),
        (BeginStep::Write { .. }, None) => Next::Insert,
        (BeginStep::Write { token, recovered }, Some(record)) => Next::Replace {
            old: record.token(),
            new: token,
            recovered,
        },
    }
}

/// `Ok` when a conditional `complete` or `release` changed its row, `Fenced` otherwise.
pub(crate) fn fenced_unless(done: bool) -> Result<(), StoreError> {
    if done {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}

/// The error `begin` gives up with when it lost [`ROUNDS_MAX`] races in a row.
pub(crate) fn rounds_exhausted() -> StoreError {
    StoreError::Contention("begin lost every round of a race on one key; retry".into())
}

/// Counts statements retried after contention, shared by a store's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryCounter(Arc<AtomicU64>);

impl RetryCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records one retry and sleeps before it, as [`Retry::STATEMENT`] says.
    pub(crate) async fn backoff(&self, attempt: u32) {
        self.0.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Retry::STATEMENT.delay(attempt)).await;
    }
}

/// Runs `op` and tries it again (bounded) when it fails with contention, counting retries.
/// Only for statements that change nothing when they fail.
macro_rules! retry_contention {
    ($counter:expr, $op:expr) => {{
        let mut attempt = 1u32;
        loop {
            match $op {
                // Contention only: it rolled the statement back. An unavailable server may
                // have run it, and `complete` run twice would fence its own holder.
                Err(err)
                    if attempt < $crate::Retry::STATEMENT.attempts_max
                        && $crate::error::classify(&err) == $crate::error::Class::Contention =>
                {
                    ::tracing::debug!(error = %err, attempt, "idem-sql: contention, retrying");
                    $counter.backoff(attempt).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_contention;

/// Milliseconds of a lease or TTL as bound into SQL.
pub(crate) fn ms(d: Duration) -> i64 {
    idem::duration_ms(d)
}
