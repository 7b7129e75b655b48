//! What to do with a delivery once the consumer has decided ([`Disposition`]), and how a
//! handler says it failed ([`Failure`]).

use std::fmt;
use std::time::Duration;

use idem::StoredResponse;

/// What the adapter does with the delivery. Every path ends in exactly one of these, and
/// `Ack` is only ever given after the record (and, in the transactional mode, the
/// handler's writes) committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a Disposition says whether to ack, retry or dead-letter the delivery"]
pub enum Disposition {
    /// Acknowledge: the effect happened once, now or before.
    Ack {
        /// The handler's answer (the first one, when replayed): what a reply carries.
        response: StoredResponse,
        /// True when the handler did not run because the key was finished already.
        replayed: bool,
    },
    /// Negative-acknowledge, to be delivered again after `delay`: another consumer holds
    /// the key, or the handler or the store failed in a way a retry may cure.
    Retry {
        /// How long the broker should wait before the next delivery.
        delay: Duration,
        /// Why, for logs.
        reason: String,
    },
    /// Send to the dead letters with `reason` and acknowledge: no retry will cure it
    /// (no key, the key reused for another payload, a permanent failure, or the last
    /// attempt failed).
    DeadLetter {
        /// Why, carried with the dead letter.
        reason: String,
    },
}

/// A handler's failure: the message's record is released (or rolled back) so that a
/// retry runs the handler again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    reason: String,
    permanent: bool,
}

impl Failure {
    /// A failure a retry may cure (a dependency was down): retried until the last attempt.
    pub fn transient(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            permanent: false,
        }
    }

    /// A failure no retry cures (the payload is invalid): dead-lettered at once.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            permanent: true,
        }
    }

    /// Why it failed.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// True when no retry can cure it.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
