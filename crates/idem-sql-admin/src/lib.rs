//! # idem-sql-admin — throwaway databases on a server
//!
//! `idem bench --fresh-database` and `idem chaos` run on a database of their own, created
//! beside the one the user named and dropped at the end, so a run never sees another's rows
//! and never touches what it did not create; the tests do the same. This crate is that
//! administration, written once:
//!
//! - [`Engine::of`]: which engine a URL names, by its scheme;
//! - [`with_database`]: the URL of another database on the same server;
//! - [`unique_name`]: a name no other run or test uses, with its owner's process id in it,
//!   so that what a killed process left behind can be recognised ([`owner_exited`]);
//! - [`ScratchDatabase`]: a database (or, for SQLite, a directory) created for one run and
//!   dropped by it.
//!
//! It depends on sqlx's drivers only, not on `idem-sql`, so `idem-sql`'s own tests can use
//! it without building the store crate twice.
//!
//! ## Example
//!
//! ```no_run
//! # async fn run() -> Result<(), idem_sql_admin::Error> {
//! use idem_sql_admin::ScratchDatabase;
//! let db = ScratchDatabase::create("postgres://postgres@127.0.0.1/postgres", "my_run").await?;
//! println!("running on {}", db.url());
//! db.drop_database().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor};

/// What can go wrong creating or dropping a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL names no engine this crate knows (sqlite, postgres, mysql).
    #[error("{url}: expected sqlite://, postgres:// or mysql://")]
    UnknownScheme {
        /// The URL given.
        url: String,
    },
    /// The text is not a `scheme://…` URL.
    #[error("{url}: not a URL")]
    NotAUrl {
        /// The text given.
        url: String,
    },
    /// A database name that cannot be spliced into DDL safely.
    #[error("{name:?} is not a plain database name (ASCII letters, digits and _)")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The server refused the connection or the statement.
    #[error("database server: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite directory could not be created or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The database engines idem runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// SQLite: a file, no server.
    Sqlite,
    /// PostgreSQL, or a compatible engine.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Engine {
    /// The engine a URL names by its scheme (`sqlite`, `postgres`/`postgresql`,
    /// `mysql`/`mariadb`).
    ///
    /// # Errors
    /// [`Error::UnknownScheme`] for any other scheme.
    pub fn of(url: &str) -> Result<Self, Error> {
        match url.split(':').next().unwrap_or_default() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            _ => Err(Error::UnknownScheme {
                url: url.to_owned(),
            }),
        }
    }

    /// The engine's name in reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }
}

/// A name no other run or test uses: `<prefix>_<pid>_<counter>_<clock nanos, hex>`, in
/// ASCII letters, digits and `_` when `prefix` is, so it can name a database, a schema or a
/// key prefix. The process id lets [`owner_exited`] recognise leftovers of dead processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// True when `name` is a [`unique_name`] with `prefix` whose process is gone (and not this
/// one): what a killed run or test left behind, safe to drop.
pub fn owner_exited(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    let Some(pid) = rest.split('_').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// `url` with its database (the path) replaced by `name`, the query kept.
///
/// # Errors
/// [`Error::NotAUrl`] when `url` has no `scheme://`.
pub fn with_database(url: &str, name: &str) -> Result<String, Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| Error::NotAUrl {
        url: url.to_owned(),
    })?;
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
    Ok(out)
}

/// `name` if it is safe to splice into `CREATE`/`DROP DATABASE`.
fn checked(name: &str) -> Result<&str, Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(Error::BadName {
            name: name.to_owned(),
        })
    }
}

/// Creates the database `name` on the PostgreSQL or MySQL server `server_url` connects to.
/// SQLite has no server: nothing to do.
///
/// # Errors
/// [`Error::Database`] when the server refuses; [`Error::BadName`], [`Error::UnknownScheme`].
pub async fn create_database(server_url: &str, name: &str) -> Result<(), Error> {
    let name = checked(name)?;
    on_server(
        server_url,
        &format!("CREATE DATABASE \"{name}\""),
        &format!("CREATE DATABASE `{name}`"),
    )
    .await
}

