//! The Lua scripts, one per operation, kept in `src/lua/*.lua` and compiled in.
//!
//! [`redis::Script`] hashes each script once and calls it by SHA (`EVALSHA`); when the
//! server answers `NOSCRIPT` (restarted, failed over, `SCRIPT FLUSH`), it loads the script
//! and calls it again. Every script reads the time with `TIME` and adds the handle's clock
//! offset (its first argument), so the store's clock is Redis's, never a node's. Redis 5+
//! replicates script effects, not scripts, so reading `TIME` in a writing script is safe
//! without `redis.replicate_commands()`.

use std::sync::LazyLock;

use redis::Script;

/// Every script the crate runs.
pub(crate) struct Scripts {
    pub(crate) begin: Script,
    pub(crate) complete: Script,
    pub(crate) release: Script,
    pub(crate) get: Script,
    pub(crate) purge: Script,
    pub(crate) now: Script,
    pub(crate) cache_get: Script,
    pub(crate) cache_put: Script,
}

/// The scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    begin: Script::new(include_str!("lua/begin.lua")),
    complete: Script::new(include_str!("lua/complete.lua")),
    release: Script::new(include_str!("lua/release.lua")),
    get: Script::new(include_str!("lua/get.lua")),
    purge: Script::new(include_str!("lua/purge.lua")),
    now: Script::new(include_str!("lua/now.lua")),
    cache_get: Script::new(include_str!("lua/cache_get.lua")),
    cache_put: Script::new(include_str!("lua/cache_put.lua")),
});
