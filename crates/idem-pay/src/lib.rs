//! # idem-pay — the payment service
//!
//! Moves money between accounts exactly once per `order_id`, whichever node of a cluster
//! gets the request and however often it is retried. It is the system of DESIGN §5 and §6:
//! `idem serve` runs it.
//!
//! ## How a payment stays single
//!
//! The idempotency is the library's, not the service's: every call is one database
//! transaction on `idem-sql`'s transactional mode ([`idem_sql::TransactionalStore`]). A
//! payment first claims its `order_id` with `begin_answered_in`, the record born completed
//! with the exact answer (which names the payment id about to be inserted) and kept for
//! ever ([`idem::TTL_FOREVER`]); a concurrent duplicate waits on the record's key until the
//! first commits, then replays. The claimed transaction inserts the payment row, locks payer
//! and payee in account-id order (so two opposite transfers cannot deadlock), checks the
//! funds, moves the money and writes two ledger rows, then commits: the record and the money
//! together, or neither. A repeat with the same payer, payee and amount is the library's
//! `Replay` of the stored bytes (`Idempotent-Replayed: true`); anything else different is
//! its `Mismatch`, 422 `order_id_conflict`. A payer short of funds gets 402 and the
//! rollback removes the record, so the order may be paid later. Refunds work the same way
//! under `refund_id`, scoped by their payment (the same `refund_id` on two payments is two
//! refunds), and never add up to more than the payment. Accounts replay their first answer
//! for the same opening balance.
//!
//! The `Idempotency-Key` header is not needed: the business key is the record. A key that
//! is sent must be valid (400 otherwise, by the one parser of `idem`) and does not change
//! which order is paid.
//!
//! ## Pieces
//!
//! - [`validate`]: requests, every field checked and named; unknown fields are refused
//!   (400 naming the member: a misspelt `ammount` must not pass silently);
//! - [`Service`]: the calls, retried by [`idem_sql::Retry::TRANSACTION`] on transient
//!   failures (a deadlock, a busy database, a lost connection, a restarting server), with
//!   the library's [`idem::ReplayMemory`] and optional [`idem_redis::ReplayCache`] in front
//!   for replays (losing Redis changes no answer);
//! - [`Db`]: the SQLite (default), PostgreSQL or MySQL/MariaDB store, the business schema
//!   from embedded migrations, and [`Db::ledger_check`], which proves balances equal the
//!   ledger;
//! - [`api::router`]: the axum routes, errors as problem+json ([`problem`]), `/metrics`
//!   ([`metrics`]) and `/openapi.json` ([`openapi`]);
//! - [`keys`]: API keys, each naming its tenant: [`ApiKeys`] and `idem keys`;
//! - [`serve`]: the `idem serve` command.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), idem_pay::Error> {
//! use idem_pay::{validate::NewPayment, Db, Service, Tenant};
//! let db = Db::connect("sqlite://./idem-data/idem.db", 4).await?;
//! let service = Service::new(db, None, Default::default());
//! let payment = NewPayment::from_json(br#"{"order_id":"o1","payer":"alice","payee":"bob","amount":500}"#)?;
//! let tenant = Tenant::default();
//! let first = service.pay(&tenant, &payment).await?;
//! let again = service.pay(&tenant, &payment).await?;
//! assert_eq!((first.body, again.replayed), (again.body.clone(), true));
//! # Ok(()) }
//! ```

pub mod api;
mod batch;
pub mod brokers;
mod db;
mod error;
mod flows;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod keys;
mod ledger;
pub mod metrics;
mod model;
pub mod openapi;
pub mod problem;
pub mod serve;
mod service;
pub mod tenant;
pub mod validate;

pub use db::{Backend, Db};
pub use error::{Error, Result};
pub use keys::{ApiKeys, KeyInfo, NewKey, Revocation};
pub use ledger::LedgerReport;
pub use model::{AccountBody, Answer, PaymentBody, RefundBody, Status};
pub use service::{Service, ATTEMPTS_MAX};
pub use tenant::Tenant;
