-- begin(scope, key, fingerprint, lease, ttl): DESIGN §2 in one atomic step.
-- KEYS[1] the record: one string, fp (32 bytes) .. struct '>c1ddd' (state 'P' running,
-- 'C' completed or 'R' released, token, lease ms, life ms; 57 bytes in all) .. the encoded
-- response.
-- The lease and the life (expiry - creation) count from the record's creation, which the
-- key's own expiry pins (expiry() in the prelude): so the store can also claim a fresh key
-- with a plain `SET … NX GET PX life-1`, no script, and every script reads that record
-- the same way (store.rs, RedisStore::begin).
-- ARGV: fingerprint (32 bytes), lease ms, ttl ms.
-- Returns {1, token, recovered} | {2, record} | {3} | {4, retry_after_ms}:
-- Acquired, Replay (the whole record; the response follows its header), Mismatch,
-- InFlight. The checks run in the order of idem::decide::begin_step: absent, expired or
-- released; another fingerprint; completed; lease running; lease ended.

-- The clock is read only when needed: Redis drops a record at its expiry by its own
-- clock, so a record it still holds is live.

local rec, fp = KEYS[1], ARGV[1]
-- One read for every branch; on a replay the response comes with it.
local cur = redis.call('GET', rec)
local token, recovered = 1, 0
local now = nil
if cur then
  local st, held, lease_ms, life = struct.unpack('>c1ddd', cur, 33)
  if st == 'R' then
    -- Released: absent, and the next generation never shares the old token.
    token = held + 1
  elseif string.sub(cur, 1, 32) ~= fp then
    return {3}
  elseif st == 'C' then
    return {2, cur}
  else
    now = clock()
    local lease_until = expiry(rec) - life + lease_ms
    if lease_until > now then
      return {4, math.max(lease_until - now, 1)}
    end
    token, recovered = held + 1, 1
  end
end
now = now or clock()

local lease = tonumber(ARGV[2])
-- A record never expires while its lease runs.
local life = math.max(tonumber(ARGV[3]), lease)
redis.call('SET', rec, fp .. struct.pack('>c1ddd', 'P', token, lease, life),
  'PXAT', string.format('%.0f', now + life - 1))
return {1, token, recovered}
