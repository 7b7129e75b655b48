#![doc = include_str!("../README.md")]

mod admin;
mod args;
mod error;
mod forward;
mod run;
mod store;

pub use args::ProxyArgs;
pub use error::Error;
pub use forward::FENCING_TOKEN_HEADER;
pub use run::{run, serve};
pub use store::{open_store, DEFAULT_DATABASE};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
