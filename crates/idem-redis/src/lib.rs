//! # idem-redis — idempotency records in Redis, and Redis in front of SQL
//!
//! Two [`idem::Store`]s for services whose nodes share one Redis (or Valkey):
//!
//! - [`RedisStore`] keeps the records themselves in Redis. Every operation (`begin`,
//!   `complete`, `release`, `get`, `purge_expired`, `now`) is one Lua script, so each is
//!   one atomic step of the server: no check-then-act across round trips. Time is Redis's
//!   `TIME`, never a node's clock.
//! - [`TieredStore`] puts a [`ReplayCache`] in Redis in front of any other store (SQL),
//!   which stays the truth: replays are answered from Redis when it has them, everything
//!   else goes to the truth store first. Losing Redis loses nothing and changes no answer;
//!   it only costs speed.
//!
//! ## Why
//!
//! A retried payment must not run twice, whichever node it lands on. The SQL stores of
//! `idem-sql` make that durable; Redis makes the common case — a client retrying a request
//! that already finished — cheap. Use [`RedisStore`] alone when Redis's durability
//! (AOF/replication) is enough for your records, [`TieredStore`] when it is not.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use idem::{Fingerprint, Key, Outcome, Scope, Store, StoredResponse};
//! use idem_redis::{RedisOptions, RedisStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect(RedisOptions::new("redis://127.0.0.1:6379")).await?;
//! let (scope, key) = (Scope::new("tenant-7|POST /v1/payments")?, Key::new("order-1")?);
//! let fp = Fingerprint::of_bytes("POST", "/v1/payments", b"{\"amount\":5}");
//! let (lease, ttl) = (Duration::from_secs(30), Duration::from_secs(86_400));
//!
//! match store.begin(&scope, &key, &fp, lease, ttl).await? {
//!     Outcome::Acquired { token, .. } => {
//!         // ... move the money, once ...
//!         store.complete(&scope, &key, token, &StoredResponse::new(201, "paid")).await?;
//!     }
//!     Outcome::Replay(first) => println!("already done: {}", first.status),
//!     Outcome::Mismatch => println!("422: key reused for another request"),
//!     Outcome::InFlight { retry_after } => println!("409: retry in {retry_after:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! With SQL as the truth (any `Store` works, here `idem_sql::SqliteStore`):
//!
//! ```ignore
//! let cache = ReplayCache::lazy(RedisOptions::new("redis://127.0.0.1:6379"))?;
//! let store = TieredStore::new(sql_store, cache);
//! // ... use it as any Store; store.stats() counts cache hits and misses.
//! ```
//!
//! ## Layout in Redis
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{<scope>}:<key>` | hash | one record: `fp`, `st` (`p`/`c`), `tok`, `lease`, `exp`, `at`, `resp` |
//! | `<prefix>:expiry` | sorted set | every record key of the prefix, scored by its expiry |
//! | `<prefix>:cache:{<scope>}:<key>` | hash | [`TieredStore`]'s cache entry: `fp`, `exp`, `resp` |
//!
//! The prefix defaults to `idem`. A [`idem::Scope`] never holds a brace, so the hash tag
//! `{<scope>}` is exactly the scope: one record's keys — and every record of one scope —
//! share a cluster hash slot, and the scripts of `begin`, `complete`, `release` and `get`
//! touch that slot only (plus the index, below).
//!
//! Records expire with `PEXPIREAT` at their expiry. Tests move a handle's clock forward
//! ([`idem::TimeTravel`]) without Redis knowing, so every script also treats a record whose
//! stored expiry is at or before its own "now" (`TIME` plus the handle's offset) as absent.
//! A record replaced after expiry gets the old token plus one; one that Redis already
//! evicted starts again at token 1, as after a purge in any store.
//!
//! ### The expiry index and clusters
//!
//! `purge_expired(limit)` must say exactly how many expired records it deleted and stop at
//! `limit`, which needs an index: the sorted set `<prefix>:expiry`. It is the one key that
//! is not slot-local — `begin` and `release` update it beside the record, and the purge
//! script deletes records the index names rather than its declared keys. That is fine on a
//! single server, a primary with replicas, or Sentinel. On Redis Cluster the index must be
//! sharded with the records: one index per hash tag, `<prefix>:{<scope>}:expiry`, updated in
//! the same script as its records (then slot-local), and a purge that walks the index keys
//! of each primary (`SCAN MATCH <prefix>:{*}:expiry` per node) running the purge script on
//! each until `limit` records are deleted. Nothing else changes.
//!
//! ## Failures
//!
//! A server that cannot be reached, drops the connection or answers too late is
//! [`idem::StoreError::Unavailable`] (the script may or may not have run; a retry sees the
//! truth). The connection is a [`redis::aio::ConnectionManager`], which reconnects on the
//! next call. Scripts are called by SHA and reloaded when the server answers `NOSCRIPT`.

mod cache;
mod connection;
mod error;
mod scripts;
mod store;
mod tiered;

pub use cache::ReplayCache;
pub use connection::{RedisOptions, DEFAULT_PREFIX};
pub use error::Error;
pub use store::{RedisStore, PURGE_LIMIT_MAX};
pub use tiered::{CacheStats, TieredStore};
