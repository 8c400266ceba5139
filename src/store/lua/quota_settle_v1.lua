-- quota_settle_v1: ends (or renews) a request's hold on its scopes.
-- KEYS: as quota_admit_v1 (4 per scope)
-- ARGV[1] request id   ARGV[2] 'settle' or 'renew'   ARGV[3] lease ttl ms (renew)
-- ARGV[4] tokens to give back (estimate - actual; negative takes more)
-- ARGV[5] 1 to give the request itself back too (admission undone), else 0
-- ARGV[6..] per scope: rpm capacity, tpm capacity, tpd capacity, max concurrent
-- Settling is idempotent: it acts only if it removes the request's lease, so a retried
-- settlement (or one after the lease expired with a dead replica) changes nothing.
-- Returns the number of leases removed (settle) or renewed (renew).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, mode = ARGV[1], ARGV[2]
local n = #KEYS / 4
local periods = { 60000, 60000, 86400000 }

if mode == 'renew' then
  local renewed = 0
  local ttl = tonumber(ARGV[3])
  for s = 0, n - 1 do
    local conc = KEYS[s * 4 + 4]
    if redis.call('ZSCORE', conc, id) then
      redis.call('ZADD', conc, 'XX', now + ttl, id)
      redis.call('PEXPIRE', conc, ttl + 1000)
      renewed = renewed + 1
    end
  end
  return renewed
end

local removed = 0
for s = 0, n - 1 do
  removed = removed + redis.call('ZREM', KEYS[s * 4 + 4], id)
end
if removed == 0 then
  return 0
end
local tokens, whole = tonumber(ARGV[4]), tonumber(ARGV[5])
for s = 0, n - 1 do
  local back = { whole, tokens, tokens }
  for b = 1, 3 do
    if back[b] ~= 0 then
      local cap = tonumber(ARGV[5 + s * 4 + b])
      local key = KEYS[s * 4 + b]
      local v = redis.call('HMGET', key, 'l', 't')
      local lvl = cap
      if v[1] then
        lvl = math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / periods[b])
      end
      lvl = math.min(cap, lvl + back[b])
      redis.call('HSET', key, 'l', tostring(lvl), 't', now)
      redis.call('PEXPIRE', key, math.ceil((cap - lvl) * periods[b] / cap) + 1000)
    end
  end
end
return removed
