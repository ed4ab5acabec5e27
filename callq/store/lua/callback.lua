-- callback.lua: apply one StatusCallback to its call record, once.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] campaign call_status hash
-- KEYS[4] sid index hash   KEYS[5] deadlines zset   KEYS[6] pending callback for ARGV[2]
-- KEYS[7] campaign meta hash   KEYS[8] the call's attempts list   KEYS[9] campaign parked zset
-- KEYS[10] unresolved index zset (a call the callback settles leaves it)
-- KEYS[11] awaiting-status zset (a terminal status for the record's own sid: no look-up due)
-- KEYS[12] events stream   KEYS[13] campaign events hash (see prelude's emit_final)
-- ARGV[1] request id   ARGV[2] CallSid   ARGV[3] Status (completed|busy|no-answer|failed|...)
-- ARGV[4] '1' when the status is terminal, else ''
-- ARGV[5] the attempt number the StatusCallback URL named for this call ('' unknown: no
--   URL attempt, or the call was found by CustomField or Sid for another request)
-- ARGV[6..] record field, value, ... (times, durations, recording url, legs; no phone numbers)
--   and last, making the count of ARGV even: the events flag (prelude); a terminal
--   status for the record's own sid that causes no redial makes the call final (its event)
-- A callback proves the call was placed: any other state moves to `originated` (counters moved
-- in the same step, deadline dropped), so a late worker reply or a reconcile finds it settled.
-- A repeat (same sid and status) changes nothing. A new status replaces the old one and moves
-- the call_status counters. A sid other than the record's own is kept apart under
-- `callback_sid_mismatch` (the record's sid and call_status stay). Any stored pending copy of
-- this sid's callback is deleted: this one supersedes it.
-- An earlier attempt's callback (ARGV[5] below the record's attempts) while a later attempt
-- may be live (the call `in_doubt`, or `dialing` past that attempt's sent mark) is kept apart
-- the same way (`callback_sid_mismatch`, with `callback_sid_mismatch_attempt`): it proves the
-- earlier attempt was placed after all, but it is not the live attempt's outcome, which its
-- reply, reconcile or its own callback still brings. In any other state (before the later
-- attempt's sent mark, retrying, parked, queued) it settles the call like any callback: the
-- call was placed, and the next attempt is not sent (mark_sent finds the call moved on).
-- Except a callback of an attempt of a dial before a redial (ARGV[5] at or below
-- `redial_base`, its Sid not in `prev_sids`): that dial was settled already and caused the
-- redial, so it is kept apart in every state, the redial neither settled nor stopped by it;
-- but a `completed` one (the person was reached) while no redial attempt may be live (the
-- redial waiting, or claimed before its sent mark) settles the call: the redial is dropped.
-- Redial on outcome: when the campaign's meta asks for it (`redial_on` holds this status,
-- fewer than `redials` done, not cancelled, the redial due before `end_at`), the call moves on
-- to `retrying` with next_at = now + the interval (linear: interval * n; exponential:
-- interval * 2^(n-1)) and a deadline at next_at, where the sweeper publishes it: no ETA task.
-- The sid joins `prev_sids`; any later callback for a sid in `prev_sids` is a duplicate, so a
-- terminal callback causes one redial however many times it arrives. Every matched callback
-- is logged in the attempts list (sid, call_status), which the per-attempt report reads.
-- Returns {code, previous state, mismatch (0|1), previous call_status, redialled (0|1)},
-- where code is 'matched', 'duplicate', or 'missing' (no such record; nothing written);
-- 'matched' adds the record's account (its mark_sent's), whose live-call slots a terminal
-- status frees without another look-up, and the record's attempt number when the callback
-- was an earlier attempt's kept apart ('' otherwise), and '1' when a `completed` callback of
-- the dial before the redial settled the call, dropping the redial ('' otherwise).
local rec = redis.call('HMGET', KEYS[1], 'state', 'sid', 'call_status',
  'callback_sid_mismatch', 'callback_sid_mismatch_status', 'prev_sids', 'redials_done',
  'attempts', 'callback_sid', 'parties', 'account', 'sent', 'claim', 'redial_base',
  'callback_sid_mismatch_during', 'callback_sid_mismatch_attempt')
local state = rec[1]
if not state then return {'missing', '', 0, '', 0} end
local sid, status = ARGV[2], ARGV[3]
-- field/value pairs come in twos after ARGV[5]: an odd one out at the end is the events flag.
local nargs, evflag = #ARGV, ''
if nargs % 2 == 0 then evflag = ARGV[nargs]; nargs = nargs - 1 end
local of_attempt = tonumber(ARGV[5])
local current = tonumber(rec[8]) or 0
local live = state == 'in_doubt' or (state == 'dialing' and rec[13] and rec[12] == rec[13])
local own = rec[2] or ''
-- After a redial the record still holds the previous attempt's sid: it is not this attempt's.
if own ~= '' and string.find(' ' .. (rec[6] or '') .. ' ', ' ' .. own .. ' ', 1, true) then
  own = ''
end
-- A callback of an attempt of a dial before a redial (at or below `redial_base`) is stale in
-- every state: it proves nothing about the redial, which it neither settles nor stops
-- (waiting to be dialled, claimed, cancelled, failed: kept apart like a live one's).
-- Not the record's own Sid: that is the callback that settled the call (`reached` below), a
-- repeat of it or a new status for it is the call's own.
local before_dial = of_attempt ~= nil and of_attempt <= (tonumber(rec[14]) or 0)
  and not (own ~= '' and own == sid)
-- Except `completed` (the person answered the dial before, e.g. on an attempt wrongly judged
-- unplaced) while no redial attempt may be live: the redial waiting (`retrying`, `queued`,
-- also after a redial attempt came back unplaced) or claimed before its sent mark. It settles
-- the call (that Sid and status, `originated`): the redial is dropped (mark_sent then finds
-- the call moved on), no redial counted for it. Once a redial attempt may be live (`in_doubt`,
-- `dialing` past its sent mark) or the call is final, it stays kept apart.
local reached = before_dial and status == 'completed' and not live and (own == '' or own == sid)
  and (state == 'retrying' or state == 'queued' or state == 'dialing')
local stale = (of_attempt ~= nil
  and ((of_attempt < current and live) or (before_dial and not reached))) and true or false
if string.find(' ' .. (rec[6] or '') .. ' ', ' ' .. sid .. ' ', 1, true) then
  redis.call('DEL', KEYS[6])
  return {'duplicate', state, 0, rec[3] or '', 0}
end
local old = rec[3] or ''
local mismatch = (own ~= '' and own ~= sid) or stale
local flag = mismatch and 1 or 0
if stale then
  if rec[4] == sid and rec[5] == status then
    redis.call('DEL', KEYS[6])
    return {'duplicate', state, flag, old, 0}
  end
elseif state == 'originated' then
  local same
  if mismatch then
    same = rec[4] == sid and rec[5] == status
  else
    -- callback_sid: the sid whose callback set call_status (after a redial, the record's
    -- call_status is still the previous attempt's until this attempt's callback comes).
    same = own == sid and (rec[9] or own) == sid and old == status
  end
  if same then
    redis.call('DEL', KEYS[6])
    return {'duplicate', state, flag, old, 0}
  end
end
local now = now_ms()
-- A proof kept for the live attempt (an earlier attempt of its dial, `_during` = the live
-- attempt) is not replaced by a callback of a dial before the redial, which proves nothing
-- about the live attempt: that one would then retry although its dial was placed.
local in_dial = stale and of_attempt > (tonumber(rec[14]) or 0)
local keep_proof = stale and not in_dial and tonumber(rec[15]) == current
if mismatch and keep_proof then
  redis.call('HSETNX', KEYS[4], sid, ARGV[1])
elseif mismatch then
  redis.call('HSET', KEYS[1], 'callback_sid_mismatch', sid,
    'callback_sid_mismatch_status', status, 'callback_at', now)
  -- `callback_sid_mismatch_during`: the attempt that was live. Should that one come back
  -- unplaced (its reply, a rejection, reconcile), finish.lua refuses to retry or fail it:
  -- this callback proves the call was placed, and is applied then (CallbackStore.apply_kept).
  -- Only for an attempt of the live attempt's dial (after its redial base): a call of the dial
  -- before a redial proves nothing about the redial, which still retries when unplaced.
  if stale then
    redis.call('HSET', KEYS[1], 'callback_sid_mismatch_attempt', of_attempt)
    if in_dial then
      redis.call('HSET', KEYS[1], 'callback_sid_mismatch_during', current)
    else
      redis.call('HDEL', KEYS[1], 'callback_sid_mismatch_during')
    end
  end
  redis.call('HSETNX', KEYS[4], sid, ARGV[1])
else
  redis.call('HSET', KEYS[1], 'sid', sid, 'call_status', status, 'callback_at', now,
    'callback_sid', sid)
  redis.call('HDEL', KEYS[1], 'callback_sid_mismatch_during')  -- the call is settled now
  if rec[4] == sid then
    -- The callback kept apart is the call's own now (CallbackStore.apply_kept): no mismatch.
    redis.call('HDEL', KEYS[1], 'callback_sid_mismatch', 'callback_sid_mismatch_status',
      'callback_sid_mismatch_attempt')
  end
  if nargs > 5 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 6, nargs))
  end
  if ARGV[4] == '1' then redis.call('ZREM', KEYS[11], ARGV[1]) end
  redis.call('HSET', KEYS[4], sid, ARGV[1])
  if old ~= status then
    if old ~= '' then redis.call('HINCRBY', KEYS[3], old, -1) end
    redis.call('HINCRBY', KEYS[3], status, 1)
  end
end
if state ~= 'originated' and not stale then
  move(KEYS[1], KEYS[2], state, 'originated', now)
  redis.call('HSET', KEYS[1], 'originated_at', now)
  redis.call('HDEL', KEYS[1], 'lease_until', 'worker', 'next_at', 'parked')
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[9], ARGV[1])
  if rec[10] then redis.call('ZREM', KEYS[10], rec[10] .. '|' .. ARGV[1]) end
