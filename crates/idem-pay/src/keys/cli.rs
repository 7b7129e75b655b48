//! `idem keys create|list|revoke`: the operator's side of API keys. The binary only parses
//! [`KeysArgs`] and calls [`run`].

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{ApiKeys, KeyInfo, Revocation};
use crate::serve::{redact, DEFAULT_DATABASE};
use crate::{Db, Tenant};

/// The options of `idem keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Database URL: sqlite://PATH, postgres://…, or mysql://… (the one `idem serve` uses)
    #[arg(long, env = "IDEM_DATABASE", default_value = DEFAULT_DATABASE, global = true)]
    pub database: String,
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The commands of `idem keys`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant: prints its secret on stdout, once (only its hash is kept).
    Create {
        /// The tenant the key's requests belong to: 1 to 64 of A-Z a-z 0-9 . _ : -
        #[arg(long)]
        tenant: Tenant,
    },
    /// List every key: id, tenant, created, revoked (never a secret).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: every node refuses it within a second.
    Revoke {
        /// The key's id, as `idem keys list` shows it (`key_…`).
        id: String,
    },
}

/// Runs one `idem keys` command: opens the database (creating its schema when new), does the
/// command, prints its result.
///
/// # Errors
/// When the database cannot be opened or queried, when `revoke` names no key, or when the
/// output cannot be written.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let db = Db::connect(&args.database, 1)
        .await
        .with_context(|| format!("opening the database {}", redact(&args.database)))?;
    let keys = ApiKeys::new(db.clone());
    let done = command(&keys, &args.command).await;
    db.close().await;
    done
}

async fn command(keys: &ApiKeys, command: &KeysCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    match command {
        KeysCommand::Create { tenant } => {
            let key = keys.create(tenant).await.context("creating the key")?;
            // The secret alone on stdout, so that `KEY=$(idem keys create …)` captures it.
            writeln!(stdout, "{}", key.secret).context("writing the key")?;
            writeln!(
                stderr,
                "created {} for tenant {} (the secret above is shown only once)",
                key.info.id, key.info.tenant
            )?;
        }
        KeysCommand::List { json } => {
            let list = keys.list().await.context("listing the keys")?;
            let text = if *json {
                render_json(&list)
            } else {
                render_table(&list)
            };
            stdout.write_all(text.as_bytes())?;
        }
        KeysCommand::Revoke { id } => {
            let line = match keys.revoke(id).await? {
                Revocation::Revoked => format!("revoked {id}"),
                Revocation::AlreadyRevoked => format!("{id} was already revoked"),
            };
            writeln!(stdout, "{line}")?;
        }
    }
    stdout.flush()?;
    Ok(())
}

/// The keys as a table: a header and one line per key, columns aligned, `-` for a key not
/// revoked.
fn render_table(keys: &[KeyInfo]) -> String {
    let header = ["ID", "TENANT", "CREATED", "REVOKED"];
    let rows: Vec<[&str; 4]> = keys
        .iter()
        .map(|k| {
            [
                k.id.as_str(),
                k.tenant.as_str(),
                k.created_at.as_str(),
                k.revoked_at.as_deref().unwrap_or("-"),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The keys as a JSON array of `{id, tenant, created_at, revoked_at}`.
fn render_json(keys: &[KeyInfo]) -> String {
    let list: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": k.id,
                "tenant": k.tenant.as_str(),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            })
        })
        .collect();
    let mut text = serde_json::Value::Array(list).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeysArgs,
    }

    fn key(id: &str, tenant: &str, revoked_at: Option<&str>) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            tenant: Tenant::new(tenant).expect("a tenant"),
            created_at: "2026-11-30T12:00:00.000Z".into(),
            revoked_at: revoked_at.map(Into::into),
        }
    }

    #[test]
    fn the_table_is_aligned_with_a_dash_for_valid_keys() {
        let table = render_table(&[
            key("key_0000000000000001", "acme", None),
            key(
                "key_0000000000000002",
                "a-much-longer-tenant",
                Some("2026-11-30T12:00:01.000Z"),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("ID                    TENANT"),
            "{table}"
        );
        assert!(lines[1].ends_with("2026-11-30T12:00:00.000Z  -"), "{table}");
        let created = lines[0].find("CREATED").expect("a CREATED column");
        assert_eq!(lines[1].find("2026"), Some(created), "{table}");
        assert_eq!(lines[2].find("2026"), Some(created), "{table}");
        assert_eq!(render_table(&[]), "ID  TENANT  CREATED  REVOKED\n");
    }

    #[test]
    fn json_lists_every_field() {
        let text = render_json(&[key("key_1", "acme", None)]);
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!([{
                "id": "key_1",
                "tenant": "acme",
                "created_at": "2026-11-30T12:00:00.000Z",
                "revoked_at": null,
            }])
        );
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["keys", "create", "--tenant", "acme"]).expect("parses");
        assert_eq!(cli.keys.database, DEFAULT_DATABASE);
        assert!(matches!(
            cli.keys.command,
            KeysCommand::Create { tenant } if tenant.as_str() == "acme"
        ));
        let cli = Cli::try_parse_from(["keys", "revoke", "key_1", "--database", "sqlite://x.db"])
            .expect("--database after the command");
        assert_eq!(cli.keys.database, "sqlite://x.db");
        let err = Cli::try_parse_from(["keys", "create", "--tenant", "a b"]).expect_err("bad");
        assert!(err.to_string().contains("a tenant is 1 to 64"), "{err}");
        assert!(
            Cli::try_parse_from(["keys", "create"]).is_err(),
            "--tenant is required"
        );
    }
}
