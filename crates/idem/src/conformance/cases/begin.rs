//! What `begin` answers for each state of a key (DESIGN §2, rows 1 to 4), and what a
//! replay gives back.

use std::time::Duration;

use bytes::Bytes;

use super::{
    acquire, advance, assert_absent, assert_replays, begin, complete, fp, key, record, response,
    scope,
};
use crate::conformance::{Harness, LEASE, TTL};
use crate::{Hold, Outcome, RecordState, Scope, Store, StoredResponse, TimeTravel};

/// Row 1: no live record → `Acquired { recovered: false }`, and the record is in progress.
pub async fn begin_on_absent_key_acquires<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("absent"), fp("a"));
    let before = store.now().await.expect("now");
    let token = acquire(&store, &s, &k, &f).await;
    let record = record(&store, &s, &k).await;
    assert_eq!(
        record.fingerprint, f,
        "the record keeps the request's fingerprint"
    );
    assert_eq!(
        (record.scope.clone(), record.key.clone()),
        (s.clone(), k.clone())
    );
    let within = |expected: Duration, got: Duration, what: &str| {
        let (expected, got) = (expected.as_millis(), got.as_millis());
        assert!(
            (expected - 5_000..=expected + 5_000).contains(&got),
            "{what} is now + {expected} ms, got +{got} ms"
        );
    };
    match record.state {
        RecordState::InProgress {
            token: held,
            lease_until,
        } => {
            assert_eq!(held, token, "the record holds the token begin returned");
            within(LEASE, before.until(lease_until), "lease_until");
        }
        other => panic!("a new record is InProgress, got {other:?}"),
    }
    within(TTL, before.until(record.expires_at), "expires_at");
    assert_absent(&store, &s, &key("other"), "other keys stay absent").await;
}

/// Row 2: completed with the same fingerprint → `Replay` of the stored response, every time.
pub async fn completed_same_fingerprint_replays<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k, f) = (scope("t"), key("replay"), fp("a"));
    let token = acquire(&store, &s, &k, &f).await;
    complete(&store, &s, &k, token, "first").await;
    for _ in 0..3 {
        assert_replays(&store, &s, &k, &f, "first").await;
    }
    assert_eq!(
        record(&store, &s, &k).await.state,
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
    complete(&store, &s, &done, token, "a").await;
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
    complete(&store, &s, &k, token, "a").await;
    assert_replays(&store, &s, &k, &fp("a"), "a").await;
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
    complete(&store, &alice, &k, t_alice, "alice").await;
    assert!(
        matches!(
            begin(&store, &bob, &k, &fp("b")).await,
            Outcome::InFlight { .. }
        ),
        "bob's record is his own"
    );
    complete(&store, &bob, &k, t_bob, "bob").await;
    assert_replays(&store, &alice, &k, &fp("a"), "alice").await;
    assert_replays(&store, &bob, &k, &fp("b"), "bob").await;
    assert_absent(&store, &Scope::global(), &k, "the global scope is another").await;
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
