-- index_unresolved.lua: put a call sent before the unresolved index existed into it (an
-- upgrade), so reconcile sees it as a rival of every request with the same numbers.
-- KEYS[1] call hash   KEYS[2] unresolved index zset
-- ARGV[1] request id   ARGV[2] the call's parties (callq.parties: `{from}:{to}` digits)
-- Only a call still unresolved (in doubt, or dialling past its sent mark) and not indexed yet
-- is indexed, in one step with that check: a call settled meanwhile is left alone.
-- Returns 1 when indexed, 0 otherwise.
local rec = redis.call('HMGET', KEYS[1], 'state', 'sent', 'claim', 'parties')
if rec[4] or ARGV[2] == '' then return 0 end
local sent = rec[2] and rec[2] ~= '0' and rec[2] == rec[3]
if rec[1] ~= 'in_doubt' and not (rec[1] == 'dialing' and sent) then return 0 end
redis.call('HSET', KEYS[1], 'parties', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[2] .. '|' .. ARGV[1])
return 1
