#![doc = include_str!("../README.md")]

mod cache;
mod connection;
mod error;
mod scripts;
mod store;
mod tiered;

pub use cache::{CacheStats, ReplayCache};
pub use connection::{RedisOptions, DEFAULT_PREFIX};
pub use error::Error;
#[cfg(feature = "fuzzing")]
pub use store::fuzzing;
pub use store::RedisStore;
pub use tiered::TieredStore;
