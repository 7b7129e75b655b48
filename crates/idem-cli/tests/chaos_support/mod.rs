//! Runs `idem chaos --json` as a process and reads its verdict.
#![allow(dead_code)] // each test file uses a part of it

use std::process::Command;

/// The exit code and the parsed JSON report of `idem chaos --json <args>`.
pub(crate) fn chaos(args: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .arg("chaos")
        .arg("--json")
        .args(args)
        .output()
        .expect("idem chaos starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{stderr}"));
    let code = output
        .status
        .code()
        .expect("idem chaos exits, not killed by a signal");
    (code, report)
}

/// How often a fault kind was injected and how often it hit a request.
pub(crate) fn fault(report: &serde_json::Value, kind: &str) -> (u64, u64) {
    let k = &report["faults"][kind];
    (
        k["injected"].as_u64().expect("injected count"),
        k["hit"].as_u64().expect("hit count"),
    )
}

/// Asserts a run held: exit 0, no violation, orders paid, and every fault kind in `kinds`
/// injected and hitting requests.
pub(crate) fn assert_held(code: i32, report: &serde_json::Value, kinds: &[&str]) {
    let pretty = serde_json::to_string_pretty(report).unwrap_or_default();
    assert_eq!(report["violations_total"], 0, "violations found:\n{pretty}");
    assert_eq!(code, 0, "exit code 0 for a run that held:\n{pretty}");
    assert!(
        report["final_answers"]["201"].as_u64().unwrap_or(0) > 50,
        "enough orders were paid to mean something:\n{pretty}"
    );
    for kind in kinds {
        let (injected, hit) = fault(report, kind);
        assert!(
            injected > 0 && hit > 0,
            "fault {kind} injected {injected}, hit {hit}:\n{pretty}"
        );
    }
}

/// The fault kinds every run under all faults must see injected and hitting requests.
pub(crate) const EVERY_FAULT: &[&str] = &["drop_response", "duplicate", "delay", "cut_db"];

/// The arguments of a run of three nodes on the server `url` for `duration`, 12 clients,
/// every fault kind on, a node killed every `kill_every` and the database cut every 3 s.
pub(crate) fn three_nodes<'a>(
    url: &'a str,
    duration: &'a str,
    kill_every: &'a str,
    seed: &'a str,
) -> Vec<&'a str> {
    vec![
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
        kill_every,
        "--cut-db-every",
        "3s",
        "--seed",
        seed,
    ]
}

/// Runs three nodes on the server whose URL is in `env` for `duration`, every fault kind
/// on, a node killed every 5 s and the database cut every 3 s, and asserts the run held.
/// Returns its report, or `None` when `env` names no server.
pub(crate) fn three_nodes_hold(env: &str, duration: &str, seed: &str) -> Option<serde_json::Value> {
    let url = idem_test_support::backend_url(env)?;
    let (code, report) = chaos(&three_nodes(&url, duration, "5s", seed));
    assert_held(code, &report, EVERY_FAULT);
    Some(report)
}

/// Asserts a run that should fail did: exit 1 and at least one violation of `kind`;
/// returns that kind's group of the report.
pub(crate) fn assert_caught(
    code: i32,
    report: &serde_json::Value,
    kind: &str,
) -> serde_json::Value {
    let pretty = serde_json::to_string_pretty(report).unwrap_or_default();
    assert_eq!(code, 1, "a run with violations exits 1:\n{pretty}");
    let groups = report["violations"].as_array().expect("violation groups");
    let group = groups
        .iter()
        .find(|g| g["kind"] == kind)
        .unwrap_or_else(|| panic!("the report names {kind} violations:\n{pretty}"));
    assert!(group["count"].as_u64().unwrap_or(0) > 0);
    group.clone()
}
