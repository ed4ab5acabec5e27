-- events_take.lua: take due events of one receiver for one send each.
-- KEYS[1] the receiver's due zset (stream entry id -> ms when next sent)
-- ARGV[1] how many at most   ARGV[2] the lease in ms
-- Each entry taken is due again after the lease, so one worker at a time sends it; the sender
-- drops it on a 2xx or sets its next try after a failure.
-- Returns {now_ms, {entry id, ...}}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id) end
return {now, ids}
