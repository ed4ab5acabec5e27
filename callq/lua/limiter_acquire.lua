-- limiter_acquire.lua: one permit from the global limiter (GCRA, no burst), on the Redis clock.
-- KEYS[1] the limiter's theoretical arrival time (TAT), in microseconds
-- ARGV[1] emission interval in us: (period + margin) / calls
-- ARGV[2] how far ahead a permit may be reserved, in us
-- ARGV[3] now in us, or '' to use the server's TIME (tests pass a fake clock)
-- Returns {granted, wait_us}: granted 1 means the permit is ours at now + wait_us (the caller
-- sleeps that long, then sends); granted 0 means none is free within the horizon, and wait_us
-- is how long until one could be. Permits are spaced by the interval, so no window of `period`
-- holds more than `calls` of them.
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - now
local ahead = tonumber(ARGV[2])
if wait > ahead then
  return {0, string.format('%.0f', wait - ahead)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
  'PX', math.ceil((next_tat - now) / 1000) + 60000)
return {1, string.format('%.0f', wait)}
