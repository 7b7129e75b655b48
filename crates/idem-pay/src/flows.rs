//! The transactions of the service, each one database transaction: the business key's row
//! is inserted first (or found, and then replayed or refused), the accounts are locked in
//! account-id order, the money moves with its ledger rows, and the exact answer is stored in
//! the same row, all committed at once. Any early return drops the transaction, which rolls
//! it back: nothing is kept from a refused call.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{inserted, Db};
use crate::ledger;
use crate::model::{new_id, now_rfc3339, to_json, AccountBody, Answer, PaymentBody, RefundBody};
use crate::validate::{NewAccount, NewPayment, NewRefund};
use crate::{Error, Result};

const CREATED: u16 = 201;

/// A payment row as read back.
#[derive(Debug)]
struct PaymentRow {
    payment_id: String,
    payer: String,
    payee: String,
    amount: i64,
    refunded: i64,
    status: u16,
    body: Vec<u8>,
}

impl PaymentRow {
    fn read(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            payment_id: row.try_get(0)?,
            payer: row.try_get(1)?,
            payee: row.try_get(2)?,
            amount: row.try_get(3)?,
            refunded: row.try_get(4)?,
            status: status(row.try_get(5)?)?,
            body: row.try_get(6)?,
        })
    }

    /// The first parameter that differs, compared in a fixed order: payer, payee, amount.
    fn differs_from(&self, request: &NewPayment) -> Option<&'static str> {
        if self.payer != request.payer {
            Some("payer")
        } else if self.payee != request.payee {
            Some("payee")
        } else if self.amount != request.amount {
            Some("amount")
        } else {
            None
        }
    }
}

fn status(value: i64) -> Result<u16> {
    u16::try_from(value).map_err(|_| Error::Corrupt(format!("stored status {value}")))
}

/// `POST /v1/accounts`.
pub(crate) async fn open_account(db: &Db, request: &NewAccount) -> Result<Answer> {
    let body = to_json(&AccountBody {
        account_id: &request.account_id,
        balance: request.balance,
    });
    let mut w = db.begin_write().await?;
    let result = sqlx::query(&db.sql.insert_account)
        .bind(&request.account_id)
        .bind(request.balance)
        .bind(request.balance)
        .bind(body.clone())
        .bind(now_rfc3339())
        .execute(&mut *w.tx)
        .await?;
    if inserted(&result) {
        w.tx.commit().await?;
        return Ok(Answer::executed(CREATED, body));
    }
    let row = sqlx::query(&db.sql.select_account_opening)
        .bind(&request.account_id)
        .fetch_optional(&mut *w.tx)
        .await?
        .ok_or_else(|| Error::Corrupt("account insert skipped, yet no account row".into()))?;
    let opening: i64 = row.try_get(0)?;
    if opening != request.balance {
        return Err(Error::AccountConflict {
            account_id: request.account_id.clone(),
        });
    }
    Ok(Answer::replayed(CREATED, row.try_get(1)?))
}

/// `GET /v1/accounts/{id}`.
pub(crate) async fn account(db: &Db, account_id: &str) -> Result<Answer> {
    let row = sqlx::query(&db.sql.select_balance)
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| Error::AccountNotFound {
            account_id: account_id.to_owned(),
        })?;
    let body = to_json(&AccountBody {
        account_id,
        balance: row.try_get(0)?,
    });
    Ok(Answer::executed(200, body))
}

