-- fixed_window.lua: the naive limiter the bench compares against (not used by the queue).
-- KEYS[1] the window's counter
-- ARGV[1] the window length in ms   ARGV[2] permits per window
-- ARGV[3] 'aligned': the counter is KEYS[1] .. ':' .. floor(now / window), the Redis INCR
--         rate-limiter pattern; anything else: one counter that opens with the first call and
--         expires a window later (BullMQ's limiter: INCR, PEXPIRE on the first, PTTL when full).
-- Returns {granted, wait_ms}: granted 1 means send now; 0 means wait wait_ms and ask again.
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local key = KEYS[1]
local wait_if_full
if ARGV[3] == 'aligned' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local bucket = math.floor(now / window)
  -- The bench's own script: it derives the bucket's key from the one it is given.
  key = key .. ':' .. bucket
  wait_if_full = (bucket + 1) * window - now
end
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, window) end
if n > limit then
  if not wait_if_full then
    wait_if_full = redis.call('PTTL', key)
    if wait_if_full < 0 then wait_if_full = 0 end
  end
  return {0, wait_if_full}
end
return {1, 0}
