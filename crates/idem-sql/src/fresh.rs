//! Many fresh keys claimed in one statement inside the caller's transaction
//! ([`TransactionalStore::claim_fresh_in`](crate::TransactionalStore::claim_fresh_in)): the
//! set-based path of a batch, where a claim per key would be a round trip per key.
//!
//! Only a key with no row at all is claimed here; a key with a record in any state (live,
//! expired, in progress) is left to `begin_answered_in`, whose rules decide it. So this
//! path never replays, refuses or replaces anything: it is an insert that skips what is
//! there, and the unique key of `idem_records` stays the only arbiter.

use std::collections::HashSet;

use idem::{Claim, Key, Scope, StoredResponse};

/// A key to claim with its answer already known: the record is born completed with it,
/// as [`TransactionalStore::begin_answered_in`](crate::TransactionalStore::begin_answered_in)'s.
#[derive(Debug, Clone, Copy)]
pub struct AnsweredClaim<'a> {
    /// The key, its fingerprint and its time to live (the lease is not used).
    pub claim: Claim<'a>,
    /// What the record answers from its birth.
    pub answer: &'a StoredResponse,
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// How one backend with `?` placeholders spells the set statements (PostgreSQL binds
/// arrays instead: `postgres::fresh`).
#[derive(Debug)]
pub(crate) struct Spelling {
    /// The database's clock in Unix milliseconds.
    pub(crate) now: &'static str,
    /// `INSERT … ON CONFLICT DO NOTHING RETURNING` (SQLite); without it (MySQL, MariaDB)
    /// the rows there are read first, under a shared lock.
    pub(crate) returning: bool,
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// The columns of a record row, in the order the inserts write them.
const COLUMNS: &str =
    "(scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at)";

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// How many times the spelling without `RETURNING` reads and inserts when a concurrent
/// insert of one of its keys beats it between the two (each time, that key drops out).
pub(crate) const INSERT_ATTEMPTS: u32 = 4;

#[cfg(any(feature = "sqlite", feature = "mysql"))]
impl Spelling {
    /// Inserts `rows` records born completed (state 1, token 1), one clock reading for
    /// all their times; with [`Spelling::returning`], skips keys that have a row and
    /// returns `(scope, idem_key)` of those inserted.
    pub(crate) fn insert(&self, rows: usize) -> String {
        let now = self.now;
        let row = format!("(?, ?, ?, 1, 1, {now}, ?, {now}, {now} + ?)");
        let tail = if self.returning {
            " ON CONFLICT (scope, idem_key) DO NOTHING RETURNING scope, idem_key"
        } else {
            ""
        };
        format!(
            "INSERT INTO idem_records {COLUMNS} VALUES {}{tail}",
            vec![row; rows].join(", ")
        )
    }

    /// `WHERE` condition naming `rows` keys: binds scope, key per row.
    fn keys(rows: usize) -> String {
        vec!["(scope = ? AND idem_key = ?)"; rows].join(" OR ")
    }

    /// Reads which of `rows` keys have a row, under a shared lock (a concurrent insert of
    /// one is waited for): for the spelling without `RETURNING`. Binds scope, key per row.
    pub(crate) fn existing(&self, rows: usize) -> String {
        format!(
            "SELECT CAST(scope AS CHAR), CAST(idem_key AS CHAR) FROM idem_records WHERE {} \
             LOCK IN SHARE MODE",
            Self::keys(rows)
        )
    }

