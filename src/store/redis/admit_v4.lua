-- admit_v4: one step of an admission, on the keys of ONE hash tag: a scope's limits and, when
-- the billed account shares the tag (or there is no scope), the account's money. An admission
-- whose scopes and account span several tags runs one step per tag, shared scope first, and
-- refunds the steps already taken when a later one refuses (src/store/redis/admission.rs;
-- docs/ARCHITECTURE.md §5 has why that never over-admits). (Prepended: ledger_lib_v3.)
-- KEYS: with a scope, [1] its bucket hash ({x}:q), [2] its lease set ({x}:q:conc);
--       without, [1] any key of the account's tag (it only routes the call).
-- ARGV[1] request id          ARGV[2] tokens (the estimate)
-- ARGV[3] lease ttl ms        ARGV[4] 'admit', 'peek' (consumes nothing) or 'refund' (gives back
--                             an earlier step's admission of this request: its request, its
--                             tokens and its lease)
-- ARGV[5] key prefix          ARGV[6] account id ('' = no ledger work)
-- ARGV[7] billing: 'none', 'prepaid' (hold the amount) or 'postpaid' (check the credit limit)
-- ARGV[8] worst-case cost, rao (decimal)    ARGV[9] credit limit, rao (postpaid)
-- ARGV[10] hold ttl ms        ARGV[11] expired-hold policy ('charge' or 'release')
-- ARGV[12] done-mark ttl s    ARGV[13] usage retention s (0 = keep)
-- ARGV[14] the hold record: "<amount> <input tokens> <output tokens> <netuid|-> <event json>"
--          (the event json has "__COST__" and __FINISHED__ placeholders, for expiry)
-- ARGV[15..18] with a scope: rpm capacity, tpm capacity, tpd capacity, max concurrent
-- Buckets are token buckets refilled continuously over their period (capacity per minute or
-- per day); time is the Redis server's own (TIME), so replicas with skewed clocks agree.
-- Returns flat name/value pairs, decoded by src/store/redis/admission.rs:
--   refused        '' (admitted), 'rpm', 'tpm', 'tpd', 'conc' or 'balance'
--   retry_after_ms how long until the refusing limit has room
--   view           with a scope, its name/value pairs: rpm_remaining, rpm_reset_ms,
--                  tpm_remaining, tpm_reset_ms, tpd_remaining, tpd_reset_ms, in_flight
--   balance_rao, held_rao   decimal strings (money can pass 2^53, where a Lua number rounds)
--   swept          expired holds turned into events: flat (netuid, day, cost, input, output)
local now = now_ms()
local id, cost, ttl, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local prefix, account, billing = ARGV[5], ARGV[6], ARGV[7]
local scoped = #KEYS == 2
local why, retry = '', 0
local limit_names = { 'rpm', 'tpm', 'tpd' }

local lv, caps, x, inflight
if scoped then
  caps = { tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17]) }
  lv, x = levels(KEYS[1], caps, now)
  if mode == 'refund' then
    if redis.call('ZREM', KEYS[2], id) == 1 then
      local back = { 1, cost, cost }
      for b = 1, 3 do lv[b] = math.min(caps[b], lv[b] + back[b]) end
      store_levels(KEYS[1], KEYS[2], lv, now, x)
    end
    return { 'refused', '', 'retry_after_ms', 0 }
  end
  local costs = { 1, cost, cost }
  if mode == 'admit' then
    for b = 1, 3 do
      if why == '' and lv[b] < costs[b] then
        why = limit_names[b]
        if costs[b] > caps[b] then
          retry = periods[b]
        else
          retry = math.ceil((costs[b] - lv[b]) * periods[b] / caps[b])
        end
      end
    end
  end
  inflight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
  if mode == 'admit' and why == '' and inflight >= tonumber(ARGV[18]) then
    why = 'conc'
    -- The earliest live lease bounds when a slot returns; a release usually comes sooner.
    local first = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES',
      'LIMIT', 0, 1)
    retry = math.max(1, math.min(1000, tonumber(first[2]) - now))
  end
end

local balance, held, swept = '0', '0', {}
local acct = tag(prefix, key.account, account)
if account ~= '' then
  -- Expired holds are swept where they matter: for a peek (the balance a caller is shown), and
  -- for an admission only when the money held would refuse it (an expired hold still counts
  -- as held until swept, so skipping the sweep never admits more). Every settlement batch of
  -- the account sweeps too, so expired holds become events without an admission's cost.
  local function read_money(do_sweep)
    if do_sweep then
      local b = books(false)
      swept = sweep(prefix, account, now, ARGV[11], tonumber(ARGV[12]), b)
      if #swept > 0 then write_books(prefix, account, b, tonumber(ARGV[13])) end
    end
    local m = redis.call('MGET', acct .. key.balance, acct .. key.held)
    balance, held = m[1] or '0', m[2] or '0'
  end
  read_money(mode ~= 'admit')
  if mode == 'admit' and why == '' then
    local amount = tonumber(ARGV[8])
    if billing == 'prepaid' and tonumber(balance) - tonumber(held) < amount then
      if held ~= '0' then read_money(true) end
      if tonumber(balance) - tonumber(held) < amount then why = 'balance' end
    elseif billing == 'postpaid' and tonumber(balance) - amount < -tonumber(ARGV[9]) then
      why = 'balance'
    end
  end
end

if mode == 'admit' and why == '' then
  if scoped then
    local costs = { 1, cost, cost }
    for b = 1, 3 do lv[b] = lv[b] - costs[b] end
    redis.call('ZADD', KEYS[2], now + ttl, id)
    -- With nothing else in flight the set may be new: give it its expiry now, so a lease of a
    -- replica that dies never keeps it forever.
    if inflight == 0 then redis.call('PEXPIRE', KEYS[2], KEEP_MS) end
    store_levels(KEYS[1], KEYS[2], lv, now, x)
    inflight = inflight + 1
  end
  if billing == 'prepaid' then
    redis.call('HSET', acct .. key.holds, id, ARGV[14])
    redis.call('ZADD', acct .. key.holdexp, now + tonumber(ARGV[10]), id)
    redis.call('INCRBY', acct .. key.held, ARGV[8])
    -- INCRBY answers a Lua number, which prints past 2^53 in exponent form: add exactly.
    if string.sub(held, 1, 1) == '-' then
      held = redis.call('GET', acct .. key.held)
    else
      local h = big()
      big_add(h, held)
      big_add(h, ARGV[8])
      held = big_str(h)
    end
  end
end

local out = { 'refused', why, 'retry_after_ms', retry }
if scoped then
  local v = {}
  for b = 1, 3 do
    local n = limit_names[b]
    v[#v + 1] = n .. '_remaining'
    v[#v + 1] = math.max(0, math.floor(lv[b]))
    v[#v + 1] = n .. '_reset_ms'
    v[#v + 1] = math.max(0, math.ceil((caps[b] - lv[b]) * periods[b] / caps[b]))
  end
  v[#v + 1] = 'in_flight'
  v[#v + 1] = inflight
  out[#out + 1] = 'view'
  out[#out + 1] = v
end
if account ~= '' then
  out[#out + 1] = 'balance_rao'
  out[#out + 1] = balance
  out[#out + 1] = 'held_rao'
  out[#out + 1] = held
  out[#out + 1] = 'swept'
  out[#out + 1] = swept
end
return out
