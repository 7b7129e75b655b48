-- The two-tier store's cache fill: a snapshot of a completed record read from the
-- truth store. A completed record does not change until it expires, so the entry is
-- valid until `expires_at`; an entry already past it is not written.
-- KEYS[1] the cache entry. ARGV: fingerprint, expires_at ms, response,
-- retention ms (the longest the entry stays, however long its record lives).
-- Returns 1 when written, 0 when already expired.
local now = clock()

local expires_at = math.min(tonumber(ARGV[2]), now + tonumber(ARGV[4]))
if expires_at <= now then
  return 0
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'exp', expires_at, 'resp', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], expires_at)
return 1
