-- sweep.lua: the sweeper's verdict on one call whose deadline has passed.
-- KEYS[1] call hash   KEYS[2] campaign counts hash   KEYS[3] deadlines zset
-- ARGV[1] request id   ARGV[2] ms until an in-doubt call is looked at again
-- ARGV[3] ms until a republished retry counts as overdue again
-- ARGV[4] ms until a call still queued is republished again
-- Safe to run from many sweepers at once: only the first to act gets a verdict.
-- Returns one of:
--   'requeue'   a `dialing` call whose lease ran out before anything was sent: back to the
--               state it was claimed from,
--               attempt uncounted; or an overdue `retrying` call; or a call `queued` for so
--               long that its message may be lost. The caller publishes it (a copy is harmless).
--   'in_doubt'  a `dialing` call whose lease ran out after its request was sent.
--   'reconcile' an `in_doubt` call whose check is due. The caller publishes reconcile.
--   'alive' | 'not_due' | 'gone'  nothing to do.
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
local now = now_ms()
if not score then return 'gone' end
if tonumber(score) > now then return 'not_due' end
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'sent', 'lease_until', 'claim',
  'claimed_from')
local state = rec[1]
if state == 'dialing' then
  local lease = tonumber(rec[4]) or 0
  if lease > now then
    redis.call('ZADD', KEYS[3], lease, ARGV[1])
    return 'alive'
  end
  local attempts = tonumber(rec[2]) or 0
  if rec[5] and rec[3] == rec[5] then
    move(KEYS[1], KEYS[2], 'dialing', 'in_doubt', now)
    redis.call('HSET', KEYS[1], 'in_doubt_since', now,
      'last_error', 'worker lost after the request was sent')
    redis.call('HDEL', KEYS[1], 'lease_until', 'worker')
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
    return 'in_doubt'
  end
  local to = rec[6] or 'retrying'
  move(KEYS[1], KEYS[2], 'dialing', to, now)
  redis.call('HSET', KEYS[1], 'attempts', attempts - 1)
  if to == 'retrying' then redis.call('HSET', KEYS[1], 'next_at', now) end
  redis.call('HDEL', KEYS[1], 'lease_until', 'worker', 'claimed_from')
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
  return 'requeue'
elseif state == 'retrying' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
  return 'requeue'
elseif state == 'queued' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
  return 'requeue'
elseif state == 'in_doubt' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
  return 'reconcile'
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 'gone'
