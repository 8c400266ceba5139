-- ledger_lib_v2: helpers shared by admit_v3 and settle_v3 (prepended to both scripts).
-- Money is handled as decimal strings and changed only with INCRBY/HINCRBY, so amounts stay
-- exact 64-bit integers; Lua numbers (doubles) are used only to compare them.
-- v2 (over v1): the keys the scripts build themselves are spelled once, in `key` below.

-- The keys the ledger builds from the prefix (ARGV) rather than receiving as KEYS, because
-- which ones a call touches is decided here: the one place in Lua that spells them. They must
-- match src/store/keys.rs, where the whole layout is documented. Pieces in one table (built
-- by a single constructor on every call) rather than a function per key, which measured
-- slower: `tag(prefix, key.account, id)` is `<prefix>{a:<id>}`, then `.. key.balance` etc.
local key = {
  account = '{a:', subnet = '{s:', month = '{u:', stats = '{stats}',
  balance = ':bal', held = ':held', holds = ':holds', holdexp = ':holdexp', done = ':done:',
  debits = ':debits', rollup = ':use:', callers = ':callers:',
}
local function tag(prefix, kind, id) return prefix .. kind .. id .. '}' end

-- Unix ms -> year, month, day, hour, minute, second, ms (UTC; proleptic Gregorian).
local function civil(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m, d, math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60, ms % 1000
end

local function rfc3339(ms)
  local y, m, d, hh, mm, ss, frac = civil(ms)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, hh, mm, ss, frac)
end

local function day_of(ms)
  local y, m, d = civil(ms)
  return string.format('%04d-%02d-%02d', y, m, d)
end

-- Appends one usage event and everything derived from it: the month's event stream, the
-- account's debits (total and per month), the daily rollups of the public stats, the account
-- and its subnet, and the balance. `netuid` is '' for callers outside a subnet. `anon` (a
-- zero-priced request of a caller without an account) records only the event and the public
-- stats: no account key that would never expire.
local function record(prefix, account, netuid, day, json, cost, inp, outp, retention, anon)
  local month = string.sub(day, 1, 7)
  local stream = tag(prefix, key.month, month)
  redis.call('XADD', stream, '*', 'a', account, 'e', json)
  local acct = tag(prefix, key.account, account)
  local stats = prefix .. key.stats
  local rollups = { stats .. key.rollup .. day }
  if not anon then
    redis.call('HINCRBY', acct .. key.debits, 'total', cost)
    redis.call('HINCRBY', acct .. key.debits, month, cost)
    redis.call('DECRBY', acct .. key.balance, cost)
    rollups[2] = acct .. key.rollup .. day
  end
  if netuid ~= '' then
    rollups[#rollups + 1] = tag(prefix, key.subnet, netuid) .. key.rollup .. day
  end
  local callers = stats .. key.callers .. day
  redis.call('SADD', callers, account)
  for i, k in ipairs(rollups) do
    local first = redis.call('HINCRBY', k, 'requests', 1) == 1
    redis.call('HINCRBY', k, 'input_tokens', inp)
    redis.call('HINCRBY', k, 'output_tokens', outp)
    redis.call('HINCRBY', k, 'rao', cost)
    -- Expiries are set when a key is created, not on every write: a day's keys live
    -- `retention` from their first event, and the month's stream and the day's callers set
    -- get theirs with the day's first event (so the stream outlives its last day by at least
    -- `retention` minus one day).
    if first and retention > 0 then
      redis.call('EXPIRE', k, retention)
      if i == 1 then
        redis.call('EXPIRE', stream, retention)
        redis.call('EXPIRE', callers, retention)
      end
    end
  end
end

-- Turns the account's expired holds into `unsettled` usage events, charged per `policy`
-- ('charge' = the held amount, 'release' = nothing). A hold expires only when its replica
-- stopped renewing it (it died or lost Redis for longer than the hold TTL); a settlement that
-- arrives later finds the request done and changes nothing. Returns how many were swept.
local function sweep(prefix, account, now, policy, done_ttl, retention)
  local acct = tag(prefix, key.account, account)
  local expired = redis.call('ZRANGEBYSCORE', acct .. key.holdexp, '-inf', now)
  for _, rid in ipairs(expired) do
    local v = redis.call('HGET', acct .. key.holds, rid)
    redis.call('ZREM', acct .. key.holdexp, rid)
    redis.call('HDEL', acct .. key.holds, rid)
    if v then
      local amount, inp, outp, netuid, tmpl = string.match(v, '^(%d+) (%d+) (%d+) (%S+) (.*)$')
      redis.call('DECRBY', acct .. key.held, amount)
      if redis.call('SET', acct .. key.done .. rid, 'x', 'NX', 'EX', done_ttl) then
        local cost = amount
        if policy ~= 'charge' then cost = '0' end
        if netuid == '-' then netuid = '' end
        local json = string.gsub(tmpl, '"__COST__"', cost, 1)
        json = string.gsub(json, '__FINISHED__', rfc3339(now), 1)
        record(prefix, account, netuid, day_of(now), json, cost, inp, outp, retention, false)
      end
    end
  end
  return #expired
end
