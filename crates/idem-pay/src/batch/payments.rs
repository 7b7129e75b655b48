//! A batch's payments decided as one set, TigerBeetle's way: every order claimed in one
//! statement, every account they touch locked and read in one statement per tenant (in
//! account-id order, as every payment locks its two), the payments applied in memory in
//! arrival order, then the balances, ledger rows and payment rows written (in one statement
//! on PostgreSQL, one each elsewhere). A batch of `n` payments costs a handful of round
//! trips and one commit, not `n` of each.
//!
//! An order that has a record already (paid before, another order's parameters, a claim
//! expired) or that the batch names twice is not decided here: it runs alone once the
//! batch has committed, where the claim's rules replay or refuse it.

use std::collections::{BTreeMap, BTreeSet};

use idem_sql::SetStep;
use sqlx::Transaction;

use crate::db::{Arg, Business, SetWrite, Sql};
use crate::flows::{Decision, PreparedPayment};
use crate::Result;

/// Decides `payments` (in arrival order) inside the batch's `tx`: one step each.
///
/// # Errors
/// A database error; the batch then fails, nothing of it is kept, and its items run alone.
pub(super) async fn pay_set<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut Transaction<'static, S::Database>,
    payments: &[&PreparedPayment],
) -> Result<Vec<SetStep<Decision>>> {
    let claims: Vec<_> = payments.iter().map(|p| p.answered_claim()).collect();
    let claimed = store.claim_fresh_in(tx, &claims).await?;
    let mut balances = lock_balances(store, sql, tx, payments, &claimed).await?;

    // Applied in memory, in arrival order, against the locked balances.
    let mut paid: Vec<&PreparedPayment> = Vec::new();
    let mut refused: Vec<&PreparedPayment> = Vec::new();
    let mut steps = Vec::with_capacity(payments.len());
    for (p, claimed) in payments.iter().copied().zip(claimed) {
        if !claimed {
            steps.push(SetStep::Alone);
            continue;
        }
        let m = p.movement();
        let (from, to) = ((m.tenant, m.from), (m.tenant, m.to));
        let moved = match (balances.get(&from), balances.get(&to)) {
            (Some(&Some(payer)), Some(&Some(payee))) => payer
                .checked_sub(m.amount)
                .filter(|left| *left >= 0)
                .zip(payee.checked_add(m.amount)),
            _ => None,
        };
        match moved {
            Some((payer, payee)) => {
                balances.insert(from, Some(payer));
                balances.insert(to, Some(payee));
                paid.push(p);
                steps.push(SetStep::Done(p.paid()));
            }
            None => {
                refused.push(p);
                steps.push(SetStep::Done(p.refused()));
            }
        }
    }

    if !refused.is_empty() {
        // Their claims are undone, as a rolled-back transaction's would be: the key stays
        // free (a 402 is not final).
        let keys: Vec<_> = refused
            .iter()
            .map(|p| {
                let c = p.answered_claim().claim;
                (c.scope, c.key)
            })
            .collect();
        store.forget_fresh_in(tx, &keys).await?;
    }
    if !paid.is_empty() {
        let mut writes = balance_writes(&balances, &paid)?;
        writes.extend(row_writes(&paid));
        write_all(store, sql, tx, &writes).await?;
    }
    Ok(steps)
}

/// `(tenant, account)` → its balance, `None` when it does not exist.
type Balances<'p> = BTreeMap<(&'p str, &'p str), Option<i64>>;

/// Locks and reads every account of the claimed payments: per tenant, in account-id order.
async fn lock_balances<'p, S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut Transaction<'static, S::Database>,
    payments: &[&'p PreparedPayment],
    claimed: &[bool],
) -> Result<Balances<'p>> {
    let mut balances: Balances<'p> = BTreeMap::new();
    for (p, _) in payments.iter().zip(claimed).filter(|(_, c)| **c) {
        let m = p.movement();
        balances.insert((m.tenant, m.from), None);
        balances.insert((m.tenant, m.to), None);
    }
    for (tenant, accounts) in by_tenant(balances.keys().copied()) {
        let args: Vec<Arg<'_>> = std::iter::once(tenant)
            .chain(accounts.iter().copied())
            .map(Arg::Str)
            .collect();
        let rows = store
            .named_integers_in(tx, &sql.lock_balances(accounts.len()), &args)
            .await?;
        let found: std::collections::HashMap<String, i64> = rows.into_iter().collect();
        for account in accounts {
            balances.insert((tenant, account), found.get(account).copied());
        }
    }
    Ok(balances)
}

