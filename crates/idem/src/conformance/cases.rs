//! The cases. Each opens its own fresh store, so they run in parallel and in any order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Harness, LEASE, TTL};
use crate::{
    Claim, FencingToken, Fingerprint, Hold, Key, Outcome, RecordState, Scope, Store, StoreError,
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

async fn acquire<S: Store + ?Sized>(
    store: &S,
    scope: &Scope,
    key: &Key,
    fp: &Fingerprint,
) -> FencingToken {
    match store
        .begin(Claim::new(scope, key, fp, LEASE, TTL))
        .await
        .expect("begin")
    {
        Outcome::Acquired {
            token,
            recovered: false,
        } => token,
        other => {
            panic!("a key with no live record must be Acquired (not recovered), got {other:?}")
        }
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

/// Row 1: no live record → `Acquired { recovered: false }`, and the record is in progress.
pub async fn begin_on_absent_key_acquires<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("absent"), fp("a"));
    let before = store.now().await.expect("now");
    let token = acquire(&store, &s, &k, &f).await;
    let record = store
        .get(&s, &k)
        .await
        .expect("get")
        .expect("record exists after Acquired");
    assert_eq!(
        record.fingerprint, f,
        "the record keeps the request's fingerprint"
    );
    assert_eq!(
        (record.scope.clone(), record.key.clone()),
        (s.clone(), k.clone())
    );
    match record.state {
        RecordState::InProgress {
            token: held,
            lease_until,
        } => {
            assert_eq!(held, token, "the record holds the token begin returned");
            let lease_ms = before.until(lease_until).as_millis();
            assert!(
                (LEASE.as_millis() - 5_000..=LEASE.as_millis() + 5_000).contains(&lease_ms),
                "lease_until is now + lease, got +{lease_ms} ms"
            );
        }
        other => panic!("a new record is InProgress, got {other:?}"),
    }
    let ttl_ms = before.until(record.expires_at).as_millis();
    assert!(
        (TTL.as_millis() - 5_000..=TTL.as_millis() + 5_000).contains(&ttl_ms),
        "expires_at is now + ttl, got +{ttl_ms} ms"
    );
    assert!(
        store.get(&s, &key("other")).await.expect("get").is_none(),
        "other keys stay absent"
    );
}

/// Row 2: completed with the same fingerprint → `Replay` of the stored response, every time.
pub async fn completed_same_fingerprint_replays<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("replay"), fp("a"));
    let token = acquire(&store, &s, &k, &f).await;
    store
        .complete(Hold::new(&s, &k, token), &response("first"))
        .await
        .expect("complete");
    for _ in 0..3 {
        assert_eq!(
            begin(&store, &s, &k, &f).await,
            Outcome::Replay(response("first"))
        );
    }
    let record = store
        .get(&s, &k)
        .await
        .expect("get")
        .expect("completed record");
    assert_eq!(
        record.state,
        RecordState::Completed {
            token,
            response: response("first")
        }
    );
}

/// Row 3: a live record with another fingerprint → `Mismatch`, in progress or completed.
pub async fn other_fingerprint_mismatches<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let (running, done) = (key("running"), key("done"));
    acquire(&store, &s, &running, &fp("a")).await;
    assert_eq!(
        begin(&store, &s, &running, &fp("b")).await,
        Outcome::Mismatch
    );
    let token = acquire(&store, &s, &done, &fp("a")).await;
    store
        .complete(Hold::new(&s, &done, token), &response("a"))
        .await
        .expect("complete");
    assert_eq!(begin(&store, &s, &done, &fp("b")).await, Outcome::Mismatch);
}

/// A mismatch changes nothing: the holder still holds, its result is still stored.
pub async fn mismatch_leaves_record_untouched<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k) = (scope("t"), key("untouched"));
    let token = acquire(&store, &s, &k, &fp("a")).await;
    assert_eq!(begin(&store, &s, &k, &fp("b")).await, Outcome::Mismatch);
    assert!(matches!(
        begin(&store, &s, &k, &fp("a")).await,
        Outcome::InFlight { .. }
    ));
    store
        .complete(Hold::new(&s, &k, token), &response("a"))
        .await
        .expect("the holder still completes");
    assert_eq!(
        begin(&store, &s, &k, &fp("a")).await,
        Outcome::Replay(response("a"))
    );
    assert_eq!(begin(&store, &s, &k, &fp("b")).await, Outcome::Mismatch);
}

