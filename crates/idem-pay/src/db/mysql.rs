//! MySQL and MariaDB (InnoDB): sessions in `READ COMMITTED` so a statement sees rows
//! committed before it, rows locked with `SELECT … FOR UPDATE` in account-id order, the
//! session time zone UTC (the store reads its clock with `NOW(3)`).

use std::str::FromStr;

use idem_sql::MySqlStore;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::Executor;

use super::Dialect;
use crate::Result;

pub(super) const DIALECT: Dialect = Dialect {
    for_update: " FOR UPDATE",
    int_type: "SIGNED",
    text_type: "CHAR",
    numbered_params: false,
    data_modifying_cte: false,
    arrays: false,
};

pub(super) async fn open(url: &str, max_connections: u32) -> Result<MySqlStore> {
    let connect = MySqlConnectOptions::from_str(url)?.timezone(Some(String::from("+00:00")));
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                let lock_wait = super::LOCK_WAIT_MAX.as_secs().max(1);
                conn.execute(
                    format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}").as_str(),
                )
                .await?;
                let idle = super::IDLE_IN_TRANSACTION_MAX.as_secs().max(1);
                match conn
                    .execute(format!("SET SESSION idle_transaction_timeout = {idle}").as_str())
                    .await
                {
                    // MySQL has no such variable (ER_UNKNOWN_SYSTEM_VARIABLE): its server
                    // keeps a silent client's transaction until `wait_timeout`.
                    Err(sqlx::Error::Database(e))
                        if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                            .is_some_and(|e| e.number() == 1193) =>
                    {
                        Ok(())
                    }
                    other => other.map(drop),
                }
            })
        })
        .after_release(|conn, _| Box::pin(async move { Ok(idem_sql::still_answers(conn).await) }))
        .connect_with(connect)
        .await?;
    Ok(MySqlStore::from_pool(pool).await?)
}