/// The accounts of `keys` (sorted), grouped by tenant.
fn by_tenant<'p>(keys: impl Iterator<Item = (&'p str, &'p str)>) -> Vec<(&'p str, Vec<&'p str>)> {
    let mut tenants: Vec<(&str, Vec<&str>)> = Vec::new();
    for (tenant, account) in keys {
        match tenants.last_mut() {
            Some((last, accounts)) if *last == tenant => accounts.push(account),
            _ => tenants.push((tenant, vec![account])),
        }
    }
    tenants
}

/// The balances the `paid` payments changed: one write per tenant.
fn balance_writes<'p>(
    balances: &Balances<'p>,
    paid: &[&'p PreparedPayment],
) -> Result<Vec<SetWrite<'p>>> {
    let touched: BTreeSet<(&str, &str)> = paid
        .iter()
        .flat_map(|p| {
            let m = p.movement();
            [(m.tenant, m.from), (m.tenant, m.to)]
        })
        .collect();
    let mut writes = Vec::new();
    for (tenant, accounts) in by_tenant(touched.into_iter()) {
        let mut args = Vec::with_capacity(3 * accounts.len() + 1);
        for account in &accounts {
            let balance = balances
                .get(&(tenant, *account))
                .copied()
                .flatten()
                .ok_or_else(|| crate::Error::Internal(format!("{account}: paid, not read")))?;
            args.push(Arg::Str(account));
            args.push(Arg::Int(balance));
        }
        args.push(Arg::Str(tenant));
        args.extend(accounts.iter().map(|a| Arg::Str(a)));
        writes.push(SetWrite {
            text: Sql::set_balances(accounts.len()),
            args,
            rows: accounts.len() as u64,
        });
    }
    Ok(writes)
}

/// The `paid` payments' ledger rows (a debit and a credit each) and payment rows.
fn row_writes<'p>(paid: &[&'p PreparedPayment]) -> [SetWrite<'p>; 2] {
    let mut ledger = Vec::with_capacity(10 * paid.len());
    for p in paid {
        let m = p.movement();
        for (account, delta) in [(m.from, -m.amount), (m.to, m.amount)] {
            ledger.extend([
                Arg::Str(m.id),
                Arg::Str(m.tenant),
                Arg::Str(account),
                Arg::Int(delta),
                Arg::Str(m.created_at),
            ]);
        }
    }
    let rows = paid.len() as u64;
    [
        SetWrite {
            text: Sql::insert_ledger_rows(2 * paid.len()),
            args: ledger,
            rows: 2 * rows,
        },
        SetWrite {
            text: Sql::insert_payments(paid.len()),
            args: paid.iter().flat_map(|p| p.row()).collect(),
            rows,
        },
    ]
}

/// Runs `writes` in `tx` — one statement where the dialect can, else one each — and checks
/// that each changed the rows it must.
async fn write_all<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut Transaction<'static, S::Database>,
    writes: &[SetWrite<'_>],
) -> Result<()> {
    let changed: Vec<u64> = match sql.combined_writes(writes) {
        Some(statement) => {
            let args: Vec<Arg<'_>> = writes.iter().flat_map(|w| w.args.iter().copied()).collect();
            let counts = store.integers_in(tx, &statement, &args).await?;
            counts
                .unwrap_or_default()
                .into_iter()
                .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
                .collect()
        }
        None => {
            let mut changed = Vec::with_capacity(writes.len());
            for write in writes {
                changed.push(
                    store
                        .execute_in(tx, &sql.set_statement(write), &write.args)
                        .await?,
                );
            }
            changed
        }
    };
    let wanted: Vec<u64> = writes.iter().map(|w| w.rows).collect();
    if changed != wanted {
        return Err(crate::Error::Internal(format!(
            "a batch's writes changed {changed:?} rows, not {wanted:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_group_by_tenant_in_order() {
        let keys = [("t1", "a"), ("t1", "b"), ("t2", "a")];
        assert_eq!(
            by_tenant(keys.into_iter()),
            vec![("t1", vec!["a", "b"]), ("t2", vec!["a"])]
        );
    }
}
