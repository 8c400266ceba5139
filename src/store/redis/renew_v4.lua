-- renew_v4: extends the leases of many live requests on ONE hash tag, and their holds when the
-- tag is their account's (the limiter's renewer calls it once per tag per renewal period).
-- (Prepended: ledger_lib_v3, for the key names.)
-- KEYS: [1] the scope's lease set ({x}:q:conc), or without leases any key of the tag
-- ARGV[1] lease ttl ms   ARGV[2] hold ttl ms   ARGV[3] key prefix   ARGV[4] account id ('')
-- ARGV[5] 1 = KEYS[1] is a lease set   ARGV[6] leases L   ARGV[7] holds H
-- then L request ids, then H request ids
-- A lease or hold that is gone (settled, or expired and swept) is not brought back (XX).
-- Returns { 'renewed', <leases still there> }.
local now = now_ms()
local ttl, hold_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local L, H = tonumber(ARGV[6]), tonumber(ARGV[7])
local renewed = 0
local i = 8
if ARGV[5] == '1' then
  for _ = 1, L do
    renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
    i = i + 1
  end
else
  i = i + L
end
if H > 0 then
  local holdexp = tag(ARGV[3], key.account, ARGV[4]) .. key.holdexp
  for _ = 1, H do
    redis.call('ZADD', holdexp, 'XX', now + hold_ttl, ARGV[i])
    i = i + 1
  end
end
return { 'renewed', renewed }
