-- credit_v1: credits an account once per reference.
-- KEYS[1] balance ({a:<id>}:bal, integer rao)   KEYS[2] the credit's record ({a:<id>}:credit:<ref>)
-- KEYS[3] the account's credit log (list, one JSON line per credit, for the ledger)
-- ARGV[1] amount in rao (decimal)   ARGV[2] unix ms   ARGV[3] the log line
-- Returns { 1 = credited now | 0 = the same credit seen before | -1 = reference reused with
--   another amount, balance after the first credit (decimal string), that credit's amount }.
local prev = redis.call('HMGET', KEYS[2], 'amount', 'balance')
if prev[1] then
  if prev[1] == ARGV[1] then
    return { 0, prev[2], prev[1] }
  end
  return { -1, prev[2], prev[1] }
end
redis.call('INCRBY', KEYS[1], ARGV[1])
-- Read the balance back as a string: a Lua number would round above 2^53 rao.
local bal = redis.call('GET', KEYS[1])
redis.call('HSET', KEYS[2], 'amount', ARGV[1], 'balance', bal, 'at', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
return { 1, bal, ARGV[1] }
