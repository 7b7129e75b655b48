//! Choosing the store `idem proxy` keeps its records in, from its options.

use std::path::Path;
use std::sync::Arc;

use idem::{MemoryStore, Store};
use idem_redis::{RedisStore, ReplayCache, TieredStore};
use idem_sql::{MySqlStore, PostgresStore, SqliteStore};

use crate::{Error, ProxyArgs};

/// The SQLite file used when no store is named, as `idem serve` does.
pub const DEFAULT_DATABASE: &str = "sqlite://./idem-data/proxy.db";

/// Opens the store the options name: `--memory`; `--database` (SQL); `--redis`; both
/// (Redis in front answering replays, the database the truth); or, with none, the SQLite
/// file [`DEFAULT_DATABASE`].
///
/// # Errors
/// [`Error::Config`] for a URL of an unknown kind, [`Error::StoreOpen`] when the store
/// cannot be reached or migrated.
pub async fn open_store(args: &ProxyArgs) -> Result<Arc<dyn Store>, Error> {
    if args.memory {
        return Ok(Arc::new(MemoryStore::new()));
    }
    let redis = args.redis.as_deref();
    let database = match (args.database.as_deref(), redis) {
        (Some(url), _) => url,
        (None, Some(url)) => {
            let store = RedisStore::connect(url)
                .await
                .map_err(|e| Error::StoreOpen(e.into()))?;
            return Ok(Arc::new(store));
        }
        (None, None) => DEFAULT_DATABASE,
    };
    let truth = open_sql(database).await?;
    let Some(redis) = redis else {
        return Ok(truth);
    };
    let cache = ReplayCache::connect(redis)
        .await
        .map_err(|e| Error::StoreOpen(e.into()))?;
    Ok(Arc::new(TieredStore::new(truth, cache)))
}

/// An SQL store by the scheme of `url`.
async fn open_sql(url: &str) -> Result<Arc<dyn Store>, Error> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let opened: Result<Arc<dyn Store>, idem_sql::Error> = match scheme {
        "sqlite" => {
            create_parent_dir(url)?;
            SqliteStore::connect(url).await.map(|s| Arc::new(s) as _)
        }
        "postgres" | "postgresql" => PostgresStore::connect(url).await.map(|s| Arc::new(s) as _),
        "mysql" | "mariadb" => MySqlStore::connect(url).await.map(|s| Arc::new(s) as _),
        _ => {
            return Err(Error::Config(format!(
                "--database: {scheme:?} is not sqlite://, postgres:// or mysql://"
            )))
        }
    };
    opened.map_err(|e| Error::StoreOpen(e.into()))
}

/// SQLite creates the file but not its directory (`./idem-data/` on a first run).
fn create_parent_dir(url: &str) -> Result<(), Error> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("create {}", dir.display()),
                source,
            })
        }
        _ => Ok(()),
    }
}
