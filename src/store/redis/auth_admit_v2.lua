-- auth_admit_v2: admission of an authenticated request, in one round trip.
-- KEYS[1]  the account record ({a:<id>}:acct)
-- KEYS[2]  the replay mark ({a:<id>}:n:<nonce> or {a:<id>}:u:<uuid>); absent for tokens
-- ARGV[1]  the mark's time to live in milliseconds (when KEYS[2] is given)
-- Returns flat name/value pairs, decoded by src/store/redis/auth.rs:
--   fresh    1 = the mark was newly set (or none asked), 0 = a replay
--   account  the account record, or nil when there is none
-- v2 (over v1): named fields instead of two positional values.
-- Both keys share the account's hash tag, so this runs on Redis Cluster unchanged.
local fresh = 1
if #KEYS > 1 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
    fresh = 0
  end
end
return { 'fresh', fresh, 'account', redis.call('GET', KEYS[1]) }
