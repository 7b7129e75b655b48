//! PostgreSQL (and engines speaking its protocol): `READ COMMITTED`, rows locked with
//! `SELECT … FOR UPDATE` in account-id order, duplicates skipped with `ON CONFLICT DO
//! NOTHING`, which waits for a concurrent insert of the same key to commit or roll back.

use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;

use super::Dialect;

pub(super) const DIALECT: Dialect = Dialect {
    begin_write: "BEGIN",
    for_update: " FOR UPDATE",
    insert_ignore: "",
    on_conflict_nothing: "ON CONFLICT DO NOTHING",
    int_type: "BIGINT",
    numbered_params: true,
    data_modifying_cte: true,
};

pub(super) fn migrator() -> Migrator {
    sqlx::migrate!("migrations/postgres")
}

/// 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available.
pub(super) fn is_transient(error: &dyn DatabaseError) -> bool {
    let Some(pg) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        return false;
    };
    matches!(pg.code(), "40001" | "40P01" | "55P03")
}
