-- One row per (scope, key). Times are Unix milliseconds of the database's clock.
-- state: 0 = in progress (token holds the lease until lease_until), 1 = completed
-- (response set), 2 = released (a tombstone: the next holder takes the next token).
-- Keys are printable ASCII compared byte for byte (ascii_bin): "A" and "a" are two keys.
CREATE TABLE IF NOT EXISTS idem_records (
    scope       VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    idem_key    VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint VARBINARY(32) NOT NULL,
    token       BIGINT        NOT NULL,
    state       SMALLINT      NOT NULL,
    lease_until BIGINT        NOT NULL,
    response    LONGBLOB,
    created_at  BIGINT        NOT NULL,
    expires_at  BIGINT        NOT NULL,
    PRIMARY KEY (scope, idem_key),
    KEY idem_records_expires_at (expires_at)
) ENGINE = InnoDB;
