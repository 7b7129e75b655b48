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
                Ok(())
            })
        })
        .connect_with(connect)
        .await?;
    Ok(MySqlStore::from_pool(pool).await?)
}
