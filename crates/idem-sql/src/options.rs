//! How to open each store: [`SqliteOptions`], [`PostgresOptions`], [`MySqlOptions`], one
//! per backend, each holding only what that backend reads.
//!
//! The shape is sqlx's: parse a URL ([`PostgresOptions::from_url`], or `str::parse`), tune
//! it with builder methods, and open the store with `connect_with(&options)`;
//! `connect(url)` is the shorthand with every default. `idem_redis::RedisOptions` has the
//! same shape.

use std::time::Duration;

use crate::Error;

/// What every store's pool reads: its size, how long a call waits for a connection, and
/// whether the store migrates on open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) migrate: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            migrate: true,
        }
    }
}

/// How long a connection handed back to the pool may take to answer a ping before it is
/// closed instead of kept.
pub const RELEASE_PING_MAX: Duration = Duration::from_secs(1);

/// Whether a connection handed back to the pool still answers within [`RELEASE_PING_MAX`]:
/// the pool's `after_release` test. A caller that gave up on a statement (its own timeout)
/// hands back a connection that may wait for ever for an answer lost with a dead network
/// path; sqlx's own release ping has no limit, and such a connection would hold its pool
/// slot for good. Closed instead, it frees the slot.
pub async fn still_answers<C: sqlx::Connection>(conn: &mut C) -> bool {
    matches!(
        tokio::time::timeout(RELEASE_PING_MAX, conn.ping()).await,
        Ok(Ok(()))
    )
}

impl PoolSettings {
    /// Opens the store's pool over `connect`, of this size and acquire timeout; a
    /// connection handed back is kept only if it [`still_answers`].
    ///
    /// # Errors
    /// [`Error::Connect`] when no connection can be opened.
    pub(crate) async fn open<DB: sqlx::Database>(
        &self,
        connect: <DB::Connection as sqlx::Connection>::Options,
    ) -> Result<sqlx::Pool<DB>, Error> {
        sqlx::pool::PoolOptions::<DB>::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .after_release(|conn, _| Box::pin(async move { Ok(still_answers(conn).await) }))
            .connect_with(connect)
            .await
            .map_err(crate::error::open_error)
    }
}

/// Runs `sql` (DDL the pool's connections rely on, such as creating their schema) on a
/// connection of its own, before the pool exists. A failure of the statement that
/// `tolerated` accepts counts as success.
///
/// # Errors
/// [`Error::Connect`] when the connection or the statement fails.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) async fn run_alone<C>(
    connect: &C::Options,
    sql: &str,
    tolerated: fn(&sqlx::Error) -> bool,
) -> Result<(), Error>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    use crate::error::open_error;
    let mut conn = C::connect_with(connect).await.map_err(open_error)?;
    match sqlx::Executor::execute(&mut conn, sql).await {
        Ok(_) => {}
        Err(err) if tolerated(&err) => {}
        Err(err) => return Err(open_error(err)),
    }
    conn.close().await.map_err(open_error)
}

/// The builder methods every store's options share, written once.
macro_rules! pool_setters {
    () => {
        /// Sets the most connections the store's pool opens (default 10, at least 1).
        pub fn max_connections(mut self, max: u32) -> Self {
            self.pool.max_connections = max.max(1);
            self
        }

        /// Sets how long a call waits for a free connection before failing as unavailable
        /// (default 10 s).
        pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
            self.pool.acquire_timeout = timeout;
            self
        }

        /// Turns the embedded migrations on open on or off (default on; off when the
        /// schema is managed elsewhere).
        pub fn migrate(mut self, on: bool) -> Self {
            self.pool.migrate = on;
            self
        }
    };
}

/// Implements `FromStr` by [`from_url`](SqliteOptions::from_url), for `url.parse()`.
macro_rules! from_str_by_url {
    ($options:ty) => {
        impl std::str::FromStr for $options {
            type Err = Error;

            fn from_str(url: &str) -> Result<Self, Error> {
                Self::from_url(url)
            }
        }
    };
}

