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
-- again at `at` (ms) at the latest, so a parked call always has a way back. `band` (ms, or
-- nil/0): a call held for its callee zone's window goes above the ready band, score + band
-- (callq.campaign.zones), wherever it was; the feed reads only the ready band.
local function park(call, parked, wake, rid, campaign, score, reason, at, band)
  band = tonumber(band) or 0
  if band > 0 then
    redis.call('ZADD', parked, score + band, rid)
  else
    redis.call('ZADD', parked, 'NX', score, rid)
  end
  redis.call('HSET', call, 'parked', reason)
  if at then
    local cur = redis.call('ZSCORE', wake, campaign)
    if not cur or tonumber(cur) > at then redis.call('ZADD', wake, at, campaign) end
  end
end

-- Events sent onward (callq.store.events). `flag` is the caller's events flag: nil or ''
-- when no EVENTS_URL is set (nothing is written), else letters: 'f' final-call events,
-- 'a' per-attempt events too, 'o' an originated call is final at once (no call_status will
-- come). A call that reached a final state is written to the stream once (its `evented`
-- field guards any later transition), and its campaign's events hash counts it; when every
-- call of the campaign is final, campaign.completed is written, once per total.
local function events_on(flag, letter)
  return flag ~= nil and flag ~= '' and string.find(flag, letter, 1, true) ~= nil
end

local function emit_final(call, counts, stream, evhash, rid, flag, now)
  if not events_on(flag, 'f') then return end
  if redis.call('HSETNX', call, 'evented', now) == 0 then return end
  local r = redis.call('HMGET', call, 'campaign', 'state', 'sid', 'call_status', 'attempts',
    'custom_field', 'last_error')
  local campaign = r[1] or ''
  redis.call('XADD', stream, '*', 'id', 'call.final:' .. rid, 'type', 'call.final',
    'at', now, 'data', cjson.encode({request_id = rid, campaign = campaign, state = r[2] or '',
      sid = r[3] or '', call_status = r[4] or '', attempts = tonumber(r[5]) or 0,
      custom_field = r[6] or '', last_error = r[7] or ''}))
  local final = redis.call('HINCRBY', evhash, 'final', 1)
  redis.call('HINCRBY', evhash, 'state:' .. (r[2] or ''), 1)
  if r[4] and r[4] ~= '' then redis.call('HINCRBY', evhash, 'call_status:' .. r[4], 1) end
  local total = tonumber(redis.call('HGET', counts, 'total')) or 0
  if final >= total and redis.call('HGET', evhash, 'completed_total') ~= tostring(total) then
    redis.call('HSET', evhash, 'completed_total', total)
    local states, statuses = {}, {}
    local all = redis.call('HGETALL', evhash)
    for i = 1, #all, 2 do
      local name = all[i]
      if string.sub(name, 1, 6) == 'state:' then
        states[string.sub(name, 7)] = tonumber(all[i + 1])
      elseif string.sub(name, 1, 12) == 'call_status:' then
        statuses[string.sub(name, 13)] = tonumber(all[i + 1])
      end
    end
    redis.call('XADD', stream, '*', 'id', 'campaign.completed:' .. campaign .. ':' .. total,
      'type', 'campaign.completed', 'at', now, 'data', cjson.encode({campaign = campaign,
        total = total, final = final, states = states, call_status = statuses}))
  end
end

-- The per-number cap (NUMBER_DAILY_CAP, --number-cap) for one waiting call, in the step
-- that claims it (claim.lua) or feeds it (number_take.lua). `number` is the callee's zset of
-- dials, `{rid}#{redial base}` -> ms; a dial counts once, however many attempts it takes.
-- `cap` calls per `period` ms; members older than `keep` ms go; `end_at` ms or ''; `label`
-- the cap as said (2/1d). Returns 'taken' (the dial holds a count: taken now, or already),
-- 'held', at (over the cap: out of the parked set, on its deadline `at`, when the count
-- falls below the cap; the reason in last_error), or 'skipped' (that is past end_at: final).
local function number_take(call, counts, deadlines, parked, stream, evhash, number, rid, state,
    redial_base, cap, period, keep, end_at, label, flag, now)
  cap, period = tonumber(cap), tonumber(period)
  local member = rid .. '#' .. (redial_base or '0')
  redis.call('ZREMRANGEBYSCORE', number, '-inf', now - tonumber(keep))
  if not redis.call('ZSCORE', number, member) then
    local n = redis.call('ZCOUNT', number, '(' .. (now - period), '+inf')
    if n >= cap then
      -- The count falls below the cap when its (n - cap + 1)-th oldest lapses.
      local head = redis.call('ZRANGEBYSCORE', number, '(' .. (now - period), '+inf',
        'WITHSCORES', 'LIMIT', n - cap, 1)
      local at = tonumber(head[2]) + period
      local why = 'number cap ' .. label .. ': the number was called ' .. n ..
        ' times in the period'
      local last = tonumber(end_at or '')
      redis.call('HDEL', call, 'parked')
      redis.call('ZREM', parked, rid)
      if last and at >= last then
        redis.call('HSET', call, 'last_error', why .. '; it may not be called again ' ..
          "before the campaign's end_at")
        move(call, counts, state, 'skipped', now)
        redis.call('HDEL', call, 'next_at', 'held_until')
        redis.call('ZREM', deadlines, rid)
        emit_final(call, counts, stream, evhash, rid, flag, now)
        return 'skipped'
      end
      redis.call('HSET', call, 'last_error', why .. '; held until it may be called again',
        'held_until', at)
      if state == 'retrying' then redis.call('HSET', call, 'next_at', at) end
      redis.call('ZADD', deadlines, at, rid)
      return 'held', at
    end
  end
  redis.call('ZADD', number, now, member)
  redis.call('PEXPIRE', number, tonumber(keep))
  -- Held before: its reason is no longer true.
  if redis.call('HDEL', call, 'held_until') == 1 then redis.call('HDEL', call, 'last_error') end
  return 'taken'
end
