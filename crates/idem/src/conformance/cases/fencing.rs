//! Leases, take-over and fencing: who may `complete` or `release` a record, and that a
//! token is never handed out twice for one key.

use super::{
    acquire, advance, assert_absent, assert_complete_fenced, assert_release_fenced, assert_replays,
    begin, complete, fp, key, scope, take_over, PAST_LEASE,
};
use crate::conformance::Harness;
use crate::{FencingToken, Hold, Outcome, Store};

/// Lease take-over: after the lease ends, the next `begin` acquires with `recovered` and a
/// larger token, and holds a fresh lease.
pub async fn ended_lease_is_taken_over_with_larger_token<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("takeover"), fp("a"));
    let first = acquire(&store, &s, &k, &f).await;
    advance(&store, PAST_LEASE).await;
    let second = take_over(&store, &s, &k, &f).await;
    assert!(
        second > first,
        "the take-over token {second:?} must exceed {first:?}"
    );
    assert!(
        matches!(begin(&store, &s, &k, &f).await, Outcome::InFlight { .. }),
        "the new holder has a fresh lease"
    );
    advance(&store, PAST_LEASE).await;
    let third = take_over(&store, &s, &k, &f).await;
    assert!(third > second, "tokens keep growing");
}

/// Fencing across two nodes: the stale holder's `complete` and `release` fail with
/// `Fenced`, and the new holder's result is the one replayed.
pub async fn stale_holder_is_fenced_and_new_holder_wins<H: Harness>(h: &H) {
    let node_a = h.fresh().await;
    let node_b = h.peer(&node_a).await;
    let (s, k, f) = (scope("t"), key("fenced"), fp("a"));
    let old = acquire(&node_a, &s, &k, &f).await;
    // The records are the store's: ageing them through one node ages them for both.
    advance(&node_a, PAST_LEASE).await;
    let new = take_over(&node_b, &s, &k, &f).await;
    let stale = "the stale holder's complete is fenced";
    assert_complete_fenced(&node_a, &s, &k, old, "stale", stale).await;
    let why = "the stale holder's release is fenced";
    assert_release_fenced(&node_a, &s, &k, old, why).await;
    complete(&node_b, &s, &k, new, "new").await;
    assert_complete_fenced(&node_a, &s, &k, old, "stale", stale).await;
    assert_replays(&node_a, &s, &k, &f, "new").await;
    assert_replays(&node_b, &s, &k, &f, "new").await;
}

/// `release` frees the key: a retry acquires again; a second release is fenced.
pub async fn release_then_retry_acquires<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("release"), fp("a"));
    let token = acquire(&store, &s, &k, &f).await;
    store
        .release(Hold::new(&s, &k, token))
        .await
        .expect("release");
    assert_absent(&store, &s, &k, "a released record is gone").await;
    assert_release_fenced(&store, &s, &k, token, "releasing twice is fenced").await;
    let why = "completing a released record is fenced";
    assert_complete_fenced(&store, &s, &k, token, "late", why).await;
    let again = acquire(&store, &s, &k, &fp("other")).await;
    complete(&store, &s, &k, again, "again").await;
    assert_replays(&store, &s, &k, &fp("other"), "again").await;
}

/// Regression (found by `idem-model`): a released record keeps its token until it
/// expires, so the key's next holder never gets the token of a holder that was taken over
/// before the release. A store that deletes the record on `release` starts the next holder
/// at token 1 again: the stale first holder's `complete` then lands on the new holder's
/// record, with another request's response.
pub async fn release_after_take_over_never_reuses_a_token<H: Harness>(h: &H) {
    let node_a = h.fresh().await;
    let node_b = h.peer(&node_a).await;
    let (s, k) = (scope("t"), key("reuse"));
    let stale = acquire(&node_a, &s, &k, &fp("a")).await;
    // The records are the store's: ageing them through one node ages them for both.
    advance(&node_a, PAST_LEASE).await;
    let taken = take_over(&node_b, &s, &k, &fp("a")).await;
    node_b
        .release(Hold::new(&s, &k, taken))
        .await
        .expect("the new holder releases");
    assert_absent(&node_b, &s, &k, "a released record is absent").await;
    let fresh = acquire(&node_b, &s, &k, &fp("other")).await;
    assert!(
        fresh > taken && fresh > stale,
        "the next holder's token {fresh:?} must exceed every earlier one ({stale:?}, {taken:?})"
    );
    let why = "the holder taken over before the release stays fenced";
    assert_complete_fenced(&node_a, &s, &k, stale, "stale", why).await;
    let why = "the holder taken over before the release cannot release the new holder's record";
    assert_release_fenced(&node_a, &s, &k, stale, why).await;
    complete(&node_b, &s, &k, fresh, "fresh").await;
    assert_replays(&node_b, &s, &k, &fp("other"), "fresh").await;
}

/// A completed record cannot be released: its answer stays.
pub async fn release_after_complete_is_fenced<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("done"), fp("a"));
    let token = acquire(&store, &s, &k, &f).await;
    complete(&store, &s, &k, token, "kept").await;
    let why = "releasing a completed record is fenced";
    assert_release_fenced(&store, &s, &k, token, why).await;
    assert_replays(&store, &s, &k, &f, "kept").await;
}

/// `complete` needs the record in progress under the caller's token.
pub async fn complete_without_holding_is_fenced<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("holding"), fp("a"));
    let first = FencingToken::FIRST;
    assert_complete_fenced(&store, &s, &k, first, "x", "no record: fenced").await;
    assert_release_fenced(&store, &s, &k, first, "no record: fenced").await;
    let token = acquire(&store, &s, &k, &f).await;
    let why = "a token never issued: fenced";
    assert_complete_fenced(&store, &s, &k, token.next(), "x", why).await;
    complete(&store, &s, &k, token, "one").await;
    let why = "a second complete is fenced";
    assert_complete_fenced(&store, &s, &k, token, "two", why).await;
    assert_replays(&store, &s, &k, &f, "one").await;
    assert_absent(&store, &scope("other"), &k, "another scope has no record").await;
}
