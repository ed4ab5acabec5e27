-- callback.lua: apply one StatusCallback to its call record, once.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] campaign call_status hash
-- KEYS[4] sid index hash   KEYS[5] deadlines zset   KEYS[6] pending callback for ARGV[2]
-- ARGV[1] request id   ARGV[2] CallSid   ARGV[3] Status (completed|busy|no-answer|failed|...)
-- ARGV[4..] record field, value, ... (times, durations, recording url, legs; no phone numbers)
-- A callback proves the call was placed: any other state moves to `originated` (counters moved
-- in the same step, deadline dropped), so a late worker reply or a reconcile finds it settled.
-- A repeat (same sid and status) changes nothing. A new status replaces the old one and moves
-- the call_status counters. A sid other than the record's own is kept apart under
-- `callback_sid_mismatch` (the record's sid and call_status stay). Any stored pending copy of
-- this sid's callback is deleted: this one supersedes it.
-- Returns {code, previous state, mismatch (0|1), previous call_status}, where code is
-- 'matched', 'duplicate', or 'missing' (no such record; nothing written).
local rec = redis.call('HMGET', KEYS[1], 'state', 'sid', 'call_status',
  'callback_sid_mismatch', 'callback_sid_mismatch_status')
local state = rec[1]
if not state then return {'missing', '', 0, ''} end
local sid, status = ARGV[2], ARGV[3]
local own = rec[2] or ''
local old = rec[3] or ''
local mismatch = own ~= '' and own ~= sid
local flag = mismatch and 1 or 0
if state == 'originated' then
  local same
  if mismatch then
    same = rec[4] == sid and rec[5] == status
  else
    same = own == sid and old == status
  end
  if same then
    redis.call('DEL', KEYS[6])
    return {'duplicate', state, flag, old}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if mismatch then
  redis.call('HSET', KEYS[1], 'callback_sid_mismatch', sid,
    'callback_sid_mismatch_status', status, 'callback_at', now)
  redis.call('HSETNX', KEYS[4], sid, ARGV[1])
else
  redis.call('HSET', KEYS[1], 'sid', sid, 'call_status', status, 'callback_at', now)
  if #ARGV > 3 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  end
  redis.call('HSET', KEYS[4], sid, ARGV[1])
  if old ~= status then
    if old ~= '' then redis.call('HINCRBY', KEYS[3], old, -1) end
    redis.call('HINCRBY', KEYS[3], status, 1)
  end
end
if state ~= 'originated' then
  redis.call('HSET', KEYS[1], 'state', 'originated', 'originated_at', now, 'updated_at', now)
  redis.call('HDEL', KEYS[1], 'lease_until', 'worker', 'next_at')
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('HINCRBY', KEYS[2], state, -1)
  redis.call('HINCRBY', KEYS[2], 'originated', 1)
end
redis.call('DEL', KEYS[6])
return {'matched', state, flag, old}
