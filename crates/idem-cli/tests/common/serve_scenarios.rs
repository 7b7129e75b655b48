//! The scenarios every backend runs (expanded per backend by `serve_tests!` in
//! `tests/serve_backends.rs`). Each takes a fresh [`Cluster`] and panics naming the rule
//! of DESIGN §5 that broke.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::harness::{Cluster, Reply};

#[path = "serve_inputs.rs"]
mod inputs;
pub use inputs::*;

/// Runs every future at once (each in its own task) and returns the outputs in order.
pub async fn join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("request task"));
    }
    out
}

pub(crate) fn payment(order_id: &str, payer: &str, payee: &str, amount: i64) -> Value {
    json!({"order_id": order_id, "payer": payer, "payee": payee, "amount": amount})
}

/// The same payment sent to every node at once, 50 times: one deduction, one body, all but
/// one answer marked as replays.
pub async fn fifty_duplicates_on_all_nodes_pay_once(c: &Cluster) {
    c.open("alice", 1_000).await;
    c.open("bob", 0).await;
    let body = payment("order-50", "alice", "bob", 100);
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let (node, body) = (c.endpoint(i), body.clone());
            async move { node.post("/v1/payments", &body).await }
        })
        .collect();
    let replies = join_all(sends).await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            201,
            "every duplicate answers 201: {}",
            reply.text()
        );
        assert_eq!(
            reply.body, replies[0].body,
            "every answer is the first, byte for byte"
        );
        assert_eq!(reply.content_type, "application/json");
    }
    let fresh = replies.iter().filter(|r| !r.replayed).count();
    assert_eq!(
        fresh, 1,
        "exactly one answer is not marked Idempotent-Replayed"
    );
    let first = replies[0].json();
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["amount"], 100);
    assert!(first["payment_id"].is_string() && first["created_at"].is_string());
    assert_eq!(
        (c.balance("alice").await, c.balance("bob").await),
        (900, 100),
        "one deduction"
    );
    // A later replay, from any node, is still the same bytes.
    for i in 0..c.nodes.len() {
        let again = c.post(i, "/v1/payments", &body).await;
        assert!(
            again.replayed && again.body == replies[0].body,
            "late replay on node {i}"
        );
        let read = c.get(i, "/v1/payments/order-50").await;
        assert_eq!(
            (read.status, &read.body),
            (200, &replies[0].body),
            "GET the payment"
        );
    }
    c.assert_books_balance().await;
}

/// Same order id with another amount or payee: 422 `order_id_conflict`, nothing moves.
pub async fn same_order_other_parameters_conflicts(c: &Cluster) {
    c.open("carol", 500).await;
    c.open("dave", 500).await;
    c.open("erin", 500).await;
    let first = c
        .post(0, "/v1/payments", &payment("o-1", "carol", "dave", 100))
        .await;
    assert_eq!(first.status, 201);
    for (i, other) in [
        payment("o-1", "carol", "dave", 101),
        payment("o-1", "carol", "erin", 100),
        payment("o-1", "erin", "dave", 100),
        payment("o-1", "dave", "carol", 100),
    ]
    .iter()
    .enumerate()
    {
        let reply = c.post(i, "/v1/payments", other).await;
        reply.assert_problem(422, "order_id_conflict");
    }
    assert_eq!(
        (
            c.balance("carol").await,
            c.balance("dave").await,
            c.balance("erin").await
        ),
        (400, 600, 500),
        "a conflicting order moves nothing"
    );
    // The order still answers its first answer.
    let again = c
        .post(1, "/v1/payments", &payment("o-1", "carol", "dave", 100))
        .await;
    assert!(again.replayed && again.body == first.body);
    c.assert_books_balance().await;
}

