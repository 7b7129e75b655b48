-- One row per (scope, key). Times are Unix milliseconds of the database's clock.
-- state: 0 = in progress (token holds the lease until lease_until), 1 = completed (response set).
CREATE TABLE IF NOT EXISTS idem_records (
    scope       TEXT     NOT NULL,
    idem_key    TEXT     NOT NULL,
    fingerprint BYTEA    NOT NULL,
    token       BIGINT   NOT NULL,
    state       SMALLINT NOT NULL,
    lease_until BIGINT   NOT NULL,
    response    BYTEA,
    created_at  BIGINT   NOT NULL,
    expires_at  BIGINT   NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE INDEX IF NOT EXISTS idem_records_expires_at ON idem_records (expires_at);
