//! `idem bench --broker` for a moment through each broker against nodes it spawns on a
//! fresh PostgreSQL database, with the baseline without idempotency: every reply is a
//! fresh 201 and the report carries both rates and their ratio, so the broker benchmark
//! cannot rot. No figure is judged here.

use std::process::Command;

/// A short broker bench through the broker of `broker_env` on the PostgreSQL server of
/// `IDEM_TEST_POSTGRES`, with `extra` arguments; `None` when either server is not named.
fn broker_bench(broker_env: &str, extra: &[&str]) -> Option<serde_json::Value> {
    let database = idem_test_support::backend_url("IDEM_TEST_POSTGRES")?;
    let broker = idem_test_support::backend_url(broker_env)?;
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args(["bench", "--broker", &broker, "--baseline-unsafe", "--spawn"])
        .args(["--database", &database, "--fresh-database"])
        .args(["--clients", "4", "--duration", "2s", "--accounts", "20"])
        .args(["--json", "--quiet"])
        .args(extra)
        .output()
        .expect("idem bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the report is JSON ({e}); stderr:\n{stderr}"));
    assert!(
        output.status.success(),
        "idem bench failed: {report:#}\nstderr:\n{stderr}"
    );
    Some(report)
}

/// Asserts both loads were answered, every reply a fresh 201, and the ratio is there.
fn assert_both_rates(report: &serde_json::Value) {
    for load in ["idem", "baseline_unsafe"] {
        let figures = &report[load]["figures"];
        assert!(
            figures["requests"].as_u64().unwrap_or(0) > 0,
            "{load}: some orders were answered: {report:#}"
        );
        assert_eq!(
            figures["errors"], 0,
            "{load}: every reply was a fresh 201: {report:#}"
        );
        assert!(
            figures["rps"].as_f64().unwrap_or(0.0) > 0.0,
            "{load} has a rate: {report:#}"
        );
    }
    assert!(
        report["idem_vs_unsafe"].as_f64().unwrap_or(0.0) > 0.0,
        "the ratio is reported: {report:#}"
    );
}

#[test]
fn broker_bench_through_nats_answers_every_order_with_a_201() {
    let Some(report) = broker_bench("IDEM_TEST_NATS", &[]) else {
        return;
    };
    assert_eq!(report["broker"], "nats");
    assert_eq!(report["baseline_first"], true);
    assert_both_rates(&report);
}

#[test]
fn broker_bench_through_rabbitmq_answers_every_order_with_a_201_baseline_last() {
    let Some(report) = broker_bench("IDEM_TEST_AMQP", &["--baseline-last"]) else {
        return;
    };
    assert_eq!(report["broker"], "amqp");
    assert_eq!(report["baseline_first"], false);
    assert_both_rates(&report);
}
