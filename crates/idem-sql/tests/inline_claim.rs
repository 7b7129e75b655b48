//! [`InlineClaim`] on PostgreSQL: a fresh key claimed inside one statement of the caller's
//! own commits with the statement's other writes; a key seen before fails the statement
//! whole (`is_taken`) and `begin_answered_in` decides it; a statement that does not go
//! ahead writes nothing; N racers on one key in N statements: one claims, the rest are
//! taken, the business row exists once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use idem::{
    Claim, Fingerprint, Key, Outcome, RecordState, Scope, Store, StoredResponse, TTL_FOREVER,
};
use idem_sql::{ClaimValue, InlineClaim, PostgresStore, TransactionalStore};
use idem_test_support::backend_url;

fn scope() -> Scope {
    Scope::new("POST /v1/orders").expect("valid scope")
}

fn fp(body: &[u8]) -> Fingerprint {
    Fingerprint::of_bytes("POST", "/v1/orders", body)
}

fn answer() -> StoredResponse {
    StoredResponse::new(201, "{\"order\":\"placed\"}")
}

async fn open() -> Option<PostgresStore> {
    let store = support::pg_store(&backend_url("IDEM_TEST_POSTGRES")?).await;
    sqlx::query("CREATE TABLE orders (order_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("create the business table");
    Some(store)
}

/// Runs the one statement: when `go`, claims `key` and inserts its business row; the
/// records claimed (0 or 1), or the statement's error.
async fn place(
    store: &PostgresStore,
    key: &Key,
    fingerprint: &Fingerprint,
    go: bool,
) -> Result<i64, sqlx::Error> {
    let s = scope();
    let claim = Claim::new(&s, key, fingerprint, Duration::ZERO, TTL_FOREVER);
    let inline = InlineClaim::new(claim, &answer());
    let sql = format!(
        "WITH go AS (SELECT 1 WHERE $1), claimed AS ({}), \
         placed AS (INSERT INTO orders (order_id) SELECT $2 FROM claimed) \
         SELECT COUNT(*) FROM claimed",
        InlineClaim::insert_sql("go", 3)
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql)
        .bind(go)
        .bind(key.as_str());
    for value in inline.values() {
        query = match value {
            ClaimValue::Text(text) => query.bind(text),
            ClaimValue::Bytes(bytes) => query.bind(bytes),
            ClaimValue::Int(int) => query.bind(int),
        };
    }
    query.fetch_one(store.pool()).await
}

async fn business_rows(store: &PostgresStore, key: &Key) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE order_id = $1")
        .bind(key.as_str())
        .fetch_one(store.pool())
        .await
        .expect("count business rows")
}

/// The general path's decision on a key the inline statement found taken.
async fn decide(store: &PostgresStore, key: &Key, fingerprint: &Fingerprint) -> Outcome {
    let s = scope();
    let mut tx = store.begin_write().await.expect("begin_write");
    let claim = Claim::new(&s, key, fingerprint, Duration::ZERO, TTL_FOREVER);
    let outcome = store
        .begin_answered_in(&mut tx, claim, &answer())
        .await
        .expect("begin_answered_in");
    drop(tx);
    outcome
}

#[tokio::test]
async fn a_fresh_key_commits_with_the_statement_and_a_second_is_decided_by_the_general_path() {
    let Some(store) = open().await else { return };
    let key = Key::new("order-1").expect("valid key");
    let body = fp(b"{\"sku\":\"a\"}");

    assert_eq!(place(&store, &key, &body, true).await.expect("place"), 1);
    let record = store
        .get(&scope(), &key)
        .await
        .expect("get")
        .expect("a record");
    assert!(
        matches!(&record.state, RecordState::Completed { response, .. } if *response == answer()),
        "{record:?}"
    );
    assert!(
        record.expires_at.as_millis() >= idem::DURATION_MS_MAX,
        "kept forever"
    );
    assert_eq!(business_rows(&store, &key).await, 1);

    let again = place(&store, &key, &body, true)
        .await
        .expect_err("the key is taken");
    assert!(InlineClaim::is_taken(&again), "{again}");
    assert_eq!(
        business_rows(&store, &key).await,
        1,
        "the failed statement kept nothing"
    );
    assert!(
        matches!(decide(&store, &key, &body).await, Outcome::Replay(first) if first == answer())
    );

    let other = fp(b"{\"sku\":\"b\"}");
    let reused = place(&store, &key, &other, true)
        .await
        .expect_err("the key is taken");
    assert!(InlineClaim::is_taken(&reused), "{reused}");
    assert!(matches!(
        decide(&store, &key, &other).await,
        Outcome::Mismatch
    ));
}

#[tokio::test]
async fn a_statement_that_does_not_go_ahead_claims_nothing() {
    let Some(store) = open().await else { return };
    let key = Key::new("order-refused").expect("valid key");
    assert_eq!(
        place(&store, &key, &fp(b"{}"), false).await.expect("place"),
        0
    );
    assert!(store.get(&scope(), &key).await.expect("get").is_none());
    assert_eq!(business_rows(&store, &key).await, 0);
    assert!(matches!(
        decide(&store, &key, &fp(b"{}")).await,
        Outcome::Acquired { .. }
    ));
}

#[tokio::test]
async fn racers_on_one_key_one_claims_the_rest_are_taken() {
    let Some(store) = open().await else { return };
    let store = Arc::new(store);
    let key = Key::new("order-raced").expect("valid key");
    let racers = (0..16).map(|_| {
        let (store, key) = (Arc::clone(&store), key.clone());
        tokio::spawn(async move { place(&store, &key, &fp(b"{}"), true).await })
    });
    let (mut claimed, mut taken) = (0, 0);
    for racer in racers {
        match racer.await.expect("racer") {
            Ok(1) => claimed += 1,
            Err(error) if InlineClaim::is_taken(&error) => taken += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!((claimed, taken), (1, 15));
    assert_eq!(business_rows(&store, &key).await, 1);
}
