//! The double-entry ledger: every movement of money is two rows under one movement id, a
//! debit (negative delta) on the account paying and a credit (positive delta) on the account
//! paid. An account's balance is kept in its row for cheap locking and reading, and is always
//! its opening balance plus its ledger rows: [`Db::ledger_check`] proves it.

use crate::db::{on_engine, Arg, Business, Db, Sql};
use crate::Result;

/// What [`Db::ledger_check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerReport {
    /// How many accounts exist.
    pub accounts: i64,
    /// The sum of all balances now.
    pub total_balance: i64,
    /// The sum of all opening balances: money only moves, so it equals `total_balance`.
    pub total_opening_balance: i64,
    /// The lowest balance (0 with no accounts); never below zero.
    pub min_balance: i64,
    /// Accounts whose balance is not opening balance + ledger rows.
    pub mismatched_accounts: i64,
    /// Movements that are not exactly one debit and one credit of the same amount.
    pub unbalanced_movements: i64,
}

impl LedgerReport {
    /// Every invariant holds: balances match the ledger, every movement balances, the total
    /// is unchanged, no balance is negative.
    pub fn is_consistent(&self) -> bool {
        self.mismatched_accounts == 0
            && self.unbalanced_movements == 0
            && self.total_balance == self.total_opening_balance
            && self.min_balance >= 0
    }
}

impl Db {
    /// Checks the ledger against the balances (a full scan: for tests, audits and chaos runs,
    /// not for the request path).
    ///
    /// # Errors
    /// [`crate::Error::Database`] when the queries fail.
    pub async fn ledger_check(&self) -> Result<LedgerReport> {
        let sql = &self.sql;
        let (totals, mismatched, unbalanced) = on_engine!(&self.engine, store => (
            store.integers(&sql.ledger_totals, &[]).await?,
            store.integers(&sql.ledger_mismatched_accounts, &[]).await?,
            store.integers(&sql.ledger_unbalanced_movements, &[]).await?,
        ));
        let column = |row: &Option<Vec<i64>>, i: usize| {
            row.as_ref()
                .and_then(|r| r.get(i).copied())
                .ok_or_else(|| crate::Error::Corrupt("a ledger total came back empty".into()))
        };
        Ok(LedgerReport {
            accounts: column(&totals, 0)?,
            total_balance: column(&totals, 1)?,
            total_opening_balance: column(&totals, 2)?,
            min_balance: column(&totals, 3)?,
            mismatched_accounts: column(&mismatched, 0)?,
            unbalanced_movements: column(&unbalanced, 0)?,
        })
    }

    /// Whether the balances equal opening balances plus the ledger, every movement balances
    /// and no balance is negative.
    ///
    /// # Errors
    /// [`crate::Error::Database`] when the queries fail.
    pub async fn ledger_matches_balances(&self) -> Result<bool> {
        Ok(self.ledger_check().await?.is_consistent())
    }
}

/// One movement of money: `amount` from `from` to `to`, two accounts of `tenant`, under `id`.
#[derive(Debug)]
pub(crate) struct Movement<'a> {
    pub(crate) id: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) amount: i64,
    pub(crate) created_at: &'a str,
}

/// Moves the money of `m` inside `tx` with its two ledger rows, and inserts `payment`
/// (the payment row's seven values) beside it when given — only where both accounts exist,
/// `from` has the funds and `to`'s balance stays an `i64`. False when refused: then what
/// was written must not commit: the caller rolls back, then finds out why ([`refusal`]).
/// On PostgreSQL all of it is one statement.
pub(crate) async fn transfer<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut sqlx::Transaction<'_, S::Database>,
    m: &Movement<'_>,
    payment: Option<&[Arg<'_>]>,
) -> Result<bool> {
    debug_assert!(m.amount > 0, "a movement moves a positive amount");
    let (tenant, from, to, debit, credit) = (
        Arg::Str(m.tenant),
        Arg::Str(m.from),
        Arg::Str(m.to),
        Arg::Int(-m.amount),
        Arg::Int(m.amount),
    );
    let conditions = [from, credit, to, Arg::Int(i64::MAX - m.amount)];
    let one_statement = match payment {
        Some(_) => &sql.pay_and_record,
        None => &sql.move_and_record,
    };
    if let Some(statement) = one_statement {
        let args = [
            &[tenant, from, to, from, debit, credit][..],
            &conditions,
            &[from, debit, credit, Arg::Str(m.id), Arg::Str(m.created_at)],
            payment.unwrap_or_default(),
        ]
        .concat();
        let moved = store
            .integers_in(tx, statement, &args)
            .await?
            .and_then(|row| row.first().copied())
            .unwrap_or(0);
        return Ok(moved == 2);
    }
    let moving = [&[from, debit, credit, tenant, from, to][..], &conditions].concat();
    let moved = store.execute_in(tx, &sql.move_checked, &moving).await?;
    if moved != 2 {
        return Ok(false);
    }
    let rows = [
        Arg::Str(m.id),
        tenant,
        Arg::Str(m.from),
        Arg::Int(-m.amount),
        Arg::Str(m.created_at),
        Arg::Str(m.id),
        tenant,
        Arg::Str(m.to),
        Arg::Int(m.amount),
        Arg::Str(m.created_at),
    ];
    store.execute_in(tx, &sql.insert_ledger_pair, &rows).await?;
    if let Some(payment) = payment {
        store.execute_in(tx, &sql.insert_payment, payment).await?;
    }
    Ok(true)
}

