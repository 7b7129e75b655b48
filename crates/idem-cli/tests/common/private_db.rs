//! A database server of the test's own, for tests that stop and start it (never the shared
//! `IDEM_TEST_*` servers): [`idem_chaos::server::PrivateServer`], the one `idem chaos
//! --own-database-server` runs, with one empty database `idem` made on it.
//!
//! Missing binaries skip the test (printed `skipped: …`), or fail it with
//! `IDEM_REQUIRE_BACKENDS=1`, as [`idem_test_support::backend_url`] does for shared servers.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use idem_chaos::server::{PrivateServer, ServerKind};
use idem_test_support::skip as skipped;

/// The name of the database the server is given for the test.
const DATABASE: &str = "idem";

/// One private server, killed and deleted when dropped.
pub struct PrivateDb {
    server: PrivateServer,
    /// The URL of the database `idem` on it, for `idem serve --database`.
    pub url: String,
}

impl PrivateDb {
    /// A fresh PostgreSQL cluster with trust auth, or `None` (skipped) without its binaries.
    pub async fn postgres() -> Option<PrivateDb> {
        Self::start(ServerKind::Postgres).await
    }

    /// A fresh MariaDB (or MySQL) server, root without a password, or `None` (skipped)
    /// without its binaries.
    pub async fn mariadb() -> Option<PrivateDb> {
        Self::start(ServerKind::Mysql).await
    }

    async fn start(kind: ServerKind) -> Option<PrivateDb> {
        let server = match PrivateServer::start(kind).await {
            Ok(server) => server,
            Err(idem_chaos::Error::Missing(why)) => return skipped(&why),
            Err(e) => panic!("starting a private {kind:?} server: {e}"),
        };
        let create = idem_test_support::create_database(server.admin_url(), DATABASE);
        tokio::time::timeout(Duration::from_secs(30), create)
            .await
            .expect("create the test database within 30 s")
            .expect("create the test database");
        let url = match kind {
            ServerKind::Postgres => {
                format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", server.port())
            }
            ServerKind::Mysql => format!("mysql://root@127.0.0.1:{}/{DATABASE}", server.port()),
        };
        Some(PrivateDb { server, url })
    }

    /// `postgres` or `mariadb`.
    pub fn engine(&self) -> &'static str {
        self.server.engine()
    }

    /// Restarts the server the way its operator would (see [`PrivateServer::restart`]) and
    /// returns once it accepts connections again.
    pub async fn restart(&mut self) {
        self.server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restarting the {} server: {e}", self.engine()));
    }
}
