-- mark_sent.lua: the fence right before the POST. After it, the attempt counts as sent:
-- if the worker dies, the call goes `in_doubt`, never back to the queue.
-- KEYS[1] call hash   KEYS[2] deadlines zset   KEYS[3] campaign meta hash
-- KEYS[4] unresolved index zset (members `{parties}|{request id}`, score 0)
-- ARGV[1] request id  ARGV[2] the claim token  ARGV[3] lease for the request itself, in ms
-- ARGV[4] the name of the Exotel account the request goes through (kept: an in-doubt call is
--         reconciled with that account, even if the campaign's account changes later)
-- ARGV[5] the request's parties (`{from}:{to}` digits, callq.parties), or '' for none: kept
--         on the record and indexed until the attempt is settled (finish, release, callback)
-- KEYS[5] (optional) the callee's number zset (per-number cap): the dial's count, taken by
--         the claim, is stamped with the sent time (if present), so a number's period runs
--         from when its call went out and no two sends are closer than the period.
-- Returns 'sent' when marked; 'lost' when the attempt is no longer ours (its lease ran out, or
-- another state); 'paused' or 'cancelled' when the campaign was paused or cancelled since the
-- claim (nothing is marked: the caller releases the call with that action). Unless 'sent',
-- the caller must NOT send.
local rec = redis.call('HMGET', KEYS[1], 'state', 'claim', 'lease_until', 'parties',
  'redial_base')
if rec[1] ~= 'dialing' or rec[2] ~= ARGV[2] then return 'lost' end
local now = now_ms()
if (tonumber(rec[3]) or 0) <= now then return 'lost' end
local meta = redis.call('HMGET', KEYS[3], 'cancelled', 'paused')
if meta[1] == '1' then return 'cancelled' end
if meta[2] == '1' then return 'paused' end
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'sent', ARGV[2], 'sent_at', now, 'lease_until', lease,
  'account', ARGV[4] or '')
if rec[4] and rec[4] ~= ARGV[5] then
  redis.call('ZREM', KEYS[4], rec[4] .. '|' .. ARGV[1])
  redis.call('HDEL', KEYS[1], 'parties')
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'parties', ARGV[5])
  redis.call('ZADD', KEYS[4], 0, ARGV[5] .. '|' .. ARGV[1])
end
redis.call('ZADD', KEYS[2], lease, ARGV[1])
if KEYS[5] then redis.call('ZADD', KEYS[5], 'XX', now, ARGV[1] .. '#' .. (rec[5] or '0')) end
return 'sent'
