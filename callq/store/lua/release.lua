-- release.lua: give back an attempt that never sent anything, attempt uncounted: `dialing` ->
-- the state it was claimed from (`queued` or `retrying`); or park it, cancel it, expire it.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- KEYS[4] campaign meta hash   KEYS[5] campaign parked zset   KEYS[6] wake zset
-- KEYS[7] unresolved index zset (a released attempt sent nothing: it leaves the index)
-- ARGV[1] request id  ARGV[2] the claim token  ARGV[3] ms until the sweeper republishes it
-- ARGV[4] '1' when the caller marked the attempt sent but knows it sent nothing (it found
--         itself late for its permit and held the request back); otherwise a sent attempt
--         is never released.
-- ARGV[5] what becomes of the call: '' back to the queue (the caller republishes it);
--         'park' held in the campaign's parked set; 'cancelled' or 'expired' (final). In a
--         campaign cancelled since the claim, '' and 'park' become 'cancelled'.
-- ARGV[6] for 'park': ms until the sweeper drains the parked set ('' = now)
-- ARGV[7] campaign id
-- KEYS[8] events stream   KEYS[9] campaign events hash (see prelude's emit_final)
-- KEYS[10] the call's attempts list (optional; for ARGV[9])
-- ARGV[8] the events flag (prelude): a call cancelled or expired here is final (its event)
-- ARGV[9] one JSON line for the attempts log ('' or absent = none): why it was given back
-- ARGV[10] (optional) for 'park' in a campaign not paused: the callee zone's band (ms, see
--          prelude's park), or ''
-- KEYS[11] (optional) the callee's number zset (per-number cap): the dial's count, taken by
--         the claim, is given back (nothing was sent); the next claim takes it again.
-- A park in a paused campaign sets no wake (resume does); a park in a campaign that is not
-- paused always sets one, so a call parked just after a resume is not stranded.
-- Returns 1 when released, 0 when the attempt was not ours or was already marked sent; 2
-- (nothing written) for an attempt marked sent that sent nothing (ARGV[4]) when an earlier
-- attempt's callback, kept apart while this one was live (callback.lua), proves the call was
-- placed: the caller applies that callback (CallbackStore.apply_kept), not a redial.
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'sent', 'claim', 'claimed_from',
  'parties', 'redial_base', 'callback_sid_mismatch', 'callback_sid_mismatch_during')
if rec[1] ~= 'dialing' or rec[4] ~= ARGV[2] then return 0 end
if rec[3] == ARGV[2] and ARGV[4] ~= '1' then return 0 end
if rec[3] == ARGV[2] and rec[8] and rec[9] and rec[9] == rec[2] then return 2 end
local now = now_ms()
local action = ARGV[5]
-- A campaign cancelled since the claim: whatever the caller asked, the call is cancelled
-- (a cancel that ran while this call was dialing skipped it).
if (action == '' or action == 'park') and redis.call('HGET', KEYS[4], 'cancelled') == '1' then
  action = 'cancelled'
end
local to = rec[5] or 'retrying'
if action == 'cancelled' or action == 'expired' then to = action end
move(KEYS[1], KEYS[2], 'dialing', to, now)
redis.call('HSET', KEYS[1], 'attempts', tonumber(rec[2]) - 1, 'sent', 0)
redis.call('HDEL', KEYS[1], 'lease_until', 'worker', 'claimed_from')
if rec[6] then redis.call('ZREM', KEYS[7], rec[6] .. '|' .. ARGV[1]) end
if to == 'retrying' then redis.call('HSET', KEYS[1], 'next_at', now) end
if KEYS[11] then redis.call('ZREM', KEYS[11], ARGV[1] .. '#' .. (rec[7] or '0')) end
if KEYS[10] and ARGV[9] and ARGV[9] ~= '' then redis.call('RPUSH', KEYS[10], ARGV[9]) end
if action == 'cancelled' or action == 'expired' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  emit_final(KEYS[1], KEYS[2], KEYS[8], KEYS[9], ARGV[1], ARGV[8], now)
elseif action == 'park' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  local score = tonumber(redis.call('HGET', KEYS[1], 'created_at')) or now
  if redis.call('HGET', KEYS[4], 'paused') == '1' then
    park(KEYS[1], KEYS[5], KEYS[6], ARGV[1], ARGV[7], score, 'paused', nil)
  else
    park(KEYS[1], KEYS[5], KEYS[6], ARGV[1], ARGV[7], score, 'waiting',
      now + (tonumber(ARGV[6]) or 0), ARGV[10])
  end
else
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
end
return 1
