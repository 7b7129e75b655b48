//! [`TransactionalStore`]: DESIGN §2's transactional mode, one trait over the three SQL
//! stores, so code generic over the backend can claim, replay and refuse inside its own
//! database transaction.

use std::ops::{Deref, DerefMut};

use async_trait::async_trait;
use idem::{Claim, Hold, Outcome, Store, StoreError, StoredResponse};
use sqlx::{Database, Pool, Transaction};
use tokio::sync::OwnedMutexGuard;

/// The transactional mode: the record is written inside the caller's `sqlx::Transaction`,
/// so it and the caller's business writes commit or vanish together. A concurrent
/// duplicate blocks on the record's primary key until the first transaction ends, then
/// sees the record and replays it (or is refused when its fingerprint differs).
///
/// Two ways to claim:
///
/// - [`begin_in`](Self::begin_in) then [`complete_in`](Self::complete_in): the record is
///   in progress while the caller works, and completed with the answer it computed.
/// - [`begin_answered_in`](Self::begin_answered_in): the caller knows its answer before
///   its writes (a payment's body names the payment id it is about to insert), so the
///   record is born completed in one statement. If a business rule then refuses (no
///   funds), rolling the transaction back removes the record: the key stays free.
///
/// On a [`StoreError`] whose [`StoreError::is_transient`] is true, roll the whole
/// transaction back and run it again ([`crate::Retry::TRANSACTION`]): it kept nothing, and
/// if its commit was lost in flight, the retry finds the record and replays.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use idem::{Claim, Fingerprint, Key, Outcome, Scope, StoredResponse, TTL_FOREVER};
/// # #[cfg(feature = "postgres")]
/// use idem_sql::{PostgresStore, TransactionalStore};
///
/// # #[cfg(feature = "postgres")]
/// # async fn run(store: PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// let (scope, key) = (Scope::new("tenant-7|POST /v1/payments")?, Key::new("order-42")?);
/// let fp = Fingerprint::of_bytes("POST", "/v1/payments", br#"{"amount":500}"#);
/// let answer = StoredResponse::new(201, r#"{"status":"succeeded"}"#);
/// let claim = Claim::new(&scope, &key, &fp, Duration::ZERO, TTL_FOREVER);
/// let mut tx = store.begin_write().await?;
/// match store.begin_answered_in(&mut tx, claim, &answer).await? {
///     Outcome::Acquired { .. } => {
///         sqlx::query("UPDATE accounts SET balance = balance - 500 WHERE id = 'alice'")
///             .execute(&mut **tx)
///             .await?;
///         tx.commit().await?; // the record and the debit, together
///     }
///     Outcome::Replay(first) => println!("already paid: {}", first.status),
///     Outcome::Mismatch => println!("order-42 was used for another payment"),
///     Outcome::InFlight { retry_after } => println!("still running, retry in {retry_after:?}"),
/// }
/// # Ok(()) }
/// ```
#[async_trait]
pub trait TransactionalStore: Store + Clone + 'static {
    /// The sqlx database the records live in.
    type Database: Database;

    /// The pool, for the caller's own queries and transactions.
    fn pool(&self) -> &Pool<Self::Database>;

    /// Runs the caller's own migrations (its business tables, beside the records) the way
    /// the store runs its own: safe when several nodes start at once (on MySQL and
    /// MariaDB under a named lock, which sqlx's own locking does not take on MariaDB), and
    /// blind to the store's migration versions in the same database.
    ///
    /// # Errors
    /// [`crate::Error::Migrate`] when a migration fails, [`crate::Error::MigrationLock`]
    /// when another node held the lock too long.
    async fn run_migrations(&self, migrator: sqlx::migrate::Migrator) -> Result<(), crate::Error>;

    /// Opens a transaction that will write: `BEGIN IMMEDIATE` on SQLite (the file's one
    /// write lock taken up front, queued behind this process's other writers, so a
    /// transaction that reads first never fails to upgrade), `BEGIN` elsewhere.
    ///
    /// # Errors
    /// A [`StoreError`] when no connection could be had or the database refused.
    async fn begin_write(&self) -> Result<WriteTransaction<Self::Database>, StoreError>;

    /// [`Store::begin`] inside `tx`: an acquired record is in progress under the returned
    /// token, leased for `claim.lease`, and exists only if `tx` commits.
    ///
    /// # Errors
    /// A [`StoreError`]; when transient, roll `tx` back and run the transaction again.
    async fn begin_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        claim: Claim<'_>,
    ) -> Result<Outcome, StoreError>;

    /// Claims the key with its answer already known: on `Acquired` the record holds
    /// `answer` as completed, and exists only if `tx` commits. Every other outcome is
    /// [`Store::begin`]'s, decided by the same rules. The claim's lease is not used: a
    /// record born completed has no lease to run.
    ///
    /// # Errors
    /// As [`TransactionalStore::begin_in`].
    async fn begin_answered_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        claim: Claim<'_>,
        answer: &StoredResponse,
    ) -> Result<Outcome, StoreError>;

    /// Claims, in one statement (two on MySQL and MariaDB), every key of `claims` that has
    /// no record at all, each record born completed with its answer and existing only if
    /// `tx` commits: true at the index of each key claimed. A key with a record in any
    /// state is left alone (false): decide it with
    /// [`TransactionalStore::begin_answered_in`], whose rules replay, refuse or replace. A
    /// key named twice is claimed for its first claim only. For a [`crate::Batcher`]'s
    /// set-based path, where one claim per key would be one round trip per key; keep sets
    /// to batch sizes (five bound values per key).
    ///
    /// # Errors
    /// A [`StoreError`]: roll `tx` back. A concurrent transaction claiming one of the keys
    /// is not an error: the key is waited for and, if that one commits, left alone. InnoDB
    /// may still pick a deadlock victim among three or more sets racing for a key
    /// ([`StoreError::Contention`]), more often under `REPEATABLE READ`, whose read takes
    /// gap locks: run such sessions in `READ COMMITTED`.
    async fn claim_fresh_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        claims: &[crate::AnsweredClaim<'_>],
    ) -> Result<Vec<bool>, StoreError>;

    /// Deletes the records of `keys`, which [`TransactionalStore::claim_fresh_in`] claimed
    /// in `tx` for calls that then wrote nothing: their keys stay free, as a rolled-back
    /// claim's would.
    ///
    /// # Errors
    /// A [`StoreError`].
    async fn forget_fresh_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        keys: &[(&idem::Scope, &idem::Key)],
    ) -> Result<(), StoreError>;

    /// Runs `sql` — statements without binds, `;`-separated, such as a [`crate::Batcher`]'s
    /// savepoints — inside `tx`.
    ///
    /// # Errors
    /// The database's error.
    async fn execute_raw_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        sql: &'static str,
    ) -> Result<(), sqlx::Error>;

    /// [`Store::complete`] inside `tx`: the response is stored only if `tx` commits.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the record is not in progress under `hold.token`.
    async fn complete_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        hold: Hold<'_>,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;
}

