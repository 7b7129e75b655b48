#![doc = include_str!("../README.md")]

mod config;
mod deadline;
mod error;
mod extract;
mod flow;
mod future;
mod guard;
pub mod key;
mod layer;
#[cfg(feature = "otel")]
mod otel;
pub mod problem;
mod purge;
#[cfg(feature = "server")]
pub mod server;
mod service;
#[cfg(feature = "server")]
pub mod trace;

pub use config::{
    store_success_and_client_errors, Config, InFlight, KeyFn, KeySource, PrincipalFn,
    BODY_LIMIT_BYTES_DEFAULT, LEASE_DEFAULT, TTL_DEFAULT,
};
pub use deadline::{BodyDeadlineElapsed, DeadlineBody};
pub use error::Error;
pub use extract::IdempotencyKey;
pub use flow::IDEMPOTENT_REPLAYED;
pub use future::ResponseFuture;
pub use key::IDEMPOTENCY_KEY;
pub use layer::IdempotencyLayer;
pub use problem::Problem;
pub use purge::{spawn_purger, PURGE_BATCH};
pub use service::Idempotency;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(feature = "testing")]
pub mod testing;