end
redis.call('DEL', KEYS[6])
local redialled = 0
if not mismatch then
  local attempts = tonumber(rec[8]) or 0
  -- The attempt whose call this is: the URL's; for the callback kept apart and applied now
  -- (CallbackStore.apply_kept, no URL attempt), the earlier attempt it came for
  -- (`callback_sid_mismatch_attempt`), not the unplaced live one; else the record's.
  local of = attempts
  if of_attempt and of_attempt >= 1 and of_attempt <= attempts then
    of = of_attempt
  elseif rec[4] == sid and tonumber(rec[16]) then
    of = tonumber(rec[16])
  end
  redis.call('RPUSH', KEYS[8], cjson.encode({callback = status, sid = sid, at = now,
    attempt = of}))
  local m = redis.call('HMGET', KEYS[7], 'redial_on', 'redials', 'redial_interval',
    'redial_backoff', 'cancelled', 'end_at')
  local max = tonumber(m[2]) or 0
  local done = tonumber(rec[7]) or 0
  if not reached and done < max and m[5] ~= '1' and m[1]
      and string.find(',' .. m[1] .. ',', ',' .. status .. ',', 1, true) then
    local interval = (tonumber(m[3]) or 600) * 1000  -- the default of callq.controls
    local delay = interval * (done + 1)
    if m[4] == 'exponential' then delay = interval * (2 ^ done) end
    local at = now + math.floor(delay)
    if not m[6] or m[6] == '' or at < tonumber(m[6]) then
      local prev = rec[6] or ''
      if prev ~= '' then prev = prev .. ' ' end
      move(KEYS[1], KEYS[2], 'originated', 'retrying', now)
      redis.call('HSET', KEYS[1], 'next_at', at,
        'redials_done', done + 1, 'redial_base', attempts, 'prev_sids', prev .. sid)
      redis.call('HINCRBY', KEYS[2], 'redials', 1)
      redis.call('ZADD', KEYS[5], at, ARGV[1])
      redis.call('RPUSH', KEYS[8], cjson.encode({redial = done + 1, after = status, sid = sid,
        at = now, next_at = at}))
      redialled = 1
    end
  end
  if ARGV[4] == '1' and redialled == 0 then
    emit_final(KEYS[1], KEYS[2], KEYS[12], KEYS[13], ARGV[1], evflag, now)
  end
end
return {'matched', state, flag, old, redialled, rec[11] or '', stale and current or '',
  reached and '1' or ''}
