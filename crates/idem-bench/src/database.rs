//! Fresh databases for one run: the spawned server's and the SQL baseline's, beside the
//! database the user named, created at the start and dropped at the end, so a run never
//! sees another's rows and never touches what it did not create.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use crate::error::{BenchError, Result};

/// The database engines the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, a file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Engine {
    /// The engine of a database URL, by its scheme.
    ///
    /// # Errors
    /// A scheme other than sqlite, postgres/postgresql, mysql/mariadb.
    pub fn of(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "mysql" | "mariadb" => Ok(Engine::MySql),
            _ => Err(BenchError::InvalidArgument {
                what: "--database",
                reason: format!("`{scheme}` is not sqlite, postgres or mysql"),
            }),
        }
    }

    /// The engine's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }
}

/// A name no other run uses: `prefix`, the process id and the clock's nanoseconds.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// `url` with its database (the path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database this run created, dropped by [`FreshDatabase::drop`].
#[derive(Debug)]
pub struct FreshDatabase {
    /// Its engine.
    pub engine: Engine,
    /// Its URL, for the server or the baseline.
    pub url: String,
    admin_url: String,
    name: String,
    file: Option<PathBuf>,
}

impl FreshDatabase {
    /// Creates a database named after `prefix` on the server of `base_url` (for SQLite: a
    /// file in the temporary directory).
    ///
    /// # Errors
    /// The server refused the connection or the `CREATE DATABASE`.
    pub async fn create(base_url: &str, prefix: &str) -> Result<Self> {
        let engine = Engine::of(base_url)?;
        let name = unique_name(prefix);
        let mut fresh = FreshDatabase {
            engine,
            url: with_database(base_url, &name),
            admin_url: base_url.to_owned(),
            name: name.clone(),
            file: None,
        };
        match engine {
            Engine::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                fresh.url = format!("sqlite://{}?mode=rwc", path.display());
                fresh.file = Some(path);
            }
            Engine::Postgres => {
                let mut admin = sqlx::PgConnection::connect(base_url).await?;
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
            }
            Engine::MySql => {
                let mut admin = sqlx::MySqlConnection::connect(base_url).await?;
                sqlx::query(&format!("CREATE DATABASE `{name}`"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
            }
        }
        Ok(fresh)
    }

    /// Drops the database (or deletes the file) this run created.
    ///
    /// # Errors
    /// The server refused the `DROP DATABASE`.
    pub async fn drop(self) -> Result<()> {
        match self.engine {
            Engine::Sqlite => {
                if let Some(path) = &self.file {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut file = path.clone().into_os_string();
                        file.push(suffix);
                        let _ = std::fs::remove_file(file);
                    }
                }
            }
            Engine::Postgres => {
                let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
                // FORCE: a server killed a moment ago may leave its sessions behind.
                sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(&mut admin)
                .await?;
                admin.close().await?;
            }
            Engine::MySql => {
                let mut admin = sqlx::MySqlConnection::connect(&self.admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            Engine::of("postgresql://h/d").expect("pg"),
            Engine::Postgres
        );
        assert!(Engine::of("redis://h").is_err());
    }
}
