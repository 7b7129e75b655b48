//! PostgreSQL (and engines speaking its protocol): `READ COMMITTED`, rows locked with
//! `SELECT … FOR UPDATE` in account-id order; the payment row's insert and the accounts'
//! lock in one statement, and the money's move with its ledger rows in another.

use idem_sql::{PostgresOptions, PostgresStore};

use super::Dialect;
use crate::Result;

pub(super) const DIALECT: Dialect = Dialect {
    for_update: " FOR UPDATE",
    int_type: "BIGINT",
    text_type: "TEXT",
    numbered_params: true,
    data_modifying_cte: true,
    arrays: true,
};

pub(super) async fn open(url: &str, max_connections: u32) -> Result<PostgresStore> {
    let options = PostgresOptions::from_url(url)?
        .max_connections(max_connections)
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .setting(
            "lock_timeout",
            &format!("{}ms", super::LOCK_WAIT_MAX.as_millis()),
        )
        .setting(
            "idle_in_transaction_session_timeout",
            &format!("{}ms", super::IDLE_IN_TRANSACTION_MAX.as_millis()),
        );
    Ok(PostgresStore::connect_with(&options).await?)
}
