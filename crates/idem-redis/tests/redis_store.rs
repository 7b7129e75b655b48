//! [`RedisStore`] beyond the conformance suite: what it leaves in Redis (key layout, one
//! string per record, expiry set in Redis), ageing that drops what Redis would have,
//! `NOSCRIPT` recovery, and a server that goes away and comes back.

mod common;

use std::process::Stdio;
use std::time::Duration;

use idem::conformance::{LEASE, TTL};
use idem::{
    Claim, Fingerprint, Hold, Key, Outcome, Scope, Store, StoreError, StoredResponse, TimeTravel,
};
use idem_redis::{RedisOptions, RedisStore};

fn key(raw: &str) -> Key {
    Key::new(raw).expect("test key")
}

fn fp() -> Fingerprint {
    Fingerprint::of_bytes("POST", "/store", b"{}")
}

async fn acquire(store: &RedisStore, s: &Scope, k: &Key, ttl: Duration) -> idem::FencingToken {
    match store
        .begin(Claim::new(s, k, &fp(), LEASE, ttl))
        .await
        .expect("begin")
    {
        Outcome::Acquired { token, .. } => token,
        other => panic!("a fresh key acquires, got {other:?}"),
    }
}

/// A store under a fresh prefix and a plain connection to look at what it leaves in Redis,
/// or `None` when there is no test server (skipped, with the reason printed).
async fn store_and_raw() -> Option<(RedisStore, redis::aio::MultiplexedConnection)> {
    let url = common::redis_url()?;
    let store = RedisStore::connect_with(&common::fresh_options(&url))
        .await
        .expect("connect");
    Some((store, common::raw(&url).await))
}

/// The key's remaining time to live in ms.
async fn pttl(conn: &mut redis::aio::MultiplexedConnection, name: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(name)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// The record's string: `(state, token, life)` read from its 57-byte header.
async fn header(
    conn: &mut redis::aio::MultiplexedConnection,
    name: &str,
) -> Option<(u8, u64, i64)> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(name)
        .query_async(conn)
        .await
        .expect("GET");
    let raw = raw?;
    assert!(raw.len() >= 57, "a record has a 57-byte header");
    let number = |at: usize| f64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    Some((raw[32], number(33) as u64, number(49) as i64))
}

#[tokio::test]
async fn records_live_at_their_hash_tagged_key_and_expire_in_redis() {
    let Some((store, mut conn)) = store_and_raw().await else {
        return;
    };
    let s = Scope::new("tenant-1|POST /v1/payments").expect("scope");
    let k = key("order:42");
    let token = acquire(&store, &s, &k, TTL).await;
    let record = store.get(&s, &k).await.expect("get").expect("record");

    let name = store.record_key(&s, &k);
    assert_eq!(
        name,
        format!("{}:{{tenant-1|POST /v1/payments}}:order:42", store.prefix())
    );
    let (state, tok, life) = header(&mut conn, &name).await.expect("the record");
    assert_eq!((state, tok), (b'P', token.0));
    let exp = record.expires_at.as_millis();
    assert_eq!(life, exp - record.created_at.as_millis());
    assert_eq!(life, i64::try_from(TTL.as_millis()).expect("ttl"));
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert_eq!(
        expire_time,
        exp - 1,
        "Redis drops the record at its expiry (alive while its clock is below it)"
    );

    store
        .complete(Hold::new(&s, &k, token), &StoredResponse::new(201, "ok"))
        .await
        .expect("complete");
    let (state, _, _) = header(&mut conn, &name).await.expect("the record");
    assert_eq!(state, b'C');
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert_eq!(expire_time, exp - 1, "completing keeps the expiry");

    let released = key("released");
    let token = acquire(&store, &s, &released, TTL).await;
    let before: i64 = redis::cmd("PEXPIRETIME")
        .arg(store.record_key(&s, &released))
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    store
        .release(Hold::new(&s, &released, token))
        .await
        .expect("release");
    let name = store.record_key(&s, &released);
    let (state, tok, _) = header(&mut conn, &name).await.expect("the tombstone");
    assert_eq!(
        (state, tok),
        (b'R', token.0),
        "release leaves a tombstone with the releaser's token, so the next holder's is larger"
    );
    let after: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("PEXPIRETIME");
    assert_eq!(after, before, "the tombstone keeps the record's expiry");
    assert!(
        store.get(&s, &released).await.expect("get").is_none(),
        "a released record is absent"
    );
}