/// A transaction from [`TransactionalStore::begin_write`]: derefs to the
/// `sqlx::Transaction` (`&mut **tx` is its connection), and on SQLite also holds this
/// process's writer slot until it commits or drops. Dropped without a commit, it rolls back.
#[derive(Debug)]
pub struct WriteTransaction<DB: Database> {
    tx: Transaction<'static, DB>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl<DB: Database> WriteTransaction<DB> {
    pub(crate) fn new(tx: Transaction<'static, DB>, writer: Option<OwnedMutexGuard<()>>) -> Self {
        Self {
            tx,
            _writer: writer,
        }
    }

    /// Commits, then frees the writer slot.
    ///
    /// # Errors
    /// The database's error; a transient one (see [`crate::is_transient`]) leaves the
    /// outcome unknown, which a retry that claims its record first resolves.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls back, then frees the writer slot.
    ///
    /// # Errors
    /// The database's error.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: Database> Deref for WriteTransaction<DB> {
    type Target = Transaction<'static, DB>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: Database> DerefMut for WriteTransaction<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Implements [`TransactionalStore`] for a store with the inherent `open_write`, the
/// [`crate::begin::BeginSql`] statements and the `complete` function every backend has: the trait's surface is written once, each backend
/// keeps only its SQL.
macro_rules! impl_transactional {
    ($store:ty, $db:ty, $migrate:ident) => {
        #[async_trait::async_trait]
        impl $crate::TransactionalStore for $store {
            type Database = $db;

            fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            async fn run_migrations(
                &self,
                migrator: sqlx::migrate::Migrator,
            ) -> Result<(), $crate::Error> {
                $crate::migrate::$migrate(migrator, &self.pool).await
            }

            async fn begin_write(&self) -> Result<$crate::WriteTransaction<$db>, idem::StoreError> {
                self.open_write().await.map_err($crate::error::store_error)
            }

            async fn begin_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                claim: idem::Claim<'_>,
            ) -> Result<idem::Outcome, idem::StoreError> {
                let request = $crate::begin::Request {
                    claim,
                    answer: None,
                };
                let name = idem::Store::name(self);
                idem::metrics::instrument(name, "begin_in", async {
                    let on = &mut $crate::begin::On::Tx(tx);
                    $crate::begin::begin(self, on, &self.retries, &request).await
                })
                .await
            }

            async fn begin_answered_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                claim: idem::Claim<'_>,
                answer: &idem::StoredResponse,
            ) -> Result<idem::Outcome, idem::StoreError> {
                let encoded = answer.encode();
                let request = $crate::begin::Request {
                    // Born completed: no lease to run.
                    claim: idem::Claim {
                        lease: std::time::Duration::ZERO,
                        ..claim
                    },
                    answer: Some(&encoded),
                };
                let name = idem::Store::name(self);
                idem::metrics::instrument(name, "begin_answered_in", async {
                    let on = &mut $crate::begin::On::Tx(tx);
                    $crate::begin::begin(self, on, &self.retries, &request).await
                })
                .await
            }

            async fn claim_fresh_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                claims: &[$crate::AnsweredClaim<'_>],
            ) -> Result<Vec<bool>, idem::StoreError> {
                let name = idem::Store::name(self);
                idem::metrics::instrument(name, "claim_fresh_in", async {
                    claim_fresh(&mut **tx, claims)
                        .await
                        .map_err($crate::error::store_error)
                })
                .await
            }

            async fn forget_fresh_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                keys: &[(&idem::Scope, &idem::Key)],
            ) -> Result<(), idem::StoreError> {
                let name = idem::Store::name(self);
                idem::metrics::instrument(name, "forget_fresh_in", async {
                    forget_fresh(&mut **tx, keys)
                        .await
                        .map_err($crate::error::store_error)
                })
                .await
            }

            async fn execute_raw_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                sql: &'static str,
            ) -> Result<(), sqlx::Error> {
                // Without binds, a `&str` goes by the simple (text) protocol, which takes
                // several statements in one round trip.
                sqlx::Executor::execute(&mut **tx, sql).await?;
                Ok(())
            }

            async fn complete_in(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                hold: idem::Hold<'_>,
                response: &idem::StoredResponse,
            ) -> Result<(), idem::StoreError> {
                let name = idem::Store::name(self);
                idem::metrics::instrument(name, "complete_in", async {
                    let done = complete(&mut **tx, hold, response)
                        .await
                        .map_err($crate::error::store_error)?;
                    $crate::common::fenced_unless(done)
                })
                .await
            }
        }
    };
}
pub(crate) use impl_transactional;
