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
//! | `<prefix>:{<scope>}:<key>` | string | one record: the fingerprint (32 bytes), a 33-byte header (`struct.pack('>c1dddd', state, token, lease_until, expires_at, created_at)`, state `p` or `c`), then the encoded response |
//! | `<prefix>:cache:{<scope>}:<key>` | hash | [`TieredStore`]'s cache entry: `fp`, `exp`, `resp` |
//!
//! The prefix defaults to `idem`. A [`idem::Scope`] never holds a brace, so the hash tag
//! `{<scope>}` is exactly the scope: every record of one scope shares a cluster hash slot,
//! and each script (`begin`, `complete`, `release`, `get`) touches one key only, so the
//! store runs unchanged on Redis Cluster. One string per record keeps each script to three
//! commands — `TIME`, `GET`, `SET … PXAT` — which is what a fresh key costs the server.
//! Needs Redis 6.2 or later (`SET … PXAT`), or any Valkey.
//!
//! Records expire with `PXAT` at their expiry: Redis removes them itself. Tests move a
//! handle's clock forward ([`idem::TimeTravel`]) without Redis knowing, so every script also
//! treats a record whose stored expiry is at or before its own "now" (`TIME` plus the
//! handle's offset) as absent. A record replaced after expiry gets the old token plus one;
//! one that Redis already evicted starts again at token 1, as after a purge in any store.
//!
//! `purge_expired(limit)` is therefore only needed for records expired by such a clock
//! offset: it walks the prefix's records with `SCAN` (on the server it is connected to)
//! and deletes, one slot-local script per record, those expired by the store's clock,
//! stopping at `limit`.
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
