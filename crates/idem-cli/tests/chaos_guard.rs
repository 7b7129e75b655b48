//! The guard: with the service's idempotency switched off, the same chaos must make the
//! checker find double payments and exit 1. A checker that cannot fail proves nothing.

mod chaos_support;

#[test]
fn without_idempotency_the_checker_finds_double_payments() {
    // SQLite needs no server, so this guard runs everywhere.
    let (code, report) = chaos_support::chaos(&[
        "--database",
        "sqlite",
        "--clients",
        "8",
        "--duration",
        "8s",
        "--all-faults",
        "--drop-response-rate",
        "0.2",
        "--seed",
        "3",
        "--unsafe-disable-idempotency",
    ]);
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    assert_eq!(code, 1, "a run with violations exits 1:\n{pretty}");
    let groups = report["violations"].as_array().expect("violation groups");
    let doubles = groups
        .iter()
        .find(|g| g["kind"] == "double_payment")
        .unwrap_or_else(|| panic!("the report names double payments:\n{pretty}"));
    assert!(doubles["count"].as_u64().unwrap_or(0) > 0);
    assert!(doubles["examples"][0]
        .as_str()
        .is_some_and(|e| e.contains("paid") && e.contains("times")));
}
