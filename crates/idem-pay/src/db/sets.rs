//! The multi-row statements of a batch's set of payments (`crate::batch`). Where arrays
//! bind (PostgreSQL) each is one fixed text, prepared once per connection, and the set's
//! writes are one statement; elsewhere each names as many rows as the batch needs, built
//! per call in the dialect of [`Sql`], and the writes run one statement each.

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

    /// Binds arrays ([`ARRAY_LOCK_BALANCES`], [`ARRAY_WRITES`]) rather than a placeholder
    /// per row.
    pub(crate) fn binds_arrays(&self) -> bool {
        self.dialect.arrays
    }

    /// One write's statement in this dialect.
    pub(crate) fn set_statement(&self, write: &SetWrite<'_>) -> String {
        self.dialect.statement(write.text.clone())
    }
}

/// [`Sql::lock_balances`] with the accounts bound as one array (PostgreSQL): binds the
/// tenant and the account ids.
pub(crate) const ARRAY_LOCK_BALANCES: &str = "SELECT account_id::text, balance \
     FROM pay_accounts WHERE tenant = $1 AND account_id = ANY($2::text[]) \
     ORDER BY account_id FOR UPDATE";

/// A set's writes as one statement of arrays (PostgreSQL), whatever the set's size:
/// balances set (tenant, account id, balance), ledger rows inserted (movement id, tenant,
/// account id, delta, created_at) and payment rows inserted (the seven values of
/// [`Sql::insert_payment`]); returns the rows each of the three changed.
pub(crate) const ARRAY_WRITES: &str = "WITH \
     b AS (UPDATE pay_accounts AS a SET balance = v.balance \
       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (tenant, account_id, balance) \
       WHERE a.tenant = v.tenant AND a.account_id = v.account_id RETURNING 1), \
     l AS (INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) \
       SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[]) \
       RETURNING 1), \
     p AS (INSERT INTO pay_payments \
       (payment_id, tenant, order_id, payer, payee, amount, created_at) \
       SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
       $14::bigint[], $15::text[]) RETURNING 1) \
     SELECT (SELECT COUNT(*) FROM b), (SELECT COUNT(*) FROM l), (SELECT COUNT(*) FROM p)";

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
        assert!(sql.binds_arrays());
        assert!(ARRAY_WRITES.contains("$15::text[]") && !ARRAY_WRITES.contains("$16"));
        let mysql = Sql::new(Backend::MySql.dialect());
        assert!(!mysql.binds_arrays());
        let write = SetWrite {
            text: Sql::insert_payments(1),
            args: Vec::new(),
            rows: 1,
        };
        assert_eq!(mysql.set_statement(&write), write.text);
    }
}