/// Row 4: in progress, same fingerprint, lease running → `InFlight` until the lease ends.
pub async fn running_lease_is_in_flight<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("inflight"), fp("a"));
    acquire(&store, &s, &k, &f).await;
    match begin(&store, &s, &k, &f).await {
        Outcome::InFlight { retry_after } => {
            assert!(
                retry_after > Duration::ZERO && retry_after <= LEASE,
                "retry_after within the lease, got {retry_after:?}"
            );
            assert!(
                retry_after >= LEASE - Duration::from_secs(10),
                "retry_after is the rest of the lease, got {retry_after:?}"
            );
        }
        other => panic!("a running lease answers InFlight, got {other:?}"),
    }
    advance(&store, LEASE / 2).await;
    match begin(&store, &s, &k, &f).await {
        Outcome::InFlight { retry_after } => assert!(
            retry_after <= LEASE / 2,
            "retry_after shrinks as the lease runs, got {retry_after:?}"
        ),
        other => panic!("half-way through the lease still InFlight, got {other:?}"),
    }
}

/// Lease take-over: after the lease ends, the next `begin` acquires with `recovered` and a
/// larger token, and holds a fresh lease.
pub async fn ended_lease_is_taken_over_with_larger_token<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("takeover"), fp("a"));
    let first = acquire(&store, &s, &k, &f).await;
    advance(&store, LEASE + Duration::from_secs(1)).await;
    let second = match begin(&store, &s, &k, &f).await {
        Outcome::Acquired {
            token,
            recovered: true,
        } => token,
        other => panic!("an ended lease is taken over with recovered = true, got {other:?}"),
    };
    assert!(
        second > first,
        "the take-over token {second:?} must exceed {first:?}"
    );
    assert!(
        matches!(begin(&store, &s, &k, &f).await, Outcome::InFlight { .. }),
        "the new holder has a fresh lease"
    );
    advance(&store, LEASE + Duration::from_secs(1)).await;
    match begin(&store, &s, &k, &f).await {
        Outcome::Acquired {
            token,
            recovered: true,
        } => assert!(token > second, "tokens keep growing"),
        other => panic!("a second take-over, got {other:?}"),
    }
}

