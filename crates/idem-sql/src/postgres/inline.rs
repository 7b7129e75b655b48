//! [`InlineClaim`]: a fresh key's answered claim written into one statement of the
//! caller's own, so that a handler whose writes fit in one statement commits the record and
//! its effects in one round trip, with no `BEGIN` and no `COMMIT` of its own.

use idem::{Claim, StoredResponse};

use crate::common::ms;

/// The index of the record table's primary key, named by a duplicate key's error.
const PRIMARY_KEY: &str = "idem_records_pkey";

/// How many parameters the claim's insert numbers.
const PARAMETERS: usize = 5;

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// [`TransactionalStore::begin_answered_in`](crate::TransactionalStore::begin_answered_in)'s
/// insert of a fresh key, as a data-modifying CTE the caller puts in one statement of its
/// own (PostgreSQL): the record is born completed with the answer, and it and the
/// statement's other writes commit together or not at all.
///
/// It covers the fresh key only: when the key has a record in any state the statement
/// fails with a duplicate key ([`InlineClaim::is_taken`]), nothing of it is kept, and the
/// caller runs the general path (`begin_answered_in` in a transaction), which replays,
/// refuses a mismatch or replaces an expired record. A concurrent insert of the same key
/// makes the statement wait for that transaction, as in `begin_answered_in`.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use idem::{Claim, Fingerprint, Key, Scope, StoredResponse, TTL_FOREVER};
/// use idem_sql::{ClaimValue, InlineClaim};
///
/// let (scope, key) = (Scope::new("POST /v1/orders")?, Key::new("order-42")?);
/// let fp = Fingerprint::of_bytes("POST", "/v1/orders", br#"{"sku":"a"}"#);
/// let claim = Claim::new(&scope, &key, &fp, Duration::ZERO, TTL_FOREVER);
/// let inline = InlineClaim::new(claim, &StoredResponse::new(201, "{}"));
/// let sql = format!(
///     "WITH go AS (SELECT 1 FROM stock WHERE sku = $1 AND left_over > 0), claimed AS ({}), \
///      taken AS (UPDATE stock SET left_over = left_over - 1 FROM claimed WHERE sku = $1) \
///      SELECT COUNT(*) FROM claimed",
///     InlineClaim::insert_sql("go", 2),
/// );
/// let mut query = sqlx::query_scalar::<_, i64>(&sql).bind("a");
/// for value in inline.values() {
///     query = match value {
///         ClaimValue::Text(text) => query.bind(text),
///         ClaimValue::Bytes(bytes) => query.bind(bytes),
///         ClaimValue::Int(int) => query.bind(int),
///     };
/// }
/// match query.fetch_one(&pool).await {
///     Ok(1) => println!("claimed and taken, in one commit"),
///     Ok(_) => println!("out of stock: nothing written"),
///     Err(error) if InlineClaim::is_taken(&error) => println!("seen before: begin_answered_in"),
///     Err(error) => return Err(error.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InlineClaim<'a> {
    claim: Claim<'a>,
    answer: Vec<u8>,
}

/// One value an [`InlineClaim`] binds, in the order of [`InlineClaim::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimValue<'a> {
    /// A `TEXT` parameter.
    Text(&'a str),
    /// A `BYTEA` parameter.
    Bytes(&'a [u8]),
    /// A `BIGINT` parameter.
    Int(i64),
}

impl<'a> InlineClaim<'a> {
    /// The claim of `claim`'s key, born completed with `answer` (the claim's lease is not
    /// used: a completed record has none).
    pub fn new(claim: Claim<'a>, answer: &StoredResponse) -> Self {
        Self {
            claim,
            answer: answer.encode(),
        }
    }

    /// How many parameters [`InlineClaim::insert_sql`] numbers.
    pub const PARAMETERS: usize = PARAMETERS;

    /// The CTE's body: inserts the record once per row of `source` (a CTE or table of the
    /// caller's statement that yields at most one row, when the statement goes ahead) and
    /// returns its fencing token. Its parameters are `$first` to `$first + 4`, bound with
    /// [`InlineClaim::values`]. The record's times are the server's clock.
    pub fn insert_sql(source: &str, first: usize) -> String {
        let p = |n: usize| first + n;
        format!(
            "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, \
             response, created_at, expires_at) \
             SELECT ${}, ${}, ${}, 1, 1, c.now_ms, ${}, c.now_ms, c.now_ms + ${} \
             FROM {source} CROSS JOIN (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
             AS now_ms) AS c RETURNING token",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
        )
    }

    /// The values of [`InlineClaim::insert_sql`]'s parameters, in their order: scope,
    /// key, fingerprint, answer, time to live in milliseconds.
    pub fn values(&self) -> [ClaimValue<'_>; PARAMETERS] {
        [
            ClaimValue::Text(self.claim.scope.as_str()),
            ClaimValue::Text(self.claim.key.as_str()),
            ClaimValue::Bytes(&self.claim.fingerprint.as_bytes()[..]),
            ClaimValue::Bytes(&self.answer),
            ClaimValue::Int(ms(self.claim.ttl)),
        ]
    }

    /// True when the statement failed because the key has a record already: nothing of it
    /// was kept; decide with `begin_answered_in` in a transaction.
    pub fn is_taken(error: &sqlx::Error) -> bool {
        error.as_database_error().is_some_and(|db| {
            db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(PRIMARY_KEY)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_from_first() {
        let sql = InlineClaim::insert_sql("ok", 7);
        for n in 7..7 + InlineClaim::PARAMETERS {
            assert!(sql.contains(&format!("${n}")), "{sql} lacks ${n}");
        }
        assert!(!sql.contains("$6") && !sql.contains("$12"), "{sql}");
        assert!(sql.contains("FROM ok CROSS JOIN"), "{sql}");
    }
}
