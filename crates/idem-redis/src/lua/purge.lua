-- purge_expired(limit): delete at most `limit` expired records and return how many
-- this call deleted.
-- KEYS[1] the prefix's expiry index: member = record key, score = expires_at.
-- ARGV: clock offset ms, limit.
--
-- The records are named by the index, not by KEYS: this script is the one operation
-- that is not slot-local (see the crate docs for how a cluster shards the index).
-- Index entries whose record is already gone (evicted by PEXPIREAT, or released)
-- are dropped without being counted; each is examined once, so the work per call
-- is `limit` deletions plus the stale entries it clears, in batches of at most 256.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local function int(x) return string.format('%.0f', x) end

local index, limit = KEYS[1], tonumber(ARGV[2])
local deleted = 0
while deleted < limit do
  local batch = redis.call('ZRANGEBYSCORE', index, '-inf', int(now),
    'LIMIT', 0, math.min(limit - deleted, 256))
  if #batch == 0 then
    break
  end
  for _, rec in ipairs(batch) do
    local exp = redis.call('HGET', rec, 'exp')
    if not exp then
      redis.call('ZREM', index, rec)
    elseif tonumber(exp) <= now then
      redis.call('DEL', rec)
      redis.call('ZREM', index, rec)
      deleted = deleted + 1
    else
      -- A stale score: move it to the record's real expiry so it is not seen again.
      redis.call('ZADD', index, exp, rec)
    end
  end
end
return deleted
