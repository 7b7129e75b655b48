//! # idem-redis — idempotency records in Redis, and Redis in front of SQL
//!
//! Two [`idem::Store`]s for services whose nodes share one Redis (or Valkey):
//!
//! - [`RedisStore`] keeps the records themselves in Redis. Every operation is one atomic
//!   step of the server: `begin` on a fresh key or a finished one is one native
//!   `SET … NX GET`, everything else one Lua script — no check-then-act across round
//!   trips. Time is Redis's clock, never a node's.
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
//! use idem_redis::RedisStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
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
//! let cache = ReplayCache::lazy(&RedisOptions::from_url("redis://127.0.0.1:6379")?)?;
//! let store = TieredStore::new(sql_store, cache);
//! // ... use it as any Store; store.stats() counts cache hits and misses.
//! ```
//!
//! ## Layout in Redis
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{<scope>}:<key>` | string | one record: the fingerprint (32 bytes), a 25-byte header (`struct.pack('>c1ddd', state, token, lease, life)`, state `P` running or `C` completed, lease and life in ms from the record's creation), then the encoded response |
//! | `<prefix>:cache:{<scope>}:<key>` | hash | [`TieredStore`]'s cache entry: `fp`, `exp`, `resp` |
//!
//! The prefix defaults to `idem`. A [`idem::Scope`] never holds a brace, so the hash tag
//! `{<scope>}` is exactly the scope: every record of one scope shares a cluster hash slot,
//! and every command and script touches one key only, so the store runs unchanged on Redis
//! Cluster. Needs Redis 7.0 or later (`SET … NX GET`, `PEXPIRETIME`), or Valkey 7.2+.
//!
//! ## Time, and why `begin` is mostly not a script
//!
//! Redis expires a record itself, at its expiry: the key's expiry is `created + life − 1`
//! ms by Redis's clock (`PX` or `PXAT`), so a key lives while Redis's time is below the
//! record's expiry, and a record Redis still holds is live. The header keeps the lease and
//! the life relative to the record's creation, which the key's expiry pins
//! (`PEXPIRETIME + 1 − life`). So a fresh record needs no clock reading: `begin` sends the
//! record a fresh key gets (token 1) as `SET key record NX GET PX life−1`. Redis either
//! stores it (Acquired) or hands back the record that is there, which answers a replay and
//! a mismatch at once. A Lua script costs the server about three times a plain command, so
//! a fresh claim and a replay now cost it one plain command each. Only a record
//! in progress needs the clock (running lease or ended), and then the `begin` script
//! decides from scratch, atomically. `complete` and `release` compare the fencing token
//! first, which takes a script: Redis 7 has no compare-and-set on a string.
//!
//! Tests move a handle's clock forward ([`idem::TimeTravel`]) without Redis knowing, so a
//! handle with a clock offset always runs the scripts, and they treat a record whose
//! expiry is at or before their "now" (`TIME` plus the offset) as absent. A record replaced
//! after expiry gets the old token plus one; one that Redis already evicted starts again
//! at token 1, as after a purge in any store.
//!
//! `purge_expired(limit)` is therefore only needed for records expired by such a clock
//! offset. With the store's own clock it returns 0 at once (a purger calling it every
//! minute costs nothing); ahead of it, it walks the prefix's records with `SCAN` (on the
//! server it is connected to; the walk covers the server's whole keyspace) and deletes,
//! one slot-local script per record, those expired by the handle's clock, stopping at
//! `limit`.
//!
//! ## Failures
//!
//! A server that cannot be reached, drops the connection or answers too late is
//! [`idem::StoreError::Unavailable`] (the script may or may not have run; a retry sees the
//! truth). The connection is a [`redis::aio::ConnectionManager`], which reconnects on the
//! next call. Scripts are called by SHA and reloaded when the server answers `NOSCRIPT`.
//! A record in the store's earlier layout (absolute times, lower-case state) reads as
//! [`idem::StoreError::Corrupt`], never as another record.

mod cache;
mod connection;
mod error;
mod scripts;
mod store;
mod tiered;

pub use cache::{CacheStats, ReplayCache};
pub use connection::{RedisOptions, DEFAULT_PREFIX};
pub use error::Error;
pub use store::{RedisStore, PURGE_LIMIT_MAX};
pub use tiered::TieredStore;
