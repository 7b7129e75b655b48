//! A short chaos run on PostgreSQL: three nodes, about 60 s, every fault kind on. No order may be paid
//! twice, and every fault kind must actually hit requests for the run to mean anything.

mod chaos_support;

#[test]
fn three_nodes_on_postgres_hold_under_every_fault() {
    let Some(report) = chaos_support::three_nodes_hold("IDEM_TEST_POSTGRES", "60s", "6") else {
        return;
    };
    let (kills, _) = chaos_support::fault(&report, "kill");
    assert!(kills >= 2, "nodes were killed and restarted: {kills}");
}
