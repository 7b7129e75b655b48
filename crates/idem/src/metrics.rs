//! The series idem records through the [`metrics`] facade, named once here so that the
//! stores, the layer and the services agree and the README can list them. A library only
//! records; the application installs a recorder (an exporter) or none, and with none every
//! call costs next to nothing.
//!
//! Every store wraps each operation in [`instrument`], which records its latency in
//! [`STORE_OPERATION_DURATION_SECONDS`] under `store` and `op` labels, and counts what the
//! operation's result says about the protocol: a lease taken over
//! ([`LEASE_TAKEOVERS_TOTAL`]), a holder fenced off ([`FENCING_REFUSALS_TOTAL`]), records
//! purged ([`PURGED_RECORDS_TOTAL`]).
//!
//! The series of the layer and of idem's own stores are registered with the recorder once,
//! at their first use, and recorded through the kept handles: a request costs no lookup of
//! a series by name and labels. Install the recorder before the first request, as `idem
//! serve` and `idem proxy` do; a series first recorded with no recorder (or a local one)
//! keeps that one for the life of the process.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Counter, Histogram};

use crate::{Outcome, StoreError};

/// Requests through an idempotency layer, by `outcome` (see [`RequestOutcome`]).
pub const REQUESTS_TOTAL: &str = "idem_requests_total";
/// Latency of one store operation in seconds, by `store` (`memory`, `sqlite`, `postgres`,
/// `mysql`, `redis`, `tiered`) and `op` (`begin`, `complete`, `release`, `get`, `purge`).
pub const STORE_OPERATION_DURATION_SECONDS: &str = "idem_store_operation_duration_seconds";
/// `complete` or `release` refused because the holder's fencing token was no longer the
/// record's, by `store`.
pub const FENCING_REFUSALS_TOTAL: &str = "idem_fencing_refusals_total";
/// `begin` that took over an in-progress record whose lease had ended, by `store`.
pub const LEASE_TAKEOVERS_TOTAL: &str = "idem_lease_takeovers_total";
/// Expired records deleted by `purge_expired`, by `store`.
pub const PURGED_RECORDS_TOTAL: &str = "idem_purged_records_total";
/// Replays answered by the Redis front (`ReplayCache`) without the truth store.
pub const REPLAY_CACHE_HITS_TOTAL: &str = "idem_replay_cache_hits_total";
/// Lookups in the Redis front that found nothing usable.
pub const REPLAY_CACHE_MISSES_TOTAL: &str = "idem_replay_cache_misses_total";
/// Answers written to the Redis front.
pub const REPLAY_CACHE_FILLS_TOTAL: &str = "idem_replay_cache_fills_total";
/// Calls to the Redis front that failed (answered by the truth store instead).
pub const REPLAY_CACHE_ERRORS_TOTAL: &str = "idem_replay_cache_errors_total";
/// Operations tried again after a transient failure (a deadlock, a serialization failure,
/// a busy database, a cut connection), by `site` (`store`, `transaction`, `complete`).
pub const TRANSIENT_RETRIES_TOTAL: &str = "idem_transient_retries_total";
/// Batches of items run by idem-sql's `Batcher` in one transaction, by `store` and `result`
/// (`committed`, or `failed`: its items then ran alone).
pub const BATCHES_TOTAL: &str = "idem_batches_total";
/// Items per batch of idem-sql's `Batcher` (lone items, which run alone, are not counted),
/// by `store`.
pub const BATCH_ITEMS: &str = "idem_batch_items";

/// The upper bounds, in seconds, of the latency histograms' buckets (for an exporter that
/// renders histograms as buckets).
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The upper bounds of [`BATCH_ITEMS`]'s buckets: items per batch, powers of two.
pub const BATCH_ITEMS_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How a request through an idempotency layer ended: the `outcome` label of
/// [`REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// The key was acquired and the handler ran.
    Executed,
    /// A stored answer was returned; nothing ran.
    Replayed,
    /// The key came with another request (422).
    Mismatch,
    /// The key's first request was still running (409, or a wait that ran out).
    InFlight,
    /// A key was required and none was sent (400).
    MissingKey,
    /// The key was malformed (400).
    InvalidKey,
    /// The store failed to decide (503).
    StoreError,
}

/// The kept counters of [`REQUESTS_TOTAL`], one per outcome, indexed by its discriminant.
static REQUEST_COUNTERS: [OnceLock<Counter>; RequestOutcome::StoreError as usize + 1] =
    [const { OnceLock::new() }; RequestOutcome::StoreError as usize + 1];

impl RequestOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Executed => "executed",
            RequestOutcome::Replayed => "replayed",
            RequestOutcome::Mismatch => "mismatch",
            RequestOutcome::InFlight => "in_flight",
            RequestOutcome::MissingKey => "missing_key",
            RequestOutcome::InvalidKey => "invalid_key",
            RequestOutcome::StoreError => "store_error",
        }
    }

    /// Counts one request that ended so.
    pub fn record(self) {
        let register = || metrics::counter!(REQUESTS_TOTAL, "outcome" => self.as_str());
        match REQUEST_COUNTERS.get(self as usize) {
            Some(slot) => slot.get_or_init(register).increment(1),
            None => register().increment(1),
        }
    }
}

