-- prelude.lua: what many scripts share, put before each of them by callq/store/scripts.py.
-- Nothing here touches a key it is not given.

-- The Redis clock, in milliseconds and in microseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- A call moves from state `from` to state `to`: its record (state, updated_at) and its
-- campaign's counters, in the same step.
local function move(call, counts, from, to, now)
  redis.call('HSET', call, 'state', to, 'updated_at', now)
  if from ~= to then
    redis.call('HINCRBY', counts, from, -1)
    redis.call('HINCRBY', counts, to, 1)
  end
end

-- A waiting call is parked: in its campaign's parked set (oldest first, by `score`), with
-- the reason on its record; unless the campaign is paused (`at` nil), its campaign is judged
-- again at `at` (ms) at the latest, so a parked call always has a way back.
local function park(call, parked, wake, rid, campaign, score, reason, at)
  redis.call('ZADD', parked, 'NX', score, rid)
  redis.call('HSET', call, 'parked', reason)
  if at then
    local cur = redis.call('ZSCORE', wake, campaign)
    if not cur or tonumber(cur) > at then redis.call('ZADD', wake, at, campaign) end
  end
end