    /// Deletes the records of `rows` keys. Binds scope, key per row.
    pub(crate) fn forget(&self, rows: usize) -> String {
        format!("DELETE FROM idem_records WHERE {}", Self::keys(rows))
    }
}

/// The index of each claim whose key did not come earlier in `claims` (a key named twice
/// is claimed for its first claim only), in key order: rows inserted in key order make
/// two sets racing for the same keys wait for each other in one order, not deadlock.
pub(crate) fn first_of_each_key(claims: &[AnsweredClaim<'_>]) -> Vec<usize> {
    let mut seen: HashSet<(&Scope, &Key)> = HashSet::with_capacity(claims.len());
    let mut first: Vec<usize> = (0..claims.len())
        .filter(|&i| seen.insert((claims[i].claim.scope, claims[i].claim.key)))
        .collect();
    first.sort_unstable_by_key(|&i| (claims[i].claim.scope, claims[i].claim.key));
    first
}

/// Which of `claims` were claimed, given the `(scope, key)` pairs that were inserted.
pub(crate) fn claimed(
    claims: &[AnsweredClaim<'_>],
    candidates: &[usize],
    inserted: &HashSet<(String, String)>,
) -> Vec<bool> {
    let mut out = vec![false; claims.len()];
    for &i in candidates {
        let c = &claims[i].claim;
        out[i] = inserted.contains(&(c.scope.as_str().to_owned(), c.key.as_str().to_owned()));
    }
    out
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// Defines the backend's `claim_fresh` and `forget_fresh` (called by
/// `impl_transactional!`) from its [`Spelling`] `$spelling`, for database `$db`.
macro_rules! fresh_claims {
    ($db:ty, $spelling:expr) => {
        /// [`TransactionalStore::claim_fresh_in`](crate::TransactionalStore::claim_fresh_in) on `conn`.
        async fn claim_fresh(
            conn: &mut <$db as sqlx::Database>::Connection,
            claims: &[$crate::AnsweredClaim<'_>],
        ) -> Result<Vec<bool>, sqlx::Error> {
            let spelling: &$crate::fresh::Spelling = &$spelling;
            let mut candidates = $crate::fresh::first_of_each_key(claims);
            if candidates.is_empty() {
                return Ok(vec![false; claims.len()]);
            }
            macro_rules! bind_rows {
                ($query:expr, $rows:expr) => {{
                    let mut query = $query;
                    for (&i, answer) in $rows {
                        let c = &claims[i].claim;
                        query = query
                            .bind(c.scope.as_str())
                            .bind(c.key.as_str())
                            .bind(&c.fingerprint.as_bytes()[..])
                            .bind(answer)
                            .bind($crate::common::ms(c.ttl));
                    }
                    query
                }};
            }
            let encode = |candidates: &[usize]| -> Vec<Vec<u8>> {
                candidates
                    .iter()
                    .map(|&i| claims[i].answer.encode())
                    .collect()
            };
            let inserted: std::collections::HashSet<(String, String)> = if spelling.returning {
                let encoded = encode(&candidates);
                let sql = spelling.insert(candidates.len());
                let query = bind_rows!(
                    sqlx::query_as::<_, (String, String)>(&sql),
                    candidates.iter().zip(&encoded)
                );
                query.fetch_all(&mut *conn).await?.into_iter().collect()
            } else {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let sql = spelling.existing(candidates.len());
                    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
                    for &i in &candidates {
                        let c = &claims[i].claim;
                        query = query.bind(c.scope.as_str()).bind(c.key.as_str());
                    }
                    let there: std::collections::HashSet<(String, String)> =
                        query.fetch_all(&mut *conn).await?.into_iter().collect();
                    candidates.retain(|&i| {
                        let c = &claims[i].claim;
                        !there.contains(&(c.scope.as_str().to_owned(), c.key.as_str().to_owned()))
                    });
                    if candidates.is_empty() {
                        return Ok(vec![false; claims.len()]);
                    }
                    let encoded = encode(&candidates);
                    let sql = spelling.insert(candidates.len());
                    let query = bind_rows!(sqlx::query(&sql), candidates.iter().zip(&encoded));
                    match query.execute(&mut *conn).await {
                        Ok(_) => break,
                        // Another transaction inserted one of the keys since the read. A
                        // failed statement is undone on its own (the transaction goes on),
                        // so read again: that key now has a row and is left out.
                        Err(sqlx::Error::Database(e))
                            if e.is_unique_violation()
                                && attempts < $crate::fresh::INSERT_ATTEMPTS => {}
                        Err(e) => return Err(e),
                    }
                }
                candidates
                    .iter()
                    .map(|&i| {
                        let c = &claims[i].claim;
                        (c.scope.as_str().to_owned(), c.key.as_str().to_owned())
                    })
                    .collect()
            };
            Ok($crate::fresh::claimed(claims, &candidates, &inserted))
        }

        /// [`TransactionalStore::forget_fresh_in`](crate::TransactionalStore::forget_fresh_in) on `conn`.
        async fn forget_fresh(
            conn: &mut <$db as sqlx::Database>::Connection,
            keys: &[(&idem::Scope, &idem::Key)],
        ) -> Result<(), sqlx::Error> {
            if keys.is_empty() {
                return Ok(());
            }
            let spelling: &$crate::fresh::Spelling = &$spelling;
            let sql = spelling.forget(keys.len());
            let mut query = sqlx::query(&sql);
            for (scope, key) in keys {
                query = query.bind(scope.as_str()).bind(key.as_str());
            }
            query.execute(&mut *conn).await?;
            Ok(())
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use fresh_claims;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use idem::{Fingerprint, TTL_FOREVER};

    use super::*;

    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    const SQLITE: Spelling = Spelling {
        now: "NOW_MS",
        returning: true,
    };
    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    const MY: Spelling = Spelling {
        now: "NOW_MS",
        returning: false,
    };

    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    #[test]
    fn statements_bind_every_row() {
        let sql = SQLITE.insert(3);
        assert_eq!(sql.matches('?').count(), 15, "{sql}");
        assert!(sql.ends_with("RETURNING scope, idem_key"), "{sql}");
        let sql = MY.insert(2);
        assert_eq!(sql.matches('?').count(), 10, "{sql}");
        assert!(!sql.contains("RETURNING"), "{sql}");
        assert_eq!(MY.existing(2).matches('?').count(), 4);
        assert!(MY
            .forget(2)
            .ends_with("(scope = ? AND idem_key = ?) OR (scope = ? AND idem_key = ?)"));
    }

    #[test]
    fn a_key_named_twice_is_claimed_for_its_first_claim() {
        let scope = Scope::new("s").expect("scope");
        let (a, b) = (Key::new("a").expect("key"), Key::new("b").expect("key"));
        let fp = Fingerprint::of_bytes("POST", "/", b"{}");
        let answer = StoredResponse::new(201, "{}");
        let claim = |key| AnsweredClaim {
            claim: Claim::new(&scope, key, &fp, Duration::ZERO, TTL_FOREVER),
            answer: &answer,
        };
        let claims = [claim(&b), claim(&a), claim(&a)];
        assert_eq!(first_of_each_key(&claims), vec![1, 0], "in key order");
        let inserted = HashSet::from([("s".to_owned(), "a".to_owned())]);
        assert_eq!(
            claimed(&claims, &[1, 0], &inserted),
            vec![false, true, false]
        );
    }
}