/// Fencing across two nodes: the stale holder's `complete` and `release` fail with
/// `Fenced`, and the new holder's result is the one replayed.
pub async fn stale_holder_is_fenced_and_new_holder_wins<H: Harness>(h: &H) {
    let node_a = h.fresh().await;
    let node_b = h.peer(&node_a).await;
    let (s, k, f) = (scope("t"), key("fenced"), fp("a"));
    let old = acquire(&node_a, &s, &k, &f).await;
    // The records are the store's: ageing them through one node ages them for both.
    advance(&node_a, LEASE + Duration::from_secs(1)).await;
    let new = match begin(&node_b, &s, &k, &f).await {
        Outcome::Acquired {
            token,
            recovered: true,
        } => token,
        other => panic!("node b takes over the ended lease, got {other:?}"),
    };
    assert!(
        matches!(
            node_a
                .complete(Hold::new(&s, &k, old), &response("stale"))
                .await,
            Err(StoreError::Fenced)
        ),
        "the stale holder's complete is fenced"
    );
    assert!(
        matches!(
            node_a.release(Hold::new(&s, &k, old)).await,
            Err(StoreError::Fenced)
        ),
        "the stale holder's release is fenced"
    );
    node_b
        .complete(Hold::new(&s, &k, new), &response("new"))
        .await
        .expect("the new holder completes");
    assert!(matches!(
        node_a
            .complete(Hold::new(&s, &k, old), &response("stale"))
            .await,
        Err(StoreError::Fenced)
    ));
    assert_eq!(
        begin(&node_a, &s, &k, &f).await,
        Outcome::Replay(response("new"))
    );
    assert_eq!(
        begin(&node_b, &s, &k, &f).await,
        Outcome::Replay(response("new"))
    );
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
    assert!(
        store.get(&s, &k).await.expect("get").is_none(),
        "a released record is gone"
    );
    assert!(
        matches!(
            store.release(Hold::new(&s, &k, token)).await,
            Err(StoreError::Fenced)
        ),
        "releasing twice is fenced"
    );
    assert!(
        matches!(
            store
                .complete(Hold::new(&s, &k, token), &response("late"))
                .await,
            Err(StoreError::Fenced)
        ),
        "completing a released record is fenced"
    );
    let again = acquire(&store, &s, &k, &fp("other")).await;
    store
        .complete(Hold::new(&s, &k, again), &response("again"))
        .await
        .expect("complete after retry");
    assert_eq!(
        begin(&store, &s, &k, &fp("other")).await,
        Outcome::Replay(response("again"))
    );
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
    advance(&node_a, LEASE + Duration::from_secs(1)).await;
    let taken = match begin(&node_b, &s, &k, &fp("a")).await {
        Outcome::Acquired {
            token,
            recovered: true,
        } => token,
        other => panic!("node b takes over the ended lease, got {other:?}"),
    };
    node_b
        .release(Hold::new(&s, &k, taken))
        .await
        .expect("the new holder releases");
    assert!(
        node_b.get(&s, &k).await.expect("get").is_none(),
        "a released record is absent"
    );
    let fresh = acquire(&node_b, &s, &k, &fp("other")).await;
    assert!(
        fresh > taken && fresh > stale,
        "the next holder's token {fresh:?} must exceed every earlier one ({stale:?}, {taken:?})"
    );
    assert!(
        matches!(
            node_a
                .complete(Hold::new(&s, &k, stale), &response("stale"))
                .await,
            Err(StoreError::Fenced)
        ),
        "the holder taken over before the release stays fenced"
    );
    assert!(
        matches!(
            node_a.release(Hold::new(&s, &k, stale)).await,
            Err(StoreError::Fenced)
        ),
        "the holder taken over before the release cannot release the new holder's record"
    );
    node_b
        .complete(Hold::new(&s, &k, fresh), &response("fresh"))
        .await
        .expect("the new holder completes");
    assert_eq!(
        begin(&node_b, &s, &k, &fp("other")).await,
        Outcome::Replay(response("fresh"))
    );
}

/// A completed record cannot be released: its answer stays.
pub async fn release_after_complete_is_fenced<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("done"), fp("a"));
    let token = acquire(&store, &s, &k, &f).await;
    store
        .complete(Hold::new(&s, &k, token), &response("kept"))
        .await
        .expect("complete");
    assert!(matches!(
        store.release(Hold::new(&s, &k, token)).await,
        Err(StoreError::Fenced)
    ));
    assert_eq!(
        begin(&store, &s, &k, &f).await,
        Outcome::Replay(response("kept"))
    );
}

/// `complete` needs the record in progress under the caller's token.
pub async fn complete_without_holding_is_fenced<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("holding"), fp("a"));
    assert!(
        matches!(
            store
                .complete(Hold::new(&s, &k, FencingToken::FIRST), &response("x"))
                .await,
            Err(StoreError::Fenced)
        ),
        "no record: fenced"
    );
    assert!(
        matches!(
            store.release(Hold::new(&s, &k, FencingToken::FIRST)).await,
            Err(StoreError::Fenced)
        ),
        "no record: fenced"
    );
    let token = acquire(&store, &s, &k, &f).await;
    assert!(
        matches!(
            store
                .complete(Hold::new(&s, &k, token.next()), &response("x"))
                .await,
            Err(StoreError::Fenced)
        ),
        "a token never issued: fenced"
    );
    store
        .complete(Hold::new(&s, &k, token), &response("one"))
        .await
        .expect("complete");
    assert!(
        matches!(
            store
                .complete(Hold::new(&s, &k, token), &response("two"))
                .await,
            Err(StoreError::Fenced)
        ),
        "a second complete is fenced"
    );
    assert_eq!(
        begin(&store, &s, &k, &f).await,
        Outcome::Replay(response("one")),
        "the first result stays"
    );
    assert!(store.get(&scope("other"), &k).await.expect("get").is_none());
}

