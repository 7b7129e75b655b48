//! MySQL and MariaDB (InnoDB): sessions in `READ COMMITTED` so a statement sees rows
//! committed before it, rows locked with `SELECT … FOR UPDATE` in account-id order,
//! duplicates skipped with `INSERT IGNORE`, which waits on the unique key's lock.

use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Executor, Row};

use super::Dialect;

pub(super) const DIALECT: Dialect = Dialect {
    begin_write: "BEGIN",
    for_update: " FOR UPDATE",
    insert_ignore: "IGNORE",
    on_conflict_nothing: "",
    int_type: "SIGNED",
    numbered_params: false,
    data_modifying_cte: false,
};

pub(super) fn migrator() -> Migrator {
    sqlx::migrate!("migrations/mysql")
}

/// Runs the migrations under a named lock held for the whole run. sqlx's own MySQL lock
/// asks `GET_LOCK(name, -1)`, which MariaDB answers with NULL (no lock, no wait), so three
/// nodes starting at once would all apply the first migration.
pub(super) async fn migrate(pool: &AnyPool, mut migrator: Migrator) -> crate::Result<()> {
    const LOCK: &str = "CONCAT('idem_pay_migrate:', MD5(DATABASE()))";
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> = sqlx::query(&format!("SELECT GET_LOCK({LOCK}, 300)"))
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if locked != Some(1) {
        return Err(crate::Error::Internal(
            "could not take the migration lock within 300 s".into(),
        ));
    }
    migrator.set_locking(false);
    let result = migrator.run(&mut *conn).await;
    let _ = sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK})"))
        .execute(&mut *conn)
        .await;
    Ok(result?)
}

pub(super) async fn after_connect(conn: &mut AnyConnection) -> sqlx::Result<()> {
    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    Ok(())
}

/// 1213 deadlock, 1205 lock wait timeout, 1020 record changed (MariaDB), 40001.
pub(super) fn is_transient(error: &dyn DatabaseError) -> bool {
    let Some(my) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() else {
        return false;
    };
    matches!(my.number(), 1213 | 1205 | 1020) || my.code() == Some("40001")
}
