//! The conformance suite and the model-based property test against [`PostgresStore`] on the
//! server in `IDEM_TEST_POSTGRES`: each store a new schema, its peer a second pool on it.

#[macro_use]
mod support;

use idem_sql::PostgresStore;

server_conformance_tests!(
    PostgresStore,
    "IDEM_TEST_POSTGRES",
    support::pg_store,
    support::pg_peer
);
