-- rewake.lua: when a judge next looks at a campaign, unless its controls changed since the
-- judge read them (a pause, resume, set or cancel bumps the meta's `v` and wants a look now:
-- a judge that read the old controls must not put that look off).
-- KEYS[1] wake zset   KEYS[2] campaign meta hash
-- ARGV[1] campaign id   ARGV[2] ms from now   ARGV[3] the `v` the judge read ('' = none)
-- Returns 1 when the wake is set, 0 when the campaign has none or its controls changed.
if (redis.call('HGET', KEYS[2], 'v') or '') ~= ARGV[3] then return 0 end
local now = now_ms()
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
