//! A batch's payments decided as one set, TigerBeetle's way: every order claimed in one
//! statement, every account they touch locked and read in one statement per tenant (in
//! account-id order, as every payment locks its two), the payments applied in memory in
//! arrival order, then the balances, ledger rows and payment rows written (in one statement
//! of arrays on PostgreSQL, one statement each elsewhere). A batch of `n` payments costs a
//! handful of round trips and one commit, not `n` of each.
//!
//! An order that has a record already (paid before, another order's parameters, a claim
//! expired) or that the batch names twice is not decided here: it runs alone once the
//! batch has committed, where the claim's rules replay or refuse it.

use std::collections::{BTreeMap, BTreeSet};

use idem_sql::SetStep;
use sqlx::Transaction;

use crate::db::{Arg, ArrayArg, Business, SetWrite, Sql, ARRAY_LOCK_BALANCES, ARRAY_WRITES};
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
        let balances = new_balances(&balances, &paid)?;
        if sql.binds_arrays() {
            write_arrays(store, tx, &balances, &paid).await?;
        } else {
            let mut writes = balance_writes(&balances);
            writes.extend(row_writes(&paid));
            write_each(store, sql, tx, &writes).await?;
        }
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
        let rows = if sql.binds_arrays() {
            let args = [ArrayArg::Str(tenant), ArrayArg::Strs(accounts.clone())];
            store
                .named_integers_of_arrays_in(tx, ARRAY_LOCK_BALANCES, &args)
                .await?
        } else {
            let sql = sql.lock_balances(accounts.len());
            store.named_integers_in(tx, &sql, &args).await?
        };
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

/// A balance the set changed: tenant, account id, new balance (in key order).
type NewBalance<'p> = (&'p str, &'p str, i64);

/// The balances the `paid` payments changed, in `(tenant, account)` order.
fn new_balances<'p>(
    balances: &Balances<'p>,
    paid: &[&'p PreparedPayment],
) -> Result<Vec<NewBalance<'p>>> {
    let touched: BTreeSet<(&str, &str)> = paid
        .iter()
        .flat_map(|p| {
            let m = p.movement();
            [(m.tenant, m.from), (m.tenant, m.to)]
        })
        .collect();
    touched
        .into_iter()
        .map(|(tenant, account)| {
            let balance = balances
                .get(&(tenant, account))
                .copied()
                .flatten()
                .ok_or_else(|| crate::Error::Internal(format!("{account}: paid, not read")))?;
            Ok((tenant, account, balance))
        })
        .collect()
}

/// `balances` set: one write per tenant.
fn balance_writes<'p>(balances: &[NewBalance<'p>]) -> Vec<SetWrite<'p>> {
    let keys = balances
        .iter()
        .map(|&(tenant, account, _)| (tenant, account));
    by_tenant(keys)
        .into_iter()
        .map(|(tenant, accounts)| {
            let mut args = Vec::with_capacity(3 * accounts.len() + 1);
            for &(_, account, balance) in balances.iter().filter(|b| b.0 == tenant) {
                args.push(Arg::Str(account));
                args.push(Arg::Int(balance));
            }
            args.push(Arg::Str(tenant));
            args.extend(accounts.iter().map(|a| Arg::Str(a)));
            SetWrite {
                text: Sql::set_balances(accounts.len()),
                args,
                rows: accounts.len() as u64,
            }
        })
        .collect()
}

