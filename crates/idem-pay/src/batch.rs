//! Payments and refunds through idem-sql's [`Batcher`]: concurrent calls share one
//! transaction and one commit, each behind its own savepoint (`idem serve --batch-max`).
//! A lone call runs alone, by the path it takes without batching (on PostgreSQL, a fresh
//! payment in one statement), so an idle node waits for nothing.

use std::sync::Arc;

use async_trait::async_trait;
use idem_sql::{
    BatchFailure, BatchItem, BatchOptions, Batcher, MySqlStore, PostgresStore, SqliteStore, Step,
};
use sqlx::Transaction;

use crate::db::{Arg, Business, Db, Engine, Sql};
use crate::flows::{self, Decision, PreparedPayment};
use crate::model::Answer;
use crate::validate::NewRefund;
use crate::{Error, Result, Tenant};

/// One batcher on the engine's store, whose items answer a [`Decision`].
#[derive(Debug, Clone)]
pub(crate) enum Batchers {
    Sqlite(Batcher<SqliteStore, Decision>),
    Postgres(Batcher<PostgresStore, Decision>),
    MySql(Batcher<MySqlStore, Decision>),
}

/// Runs `$body` with `$batcher` and `$store` bound to the batcher and the store of one
/// backend: written once, type-checked per backend.
macro_rules! on_batcher {
    ($batchers:expr, $engine:expr, $batcher:ident, $store:ident => $body:expr) => {
        match ($batchers, $engine) {
            (Batchers::Sqlite($batcher), Engine::Sqlite($store)) => $body,
            (Batchers::Postgres($batcher), Engine::Postgres($store)) => $body,
            (Batchers::MySql($batcher), Engine::MySql($store)) => $body,
            _ => Err(Error::Internal(
                "the batcher was made for another database engine".into(),
            )),
        }
    };
}

impl Batchers {
    /// Batchers on `db`'s store, starting their workers on the current runtime.
    pub(crate) fn new(db: &Db, options: BatchOptions) -> Self {
        match &db.engine {
            Engine::Sqlite(store) => Batchers::Sqlite(Batcher::new(store.clone(), options)),
            Engine::Postgres(store) => Batchers::Postgres(Batcher::new(store.clone(), options)),
            Engine::MySql(store) => Batchers::MySql(Batcher::new(store.clone(), options)),
        }
    }

    /// Pays `payment` in a batch (one try: a transient failure is the caller's to retry).
    pub(crate) async fn pay(&self, db: &Db, payment: PreparedPayment) -> Result<Answer> {
        let sql = &db.sql;
        on_batcher!(self, &db.engine, batcher, store => {
            let item = Pay {
                store: store.clone(),
                sql: Arc::clone(sql),
                payment,
            };
            submit(batcher, store, sql, item).await
        })
    }

    /// Refunds `request` on the payment of `order_id` in a batch (one try).
    pub(crate) async fn refund(
        &self,
        db: &Db,
        tenant: &Tenant,
        order_id: &str,
        request: &NewRefund,
    ) -> Result<Answer> {
        let sql = &db.sql;
        on_batcher!(self, &db.engine, batcher, store => {
            let item = Refund {
                store: store.clone(),
                sql: Arc::clone(sql),
                tenant: tenant.clone(),
                order_id: order_id.to_owned(),
                request: request.clone(),
            };
            submit(batcher, store, sql, item).await
        })
    }
}

/// Submits `item` and turns its decision into the answer: after the batch's commit, or
/// after the rollback of what it refused.
async fn submit<S: Business>(
    batcher: &Batcher<S, Decision>,
    store: &S,
    sql: &Sql,
    item: impl BatchItem<S::Database, Answer = Decision>,
) -> Result<Answer> {
    let decision = batcher
        .submit(item)
        .await
        .map_err(|error| Error::Internal(error.to_string()))?;
    decision.answer(store, sql).await
}

