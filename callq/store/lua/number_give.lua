-- number_give.lua: the feed gives back a per-number count it took (number_take.lua) for a
-- call it did not hand out: only while the call is still a parked waiting call, or ended
-- unsent since (cancelled or expired before the feed's move: final, never placed), and only
-- while the count is still its current dial's. A stray copy of the call's message may have
-- claimed it since (the claim keeps the count the feed took, and its sent mark restamps it):
-- that count is the sent call's now and must stay; and if that call was placed and redialled
-- (a new dial, a new member), the member taken is a placed call's count, whatever the
-- redial's state now (parked again, cancelled).
-- KEYS[1] call hash   KEYS[2] campaign parked zset   KEYS[3] the callee's number zset
-- ARGV[1] request id   ARGV[2] the member the take returned (`{request id}#{redial base}`)
-- Returns 1 when the count was given back, else 0.
local rec = redis.call('HMGET', KEYS[1], 'state', 'redial_base')
local state = rec[1]
if ARGV[2] ~= ARGV[1] .. '#' .. (rec[2] or '0') then return 0 end
if state == 'cancelled' or state == 'expired' then
  return redis.call('ZREM', KEYS[3], ARGV[2])
end
if (state ~= 'queued' and state ~= 'retrying') or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
return redis.call('ZREM', KEYS[3], ARGV[2])
