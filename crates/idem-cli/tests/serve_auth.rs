//! DESIGN §5a from outside: `idem keys` and `idem serve --auth`, run as an operator runs them
//! on a temp SQLite file — who may call, which tenant a key names, what another tenant's id
//! looks like, and how fast a revoked key stops working.

#[path = "common/serve_harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{idem, Cluster, Node};
use idem_test_support::unique_name;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A fresh SQLite database URL in a new temp directory.
fn database() -> String {
    let dir = std::env::temp_dir().join(unique_name("idem_auth"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    format!("sqlite://{}/auth.db", dir.display())
}

/// Runs `idem keys ARGS… --database URL`; its stdout, or a panic with its stderr.
fn keys(database: &str, args: &[&str]) -> String {
    let output = idem()
        .arg("keys")
        .args(args)
        .args(["--database", database])
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run idem keys");
    assert!(
        output.status.success(),
        "idem keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A new key of `tenant`: (id, secret).
fn create_key(database: &str, tenant: &str) -> (String, String) {
    let secret = keys(database, &["create", "--tenant", tenant])
        .trim()
        .to_owned();
    let listed: Value =
        serde_json::from_str(&keys(database, &["list", "--json"])).expect("list --json");
    let id = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter(|key| key["tenant"] == tenant)
        .filter_map(|key| key["id"].as_str())
        .next_back()
        .expect("the new key is listed")
        .to_owned();
    (id, secret)
}

/// `idem serve` on `database`, reachable from the network (so api-keys by default).
fn serve(database: &str, extra: &[&str]) -> Node {
    Node::start_on(database, "0.0.0.0:0", extra, None)
}

/// A client of one tenant (or of none), sending each request to the next node.
struct Caller {
    client: reqwest::Client,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    key: Option<String>,
}

impl Caller {
    fn new(bases: &[String], key: Option<&str>) -> Self {
        Self {
            client: reqwest::Client::new(),
            bases: bases.to_vec(),
            next: std::sync::atomic::AtomicUsize::new(0),
            key: key.map(str::to_owned),
        }
    }

    /// Sends to node `i`: the status, the `WWW-Authenticate` challenge, the JSON body.
    async fn send_to(
        &self,
        i: usize,
        post: Option<&Value>,
        path: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let url = format!("{}{path}", self.bases[i % self.bases.len()]);
        let mut request = match post {
            Some(body) => self.client.post(url).json(body),
            None => self.client.get(url),
        };
        if let Some(key) = &self.key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, challenge, body)
    }

    async fn send(&self, post: Option<&Value>, path: &str) -> (StatusCode, Option<String>, Value) {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.send_to(i, post, path).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.send(Some(&body), path).await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(None, path).await;
        (status, body)
    }
}

/// Asserts the answer every refused caller gets: 401, `unauthorized`, `Bearer` challenge.
async fn assert_refused(caller: &Caller, post: Option<&Value>, path: &str) {
    let (status, challenge, body) = caller.send(post, path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"), "{path}");
    assert_eq!(body["code"], "unauthorized", "{body}");
}

/// A payment request body.
fn order(order_id: &str, payer: &str, payee: &str, amount: i64) -> Value {
    json!({"order_id": order_id, "payer": payer, "payee": payee, "amount": amount})
}

/// Asserts that `caller` gets for `[theirs, none]` — an id of another tenant, and one that
/// exists nowhere — the same 404 with the same body but for the id. `request` gives the
/// body (if any) and the path that name an id.
async fn assert_looks_missing(
    caller: &Caller,
    [theirs, none]: [&str; 2],
    request: impl Fn(&str) -> (Option<Value>, String),
) {
    let mut answers = Vec::new();
    for id in [theirs, none] {
        let (body, path) = request(id);
        let (status, _, answer) = caller.send(body.as_ref(), &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        answers.push(answer.to_string().replace(id, "ID"));
    }
    assert_eq!(answers[0], answers[1], "{theirs} looks like {none}");
}

#[tokio::test]
async fn none_on_a_reachable_address_refuses_to_start() {
    let database = database();
    let refused = idem()
        .args(["serve", "--database", &database, "--listen", "0.0.0.0:0"])
        .args(["--auth", "none"])
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run idem serve");
    assert!(!refused.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--insecure-no-auth") && stderr.contains("loopback"),
        "says why and what to do: {stderr}"
    );

    let node = serve(&database, &["--auth", "none", "--insecure-no-auth"]);
    let anyone = Caller::new(std::slice::from_ref(&node.base), None);
    let (status, body) = anyone
        .post("/v1/accounts", json!({"account_id": "a", "balance": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(node.terminate().success());
}

#[tokio::test]
async fn a_reachable_address_needs_a_key_by_default() {
    let database = database();
    let (_, key) = create_key(&database, "acme");
    let node = serve(&database, &[]);
    let open = json!({"account_id": "a", "balance": 1});
    assert_refused(
        &Caller::new(std::slice::from_ref(&node.base), None),
        Some(&open),
        "/v1/accounts",
    )
    .await;
    let (status, body) = Caller::new(std::slice::from_ref(&node.base), Some(&key))
        .post("/v1/accounts", open)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(node.terminate().success());
}

#[tokio::test]
async fn sqlite_node_keeps_tenants_apart() {
    let Some(cluster) = Cluster::sqlite(&["--auth", "api-keys"]).await else {
        return;
    };
    tenants_stay_apart(&cluster).await;
}

#[tokio::test]
async fn postgres_nodes_keep_tenants_apart() {
    let Some(cluster) = Cluster::postgres(&["--auth", "api-keys"]).await else {
        return;
    };
    tenants_stay_apart(&cluster).await;
}

/// Every rule of DESIGN §5a on `cluster`'s nodes, each request to the next node: strangers
/// are refused and change nothing; two tenants use the same ids independently (accounts,
/// payments, replays, conflicts, refunds); another tenant's id answers as a missing one; a
/// revoked key is refused by every node within a second.
async fn tenants_stay_apart(cluster: &Cluster) {
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base.clone()).collect();
    let database = &cluster.database;
    let (acme_id, acme_key) = create_key(database, "acme");
    let (_, globex_key) = create_key(database, "globex");

    // No key, a malformed one, an unknown one, another scheme: 401, nothing read.
    let paid = order("order-1", "alice", "bob", 30);
    let unknown = format!("idem_sk_{}", "0".repeat(64));
    for key in [None, Some("nope"), Some(unknown.as_str()), Some("idem_sk_")] {
        let stranger = Caller::new(&bases, key);
        assert_refused(&stranger, Some(&paid), "/v1/payments").await;
        assert_refused(&stranger, None, "/v1/accounts/alice").await;
        let open = json!({"account_id": "mallory", "balance": 1});
        assert_refused(&stranger, Some(&open), "/v1/accounts").await;
    }
    let basic = reqwest::Client::new()
        .get(format!("{}/v1/accounts/alice", bases[0]))
        .header(AUTHORIZATION, "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    for open in ["/healthz", "/metrics", "/openapi.json"] {
        let (status, _, _) = Caller::new(&bases, None).send(None, open).await;
        assert_eq!(status, StatusCode::OK, "{open} needs no key");
    }
    let report = cluster.db().await.ledger_check().await.expect("ledger");
    assert_eq!(report.accounts, 0, "strangers opened nothing");

    // Two tenants, the same ids: two sets of accounts, two payments.
    let (acme, globex) = (
        Caller::new(&bases, Some(&acme_key)),
        Caller::new(&bases, Some(&globex_key)),
    );
    for caller in [&acme, &globex] {
        for (id, balance) in [("alice", 100), ("bob", 0)] {
            let (status, body) = caller
                .post(
                    "/v1/accounts",
                    json!({"account_id": id, "balance": balance}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let (status, acme_paid) = acme.post("/v1/payments", paid.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{acme_paid}");
    let (status, globex_paid) = globex.post("/v1/payments", paid.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{globex_paid}");
    assert_ne!(acme_paid["payment_id"], globex_paid["payment_id"]);
    let (_, again) = acme.post("/v1/payments", paid.clone()).await;
    assert_eq!(again, acme_paid, "a replay within the tenant");
    let (status, conflict) = acme
        .post("/v1/payments", order("order-1", "alice", "bob", 31))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(conflict["code"], "order_id_conflict");
    let refund = json!({"refund_id": "r-1", "amount": 10});
    let (status, _) = acme
        .post("/v1/payments/order-1/refunds", refund.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = globex
        .post(
            "/v1/payments/order-1/refunds",
            json!({"refund_id": "r-1", "amount": 5}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same refund id in another tenant is its own"
    );
    for (caller, bob) in [(&acme, 20), (&globex, 25)] {
        let (_, account) = caller.get("/v1/accounts/bob").await;
        assert_eq!(account["balance"], bob);
    }

    // Another tenant's ids answer as ids that do not exist.
    let (status, _) = globex
        .post("/v1/accounts", json!({"account_id": "carol", "balance": 5}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let account = |id: &str| (None, format!("/v1/accounts/{id}"));
    assert_looks_missing(&acme, ["carol", "nobody"], account).await;
    let pay_to = |id: &str| {
        (
            Some(order("a-2", "alice", id, 1)),
            "/v1/payments".to_owned(),
        )
    };
    assert_looks_missing(&acme, ["carol", "nobody"], pay_to).await;
    let (status, _) = globex
        .post("/v1/payments", order("g-1", "carol", "alice", 1))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let payment = |id: &str| (None, format!("/v1/payments/{id}"));
    assert_looks_missing(&acme, ["g-1", "none-such"], payment).await;
    let refund_of = |id: &str| (Some(refund.clone()), format!("/v1/payments/{id}/refunds"));
    assert_looks_missing(&acme, ["g-1", "none-such"], refund_of).await;

    // A revoked key stops working on every node within a second; the other tenant's works.
    assert!(keys(database, &["revoke", &acme_id]).contains(&acme_id));
    let revoked = Instant::now();
    for node in 0..bases.len() {
        loop {
            let (status, _, _) = acme.send_to(node, None, "/v1/accounts/alice").await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "node {node} still answered {status} to a revoked key after {:?}",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_refused(&acme, Some(&paid), "/v1/payments").await;
    let (status, alice) = globex.get("/v1/accounts/alice").await;
    assert_eq!((status, &alice["balance"]), (StatusCode::OK, &json!(76)));
    let report = cluster.db().await.ledger_check().await.expect("ledger");
    assert!(report.is_consistent() && report.accounts == 5, "{report:?}");
}
