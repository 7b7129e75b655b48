//! # idem — the idempotency protocol
//!
//! A request repeated because of a timeout, a retry or a double click, landing on any node
//! of a cluster, must have its effect once and get the first answer again. This crate is the
//! protocol that makes it so, with no I/O of its own:
//!
//! - [`Key`] and [`Scope`] name a request; [`Fingerprint`] says whether two requests under
//!   one key are the same request (SHA-256 over method, path and canonical JSON).
//! - [`key_from_header`] reads an `Idempotency-Key` header (an sf-string or a bare token)
//!   into a [`Key`]: the one parser every HTTP surface uses.
//! - [`Store::begin`] takes a [`Claim`] on a key and decides it in one atomic step and answers one [`Outcome`]:
//!   `Acquired` (run it), `Replay` (return the stored [`StoredResponse`]), `Mismatch`
//!   (the key was reused for another request) or `InFlight` (still running elsewhere).
//! - [`Store::complete`] stores the answer for the [`Hold`] on a record, refusing a holder
//!   whose [`FencingToken`] is stale; [`Store::release`] frees the key when the operation
//!   failed before any effect.
//! - [`ReplayMemory`] is a node's bounded memory of settled answers, for replays without
//!   a round trip, over any store.
//! - [`MemoryStore`] keeps records in memory; `idem-sql` and `idem-redis` keep them in
//!   SQLite, PostgreSQL, MySQL and Redis. Every store passes [`conformance`] (feature
//!   `conformance`).
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use idem::{Claim, Fingerprint, Key, MemoryStore, Outcome, Scope, Store, StoredResponse};
//!
//! # tokio_test_block(async {
//! let store = MemoryStore::new();
//! let (scope, key) = (Scope::global(), Key::new("order-1").unwrap());
//! let fp = Fingerprint::of_bytes("POST", "/pay", b"amount=5");
//! let claim = Claim::new(&scope, &key, &fp, Duration::from_secs(30), Duration::from_secs(86_400));
//!
//! let Outcome::Acquired { token, .. } = store.begin(claim).await.unwrap() else { unreachable!() };
//! // ... run the operation once ...
//! store.complete(claim.held(token), &StoredResponse::new(201, "paid")).await.unwrap();
//!
//! // A retry gets the first answer and runs nothing.
//! let again = store.begin(claim).await.unwrap();
//! assert_eq!(again, Outcome::Replay(StoredResponse::new(201, "paid")));
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub mod decide;
mod fingerprint;
mod key;
mod key_header;
mod memory;
pub mod metrics;
mod record;
mod replay_memory;
mod response;
mod store;
#[cfg(feature = "test-clock")]
mod time_travel;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use fingerprint::{canonical_json, FieldSelection, Fingerprint};
pub use key::{key_hash, Key, KeyError, Scope, KEY_LEN_MAX, SCOPE_LEN_MAX};
pub use key_header::{key_from_header, parse_key_header_value, KeyHeaderError, KEY_HEADER};
pub use memory::MemoryStore;
pub use record::{
    duration_ms, FencingToken, Record, RecordState, Timestamp, DURATION_MS_MAX, TTL_FOREVER,
};
pub use replay_memory::ReplayMemory;
pub use response::{DecodeError, StoredResponse};
pub use store::{BoxError, Claim, Hold, Outcome, Store, StoreError};
#[cfg(feature = "test-clock")]
pub use time_travel::{aged, TimeTravel};
