//! The transactions of the service, each one database transaction on idem-sql's
//! transactional mode, written once for every backend ([`Business`]).
//!
//! A call claims its business key first — the order's `order_id`, the refund's `refund_id`
//! within its payment, the account's id — with `begin_answered_in`: the answer is known
//! before the writes (it names the payment id about to be inserted), so the record is born
//! completed, and the library decides replay (same parameters), refusal (422: other
//! parameters) or, for a concurrent duplicate, waits on the key until the first commits.
//! Then the money moves — one conditional `UPDATE` of both accounts, which takes their
//! locks in account-id order and applies only when both exist and the funds are there —
//! with its ledger rows, and everything commits at once. A refused move is explained from
//! the locked rows (404, 402), and rolled back. Any early return drops the transaction, which rolls it
//! back, record included: nothing is kept from a refused call, and the key stays free.
//!
//! On PostgreSQL a payment first tries all of that as one statement on its own, the order
//! claimed inside it with idem-sql's `InlineClaim` (one round trip, one commit); only an
//! order seen before or a move that would be refused falls back to the transaction, which
//! decides them as above.

use std::time::Duration;

use idem::{Fingerprint, Key, Outcome, Scope, StoredResponse, TTL_FOREVER};
use idem_sql::TransactionalStore;

use crate::db::{Arg, Business, PaymentRow, Sql};
use crate::ledger;
use crate::model::{
    new_id, now_rfc3339, to_json, AccountBody, Answer, PaymentBody, RefundBody, Status,
};
use crate::validate::{NewAccount, NewPayment, NewRefund};
use crate::{Error, Result, Tenant};

const CREATED: u16 = 201;

/// What a call claims: its scope (the tenant and the operation: replays are per tenant), its
/// key and the fingerprint of what it asks.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) scope: Scope,
    pub(crate) key: Key,
    pub(crate) fingerprint: Fingerprint,
}

impl Claim {
    fn new(scope: String, key: &str, parameters: &impl serde::Serialize) -> Result<Self> {
        let scope = Scope::new(scope).map_err(|e| Error::Internal(format!("scope: {e}")))?;
        let key = Key::new(key).map_err(|e| Error::Internal(format!("key: {e}")))?;
        let path = scope.as_str().split_once('|').map_or("", |(_, op)| op);
        let fingerprint = Fingerprint::of_bytes("POST", path, &to_json(parameters));
        Ok(Self {
            scope,
            key,
            fingerprint,
        })
    }

    /// An account's: its id, and the opening balance.
    pub(crate) fn account(tenant: &Tenant, request: &NewAccount) -> Result<Self> {
        Self::new(
            format!("{tenant}|POST /v1/accounts"),
            &request.account_id,
            &request.balance,
        )
    }

    /// A payment's: its `order_id`, and payer, payee and amount.
    pub(crate) fn payment(tenant: &Tenant, request: &NewPayment) -> Result<Self> {
        Self::payment_under(tenant, request, &request.order_id)
    }

    fn payment_under(tenant: &Tenant, request: &NewPayment, key: &str) -> Result<Self> {
        Self::new(
            format!("{tenant}|POST /v1/payments"),
            key,
            &(&request.payer, &request.payee, request.amount),
        )
    }

    /// A refund's: its `refund_id` within the payment of `order_id`, and the amount.
    pub(crate) fn refund(tenant: &Tenant, order_id: &str, request: &NewRefund) -> Result<Self> {
        Self::new(
            format!("{tenant}|POST /v1/payments/{order_id}/refunds"),
            &request.refund_id,
            &request.amount,
        )
    }

    /// The claim written into one statement of the caller's own, born completed with
    /// `answer` and kept forever, as [`Claim::begin`]'s.
    fn inline(&self, answer: &StoredResponse) -> idem_sql::InlineClaim<'_> {
        let claim = idem::Claim::new(
            &self.scope,
            &self.key,
            &self.fingerprint,
            Duration::ZERO,
            TTL_FOREVER,
        );
        idem_sql::InlineClaim::new(claim, answer)
    }

    /// Claims the key inside `tx`, the record born completed with `answer`.
    async fn begin<S: TransactionalStore>(
        &self,
        store: &S,
        tx: &mut sqlx::Transaction<'_, S::Database>,
        answer: &StoredResponse,
    ) -> Result<Outcome> {
        // Born completed: the lease is not used.
        let claim = idem::Claim::new(
            &self.scope,
            &self.key,
            &self.fingerprint,
            Duration::ZERO,
            TTL_FOREVER,
        );
        Ok(store.begin_answered_in(tx, claim, answer).await?)
    }
}

