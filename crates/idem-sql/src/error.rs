//! The crate's [`Error`] (opening a store) and how database failures become
//! [`StoreError`]s: by the database's error code, never by the message.

use idem::StoreError;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached, or refused the connection.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// The store's schema migrations failed.
    #[error("migrating the idem schema failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Another node held the migration lock (MySQL) longer than this node waits.
    #[error("could not take the migration lock within {waited_s} s")]
    MigrationLock {
        /// How long this node waited.
        waited_s: i64,
    },
    /// An option or URL is invalid (such as a schema name that is not an identifier).
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// What kind of failure a database error is, as far as the protocol cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The connection failed or timed out: the statement may or may not have run.
    Unavailable,
    /// Deadlock, serialization failure, lock wait timeout, SQLite BUSY: rolled back.
    Contention,
    /// A unique-key collision (another caller inserted the same key first).
    Unique,
    /// Anything else.
    Other,
}

/// Classifies `err` by its kind and the database's error code.
pub(crate) fn classify(err: &sqlx::Error) -> Class {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Class::Unavailable,
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        _ => Class::Other,
    }
}

fn classify_database(db: &dyn sqlx::error::DatabaseError) -> Class {
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.number() {
            // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_CHECKREAD (MariaDB's "record has
            // changed since last read" under snapshot isolation)
            1213 | 1205 | 1020 => Class::Contention,
            // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, ER_QUERY_INTERRUPTED,
            // ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
            1040 | 1053 | 1317 | 1927 | 4031 => Class::Unavailable,
            _ if db.is_unique_violation() => Class::Unique,
            // Any other serialization failure, by SQLSTATE.
            _ if my.code() == Some("40001") => Class::Contention,
            _ => Class::Other,
        };
    }
    #[cfg(feature = "sqlite")]
    if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let primary = sqlx::error::DatabaseError::code(lite)
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        return match primary {
            // SQLITE_BUSY, SQLITE_LOCKED (extended codes such as BUSY_SNAPSHOT included)
            Some(5 | 6) => Class::Contention,
            _ if db.is_unique_violation() => Class::Unique,
            _ => Class::Other,
        };
    }
    // PostgreSQL (and any other SQLSTATE-speaking database).
    let code = db.code();
    match code.as_deref() {
        // serialization_failure, deadlock_detected, lock_not_available
        Some("40001" | "40P01" | "55P03") => Class::Contention,
        Some("23505") => Class::Unique,
        // idle_in_transaction_session_timeout: the server ended a session whose client went
        // silent mid-transaction (rolled back, so a retry is safe).
        Some("25P03") => Class::Unavailable,
        // connection_exception, insufficient_resources, operator_intervention
        Some(c) if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
            Class::Unavailable
        }
        _ => Class::Other,
    }
}

/// True when a retry may cure `err`: the database was unreachable or restarting (the
/// statement may or may not have run), or it rolled back under contention (deadlock,
/// serialization failure, lock wait timeout, SQLite BUSY). The one classifier of the SQL
/// stores, and of any caller that retries its own transactions (see [`crate::Retry`]).
pub fn is_transient(err: &sqlx::Error) -> bool {
    matches!(classify(err), Class::Unavailable | Class::Contention)
}

/// The protocol's view of a database failure.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match classify(&err) {
        Class::Unavailable => StoreError::Unavailable(Box::new(err)),
        Class::Contention => StoreError::Contention(Box::new(err)),
        Class::Unique | Class::Other => StoreError::Backend(Box::new(err)),
    }
}

/// The error an open failed with: unreachable databases are `Connect`, the rest as given.
pub(crate) fn open_error(err: sqlx::Error) -> Error {
    Error::Connect(err)
}

// Every case here needs a server: PostgreSQL or MySQL.
#[cfg(all(test, any(feature = "postgres", feature = "mysql")))]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor};

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let err = sqlx::PgConnection::connect("postgres://nobody@127.0.0.1:1/none")
            .await
            .expect_err("nothing listens on port 1");
        assert!(matches!(store_error(err), StoreError::Unavailable(_)));
    }

    /// Two transactions lock two rows in opposite orders: the database picks a victim, and
    /// its error (by code: PostgreSQL 40P01, MySQL 1213) must classify as contention. The
    /// table is created with `$table_options` after its columns.
    macro_rules! deadlock_is_contention {
        ($name:ident, $var:literal, $conn:ty, $table_options:literal) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(url) = idem_test_support::backend_url($var) else {
                    return;
                };
                let table = idem_test_support::unique_name("idem_sql_deadlock");
                let mut setup = <$conn>::connect(&url).await.expect("connect");
                for sql in [
                    format!(
                        "CREATE TABLE {table} (id INT PRIMARY KEY, n INT){}",
                        $table_options
                    ),
                    format!("INSERT INTO {table} VALUES (1, 0), (2, 0)"),
                ] {
                    setup.execute(sql.as_str()).await.expect("setup");
                }
                let lock = |t: &str, id: i32| format!("UPDATE {t} SET n = n + 1 WHERE id = {id}");
                let mut a = <$conn>::connect(&url).await.expect("connect");
                let mut b = <$conn>::connect(&url).await.expect("connect");
                let mut ta = a.begin().await.expect("begin a");
                let mut tb = b.begin().await.expect("begin b");
                ta.execute(lock(&table, 1).as_str())
                    .await
                    .expect("a locks 1");
                tb.execute(lock(&table, 2).as_str())
                    .await
                    .expect("b locks 2");
                let (second_a, second_b) = (lock(&table, 2), lock(&table, 1));
                let (ra, rb) =
                    tokio::join!(ta.execute(second_a.as_str()), tb.execute(second_b.as_str()));
                let err = ra
                    .err()
                    .or(rb.err())
                    .expect("one side is the deadlock victim");
                assert_eq!(classify(&err), Class::Contention, "{err:?}");
                assert!(matches!(store_error(err), StoreError::Contention(_)));
                // Roll back and close explicitly: a dropped transaction only queues its
                // ROLLBACK, and MySQL's DROP TABLE would wait on the survivor's metadata lock.
                let _ = ta.rollback().await;
                let _ = tb.rollback().await;
                let _ = a.close().await;
                let _ = b.close().await;
                let _ = setup.execute(format!("DROP TABLE {table}").as_str()).await;
            }
        };
    }

    #[cfg(feature = "postgres")]
    deadlock_is_contention!(
        postgres_deadlock_is_contention,
        "IDEM_TEST_POSTGRES",
        sqlx::PgConnection,
        ""
    );

    #[cfg(feature = "mysql")]
    deadlock_is_contention!(
        mysql_deadlock_is_contention,
        "IDEM_TEST_MYSQL",
        sqlx::MySqlConnection,
        " ENGINE = InnoDB"
    );
}
