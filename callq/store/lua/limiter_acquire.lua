-- limiter_acquire.lua: permits from the global limiter (GCRA, no burst), on the Redis clock.
-- KEYS[1] the limiter's state, a string "<tat> <at> <ahead>" in microseconds: tat, the
--         theoretical arrival time (the next free slot); at, the server time of the last
--         grant; ahead, how far past `at` the permits handed out until then reached. An older
--         "<tat>" is read as well.
-- ARGV[1] emission interval in us: (period + margin) / calls
-- ARGV[2] how far ahead of now a permit may lie, in us (the horizon)
-- ARGV[3] now in us, or '' to use the server's TIME (tests pass a fake clock)
-- ARGV[4] how many permits at most ('' = 1); every permit granted lies within ARGV[2]
-- ARGV[5] the clock-step bound in us ('' = 0): the horizon plus one interval, see below
-- KEYS[2] (optional) the account's live-slots zset, `{weight}:{request id}` -> lapse ms
-- ARGV[6] the account's cap on live slots ('' or absent = no cap: KEYS[2] is not touched)
-- ARGV[7..] with a cap, per permit in slot order: request id, weight (2 connect, 1 flow),
--         lease ms, counted from permit i's slot (when the call is sent). Permit i goes
--         to the i-th call only with its slots: members past their lapse are dropped, a
--         call that already holds its slots keeps them (lease renewed), and granting stops
--         at the first call whose slots would pass the cap. The permits not granted are
--         not spent (the schedule moves by the count granted).
-- Returns {count, wait_us, now_us}. count >= 1: the caller holds count permits, at
-- now + wait_us + i * interval for i in [0, count); it sleeps until a slot, then sends.
-- count 0: no permit is free within the horizon; wait_us is how long until one could be.
-- With a cap, a 4th element: the ms until the earliest held slot lapses when the cap
-- stopped the grant short (count may then be 0 with a permit free), else -1.
-- Permits are spaced by the interval, so no window of `period` holds more than `calls`.
--
-- Clock steps. TIME is the wall clock, and a permit's holder sleeps on its own clock.
-- * Backwards (now < at): the schedule moves back with the clock, so the step stalls
--   nobody and the spacing still holds (the slots keep their distance from now).
-- * Forwards: tat behind now normally means its slots have passed; after a step they may
--   not have, and forgetting them would grant them twice. Of the permits handed out ahead at
--   the last grant, those beyond the bound are kept (tat = now + ahead - bound), and the
--   moved schedule is saved even when nothing is granted. With the bound at the horizon
--   plus one interval (the furthest an ordinary caller's or the feed's permit reaches), an
--   idle account's next permit is immediate, and a step forgets at most that much; after a
--   stack of priority reservations further ahead, the first permit waits once for the rest.
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  now = now_us()
end
local interval = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local want = tonumber(ARGV[4]) or 1
local bound = tonumber(ARGV[5]) or 0
local tat, at, reach = now, now, 0
local raw = redis.call('GET', KEYS[1])
if raw then
  local a, b, c = string.match(raw, '^(%S+) ?(%S*) ?(%S*)$')
  tat = tonumber(a) or now
  at = tonumber(b) or now
  reach = tonumber(c) or 0
end
local anchored = false
if now < at then
  tat = tat - (at - now)
  anchored = true
elseif tat < now then
  local kept = reach - bound
  if kept > 0 then
    tat = now + kept
    anchored = true
  else
    tat = now
  end
end
local wait = tat - now
if wait > ahead then
  if anchored then
    -- Keep the moved schedule even though nothing is granted: the next caller would move it
    -- again from its own now, and no caller within the horizon would ever be granted.
    redis.call('SET', KEYS[1], string.format('%.0f %.0f %.0f', tat, now, tat - now),
      'PX', math.ceil((tat - now) / 1000) + 86400000)
  end
  return {0, string.format('%.0f', wait - ahead), string.format('%.0f', now)}
end
local count = math.floor((ahead - wait) / interval) + 1
if count > want then count = want end
local full = -1
local cap = tonumber(ARGV[6] or '')
if cap then
  local now_ms = math.floor(now / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    used = used + (tonumber(string.match(m, '^(%d+):')) or 1)
  end
  local n = 0
  for i = 1, count do
    local j = 7 + (i - 1) * 3
    if not ARGV[j] then break end
    local weight = tonumber(ARGV[j + 1]) or 1
    local member = weight .. ':' .. ARGV[j]
    local held = redis.call('ZSCORE', KEYS[2], member)
    if not held then
      if used + weight > cap then
        local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
        full = head[2] and math.max(tonumber(head[2]) - now_ms, 1) or 1
        break
      end
      used = used + weight
    end
    -- The lease runs from the permit's slot, when the call is sent (up to the horizon, or
    -- a priority call's max wait, after now): counted from now it would lapse early.
    local slot_ms = math.floor((tat + (i - 1) * interval) / 1000)
    redis.call('ZADD', KEYS[2], math.max(slot_ms + tonumber(ARGV[j + 2]), tonumber(held or 0)),
      member)
    n = i
  end
  count = n
  if count == 0 then
    return {0, string.format('%.0f', wait), string.format('%.0f', now), full}
  end
end
local next_tat = tat + count * interval
redis.call('SET', KEYS[1], string.format('%.0f %.0f %.0f', next_tat, now, next_tat - now),
  'PX', math.ceil((next_tat - now) / 1000) + 86400000)
return {count, string.format('%.0f', wait), string.format('%.0f', now), full}
