#![doc = include_str!("../README.md")]

mod cache;
mod connection;
mod error;
mod keys;
mod options;
mod scripts;
mod store;
mod tiered;

pub use cache::{CacheStats, ReplayCache};
pub use error::Error;
pub use options::{RedisOptions, CLUSTER_SCHEME, DEFAULT_PREFIX};
#[cfg(feature = "fuzzing")]
pub use store::fuzzing;
pub use store::RedisStore;
pub use tiered::TieredStore;
