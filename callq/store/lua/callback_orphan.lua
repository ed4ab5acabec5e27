-- callback_orphan.lua: find the call of a callback by its sid, or keep the callback for later.
-- KEYS[1] sid index hash   KEYS[2] pending callback for ARGV[1]
-- ARGV[1] CallSid   ARGV[2] the callback as JSON   ARGV[3] how long to keep it, in ms
-- One step with finish.lua's "record the sid, then look for a pending callback": either the
-- worker's finish sees the callback stored here, or this script sees the worker's sid.
-- Returns the request id when the sid is known (nothing stored), else '' after storing it.
local rid = redis.call('HGET', KEYS[1], ARGV[1])
if rid then return rid end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return ''
