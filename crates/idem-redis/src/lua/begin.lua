-- begin(scope, key, fingerprint, lease, ttl): DESIGN §2 in one atomic step.
-- KEYS[1] the record: one string, fp (32 bytes) .. struct '>c1dddd' (state 'p'/'c',
-- token, lease_until, expires_at, created_at; 65 bytes in all) .. the encoded response.
-- ARGV: clock offset ms, fingerprint (32 bytes), lease ms, ttl ms.
-- Returns {1, token, recovered} | {2, record} | {3} | {4, retry_after_ms}:
-- Acquired, Replay (the whole record; the response follows its header), Mismatch,
-- InFlight. The checks run in the order of idem::decide::begin_step: absent or
-- expired; another fingerprint; completed; lease running; lease ended.

-- The clock (clock.lua) is read only when needed. Redis drops a record at its expiry by
-- its own clock (SET … PXAT expires_at - 1, so a key lives while TIME < expires_at), so a
-- record it still holds is live: only a handle with a clock offset (tests) must compare
-- the stored expiry with the clock.

local rec, fp = KEYS[1], ARGV[2]
-- One read for every branch; on a replay the response comes with it.
local cur = redis.call('GET', rec)
local token, recovered = 1, 0
local now = nil
if cur then
  local st, held, lease, exp = struct.unpack('>c1ddd', cur, 33)
  if offset ~= 0 then
    now = clock()
  end
  if now and exp <= now then
    -- Expired by a test clock offset but still held by Redis: absent, and the next
    -- generation never shares the old token.
    token = held + 1
  elseif string.sub(cur, 1, 32) ~= fp then
    return {3}
  elseif st == 'c' then
    return {2, cur}
  else
    now = now or clock()
    if lease > now then
      return {4, math.max(lease - now, 1)}
    end
    token, recovered = held + 1, 1
  end
end
now = now or clock()

local lease_until = now + tonumber(ARGV[3])
-- A record never expires while its lease runs.
local expires_at = math.max(now + tonumber(ARGV[4]), lease_until)
redis.call('SET', rec, fp .. struct.pack('>c1dddd', 'p', token, lease_until, expires_at, now),
  'PXAT', string.format('%.0f', expires_at - 1))
return {1, token, recovered}
