//! Faults in the network between the nodes and PostgreSQL: a short run with every fault on,
//! each node behind a fault relay of its own that adds delay, jitter and loss, and one node
//! at a time partitioned — packets silently dropped both ways, nothing closed — while it
//! holds payment transactions, then healed, its connections resumed or left dead, half-open.
//! The rows such a transaction locks stay locked until the server ends it; the run must
//! still end with every order settled and no violation.

mod chaos_support;

#[test]
fn partitions_delay_and_loss_between_nodes_and_postgres_hold() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    let mut args = chaos_support::three_nodes(&url, "24s", "8s", "21");
    args.extend([
        "--partition-every",
        "3s",
        "--partition-for",
        "2s",
        "--net-delay",
        "1ms",
        "--net-jitter",
        "2ms",
        "--net-loss",
        "0.002",
    ]);
    let (code, report) = chaos_support::chaos(&args);
    chaos_support::assert_held(
        code,
        &report,
        &[
            "drop_response",
            "duplicate",
            "delay",
            "cut_db",
            "partition",
            "left_dead",
        ],
    );
    let network = &report["network"];
    assert_eq!(
        network["delay_ms"], 1.0,
        "the report names the network: {network}"
    );
    assert_eq!(network["partition_every_s"], 3.0);
}
