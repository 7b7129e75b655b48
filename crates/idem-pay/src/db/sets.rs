//! The multi-row statements of a batch's set of payments (`crate::batch`): each names as
//! many rows as the batch needs, so they are built per call, in the dialect of [`Sql`].

use super::Sql;

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

    /// Sets the balances of `n` accounts of one tenant, locked already. Binds `n` pairs
    /// (account id, new balance), the tenant, then the `n` account ids.
    pub(crate) fn set_balances(&self, n: usize) -> String {
        self.dialect.statement(format!(
            "UPDATE pay_accounts SET balance = CASE account_id {} END \
             WHERE tenant = ? AND account_id IN ({})",
            marks(n, "WHEN ? THEN ?").replace(", ", " "),
            marks(n, "?"),
        ))
    }

    /// Inserts `n` ledger rows; binds movement id, tenant, account id, delta, created_at
    /// per row.
    pub(crate) fn insert_ledger_rows(&self, n: usize) -> String {
        self.dialect.statement(format!(
            "INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) VALUES {}",
            marks(n, "(?, ?, ?, ?, ?)"),
        ))
    }

    /// Inserts `n` payment rows; binds each payment's seven values (as
    /// [`Sql::insert_payment`]).
    pub(crate) fn insert_payments(&self, n: usize) -> String {
        self.dialect.statement(format!(
            "INSERT INTO pay_payments (payment_id, tenant, order_id, payer, payee, amount, created_at) VALUES {}",
            marks(n, "(?, ?, ?, ?, ?, ?, ?)"),
        ))
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
        let set = sql.set_balances(2);
        assert!(
            set.contains("CASE account_id WHEN $1 THEN $2 WHEN $3 THEN $4 END")
                && set.contains("tenant = $5 AND account_id IN ($6, $7)"),
            "{set}"
        );
        assert!(
            sql.insert_ledger_rows(2).contains("$10)")
                && !sql.insert_ledger_rows(2).contains("$11")
        );
        assert!(sql.insert_payments(2).ends_with("$14)"));
        let mysql = Sql::new(Backend::MySql.dialect());
        assert_eq!(mysql.set_balances(2).matches('?').count(), 7);
    }
}
