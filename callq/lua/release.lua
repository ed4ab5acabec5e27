-- release.lua: give back an attempt that never sent anything (the limiter was unreachable,
-- or the worker is shutting down): `dialing` -> its previous waiting state, attempt uncounted.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- ARGV[1] request id  ARGV[2] the claim token  ARGV[3] ms until the sweeper republishes it
-- ARGV[4] '1' when the caller marked the attempt sent but knows it sent nothing (it found
--         itself late for its permit and held the request back); otherwise a sent attempt
--         is never released.
-- Returns 1 when released, 0 when the attempt was not ours or was already marked sent.
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'sent', 'claim')
if rec[1] ~= 'dialing' or rec[4] ~= ARGV[2] then return 0 end
if rec[3] == ARGV[2] and ARGV[4] ~= '1' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', 'retrying', 'attempts', tonumber(rec[2]) - 1,
  'next_at', now, 'updated_at', now, 'sent', 0)
redis.call('HDEL', KEYS[1], 'lease_until', 'worker')
redis.call('HINCRBY', KEYS[2], 'dialing', -1)
redis.call('HINCRBY', KEYS[2], 'retrying', 1)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
return 1
