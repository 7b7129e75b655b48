//! The multi-row statements of a batch's set of payments (`crate::batch`): each names as
//! many rows as the batch needs, so they are built per call, in the dialect of [`Sql`].
//! The set's writes go as one statement where the dialect has data-modifying CTEs
//! (PostgreSQL), one statement each elsewhere.

use super::{Arg, Sql};

/// One write of a set: a statement with `?` placeholders, its values, and how many rows it
/// must change (anything else fails the batch).
#[derive(Debug)]
pub(crate) struct SetWrite<'a> {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) rows: u64,
}

impl Sql {
    /// Locks `n` accounts of one tenant in account-id order — the order every payment
    /// locks its two in — and reads `(account_id, balance)` of those that exist. Binds the
    /// tenant, then the `n` account ids.
    pub(crate) fn lock_balances(&self, n: usize) -> String {
        let d = self.dialect;
        self.dialect.statement(format!(
            "SELECT CAST(account_id AS {}), balance FROM pay_accounts WHERE tenant = ? \
             AND account_id IN ({}) ORDER BY account_id{}",
            d.text_type,
            marks(n, "?"),
            d.for_update,
        ))
    }

    /// Sets the balances of `n` accounts of one tenant, locked already (`?`
    /// placeholders, for a [`SetWrite`]). Binds `n` pairs (account id, new balance), the
    /// tenant, then the `n` account ids.
    pub(crate) fn set_balances(n: usize) -> String {
        format!(
            "UPDATE pay_accounts SET balance = CASE account_id {} END \
             WHERE tenant = ? AND account_id IN ({})",
            marks(n, "WHEN ? THEN ?").replace(", ", " "),
            marks(n, "?"),
        )
    }

    /// Inserts `n` ledger rows (`?` placeholders); binds movement id, tenant, account id,
    /// delta, created_at per row.
    pub(crate) fn insert_ledger_rows(n: usize) -> String {
        format!(
            "INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) VALUES {}",
            marks(n, "(?, ?, ?, ?, ?)"),
        )
    }

    /// Inserts `n` payment rows (`?` placeholders); binds each payment's seven values (as
    /// [`Sql::insert_payment`]).
    pub(crate) fn insert_payments(n: usize) -> String {
        format!(
            "INSERT INTO pay_payments (payment_id, tenant, order_id, payer, payee, amount, created_at) VALUES {}",
            marks(n, "(?, ?, ?, ?, ?, ?, ?)"),
        )
    }

    /// `writes` as one statement that returns how many rows each changed, in order, where
    /// the dialect has data-modifying CTEs; `None` elsewhere (run each with
    /// [`Sql::set_statement`]). Binds every write's values, in order.
    pub(crate) fn combined_writes(&self, writes: &[SetWrite<'_>]) -> Option<String> {
        if !self.dialect.data_modifying_cte {
            return None;
        }
        let ctes: Vec<String> = writes
            .iter()
            .enumerate()
            .map(|(i, w)| format!("w{i} AS ({} RETURNING 1)", w.text))
            .collect();
        let counts: Vec<String> = (0..writes.len())
            .map(|i| format!("(SELECT COUNT(*) FROM w{i})"))
            .collect();
        Some(self.dialect.statement(format!(
            "WITH {} SELECT {}",
            ctes.join(", "),
            counts.join(", ")
        )))
    }

    /// One write's statement in this dialect.
    pub(crate) fn set_statement(&self, write: &SetWrite<'_>) -> String {
        self.dialect.statement(write.text.clone())
    }
}

/// `n` copies of `each`, comma-separated.
fn marks(n: usize, each: &str) -> String {
    vec![each; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::Backend;
    use super::*;

    #[test]
    fn set_statements_bind_what_they_say() {
        let sql = Sql::new(Backend::Postgres.dialect());
        let lock = sql.lock_balances(3);
        assert!(
            lock.contains("IN ($2, $3, $4)") && lock.ends_with("FOR UPDATE"),
            "{lock}"
        );
        let set = Sql::set_balances(2);
        assert!(
            set.contains("CASE account_id WHEN ? THEN ? WHEN ? THEN ? END")
                && set.contains("tenant = ? AND account_id IN (?, ?)"),
            "{set}"
        );
        assert_eq!(Sql::insert_ledger_rows(2).matches('?').count(), 10);
        assert_eq!(Sql::insert_payments(2).matches('?').count(), 14);
        let writes = [
            SetWrite {
                text: Sql::insert_ledger_rows(1),
                args: Vec::new(),
                rows: 1,
            },
            SetWrite {
                text: Sql::insert_payments(1),
                args: Vec::new(),
                rows: 1,
            },
        ];
        let combined = sql.combined_writes(&writes).expect("PostgreSQL combines");
        assert!(
            combined.contains("w1 AS (INSERT INTO pay_payments")
                && combined.contains("$12")
                && combined.ends_with("(SELECT COUNT(*) FROM w0), (SELECT COUNT(*) FROM w1)"),
            "{combined}"
        );
        let mysql = Sql::new(Backend::MySql.dialect());
        assert!(mysql.combined_writes(&writes).is_none());
        assert_eq!(mysql.set_statement(&writes[0]), writes[0].text);
    }
}
