-- age(by): idem::TimeTravel::advance for one key of the store (tests only): its times move
-- back by `by` ms, as if that much time had passed. A record (a string, layout in
-- begin.lua) or a cache entry (a hash with 'exp') expires `by` earlier, and is deleted
-- when that is already past, as Redis would have dropped it by then. A record that never
-- expires (life of 2^52 ms or more, idem::TTL_FOREVER) keeps its expiry and grows its
-- life instead, so its creation and lease end still move back.
-- KEYS[1] the key. ARGV: by ms. Returns 1 when the key was deleted, 0 otherwise.
local key, by = KEYS[1], tonumber(ARGV[1])
local exp = redis.call('PEXPIRETIME', key)
-- A key without an expiry (-1) was not written by this store; -2: gone meanwhile.
if exp < 0 then
  return 0
end
local kind = redis.call('TYPE', key)['ok']
if kind == 'string' then
  local cur = redis.call('GET', key)
  if #cur < 57 then
    return 0
  end
  local held, lease_ms, life = struct.unpack('>ddd', cur, 34)
  if life >= 4503599627370496 then
    redis.call('SET', key, string.sub(cur, 1, 33) .. struct.pack('>ddd', held, lease_ms, life + by)
      .. string.sub(cur, 58), 'KEEPTTL')
    return 0
  end
elseif kind == 'hash' then
  local entry_exp = tonumber(redis.call('HGET', key, 'exp'))
  if not entry_exp then
    return 0
  end
  redis.call('HSET', key, 'exp', string.format('%.0f', entry_exp - by))
else
  return 0
end
if exp + 1 - by <= clock() then
  redis.call('DEL', key)
  return 1
end
redis.call('PEXPIREAT', key, string.format('%.0f', exp - by))
return 0
