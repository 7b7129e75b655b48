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
    let doubles = chaos_support::assert_caught(code, &report, "double_payment");
    assert!(doubles["examples"][0]
        .as_str()
        .is_some_and(|e| e.contains("paid") && e.contains("times")));
}
