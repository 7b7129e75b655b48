//! `idem bench` for a few seconds against an `idem serve` it spawns on a fresh SQLite file:
//! the JSON report counts requests of every kind and no error, so the benchmark cannot rot
//! while it stays out of CI's test run.

use std::process::Command;

#[test]
fn bench_against_spawned_sqlite_server_reports_requests_and_no_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args([
            "bench",
            "--spawn",
            "--database",
            "sqlite://bench-smoke.db",
            "--fresh-database",
        ])
        .args(["--clients", "4", "--duration", "3s", "--accounts", "20"])
        .args([
            "--mix",
            "fresh=60,replay=30,conflict=10",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("idem bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the report is JSON ({e}); stderr:\n{stderr}"));
    assert!(
        output.status.success(),
        "idem bench failed: {report:#}\nstderr:\n{stderr}"
    );
    assert_eq!(
        report["total"]["errors"], 0,
        "no unexpected answer: {report:#}"
    );
    for kind in ["fresh", "replay", "conflict"] {
        let requests = report["kinds"][kind]["requests"].as_u64().unwrap_or(0);
        assert!(
            requests > 0,
            "some {kind} requests were answered: {report:#}"
        );
        assert!(
            report["kinds"][kind]["rps"].as_f64().unwrap_or(0.0) > 0.0,
            "{kind} has a rate"
        );
    }
    assert!(
        report["total"]["p99_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "latency was recorded"
    );
}
