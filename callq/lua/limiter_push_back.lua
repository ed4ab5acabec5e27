-- limiter_push_back.lua: after a 429, no permit is granted before now + pushback, for everyone.
-- KEYS[1] the limiter's TAT, in microseconds
-- ARGV[1] pushback in us   ARGV[2] now in us, or '' for the server's TIME
-- Returns the new TAT (us, as a string).
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local target = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < target then tat = target end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
  math.ceil((tat - now) / 1000) + 60000)
return string.format('%.0f', tat)