/// The answer of a record that is there already: its replay, or `conflict` for a request
/// with other parameters. A record in flight cannot be: every record here is born
/// completed, and a duplicate waits for the first transaction to end.
fn settled(outcome: Outcome, conflict: impl FnOnce() -> Error) -> Result<Answer> {
    match outcome {
        Outcome::Replay(first) => Ok(Answer::replayed(first.status, first.body)),
        Outcome::Mismatch => Err(conflict()),
        Outcome::InFlight { .. } | Outcome::Acquired { .. } => Err(Error::Internal(format!(
            "a claim born completed came back as {outcome:?}"
        ))),
    }
}

/// `POST /v1/accounts`.
pub(crate) async fn open_account<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    request: &NewAccount,
) -> Result<Answer> {
    let body = to_json(&AccountBody {
        account_id: &request.account_id,
        balance: request.balance,
    });
    let answer = StoredResponse::new(CREATED, body.clone());
    let claim = Claim::account(tenant, request)?;
    let mut tx = store.begin_write().await?;
    let outcome = claim.begin(store, &mut tx, &answer).await?;
    if !matches!(outcome, Outcome::Acquired { .. }) {
        return settled(outcome, || Error::AccountConflict {
            account_id: request.account_id.clone(),
        });
    }
    store
        .execute_in(
            &mut tx,
            &sql.insert_account,
            &[
                Arg::Str(tenant.as_str()),
                Arg::Str(&request.account_id),
                Arg::Int(request.balance),
                Arg::Int(request.balance),
                Arg::Str(&now_rfc3339()),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Answer::executed(CREATED, body))
}

/// `GET /v1/accounts/{id}`.
pub(crate) async fn account<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    account_id: &str,
) -> Result<Answer> {
    let balance = ledger::balance(store, sql, tenant.as_str(), account_id)
        .await?
        .ok_or_else(|| Error::AccountNotFound {
            account_id: account_id.to_owned(),
        })?;
    let body = to_json(&AccountBody {
        account_id,
        balance,
    });
    Ok(Answer::executed(200, body))
}

/// What a payment or a refund decided inside its transaction.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Its writes are made: commit them, then answer this.
    Commit(Answer),
    /// Nothing of it is to stay (roll back): this is the answer (a replay, or a refusal
    /// known without reading anything more).
    Settled(Result<Answer>),
    /// Refused: roll back, then say why, from what the database holds after the rollback.
    Refused(Refusal),
}

/// A refusal whose reason is read after the rollback.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The move of money was refused (404, 402, 400): [`ledger::refusal`].
    Move {
        tenant: Tenant,
        from: String,
        to: String,
        amount: i64,
    },
    /// The order was paid with other parameters (422): [`conflict`] names which.
    OrderConflict { tenant: Tenant, request: NewPayment },
}

impl Refusal {
    /// The error this refusal answers, read on the pool.
    async fn explain<S: Business>(&self, store: &S, sql: &Sql) -> Error {
        match self {
            Refusal::Move {
                tenant,
                from,
                to,
                amount,
            } => {
                let movement = ledger::Movement {
                    id: "",
                    tenant: tenant.as_str(),
                    from,
                    to,
                    amount: *amount,
                    created_at: "",
                };
                ledger::refusal(store, sql, &movement).await
            }
            Refusal::OrderConflict { tenant, request } => {
                conflict(store, sql, tenant, request).await
            }
        }
    }
}

impl Decision {
    /// The answer of a decision whose transaction has committed (a [`Decision::Commit`]) or
    /// was rolled back (the others).
    pub(crate) async fn answer<S: Business>(self, store: &S, sql: &Sql) -> Result<Answer> {
        match self {
            Decision::Commit(answer) => Ok(answer),
            Decision::Settled(answer) => answer,
            Decision::Refused(refusal) => Err(refusal.explain(store, sql).await),
        }
    }

    /// Commits `tx` for a [`Decision::Commit`], rolls it back for the others, and answers.
    async fn finish<S: Business>(
        self,
        store: &S,
        sql: &Sql,
        tx: idem_sql::WriteTransaction<S::Database>,
    ) -> Result<Answer> {
        if matches!(self, Decision::Commit(_)) {
            tx.commit().await?;
        } else {
            drop(tx); // rolled back: the record and any half-made move with it
        }
        self.answer(store, sql).await
    }
}

/// A payment request made ready to run: its payment id, time, answer and claim fixed once,
/// so that a batch that fails and runs it again alone pays it under the same id.
#[derive(Debug)]
pub(crate) struct PreparedPayment {
    tenant: Tenant,
    request: NewPayment,
    payment_id: String,
    created_at: String,
    body: Vec<u8>,
    answer: StoredResponse,
    claim: Claim,
}

