//! Node clock skew: a short PostgreSQL run with two of three nodes' wall clocks hours off and
//! drifting (libfaketime) and every other fault on. idem decides with the store's clock, so
//! no order may be paid twice. Skips when libfaketime is not installed, unless
//! `IDEM_REQUIRE_BACKENDS=1` (CI must have Debian's `faketime` package).

use std::process::Command;

mod chaos_support;

#[test]
fn skewed_nodes_on_postgres_hold_under_every_fault() {
    let Some(url) = idem_test_support::backend_url("IDEM_TEST_POSTGRES") else {
        return;
    };
    if idem_chaos::skew::find_libfaketime(None).is_none() {
        let _: Option<()> = idem_test_support::skip(&format!(
            "{}, so nodes cannot run skewed",
            idem_chaos::skew::PACKAGE_HINT
        ));
        return;
    }
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
        "--skew-nodes",
        "2",
        "--kill-every",
        "4s",
        "--cut-db-every",
        "3s",
        "--seed",
        "14",
    ]);
    chaos_support::assert_held(
        code,
        &report,
        &["drop_response", "duplicate", "delay", "cut_db"],
    );
    let skew = report["skew"]
        .as_array()
        .expect("the report lists skewed nodes");
    assert_eq!(skew.len(), 2, "two nodes ran skewed: {skew:?}");
    assert_eq!(skew[0]["node"], 0);
    assert_eq!(skew[0]["faketime"], "-10800 x1.001");
    assert_eq!(skew[1]["node"], 1);
    assert_eq!(skew[1]["faketime"], "+18000 x0.999");
    let (kills, _) = chaos_support::fault(&report, "kill");
    assert!(kills >= 2, "nodes were killed and restarted: {kills}");
}

#[test]
fn asking_for_skew_without_libfaketime_refuses_and_names_the_package() {
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args([
            "chaos",
            "--skew-nodes",
            "1",
            "--libfaketime",
            "/nonexistent/libfaketime.so.1",
            "--orders",
            "10",
        ])
        .output()
        .expect("idem chaos starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("apt-get install faketime"),
        "the message names the package: {stderr}"
    );
}
