-- number_take.lua: the feed takes a parked call's per-number count before it reserves the
-- call a permit, so a call the cap refuses spends none (see number_take in the prelude).
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- KEYS[4] campaign parked zset   KEYS[5] events stream   KEYS[6] campaign events hash
-- KEYS[7] the callee's number zset
-- ARGV[1] request id   ARGV[2] the cap (calls)   ARGV[3] its period in ms
-- ARGV[4] the longest period any cap counts over in ms   ARGV[5] the campaign's end_at in
-- ms ('' = none)   ARGV[6] the cap as said (2/1d)   ARGV[7] the events flag (prelude)
-- Returns {'taken', member} (the dial holds a count; the claim keeps it, a call not fed
-- gives it back: ZREM member), {'held', at_ms}, {'skipped'}, or {'gone'} (no longer a
-- parked waiting call: nothing done).
local rec = redis.call('HMGET', KEYS[1], 'state', 'redial_base')
local state = rec[1]
if (state ~= 'queued' and state ~= 'retrying') or not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  return {'gone'}
end
local verdict, at = number_take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
  ARGV[1], state, rec[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], now_ms())
if verdict == 'taken' then return {'taken', ARGV[1] .. '#' .. (rec[2] or '0')} end
if verdict == 'held' then return {'held', at} end
return {verdict}
