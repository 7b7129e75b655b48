//! API keys (DESIGN §5a): which tenant a request belongs to.
//!
//! A key is a secret, `idem_sk_` and 64 lowercase hex digits (32 bytes from the operating
//! system's CSPRNG), shown once when `idem keys create` makes it. Only the SHA-256 of the
//! secret is stored, in `pay_api_keys`, beside the key's public id (`key_…`), its tenant
//! and when it was created and revoked.
//!
//! [`ApiKeys::tenant_of`] answers which tenant a request's key names: a malformed secret is
//! refused without the database, a well-formed one is looked up by its hash (the unique
//! index, no comparison of secrets). Each node remembers answers, positive and negative,
//! for less than [`CACHE_AGE_MAX`] (500 ms): a hot key costs no round trip per request, and
//! a key revoked on any node is refused by every node within 1 s.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), idem_pay::Error> {
//! use idem_pay::keys::{ApiKeys, Revocation};
//! use idem_pay::{Db, Tenant};
//! let keys = ApiKeys::new(Db::connect("sqlite://./idem-data/idem.db", 4).await?);
//! let acme = Tenant::new("acme").expect("a valid name");
//! let key = keys.create(&acme).await?;
//! assert_eq!(keys.tenant_of(&key.secret).await?, Some(acme));
//! assert_eq!(keys.revoke(&key.info.id).await?, Revocation::Revoked);
//! # Ok(()) }
//! ```

mod api_keys;
mod cache;
mod cli;
mod secret;

pub use api_keys::{ApiKeys, KeyInfo, NewKey, Revocation};
pub use cache::{CACHE_AGE_MAX, CACHE_ENTRIES_MAX};
pub use cli::{run, KeysArgs, KeysCommand};
pub use secret::{is_well_formed, KEY_ID_PREFIX, SECRET_LEN, SECRET_PREFIX, SECRET_RANDOM_BYTES};
