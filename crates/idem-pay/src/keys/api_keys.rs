//! [`ApiKeys`]: creating, listing and revoking keys in `pay_api_keys`, and finding the
//! tenant of a request's key through the hash index, with each node's short cache in front.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::cache::{TenantCache, CACHE_AGE_MAX, CACHE_ENTRIES_MAX};
use super::secret;
use crate::db::{on_engine, Arg, Business, Db, Dialect};
use crate::model::now_rfc3339;
use crate::{Error, Result, Tenant};

/// How often `create` draws a new id after a collision (of 64 random bits: never, in
/// practice) before giving up.
const CREATE_ATTEMPTS_MAX: u32 = 3;

/// What is known of a key, never its secret or hash: `idem keys list` shows this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The public id (`key_` and 16 hex digits), used to revoke it.
    pub id: String,
    /// The tenant every request with this key belongs to.
    pub tenant: Tenant,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it was revoked, RFC 3339 UTC; `None` while it is valid.
    pub revoked_at: Option<String>,
}

/// A key just created: the only time its secret exists outside its holder's hands.
#[derive(Clone)]
pub struct NewKey {
    /// The stored part.
    pub info: KeyInfo,
    /// The secret to give the client (`idem_sk_…`); only its hash is stored, so it cannot be
    /// shown again.
    pub secret: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("info", &self.info)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What [`ApiKeys::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The key was valid and is now revoked.
    Revoked,
    /// The key had been revoked before; nothing changed.
    AlreadyRevoked,
}

/// The statements on `pay_api_keys` in one dialect, built once.
#[derive(Debug)]
struct KeySql {
    insert: String,
    list: String,
    revoke: String,
    exists: String,
    tenant_by_hash: String,
}

impl KeySql {
    fn new(d: &Dialect) -> Self {
        let q = |text: String| d.statement(text);
        let text = d.text_type;
        Self {
            insert: q("INSERT INTO pay_api_keys (key_id, tenant, key_hash, created_at) VALUES (?, ?, ?, ?)".into()),
            list: format!(
                "SELECT CAST(key_id AS {text}), CAST(tenant AS {text}), CAST(created_at AS {text}), CAST(revoked_at AS {text}) \
                 FROM pay_api_keys ORDER BY created_at, key_id"
            ),
            // One statement decides: a concurrent second revoke changes no row.
            revoke: q("UPDATE pay_api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL".into()),
            exists: q(format!("SELECT CAST(key_id AS {text}) FROM pay_api_keys WHERE key_id = ?")),
            tenant_by_hash: q(format!(
                "SELECT CAST(tenant AS {text}) FROM pay_api_keys WHERE key_hash = ? AND revoked_at IS NULL"
            )),
        }
    }
}

/// The API keys of one database (DESIGN §5a): cheap to clone (the clones share the pool and
/// the cache), one per node.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    sql: KeySql,
    cache: TenantCache,
}

impl ApiKeys {
    /// The keys stored in `db` (whose migrations created `pay_api_keys`).
    pub fn new(db: Db) -> Self {
        let sql = KeySql::new(db.backend().dialect());
        Self {
            inner: Arc::new(Inner {
                db,
                sql,
                cache: TenantCache::new(CACHE_AGE_MAX, CACHE_ENTRIES_MAX),
            }),
        }
    }

    /// The database the keys live in.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Creates a key for `tenant`: stores the hash of a new random secret and returns the
    /// secret, which is never available again.
    ///
    /// # Errors
    /// [`Error::Database`] when the insert fails, [`Error::Internal`] when the operating
    /// system gives no random bytes.
    pub async fn create(&self, tenant: &Tenant) -> Result<NewKey> {
        let Inner { db, sql, .. } = &*self.inner;
        let mut attempt = 1;
        loop {
            let secret = secret::new_secret()?;
            let id = secret::new_key_id()?;
            let key_hash = hex::encode(secret::hash(&secret));
            let created_at = now_rfc3339();
            let args = [
                Arg::Str(&id),
                Arg::Str(tenant.as_str()),
                Arg::Str(&key_hash),
                Arg::Str(&created_at),
            ];
            let inserted = on_engine!(&db.engine, store => store.execute(&sql.insert, &args).await);
            match inserted {
                Ok(_) => {
                    let info = KeyInfo {
                        id,
                        tenant: tenant.clone(),
                        created_at,
                        revoked_at: None,
                    };
                    return Ok(NewKey { info, secret });
                }
                // A colliding id (or hash): draw again, by the database's error code.
                Err(sqlx::Error::Database(e))
                    if e.is_unique_violation() && attempt < CREATE_ATTEMPTS_MAX =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every key, valid or revoked, oldest first (by creation time, then id).
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails, [`Error::Corrupt`] when a row does not read
    /// back as a key.
    pub async fn list(&self) -> Result<Vec<KeyInfo>> {
        let Inner { db, sql, .. } = &*self.inner;
        let rows = on_engine!(&db.engine, store => store.strings(&sql.list, &[]).await?);
        rows.into_iter()
            .map(|mut row| -> Result<KeyInfo> {
                let tenant = column(&mut row, 1)?;
                Ok(KeyInfo {
                    id: column(&mut row, 0)?,
                    tenant: Tenant::new(tenant)
                        .map_err(|e| Error::Corrupt(format!("pay_api_keys.tenant: {e}")))?,
                    created_at: column(&mut row, 2)?,
                    revoked_at: row.get_mut(3).and_then(Option::take),
                })
            })
            .collect()
    }

    /// Revokes the key `id`. One conditional `UPDATE` decides, so of two concurrent revokes
    /// exactly one answers [`Revocation::Revoked`]. This node forgets its cached answers at
    /// once; every node refuses the key within [`CACHE_AGE_MAX`] of the commit (DESIGN §5a:
    /// 1 s).
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] when no key has this id, [`Error::Database`] when a statement
    /// fails.
    pub async fn revoke(&self, id: &str) -> Result<Revocation> {
        let Inner { db, sql, cache } = &*self.inner;
        let revoked_at = now_rfc3339();
        let args = [Arg::Str(&revoked_at), Arg::Str(id)];
        let changed = on_engine!(&db.engine, store => store.execute(&sql.revoke, &args).await?);
        if changed > 0 {
            cache.clear();
            return Ok(Revocation::Revoked);
        }
        // No row changed: the key was revoked before, or never existed (keys are never
        // deleted, so this answer cannot go stale).
        let rows =
            on_engine!(&db.engine, store => store.strings(&sql.exists, &[Arg::Str(id)]).await?);
        if rows.is_empty() {
            return Err(Error::KeyNotFound {
                key_id: id.to_owned(),
            });
        }
        Ok(Revocation::AlreadyRevoked)
    }

    /// The tenant of the key `secret`, or `None` when it is malformed (decided without the
    /// database), unknown or revoked. The key is found by its SHA-256 through the unique
    /// index; answers, both ways, are remembered for less than [`CACHE_AGE_MAX`].
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails (nothing is remembered then),
    /// [`Error::Corrupt`] when the stored tenant is not a tenant name.
    pub async fn tenant_of(&self, secret: &str) -> Result<Option<Tenant>> {
        if !secret::is_well_formed(secret) {
            return Ok(None);
        }
        let Inner { db, sql, cache } = &*self.inner;
        let hash = secret::hash(secret);
        // Taken before the read: the answer's age counts from before the database saw it.
        let read_at = Instant::now();
        if let Some(answer) = cache.get(&hash, read_at) {
            return Ok(answer);
        }
        let key_hash = hex::encode(hash);
        let args = [Arg::Str(&key_hash)];
        let rows =
            on_engine!(&db.engine, store => store.strings(&sql.tenant_by_hash, &args).await?);
        let tenant = match rows.into_iter().next() {
            None => None,
            Some(mut row) => Some(
                Tenant::new(column(&mut row, 0)?)
                    .map_err(|e| Error::Corrupt(format!("pay_api_keys.tenant: {e}")))?,
            ),
        };
        cache.insert(hash, tenant.clone(), read_at);
        Ok(tenant)
    }
}

/// Takes the non-null column `i` of a row read as strings.
fn column(row: &mut [Option<String>], i: usize) -> Result<String> {
    row.get_mut(i)
        .and_then(Option::take)
        .ok_or_else(|| Error::Corrupt(format!("pay_api_keys: column {i} is missing or null")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Backend;

    #[test]
    fn statements_follow_each_dialect() {
        let pg = KeySql::new(Backend::Postgres.dialect());
        assert!(pg.insert.contains("$4") && !pg.insert.contains('?'));
        assert!(pg.revoke.contains("$2") && pg.revoke.contains("revoked_at IS NULL"));
        assert!(pg.tenant_by_hash.contains("key_hash = $1"));
        let my = KeySql::new(Backend::MySql.dialect());
        assert!(my.list.contains("AS CHAR") && my.tenant_by_hash.contains("key_hash = ?"));
        let lite = KeySql::new(Backend::Sqlite.dialect());
        assert!(lite.list.ends_with("ORDER BY created_at, key_id"));
    }

    #[test]
    fn a_new_key_does_not_show_its_secret_in_debug() {
        let key = NewKey {
            info: KeyInfo {
                id: "key_0123456789abcdef".into(),
                tenant: Tenant::default(),
                created_at: "2026-11-30T12:00:00.000Z".into(),
                revoked_at: None,
            },
            secret: "idem_sk_topsecret".into(),
        };
        let shown = format!("{key:?}");
        assert!(shown.contains("key_0123456789abcdef"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