/// A payer short of funds gets 402 and nothing moves; the order is not final and succeeds
/// once another account has paid the payer enough.
pub async fn insufficient_funds_is_not_final(c: &Cluster) {
    c.open("poor", 50).await;
    c.open("shop", 0).await;
    c.open("rich", 1_000).await;
    let order = payment("o-poor", "poor", "shop", 100);
    for i in 0..c.nodes.len() {
        c.post(i, "/v1/payments", &order)
            .await
            .assert_problem(402, "insufficient_funds");
    }
    assert_eq!((c.balance("poor").await, c.balance("shop").await), (50, 0));
    c.get(0, "/v1/payments/o-poor")
        .await
        .assert_problem(404, "payment_not_found");
    let top_up = c
        .post(1, "/v1/payments", &payment("o-top-up", "rich", "poor", 100))
        .await;
    assert_eq!(top_up.status, 201);
    let paid = c.post(2, "/v1/payments", &order).await;
    assert_eq!(
        paid.status,
        201,
        "the declined order succeeds later: {}",
        paid.text()
    );
    assert!(
        !paid.replayed,
        "the 402 was not stored, so this is the first execution"
    );
    assert_eq!(
        (c.balance("poor").await, c.balance("shop").await),
        (50, 100)
    );
    c.assert_books_balance().await;
}

/// Refunds: once per refund id, never more in total than the payment, even when sent at
/// once to every node; the payee must have the funds.
pub async fn refunds_never_exceed_the_payment(c: &Cluster) {
    c.open("buyer", 1_000).await;
    c.open("seller", 0).await;
    c.open("other", 0).await;
    assert_eq!(
        c.post(0, "/v1/payments", &payment("p-1", "buyer", "seller", 100))
            .await
            .status,
        201
    );
    let r1 = c
        .post(
            0,
            "/v1/payments/p-1/refunds",
            &json!({"refund_id": "r1", "amount": 60}),
        )
        .await;
    assert_eq!(r1.status, 201, "{}", r1.text());
    let r1_body = r1.json();
    assert_eq!(
        (r1_body["refund_id"].as_str(), r1_body["amount"].as_i64()),
        (Some("r1"), Some(60))
    );
    let again = c
        .post(
            1,
            "/v1/payments/p-1/refunds",
            &json!({"refund_id": "r1", "amount": 60}),
        )
        .await;
    assert!(
        again.status == 201 && again.replayed && again.body == r1.body,
        "refund replay"
    );
    c.post(
        2,
        "/v1/payments/p-1/refunds",
        &json!({"refund_id": "r1", "amount": 50}),
    )
    .await
    .assert_problem(422, "refund_id_conflict");
    c.post(
        0,
        "/v1/payments/p-1/refunds",
        &json!({"refund_id": "r2", "amount": 41}),
    )
    .await
    .assert_problem(422, "refund_exceeds_payment");
    c.post(
        0,
        "/v1/payments/nope/refunds",
        &json!({"refund_id": "r1", "amount": 1}),
    )
    .await
    .assert_problem(404, "payment_not_found");
    assert_eq!(
        (c.balance("buyer").await, c.balance("seller").await),
        (960, 40)
    );

    // 20 different refunds of 10 on a payment of 100, at once on every node: 10 succeed.
    assert_eq!(
        c.post(1, "/v1/payments", &payment("p-2", "buyer", "seller", 100))
            .await
            .status,
        201
    );
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let node = c.endpoint(i);
            async move {
                let body = json!({"refund_id": format!("r-{i}"), "amount": 10});
                node.post("/v1/payments/p-2/refunds", &body).await
            }
        })
        .collect();
    let replies = join_all(sends).await;
    let ok = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.assert_problem(422, "refund_exceeds_payment");
    }
    assert_eq!(ok, 10, "refunds capped by the payment");
    assert_eq!(
        (c.balance("buyer").await, c.balance("seller").await),
        (960, 40)
    );

    // The payee spent the money: a refund is declined with 402 and moves nothing.
    assert_eq!(
        c.post(0, "/v1/payments", &payment("p-3", "buyer", "seller", 100))
            .await
            .status,
        201
    );
    assert_eq!(
        c.post(0, "/v1/payments", &payment("p-4", "seller", "other", 140))
            .await
            .status,
        201
    );
    c.post(
        0,
        "/v1/payments/p-3/refunds",
        &json!({"refund_id": "r1", "amount": 1}),
    )
    .await
    .assert_problem(402, "insufficient_funds");
    assert_eq!(
        (
            c.balance("buyer").await,
            c.balance("seller").await,
            c.balance("other").await
        ),
        (860, 0, 140)
    );
    c.assert_books_balance().await;
}

