-- One row per (scope, key). Times are Unix milliseconds of the database's clock.
-- state: 0 = in progress (token holds the lease until lease_until), 1 = completed
-- (response set), 2 = released (a tombstone: the next holder takes the next token).
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

-- Records that never expire (begun with idem::TTL_FOREVER, 2^52 ms, so expires_at is at or
-- past 2^52 = 4503599627370496) stay out of the expiry index: purge never wants them, and
-- inserting one (a payment's business key) maintains one index fewer. Purge names the same
-- bound, so it uses this index.
CREATE INDEX IF NOT EXISTS idem_records_expiring ON idem_records (expires_at)
    WHERE expires_at < 4503599627370496;
