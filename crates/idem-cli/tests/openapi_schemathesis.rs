//! `/openapi.json` against the server that serves it. The served document is first checked
//! against the OpenAPI 3.0 schema (`openapi-spec-validator`, installed with schemathesis);
//! then schemathesis (PyPI; `.ci/run` installs it) reads it from a running `idem serve` on a
//! temp SQLite file, with API keys on, and runs every check it has over every phase, the
//! stateful one included (it chains calls along the document's links). Any finding fails
//! the test.
//!
//! Without the `schemathesis` command the test is skipped with a printed reason; with
//! `IDEM_REQUIRE_BACKENDS=1` (CI) or `IDEM_REQUIRE_SCHEMATHESIS=1` it fails instead.
//! `IDEM_SCHEMATHESIS_EXAMPLES` and `IDEM_SCHEMATHESIS_SECONDS` make a longer run.

#[path = "common/serve_harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::{idem, Node};
use idem_test_support::{skip, unique_name};

/// The command, `schemathesis` unless `IDEM_SCHEMATHESIS` names another.
fn schemathesis() -> String {
    std::env::var("IDEM_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned())
}

/// An environment variable as a number, or `default`.
fn setting(var: &str, default: u32) -> u32 {
    match std::env::var(var) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{var}={value} is not a number")),
        Err(_) => default,
    }
}

/// The installed schemathesis's version line, or `None` (skipped, or a failure when it must
/// run).
fn installed() -> Option<String> {
    let found = Command::new(schemathesis())
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success());
    match found {
        Some(out) => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        None if std::env::var("IDEM_REQUIRE_SCHEMATHESIS").is_ok_and(|v| v == "1") => {
            panic!(
                "`{} --version` failed, and IDEM_REQUIRE_SCHEMATHESIS=1",
                schemathesis()
            )
        }
        None => skip(&format!(
            "`{} --version` failed: install it with `pip install schemathesis` (see .ci/run)",
            schemathesis()
        )),
    }
}

/// A new API key of `tenant` in `database`, as `idem keys create` prints it.
fn create_key(database: &str, tenant: &str) -> String {
    let out = idem()
        .args(["keys", "create", "--tenant", tenant, "--database", database])
        .stderr(Stdio::piped())
        .output()
        .expect("run idem keys create");
    assert!(
        out.status.success(),
        "idem keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The body of `GET url`.
fn fetch(url: &str) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::get(url).await.expect("GET");
        assert_eq!(response.status(), 200, "GET {url}");
        response.bytes().await.expect("the body").to_vec()
    })
}

/// A file of `tests/schemathesis/`: the settings and hooks of the run.
fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemathesis")
        .join(file)
}

#[test]
fn schemathesis_finds_nothing_against_idem_serve() {
    let Some(version) = installed() else { return };
    let dir = std::env::temp_dir().join(unique_name("idem_schemathesis"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let database = format!("sqlite://{}/idem.db?mode=rwc", dir.display());
    let key = create_key(&database, "schemathesis");
    let node = Node::start(&database, &["--auth", "api-keys"], None);

    let document = dir.join("openapi.json");
    std::fs::write(&document, fetch(&format!("{}/openapi.json", node.base))).expect("write");
    let validated = Command::new("openapi-spec-validator")
        .args(["--schema", "3.0"])
        .arg(&document)
        .output()
        .expect("run openapi-spec-validator (installed with schemathesis)");
    assert!(
        validated.status.success(),
        "/openapi.json is not valid OpenAPI 3.0: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let examples = setting("IDEM_SCHEMATHESIS_EXAMPLES", 20);
    let seconds = setting("IDEM_SCHEMATHESIS_SECONDS", 45);
    let config = support("schemathesis.toml");
    let out = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", node.base))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--max-time", &seconds.to_string()])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.join("report"))
        .env("SCHEMATHESIS_HOOKS", support("hooks.py"))
        // No colours and no interactive display in a captured run.
        .env("NO_COLOR", "1")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    drop(node);
    assert!(
        out.status.success(),
        "{version}: findings against idem serve ({}; JUnit report in {}):\n{stdout}\n{stderr}",
        out.status,
        dir.join("report").display()
    );
    // A run whose stateful phase was skipped (no links followed) proves less than it says.
    assert!(
        stdout.contains("✅ Stateful") && stdout.contains("API Links:"),
        "the stateful phase did not run:\n{stdout}"
    );
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            [
                "API Links:",
                "Scenarios:",
                " generated,",
                "Filtered:",
                "Warnings:",
                "⚠️",
                "Seed:",
            ]
            .iter()
            .any(|mark| line.contains(mark))
        })
        .collect();
    eprintln!(
        "{version}, {examples} examples, {seconds} s:\n{}",
        summary.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