/// The ledger rows of `paid` (a debit and a credit each): movement id, tenant, account
/// id, delta, created_at.
fn ledger_rows<'a, 'p>(paid: &'a [&'p PreparedPayment]) -> impl Iterator<Item = [Arg<'p>; 5]> + 'a {
    paid.iter().flat_map(|p| {
        let m = p.movement();
        [(m.from, -m.amount), (m.to, m.amount)].map(|(account, delta)| {
            [
                Arg::Str(m.id),
                Arg::Str(m.tenant),
                Arg::Str(account),
                Arg::Int(delta),
                Arg::Str(m.created_at),
            ]
        })
    })
}

/// The `paid` payments' ledger rows and payment rows.
fn row_writes<'p>(paid: &[&'p PreparedPayment]) -> [SetWrite<'p>; 2] {
    let rows = paid.len() as u64;
    [
        SetWrite {
            text: Sql::insert_ledger_rows(2 * paid.len()),
            args: ledger_rows(paid).flatten().collect(),
            rows: 2 * rows,
        },
        SetWrite {
            text: Sql::insert_payments(paid.len()),
            args: paid.iter().flat_map(|p| p.row()).collect(),
            rows,
        },
    ]
}

/// `rows` as columns of arrays: each column all texts or all integers.
fn columns<'p, const W: usize>(
    rows: impl Iterator<Item = [Arg<'p>; W]>,
) -> Result<[ArrayArg<'p>; W]> {
    let mut columns: [(Vec<&'p str>, Vec<i64>); W] = std::array::from_fn(|_| Default::default());
    for row in rows {
        for (column, arg) in columns.iter_mut().zip(row) {
            match arg {
                Arg::Str(text) => column.0.push(text),
                Arg::Int(int) => column.1.push(int),
                Arg::Bytes(_) => {
                    return Err(crate::Error::Internal("a set's rows hold no bytes".into()))
                }
            }
        }
    }
    let mut out = Vec::with_capacity(W);
    for (texts, ints) in columns {
        out.push(match (texts.is_empty(), ints.is_empty()) {
            (_, true) => ArrayArg::Strs(texts),
            (true, false) => ArrayArg::Ints(ints),
            (false, false) => {
                return Err(crate::Error::Internal(
                    "a column of texts and integers".into(),
                ))
            }
        });
    }
    out.try_into()
        .map_err(|_| crate::Error::Internal("a row's width changed".into()))
}

/// Writes the set as one statement of arrays ([`ARRAY_WRITES`]) and checks that each of
/// its three parts changed the rows it must.
async fn write_arrays<S: Business>(
    store: &S,
    tx: &mut Transaction<'static, S::Database>,
    balances: &[NewBalance<'_>],
    paid: &[&PreparedPayment],
) -> Result<()> {
    let balance_rows = balances.iter().map(|&(tenant, account, balance)| {
        [Arg::Str(tenant), Arg::Str(account), Arg::Int(balance)]
    });
    let mut args: Vec<ArrayArg<'_>> = Vec::with_capacity(15);
    args.extend(columns(balance_rows)?);
    args.extend(columns(ledger_rows(paid))?);
    args.extend(columns(paid.iter().map(|p| p.row()))?);
    let changed: Vec<u64> = store
        .integers_of_arrays_in(tx, ARRAY_WRITES, &args)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
        .collect();
    let rows = paid.len() as u64;
    check_changed(changed, vec![balances.len() as u64, 2 * rows, rows])
}

/// Fails the batch unless each write changed the rows it must.
fn check_changed(changed: Vec<u64>, wanted: Vec<u64>) -> Result<()> {
    if changed != wanted {
        return Err(crate::Error::Internal(format!(
            "a batch's writes changed {changed:?} rows, not {wanted:?}"
        )));
    }
    Ok(())
}

/// Runs `writes` in `tx`, one statement each, and checks that each changed the rows it
/// must.
async fn write_each<S: Business>(
    store: &S,
    sql: &Sql,
    tx: &mut Transaction<'static, S::Database>,
    writes: &[SetWrite<'_>],
) -> Result<()> {
    let mut changed = Vec::with_capacity(writes.len());
    for write in writes {
        changed.push(
            store
                .execute_in(tx, &sql.set_statement(write), &write.args)
                .await?,
        );
    }
    check_changed(changed, writes.iter().map(|w| w.rows).collect())
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