/// A record past its expiry is absent: `get` finds nothing, `begin` starts afresh even
/// with another fingerprint, and the old holder is fenced.
pub async fn expired_record_is_absent<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let (done, running) = (key("expired-done"), key("expired-running"));
    let t_done = acquire(&store, &s, &done, &fp("a")).await;
    store
        .complete(Hold::new(&s, &done, t_done), &response("old"))
        .await
        .expect("complete");
    let t_running = acquire(&store, &s, &running, &fp("a")).await;
    advance(&store, TTL + Duration::from_secs(1)).await;
    assert!(
        store.get(&s, &done).await.expect("get").is_none(),
        "expired completed record is absent"
    );
    assert!(
        store.get(&s, &running).await.expect("get").is_none(),
        "expired in-progress record is absent"
    );
    assert!(
        matches!(
            store
                .complete(Hold::new(&s, &running, t_running), &response("late"))
                .await,
            Err(StoreError::Fenced)
        ),
        "completing an expired record is fenced"
    );
    let fresh = acquire(&store, &s, &done, &fp("b")).await;
    let again = acquire(&store, &s, &running, &fp("a")).await;
    // A store that drops expired records itself has no token left to grow from, as after
    // a purge: its next generation may start again at the first token.
    if !H::DROPS_EXPIRED {
        assert_ne!(fresh, t_done, "a new generation never reuses the old token");
        assert!(
            matches!(
                store
                    .complete(Hold::new(&s, &running, t_running), &response("late"))
                    .await,
                Err(StoreError::Fenced)
            ),
            "the expired generation's holder stays fenced"
        );
    }
    store
        .complete(Hold::new(&s, &running, again), &response("new"))
        .await
        .expect("complete");
    assert_eq!(
        begin(&store, &s, &running, &fp("a")).await,
        Outcome::Replay(response("new"))
    );
}

/// A record begun with [`crate::TTL_FOREVER`] (a business key) outlives any clock: a
/// thousand years on it is still replayed, and `purge_expired` leaves it.
pub async fn forever_record_never_expires<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k) = (scope("t"), key("order-forever"));
    let token = match store
        .begin(Claim::new(&s, &k, &fp("a"), LEASE, crate::TTL_FOREVER))
        .await
        .expect("begin")
    {
        Outcome::Acquired { token, .. } => token,
        other => panic!("a fresh key with TTL_FOREVER must be Acquired, got {other:?}"),
    };
    store
        .complete(Hold::new(&s, &k, token), &response("forever"))
        .await
        .expect("complete");
    advance(&store, Duration::from_secs(1000 * 365 * 24 * 3600)).await;
    assert_eq!(
        store.purge_expired(100).await.expect("purge"),
        0,
        "nothing expired"
    );
    assert_eq!(
        begin(&store, &s, &k, &fp("a")).await,
        Outcome::Replay(response("forever")),
        "a forever record is replayed a thousand years on"
    );
    assert_eq!(begin(&store, &s, &k, &fp("b")).await, Outcome::Mismatch);
}

/// `purge_expired(limit)` deletes expired records in batches of at most `limit`, and never
/// a live one.
pub async fn purge_expired_in_bounded_batches<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let short_ttl = Duration::from_secs(60);
    for i in 0..25 {
        let k = key(&format!("short-{i}"));
        match store
            .begin(Claim::new(
                &s,
                &k,
                &fp("a"),
                Duration::from_secs(10),
                short_ttl,
            ))
            .await
            .expect("begin")
        {
            Outcome::Acquired { token, .. } if i % 2 == 0 => store
                .complete(Hold::new(&s, &k, token), &response("x"))
                .await
                .expect("complete"),
            Outcome::Acquired { .. } => {}
            other => panic!("fresh key acquires, got {other:?}"),
        }
    }
    for i in 0..5 {
        acquire(&store, &s, &key(&format!("long-{i}")), &fp("a")).await;
    }
    assert_eq!(
        store.purge_expired(10).await.expect("purge"),
        0,
        "nothing has expired yet"
    );
    advance(&store, short_ttl + Duration::from_secs(1)).await;
    for i in 0..25 {
        assert!(
            store
                .get(&s, &key(&format!("short-{i}")))
                .await
                .expect("get")
                .is_none(),
            "expired records are absent before any purge"
        );
    }
    let mut batches = Vec::new();
    loop {
        let purged = store.purge_expired(10).await.expect("purge");
        batches.push(purged);
        if purged == 0 || batches.len() > 10 {
            break;
        }
    }
    // A store that drops expired records itself has none left to purge.
    let expected = if H::DROPS_EXPIRED {
        vec![0]
    } else {
        vec![10, 10, 5, 0]
    };
    assert_eq!(
        batches, expected,
        "25 expired records purge in batches of at most 10"
    );
    for i in 0..5 {
        assert!(
            store
                .get(&s, &key(&format!("long-{i}")))
                .await
                .expect("get")
                .is_some(),
            "live records survive the purge"
        );
    }
    assert_eq!(
        store.purge_expired(0).await.expect("purge"),
        0,
        "a zero limit purges nothing"
    );
}

