-- One row per (scope, key). Times are Unix milliseconds of the database's clock.
-- state: 0 = in progress (token holds the lease until lease_until), 1 = completed (response set).
CREATE TABLE IF NOT EXISTS idem_records (
    scope       TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    token       INTEGER NOT NULL,
    state       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    response    BLOB,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idem_records_expires_at ON idem_records (expires_at);
