//! `idem chaos --target nats|amqp`: payment nodes consuming from a broker of the run's own
//! stream or queue, publishers re-publishing on timeouts and duplicating, nodes killed
//! between effect and ack, broker and database connections cut. Each broker's run holds;
//! the guard run, nodes without idempotency, must be caught paying twice.

mod chaos_support;

/// A short broker run of three nodes on the PostgreSQL server of `IDEM_TEST_POSTGRES`
/// through the broker of `broker_env`, every fault on, with `extra` arguments: its exit
/// code and report, or `None` when either server is not named.
fn broker_chaos(
    target: &str,
    broker_env: &str,
    (duration, seed): (&str, &str),
    extra: &[&str],
) -> Option<(i32, serde_json::Value)> {
    let database = idem_test_support::backend_url("IDEM_TEST_POSTGRES")?;
    let broker = idem_test_support::backend_url(broker_env)?;
    let mut args = vec!["--target", target, "--broker", &broker];
    args.extend(chaos_support::three_nodes(&database, duration, "3s", seed));
    args.extend_from_slice(&["--cut-broker-every", "2s", "--settle-delay", "50ms"]);
    args.extend_from_slice(extra);
    Some(chaos_support::chaos(&args))
}

/// Asserts a broker run held with every fault of the broker targets hitting.
fn assert_broker_held(code: i32, report: &serde_json::Value) {
    chaos_support::assert_held(code, report, &["duplicate", "cut_db", "cut_broker"]);
    let pretty = serde_json::to_string_pretty(report).unwrap_or_default();
    let (kills, _) = chaos_support::fault(report, "kill");
    assert!(kills >= 1, "a node was killed and restarted:\n{pretty}");
    let broker = &report["broker"];
    let count = |name: &str| broker[name].as_u64().unwrap_or(0);
    assert!(
        count("replays") > 0 && count("replies") >= report["orders"].as_u64().unwrap_or(0),
        "every order was answered and some replies were replays:\n{pretty}"
    );
    assert!(
        count("redelivered_after_effect") > 0,
        "a kill or cut landed between an effect and its ack:\n{pretty}"
    );
}

#[test]
fn payments_from_nats_hold_under_every_fault() {
    let Some((code, report)) = broker_chaos("nats", "IDEM_TEST_NATS", ("12s", "21"), &[]) else {
        return;
    };
    assert_broker_held(code, &report);
}

#[test]
fn payments_from_rabbitmq_hold_under_every_fault() {
    let Some((code, report)) = broker_chaos("amqp", "IDEM_TEST_AMQP", ("12s", "22"), &[]) else {
        return;
    };
    assert_broker_held(code, &report);
}

#[test]
fn payments_from_rabbitmq_without_idempotency_are_caught_paying_twice() {
    let extra = ["--duplicate-rate", "0.5", "--unsafe-disable-idempotency"];
    let Some((code, report)) = broker_chaos("amqp", "IDEM_TEST_AMQP", ("8s", "23"), &extra) else {
        return;
    };
    chaos_support::assert_caught(code, &report, "double_payment");
}
