//! The embedded migrations, one directory per backend, and running them — ours and the
//! caller's own ([`crate::TransactionalStore::run_migrations`]) — safely when several nodes
//! open the same database at once.

use sqlx::migrate::Migrator;

use crate::Error;

/// SQLite's migrations.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite() -> Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// PostgreSQL's migrations.
#[cfg(feature = "postgres")]
pub(crate) fn postgres() -> Migrator {
    sqlx::migrate!("migrations/postgres")
}

/// MySQL's and MariaDB's migrations.
#[cfg(feature = "mysql")]
pub(crate) fn mysql() -> Migrator {
    sqlx::migrate!("migrations/mysql")
}

// The application may keep its own sqlx migrations in the same database (the transactional
// mode invites it), and runs them with `TransactionalStore::run_migrations`: each set's
// versions are not the other's and must not fail its run.
fn shared(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// Runs `migrator` on `pool`. PostgreSQL serialises concurrent migrators with sqlx's
/// advisory lock; SQLite has none, so a node that lost the race (its version insert
/// collides) runs again and finds the work done. MySQL goes through [`run_mysql`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn run<DB>(migrator: Migrator, pool: &sqlx::Pool<DB>) -> Result<(), Error>
where
    DB: sqlx::Database + sqlx::migrate::MigrateDatabase,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let migrator = shared(migrator);
    let mut attempt = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < 3 => {
                tracing::debug!(error = %err, attempt, "idem-sql: migration collided, retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            Err(err) => return Err(Error::Migrate(err)),
        }
    }
}

/// How long a MySQL migrator waits for another node's migrations to finish.
#[cfg(feature = "mysql")]
const MYSQL_LOCK_WAIT_S: i64 = 300;

/// Runs `migrator` on MySQL or MariaDB under a named lock held on one connection for the
/// whole run. sqlx's own lock asks `GET_LOCK(name, -1)`, which MariaDB answers with NULL
/// (no lock, no wait), so nodes starting at once would all apply the first migration.
#[cfg(feature = "mysql")]
pub(crate) async fn run_mysql(migrator: Migrator, pool: &sqlx::MySqlPool) -> Result<(), Error> {
    // One lock per database: migrators of different databases never wait on each other.
    const LOCK: &str = "CONCAT('idem_migrate:', MD5(DATABASE()))";
    let mut migrator = shared(migrator);
    migrator.set_locking(false);
    let mut conn = pool.acquire().await.map_err(Error::Connect)?;
    let locked: Option<i64> =
        sqlx::query_scalar(&format!("SELECT GET_LOCK({LOCK}, {MYSQL_LOCK_WAIT_S})"))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::Connect)?;
    if locked != Some(1) {
        return Err(Error::MigrationLock {
            waited_s: MYSQL_LOCK_WAIT_S,
        });
    }
    let result = migrator.run_direct(&mut *conn).await;
    // Closing the connection would free the lock too; release it so the pooled
    // connection goes back clean.
    let _ = sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK})"))
        .execute(&mut *conn)
        .await;
    result.map_err(Error::Migrate)
}
