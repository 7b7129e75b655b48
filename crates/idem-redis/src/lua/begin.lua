-- begin(scope, key, fingerprint, lease, ttl): DESIGN §2 in one atomic step.
-- KEYS[1] the record (a hash), KEYS[2] the prefix's expiry index (a sorted set).
-- ARGV: clock offset ms, fingerprint (32 bytes), lease ms, ttl ms.
-- Returns {1, token, recovered} | {2, response} | {3} | {4, retry_after_ms}:
-- Acquired, Replay, Mismatch, InFlight. The checks run in the order of
-- idem::decide::begin_step: absent or expired; another fingerprint; completed;
-- lease running; lease ended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local function int(x) return string.format('%.0f', x) end

local rec, index = KEYS[1], KEYS[2]
local fp, lease_ms, ttl_ms = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

-- One read for every branch; on a replay the response comes with it.
local cur = redis.call('HMGET', rec, 'fp', 'st', 'tok', 'lease', 'exp', 'resp')
local token, recovered = 1, 0
if cur[1] then
  local held = tonumber(cur[3])
  if tonumber(cur[5]) <= now then
    -- Expired but not yet evicted (a test clock offset, or PEXPIREAT not yet due):
    -- absent, and the next generation never shares the old token.
    token = held + 1
  elseif cur[1] ~= fp then
    return {3}
  elseif cur[2] == 'c' then
    return {2, cur[6]}
  elseif tonumber(cur[4]) > now then
    return {4, math.max(tonumber(cur[4]) - now, 1)}
  else
    token, recovered = held + 1, 1
  end
end

local lease_until = now + lease_ms
-- A record never expires while its lease runs.
local expires_at = math.max(now + ttl_ms, lease_until)
redis.call('DEL', rec)
redis.call('HSET', rec, 'fp', fp, 'st', 'p', 'tok', int(token),
  'lease', int(lease_until), 'exp', int(expires_at), 'at', int(now))
redis.call('PEXPIREAT', rec, int(expires_at))
redis.call('ZADD', index, int(expires_at), rec)
-- The index lives as long as its longest-lived record, so an idle prefix leaves nothing
-- behind (GT needs Redis 7; a key without a TTL counts as infinite for GT).
if redis.call('PTTL', index) == -1 then
  redis.call('PEXPIREAT', index, int(expires_at))
else
  redis.call('PEXPIREAT', index, int(expires_at), 'GT')
end
return {1, token, recovered}