impl PreparedPayment {
    /// `request` of `tenant`, ready to pay. With `unsafe_disable_idempotency` the claim's key
    /// is fresh every time, so nothing stops a second execution: a test guard, see
    /// `ServeArgs`.
    pub(crate) fn new(
        tenant: &Tenant,
        request: &NewPayment,
        unsafe_disable_idempotency: bool,
    ) -> Result<Self> {
        let payment_id = new_id("pay");
        let created_at = now_rfc3339();
        let body = to_json(&PaymentBody {
            payment_id: &payment_id,
            order_id: &request.order_id,
            payer: &request.payer,
            payee: &request.payee,
            amount: request.amount,
            status: Status::Succeeded,
            created_at: &created_at,
        });
        let answer = StoredResponse::new(CREATED, body.clone());
        let claim = if unsafe_disable_idempotency {
            Claim::payment_under(
                tenant,
                request,
                &format!("{}#{payment_id}", request.order_id),
            )?
        } else {
            Claim::payment(tenant, request)?
        };
        Ok(Self {
            tenant: tenant.clone(),
            request: request.clone(),
            payment_id,
            created_at,
            body,
            answer,
            claim,
        })
    }

    /// The order's claim, born completed with the payment's answer, as one of a set
    /// (`claim_fresh_in`).
    pub(crate) fn answered_claim(&self) -> idem_sql::AnsweredClaim<'_> {
        idem_sql::AnsweredClaim {
            claim: idem::Claim::new(
                &self.claim.scope,
                &self.claim.key,
                &self.claim.fingerprint,
                Duration::ZERO,
                TTL_FOREVER,
            ),
            answer: &self.answer,
        }
    }

    /// The decision of a payment whose money moved and whose rows are written.
    pub(crate) fn paid(&self) -> Decision {
        Decision::Commit(Answer::executed(CREATED, self.body.clone()))
    }

    /// The decision of a payment whose move was refused: why is read after the rollback.
    pub(crate) fn refused(&self) -> Decision {
        Decision::Refused(Refusal::Move {
            tenant: self.tenant.clone(),
            from: self.request.payer.clone(),
            to: self.request.payee.clone(),
            amount: self.request.amount,
        })
    }

    /// The payment row's seven values.
    pub(crate) fn row(&self) -> [Arg<'_>; 7] {
        let r = &self.request;
        [
            Arg::Str(&self.payment_id),
            Arg::Str(self.tenant.as_str()),
            Arg::Str(&r.order_id),
            Arg::Str(&r.payer),
            Arg::Str(&r.payee),
            Arg::Int(r.amount),
            Arg::Str(&self.created_at),
        ]
    }

    /// The movement of money the payment makes.
    pub(crate) fn movement(&self) -> ledger::Movement<'_> {
        ledger::Movement {
            id: &self.payment_id,
            tenant: self.tenant.as_str(),
            from: &self.request.payer,
            to: &self.request.payee,
            amount: self.request.amount,
            created_at: &self.created_at,
        }
    }
}

/// `POST /v1/payments`, in a transaction of its own (see [`PreparedPayment::new`] for
/// `unsafe_disable_idempotency`).
pub(crate) async fn pay<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    request: &NewPayment,
    unsafe_disable_idempotency: bool,
) -> Result<Answer> {
    let payment = PreparedPayment::new(tenant, request, unsafe_disable_idempotency)?;
    pay_prepared(store, sql, &payment).await
}

/// Pays `p` in a transaction of its own.
pub(crate) async fn pay_prepared<S: Business>(
    store: &S,
    sql: &Sql,
    p: &PreparedPayment,
) -> Result<Answer> {
    // A fresh order that can be paid: one statement. Anything else (seen before, refused)
    // wrote nothing, and the transaction below decides it.
    let inline = p.claim.inline(&p.answer);
    if ledger::pay_inline(store, sql, &p.movement(), &p.row(), &inline).await? == Some(true) {
        return Ok(Answer::executed(CREATED, p.body.clone()));
    }
    let mut tx = store.begin_write().await?;
    let decision = pay_in(store, sql, &mut tx, p).await?;
    decision.finish(store, sql, tx).await
}

/// Pays `p` inside `tx`: claims the order, then moves the money; nothing is committed here.
pub(crate) async fn pay_in<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut sqlx::Transaction<'_, S::Database>,
    p: &PreparedPayment,
) -> Result<Decision> {
    let outcome = p.claim.begin(store, tx, &p.answer).await?;
    match outcome {
        Outcome::Acquired { .. } => {}
        Outcome::Mismatch => {
            return Ok(Decision::Refused(Refusal::OrderConflict {
                tenant: p.tenant.clone(),
                request: p.request.clone(),
            }))
        }
        other => {
            return Ok(Decision::Settled(settled(other, || {
                unreachable_conflict(&p.request)
            })))
        }
    }
    if !ledger::transfer(store, sql, tx, &p.movement(), Some(&p.row())).await? {
        return Ok(p.refused());
    }
    Ok(p.paid())
}