/// Counts one retry after a transient failure at `site`.
pub fn transient_retry(site: &'static str) {
    metrics::counter!(TRANSIENT_RETRIES_TOTAL, "site" => site).increment(1);
}

/// The stores whose series are kept (the `store` label of idem's own stores); another
/// store's are looked up on each use.
const KEPT_STORES: [&str; 6] = ["memory", "sqlite", "postgres", "mysql", "redis", "tiered"];
/// The operations whose latency histograms are kept, per kept store.
const KEPT_OPS: [&str; 8] = [
    "begin",
    "complete",
    "release",
    "get",
    "purge",
    "begin_in",
    "begin_answered_in",
    "complete_in",
];

/// The kept handles of one store.
struct StoreHandles {
    durations: [OnceLock<Histogram>; KEPT_OPS.len()],
    lease_takeovers: OnceLock<Counter>,
    fencing_refusals: OnceLock<Counter>,
    purged_records: OnceLock<Counter>,
}

/// The kept handles of each of [`KEPT_STORES`], in its order.
static STORE_HANDLES: [StoreHandles; KEPT_STORES.len()] = [const {
    StoreHandles {
        durations: [const { OnceLock::new() }; KEPT_OPS.len()],
        lease_takeovers: OnceLock::new(),
        fencing_refusals: OnceLock::new(),
        purged_records: OnceLock::new(),
    }
}; KEPT_STORES.len()];

fn kept(store: &str) -> Option<&'static StoreHandles> {
    let slot = KEPT_STORES.iter().position(|s| *s == store)?;
    Some(&STORE_HANDLES[slot])
}

/// Records `seconds` of operation `op` of `store`.
fn record_duration(store: &'static str, op: &'static str, seconds: f64) {
    let register =
        || metrics::histogram!(STORE_OPERATION_DURATION_SECONDS, "store" => store, "op" => op);
    match (kept(store), KEPT_OPS.iter().position(|o| *o == op)) {
        (Some(handles), Some(slot)) => {
            handles.durations[slot]
                .get_or_init(register)
                .record(seconds);
        }
        _ => register().record(seconds),
    }
}

/// Adds `n` to the counter `name` of `store`, kept in `slot` of its handles when it has any.
fn count(
    store: &'static str,
    name: &'static str,
    slot: fn(&StoreHandles) -> &OnceLock<Counter>,
    n: u64,
) {
    let register = || metrics::counter!(name, "store" => store);
    match kept(store) {
        Some(handles) => slot(handles).get_or_init(register).increment(n),
        None => register().increment(n),
    }
}

/// Counts one batch of `items` items of `store`, committed or failed.
pub fn batch(store: &'static str, items: usize, committed: bool) {
    let result = if committed { "committed" } else { "failed" };
    metrics::counter!(BATCHES_TOTAL, "store" => store, "result" => result).increment(1);
    metrics::histogram!(BATCH_ITEMS, "store" => store).record(items as f64);
}

/// What a store operation's success says beyond its latency.
pub trait Recorded {
    /// Counts what `self`, the result of an operation of `store`, tells.
    fn record(&self, store: &'static str);
}

impl Recorded for Outcome {
    fn record(&self, store: &'static str) {
        if let Outcome::Acquired {
            recovered: true, ..
        } = self
        {
            count(store, LEASE_TAKEOVERS_TOTAL, |h| &h.lease_takeovers, 1);
        }
    }
}

impl Recorded for () {
    fn record(&self, _store: &'static str) {}
}

impl<T> Recorded for Option<T> {
    fn record(&self, _store: &'static str) {}
}

/// Which keys of a set were claimed (`claim_fresh_in`): no count beyond the latency.
impl Recorded for Vec<bool> {
    fn record(&self, _store: &'static str) {}
}

/// The number of records `purge_expired` removed.
impl Recorded for usize {
    fn record(&self, store: &'static str) {
        count(
            store,
            PURGED_RECORDS_TOTAL,
            |h| &h.purged_records,
            *self as u64,
        );
    }
}

/// Runs one operation `op` of `store`, recording its latency and what its result tells
/// (see the module's doc). The result is returned as it came.
///
/// # Errors
/// The operation's own.
pub async fn instrument<T: Recorded>(
    store: &'static str,
    op: &'static str,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let result = operation.await;
    record_duration(store, op, start.elapsed().as_secs_f64());
    match &result {
        Ok(value) => value.record(store),
        Err(StoreError::Fenced) => {
            count(store, FENCING_REFUSALS_TOTAL, |h| &h.fencing_refusals, 1);
        }
        Err(_) => {}
    }
    result
}
