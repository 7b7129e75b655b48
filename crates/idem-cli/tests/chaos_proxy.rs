//! `idem chaos --target proxy`: three `idem proxy` nodes in front of the run's own upstream,
//! every fault kind on. A normal run holds (a key runs again only after a kill or a lease end
//! of its holder); the guard run, proxies that guard nothing the clients send, must fail
//! with unexplained second executions; a fencing-aware upstream sees no second execution.

mod chaos_support;

/// The arguments of a short proxy run on the PostgreSQL server `url`.
fn proxy_run<'a>(url: &'a str, duration: &'a str, seed: &'a str) -> Vec<&'a str> {
    vec![
        "--target",
        "proxy",
        "--database",
        url,
        "--nodes",
        "3",
        "--clients",
        "12",
        "--duration",
        duration,
        "--all-faults",
        "--kill-every",
        "4s",
        "--cut-db-every",
        "3s",
        "--lease-ms",
        "1500",
        "--seed",
        seed,
    ]
}

#[test]
fn proxies_on_postgres_hold_under_every_fault() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    let (code, report) = chaos_support::chaos(&proxy_run(&url, "20s", "11"));
    chaos_support::assert_held(
        code,
        &report,
        &["drop_response", "duplicate", "delay", "cut_db"],
    );
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
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    let mut args = proxy_run(&url, "8s", "12");
    args.extend([
        "--drop-response-rate",
        "0.2",
        "--unsafe-disable-idempotency",
    ]);
    let (code, report) = chaos_support::chaos(&args);
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    assert_eq!(code, 1, "a run with violations exits 1:\n{pretty}");
    let groups = report["violations"].as_array().expect("violation groups");
    let unexplained = groups
        .iter()
        .find(|g| g["kind"] == "unexplained_execution")
        .unwrap_or_else(|| panic!("the report names unexplained executions:\n{pretty}"));
    assert!(unexplained["count"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn proxies_on_redis_with_a_fencing_upstream_run_each_key_once() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    let Some(redis) = idem_test_support::backend_url("IDEM_TEST_REDIS") else {
        return;
    };
    let mut args = proxy_run(&url, "20s", "13");
    args.extend([
        "--proxy-store",
        "redis",
        "--redis",
        &redis,
        "--upstream-fencing",
    ]);
    let (code, report) = chaos_support::chaos(&args);
    chaos_support::assert_held(
        code,
        &report,
        &["drop_response", "duplicate", "delay", "cut_db"],
    );
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    let by_count = report["proxy"]["keys_by_executions"]
        .as_object()
        .expect("keys by executions");
    assert!(
        by_count.keys().all(|n| n == "0" || n == "1"),
        "no key ran twice:\n{pretty}"
    );
}
