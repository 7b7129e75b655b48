//! The database server itself restarted during a run: `idem chaos --own-database-server`
//! starts a PostgreSQL cluster of its own (never the shared server), points three nodes at
//! it, restarts it every few seconds under every other fault, and removes it at the end.
//! Every order must end with a final answer, none lost or paid twice. Skips without the
//! server's programs, unless `IDEM_REQUIRE_BACKENDS=1`.

mod chaos_support;

#[test]
fn restarts_of_the_runs_own_postgres_server_lose_no_order() {
    use idem_chaos::server::{PrivateServer, ServerKind};
    if let Some(why) = PrivateServer::missing(ServerKind::Postgres) {
        let _: Option<()> = idem_test_support::skip(&why);
        return;
    }
    let (code, report) = chaos_support::chaos(&[
        "--own-database-server",
        "postgres",
        "--restart-db-every",
        "4s",
        "--nodes",
        "3",
        "--clients",
        "12",
        "--duration",
        "20s",
        "--all-faults",
        "--kill-every",
        "8s",
        "--seed",
        "22",
    ]);
    chaos_support::assert_held(code, &report, &["drop_response", "duplicate", "restart_db"]);
    let (restarts, _) = chaos_support::fault(&report, "restart_db");
    assert!(
        restarts >= 2,
        "the server was restarted during the run: {restarts}"
    );
}
