-- Records that never expire (begun with idem::TTL_FOREVER, 2^52 ms, so expires_at is at or
-- past 2^52 = 4503599627370496) stay out of the expiry index: purge never wants them, and
-- inserting one (a payment's business key) maintains one index fewer. Purge names the same
-- bound, so it uses this index.
CREATE INDEX IF NOT EXISTS idem_records_expiring ON idem_records (expires_at)
    WHERE expires_at < 4503599627370496;
DROP INDEX IF EXISTS idem_records_expires_at;
