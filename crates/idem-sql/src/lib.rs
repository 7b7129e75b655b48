//! # idem-sql — idempotency records in SQLite, PostgreSQL and MySQL/MariaDB
//!
//! Stores for [`idem`]'s protocol on the databases services already run, built on sqlx:
//!
//! - [`SqliteStore`] (feature `sqlite`): one file in WAL mode, the embedded default.
//! - [`PostgresStore`] (feature `postgres`): any number of nodes on one server (and
//!   compatible engines).
//! - [`MySqlStore`] (feature `mysql`): the same on MySQL or MariaDB (InnoDB).
//!
//! Each implements [`idem::Store`] and passes the whole conformance suite against a real
//! server, racing across two connection pools. Why they hold across machines:
//!
//! - **The database's clock.** Every lease and expiry is computed inside SQL from the
//!   server's clock (`clock_timestamp()`, `NOW(3)`, `julianday('now')`), never a node's.
//!   ([`idem::TimeTravel`] adds a per-handle offset, bound as a parameter, for tests.)
//! - **No check-then-act.** `begin` reads, and any answer it gives from that read
//!   (replay, mismatch, in flight) was true at the moment of the read. Every write is one
//!   conditional statement: an insert that loses to a concurrent insert (`ON CONFLICT DO
//!   NOTHING`, or MySQL's duplicate-key error, recognised by its code), or an update that
//!   only applies while the row still holds the token that was read. A lost write reads
//!   again. PostgreSQL does the read and the insert in one statement.
//! - **Contention is handled, not surfaced.** A deadlock, serialization failure, lock
//!   wait timeout or SQLite BUSY is retried inside the store, bounded ([`Retry::STATEMENT`]),
//!   and counted (`retries()`); connection failures and a server shutting down are
//!   [`idem::StoreError::Unavailable`]. Both are transient ([`is_transient`]).
//! - **Migrations run themselves.** Timestamped files embedded with `sqlx::migrate!`, one
//!   directory per backend, run on open; PostgreSQL takes sqlx's advisory lock and MySQL
//!   a named lock of its own (sqlx's does not lock on MariaDB), so nodes starting together
//!   do not collide.
//!
//! ## Opening a store
//!
//! Each store has one options type holding only what its backend reads, in sqlx's shape:
//! [`SqliteOptions`], [`PostgresOptions`] (a schema), [`MySqlOptions`] (a database), each
//! parsed from a URL (`from_url`, or `str::parse`) and tuned with builder methods; then
//! `XStore::connect_with(&options)`, or `XStore::connect(url)` for every default.
//! `idem_redis` opens its stores the same way.
//!
//! ## Transactional mode
//!
//! DESIGN §2's strongest guarantee, one trait over the three backends
//! ([`TransactionalStore`], so code generic over the database can use it): `begin_in` and
//! `complete_in` run inside the caller's own `sqlx::Transaction`, so the record and the
//! business writes commit or vanish together — a payment cannot be made without its
//! record, nor recorded without being made. A concurrent duplicate blocks on the record's
//! primary key until the first transaction ends, then replays its answer. A caller that
//! knows its answer before its writes claims with `begin_answered_in` instead: the record
//! is born completed in one statement, and a rollback removes it. A business key that is
//! unique for ever (an `order_id`) takes [`idem::TTL_FOREVER`]. The transaction's own
//! retry on transient failures is [`Retry::TRANSACTION`], classified by [`is_transient`];
//! the caller's own migrations run beside the store's with
//! [`TransactionalStore::run_migrations`].
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use idem::{Fingerprint, Key, Outcome, Scope, Store, StoredResponse};
//! # #[cfg(feature = "postgres")]
//! use idem_sql::{PostgresStore, TransactionalStore};
//!
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://app@db/app").await?;
//! let (scope, key) = (Scope::new("tenant-7|POST /v1/payments")?, Key::new("order-42")?);
//! let fp = Fingerprint::of_bytes("POST", "/v1/payments", br#"{"amount":500}"#);
//! let (lease, ttl) = (Duration::from_secs(30), Duration::from_secs(86_400));
//!
//! // The payment and its record in one transaction.
//! let mut tx = store.begin_write().await?;
//! match store.begin_in(&mut tx, &scope, &key, &fp, lease, ttl).await? {
//!     Outcome::Acquired { token, .. } => {
//!         sqlx::query("UPDATE accounts SET balance = balance - 500 WHERE id = 'alice'")
//!             .execute(&mut **tx)
//!             .await?;
//!         let answer = StoredResponse::new(201, r#"{"status":"succeeded"}"#);
//!         store.complete_in(&mut tx, &scope, &key, token, &answer).await?;
//!         tx.commit().await?;
//!     }
//!     Outcome::Replay(first) => println!("already paid: {}", first.status),
//!     Outcome::Mismatch => println!("order-42 was used for another payment"),
//!     Outcome::InFlight { retry_after } => println!("still running, retry in {retry_after:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Tests
//!
//! SQLite runs everywhere. PostgreSQL and MySQL run against the servers in
//! `IDEM_TEST_POSTGRES` and `IDEM_TEST_MYSQL` (skipped with a printed reason when unset, a
//! failure when `IDEM_REQUIRE_BACKENDS=1`), each test in a schema or database of its own.

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "idem-sql has no store without a backend: enable at least one of its features \
     `sqlite`, `postgres` or `mysql` (all three are on by default)"
);

mod begin;
mod common;
mod error;
mod migrate;
mod options;
mod retry;
mod transactional;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::{is_transient, Error};
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "mysql")]
pub use options::MySqlOptions;
#[cfg(feature = "postgres")]
pub use options::PostgresOptions;
#[cfg(feature = "sqlite")]
pub use options::SqliteOptions;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use retry::{Retry, Transient};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use transactional::{TransactionalStore, WriteTransaction};
