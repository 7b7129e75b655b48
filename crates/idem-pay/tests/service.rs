//! The service as a library on each backend: lock ordering (opposite transfers never
//! deadlock), concurrent duplicates (one execution), the replay memory, and the Redis front
//! (replays without SQL; an entry for other parameters is never used). One body per case, expanded per
//! backend by `backend_tests!`.

mod common;

use std::sync::Arc;

use idem::{Key, Scope, StoredResponse};
use idem_pay::metrics::Metrics;
use idem_pay::validate::{NewAccount, NewPayment};
use idem_pay::{Db, Service, Tenant};
use idem_redis::{RedisOptions, ReplayCache};
use idem_test_support::{backend_url, unique_name};

tokio::task_local! {
    /// `--batch-max` of the services a case makes (1, no batching, outside a scope).
    static BATCH_MAX: usize;
}

async fn service(url: &str) -> Service {
    let db = Db::connect(url, 8).await.expect("connect and migrate");
    let batching = idem_sql::BatchOptions {
        items_max: BATCH_MAX.try_with(|max| *max).unwrap_or(1),
        ..idem_sql::BatchOptions::default()
    };
    Service::new(db, None, Arc::new(Metrics::isolated())).with_batching(batching)
}

/// Defines `$batched`, the case `$case` with payments and refunds batched (up to 16 in one
/// transaction, 2 batches in flight).
macro_rules! batched {
    ($($batched:ident => $case:ident),+ $(,)?) => {
        $(
            async fn $batched(url: &str) {
                BATCH_MAX.scope(16, $case(url)).await;
            }
        )+
    };
}

batched! {
    batched_opposite_transfers_never_deadlock => opposite_transfers_never_deadlock,
    batched_concurrent_duplicates_execute_once => concurrent_duplicates_execute_once,
    batched_a_drained_payer_pays_exactly_what_it_has => a_drained_payer_pays_exactly_what_it_has,
    batched_tenants_keep_their_ids_apart => tenants_keep_their_ids_apart,
}

async fn open(service: &Service, id: &str, balance: i64) {
    let request = NewAccount {
        account_id: id.into(),
        balance,
    };
    assert_eq!(
        service
            .open_account(&Tenant::default(), &request)
            .await
            .expect("open")
            .status,
        201
    );
}

fn pay(order: &str, payer: &str, payee: &str, amount: i64) -> NewPayment {
    NewPayment {
        order_id: order.into(),
        payer: payer.into(),
        payee: payee.into(),
        amount,
    }
}

/// Asserts that `service`'s `/metrics` text has the line `line`.
fn assert_metric(service: &Service, line: &str) {
    let text = service.metrics().render();
    assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
}

