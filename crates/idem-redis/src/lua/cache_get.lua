-- The two-tier store's replay lookup: the cached response of a completed record, if
-- the entry is live and its fingerprint is the caller's; nil otherwise (the caller
-- then asks the truth store).
-- KEYS[1] the cache entry (a hash). ARGV: fingerprint.
local now = clock()

local e = redis.call('HMGET', KEYS[1], 'fp', 'exp', 'resp')
if not e[1] or not e[3] or e[1] ~= ARGV[1] or tonumber(e[2]) <= now then
  return false
end
return e[3]
