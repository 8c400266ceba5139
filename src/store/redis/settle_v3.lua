-- settle_v3: ends (or renews) a request: releases its leases, reconciles its token buckets and,
-- once per request id, releases its hold, debits its cost and appends its usage event.
-- (Prepended: ledger_lib_v2.)
-- KEYS: as admit_v3 (4 per scope)
-- ARGV[1] request id   ARGV[2] 'settle' or 'renew'   ARGV[3] lease ttl ms (renew)
-- ARGV[4] tokens to give back (estimate - actual; negative takes more)
-- ARGV[5] 1 to give the request itself back too (admission undone), else 0
-- ARGV[6] key prefix   ARGV[7] account id ('' = no ledger work)   ARGV[8] hold ttl ms (renew)
-- ARGV[9] cost, rao (decimal)   ARGV[10] input tokens   ARGV[11] output tokens
-- ARGV[12] netuid or ''   ARGV[13] day of the event (YYYY-MM-DD, from finished_at)
-- ARGV[14] the usage event (json)   ARGV[15] done-mark ttl s   ARGV[16] retention s
-- ARGV[17] expired-hold policy
-- ARGV[18] 1 = a zero-priced request of a caller without an account: the done-mark (which
--          expires), the event and the public stats only; no account key is written
-- ARGV[19..] per scope: rpm capacity, tpm capacity, tpd capacity, max concurrent
-- The lease part acts only if it removes the request's lease; the money part only if the
-- request's done-mark was not set yet, so a retried settlement (a journal replay, or one after
-- the hold expired) changes nothing.
-- Returns flat name/value pairs, decoded by src/store/redis/admission.rs:
--   settle: leases_removed  how many of the request's leases this call removed
--           recorded        'now' (debited and recorded now), 'before' (settled before:
--                           nothing changed) or 'not_asked' (no ledger work)
--   renew:  leases_renewed  how many of the request's leases were still there to renew
-- v3 (over v2): named fields instead of two positional integers.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, mode = ARGV[1], ARGV[2]
local prefix, account = ARGV[6], ARGV[7]
local acct = tag(prefix, key.account, account)
local A = 18
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
  if account ~= '' then
    redis.call('ZADD', acct .. key.holdexp, 'XX', now + tonumber(ARGV[8]), id)
  end
  return { 'leases_renewed', renewed }
end

local removed = 0
for s = 0, n - 1 do
  removed = removed + redis.call('ZREM', KEYS[s * 4 + 4], id)
end
if removed > 0 then
  local tokens, whole = tonumber(ARGV[4]), tonumber(ARGV[5])
  for s = 0, n - 1 do
    local back = { whole, tokens, tokens }
    for b = 1, 3 do
      if back[b] ~= 0 then
        local cap = tonumber(ARGV[A + s * 4 + b])
        local bucket = KEYS[s * 4 + b]
        local v = redis.call('HMGET', bucket, 'l', 't')
        local lvl = cap
        if v[1] then
          lvl = math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / periods[b])
        end
        lvl = math.min(cap, lvl + back[b])
        redis.call('HSET', bucket, 'l', tostring(lvl), 't', now)
        redis.call('PEXPIRE', bucket, math.ceil((cap - lvl) * periods[b] / cap) + 1000)
      end
    end
  end
end

if account == '' then
  return { 'leases_removed', removed, 'recorded', 'not_asked' }
end
local done_ttl, retention = tonumber(ARGV[15]), tonumber(ARGV[16])
local anon = ARGV[18] == '1'
if not anon then
  sweep(prefix, account, now, ARGV[17], done_ttl, retention)
end
if not redis.call('SET', acct .. key.done .. id, 's', 'NX', 'EX', done_ttl) then
  return { 'leases_removed', removed, 'recorded', 'before' }
end
if not anon then
  local hold = redis.call('HGET', acct .. key.holds, id)
  if hold then
    local amount = string.match(hold, '^(%d+)')
    redis.call('HDEL', acct .. key.holds, id)
    redis.call('ZREM', acct .. key.holdexp, id)
    redis.call('DECRBY', acct .. key.held, amount)
  end
end
record(prefix, account, ARGV[12], ARGV[13], ARGV[14], ARGV[9], ARGV[10], ARGV[11], retention, anon)
return { 'leases_removed', removed, 'recorded', 'now' }