/// A payment whose order is claimed inside its own one statement ([`Sql::pay_inline`],
/// PostgreSQL): true when it is paid — record, move, ledger rows and payment row committed
/// at once, in one round trip. False when nothing was written: the order has a record
/// already, or the move is refused (by the statement's check or by the table's
/// constraints); the caller then runs the transaction that says which (replay, 422, 404,
/// 402). `None` where the dialect has no such statement.
pub(crate) async fn pay_inline<S: Business>(
    store: &S,
    sql: &Sql,
    m: &Movement<'_>,
    payment: &[Arg<'_>],
    claim: &idem_sql::InlineClaim<'_>,
) -> Result<Option<bool>> {
    let Some(statement) = &sql.pay_inline else {
        return Ok(None);
    };
    let (tenant, from, to, debit, credit) = (
        Arg::Str(m.tenant),
        Arg::Str(m.from),
        Arg::Str(m.to),
        Arg::Int(-m.amount),
        Arg::Int(m.amount),
    );
    let mut args = vec![
        tenant,
        from,
        to,
        from,
        credit,
        to,
        Arg::Int(i64::MAX - m.amount),
        from,
        debit,
        credit,
        from,
        debit,
        credit,
        Arg::Str(m.id),
        Arg::Str(m.created_at),
    ];
    args.extend_from_slice(payment);
    args.extend(claim.values().into_iter().map(Arg::from));
    match store.integers(statement, &args).await {
        Ok(row) => {
            let moved = row.and_then(|row| row.first().copied()).unwrap_or(0);
            debug_assert!(
                moved == 0 || moved == 2,
                "a payment moves both accounts or none"
            );
            Ok(Some(moved == 2))
        }
        Err(error) if idem_sql::InlineClaim::is_taken(&error) || refused_by_the_table(&error) => {
            Ok(Some(false))
        }
        Err(error) => Err(error.into()),
    }
}

/// True when the table itself refused a move: a balance below zero (the accounts' `CHECK`)
/// or past the largest integer. The statement's own check of the funds reads the locked
/// rows and can see a balance a concurrent payment has changed since (seen under load on
/// PostgreSQL 15: 4 in 100 000 payments); the table's constraints are the final word, and
/// they fail the statement whole, so nothing of it was kept.
fn refused_by_the_table(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db| {
        match db.code().as_deref() {
            // check_violation, on the balance's constraint only
            Some("23514") => db.constraint() == Some("pay_accounts_balance_check"),
            // numeric_value_out_of_range
            Some("22003") => true,
            _ => false,
        }
    })
}

/// Why [`transfer`] refused `m`, read after its transaction was rolled back: the first
/// missing account (404), the payee's balance past the largest integer (400), or else the
/// payer short of funds (402) — true when the move ran, even if a payment since has
/// credited the payer (a 402 is not final: the order may be paid later).
pub(crate) async fn refusal<S: Business>(store: &S, sql: &Sql, m: &Movement<'_>) -> crate::Error {
    debug_assert_ne!(m.from, m.to, "validation refuses payer == payee");
    match (
        balance(store, sql, m.tenant, m.from).await,
        balance(store, sql, m.tenant, m.to).await,
    ) {
        (Err(error), _) | (_, Err(error)) => error.into(),
        (Ok(None), _) => crate::Error::AccountNotFound {
            account_id: m.from.to_owned(),
        },
        (_, Ok(None)) => crate::Error::AccountNotFound {
            account_id: m.to.to_owned(),
        },
        (_, Ok(Some(to))) if to.checked_add(m.amount).is_none() => crate::Error::invalid(
            "amount",
            "the payee's balance would pass the largest integer",
        ),
        _ => crate::Error::InsufficientFunds {
            account_id: m.from.to_owned(),
        },
    }
}

/// The balance of `account` of `tenant`, if it exists.
pub(crate) async fn balance<S: Business>(
    store: &S,
    sql: &Sql,
    tenant: &str,
    account: &str,
) -> sqlx::Result<Option<i64>> {
    let row = store
        .integers(&sql.select_balance, &[Arg::Str(tenant), Arg::Str(account)])
        .await?;
    Ok(row.and_then(|row| row.first().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_needs_every_invariant() {
        let good = LedgerReport {
            accounts: 2,
            total_balance: 10,
            total_opening_balance: 10,
            ..LedgerReport::default()
        };
        assert!(good.is_consistent());
        assert!(!LedgerReport {
            total_balance: 9,
            ..good
        }
        .is_consistent());
        assert!(!LedgerReport {
            min_balance: -1,
            ..good
        }
        .is_consistent());
        assert!(!LedgerReport {
            mismatched_accounts: 1,
            ..good
        }
        .is_consistent());
        assert!(!LedgerReport {
            unbalanced_movements: 1,
            ..good
        }
        .is_consistent());
    }
}
