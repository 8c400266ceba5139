-- admit_v3: admits one request at once against every limit and, for a billed account, its
-- balance: all or nothing, in one round trip. (Prepended: ledger_lib_v2.)
-- KEYS: 4 per scope, in order: requests/minute bucket, tokens/minute bucket,
--       tokens/day bucket, concurrency lease set (one scope = one hash tag)
-- ARGV[1] request id          ARGV[2] tokens to consume (estimate)
-- ARGV[3] lease ttl ms        ARGV[4] 'admit' or 'peek' (peek consumes nothing)
-- ARGV[5] key prefix          ARGV[6] account id ('' = no ledger work)
-- ARGV[7] billing: 'none', 'prepaid' (hold the amount) or 'postpaid' (check the credit limit)
-- ARGV[8] worst-case cost, rao (decimal)    ARGV[9] credit limit, rao (postpaid)
-- ARGV[10] hold ttl ms        ARGV[11] expired-hold policy ('charge' or 'release')
-- ARGV[12] done-mark ttl s    ARGV[13] usage retention s (0 = keep)
-- ARGV[14] the hold record: "<amount> <input tokens> <output tokens> <netuid|-> <event json>"
--          (the event json has "__COST__" and __FINISHED__ placeholders, for expiry)
-- ARGV[15..] per scope: rpm capacity, tpm capacity, tpd capacity, max concurrent
-- Buckets are token buckets refilled continuously over their period (capacity per minute or
-- per day), stored as a hash {l = level, t = ms}; time is the Redis server's own (TIME), so
-- replicas with skewed clocks agree.
-- Returns flat name/value pairs, decoded by src/store/redis/admission.rs:
--   refused_scope  0 = admitted, else the refusing scope (1-based)
--   refused_limit  '' (admitted), 'rpm', 'tpm', 'tpd', 'conc' or 'balance'
--   retry_after_ms how long until the refusing limit has room
--   scopes         per scope, name/value pairs: rpm_remaining, rpm_reset_ms, tpm_remaining,
--                  tpm_reset_ms, tpd_remaining, tpd_reset_ms, in_flight
--   balance_rao, held_rao   decimal strings (money can pass 2^53, where a Lua number rounds)
-- v3 (over v2): named fields instead of 3 + 7n + 2 positional values.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, cost, ttl, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local prefix, account, billing = ARGV[5], ARGV[6], ARGV[7]
local A = 14
local n = #KEYS / 4
local periods = { 60000, 60000, 86400000 }
local levels, caps, inflight = {}, {}, {}
local refused, why, retry = 0, 0, 0

for s = 0, n - 1 do
  local costs = { 1, cost, cost }
  for b = 1, 3 do
    local cap = tonumber(ARGV[A + s * 4 + b])
    local lvl = cap
    local v = redis.call('HMGET', KEYS[s * 4 + b], 'l', 't')
    if v[1] then
      lvl = math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / periods[b])
    end
    if mode == 'admit' and refused == 0 and lvl < costs[b] then
      refused, why = s + 1, b
      if costs[b] > cap then
        retry = periods[b]
      else
        retry = math.ceil((costs[b] - lvl) * periods[b] / cap)
      end
    end
    levels[s * 3 + b], caps[s * 3 + b] = lvl, cap
  end
  local conc = KEYS[s * 4 + 4]
  redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
  inflight[s + 1] = redis.call('ZCARD', conc)
  local maxc = tonumber(ARGV[A + 4 + s * 4])
  if mode == 'admit' and refused == 0 and inflight[s + 1] >= maxc then
    refused, why = s + 1, 4
    -- The earliest lease expiry bounds when a slot returns; a release usually comes sooner.
    local first = redis.call('ZRANGE', conc, 0, 0, 'WITHSCORES')
    retry = math.max(1, math.min(1000, tonumber(first[2]) - now))
  end
end

local balance, held = '0', '0'
local acct = tag(prefix, key.account, account)
if account ~= '' then
  sweep(prefix, account, now, ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13]))
  balance = redis.call('GET', acct .. key.balance) or '0'
  held = redis.call('GET', acct .. key.held) or '0'
  if mode == 'admit' and refused == 0 then
    local amount = tonumber(ARGV[8])
    if billing == 'prepaid' and tonumber(balance) - tonumber(held) < amount then
      refused, why = n, 5
    elseif billing == 'postpaid' and tonumber(balance) - amount < -tonumber(ARGV[9]) then
      refused, why = n, 5
    end
  end
end

if mode == 'admit' and refused == 0 then
  for s = 0, n - 1 do
    local costs = { 1, cost, cost }
    for b = 1, 3 do
      local i = s * 3 + b
      local lvl = levels[i] - costs[b]
      levels[i] = lvl
      redis.call('HSET', KEYS[s * 4 + b], 'l', tostring(lvl), 't', now)
      -- Once full again the bucket is indistinguishable from an absent one.
      redis.call('PEXPIRE', KEYS[s * 4 + b], math.ceil((caps[i] - lvl) * periods[b] / caps[i]) + 1000)
    end
    local conc = KEYS[s * 4 + 4]
    redis.call('ZADD', conc, now + ttl, id)
    redis.call('PEXPIRE', conc, ttl + 1000)
    inflight[s + 1] = inflight[s + 1] + 1
  end
  if billing == 'prepaid' then
    redis.call('HSET', acct .. key.holds, id, ARGV[14])
    redis.call('ZADD', acct .. key.holdexp, now + tonumber(ARGV[10]), id)
    held = tostring(redis.call('INCRBY', acct .. key.held, ARGV[8]))
  end
end

local views = {}
for s = 0, n - 1 do
  local i = s * 3
  local l1, l2, l3 = levels[i + 1], levels[i + 2], levels[i + 3]
  local c1, c2, c3 = caps[i + 1], caps[i + 2], caps[i + 3]
  views[s + 1] = {
    'rpm_remaining', math.max(0, math.floor(l1)),
    'rpm_reset_ms', math.max(0, math.ceil((c1 - l1) * periods[1] / c1)),
    'tpm_remaining', math.max(0, math.floor(l2)),
    'tpm_reset_ms', math.max(0, math.ceil((c2 - l2) * periods[2] / c2)),
    'tpd_remaining', math.max(0, math.floor(l3)),
    'tpd_reset_ms', math.max(0, math.ceil((c3 - l3) * periods[3] / c3)),
    'in_flight', inflight[s + 1],
  }
end
local limit_names = { 'rpm', 'tpm', 'tpd', 'conc', 'balance' }
return {
  'refused_scope', refused,
  'refused_limit', limit_names[why] or '',
  'retry_after_ms', retry,
  'scopes', views,
  'balance_rao', balance,
  'held_rao', held,
}
