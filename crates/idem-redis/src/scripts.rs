//! The Lua scripts, one per operation that needs one, kept in `src/lua/*.lua` and compiled in.
//!
//! [`redis::Script`] hashes each script once and calls it by SHA (`EVALSHA`); when the
//! server answers `NOSCRIPT` (restarted, failed over, `SCRIPT FLUSH`), it loads the script
//! and calls it again. Every script starts with `lua/prelude.lua`: the time is `TIME`, so
//! the store's clock is Redis's, never a node's. Redis 5+ replicates script effects, not
//! scripts, so reading `TIME` in a writing script is safe without
//! `redis.replicate_commands()`.

use std::sync::LazyLock;

use redis::Script;

/// Every script the crate runs.
pub(crate) struct Scripts {
    pub(crate) begin: Script,
    pub(crate) complete: Script,
    pub(crate) release: Script,
    pub(crate) get: Script,
    #[cfg(feature = "test-clock")]
    pub(crate) now: Script,
    #[cfg(feature = "test-clock")]
    pub(crate) age: Script,
    pub(crate) cache_get: Script,
    pub(crate) cache_put: Script,
}

/// `src/lua/<name>.lua` after `prelude.lua`, which defines the store's clock and a record's
/// expiry once for every script, and after any shared parts named before it (Redis has no
/// way for one script to include another).
macro_rules! script {
    ($($part:literal),+) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            $(include_str!(concat!("lua/", $part, ".lua"))),+
        ))
    };
}

/// The scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    begin: script!("begin"),
    complete: script!("held", "complete"),
    release: script!("held", "release"),
    get: script!("get"),
    #[cfg(feature = "test-clock")]
    now: script!("now"),
    #[cfg(feature = "test-clock")]
    age: script!("age"),
    cache_get: script!("cache_get"),
    cache_put: script!("cache_put"),
});
