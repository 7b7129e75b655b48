//! Payments and refunds through idem-sql's [`Batcher`]: concurrent calls share one
//! transaction and one commit (`idem serve --batch-max`). A batch's payments are decided as
//! one set ([`payments`]); its refunds run one by one behind a savepoint each. A lone call
//! runs alone, by the path it takes without batching (on PostgreSQL, a fresh payment in one
//! statement), so an idle node waits for nothing.

mod payments;

use std::sync::Arc;

use async_trait::async_trait;
use idem_sql::{
    BatchFailure, BatchItem, BatchOptions, Batcher, MySqlStore, PostgresStore, SetStep,
    SqliteStore, Step,
};
use sqlx::Transaction;

use crate::db::{Business, Db, Engine, Sql};
use crate::flows::{self, Decision, PreparedPayment};
use crate::model::Answer;
use crate::validate::NewRefund;
use crate::{Error, Result, Tenant};

/// One batcher on the engine's store, whose items answer a [`Decision`].
#[derive(Debug, Clone)]
pub(crate) enum Batchers {
    Sqlite(Batcher<SqliteStore, Work<SqliteStore>>),
    Postgres(Batcher<PostgresStore, Work<PostgresStore>>),
    MySql(Batcher<MySqlStore, Work<MySqlStore>>),
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

    /// The batcher's counts so far.
    pub(crate) fn stats(&self) -> idem_sql::BatchStats {
        match self {
            Batchers::Sqlite(batcher) => batcher.stats(),
            Batchers::Postgres(batcher) => batcher.stats(),
            Batchers::MySql(batcher) => batcher.stats(),
        }
    }

    /// Pays `payment` in a batch (one try: a transient failure is the caller's to retry).
    pub(crate) async fn pay(&self, db: &Db, payment: PreparedPayment) -> Result<Answer> {
        let sql = &db.sql;
        on_batcher!(self, &db.engine, batcher, store => {
            let item = Work::Pay(Box::new(Pay {
                store: store.clone(),
                sql: Arc::clone(sql),
                payment,
            }));
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
            let item = Work::Refund(Refund {
                store: store.clone(),
                sql: Arc::clone(sql),
                tenant: tenant.clone(),
                order_id: order_id.to_owned(),
                request: request.clone(),
            });
            submit(batcher, store, sql, item).await
        })
    }
}

/// Submits `item` and turns its decision into the answer: after the batch's commit, or
/// after the rollback of what it refused.
async fn submit<S: Business>(
    batcher: &Batcher<S, Work<S>>,
    store: &S,
    sql: &Sql,
    item: Work<S>,
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

/// A call as a batch item: a payment or a refund.
pub(crate) enum Work<S> {
    /// Boxed: a prepared payment is several times a refund's size.
    Pay(Box<Pay<S>>),
    Refund(Refund<S>),
}

#[async_trait]
impl<S: Business> BatchItem<S::Database> for Work<S> {
    type Answer = Decision;

    async fn run_in(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
    ) -> std::result::Result<Step<Decision>, BatchFailure> {
        let decision = match self {
            Work::Pay(pay) => flows::pay_in(&pay.store, &pay.sql, tx, &pay.payment).await?,
            Work::Refund(r) => {
                flows::refund_in(&r.store, &r.sql, tx, &r.tenant, &r.order_id, &r.request).await?
            }
        };
        Ok(step(decision))
    }

    async fn run_alone(self) -> Decision {
        let answer = match self {
            Work::Pay(pay) => flows::pay_prepared(&pay.store, &pay.sql, &pay.payment).await,
            Work::Refund(r) => {
                flows::refund(&r.store, &r.sql, &r.tenant, &r.order_id, &r.request).await
            }
        };
        Decision::Settled(answer)
    }

    /// The payments as one set ([`payments::pay_set`]), when there are two or more; the
    /// refunds (and a lone payment) one by one.
    async fn run_set(
        items: &mut [Self],
        tx: &mut Transaction<'static, S::Database>,
    ) -> std::result::Result<Vec<SetStep<Decision>>, BatchFailure> {
        let mut steps: Vec<SetStep<Decision>> = items.iter().map(|_| SetStep::Each).collect();
        let pays: Vec<(usize, &Pay<S>)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Work::Pay(pay) => Some((i, &**pay)),
                Work::Refund(_) => None,
            })
            .collect();
        let Some((_, first)) = pays.first() else {
            return Ok(steps);
        };
        if pays.len() < 2 {
            return Ok(steps);
        }
        let payments: Vec<_> = pays.iter().map(|(_, pay)| &pay.payment).collect();
        let decided = payments::pay_set(&first.store, &first.sql, tx, &payments).await?;
        for ((i, _), step) in pays.iter().zip(decided) {
            steps[*i] = step;
        }
        Ok(steps)
    }
}

/// A payment as a batch item.
pub(crate) struct Pay<S> {
    store: S,
    sql: Arc<Sql>,
    payment: PreparedPayment,
}

/// A refund as a batch item.
pub(crate) struct Refund<S> {
    store: S,
    sql: Arc<Sql>,
    tenant: Tenant,
    order_id: String,
    request: NewRefund,
}
