//! The conformance suite and the model-based property test against [`MySqlStore`] on the
//! server in `IDEM_TEST_MYSQL`: each store a new database, its peer a second pool on it.

#[macro_use]
mod support;

use idem_sql::MySqlStore;

server_conformance_tests!(
    MySqlStore,
    "IDEM_TEST_MYSQL",
    support::mysql_store,
    support::mysql_peer
);
