-- cancel.lua: `queued` | `retrying` -> `cancelled` for one call, parked or not. Calls that are
-- dialing, in doubt or final are left alone (a dialing call that sent nothing yet is stopped
-- at its mark_sent fence by the campaign's `cancelled` flag).
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- KEYS[4] campaign parked zset
-- KEYS[5] events stream   KEYS[6] campaign events hash (see prelude's emit_final)
-- ARGV[1] request id   ARGV[2] the events flag (prelude): a cancelled call is final (its event)
-- Returns 1 when cancelled, else 0.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'retrying' then return 0 end
local now = now_ms()
move(KEYS[1], KEYS[2], state, 'cancelled', now)
redis.call('HDEL', KEYS[1], 'next_at', 'parked')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
emit_final(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[1], ARGV[2], now)
return 1
