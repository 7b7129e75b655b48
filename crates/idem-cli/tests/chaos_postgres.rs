//! A short chaos run on PostgreSQL: three nodes, about 60 s, every fault kind on. No order may be paid
//! twice, and every fault kind must actually hit requests for the run to mean anything.

mod chaos_support;

#[test]
fn three_nodes_on_postgres_hold_under_every_fault() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    let (code, report) = chaos_support::chaos(&[
        "--database",
        &url,
        "--nodes",
        "3",
        "--clients",
        "12",
        "--duration",
        "60s",
        "--all-faults",
        "--kill-every",
        "5s",
        "--cut-db-every",
        "3s",
        "--seed",
        "6",
    ]);
    chaos_support::assert_held(
        code,
        &report,
        &["drop_response", "duplicate", "delay", "cut_db"],
    );
    let (kills, _) = chaos_support::fault(&report, "kill");
    assert!(kills >= 2, "nodes were killed and restarted: {kills}");
}
