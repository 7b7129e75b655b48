//! The two-tier store beyond the conformance suite: replays come from Redis, a cached
//! replay is never served when the truth would say otherwise, and losing Redis — its keys
//! deleted mid-sequence, a server that never answered, a connection cut — changes no
//! answer. Every scenario's answers are compared with the SQLite truth store's alone.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idem::conformance::{LEASE, TTL};
use idem::{
    Claim, Fingerprint, Hold, Key, Outcome, Scope, Store, StoreError, StoredResponse, TimeTravel,
};
use idem_redis::{RedisOptions, ReplayCache, TieredStore};
use idem_sql::SqliteStore;

fn key(raw: &str) -> Key {
    Key::new(raw).expect("test key")
}

fn fp(body: &str) -> Fingerprint {
    Fingerprint::of_bytes("POST", "/tiered", body.as_bytes())
}

fn response(tag: &str) -> StoredResponse {
    StoredResponse::new(201, format!("{{\"paid\":\"{tag}\"}}")).with_header("x-tag", tag)
}

async fn sqlite() -> SqliteStore {
    SqliteStore::connect(&common::sqlite_url())
        .await
        .expect("SQLite truth store")
}

async fn tiered(url: &str) -> TieredStore<SqliteStore> {
    let cache = ReplayCache::connect_with(&common::fresh_options(url))
        .await
        .expect("connect to the test Redis");
    TieredStore::new(sqlite().await, cache)
}

/// An answer as the scenario records it: the outcome, or the error's kind. `InFlight`'s
/// `retry_after` is checked, then left out (it depends on the milliseconds a run takes).
fn show(result: Result<Outcome, StoreError>) -> String {
    match result {
        Ok(Outcome::InFlight { retry_after }) => {
            assert!(retry_after > Duration::ZERO && retry_after <= LEASE);
            "InFlight".to_owned()
        }
        Ok(outcome) => format!("{outcome:?}"),
        Err(err) => format!("Err({err})"),
    }
}

fn show_unit(result: Result<(), StoreError>) -> String {
    match result {
        Ok(()) => "Ok".to_owned(),
        Err(err) => format!("Err({err})"),
    }
}

fn token_of(answer: &str) -> idem::FencingToken {
    let digits: String = answer
        .split("FencingToken(")
        .nth(1)
        .expect("an Acquired answer")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    idem::FencingToken(digits.parse().expect("token digits"))
}

/// A sequence over every state change and every row of the protocol, calling
/// `disturb(n)` at five points; returns every answer in order.
async fn scenario<S, F, Fut>(store: &S, mut disturb: F) -> Vec<String>
where
    S: Store + TimeTravel,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let s = Scope::new("tenant|POST /pay").expect("scope");
    let mut log = Vec::new();
    let begin = |k: &'static str, f: &'static str| {
        let s = s.clone();
        async move {
            show(
                store
                    .begin(Claim::new(&s, &key(k), &fp(f), LEASE, TTL))
                    .await,
            )
        }
    };

    // A completed key replays, before and after the first disturbance.
    let a = begin("k1", "a").await;
    log.push(a.clone());
    log.push(show_unit(
        store
            .complete(Hold::new(&s, &key("k1"), token_of(&a)), &response("one"))
            .await,
    ));
    log.push(begin("k1", "a").await);
    disturb(1).await;
    log.push(begin("k1", "a").await);
    log.push(begin("k1", "b").await);

    // An in-progress key stays in flight across a disturbance, then completes.
    let a2 = begin("k2", "a").await;
    log.push(a2.clone());
    log.push(begin("k2", "a").await);
    disturb(2).await;
    log.push(begin("k2", "a").await);
    log.push(begin("k2", "b").await);
    log.push(show_unit(
        store
            .complete(Hold::new(&s, &key("k2"), token_of(&a2)), &response("two"))
            .await,
    ));
    log.push(begin("k2", "a").await);

    // Release, then a retry acquires and completes.
    let a3 = begin("k3", "a").await;
    log.push(a3.clone());
    log.push(show_unit(
        store
            .release(Hold::new(&s, &key("k3"), token_of(&a3)))
            .await,
    ));
    let a3b = begin("k3", "a").await;
    log.push(a3b.clone());
    disturb(3).await;
    log.push(show_unit(
        store
            .complete(
                Hold::new(&s, &key("k3"), token_of(&a3b)),
                &response("three"),
            )
            .await,
    ));
    log.push(begin("k3", "a").await);

    // A lease take-over fences the old holder; the new holder's result wins.
    let old = begin("k4", "a").await;
    log.push(old.clone());
    store
        .advance(LEASE + Duration::from_secs(1))
        .await
        .expect("advance");
    let new = begin("k4", "a").await;
    log.push(new.clone());
    log.push(show_unit(
        store
            .complete(
                Hold::new(&s, &key("k4"), token_of(&old)),
                &response("stale"),
            )
            .await,
    ));
    disturb(4).await;
    log.push(show_unit(
        store
            .complete(Hold::new(&s, &key("k4"), token_of(&new)), &response("four"))
            .await,
    ));
    log.push(begin("k4", "a").await);
    log.push(begin("k1", "a").await);
    log.push(begin("k2", "a").await);

    // Expiry: every record is absent, the cache must not answer for any.
    store
        .advance(TTL + Duration::from_secs(1))
        .await
        .expect("advance");
    log.push(begin("k1", "a").await);
    disturb(5).await;
    log.push(begin("k1", "a").await);
    log.push(format!(
        "{:?}",
        store.get(&s, &key("k2")).await.map(|r| r.is_some())
    ));
    log.push(begin("k2", "b").await);
    log.push(format!("{:?}", store.purge_expired(100).await));
    log.push(begin("k3", "a").await);
    log
}

