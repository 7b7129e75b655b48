//! `idem keys` as an operator meets it (DESIGN §5a): `create` prints the secret alone on
//! stdout, `list` never shows it, `revoke` answers once and then says so. Each test runs
//! the real binary on a SQLite file of its own.

use std::path::PathBuf;
use std::process::{Command, Output};

use idem_test_support::unique_name;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("idem_keys_cli"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `idem keys ARGS` on `database` (through `IDEM_DATABASE`, as an operator would set it
/// once for `serve` and `keys`).
fn keys(database: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idem"))
        .arg("keys")
        .args(args)
        .env("IDEM_DATABASE", database)
        .output()
        .expect("idem runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn is_secret(s: &str) -> bool {
    s.len() == 72
        && s.strip_prefix("idem_sk_")
            .is_some_and(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[test]
fn create_list_and_revoke_on_a_fresh_database() {
    let dir = temp_dir();
    let database = format!("sqlite://{}/keys.db", dir.display());

    let created = keys(&database, &["create", "--tenant", "acme"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    let secret = stdout.strip_suffix('\n').expect("one line");
    assert!(is_secret(secret), "stdout is the secret alone: {stdout:?}");
    let stderr = text(&created.stderr);
    let id = stderr
        .split_whitespace()
        .find(|word| word.starts_with("key_"))
        .unwrap_or_else(|| panic!("stderr names the key's id: {stderr:?}"))
        .to_owned();
    assert!(
        stderr.contains("acme") && !stderr.contains(secret),
        "{stderr}"
    );

    // The flag works too, and a second key for another tenant.
    let second = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args([
            "keys",
            "create",
            "--tenant",
            "other",
            "--database",
            &database,
        ])
        .env_remove("IDEM_DATABASE")
        .output()
        .expect("idem runs");
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second_secret = text(&second.stdout).trim_end().to_owned();
    assert!(is_secret(&second_secret) && second_secret != secret);

    let listed = keys(&database, &["list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two keys: {table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("TENANT"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with(&id))
        .expect("the key's row");
    assert!(
        row.contains("acme") && row.ends_with(" -"),
        "not revoked: {row}"
    );
    for shown in [&table, &text(&listed.stderr)] {
        assert!(!shown.contains(&secret[8..]) && !shown.contains(&second_secret[8..]));
    }

    let revoked = keys(&database, &["revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert_eq!(text(&revoked.stdout), format!("revoked {id}\n"));
    let again = keys(&database, &["revoke", &id]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), format!("{id} was already revoked\n"));

    let json = keys(&database, &["list", "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("a JSON array");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let entry = list
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed");
    assert_eq!(entry["tenant"], "acme");
    assert!(
        entry["created_at"].is_string() && entry["revoked_at"].is_string(),
        "{entry}"
    );
    assert!(!text(&json.stdout).contains(&secret[8..]));

    let unknown = keys(&database, &["revoke", "key_0000000000000000"]);
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty());
    assert!(
        text(&unknown.stderr).contains("no API key has id"),
        "{}",
        text(&unknown.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_invalid_tenant_is_refused_with_a_message() {
    let dir = temp_dir();
    let database = format!("sqlite://{}/keys.db", dir.display());
    let long = "x".repeat(65);
    for bad in ["a b", "", long.as_str()] {
        let out = keys(&database, &["create", "--tenant", bad]);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(out.stdout.is_empty(), "no key printed for {bad:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("a tenant is 1 to 64"), "{bad:?}: {stderr}");
    }
    assert!(
        !keys(&database, &["create"]).status.success(),
        "--tenant is required"
    );
    let _ = std::fs::remove_dir_all(dir);
}
