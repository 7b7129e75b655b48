//! [`Retry`]: bounded, jittered retries of work that failed transiently — one rule for the
//! stores' own statements and for callers that retry whole transactions.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// An error that says whether running the same work again may cure it.
pub trait Transient {
    /// True when a retry may succeed (a lost connection, a restarting server, a deadlock
    /// victim, a serialization failure, a busy SQLite file).
    fn is_transient(&self) -> bool;
}

impl Transient for sqlx::Error {
    fn is_transient(&self) -> bool {
        crate::error::is_transient(self)
    }
}

impl Transient for idem::StoreError {
    fn is_transient(&self) -> bool {
        idem::StoreError::is_transient(self)
    }
}

/// How often, and how far apart, transient failures are retried: exponential backoff from
/// `base` capped at `cap`, each delay drawn from the upper half of its ceiling so that
/// callers that collided once do not collide again in lockstep.
///
/// Retrying is safe only for work that keeps nothing when it fails: one statement that
/// changes nothing on failure, or a whole transaction that claims its idempotency record
/// first (a retry of a transaction whose commit was lost finds the record and replays).
///
/// # Example
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn run(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// use idem_sql::Retry;
/// let rows = Retry::TRANSACTION
///     .run(|| async {
///         let mut tx = pool.begin().await?;
///         let done = sqlx::query("UPDATE accounts SET balance = balance - 5 WHERE id = 'a'")
///             .execute(&mut *tx)
///             .await?;
///         tx.commit().await?;
///         Ok::<_, sqlx::Error>(done.rows_affected())
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (at least 1).
    pub attempts_max: u32,
    /// The ceiling of the first delay.
    pub base: Duration,
    /// The largest ceiling any delay has.
    pub cap: Duration,
}

impl Retry {
    /// For one statement inside a store: 8 tries, 1 ms doubling to at most 64 ms.
    pub const STATEMENT: Retry = Retry {
        attempts_max: 8,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(64),
    };

    /// For a caller's whole transaction: 10 tries, 4 ms doubling to at most 250 ms — about
    /// 1.5 s in all, long enough to ride out a database restart or a failover's first
    /// second, short enough that the client's own timeout has not passed.
    pub const TRANSACTION: Retry = Retry {
        attempts_max: 10,
        base: Duration::from_millis(4),
        cap: Duration::from_millis(250),
    };

    /// The delay before try `attempt + 1`, after `attempt` failed tries (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(ceiling_us / 2..=ceiling_us))
    }

    /// Runs `op` until it succeeds, fails for good, or has been tried `attempts_max`
    /// times; the last error is returned.
    ///
    /// # Errors
    /// The error of the last try: a permanent one at once, a transient one when the tries
    /// ran out.
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: Transient + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_counted(op, |_, _| {}).await
    }

    /// [`Retry::run`], calling `on_retry(error, attempt)` before each retry (to count or
    /// log it).
    ///
    /// # Errors
    /// As [`Retry::run`].
    pub async fn run_counted<T, E, F, Fut, R>(&self, mut op: F, mut on_retry: R) -> Result<T, E>
    where
        E: Transient + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: FnMut(&E, u32),
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(error) if error.is_transient() && attempt < self.attempts_max => {
                    let delay = self.delay(attempt);
                    tracing::debug!(%error, attempt, ?delay, "transient database failure, retrying");
                    on_retry(&error, attempt);
                    idem::metrics::transient_retry("transaction");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, attempt, "transient database failure, giving up");
                    return Err(error);
                }
                outcome => return outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let policy = Retry::TRANSACTION;
        for attempt in 1..30 {
            let d = policy.delay(attempt);
            let ceiling = (policy.base * (1 << (attempt - 1).min(20))).min(policy.cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            assert!(
                d >= ceiling / 2,
                "attempt {attempt}: {d:?} < half of {ceiling:?}"
            );
        }
    }

    #[derive(Debug)]
    struct Flaky(bool);
    impl Transient for Flaky {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky({})", self.0)
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_bound_permanent_ones_never() {
        let policy = Retry {
            attempts_max: 3,
            base: Duration::from_micros(10),
            cap: Duration::from_micros(10),
        };
        let (out, calls) = tried(&policy, |_| Err(Flaky(true))).await;
        assert!(out.is_err());
        assert_eq!(calls, 3, "a transient failure is tried attempts_max times");

        let (out, calls) = tried(&policy, |_| Err(Flaky(false))).await;
        assert!(out.is_err());
        assert_eq!(calls, 1, "a permanent failure is not retried");

        let (out, _) = tried(&policy, |n| if n < 3 { Err(Flaky(true)) } else { Ok(n) }).await;
        assert_eq!(out.ok(), Some(3), "success after two transient failures");
    }

    /// Runs `policy` over a call whose `n`-th attempt answers `outcome(n)`; the result and
    /// how many attempts were made.
    async fn tried(
        policy: &Retry,
        outcome: fn(u32) -> Result<u32, Flaky>,
    ) -> (Result<u32, Flaky>, u32) {
        let mut calls = 0;
        let out = policy
            .run(|| {
                calls += 1;
                let result = outcome(calls);
                async move { result }
            })
            .await;
        (out, calls)
    }
}
