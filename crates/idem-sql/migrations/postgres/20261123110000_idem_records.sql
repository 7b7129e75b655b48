-- One row per (scope, key). Times are Unix milliseconds of the database's clock.
-- state: 0 = in progress (token holds the lease until lease_until), 1 = completed
-- (response set), 2 = released (a tombstone: the next holder takes the next token, so no
-- token is ever given twice for one record).
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

-- Records that never expire (begun with idem::TTL_FOREVER, 2^52 ms, so expires_at is at or
-- past 2^52 = 4503599627370496) stay out of the expiry index: purge never wants them, and
-- inserting one (a payment's business key) maintains one index fewer. Purge names the same
-- bound, so it uses this index.
CREATE INDEX IF NOT EXISTS idem_records_expiring ON idem_records (expires_at)
    WHERE expires_at < 4503599627370496;

-- idem_begin: `begin`'s first step on the pool in one call. It reads the record and, only
-- when there is none, inserts the first generation (ON CONFLICT DO NOTHING). One row comes
-- back: (inserted, the record's columns, the clock), or none when a concurrent insert won
-- between the read and the insert (the caller reads again). p_response is the answer of a
-- record born completed (`begin_answered_in`); NULL keeps a fresh record in progress.
-- A function rather than one data-modifying CTE: PostgreSQL sets up a CTE's INSERT on
-- every call, so a replay would pay for an insert it never made; here a replay is one
-- indexed read. No SET clause: a function with one makes PostgreSQL save, set and restore
-- the setting on every call; this one runs with the caller's search_path, which the
-- store's connections set to the store's schema, so the table it names is the one beside
-- it.
CREATE OR REPLACE FUNCTION idem_begin(
    p_scope TEXT, p_key TEXT, p_fingerprint BYTEA, p_lease BIGINT, p_ttl BIGINT,
    p_response BYTEA
)
RETURNS TABLE (
    inserted BOOLEAN, fingerprint BYTEA, token BIGINT, state SMALLINT, lease_until BIGINT,
    response BYTEA, created_at BIGINT, expires_at BIGINT, now_ms BIGINT
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_now BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    RETURN QUERY
        SELECT false, r.fingerprint, r.token, r.state, r.lease_until, r.response,
               r.created_at, r.expires_at, v_now
        FROM idem_records AS r
        WHERE r.scope = p_scope AND r.idem_key = p_key;
    IF FOUND THEN
        RETURN;
    END IF;
    -- A record never expires while its lease runs.
    RETURN QUERY
        INSERT INTO idem_records AS r
            (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at)
        VALUES (p_scope, p_key, p_fingerprint, 1,
                CASE WHEN p_response IS NULL THEN 0 ELSE 1 END,
                v_now + p_lease, p_response, v_now, v_now + greatest(p_ttl, p_lease))
        ON CONFLICT (scope, idem_key) DO NOTHING
        RETURNING true, r.fingerprint, r.token, r.state, r.lease_until, r.response,
                  r.created_at, r.expires_at, v_now;
END
$$;