/// Drops the database `name` (if it exists) on the server `server_url` connects to; on
/// PostgreSQL `WITH (FORCE)`, since a node killed a moment ago may leave sessions behind.
///
/// # Errors
/// [`Error::Database`] when the server refuses; [`Error::BadName`], [`Error::UnknownScheme`].
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), Error> {
    let name = checked(name)?;
    on_server(
        server_url,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        &format!("DROP DATABASE IF EXISTS `{name}`"),
    )
    .await
}

/// Runs one statement on the server `server_url` connects to: `postgres` or `mysql`, by
/// its engine; SQLite has no server, so nothing.
async fn on_server(server_url: &str, postgres: &str, mysql: &str) -> Result<(), Error> {
    match Engine::of(server_url)? {
        Engine::Sqlite => {}
        Engine::Postgres => {
            let mut admin = sqlx::PgConnection::connect(server_url).await?;
            admin.execute(postgres).await?;
            admin.close().await?;
        }
        Engine::MySql => {
            let mut admin = sqlx::MySqlConnection::connect(server_url).await?;
            admin.execute(mysql).await?;
            admin.close().await?;
        }
    }
    Ok(())
}

/// A database created for one run beside the one a URL names: on PostgreSQL and MySQL a
/// new database on the same server, on SQLite a new directory under the system's temporary
/// directory holding the file. Dropped by [`ScratchDatabase::drop_database`].
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    engine: Engine,
    name: String,
    url: String,
    server_url: String,
    dir: Option<PathBuf>,
}

impl ScratchDatabase {
    /// Creates a database named [`unique_name`]`(prefix)` on the server of `server_url`
    /// (any database on it; the path is replaced), or for SQLite a directory of that name
    /// (the rest of a `sqlite` URL is ignored).
    ///
    /// # Errors
    /// [`Error::UnknownScheme`], [`Error::Database`] when the server refuses, [`Error::Io`]
    /// when the directory cannot be made.
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, Error> {
        let engine = Engine::of(server_url)?;
        let name = unique_name(prefix);
        match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("idem.db").display());
                Ok(Self {
                    engine,
                    name,
                    url,
                    server_url: server_url.to_owned(),
                    dir: Some(dir),
                })
            }
            Engine::Postgres | Engine::MySql => {
                create_database(server_url, &name).await?;
                Ok(Self {
                    engine,
                    url: with_database(server_url, &name)?,
                    name,
                    server_url: server_url.to_owned(),
                    dir: None,
                })
            }
        }
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Its name (for SQLite, the directory's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, to connect to it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL it was created from: the server's administration database.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Drops the database, or removes the SQLite directory.
    ///
    /// # Errors
    /// [`Error::Database`] when the server refuses, [`Error::Io`] when the directory stays.
    pub async fn drop_database(&self) -> Result<(), Error> {
        match &self.dir {
            Some(dir) => match std::fs::remove_dir_all(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(Error::Io {
                    path: dir.clone(),
                    source,
                }),
            },
            None => drop_database(&self.server_url, &self.name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        let url = with_database("postgres://u@h:5432/test?sslmode=disable", "x").expect("url");
        assert_eq!(url, "postgres://u@h:5432/x?sslmode=disable");
        let url = with_database("mysql://root@h:3306", "x").expect("url");
        assert_eq!(url, "mysql://root@h:3306/x");
        assert_eq!(
            with_database("postgres://h", "x").expect("url"),
            "postgres://h/x"
        );
        assert!(with_database("not a url", "x").is_err());
    }

    #[test]
    fn engines_are_known_by_scheme() {
        assert_eq!(Engine::of("postgresql://h/d").ok(), Some(Engine::Postgres));
        assert_eq!(Engine::of("mariadb://h/d").ok(), Some(Engine::MySql));
        assert_eq!(Engine::of("sqlite://x.db").ok(), Some(Engine::Sqlite));
        assert!(Engine::of("redis://h").is_err());
    }

    #[test]
    fn names_are_unique_and_know_their_owner() {
        let (a, b) = (unique_name("t"), unique_name("t"));
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
        assert!(!owner_exited(&a, "t"), "this process is alive");
        assert!(!owner_exited("other_1_0_0", "t"), "another prefix");
        assert!(owner_exited("t_4294967295_0_0", "t"), "no such process");
        assert!(checked("a; DROP").is_err());
    }
}