/// `POST /v1/payments`. With `unsafe_disable_idempotency` the row goes in under a fresh
/// internal key, so nothing stops a second execution: a test guard, see `ServeArgs`.
pub(crate) async fn pay(
    db: &Db,
    request: &NewPayment,
    read_first: bool,
    unsafe_disable_idempotency: bool,
) -> Result<Answer> {
    let payment_id = new_id("pay");
    let created_at = now_rfc3339();
    let body = to_json(&PaymentBody {
        payment_id: &payment_id,
        order_id: &request.order_id,
        payer: &request.payer,
        payee: &request.payee,
        amount: request.amount,
        status: "succeeded",
        created_at: &created_at,
    });
    let order_key = if unsafe_disable_idempotency {
        format!("{}#{payment_id}", request.order_id)
    } else {
        request.order_id.clone()
    };

    if read_first && !unsafe_disable_idempotency {
        // A settled order is answered from one indexed read, without a write transaction:
        // its row is committed with its final answer, so it can only be replayed or refused.
        // A miss falls through to the transaction, which settles any race on the unique key.
        // Skipped when the service remembers settled answers: then most replays never get
        // here, and a fresh payment (the common case) saves a round trip.
        if let Some(row) = sqlx::query(&db.sql.select_payment_by_key)
            .bind(&request.order_id)
            .fetch_optional(&db.pool)
            .await?
        {
            return answer_settled(&PaymentRow::read(&row)?, request);
        }
    }

    let mut w = db.begin_write().await?;
    let row = NewPaymentRow {
        payment_id: &payment_id,
        order_key: &order_key,
        body: &body,
        created_at: &created_at,
    };
    let (payer_balance, payee_balance) = match claim_and_lock(db, &mut w.tx, request, &row).await? {
        Claim::Ours {
            payer_balance,
            payee_balance,
        } => (payer_balance, payee_balance),
        Claim::Settled(first) => return answer_settled(&first, request),
    };
    if payer_balance < request.amount {
        return Err(Error::InsufficientFunds {
            account_id: request.payer.clone(),
        });
    }
    if payee_balance.checked_add(request.amount).is_none() {
        return Err(Error::invalid(
            "amount",
            "the payee's balance would pass the largest integer",
        ));
    }
    ledger::transfer(
        db,
        &mut w.tx,
        &payment_id,
        &request.payer,
        &request.payee,
        request.amount,
        &created_at,
    )
    .await?;
    w.tx.commit().await?;
    Ok(Answer::executed(CREATED, body))
}

/// The payment row a request inserts.
struct NewPaymentRow<'a> {
    payment_id: &'a str,
    order_key: &'a str,
    body: &'a [u8],
    created_at: &'a str,
}

/// What inserting the payment row found.
enum Claim {
    /// The row is this transaction's, and both accounts are locked.
    Ours {
        payer_balance: i64,
        payee_balance: i64,
    },
    /// Another request paid the order first (committed before this one could insert).
    Settled(PaymentRow),
}

/// Inserts the payment row under its unique `order_key` (a concurrent duplicate waits on the
/// key until the first transaction ends) and locks payer and payee: one statement where the
/// dialect allows it (PostgreSQL), else an insert then [`lock_pair`].
async fn claim_and_lock<'q>(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    request: &'q NewPayment,
    row: &NewPaymentRow<'q>,
) -> Result<Claim> {
    let Some(sql) = &db.sql.insert_payment_and_lock else {
        let result = bind_payment(sqlx::query(&db.sql.insert_payment), request, row)
            .execute(&mut **tx)
            .await?;
        if !inserted(&result) {
            return settled(db, tx, row.order_key).await.map(Claim::Settled);
        }
        let (payer_balance, payee_balance) =
            lock_pair(db, tx, &request.payer, &request.payee).await?;
        return Ok(Claim::Ours {
            payer_balance,
            payee_balance,
        });
    };
    let locked = bind_payment(sqlx::query(sql), request, row)
        .bind(&request.payer)
        .bind(&request.payee)
        .fetch_all(&mut **tx)
        .await?;
    // Accounts come back (locked) only when this statement inserted the payment, so a
    // settled order takes no account lock. With none back, the payment row tells whether
    // the order was settled before or is ours with accounts that do not exist (then
    // `pair_balances` names the missing one).
    if locked.is_empty() {
        let found = settled(db, tx, row.order_key).await?;
        if found.payment_id != row.payment_id {
            return Ok(Claim::Settled(found));
        }
    }
    let (payer_balance, payee_balance) = pair_balances(&locked, &request.payer, &request.payee)?;
    Ok(Claim::Ours {
        payer_balance,
        payee_balance,
    })
}

/// Binds the payment row's nine columns, in the order of `insert_payment`.
fn bind_payment<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    request: &'q NewPayment,
    row: &NewPaymentRow<'q>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(row.payment_id)
        .bind(row.order_key)
        .bind(&request.order_id)
        .bind(&request.payer)
        .bind(&request.payee)
        .bind(request.amount)
        .bind(i32::from(CREATED))
        .bind(row.body)
        .bind(row.created_at)
}

/// The committed payment row of `order_key`, read inside the transaction that lost the
/// insert.
async fn settled(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    order_key: &str,
) -> Result<PaymentRow> {
    let row = sqlx::query(&db.sql.select_payment_by_key)
        .bind(order_key)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::Corrupt("payment insert skipped, yet no payment row".into()))?;
    PaymentRow::read(&row)
}

/// The answer to a payment request whose order is already paid: the first answer replayed
/// when payer, payee and amount are the same, `order_id_conflict` otherwise.
fn answer_settled(first: &PaymentRow, request: &NewPayment) -> Result<Answer> {
    if let Some(differs) = first.differs_from(request) {
        return Err(Error::OrderIdConflict {
            order_id: request.order_id.clone(),
            differs,
        });
    }
    Ok(Answer::replayed(first.status, first.body.clone()))
}