/// The step of a decision made in a batch: only a [`Decision::Commit`] keeps its writes.
fn step(decision: Decision) -> Step<Decision> {
    match decision {
        Decision::Commit(_) => Step::Keep(decision),
        Decision::Settled(_) | Decision::Refused(_) => Step::Undo(decision),
    }
}

/// A payment as a batch item.
struct Pay<S> {
    store: S,
    sql: Arc<Sql>,
    payment: PreparedPayment,
}

#[async_trait]
impl<S: Business> BatchItem<S::Database> for Pay<S> {
    type Answer = Decision;

    async fn run_in(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
    ) -> std::result::Result<Step<Decision>, BatchFailure> {
        let decision = flows::pay_in(&self.store, &self.sql, tx, &self.payment).await?;
        Ok(step(decision))
    }

    async fn run_alone(self: Box<Self>) -> Decision {
        let answer = flows::pay_prepared(&self.store, &self.sql, &self.payment).await;
        Decision::Settled(answer)
    }

    fn rows(&self) -> Vec<String> {
        let (tenant, accounts) = self.payment.accounts();
        accounts.iter().map(|a| account_row(tenant, a)).collect()
    }

    async fn lock_rows(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
        rows: &[String],
    ) -> std::result::Result<(), BatchFailure> {
        lock_accounts(&self.store, &self.sql, tx, rows).await
    }
}

/// Separates the tenant from the account id in a row's name: a byte neither may hold.
const ROW_SEPARATOR: char = '\0';

/// The name of `tenant`'s account `account` among a batch's rows (see
/// [`BatchItem::rows`]): sorted, the names group by tenant.
fn account_row(tenant: &Tenant, account: &str) -> String {
    format!("{}{ROW_SEPARATOR}{account}", tenant.as_str())
}

/// Locks the accounts named by `rows` (sorted, as [`account_row`] names them) in `tx`: one
/// statement per tenant, tenants in the rows' order, each tenant's accounts in account-id
/// order as every payment locks its two. A refund names no rows; it locks as it runs.
async fn lock_accounts<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut Transaction<'static, S::Database>,
    rows: &[String],
) -> std::result::Result<(), BatchFailure> {
    let named = rows.iter().filter_map(|row| row.split_once(ROW_SEPARATOR));
    let mut tenants: Vec<(&str, Vec<&str>)> = Vec::new();
    for (tenant, account) in named {
        match tenants.last_mut() {
            Some((last, accounts)) if *last == tenant => accounts.push(account),
            _ => tenants.push((tenant, vec![account])),
        }
    }
    for (tenant, accounts) in tenants {
        let args: Vec<Arg<'_>> = std::iter::once(tenant)
            .chain(accounts.iter().copied())
            .map(Arg::Str)
            .collect();
        store
            .execute_in(tx, &sql.lock_accounts(accounts.len()), &args)
            .await?;
    }
    Ok(())
}

/// A refund as a batch item.
struct Refund<S> {
    store: S,
    sql: Arc<Sql>,
    tenant: Tenant,
    order_id: String,
    request: NewRefund,
}

#[async_trait]
impl<S: Business> BatchItem<S::Database> for Refund<S> {
    type Answer = Decision;

    async fn run_in(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
    ) -> std::result::Result<Step<Decision>, BatchFailure> {
        let decision = flows::refund_in(
            &self.store,
            &self.sql,
            tx,
            &self.tenant,
            &self.order_id,
            &self.request,
        )
        .await?;
        Ok(step(decision))
    }

    async fn run_alone(self: Box<Self>) -> Decision {
        let answer = flows::refund(
            &self.store,
            &self.sql,
            &self.tenant,
            &self.order_id,
            &self.request,
        )
        .await;
        Decision::Settled(answer)
    }

    /// Names none of its own (its accounts are the payment's, read as it runs), but locks
    /// the batch's when it comes first.
    async fn lock_rows(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
        rows: &[String],
    ) -> std::result::Result<(), BatchFailure> {
        lock_accounts(&self.store, &self.sql, tx, rows).await
    }
}