/// The conflict [`settled`] would give for a `Mismatch`, which `pay` answers itself.
fn unreachable_conflict(request: &NewPayment) -> Error {
    Error::OrderIdConflict {
        order_id: request.order_id.clone(),
        differs: "amount",
    }
}

/// `order_id_conflict` for a payment request whose order was paid with other parameters,
/// naming the first that differs (payer, payee, amount) as the stored payment shows.
async fn conflict<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    request: &NewPayment,
) -> Error {
    let by_order = [Arg::Str(tenant.as_str()), Arg::Str(&request.order_id)];
    let paid = store.payment(&sql.select_payment_by_order, &by_order).await;
    let differs = match &paid {
        Ok(Some(first)) if first.payer != request.payer => "payer",
        Ok(Some(first)) if first.payee != request.payee => "payee",
        _ => "amount",
    };
    Error::OrderIdConflict {
        order_id: request.order_id.clone(),
        differs,
    }
}

/// `GET /v1/payments/{order_id}`: the payment as first answered, byte for byte — the body
/// is a function of the row's columns, so it is rebuilt rather than stored twice.
pub(crate) async fn payment<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    order_id: &str,
) -> Result<Answer> {
    let by_order = [Arg::Str(tenant.as_str()), Arg::Str(order_id)];
    let payment = store
        .payment(&sql.select_payment_by_order, &by_order)
        .await?
        .ok_or_else(|| Error::PaymentNotFound {
            order_id: order_id.to_owned(),
        })?;
    let body = to_json(&PaymentBody {
        payment_id: &payment.payment_id,
        order_id,
        payer: &payment.payer,
        payee: &payment.payee,
        amount: payment.amount,
        status: Status::Succeeded,
        created_at: &payment.created_at,
    });
    Ok(Answer::executed(200, body))
}

/// `POST /v1/payments/{order_id}/refunds`, in a transaction of its own.
pub(crate) async fn refund<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &Tenant,
    order_id: &str,
    request: &NewRefund,
) -> Result<Answer> {
    let mut tx = store.begin_write().await?;
    let decision = refund_in(store, sql, &mut tx, tenant, order_id, request).await?;
    decision.finish(store, sql, tx).await
}

/// A refund inside `tx`. The payment row is locked first, so refunds of one payment run one
/// at a time and their total is checked against what they saw; nothing is committed here.
pub(crate) async fn refund_in<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut sqlx::Transaction<'_, S::Database>,
    tenant: &Tenant,
    order_id: &str,
    request: &NewRefund,
) -> Result<Decision> {
    let by_order = [Arg::Str(tenant.as_str()), Arg::Str(order_id)];
    let Some(payment): Option<PaymentRow> = store
        .payment_in(tx, &sql.lock_payment_by_order, &by_order)
        .await?
    else {
        return Ok(Decision::Settled(Err(Error::PaymentNotFound {
            order_id: order_id.to_owned(),
        })));
    };

    let created_at = now_rfc3339();
    let body = to_json(&RefundBody {
        refund_id: &request.refund_id,
        payment_id: &payment.payment_id,
        order_id,
        amount: request.amount,
        status: Status::Succeeded,
        created_at: &created_at,
    });
    let answer = StoredResponse::new(CREATED, body.clone());
    let outcome = Claim::refund(tenant, order_id, request)?
        .begin(store, tx, &answer)
        .await?;
    if !matches!(outcome, Outcome::Acquired { .. }) {
        return Ok(Decision::Settled(settled(outcome, || {
            Error::RefundIdConflict {
                refund_id: request.refund_id.clone(),
            }
        })));
    }

    let refundable = payment.amount - payment.refunded;
    if request.amount > refundable {
        return Ok(Decision::Settled(Err(Error::RefundExceedsPayment {
            amount: request.amount,
            refundable,
        })));
    }
    store
        .execute_in(
            tx,
            &sql.insert_refund,
            &[
                Arg::Str(&payment.payment_id),
                Arg::Str(&request.refund_id),
                Arg::Int(request.amount),
                Arg::Str(&created_at),
            ],
        )
        .await?;
    store
        .execute_in(
            tx,
            &sql.add_refunded,
            &[Arg::Int(request.amount), Arg::Str(&payment.payment_id)],
        )
        .await?;
    let movement_id = format!("{}/{}", payment.payment_id, request.refund_id);
    let movement = ledger::Movement {
        id: &movement_id,
        tenant: tenant.as_str(),
        from: &payment.payee,
        to: &payment.payer,
        amount: request.amount,
        created_at: &created_at,
    };
    if !ledger::transfer(store, sql, tx, &movement, None).await? {
        return Ok(Decision::Refused(Refusal::Move {
            tenant: tenant.clone(),
            from: payment.payee,
            to: payment.payer,
            amount: request.amount,
        }));
    }
    Ok(Decision::Commit(Answer::executed(CREATED, body)))
}
