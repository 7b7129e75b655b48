#![doc = include_str!("../README.md")]
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(unused)
)]

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
pub use options::StoreOptions;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use retry::{Retry, Transient};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use transactional::{TransactionalStore, WriteTransaction};