/// Pays every order at once, each in its own task, in the default tenant; the answers, in
/// order, every one a success.
async fn pay_at_once(
    service: &Service,
    orders: impl Iterator<Item = NewPayment>,
) -> Vec<idem_pay::Answer> {
    let tasks: Vec<_> = orders
        .map(|order| {
            let service = service.clone();
            tokio::spawn(async move { service.pay(&Tenant::default(), &order).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task").expect("paid"));
    }
    answers
}

/// 200 transfers a→b and b→a at once: all succeed; with row locks taken in account-id
/// order there is no deadlock to retry on PostgreSQL.
async fn opposite_transfers_never_deadlock(url: &str) {
    let service = service(url).await;
    open(&service, "a", 1_000_000).await;
    open(&service, "b", 1_000_000).await;
    let orders = (0..200).map(|i| {
        let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        pay(&format!("x-{i}"), from, to, 1 + i % 7)
    });
    for answer in pay_at_once(&service, orders).await {
        assert!(answer.status == 201 && !answer.replayed);
    }
    let report = service.db().ledger_check().await.expect("check");
    assert!(report.is_consistent(), "{report:?}");
    if url.starts_with("postgres") {
        // No deadlock, so nothing retried.
        assert_metric(&service, "idem_pay_db_retries_total 0");
    }
}

/// 30 copies of one order at once: one execution, 29 replays of the same bytes.
async fn concurrent_duplicates_execute_once(url: &str) {
    let service = service(url).await;
    open(&service, "a", 100).await;
    open(&service, "b", 0).await;
    let answers = pay_at_once(&service, (0..30).map(|_| pay("dup", "a", "b", 60))).await;
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    let b = service.account(&Tenant::default(), "b").await.expect("b");
    assert_eq!(&b.body[..], br#"{"account_id":"b","balance":60}"#);
}

/// 60 payments of 10 at once from a payer who has 300, to three payees: exactly 30 are
/// paid and 30 refused for funds (402), none fails otherwise, and the ledger holds —
/// whichever path each took (on PostgreSQL one statement, falling back to the
/// transaction when the payer's balance moved under it).
async fn a_drained_payer_pays_exactly_what_it_has(url: &str) {
    let service = service(url).await;
    open(&service, "payer", 300).await;
    for payee in ["p0", "p1", "p2"] {
        open(&service, payee, 0).await;
    }
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let service = service.clone();
            let order = pay(&format!("drain-{i}"), "payer", &format!("p{}", i % 3), 10);
            tokio::spawn(async move { service.pay(&Tenant::default(), &order).await })
        })
        .collect();
    let (mut paid, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(answer) if answer.status == 201 => paid += 1,
            Err(idem_pay::Error::InsufficientFunds { .. }) => refused += 1,
            other => panic!("neither paid nor refused for funds: {other:?}"),
        }
    }
    assert_eq!((paid, refused), (30, 30));
    let payer = service
        .account(&Tenant::default(), "payer")
        .await
        .expect("payer");
    assert_eq!(&payer.body[..], br#"{"account_id":"payer","balance":0}"#);
    let report = service.db().ledger_check().await.expect("check");
    assert!(report.is_consistent(), "{report:?}");
}

/// With replay memory on, a settled payment and refund are replayed with the database
/// closed; a request with other parameters is not answered from memory (it reaches the
/// closed database and fails), and a payment refused for funds is not remembered.
async fn replay_memory_serves_only_equal_requests(url: &str) {
    let db = Db::connect(url, 4).await.expect("connect and migrate");
    let service =
        Service::new(db.clone(), None, Arc::new(Metrics::isolated())).with_replay_memory(16);
    open(&service, "a", 100).await;
    open(&service, "b", 0).await;
    let first = service
        .pay(&Tenant::default(), &pay("m-1", "a", "b", 40))
        .await
        .expect("paid");
    assert!(!first.replayed);
    let refund = idem_pay::validate::NewRefund {
        refund_id: "r-1".into(),
        amount: 10,
    };
    let refunded = service
        .refund(&Tenant::default(), "m-1", &refund)
        .await
        .expect("refunded");
    let short = service
        .pay(&Tenant::default(), &pay("m-2", "a", "b", 1_000))
        .await;
    assert!(matches!(
        short,
        Err(idem_pay::Error::InsufficientFunds { .. })
    ));

    db.close().await;
    let again = service
        .pay(&Tenant::default(), &pay("m-1", "a", "b", 40))
        .await
        .expect("from memory");
    assert!(again.replayed && again.body == first.body && again.status == 201);
    let again = service
        .refund(&Tenant::default(), "m-1", &refund)
        .await
        .expect("from memory");
    assert!(again.replayed && again.body == refunded.body);
    assert_metric(&service, "idem_pay_memory_hits_total 2");
    // Other parameters, or an order that was refused, go to the (closed) database.
    assert!(service
        .pay(&Tenant::default(), &pay("m-1", "a", "b", 41))
        .await
        .is_err());
    assert!(service
        .pay(&Tenant::default(), &pay("m-2", "a", "b", 1_000))
        .await
        .is_err());
    let other = idem_pay::validate::NewRefund {
        refund_id: "r-1".into(),
        amount: 11,
    };
    assert!(service
        .refund(&Tenant::default(), "m-1", &other)
        .await
        .is_err());
    assert_metric(&service, "idem_pay_memory_hits_total 2");
}

/// Two tenants open the same account ids and pay the same order id with the same body:
/// two payments, each in its tenant; another tenant's account, payment or refund is not
/// found, exactly as one that does not exist; the ledger holds for both.
async fn tenants_keep_their_ids_apart(url: &str) {
    let service = service(url).await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    for t in [&acme, &globex] {
        for (id, balance) in [("alice", 100), ("bob", 0)] {
            let request = NewAccount {
                account_id: id.into(),
                balance,
            };
            let opened = service.open_account(t, &request).await.expect("open");
            assert!(opened.status == 201 && !opened.replayed, "{t}: {id}");
        }
    }
    let order = pay("order-1", "alice", "bob", 30);
    let first = service.pay(&acme, &order).await.expect("acme pays");
    let second = service.pay(&globex, &order).await.expect("globex pays");
    assert!(
        !first.replayed && !second.replayed,
        "two payments, not a replay"
    );
    assert_ne!(first.body, second.body, "each has its own payment id");
    let again = service.pay(&acme, &order).await.expect("acme again");
    assert!(again.replayed && again.body == first.body);
    for t in [&acme, &globex] {
        let bob = service.account(t, "bob").await.expect("bob");
        assert_eq!(
            &bob.body[..],
            br#"{"account_id":"bob","balance":30}"#,
            "{t}"
        );
    }

    // Only globex has `carol`: to acme she does not exist, whichever way it is reached.
    let carol = NewAccount {
        account_id: "carol".into(),
        balance: 5,
    };
    service.open_account(&globex, &carol).await.expect("carol");
    let not_found = |r: idem_pay::Result<idem_pay::Answer>| match r {
        Err(idem_pay::Error::AccountNotFound { account_id }) => account_id,
        other => panic!("not found expected, got {other:?}"),
    };
    assert_eq!(not_found(service.account(&acme, "carol").await), "carol");
    let to_carol = pay("order-2", "alice", "carol", 1);
    assert_eq!(not_found(service.pay(&acme, &to_carol).await), "carol");
    let only_globex = pay("order-3", "carol", "alice", 1);
    service
        .pay(&globex, &only_globex)
        .await
        .expect("globex pays carol's order");
    assert!(matches!(
        service.payment(&acme, "order-3").await,
        Err(idem_pay::Error::PaymentNotFound { .. })
    ));
    let refund = idem_pay::validate::NewRefund {
        refund_id: "r-1".into(),
        amount: 1,
    };
    assert!(matches!(
        service.refund(&acme, "order-3", &refund).await,
        Err(idem_pay::Error::PaymentNotFound { .. })
    ));
    let report = service.db().ledger_check().await.expect("check");
    assert!(report.is_consistent() && report.accounts == 5, "{report:?}");
}

/// Payments gathered into batches (each waits up to 50 ms for 16 calls) are decided as
/// sets: 48 fresh orders, 8 copies of one order and 8 orders a payer cannot afford, all at
/// once. Each fresh order is paid once, the copies replay it, the unaffordable ones are
/// refused (402) and leave their key free, no batch fails, and the ledger holds.
async fn batched_payments_are_decided_as_sets(url: &str) {
    let db = Db::connect(url, 8).await.expect("connect and migrate");
    let service = Service::new(db, None, Arc::new(Metrics::isolated())).with_batching(
        idem_sql::BatchOptions {
            items_max: 16,
            wait: std::time::Duration::from_millis(50),
            workers: 2,
            ..idem_sql::BatchOptions::default()
        },
    );
    for (account, balance) in [("rich", 1_000_000), ("poor", 5), ("m0", 0), ("m1", 0)] {
        open(&service, account, balance).await;
    }
    let fresh = (0..48).map(|i| pay(&format!("f-{i}"), "rich", &format!("m{}", i % 2), 100));
    let copies = (0..8).map(|_| pay("copy", "rich", "m0", 7));
    let short = (0..8).map(|i| pay(&format!("s-{i}"), "poor", "m1", 10));
    let tasks: Vec<_> = fresh
        .chain(copies)
        .chain(short)
        .map(|order| {
            let service = service.clone();
            tokio::spawn(async move { service.pay(&Tenant::default(), &order).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    let (paid, rest) = answers.split_at(48);
    let (copies, short) = rest.split_at(8);
    for answer in paid {
        let answer = answer.as_ref().expect("a fresh order is paid");
        assert!(answer.status == 201 && !answer.replayed);
    }
    let copies: Vec<_> = copies.iter().map(|a| a.as_ref().expect("copy")).collect();
    assert_eq!(copies.iter().filter(|a| !a.replayed).count(), 1);
    assert!(copies
        .iter()
        .all(|a| a.status == 201 && a.body == copies[0].body));
    for answer in short {
        assert!(
            matches!(answer, Err(idem_pay::Error::InsufficientFunds { .. })),
            "{answer:?}"
        );
    }
    let stats = service.batch_stats().expect("batching is on");
    assert!(stats.in_sets > 0 && stats.failed == 0, "{stats:?}");
    // A refused order's key stays free: funded, it pays.
    let paid_later = service
        .pay(&Tenant::default(), &pay("s-0", "rich", "m1", 10))
        .await
        .expect("a refused order's key is free");
    assert!(paid_later.status == 201 && !paid_later.replayed);
    let m0 = service.account(&Tenant::default(), "m0").await.expect("m0");
    assert_eq!(&m0.body[..], br#"{"account_id":"m0","balance":2407}"#);
    let report = service.db().ledger_check().await.expect("check");
    assert!(report.is_consistent(), "{report:?}");
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).expect("a valid tenant")
}

common::backend_tests!(sqlite, postgres, mysql => {
    opposite_transfers_never_deadlock: 4,
    concurrent_duplicates_execute_once: 4,
    a_drained_payer_pays_exactly_what_it_has: 4,
    replay_memory_serves_only_equal_requests: 2,
    tenants_keep_their_ids_apart: 2,
    batched_opposite_transfers_never_deadlock: 4,
    batched_concurrent_duplicates_execute_once: 4,
    batched_a_drained_payer_pays_exactly_what_it_has: 4,
    batched_tenants_keep_their_ids_apart: 2,
    batched_payments_are_decided_as_sets: 4,
});

/// Replays come from Redis without SQL (the pool is closed), and an entry stored for other
/// parameters is never used: SQL decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_serves_replays_without_sql_and_only_for_equal_parameters() {
    let Some(redis_url) = backend_url("IDEM_TEST_REDIS") else {
        return;
    };
    let fresh = common::fresh("sqlite").await.expect("sqlite");
    let db = Db::connect(fresh.url(), 4).await.expect("db");
    let metrics = Arc::new(Metrics::isolated());
    let prefix = unique_name("idem_pay_cache");
    let cache = ReplayCache::lazy(
        &RedisOptions::from_url(&redis_url)
            .expect("a Redis URL")
            .prefix(prefix.as_str()),
    )
    .expect("redis url");
    let service = Service::new(db.clone(), Some(cache.clone()), metrics);
    open(&service, "a", 100).await;
    open(&service, "b", 0).await;

    // An entry that answers another fingerprint under "o-2": never served for amount 5.
    let client = redis::Client::open(redis_url.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let scope = Scope::new("default|POST /v1/payments").expect("scope");
    let forged_key = cache.entry_key(&scope, &Key::new("o-2").expect("key"));
    redis::cmd("HSET")
        .arg(&forged_key)
        .arg("fp")
        .arg(vec![7u8; 32])
        .arg("exp")
        .arg(i64::MAX / 4)
        .arg("resp")
        .arg(StoredResponse::new(201, "forged").encode())
        .query_async::<()>(&mut conn)
        .await
        .expect("hset");
    let paid = service
        .pay(&Tenant::default(), &pay("o-2", "a", "b", 5))
        .await
        .expect("paid by SQL");
    assert!(!paid.replayed && &paid.body[..] != b"forged");

    let first = service
        .pay(&Tenant::default(), &pay("o-1", "a", "b", 10))
        .await
        .expect("paid");
    // The cache is written in the background; wait until it holds the answer.
    let key = cache.entry_key(&scope, &Key::new("o-1").expect("key"));
    for _ in 0..100 {
        let cached: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("exists");
        if cached {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    db.close().await;
    // A second node: no memory of its own, so the replay comes from Redis.
    let node = Service::new(db.clone(), Some(cache), Arc::new(Metrics::isolated()));
    let again = node
        .pay(&Tenant::default(), &pay("o-1", "a", "b", 10))
        .await
        .expect("replayed from Redis");
    assert!(again.replayed && again.body == first.body);
    assert_metric(&node, "idem_pay_cache_hits_total 1");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(&forged_key)
        .query_async(&mut conn)
        .await
        .expect("del");
    fresh.drop_database().await;
}
