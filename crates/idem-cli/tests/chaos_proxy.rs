//! `idem chaos --target proxy`: three `idem proxy` nodes in front of the run's own upstream,
//! every fault kind on. A normal run holds (a key runs again only after a kill or a lease end
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

#[test]
fn proxies_on_postgres_hold_under_every_fault() {
    let Some((code, report)) = proxy_chaos("20s", "11", &[]) else {
        return;
    };
    chaos_support::assert_held(code, &report, EVERY_FAULT);
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
