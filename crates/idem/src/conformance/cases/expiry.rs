//! Time: a record's expiry, records kept forever, purging, and how `advance` ages records
//! for the other cases.

use std::time::Duration;

use super::{
    acquire, advance, assert_absent, assert_complete_fenced, assert_replays, begin, complete, fp,
    key, record, scope,
};
use crate::conformance::{Harness, LEASE, TTL};
use crate::{Claim, Outcome, RecordState, Store, TimeTravel, Timestamp};

/// A record past its expiry is absent: `get` finds nothing, `begin` starts afresh even
/// with another fingerprint, and the old holder is fenced.
pub async fn expired_record_is_absent<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let (done, running) = (key("expired-done"), key("expired-running"));
    let t_done = acquire(&store, &s, &done, &fp("a")).await;
    complete(&store, &s, &done, t_done, "old").await;
    let t_running = acquire(&store, &s, &running, &fp("a")).await;
    advance(&store, TTL + Duration::from_secs(1)).await;
    assert_absent(&store, &s, &done, "expired completed record is absent").await;
    assert_absent(&store, &s, &running, "expired in-progress record is absent").await;
    let why = "completing an expired record is fenced";
    assert_complete_fenced(&store, &s, &running, t_running, "late", why).await;
    let fresh = acquire(&store, &s, &done, &fp("b")).await;
    let again = acquire(&store, &s, &running, &fp("a")).await;
    // A store that drops expired records itself has no token left to grow from, as after
    // a purge: its next generation may start again at the first token.
    if !H::DROPS_EXPIRED {
        assert_ne!(fresh, t_done, "a new generation never reuses the old token");
        let why = "the expired generation's holder stays fenced";
        assert_complete_fenced(&store, &s, &running, t_running, "late", why).await;
    }
    complete(&store, &s, &running, again, "new").await;
    assert_replays(&store, &s, &running, &fp("a"), "new").await;
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
    complete(&store, &s, &k, token, "forever").await;
    advance(&store, Duration::from_secs(1000 * 365 * 24 * 3600)).await;
    assert_eq!(
        store.purge_expired(100).await.expect("purge"),
        0,
        "nothing expired"
    );
    assert_replays(&store, &s, &k, &fp("a"), "forever").await;
    assert_eq!(begin(&store, &s, &k, &fp("b")).await, Outcome::Mismatch);
}

/// `purge_expired(limit)` deletes expired records in batches of at most `limit`, and never
/// a live one.
pub async fn purge_expired_in_bounded_batches<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let s = scope("t");
    let short_ttl = Duration::from_secs(60);
    let short = |i: usize| key(&format!("short-{i}"));
    let long = |i: usize| key(&format!("long-{i}"));
    let a = fp("a");
    for i in 0..25 {
        let k = short(i);
        let claim = Claim::new(&s, &k, &a, Duration::from_secs(10), short_ttl);
        match store.begin(claim).await.expect("begin") {
            Outcome::Acquired { token, .. } if i % 2 == 0 => {
                complete(&store, &s, &k, token, "x").await
            }
            Outcome::Acquired { .. } => {}
            other => panic!("fresh key acquires, got {other:?}"),
        }
    }
    for i in 0..5 {
        acquire(&store, &s, &long(i), &fp("a")).await;
    }
    assert_eq!(
        store.purge_expired(10).await.expect("purge"),
        0,
        "nothing has expired yet"
    );
    advance(&store, short_ttl + Duration::from_secs(1)).await;
    for i in 0..25 {
        let why = "expired records are absent before any purge";
        assert_absent(&store, &s, &short(i), why).await;
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
        // `record` panics when a live record is gone.
        record(&store, &s, &long(i)).await;
    }
    assert_eq!(
        store.purge_expired(0).await.expect("purge"),
        0,
        "a zero limit purges nothing"
    );
}

/// `now` is the store's clock in Unix milliseconds, and `advance` ages the records
/// instead of moving it: a record's lease end, creation and expiry move back by the
/// advance, while the clock stays where it is.
pub async fn advance_ages_records_not_the_clock<H: Harness>(h: &H) {
    let store = h.fresh().await;
    let (s, k) = (scope("t"), key("aged"));
    acquire(&store, &s, &k, &fp("a")).await;
    let young = record(&store, &s, &k).await;
    let before = store.now().await.expect("now");
    advance(&store, Duration::from_secs(10)).await;
    let after = store.now().await.expect("now");
    let old = record(&store, &s, &k).await;
    let moved = before.until(after);
    assert!(
        moved < Duration::from_secs(5),
        "advance leaves the store's clock alone, it moved {moved:?}"
    );
    let moved_back = |from: Timestamp, to: Timestamp, what: &str| {
        let back = from.as_millis() - to.as_millis();
        assert_eq!(back, 10_000, "{what} moves back by the advance");
    };
    moved_back(young.created_at, old.created_at, "creation");
    moved_back(young.expires_at, old.expires_at, "expiry");
    match (&young.state, &old.state) {
        (
            RecordState::InProgress { lease_until: a, .. },
            RecordState::InProgress { lease_until: b, .. },
        ) => moved_back(*a, *b, "the lease end"),
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