/// One key in two scopes is two records that never meet.
pub async fn scopes_are_isolated<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (alice, bob, k) = (
        scope("alice|POST /p"),
        scope("bob|POST /p"),
        key("shared-key"),
    );
    let t_alice = acquire(&store, &alice, &k, &fp("a")).await;
    let t_bob = acquire(&store, &bob, &k, &fp("b")).await;
    store
        .complete(Hold::new(&alice, &k, t_alice), &response("alice"))
        .await
        .expect("complete");
    assert!(
        matches!(
            begin(&store, &bob, &k, &fp("b")).await,
            Outcome::InFlight { .. }
        ),
        "bob's record is his own"
    );
    store
        .complete(Hold::new(&bob, &k, t_bob), &response("bob"))
        .await
        .expect("complete");
    assert_eq!(
        begin(&store, &alice, &k, &fp("a")).await,
        Outcome::Replay(response("alice"))
    );
    assert_eq!(
        begin(&store, &bob, &k, &fp("b")).await,
        Outcome::Replay(response("bob"))
    );
    assert!(store
        .get(&Scope::global(), &k)
        .await
        .expect("get")
        .is_none());
}

/// 64 tasks on two nodes race for one key: exactly one `Acquired`; every other answer is
/// `InFlight` or a `Replay` of that one response; afterwards everyone replays it.
pub async fn racers_on_one_key_have_one_winner<H: Harness>(h: &H) {
    const RACERS: usize = 64;
    let node_a = Arc::new(h.fresh().await);
    let node_b = Arc::new(h.peer(&node_a).await);
    let (s, k, f) = (scope("t"), key("race"), fp("same"));
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let node = if i % 2 == 0 {
            Arc::clone(&node_a)
        } else {
            Arc::clone(&node_b)
        };
        let (s, k, barrier) = (s.clone(), k.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let claim = Claim::new(&s, &k, &f, LEASE, TTL);
            let outcome = node.begin(claim).await.expect("begin");
            if let Outcome::Acquired { token, .. } = outcome {
                tokio::time::sleep(Duration::from_millis(20)).await;
                node.complete(Hold::new(&s, &k, token), &response(&format!("winner-{i}")))
                    .await
                    .expect("the winner completes");
                return (outcome, Some(response(&format!("winner-{i}"))));
            }
            (outcome, None)
        }));
    }
    let mut winners = Vec::new();
    let mut others = Vec::new();
    for task in tasks {
        let (outcome, stored) = task.await.expect("racer task");
        match outcome {
            Outcome::Acquired { .. } => winners.push(stored.expect("winner stored a response")),
            other => others.push(other),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer acquires; got {}",
        winners.len()
    );
    let winner = winners.remove(0);
    for outcome in others {
        match outcome {
            Outcome::InFlight { .. } => {}
            Outcome::Replay(replayed) => {
                assert_eq!(replayed, winner, "a replay is the winner's response")
            }
            other => panic!("a loser sees InFlight or Replay, got {other:?}"),
        }
    }
    for node in [&node_a, &node_b] {
        assert_eq!(
            begin(node.as_ref(), &s, &k, &f).await,
            Outcome::Replay(winner.clone())
        );
    }
}

