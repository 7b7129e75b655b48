//! Choosing real servers for tests: from environment variables, skipped with a printed
//! reason when unset, and a failure instead of a skip when `IDEM_REQUIRE_BACKENDS=1`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable that turns "skipped: no server" into a test failure (CI sets it).
pub const REQUIRE_BACKENDS: &str = "IDEM_REQUIRE_BACKENDS";

/// The URL of a test server from the variable `var` (such as `IDEM_TEST_POSTGRES`).
///
/// Unset or empty: prints why the test is skipped (straight to stderr, past the test
/// harness's capture) and returns `None`, unless `IDEM_REQUIRE_BACKENDS=1`, which panics.
pub fn backend_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_BACKENDS).is_ok_and(|v| v == "1") {
                panic!(
                    "{var} is not set, and {REQUIRE_BACKENDS}=1 forbids skipping this backend test"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {var} is not set, so there is no server for this test (see README: backend tests)"
            );
            None
        }
    }
}

/// A name no other test or run uses: `prefix` + process id + a counter + clock nanos, in
/// lowercase ASCII letters, digits and `_`, for a test's own database, schema or key prefix.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}