#[tokio::test]
async fn ageing_drops_what_redis_would_have_and_purge_has_nothing_to_do() {
    let Some((store, mut conn)) = store_and_raw().await else {
        return;
    };
    let s = Scope::new("t").expect("scope");
    let short = Duration::from_secs(60);
    for i in 0..6 {
        acquire(&store, &s, &key(&format!("short-{i}")), short).await;
    }
    acquire(&store, &s, &key("long"), TTL).await;
    let long = store.record_key(&s, &key("long"));
    let before = pttl(&mut conn, &long).await;
    store
        .advance(short + Duration::from_secs(1))
        .await
        .expect("advance");
    let after = pttl(&mut conn, &long).await;
    let aged = before - after;
    assert!(
        (61_000..66_000).contains(&aged),
        "the live record's PTTL shrinks by the advance, by {aged} ms"
    );
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", store.prefix()))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(
        left,
        vec![store.record_key(&s, &key("long"))],
        "records whose TTL ran out are gone, as Redis would have dropped them"
    );
    assert_eq!(store.purge_expired(100).await.expect("purge"), 0);
    assert!(store.get(&s, &key("long")).await.expect("get").is_some());
}

#[tokio::test]
async fn a_lazy_store_on_a_dead_port_is_unavailable_not_broken() {
    let url = format!("redis://127.0.0.1:{}", common::dead_port());
    assert!(RedisStore::connect(&url).await.is_err());
    let store =
        RedisStore::lazy(&RedisOptions::from_url(&url).expect("a Redis URL")).expect("lazy store");
    let s = Scope::global();
    let got = store
        .begin(Claim::new(&s, &key("k"), &fp(), LEASE, TTL))
        .await;
    assert!(
        matches!(got, Err(StoreError::Unavailable(_))),
        "a refused connection is Unavailable, got {got:?}"
    );
    assert!(got.expect_err("unavailable").is_transient());
    assert!(matches!(store.now().await, Err(StoreError::Unavailable(_))));
}

/// A private `redis-server` on a free port, killed when dropped.
struct PrivateServer {
    port: u16,
    child: tokio::process::Child,
}

impl PrivateServer {
    async fn start(port: u16) -> Option<PrivateServer> {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: no redis-server binary to run a private server");
            return None;
        };
        let server = PrivateServer { port, child };
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(server.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok()
                    {
                        return Some(server);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private redis-server did not come up");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("kill redis-server");
    }
}

#[tokio::test]
async fn scripts_reload_after_noscript_and_the_store_survives_a_restart() {
    let port = common::dead_port();
    let Some(server) = PrivateServer::start(port).await else {
        return;
    };
    let options = RedisOptions::from_url(&server.url())
        .expect("a Redis URL")
        .connection_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(500));
    let store = RedisStore::connect_with(&options).await.expect("connect");
    let s = Scope::global();
    acquire(&store, &s, &key("before-flush"), TTL).await;

    let mut conn = common::raw(&server.url()).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH on the private server");
    let token = acquire(&store, &s, &key("after-flush"), TTL).await;
    store
        .complete(
            Hold::new(&s, &key("after-flush"), token),
            &StoredResponse::new(200, "x"),
        )
        .await
        .expect("complete reloads its script too");

    server.stop().await;
    let down = store
        .begin(Claim::new(&s, &key("down"), &fp(), LEASE, TTL))
        .await;
    assert!(
        matches!(down, Err(StoreError::Unavailable(_))),
        "a stopped server is Unavailable, got {down:?}"
    );

    let server = PrivateServer::start(port).await.expect("restart");
    // The connection manager reconnects on the next call; the first may still fail.
    for attempt in 0.. {
        match store
            .begin(Claim::new(&s, &key("back"), &fp(), LEASE, TTL))
            .await
        {
            Ok(Outcome::Acquired { .. }) => break,
            Err(StoreError::Unavailable(_)) if attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("the store works again after the restart, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_record_with_an_unknown_state_is_corrupt_not_misread() {
    let Some((store, mut conn)) = store_and_raw().await else {
        return;
    };
    let s = Scope::new("t").expect("scope");
    let k = key("old");
    // The fingerprint, a state byte no version writes ('c'), then four numbers.
    let mut old = fp().as_bytes().to_vec();
    old.push(b'c');
    for n in [1.0f64, 1.0e12, 2.0e12, 1.0e12] {
        old.extend_from_slice(&n.to_be_bytes());
    }
    old.extend_from_slice(&StoredResponse::new(201, "ok").encode());
    let () = redis::cmd("SET")
        .arg(store.record_key(&s, &k))
        .arg(old)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let got = store.begin(Claim::new(&s, &k, &fp(), LEASE, TTL)).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "got {got:?}");
    let got = store.get(&s, &k).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "got {got:?}");
}
