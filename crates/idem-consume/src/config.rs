//! [`Config`]: the scope, key source, lease, retention and retry policy of a consumer.

use std::time::Duration;

use idem::Scope;

use crate::{Disposition, Failure, KeySource};

/// How a consumer claims and retries. [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whose keys these are: keys of different scopes never meet (name it after the
    /// stream or queue and the operation).
    pub scope: Scope,
    /// Where each message's key comes from.
    pub key: KeySource,
    /// How long a claimed key belongs to the consumer running it (store mode); after it
    /// ends another consumer may take the message over. Default 30 s.
    pub lease: Duration,
    /// How long a finished key is remembered. Default 7 days; [`idem::TTL_FOREVER`] for a
    /// business key that is unique for ever.
    pub ttl: Duration,
    /// The delivery on which a failure goes to the dead letters instead of being retried.
    /// Default 5.
    pub max_attempts: u32,
    /// The delay before the second delivery after a failure; each further one doubles
    /// it, up to [`Config::retry_delay_max`]. Default 1 s.
    pub retry_delay: Duration,
    /// The longest delay between two deliveries after failures. Default 60 s.
    pub retry_delay_max: Duration,
}

impl Config {
    /// The defaults, for keys in `scope` read from `key`.
    pub fn new(scope: Scope, key: KeySource) -> Self {
        Self {
            scope,
            key,
            lease: Duration::from_secs(30),
            ttl: Duration::from_secs(7 * 86_400),
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
            retry_delay_max: Duration::from_secs(60),
        }
    }

    /// What a failure on delivery `attempt` comes to: a retry after a doubling delay, or
    /// the dead letters when it is permanent or this was the last attempt.
    pub fn after_failure(&self, attempt: u32, failure: &Failure) -> Disposition {
        if failure.is_permanent() || attempt >= self.max_attempts {
            return Disposition::DeadLetter {
                reason: format!("attempt {attempt}: {failure}"),
            };
        }
        let doublings = attempt.saturating_sub(1).min(16);
        let delay = self
            .retry_delay
            .saturating_mul(1 << doublings)
            .min(self.retry_delay_max);
        Disposition::Retry {
            delay,
            reason: failure.reason().to_owned(),
        }
    }
}
