-- claim.lua: take a call for one attempt: `queued`/`retrying` -> `dialing`, with a lease; or,
-- when the campaign says so, hold it instead (park), cancel it, or let it expire.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- KEYS[4] campaign meta hash   KEYS[5] campaign parked zset   KEYS[6] wake zset
-- ARGV[1] request id  ARGV[2] lease in ms  ARGV[3] early tolerance in ms  ARGV[4] worker name
-- ARGV[5] a fresh claim token (never reused): the fence for mark_sent, release and finish
-- ARGV[6] the caller's gate: '' dial, 'expire' (past the campaign's end_at), or a number of
--         ms to wait (outside the calling window, account breaker open): park until then
-- ARGV[7] campaign id
-- KEYS[7] events stream   KEYS[8] campaign events hash (see prelude's emit_final)
-- ARGV[8] the events flag (prelude): a call cancelled or expired here is final (its event)
-- KEYS[9] (optional) the callee's number zset (per-number cap, `{request id}#{redial base}`
--         -> ms claimed), with ARGV[9] the cap (calls), ARGV[10] its period in ms,
--         ARGV[11] the longest period any cap counts over in ms (older members are dropped),
--         ARGV[12] the campaign's end_at in ms ('' = none), ARGV[13] the cap as said (2/1d).
--         The call's dial (all its attempts until a redial) counts once, taken here with
--         the claim: at the cap the call is held until the count lapses (the sweeper
--         republishes it then: its deadline), attempt uncounted, no permit asked for; or,
--         when that is past end_at, ends `skipped`. The reason goes to last_error.
--         A claim that parks the call, ends it cancelled or expired, or finds it so, gives
--         back the dial's count (KEYS[9] is then given whatever the gate).
-- ARGV[14] (optional) for a wait gate: the callee zone's band (ms, see prelude's park), or ''
--         (ARGV[9..13] are then '' when there is no per-number cap)
-- The campaign's `cancelled` and `paused` flags are read here, in the same step as the claim,
-- so a pause or cancel is never missed by a claim that raced it.
-- Returns {code, attempts, state, now_us, field, value, ...}, where now_us is the server's
-- time in microseconds (a fed call's slot is reckoned from it):
--   {'claimed', n, 'dialing', now_us, <the whole record as field/value pairs>} - attempt n
--                              is ours;
--   {'parked', n, state, now_us}     - held in the campaign's parked set (paused or waiting);
--   {'cancelled'|'expired', n, state, now_us} - the call ended here (state is the new state);
--   {'held', n, state, now_us, at_ms} - over the per-number cap: held until at_ms;
--   {'skipped', n, 'skipped', now_us} - over the cap until past end_at: ended here;
--   {'early', n, 'retrying', now_us} - a retry message came before the call's next_at (a
--                              stray copy);
--   {'skip', n, state, now_us}       - nothing to do: already dialing, in doubt, or final;
--   {'missing', 0, '', now_us}       - no such record.
local now_us = now_us()
local now = math.floor(now_us / 1000)
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'next_at', 'created_at',
  'redial_base')
local state = rec[1]
if not state then return {'missing', 0, '', now_us} end
local attempts = tonumber(rec[2]) or 0
-- A call the claim stops unsent (parked, cancelled, expired), or finds ended unsent, gives
-- back its dial's per-number count (the feed may have taken it with the permit), as
-- release.lua does: no attempt of this dial was placed while it waits.
local function give_count()
  if KEYS[9] then redis.call('ZREM', KEYS[9], ARGV[1] .. '#' .. (rec[5] or '0')) end
end
if state ~= 'queued' and state ~= 'retrying' then
  if state == 'cancelled' or state == 'expired' then give_count() end
  return {'skip', attempts, state, now_us}
end
local meta = redis.call('HMGET', KEYS[4], 'cancelled', 'paused')
local gate = ARGV[6]
local function settle(to)
  give_count()
  move(KEYS[1], KEYS[2], state, to, now)
  redis.call('HDEL', KEYS[1], 'next_at', 'parked')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  emit_final(KEYS[1], KEYS[2], KEYS[7], KEYS[8], ARGV[1], ARGV[8], now)
  return {to, attempts, to, now_us}
end
if meta[1] == '1' then return settle('cancelled') end
if gate == 'expire' then return settle('expired') end
if meta[2] == '1' or gate ~= '' then
  give_count()
  redis.call('ZREM', KEYS[3], ARGV[1])
  if meta[2] == '1' then
    park(KEYS[1], KEYS[5], KEYS[6], ARGV[1], ARGV[7], tonumber(rec[4]) or now, 'paused', nil)
  else
    park(KEYS[1], KEYS[5], KEYS[6], ARGV[1], ARGV[7], tonumber(rec[4]) or now, 'waiting',
      now + tonumber(gate), ARGV[14])
  end
  return {'parked', attempts, state, now_us}
end
if state == 'retrying' and rec[3] and (tonumber(rec[3]) or 0) - tonumber(ARGV[3]) > now then
  return {'early', attempts, state, now_us}
end
if KEYS[9] and ARGV[9] and ARGV[9] ~= '' then
  local verdict, at = number_take(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[7], KEYS[8],
    KEYS[9], ARGV[1], state, rec[5], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[8],
    now)
  if verdict == 'skipped' then return {'skipped', attempts, 'skipped', now_us} end
  if verdict == 'held' then return {'held', attempts, state, now_us, at} end
end
attempts = attempts + 1
local lease = now + tonumber(ARGV[2])
move(KEYS[1], KEYS[2], state, 'dialing', now)
redis.call('HSET', KEYS[1], 'attempts', attempts, 'sent', 0, 'lease_until', lease,
  'worker', ARGV[4], 'claim', ARGV[5], 'claimed_from', state)
redis.call('HDEL', KEYS[1], 'next_at', 'parked')
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[3], lease, ARGV[1])
local out = {'claimed', attempts, 'dialing', now_us}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
