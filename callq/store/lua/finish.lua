-- finish.lua: record what one sent attempt came to.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- KEYS[4] sid index hash   KEYS[5] attempts list   KEYS[6] pending callback for ARGV[4]
-- KEYS[7] unresolved index zset (the call leaves it unless it stays in doubt)
-- KEYS[8] awaiting-status zset (the call_status backfill)
-- KEYS[9] events stream   KEYS[10] campaign events hash (see prelude's emit_final)
-- ARGV[1] request id   ARGV[2] the claim token of the attempt
-- ARGV[3] new state: originated | retrying | failed | in_doubt
-- ARGV[4] sid ('' if none)   ARGV[5] last error ('' if none)
-- ARGV[6] ms until next_at (retrying only, else '')
-- ARGV[7] ms until the sweeper must look again (retrying: overdue guard; in_doubt: reconcile)
-- ARGV[8] one JSON line for the attempts log
-- ARGV[9] '1' to uncount the attempt (an account-level refusal: the breaker's fault, not the call's)
-- ARGV[10] originated only: ms until its call_status is looked up in Call Details if no
--          callback has brought it ('' = never: the backfill is off)
-- ARGV[11] the events flag (prelude: '' none; 'f' a failed call's event, and an originated
--          one's with 'o'; 'a' one call.attempt event per outcome recorded, not for an
--          in-doubt call that stays in doubt; its id counts them: `attempt_events`)
-- Allowed from `dialing` or `in_doubt` of the same claim (a late reply after the lease ran
-- out still tells the truth). Returns {1, new state, pending} on success, where pending is 1
-- when a callback for this sid is waiting; {0, current state, 0} when refused; and
-- {0, current state, 0, 1} when this attempt comes back unplaced (retrying or failed) but an
-- earlier attempt's callback, kept apart while this one was live (callback.lua), proves the
-- call was placed: nothing is written, the caller applies that callback
-- (CallbackStore.apply_kept) instead of dialling the person again or losing their call.
local rec = redis.call('HMGET', KEYS[1], 'state', 'claim', 'parties', 'attempts',
  'callback_sid_mismatch', 'callback_sid_mismatch_during')
local from = rec[1]
if (from ~= 'dialing' and from ~= 'in_doubt') or rec[2] ~= ARGV[2] then
  return {0, from or '', 0}
end
local to = ARGV[3]
if (to == 'retrying' or to == 'failed') and rec[5] and rec[6] and rec[6] == rec[4] then
  return {0, from, 0, 1}
end
local now = now_ms()
move(KEYS[1], KEYS[2], from, to, now)
redis.call('HDEL', KEYS[1], 'lease_until', 'worker', 'next_at')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5]) end
redis.call('ZREM', KEYS[3], ARGV[1])
if to ~= 'in_doubt' and rec[3] then redis.call('ZREM', KEYS[7], rec[3] .. '|' .. ARGV[1]) end
local pending = 0
if to == 'originated' and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'sid', ARGV[4], 'originated_at', now)
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[1])
  pending = redis.call('EXISTS', KEYS[6])
  if ARGV[10] and ARGV[10] ~= '' then
    redis.call('ZADD', KEYS[8], now + tonumber(ARGV[10]), ARGV[1])
  end
elseif to == 'retrying' then
  redis.call('HSET', KEYS[1], 'next_at', now + tonumber(ARGV[6]))
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
elseif to == 'in_doubt' then
  if from ~= 'in_doubt' then redis.call('HSET', KEYS[1], 'in_doubt_since', now) end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[1])
end
if ARGV[8] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[8]) end
if ARGV[9] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
if events_on(ARGV[11], 'a') and from ~= to then  -- not a reconcile's look again
  local n = redis.call('HGET', KEYS[1], 'attempts') or '0'
  -- The id counts the call's attempt events: the attempt number alone repeats (an uncounted
  -- account-level refusal gives the next attempt the same number), and a receiver dedupes.
  local seq = redis.call('HINCRBY', KEYS[1], 'attempt_events', 1)
  redis.call('XADD', KEYS[9], '*', 'id', 'call.attempt:' .. ARGV[1] .. ':' .. seq .. ':' .. to,
    'type', 'call.attempt', 'at', now, 'data', cjson.encode({request_id = ARGV[1],
      campaign = redis.call('HGET', KEYS[1], 'campaign') or '', attempt = tonumber(n),
      state = to, sid = ARGV[4], error = ARGV[5]}))
end
if to == 'failed' or (to == 'originated' and events_on(ARGV[11], 'o')) then
  emit_final(KEYS[1], KEYS[2], KEYS[9], KEYS[10], ARGV[1], ARGV[11], now)
end
return {1, to, pending}