/// 1 000 random transfers between 20 accounts from 8 concurrent clients spread over the
/// nodes, with duplicates mixed in: the sum is unchanged, no balance is negative, the ledger
/// equals the balances, and each order was paid at most once.
pub async fn random_transfers_keep_the_books(c: &Cluster) {
    const ACCOUNTS: usize = 20;
    const CLIENTS: usize = 8;
    const TRANSFERS: usize = 1_000;
    const OPENING: i64 = 1_000;
    for a in 0..ACCOUNTS {
        c.open(&format!("acct-{a}"), OPENING).await;
    }
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let nodes: Vec<_> = (0..c.nodes.len()).map(|i| c.endpoint(i + client)).collect();
            async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
                let mut sent: Vec<Value> = Vec::new();
                let mut replies: Vec<(Value, Reply)> = Vec::new();
                for n in 0..TRANSFERS / CLIENTS {
                    // One in five is a duplicate of an earlier order (of any client's
                    // numbering, so clients also collide with each other).
                    let body = if !sent.is_empty() && rng.gen_bool(0.2) {
                        sent[rng.gen_range(0..sent.len())].clone()
                    } else {
                        let payer = rng.gen_range(0..ACCOUNTS);
                        let payee = (payer + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                        let order = if rng.gen_bool(0.1) {
                            // Same order id as another client's: parameters may differ.
                            format!(
                                "o-{}-{}",
                                rng.gen_range(0..CLIENTS),
                                rng.gen_range(0..n + 1)
                            )
                        } else {
                            format!("o-{client}-{n}")
                        };
                        let body = payment(
                            &order,
                            &format!("acct-{payer}"),
                            &format!("acct-{payee}"),
                            rng.gen_range(1..400),
                        );
                        sent.push(body.clone());
                        body
                    };
                    let node = &nodes[rng.gen_range(0..nodes.len())];
                    let reply = node.post("/v1/payments", &body).await;
                    replies.push((body, reply));
                }
                replies
            }
        })
        .collect();
    let results: Vec<(Value, Reply)> = join_all(clients).await.into_iter().flatten().collect();

    // Every order has at most one payment: every 201 for an order carries one body.
    let mut paid: BTreeMap<String, (Vec<u8>, Value)> = BTreeMap::new();
    for (request, reply) in &results {
        let order = request["order_id"].as_str().expect("order id").to_owned();
        match reply.status {
            201 => {
                let entry = paid
                    .entry(order.clone())
                    .or_insert_with(|| (reply.body.clone(), reply.json()));
                assert_eq!(
                    entry.0, reply.body,
                    "order {order} answered with two different payments"
                );
                let first = &entry.1;
                for field in ["payer", "payee", "amount"] {
                    assert_eq!(
                        first[field], request[field],
                        "a 201 for {order} with other {field}"
                    );
                }
            }
            402 => {
                reply.assert_problem(402, "insufficient_funds");
            }
            422 => {
                reply.assert_problem(422, "order_id_conflict");
            }
            other => panic!("unexpected {other} for {request}: {}", reply.text()),
        }
    }
    // The balances are exactly the opening balances moved by each paid order once.
    let mut expected: BTreeMap<String, i64> = (0..ACCOUNTS)
        .map(|a| (format!("acct-{a}"), OPENING))
        .collect();
    let payment_ids: BTreeSet<_> = paid
        .values()
        .map(|(_, p)| p["payment_id"].to_string())
        .collect();
    assert_eq!(payment_ids.len(), paid.len(), "one payment id per order");
    for (_, p) in paid.values() {
        let amount = p["amount"].as_i64().expect("amount");
        *expected
            .get_mut(p["payer"].as_str().expect("payer"))
            .expect("payer") -= amount;
        *expected
            .get_mut(p["payee"].as_str().expect("payee"))
            .expect("payee") += amount;
    }
    let mut total = 0;
    for (account, want) in &expected {
        let got = c.balance(account).await;
        assert!(got >= 0, "{account} is negative: {got}");
        assert_eq!(
            got, *want,
            "{account}: each paid order moved money exactly once"
        );
        total += got;
    }
    assert_eq!(
        total,
        OPENING * ACCOUNTS as i64,
        "the sum of balances never changes"
    );
    let report = c.assert_books_balance().await;
    assert_eq!(report.accounts, ACCOUNTS as i64);
    assert!(
        paid.len() > 100,
        "the load paid a real number of orders ({})",
        paid.len()
    );
}
