#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "idem-sql has no store without a backend: enable at least one of its features \
     `sqlite`, `postgres` or `mysql` (all three are on by default)"
);

mod batch;
mod begin;
mod common;
mod error;
mod fresh;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
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

pub use batch::{
    BatchError, BatchFailure, BatchItem, BatchOptions, BatchStats, Batcher, SetStep, Step,
};
pub use error::{is_transient, Error};
pub use fresh::AnsweredClaim;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "mysql")]
pub use options::MySqlOptions;
#[cfg(feature = "postgres")]
pub use options::PostgresOptions;
#[cfg(feature = "sqlite")]
pub use options::SqliteOptions;
pub use options::{still_answers, RELEASE_PING_MAX};
#[cfg(feature = "postgres")]
pub use postgres::{ClaimValue, InlineClaim, PostgresStore};
pub use retry::{Retry, Transient};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use transactional::{TransactionalStore, WriteTransaction};
