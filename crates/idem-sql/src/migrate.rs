//! The embedded migrations, one directory per backend, and running them safely when several
//! nodes open the same database at once.

use sqlx::migrate::{MigrateDatabase, Migrator};

use crate::Error;

/// SQLite's migrations.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite() -> Migrator {
    shared(sqlx::migrate!("migrations/sqlite"))
}

/// PostgreSQL's migrations.
#[cfg(feature = "postgres")]
pub(crate) fn postgres() -> Migrator {
    shared(sqlx::migrate!("migrations/postgres"))
}

/// MySQL's and MariaDB's migrations.
#[cfg(feature = "mysql")]
pub(crate) fn mysql() -> Migrator {
    shared(sqlx::migrate!("migrations/mysql"))
}

// The application may keep its own sqlx migrations in the same database (the transactional
// mode invites it): their versions are not ours and must not fail our run.
fn shared(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// Runs `migrator` on `pool`. PostgreSQL and MySQL serialise concurrent migrators with an
/// advisory lock; SQLite has none, so a node that lost the race (its version insert
/// collides) runs again and finds the work done.
pub(crate) async fn run<DB>(migrator: Migrator, pool: &sqlx::Pool<DB>) -> Result<(), Error>
where
    DB: sqlx::Database + MigrateDatabase,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
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
