-- now(): the store's clock, Redis TIME in milliseconds plus the handle's offset.
-- ARGV: clock offset ms.
return clock()
