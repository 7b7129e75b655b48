//! The cases, by theme. Each opens its own fresh store, so they run in parallel and in any
//! order. The helpers below carry the steps most cases share, so each case reads as the
//! rule it checks.

mod begin;
mod concurrency;
mod expiry;
mod fencing;

use std::time::Duration;

pub use begin::*;
pub use concurrency::*;
pub use expiry::*;
pub use fencing::*;

use super::{LEASE, TTL};
use crate::{
    Claim, FencingToken, Fingerprint, Hold, Key, Outcome, Record, Scope, Store, StoreError,
    StoredResponse, TimeTravel,
};

fn key(raw: &str) -> Key {
    Key::new(raw).expect("test keys are valid")
}

fn scope(raw: &str) -> Scope {
    Scope::new(raw).expect("test scopes are valid")
}

fn fp(body: &str) -> Fingerprint {
    Fingerprint::of_bytes("POST", "/conformance", body.as_bytes())
}

fn response(tag: &str) -> StoredResponse {
    StoredResponse::new(201, format!("{{\"paid\":\"{tag}\"}}"))
        .with_header("content-type", "application/json")
}

/// A lease just past its end, so the next `begin` may take the record over.
const PAST_LEASE: Duration = Duration::from_secs(LEASE.as_secs() + 1);

/// `begin` on a key with no live record: it must be Acquired, not recovered.
async fn acquire<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    fp: &Fingerprint,
) -> FencingToken {
    acquired(begin(store, scope, key, fp).await, false)
}

/// `begin` on a record whose lease has ended: it must be taken over, with `recovered`.
async fn take_over<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    fp: &Fingerprint,
) -> FencingToken {
    acquired(begin(store, scope, key, fp).await, true)
}

/// The token of an `Acquired` outcome with the `recovered` flag the case expects.
fn acquired(outcome: Outcome, recovered: bool) -> FencingToken {
    match outcome {
        Outcome::Acquired {
            token,
            recovered: got,
        } if got == recovered => token,
        other => panic!("expected Acquired with recovered = {recovered}, got {other:?}"),
    }
}

async fn advance<S: TimeTravel + ?Sized>(store: &S, by: Duration) {
    store.advance(by).await.expect("advance");
}

async fn begin<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    fp: &Fingerprint,
) -> Outcome {
    store
        .begin(Claim::new(scope, key, fp, LEASE, TTL))
        .await
        .expect("begin")
}

/// Completes as the holder of `token`, which must succeed, storing `response(tag)`.
async fn complete<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    tag: &str,
) {
    store
        .complete(Hold::new(scope, key, token), &response(tag))
        .await
        .expect("complete");
}

/// The live record of `key`, which must exist.
async fn record<S: Store + ?Sized>(store: &S, scope: &Scope, key: &Key) -> Record {
    store
        .get(scope, key)
        .await
        .expect("get")
        .expect("a live record")
}

async fn assert_absent<S: Store + ?Sized>(store: &S, scope: &Scope, key: &Key, why: &str) {
    assert!(store.get(scope, key).await.expect("get").is_none(), "{why}");
}

async fn assert_replays<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    fp: &Fingerprint,
    tag: &str,
) {
    assert_eq!(
        begin(store, scope, key, fp).await,
        Outcome::Replay(response(tag)),
        "the stored response {tag:?} is replayed"
    );
}

fn assert_fenced(result: Result<(), StoreError>, why: &str) {
    assert!(
        matches!(result, Err(StoreError::Fenced)),
        "{why}: {result:?}"
    );
}

/// A `complete` of `response(tag)` under `token`, which must be fenced.
async fn assert_complete_fenced<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    tag: &str,
    why: &str,
) {
    let result = store
        .complete(Hold::new(scope, key, token), &response(tag))
        .await;
    assert_fenced(result, why);
}

/// A `release` under `token`, which must be fenced.
async fn assert_release_fenced<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    why: &str,
) {
    assert_fenced(store.release(Hold::new(scope, key, token)).await, why);
}
