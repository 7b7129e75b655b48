//! `idem chaos --target proxy`: three `idem proxy` nodes in front of the run's own upstream,
//! every fault kind on, the network between the proxies and their store included. A normal run holds (a key runs again only after a kill or a lease end
//! of its holder); the guard run, proxies that guard nothing the clients send, must fail
//! with unexplained second executions; a fencing-aware upstream sees no second execution.

mod chaos_support;

use chaos_support::EVERY_FAULT;

/// A short proxy run, with `extra` arguments, on the PostgreSQL server of
/// `IDEM_TEST_POSTGRES`: its exit code and report, or `None` when none is named.
fn proxy_chaos(duration: &str, seed: &str, extra: &[&str]) -> Option<(i32, serde_json::Value)> {
    let url = idem_test_support::backend_url("IDEM_TEST_POSTGRES")?;
    let mut args = vec!["--target", "proxy", "--lease-ms", "1500"];
    args.extend(chaos_support::three_nodes(&url, duration, "4s", seed));
    args.extend_from_slice(extra);
    Some(chaos_support::chaos(&args))
}

/// Every fault, the network's included: each proxy reaches PostgreSQL through a relay of
/// its own, one proxy partitioned about every 4 s.
#[test]
fn proxies_on_postgres_hold_under_every_fault() {
    let Some((code, report)) = proxy_chaos("20s", "11", &["--partition-every", "4s"]) else {
        return;
    };
    let mut kinds = EVERY_FAULT.to_vec();
    kinds.push("partition");
    chaos_support::assert_held(code, &report, &kinds);
    let proxy = &report["proxy"];
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    assert!(
        proxy["executions"].as_u64().unwrap_or(0) > 50,
        "the upstream executed:\n{pretty}"
    );
    assert!(
        proxy["replays"].as_u64().unwrap_or(0) > 0,
        "replays were checked:\n{pretty}"
    );
    let (kills, _) = chaos_support::fault(&report, "kill");
    assert!(kills >= 2, "proxies were killed and restarted: {kills}");
}

#[test]
fn proxies_that_guard_nothing_let_keys_run_twice_and_the_checker_says_so() {
    let extra = [
        "--drop-response-rate",
        "0.2",
        "--unsafe-disable-idempotency",
    ];
    let Some((code, report)) = proxy_chaos("8s", "12", &extra) else {
        return;
    };
    chaos_support::assert_caught(code, &report, "unexplained_execution");
}

#[test]
fn proxies_on_redis_with_a_fencing_upstream_run_each_key_once() {
    let Some(redis) = idem_test_support::backend_url("IDEM_TEST_REDIS") else {
        return;
    };
    let extra = [
        "--proxy-store",
        "redis",
        "--redis",
        &redis,
        "--upstream-fencing",
    ];
    let Some((code, report)) = proxy_chaos("20s", "13", &extra) else {
        return;
    };
    chaos_support::assert_held(code, &report, EVERY_FAULT);
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    let by_count = report["proxy"]["keys_by_executions"]
        .as_object()
        .expect("keys by executions");
    assert!(
        by_count.keys().all(|n| n == "0" || n == "1"),
        "no key ran twice:\n{pretty}"
    );
}

/// The proxies on the tiered store, each reaching PostgreSQL and Redis through relays of
/// its own: delay, jitter and loss on every chunk, and one proxy at a time partitioned from
/// both, its connections resumed or left dead at the heal. A partitioned holder may lose its
/// lease to another proxy; the fencing-aware upstream must still run each key once.
#[test]
fn proxies_partitioned_from_postgres_and_redis_run_each_key_once() {
    let Some(redis) = idem_test_support::backend_url("IDEM_TEST_REDIS") else {
        return;
    };
    let extra = [
        "--proxy-store",
        "tiered",
        "--redis",
        &redis,
        "--upstream-fencing",
        "--partition-every",
        "3s",
        "--partition-for",
        "2s",
        "--net-loss",
        "0.002",
    ];
    let Some((code, report)) = proxy_chaos("20s", "14", &extra) else {
        return;
    };
    let mut kinds = EVERY_FAULT.to_vec();
    kinds.extend(["partition", "left_dead"]);
    chaos_support::assert_held(code, &report, &kinds);
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    assert_eq!(
        report["network"]["partition_every_s"], 3.0,
        "the report names the network:\n{pretty}"
    );
    assert!(
        report.get("network_skipped").is_none(),
        "every connection of the store was relayed:\n{pretty}"
    );
    let by_count = report["proxy"]["keys_by_executions"]
        .as_object()
        .expect("keys by executions");
    assert!(
        by_count.keys().all(|n| n == "0" || n == "1"),
        "no key ran twice:\n{pretty}"
    );
}