/// `GET /v1/payments/{order_id}`: the stored body of the payment.
pub(crate) async fn payment(db: &Db, order_id: &str) -> Result<Answer> {
    let row = sqlx::query(&db.sql.select_payment_by_order)
        .bind(order_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| Error::PaymentNotFound {
            order_id: order_id.to_owned(),
        })?;
    let payment = PaymentRow::read(&row)?;
    Ok(Answer::executed(200, payment.body))
}

/// `POST /v1/payments/{order_id}/refunds`. The payment row is locked first, so refunds of
/// one payment run one at a time and their total is checked against what they saw.
pub(crate) async fn refund(db: &Db, order_id: &str, request: &NewRefund) -> Result<Answer> {
    let mut w = db.begin_write().await?;
    let row = sqlx::query(&db.sql.lock_payment_by_order)
        .bind(order_id)
        .fetch_optional(&mut *w.tx)
        .await?
        .ok_or_else(|| Error::PaymentNotFound {
            order_id: order_id.to_owned(),
        })?;
    let payment = PaymentRow::read(&row)?;

    let created_at = now_rfc3339();
    let body = to_json(&RefundBody {
        refund_id: &request.refund_id,
        payment_id: &payment.payment_id,
        order_id,
        amount: request.amount,
        status: "succeeded",
        created_at: &created_at,
    });
    let result = sqlx::query(&db.sql.insert_refund)
        .bind(&payment.payment_id)
        .bind(&request.refund_id)
        .bind(request.amount)
        .bind(i32::from(CREATED))
        .bind(body.clone())
        .bind(&created_at)
        .execute(&mut *w.tx)
        .await?;
    if !inserted(&result) {
        let row = sqlx::query(&db.sql.select_refund)
            .bind(&payment.payment_id)
            .bind(&request.refund_id)
            .fetch_optional(&mut *w.tx)
            .await?
            .ok_or_else(|| Error::Corrupt("refund insert skipped, yet no refund row".into()))?;
        let amount: i64 = row.try_get(0)?;
        if amount != request.amount {
            return Err(Error::RefundIdConflict {
                refund_id: request.refund_id.clone(),
            });
        }
        return Ok(Answer::replayed(status(row.try_get(1)?)?, row.try_get(2)?));
    }

    let refundable = payment.amount - payment.refunded;
    if request.amount > refundable {
        return Err(Error::RefundExceedsPayment {
            amount: request.amount,
            refundable,
        });
    }
    let (payee_balance, _) = lock_pair(db, &mut w.tx, &payment.payee, &payment.payer).await?;
    if payee_balance < request.amount {
        return Err(Error::InsufficientFunds {
            account_id: payment.payee.clone(),
        });
    }
    sqlx::query(&db.sql.add_refunded)
        .bind(request.amount)
        .bind(&payment.payment_id)
        .execute(&mut *w.tx)
        .await?;
    let movement_id = format!("{}/{}", payment.payment_id, request.refund_id);
    ledger::transfer(
        db,
        &mut w.tx,
        &movement_id,
        &payment.payee,
        &payment.payer,
        request.amount,
        &created_at,
    )
    .await?;
    w.tx.commit().await?;
    Ok(Answer::executed(CREATED, body))
}

/// Locks two accounts in account-id order (so two opposite transfers never wait on each
/// other in a cycle) and returns their balances as `(from, to)`.
async fn lock_pair(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    from: &str,
    to: &str,
) -> Result<(i64, i64)> {
    debug_assert_ne!(from, to, "validation refuses payer == payee");
    let rows = sqlx::query(&db.sql.lock_pair)
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?;
    pair_balances(&rows, from, to)
}

/// The balances of `from` and `to` among locked rows of `(account_id, balance, …)`;
/// `account_not_found` for the first one missing.
fn pair_balances(rows: &[AnyRow], from: &str, to: &str) -> Result<(i64, i64)> {
    let (mut from_balance, mut to_balance) = (None, None);
    for row in rows {
        let account: String = row.try_get(0)?;
        let balance: i64 = row.try_get(1)?;
        if account == from {
            from_balance = Some(balance);
        } else if account == to {
            to_balance = Some(balance);
        }
    }
    let missing = |account: &str| Error::AccountNotFound {
        account_id: account.to_owned(),
    };
    Ok((
        from_balance.ok_or_else(|| missing(from))?,
        to_balance.ok_or_else(|| missing(to))?,
    ))
}
