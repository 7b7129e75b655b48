//! The layer over real sockets: a real axum server on 127.0.0.1:0 wrapped in
//! `IdempotencyLayer`, driven by reqwest; every scenario over `idem::MemoryStore`, then
//! again over SQLite (the embedded default), PostgreSQL and Redis.

use idem::Store;
use idem_http::testing::{counting_app, layer_config, serve_counting_app, wait_config, Target};
use idem_http::{Config, IdempotencyLayer};

async fn target(store: impl Store + 'static, config: Config) -> Target {
    let app = counting_app().layer(IdempotencyLayer::new(store, config));
    let served = serve_counting_app(app).await;
    Target::new(format!("http://{}", served.addr)).keep(served)
}

mod memory {
    use super::*;
    use idem::MemoryStore;

    async fn memory(config: Config) -> Target {
        target(MemoryStore::new(), config).await
    }

    idem_http::scenario_tests!(reject: memory(layer_config()), wait: memory(wait_config()));
}

mod sqlite {
    use super::*;
    use idem_sql::SqliteStore;
    use idem_test_support::unique_name;

    /// A directory removed when the test ends.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn sqlite(config: Config) -> Target {
        let dir = std::env::temp_dir().join(unique_name("idem_http_layer"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.join("idem.db").display());
        let store = SqliteStore::connect(&url).await.expect("open SQLite");
        target(store, config).await.keep(TempDir(dir))
    }

    idem_http::scenario_tests!(reject: sqlite(layer_config()), wait: sqlite(wait_config()));
}

mod postgres {
    use super::*;
    use idem_sql::{PostgresOptions, PostgresStore};
    use idem_test_support::{backend_url, pg_schema};

    /// A PostgreSQL store in a schema of its own, from `IDEM_TEST_POSTGRES` (schemas of
    /// exited test processes are dropped first).
    async fn postgres(config: Config) -> Option<Target> {
        let url = backend_url("IDEM_TEST_POSTGRES")?;
        let options = PostgresOptions::from_url(&url)
            .expect("a PostgreSQL URL")
            .schema(pg_schema(&url, "idem_http").await);
        let store = PostgresStore::connect_with(&options)
            .await
            .expect("open PostgreSQL");
        Some(target(store, config).await)
    }

    idem_http::scenario_tests!(reject: postgres(layer_config()), wait: postgres(wait_config()));
}

mod redis {
    use super::*;
    use idem_redis::{RedisOptions, RedisStore};
    use idem_test_support::{backend_url, unique_name};
    use std::time::Duration;

    /// A Redis store under a key prefix of its own, from `IDEM_TEST_REDIS`; short-lived
    /// records, so the shared server does not keep them.
    async fn redis(config: Config) -> Option<Target> {
        let url = backend_url("IDEM_TEST_REDIS")?;
        let options = RedisOptions::from_url(&url)
            .expect("a Redis URL")
            .prefix(unique_name("idem_http"));
        let store = RedisStore::connect_with(&options)
            .await
            .expect("open Redis");
        Some(target(store, config.ttl(Duration::from_secs(120))).await)
    }

    idem_http::scenario_tests!(reject: redis(layer_config()), wait: redis(wait_config()));
}

mod options;