async fn nothing(_: u32) {}

/// The answers of the SQLite truth store alone: what every tiered run must give.
async fn truth_answers() -> Vec<String> {
    scenario(&sqlite().await, nothing).await
}

/// Claims the fresh key `k` on `store` for fingerprint "a" and completes it with answer "a".
async fn completed<S: Store>(store: &S, s: &Scope, k: &Key) {
    let Outcome::Acquired { token, .. } = store
        .begin(Claim::new(s, k, &fp("a"), LEASE, TTL))
        .await
        .expect("begin")
    else {
        panic!("fresh key acquires")
    };
    store
        .complete(Hold::new(s, k, token), &response("a"))
        .await
        .expect("complete");
}

/// The test Redis's URL (none: skipped), the answers of the SQL store alone, and a fresh
/// tiered store whose answers must match them.
async fn tiered_beside_the_truth() -> Option<(String, Vec<String>, TieredStore<SqliteStore>)> {
    let url = common::redis_url()?;
    let expected = truth_answers().await;
    let store = tiered(&url).await;
    Some((url, expected, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_come_from_redis_and_answers_match_the_truth() {
    let Some((_, expected, store)) = tiered_beside_the_truth().await else {
        return;
    };
    assert!(expected.iter().any(|a| a.starts_with("Replay")));
    assert_eq!(scenario(&store, nothing).await, expected);
    let stats = store.stats();
    assert!(stats.hits >= 5, "replays come from Redis: {stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(
        stats.fills >= 4,
        "every complete fills the cache: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_redis_key_mid_sequence_changes_no_answer() {
    let Some((url, expected, store)) = tiered_beside_the_truth().await else {
        return;
    };
    let prefix = store.cache().prefix().to_owned();
    let deleted = AtomicUsize::new(0);
    let answers = scenario(&store, |_| {
        let (url, prefix, deleted) = (url.clone(), prefix.clone(), &deleted);
        async move {
            let n = common::delete_prefix(&url, &prefix).await;
            deleted.fetch_add(n, Ordering::Relaxed);
        }
    })
    .await;
    assert_eq!(answers, expected);
    let deleted = deleted.into_inner();
    assert!(deleted >= 2, "the cache held entries to lose ({deleted})");
    let stats = store.stats();
    assert!(
        stats.misses > stats.hits,
        "deleted entries are misses: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_from_the_start_changes_no_answer() {
    // Needs no Redis at all: the cache points at a port nothing listens on.
    let expected = truth_answers().await;
    let options = RedisOptions::from_url(&format!("redis://127.0.0.1:{}", common::dead_port()))
        .expect("a Redis URL");
    let cache = ReplayCache::lazy(&options)
        .expect("a lazy cache builds without a server")
        .cooldown(Duration::ZERO);
    let store = TieredStore::new(sqlite().await, cache);
    assert_eq!(scenario(&store, nothing).await, expected);
    let stats = store.stats();
    assert_eq!(stats.hits, 0, "{stats:?}");
    assert!(
        stats.errors >= 10,
        "every lookup and fill failed and was ignored: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_mid_sequence_changes_no_answer_and_the_cache_comes_back() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let expected = truth_answers().await;
    let proxy = common::Proxy::start(&url).await;
    let options = RedisOptions::from_url(&proxy.url())
        .expect("a Redis URL")
        .prefix(idem_test_support::unique_name("idemtest"))
        .connection_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(500));
    let cache = ReplayCache::connect_with(&options)
        .await
        .expect("connect through the proxy")
        .cooldown(Duration::ZERO);
    let store = TieredStore::new(sqlite().await, cache);
    let answers = scenario(&store, |n| {
        let proxy = &proxy;
        async move {
            match n {
                1 => proxy.cut().await,
                4 => proxy.restore().await,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(answers, expected);
    let stats = store.stats();
    assert!(stats.errors > 0, "the cut was seen: {stats:?}");

    // After the restore the connection manager reconnects and replays hit Redis again.
    let s = Scope::new("after").expect("scope");
    let t = match store
        .begin(Claim::new(&s, &key("back"), &fp("a"), LEASE, TTL))
        .await
    {
        Ok(Outcome::Acquired { token, .. }) => token,
        other => panic!("fresh key acquires, got {other:?}"),
    };
    store
        .complete(Hold::new(&s, &key("back"), t), &response("back"))
        .await
        .expect("complete");
    let hits_before = store.stats().hits;
    for _ in 0..20 {
        let got = store
            .begin(Claim::new(&s, &key("back"), &fp("a"), LEASE, TTL))
            .await;
        assert_eq!(got.expect("begin"), Outcome::Replay(response("back")));
        if store.stats().hits > hits_before {
            return;
        }
        // A failed fill after reconnecting leaves the entry missing: fill it again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "replays never came from Redis again after the restore: {:?}",
        store.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_replay_needs_the_same_fingerprint_and_a_live_record() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let store = tiered(&url).await;
    let s = Scope::new("t").expect("scope");
    let k = key("fp");
    completed(&store, &s, &k).await;
    let record = store.get(&s, &k).await.expect("get").expect("record");

    // The entry expires no later than the record, in its hash and in Redis.
    let mut conn = common::raw(&url).await;
    let entry = store.cache().entry_key(&s, &k);
    let entry_exp: i64 = redis::cmd("HGET")
        .arg(&entry)
        .arg("exp")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    let entry_expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&entry)
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert!(entry_exp <= record.expires_at.as_millis());
    assert!(entry_expire_time <= record.expires_at.as_millis());

    let hits = store.stats().hits;
    assert_eq!(
        store
            .begin(Claim::new(&s, &k, &fp("b"), LEASE, TTL))
            .await
            .expect("begin"),
        Outcome::Mismatch
    );
    assert_eq!(store.stats().hits, hits, "another fingerprint is not a hit");
    assert_eq!(
        store
            .begin(Claim::new(&s, &k, &fp("a"), LEASE, TTL))
            .await
            .expect("begin"),
        Outcome::Replay(response("a"))
    );
    assert_eq!(store.stats().hits, hits + 1);

    // Just before the record's expiry the entry is already gone (clock-skew margin);
    // after it, the truth acquires and the cache never answers.
    store
        .advance(TTL - Duration::from_secs(2))
        .await
        .expect("advance");
    assert_eq!(
        store
            .begin(Claim::new(&s, &k, &fp("a"), LEASE, TTL))
            .await
            .expect("begin"),
        Outcome::Replay(response("a"))
    );
    assert_eq!(
        store.stats().hits,
        hits + 1,
        "within the skew margin: a miss"
    );
    store
        .advance(Duration::from_secs(3))
        .await
        .expect("advance");
    assert!(matches!(
        store
            .begin(Claim::new(&s, &k, &fp("a"), LEASE, TTL))
            .await
            .expect("begin"),
        Outcome::Acquired { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_cache_and_racers_all_replay() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let sqlite_url = common::sqlite_url();
    let truth_a = SqliteStore::connect(&sqlite_url).await.expect("pool a");
    let truth_b = SqliteStore::connect(&sqlite_url).await.expect("pool b");
    let cache = ReplayCache::connect_with(&common::fresh_options(&url))
        .await
        .expect("cache");
    let node_a = std::sync::Arc::new(TieredStore::new(truth_a, cache.clone()));
    let node_b = std::sync::Arc::new(TieredStore::new(truth_b, cache.peer()));
    let s = Scope::new("t").expect("scope");
    let k = key("shared");
    completed(&*node_a, &s, &k).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        let (node, s, k) = (std::sync::Arc::clone(node), s.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            node.begin(Claim::new(&s, &k, &fp("a"), LEASE, TTL)).await
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.expect("task").expect("begin"),
            Outcome::Replay(response("a"))
        );
    }
    assert_eq!(
        node_b.stats().hits,
        32,
        "node b replays from the cache node a filled"
    );
    assert_eq!(node_a.stats().hits, 32);
}
