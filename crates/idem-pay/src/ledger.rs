//! The double-entry ledger: every movement of money is two rows under one movement id, a
//! debit (negative delta) on the account paying and a credit (positive delta) on the account
//! paid. An account's balance is kept in its row for cheap locking and reading, and is always
//! its opening balance plus its ledger rows: [`Db::ledger_check`] proves it.

use sqlx::{Any, Row, Transaction};

use crate::db::Db;
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
        let totals = sqlx::query(&self.sql.ledger_totals)
            .fetch_one(&self.pool)
            .await?;
        let mismatched: i64 = sqlx::query(&self.sql.ledger_mismatched_accounts)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let unbalanced: i64 = sqlx::query(&self.sql.ledger_unbalanced_movements)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(LedgerReport {
            accounts: totals.try_get(0)?,
            total_balance: totals.try_get(1)?,
            total_opening_balance: totals.try_get(2)?,
            min_balance: totals.try_get(3)?,
            mismatched_accounts: mismatched,
            unbalanced_movements: unbalanced,
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

/// Moves `amount` from `from` to `to` inside `tx`: both balances and both ledger rows.
/// The caller has locked both accounts and checked that `from` has the funds.
pub(crate) async fn transfer(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    movement_id: &str,
    from: &str,
    to: &str,
    amount: i64,
    created_at: &str,
) -> Result<()> {
    debug_assert!(amount > 0, "a movement moves a positive amount");
    // Both statements start with `move_between`'s binds: payer, its delta, the payee's,
    // then the pair.
    let moving = |sql| {
        sqlx::query(sql)
            .bind(from)
            .bind(-amount)
            .bind(amount)
            .bind(from)
            .bind(to)
    };
    if let Some(sql) = &db.sql.move_and_record {
        let recorded = moving(sql)
            .bind(from)
            .bind(-amount)
            .bind(amount)
            .bind(movement_id)
            .bind(created_at)
            .execute(&mut **tx)
            .await?;
        return expect_two(recorded.rows_affected(), "ledger rows");
    }
    let moved = moving(&db.sql.move_between).execute(&mut **tx).await?;
    expect_two(moved.rows_affected(), "account rows")?;
    sqlx::query(&db.sql.insert_ledger_pair)
        .bind(movement_id)
        .bind(from)
        .bind(-amount)
        .bind(created_at)
        .bind(movement_id)
        .bind(to)
        .bind(amount)
        .bind(created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A transfer touches exactly two accounts and writes exactly two ledger rows.
fn expect_two(rows: u64, what: &str) -> Result<()> {
    if rows == 2 {
        Ok(())
    } else {
        Err(crate::Error::Corrupt(format!(
            "a transfer wrote {rows} {what} instead of 2"
        )))
    }
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
