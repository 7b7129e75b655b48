//! A store behind a failing network path: its answer held (a partition that heals) or never
//! coming (a half-open connection). The layer runs a request only while the lease the store
//! granted surely holds, and gives no store call more than the lease: a late grant is
//! released and answered 503, a silent store 503 within the lease, and nothing runs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use idem::{
    Claim, Hold, Key, MemoryStore, Outcome, Record, Scope, Store, StoreError, StoredResponse,
};
use idem_http::testing::{counting_app, serve_counting_app, unique_key, Served};
use idem_http::{Config, IdempotencyLayer};

const LEASE: Duration = Duration::from_millis(600);

/// How the first `begin` of a [`HeldNetwork`] store goes wrong.
#[derive(Clone, Copy)]
enum Fault {
    /// The store acts at once; its answer is held this long on the way back.
    Late(Duration),
    /// The answer never comes.
    Silent,
}

/// A memory store whose first `begin` meets `fault`; every other call goes through.
struct HeldNetwork {
    inner: MemoryStore,
    fault: Fault,
    begins: AtomicU32,
}

#[async_trait]
impl Store for HeldNetwork {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        let first = self.begins.fetch_add(1, Ordering::SeqCst) == 0;
        match self.fault {
            Fault::Silent if first => std::future::pending::<Result<Outcome, StoreError>>().await,
            Fault::Late(held) if first => {
                let outcome = self.inner.begin(claim).await;
                tokio::time::sleep(held).await;
                outcome
            }
            _ => self.inner.begin(claim).await,
        }
    }
    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        self.inner.complete(hold, response).await
    }
    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        self.inner.release(hold).await
    }
    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        self.inner.get(scope, key).await
    }
    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_expired(limit).await
    }
}

/// The counting app behind the layer on a store meeting `fault`, with a lease of [`LEASE`].
async fn app(fault: Fault) -> Served {
    let store = HeldNetwork {
        inner: MemoryStore::new(),
        fault,
        begins: AtomicU32::new(0),
    };
    let layer = IdempotencyLayer::new(store, Config::default().lease(LEASE));
    serve_counting_app(counting_app().layer(layer)).await
}

/// POSTs an order with `key`; its status, its problem `code` if any, and how long it took.
async fn post(served: &Served, key: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{}/orders", served.addr))
        .header("content-type", "application/json")
        .header("idempotency-key", format!("\"{key}\""))
        .body("{\"amount\":1}")
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["code"].as_str().map(str::to_owned);
    (status, code, started.elapsed())
}

async fn runs(served: &Served) -> String {
    reqwest::get(format!("http://{}/count", served.addr))
        .await
        .expect("GET /count answers")
        .text()
        .await
        .expect("a count")
}

#[tokio::test]
async fn a_grant_that_comes_late_in_the_lease_is_released_and_nothing_runs() {
    // Past half the lease, before the whole of it (when the call itself would be given up).
    let served = app(Fault::Late(LEASE / 2 + Duration::from_millis(150))).await;
    let key = unique_key("late-grant");
    let (status, code, _) = post(&served, &key).await;
    assert_eq!(status, 503, "a late grant is not run");
    assert_eq!(code.as_deref(), Some("store_unavailable"));
    assert_eq!(runs(&served).await, "0", "the handler never ran");
    // The late holder released the key: a retry runs at once, not after the lease.
    let (status, _, took) = post(&served, &key).await;
    assert_eq!(status, 201);
    assert!(took < LEASE, "the retry waited {took:?}");
    assert_eq!(runs(&served).await, "1");
}

#[tokio::test]
async fn a_store_that_never_answers_is_unavailable_within_the_lease() {
    let served = app(Fault::Silent).await;
    let (status, code, took) = post(&served, &unique_key("silent")).await;
    assert_eq!(status, 503);
    assert_eq!(code.as_deref(), Some("store_unavailable"));
    assert!(
        took >= LEASE && took < LEASE * 3,
        "answered after {took:?}, the lease being {LEASE:?}"
    );
    assert_eq!(runs(&served).await, "0");
}
