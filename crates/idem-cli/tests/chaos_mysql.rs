//! A short chaos run on MySQL/MariaDB: three nodes, every fault kind on, no violation.

mod chaos_support;

#[test]
fn three_nodes_on_mysql_hold_under_every_fault() {
    chaos_support::three_nodes_hold("IDEM_TEST_MYSQL", "20s", "7");
}
