//! Hostile JSON against `idem serve` (on SQLite), the real `idem` binary: bodies nested
//! thousands deep, numbers past `i64` or past any float, invalid UTF-8, a byte order mark,
//! a `Content-Type` that is not JSON. Every case is refused and nothing changes.

#[path = "common/serve_harness.rs"]
mod harness;
#[path = "common/hostile_harness.rs"]
mod hostile;
#[path = "common/proxy_harness.rs"]
mod proxy_harness;

use hostile::{Kind, Subject};

/// `idem serve` refuses JSON it cannot take — nested thousands deep, numbers past `i64` or
/// past any float, invalid UTF-8, a byte order mark, a `Content-Type` that is not JSON —
/// with a problem+json 4xx and a stable code; it does not panic, and nothing changes. A body
/// with no `Content-Type` at all is still read as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_hostile_json_and_changes_nothing() {
    let subject = Subject::start(Kind::Serve, &[]).await;
    let cluster = subject.cluster.as_ref().expect("serve has a cluster");
    let node = cluster.endpoint(0);
    let payment = |order_id: &str, amount: &str| {
        format!(r#"{{"order_id":"{order_id}","payer":"payer","payee":"payee","amount":{amount}}}"#)
    };
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(payment("j-bom", "1").as_bytes());
    // JSON the parser cannot take: each is 400 `invalid_request`.
    let unreadable: Vec<(&str, Vec<u8>)> = vec![
        ("an array 30 000 deep", deep(30_000).into_bytes()),
        (
            "a member nested 10 000 deep",
            format!(
                r#"{{"order_id":"j-deep","payer":"payer","payee":"payee","amount":1,"x":{}}}"#,
                deep(10_000)
            )
            .into_bytes(),
        ),
        (
            "objects 5 000 deep",
            format!("{}1{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000)).into_bytes(),
        ),
        (
            "an amount one past i64",
            payment("j-i64", "9223372036854775808").into_bytes(),
        ),
        (
            "an amount far past u64",
            payment("j-u64", "184467440737095516160000").into_bytes(),
        ),
        (
            "an amount one below i64",
            payment("j-neg", "-9223372036854775809").into_bytes(),
        ),
        (
            "an amount past any float",
            payment("j-1e400", "1e400").into_bytes(),
        ),
        ("invalid UTF-8 in a string", {
            let mut body = payment("j-utf8", "1").into_bytes();
            body.splice(15..15, [0xff, 0xfe]);
            body
        }),
        ("invalid UTF-8 outside strings", b"{\xc3\x28: 1}".to_vec()),
        ("a byte order mark", with_bom),
    ];
    // (what, content type, body, status, code)
    let others: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "bad JSON with no Content-Type",
            "",
            b"{\"order_id\":".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "text/plain",
            "text/plain",
            payment("j-text", "1").into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "a form",
            "application/x-www-form-urlencoded",
            b"order_id=j-form&amount=1".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON's name misspelt",
            "application/jsonx",
            payment("j-jsonx", "1").into_bytes(),
            415,
            "unsupported_media_type",
        ),
    ];
    let cases = unreadable
        .into_iter()
        .map(|(what, body)| (what, "application/json", body, 400, "invalid_request"))
        .chain(others);
    for (what, content_type, body, status, code) in cases {
        let reply = node
            .send(
                reqwest::Method::POST,
                "/v1/payments",
                Some((content_type, body)),
                &[],
            )
            .await;
        let problem = reply.assert_problem(status, code);
        println!("{what}: {status} {code}: {}", problem["detail"]);
    }
    // An account opened with a byte order mark is not opened either.
    let mut account = b"\xEF\xBB\xBF".to_vec();
    account.extend_from_slice(br#"{"account_id":"bom","balance":5}"#);
    node.send(
        reqwest::Method::POST,
        "/v1/accounts",
        Some(("application/json", account)),
        &[],
    )
    .await
    .assert_problem(400, "invalid_request");
    cluster
        .get(0, "/v1/accounts/bom")
        .await
        .assert_problem(404, "account_not_found");
    for order_id in [
        "j-deep", "j-i64", "j-u64", "j-neg", "j-1e400", "j-utf8", "j-bom", "j-text", "j-form",
        "j-jsonx",
    ] {
        cluster
            .get(0, &format!("/v1/payments/{order_id}"))
            .await
            .assert_problem(404, "payment_not_found");
    }
    assert_eq!(cluster.balance("payer").await, 100);
    assert_eq!(cluster.balance("payee").await, 0);

    // No `Content-Type` and good JSON: read as JSON, as before.
    let reply = node
        .send(
            reqwest::Method::POST,
            "/v1/payments",
            Some(("", payment("j-bare", "3").into_bytes())),
            &[],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(cluster.balance("payer").await, 97);
    cluster.assert_books_balance().await;
    subject.assert_serves_others().await;
}
