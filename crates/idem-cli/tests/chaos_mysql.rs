//! A short chaos run on MySQL/MariaDB: three nodes, every fault kind on, no violation.

mod chaos_support;

#[test]
fn three_nodes_on_mysql_hold_under_every_fault() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_MYSQL") else {
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
        "20s",
        "--all-faults",
        "--kill-every",
        "5s",
        "--cut-db-every",
        "3s",
        "--seed",
        "7",
    ]);
    chaos_support::assert_held(
        code,
        &report,
        &["drop_response", "duplicate", "delay", "cut_db"],
    );
}
