-- claim.lua: take a call for one attempt: `queued`/`retrying` -> `dialing`, with a lease.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- ARGV[1] request id  ARGV[2] lease in ms  ARGV[3] early tolerance in ms  ARGV[4] worker name
-- ARGV[5] a fresh claim token (never reused): the fence for mark_sent, release and finish
-- Returns {code, attempts, state, field, value, ...}:
--   {'claimed', n, 'dialing', <the whole record as field/value pairs>} - attempt n is ours;
--   {'early', n, 'retrying'} - a retry message came before the call's next_at (a stray copy);
--   {'skip', n, state}       - nothing to do: already dialing, in doubt, or final;
--   {'missing', 0, ''}       - no such record.
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'next_at')
local state = rec[1]
if not state then return {'missing', 0, ''} end
local attempts = tonumber(rec[2]) or 0
if state ~= 'queued' and state ~= 'retrying' then return {'skip', attempts, state} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if state == 'retrying' and rec[3] and (tonumber(rec[3]) or 0) - tonumber(ARGV[3]) > now then
  return {'early', attempts, state}
end
attempts = attempts + 1
local lease = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'dialing', 'attempts', attempts, 'sent', 0,
  'lease_until', lease, 'worker', ARGV[4], 'claim', ARGV[5], 'updated_at', now)
redis.call('HDEL', KEYS[1], 'next_at')
redis.call('HINCRBY', KEYS[2], state, -1)
redis.call('HINCRBY', KEYS[2], 'dialing', 1)
redis.call('ZADD', KEYS[3], lease, ARGV[1])
local out = {'claimed', attempts, 'dialing'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
