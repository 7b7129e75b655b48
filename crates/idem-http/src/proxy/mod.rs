//! `idem proxy`: a reverse proxy that applies [`crate::IdempotencyLayer`] to every
//! request and forwards it to one upstream, so a service in any language gets the
//! `Idempotency-Key` semantics without a line of change.
//!
//! Guarded methods (POST and PATCH by default) are buffered, fingerprinted and answered
//! once per key; every other method streams straight through. Keys are scoped by the
//! principal: a SHA-256 digest of the `Authorization` header (or of `--principal-header`),
//! so no credential is ever written to the store.

mod args;
mod forward;
mod run;
mod store;

pub use args::ProxyArgs;
pub use run::{run, serve};
pub use store::{open_store, DEFAULT_DATABASE};
