-- idem_begin: `begin`'s first step in one call. It reads the record and, only when there
-- is none, inserts the first generation (ON CONFLICT DO NOTHING). One row comes back:
-- (inserted, the record's columns, the clock), or none when a concurrent insert won
-- between the read and the insert (the caller reads again).
-- A function rather than one data-modifying CTE: PostgreSQL sets up a CTE's INSERT on
-- every call, so a replay paid for an insert it never made; here a replay is one indexed
-- read. Times are Unix milliseconds of the database's clock plus the caller's offset.
CREATE OR REPLACE FUNCTION idem_begin(
    p_scope TEXT, p_key TEXT, p_fingerprint BYTEA, p_lease BIGINT, p_ttl BIGINT, p_offset BIGINT
)
RETURNS TABLE (
    inserted BOOLEAN, fingerprint BYTEA, token BIGINT, state SMALLINT, lease_until BIGINT,
    response BYTEA, created_at BIGINT, expires_at BIGINT, now_ms BIGINT
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_now BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + p_offset;
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
        VALUES (p_scope, p_key, p_fingerprint, 1, 0, v_now + p_lease, NULL, v_now,
                v_now + greatest(p_ttl, p_lease))
        ON CONFLICT (scope, idem_key) DO NOTHING
        RETURNING true, r.fingerprint, r.token, r.state, r.lease_until, r.response,
                  r.created_at, r.expires_at, v_now;
END
$$;