/// How to open a [`SqliteStore`](crate::SqliteStore): the file, the pool, SQLite's busy
/// timeout.
///
/// ```
/// # fn main() -> Result<(), idem_sql::Error> {
/// use std::time::Duration;
/// let options = idem_sql::SqliteOptions::from_url("sqlite://idem-data/idem.db")?
///     .busy_timeout(Duration::from_secs(2));
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub(crate) connect: sqlx::sqlite::SqliteConnectOptions,
    pub(crate) pool: PoolSettings,
    pub(crate) busy_timeout: Duration,
}

#[cfg(feature = "sqlite")]
impl SqliteOptions {
    /// Options for the file `url` names (`sqlite://path`, `sqlite:path`; created if
    /// missing, in a directory that must exist), with the defaults.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a URL SQLite rejects.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let connect = url
            .parse()
            .map_err(|e| Error::InvalidOption(format!("sqlite url {url:?}: {e}")))?;
        Ok(Self {
            connect,
            pool: PoolSettings::default(),
            busy_timeout: Duration::from_secs(5),
        })
    }

    pool_setters!();

    /// Sets how long a writer waits for the database lock (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

#[cfg(feature = "sqlite")]
from_str_by_url!(SqliteOptions);

/// How to open a [`PostgresStore`](crate::PostgresStore): the server, the pool, the schema.
///
/// ```
/// # fn main() -> Result<(), idem_sql::Error> {
/// let options = idem_sql::PostgresOptions::from_url("postgres://app@db/app")?
///     .schema("idem")
///     .max_connections(20);
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub(crate) connect: sqlx::postgres::PgConnectOptions,
    pub(crate) pool: PoolSettings,
    pub(crate) schema: Option<String>,
}

#[cfg(feature = "postgres")]
impl PostgresOptions {
    /// Options for the database `url` names (`postgres://…`), with the defaults.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a URL the driver rejects.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let connect = url
            .parse()
            .map_err(|e| Error::InvalidOption(format!("postgres url: {e}")))?;
        Ok(Self {
            connect,
            pool: PoolSettings::default(),
            schema: None,
        })
    }

    pool_setters!();

    /// Sets a server setting for every connection of the store (a `-c name=value` startup
    /// option), such as `idle_in_transaction_session_timeout` or `lock_timeout`.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.connect = self.connect.options([(name, value)]);
        self
    }

    /// Keeps the records table in `schema` (an identifier: ASCII letters, digits and `_`),
    /// created if missing and set as the connections' `search_path`. Default: the server's
    /// `search_path`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

#[cfg(feature = "postgres")]
from_str_by_url!(PostgresOptions);

/// How to open a [`MySqlStore`](crate::MySqlStore): the server, the pool, the database.
///
/// ```
/// # fn main() -> Result<(), idem_sql::Error> {
/// let options = idem_sql::MySqlOptions::from_url("mysql://app@db/app")?.max_connections(20);
/// # Ok(()) }
/// ```
#[cfg(feature = "mysql")]
#[derive(Debug, Clone)]
pub struct MySqlOptions {
    pub(crate) connect: sqlx::mysql::MySqlConnectOptions,
    pub(crate) pool: PoolSettings,
    pub(crate) database: Option<String>,
}

#[cfg(feature = "mysql")]
impl MySqlOptions {
    /// Options for the database `url` names (`mysql://…`, MySQL or MariaDB), with the
    /// defaults.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a URL the driver rejects.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let connect = url
            .parse()
            .map_err(|e| Error::InvalidOption(format!("mysql url: {e}")))?;
        Ok(Self {
            connect,
            pool: PoolSettings::default(),
            database: None,
        })
    }

    pool_setters!();

    /// Keeps the records in `database` (an identifier: ASCII letters, digits and `_`)
    /// instead of the URL's, created if missing.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }
}

#[cfg(feature = "mysql")]
from_str_by_url!(MySqlOptions);

/// Checks that `name` is a plain SQL identifier, so it can be spliced into DDL safely.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn checked_identifier(name: &str) -> Result<&str, Error> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && name.len() <= 63 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name)
    } else {
        Err(Error::InvalidOption(format!(
            "{name:?} is not an identifier (ASCII letters, digits, _; at most 63)"
        )))
    }
}
