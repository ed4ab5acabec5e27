-- limiter_push_back.lua: after a 429, no permit is granted before now + pushback, for everyone.
-- KEYS[1] the limiter's state "<tat> <at> <ahead>" (see limiter_acquire.lua), microseconds
-- ARGV[1] pushback in us   ARGV[2] now in us, or '' for the server's TIME
-- Returns the new tat (us, as a string). Only tat moves: a push-back hands out no permit, so
-- the last grant's time and reach (what a clock step must not forget) stay as they were.
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  now = now_us()
end
local target = now + tonumber(ARGV[1])
local tat, at, reach = now, now, 0
local raw = redis.call('GET', KEYS[1])
if raw then
  local a, b, c = string.match(raw, '^(%S+) ?(%S*) ?(%S*)$')
  tat = tonumber(a) or now
  at = tonumber(b) or now
  reach = tonumber(c) or 0
end
if tat < target then tat = target end
redis.call('SET', KEYS[1], string.format('%.0f %.0f %.0f', tat, at, reach), 'PX',
  math.ceil((tat - now) / 1000) + 86400000)
return string.format('%.0f', tat)
