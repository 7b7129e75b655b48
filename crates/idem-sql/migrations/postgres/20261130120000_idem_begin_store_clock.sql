-- idem_begin on the database's clock alone: no caller passes a clock offset any more
-- (tests age the records instead, see idem::TimeTravel). The seven-argument function of
-- 20261130090000 stays, for nodes of an earlier build during a rolling upgrade; it is
-- only ever called with an offset of zero. No SET clause: the function runs with the
-- caller's search_path (see 20261123190000).
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
