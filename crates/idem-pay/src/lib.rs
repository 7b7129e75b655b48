//! # idem-pay — the payment service
//!
//! Moves money between accounts exactly once per `order_id`, whichever node of a cluster
//! gets the request and however often it is retried. It is the system of DESIGN §5 and §6:
//! `idem serve` runs it.
//!
//! ## How a payment stays single
//!
//! A payment is one database transaction: it inserts the payment's row under the unique
//! `order_id` first (a concurrent duplicate waits on that unique key until the first
//! commits, then finds the row), locks payer and payee in account-id order (so two opposite
//! transfers cannot deadlock), checks the funds, moves the money, writes two ledger rows and
//! stores the exact answer bytes in the payment's row, then commits. A crash anywhere leaves
//! all of it or none of it. A repeat with the same payer, payee and amount gets the stored
//! bytes again with `Idempotent-Replayed: true`; anything else different is 422
//! `order_id_conflict`. A payer short of funds gets 402 and nothing is kept, so the order
//! may be paid later. Refunds work the same way under `refund_id`, which is unique within
//! its payment (the same `refund_id` on two payments is two refunds), and never add up to
//! more than the payment. Accounts replay their first answer for the same opening balance.
//!
//! The `Idempotency-Key` header is not needed: the business key is the record. A key that
//! is sent must be valid (400 otherwise) and does not change which order is paid.
//!
//! ## Pieces
//!
//! - [`validate`]: requests, every field checked and named; unknown fields are refused
//!   (400 naming the member: a misspelt `ammount` must not pass silently);
//! - [`Service`]: the calls, retried (bounded, jittered) on serialization failures,
//!   deadlocks and a busy database, with an optional Redis cache ([`Cache`]) that serves
//!   replays without SQL and changes no answer when Redis is gone;
//! - [`Db`]: SQLite (default), PostgreSQL, MySQL/MariaDB via `sqlx::Any`, schemas from
//!   embedded migrations, and [`Db::ledger_check`], which proves balances equal the ledger;
//! - [`api::router`]: the axum routes, errors as problem+json ([`problem`]), `/metrics`
//!   ([`metrics`]) and `/openapi.json` ([`openapi`]);
//! - [`serve`]: the `idem serve` command.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), idem_pay::Error> {
//! use idem_pay::{validate::NewPayment, Db, Service};
//! let db = Db::connect("sqlite://./idem-data/idem.db", 4).await?;
//! let service = Service::new(db, None, Default::default());
//! let payment = NewPayment::from_json(br#"{"order_id":"o1","payer":"alice","payee":"bob","amount":500}"#)?;
//! let first = service.pay(&payment).await?;
//! let again = service.pay(&payment).await?;
//! assert_eq!((first.body, again.replayed), (again.body.clone(), true));
//! # Ok(()) }
//! ```

pub mod api;
mod cache;
mod db;
mod error;
mod flows;
mod ledger;
mod memory;
pub mod metrics;
mod model;
pub mod openapi;
pub mod problem;
pub mod serve;
mod service;
pub mod validate;

pub use cache::Cache;
pub use db::{Backend, Db};
pub use error::{Error, Result};
pub use ledger::LedgerReport;
pub use model::{AccountBody, Answer, PaymentBody, RefundBody};
pub use service::{Service, ATTEMPTS_MAX};