/// 10 000 distinct keys from 16 tasks on two nodes: every one acquires once and keeps its
/// own response.
pub async fn many_keys_from_many_tasks_none_lost<H: Harness>(h: &H) {
    const TASKS: usize = 16;
    const KEYS_PER_TASK: usize = 625;
    let node_a = Arc::new(h.fresh().await);
    let node_b = Arc::new(h.peer(&node_a).await);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let node = if t % 2 == 0 {
            Arc::clone(&node_a)
        } else {
            Arc::clone(&node_b)
        };
        tasks.push(tokio::spawn(async move {
            let s = scope("t");
            for i in 0..KEYS_PER_TASK {
                let k = key(&format!("k-{t}-{i}"));
                let token = acquire(node.as_ref(), &s, &k, &fp("a")).await;
                node.complete(Hold::new(&s, &k, token), &response(&format!("{t}-{i}")))
                    .await
                    .expect("complete");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let s = scope("t");
    let mut missing = Vec::new();
    for t in 0..TASKS {
        for i in 0..KEYS_PER_TASK {
            let node = if (t + i) % 2 == 0 { &node_a } else { &node_b };
            let k = key(&format!("k-{t}-{i}"));
            match node.get(&s, &k).await.expect("get") {
                Some(record) => assert_eq!(
                    record.state,
                    RecordState::Completed {
                        token: record.token(),
                        response: response(&format!("{t}-{i}"))
                    },
                    "key {k} keeps its own response"
                ),
                None => missing.push(k),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of 10000 keys lost, first {:?}",
        missing.len(),
        missing.first()
    );
}

/// The stored response comes back exactly: status, header order and bytes, binary body.
pub async fn replay_is_byte_for_byte<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases = [
        StoredResponse::new(200, Bytes::new()),
        StoredResponse::new(204, Bytes::new()).with_header("x-empty", Vec::new()),
        StoredResponse::new(422, "{\"code\":\"order_id_conflict\"}")
            .with_header("content-type", "application/problem+json")
            .with_header("x-dup", "1")
            .with_header("x-dup", "2"),
        StoredResponse::new(201, big).with_header("x-bin", vec![0x80, 0xff, 0x00, b'a']),
        StoredResponse::new(201, "é€😀\0 \r\n\"'\\"),
    ];
    for (i, expected) in cases.iter().enumerate() {
        let k = key(&format!("bytes-{i}"));
        let token = acquire(&store, &s, &k, &fp("a")).await;
        store
            .complete(Hold::new(&s, &k, token), expected)
            .await
            .expect("complete");
        assert_eq!(
            &begin(&store, &s, &k, &fp("a")).await,
            &Outcome::Replay(expected.clone()),
            "case {i} replays byte for byte"
        );
    }
}

/// `now` is the store's clock in Unix milliseconds, and `advance` ages the records
/// instead of moving it: a record's lease end, creation and expiry move back by the
/// advance, while the clock stays where it is.
pub async fn advance_ages_records_not_the_clock<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k) = (scope("t"), key("aged"));
    acquire(&store, &s, &k, &fp("a")).await;
    let young = store
        .get(&s, &k)
        .await
        .expect("get")
        .expect("a live record");
    let before = store.now().await.expect("now");
    let by = Duration::from_secs(10);
    advance(&store, by).await;
    let after = store.now().await.expect("now");
    let old = store
        .get(&s, &k)
        .await
        .expect("get")
        .expect("a live record");
    let moved = before.until(after);
    assert!(
        moved < Duration::from_secs(5),
        "advance leaves the store's clock alone, it moved {moved:?}"
    );
    let back = |from: crate::Timestamp, to: crate::Timestamp| from.as_millis() - to.as_millis();
    assert_eq!(
        back(young.created_at, old.created_at),
        10_000,
        "creation moves back by the advance"
    );
    assert_eq!(
        back(young.expires_at, old.expires_at),
        10_000,
        "expiry moves back by the advance"
    );
    match (&young.state, &old.state) {
        (
            RecordState::InProgress { lease_until: a, .. },
            RecordState::InProgress { lease_until: b, .. },
        ) => assert_eq!(
            back(*a, *b),
            10_000,
            "the lease end moves back by the advance"
        ),
        other => panic!("the record stays in progress, got {other:?}"),
    }
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(
        (before.as_millis() - wall).abs() < 300_000,
        "store time is Unix milliseconds (off by {} ms)",
        before.as_millis() - wall
    );
}
