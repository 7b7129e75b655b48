-- held(key, token): the record's string when it is in progress under `token` and live,
-- as idem::decide::holds says; nil otherwise (absent, completed, another holder's, or
-- expired by a test clock offset). complete and release act only on such a record.
-- The clock only with a clock offset: a record Redis still holds is live (see begin.lua).
local function held(key, token)
  local cur = redis.call('GET', key)
  if not cur then
    return nil
  end
  local st, holder = struct.unpack('>c1d', cur, 33)
  if st ~= 'P' or holder ~= tonumber(token) or (offset ~= 0 and expiry(key) <= clock()) then
    return nil
  end
  return cur
end

