//! [`TransactionalStore::claim_fresh_in`](crate::TransactionalStore::claim_fresh_in) and
//! `forget_fresh_in` on PostgreSQL: the keys bound as arrays (`unnest`), so a set of any
//! size is one statement text, prepared once per connection and planned once, rather than
//! a text per set size.

use std::collections::HashSet;

use sqlx::{PgConnection, Postgres};

use crate::fresh::{claimed, first_of_each_key};
use crate::AnsweredClaim;

/// Inserts the records born completed (state 1, token 1; `clock_timestamp()` read once for
/// all) of keys with no row, in array order; returns `(scope, idem_key)` of those inserted.
const CLAIM: &str = concat!(
    "INSERT INTO idem_records ",
    "(scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) ",
    "SELECT v.s, v.k, v.f, 1, 1, c.now_ms, v.r, c.now_ms, c.now_ms + v.t ",
    "FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::bigint[]) ",
    "AS v (s, k, f, r, t) CROSS JOIN (SELECT ",
    now!(),
    " AS now_ms) AS c ",
    "ON CONFLICT (scope, idem_key) DO NOTHING RETURNING scope, idem_key"
);

/// Deletes the records of the `(scope, idem_key)` pairs of two arrays.
const FORGET: &str = "DELETE FROM idem_records WHERE (scope, idem_key) IN \
                      (SELECT * FROM unnest($1::text[], $2::text[]))";

/// Claims the fresh keys of `claims` on `conn`, inserted in key order.
pub(super) async fn claim_fresh(
    conn: &mut PgConnection,
    claims: &[AnsweredClaim<'_>],
) -> Result<Vec<bool>, sqlx::Error> {
    let candidates = first_of_each_key(claims);
    if candidates.is_empty() {
        return Ok(vec![false; claims.len()]);
    }
    let n = candidates.len();
    let (mut scopes, mut keys, mut fingerprints, mut answers, mut ttls) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for &i in &candidates {
        let c = &claims[i].claim;
        scopes.push(c.scope.as_str());
        keys.push(c.key.as_str());
        fingerprints.push(&c.fingerprint.as_bytes()[..]);
        answers.push(claims[i].answer.encode());
        ttls.push(crate::common::ms(c.ttl));
    }
    let inserted: HashSet<(String, String)> = sqlx::query_as::<Postgres, (String, String)>(CLAIM)
        .bind(scopes)
        .bind(keys)
        .bind(fingerprints)
        .bind(answers)
        .bind(ttls)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    Ok(claimed(claims, &candidates, &inserted))
}

/// Deletes the records of `keys` on `conn`.
pub(super) async fn forget_fresh(
    conn: &mut PgConnection,
    keys: &[(&idem::Scope, &idem::Key)],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (scopes, keys): (Vec<&str>, Vec<&str>) = keys
        .iter()
        .map(|(scope, key)| (scope.as_str(), key.as_str()))
        .unzip();
    sqlx::query(FORGET)
        .bind(scopes)
        .bind(keys)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_arrays_of_any_length() {
        assert!(
            CLAIM.contains("$5::bigint[]") && !CLAIM.contains("$6"),
            "{CLAIM}"
        );
        assert!(CLAIM.contains("clock_timestamp()"), "{CLAIM}");
        assert!(
            FORGET.contains("unnest($1::text[], $2::text[])"),
            "{FORGET}"
        );
    }
}
