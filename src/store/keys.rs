//! Every store key and Redis Cluster hash tag, spelled once.
//!
//! Keys here are *without* the deployment prefix (`GATEWAY_KEY_PREFIX`), which the store
//! prepends to every key it touches. The hash tag (`{…}`) is always inside the key, after the
//! prefix, so the prefix never decides the slot: everything one request touches under one tag
//! lands on one Cluster slot (docs/ARCHITECTURE.md §2 has the table with lifetimes and
//! writers, §5 what still needs a single Redis).
//!
//! ## Layout
//! - Account `{a:<id>}`:
//!   - `{a:<id>}:acct` the account record (JSON, durable);
//!   - `{a:<id>}:bal` balance (integer rao, durable), `{a:<id>}:held` sum of live holds,
//!     `{a:<id>}:holds` hash request id → hold record, `{a:<id>}:holdexp` zset request id →
//!     expiry, `{a:<id>}:done:<request id>` the settlement's idempotency mark (expires);
//!   - `{a:<id>}:debits` hash `total` and `<YYYY-MM>` → rao debited (durable),
//!     `{a:<id>}:use:<YYYY-MM-DD>` daily rollup, `{a:<id>}:ev:<YYYY-MM>` the account's usage
//!     events of the month (a stream, one entry per settlement batch);
//!   - `{a:<id>}:credit:<reference>` one credit's record, `{a:<id>}:credits` the credit log;
//!   - replay marks `{a:<hotkey>}:<kind>:<replay id>` (`n` btauth nonce, `u` Epistula uuid);
//!   - quota buckets `{a:<id>}:q` (one hash: `l1`/`t1`, `l2`/`t2`, `l3`/`t3`, `x`) and the lease set
//!     `{a:<id>}:q:conc` (zset request id → lease expiry);
//!   - `{a:<id>}:coldkeys` the set of coldkeys (SS58) linked to the account (durable; the
//!     coldkey's claim below is the authority, this is the account's index of them).
//! - Coldkey `{c:<ss58>}`: `{c:<ss58>}:link` the claim naming the one account the coldkey is
//!   linked to (JSON, written with `SET NX`, durable), `{c:<ss58>}:nonces` the set of link
//!   nonces the coldkey has used (durable, so a captured signature never links twice).
//! - Subnet aggregate `{s:<netuid>}`: its quota buckets and lease set as above, and its daily
//!   rollup `{s:<netuid>}:use:<YYYY-MM-DD>`.
//! - Public tier `{t:public}`: the quota buckets and lease set every caller without an account
//!   shares.
//! - `{stats}:use:<YYYY-MM-DD>` public daily totals, `{stats}:callers:<YYYY-MM-DD>` the day's
//!   callers (a set).
//! - `{revoked}:jti` revoked token ids (zset, score = the token's expiry, unix s) and
//!   `{revoked}:ver` the counter bumped on every revocation.
//! - `winner:pin` the runtime winner pin (JSON, durable).
//! - `{chain}:lease:metagraph` which replica reads the metagraph (expires),
//!   `{chain}:mg:<netuid>` each subnet's shared snapshot (durable, replaced each sync).
//! - `{chain}:lease:deposits` which replica polls for deposits (expires),
//!   `{chain}:deposits:cursor` its cursor, `{chain}:dep:<reference>` each deposit's record
//!   (and `…:assigned`, an operator's assignment claim), `{chain}:deposits:unattributed` the
//!   set of deposits waiting for an operator (all durable).
//!
//! ## Keys the scripts build themselves
//! Scripts get their keys through `KEYS` wherever the caller knows them (the quota buckets and
//! lease sets, the auth script's record and replay mark, the credit script's three keys). The
//! ledger part of admission and settlement cannot: which rollups and stream a settlement
//! touches, and which expired holds a sweep finds, is decided inside the script. Those keys
//! (`:bal`, `:held`, `:holds`, `:holdexp`, `:done:<rid>`, `:debits`, `:use:<day>` of the
//! account, subnet and `{stats}`, `{stats}:callers:<day>` and `:ev:<month>`) are built from the
//! prefix (an `ARGV`) from the pieces in the `key` table at the top of
//! `redis/ledger_lib_v3.lua`, the one place in Lua that spells them; they must stay the same
//! spellings as the functions below,
//! which the Redis halves of `tests/metering.rs` check end to end (a settlement written by the
//! script is read back through these functions).
//!
//! A zero-priced request of a caller without an account ([`super::Charge::anonymous`]) writes
//! only its done-mark (which expires), its event and the `{stats}` rollups: no balance, debits
//! or account rollup, so every key such a caller causes expires.

/// The hash tag of the scope all callers without an account share.
pub(crate) const PUBLIC_TIER_TAG: &str = "{t:public}";

/// The hash tag of the public daily totals and callers sets.
pub(crate) const STATS_TAG: &str = "{stats}";

/// The sorted set of revoked token ids (score: the token's expiry, unix seconds).
pub(crate) const REVOKED: &str = "{revoked}:jti";

/// The counter bumped on every revocation, polled by replicas.
pub(crate) const REVOKED_VERSION: &str = "{revoked}:ver";

/// The runtime winner pin.
pub(crate) const WINNER_PIN: &str = "winner:pin";

/// The readiness decision: the champion every replica switches to (JSON, no expiry).
pub(crate) const WINNER_READY: &str = "winner:ready";

/// The claim that a webhook for a champion (`org/model@revision`) was (being) delivered.
pub(crate) fn webhook_claim(hook: &str, spec: &str) -> String {
    format!("winner:hook:{hook}:{spec}")
}

/// The lease of the replica that reads the metagraph from the chain (value: its replica id).
pub(crate) const METAGRAPH_LEASE: &str = "{chain}:lease:metagraph";

/// A subnet's shared metagraph snapshot: block and read time (16 bytes, big-endian) followed
/// by the chain's SCALE answer, so every replica decodes exactly what the chain said.
pub(crate) fn metagraph_snapshot(netuid: u16) -> String {
    format!("{{chain}}:mg:{netuid}")
}

/// The lease of the replica that polls finalized blocks for deposits.
pub(crate) const DEPOSIT_LEASE: &str = "{chain}:lease:deposits";

/// The last block whose deposits are all recorded (decimal).
pub(crate) const DEPOSIT_CURSOR: &str = "{chain}:deposits:cursor";

/// The references of deposits from coldkeys linked to no account (a set).
pub(crate) const DEPOSITS_UNATTRIBUTED: &str = "{chain}:deposits:unattributed";

/// One deposit's record (JSON), created once: the claim that decides which account it
/// credits.
pub(crate) fn deposit(reference: &str) -> String {
    format!("{{chain}}:dep:{reference}")
}

/// The claim of an operator's assignment of an unattributed deposit (created once).
pub(crate) fn deposit_assignment(reference: &str) -> String {
    format!("{{chain}}:dep:{reference}:assigned")
}

/// `key` under a store's key prefix: what a backend actually reads and writes.
pub(crate) fn prefixed(prefix: &str, key: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + key.len());
    k.push_str(prefix);
    k.push_str(key);
    k
}

/// An account's hash tag, `{a:<id>}` (also a hotkey's, for replay marks).
pub(crate) fn account_tag(id: &str) -> String {
    format!("{{a:{id}}}")
}

/// A subnet aggregate's hash tag, `{s:<netuid>}`.
pub(crate) fn subnet_tag(netuid: u16) -> String {
    format!("{{s:{netuid}}}")
}

/// The account record.
pub(crate) fn account_record(id: &str) -> String {
    format!("{{a:{id}}}:acct")
}

/// The account balance (integer rao).
pub(crate) fn balance(id: &str) -> String {
    format!("{{a:{id}}}:bal")
}

/// The sum of the account's live holds (integer rao).
pub(crate) fn held(id: &str) -> String {
    format!("{{a:{id}}}:held")
}

/// The account's live holds: hash request id → hold record.
pub(crate) fn holds(id: &str) -> String {
    format!("{{a:{id}}}:holds")
}

/// The account's rao debited: hash `total` and `<YYYY-MM>` → rao.
pub(crate) fn debits(id: &str) -> String {
    format!("{{a:{id}}}:debits")
}

/// The record of one credit of the account, by its reference.
pub(crate) fn credit(id: &str, reference: &str) -> String {
    format!("{{a:{id}}}:credit:{reference}")
}

/// The account's credit log (one JSON line per credit).
pub(crate) fn credit_log(id: &str) -> String {
    format!("{{a:{id}}}:credits")
}

/// A signed request's replay mark under the signer's tag: `kind` is `n` (btauth nonce) or `u`
/// (Epistula uuid).
pub(crate) fn replay_mark(hotkey: &str, kind: &str, replay_id: &str) -> String {
    format!("{{a:{hotkey}}}:{kind}:{replay_id}")
}

/// The daily rollup of a tag (`{a:<id>}`, `{s:<netuid>}` or [`STATS_TAG`]).
pub(crate) fn rollup(tag: &str, day: &str) -> String {
    format!("{tag}:use:{day}")
}

/// The set of a day's distinct callers.
pub(crate) fn callers(day: &str) -> String {
    format!("{STATS_TAG}:callers:{day}")
}

/// The two quota keys of a scope tag, in script order: the hash of its three token buckets
/// (requests/minute, tokens/minute, tokens/day), then the concurrency lease set.
pub(crate) fn quota(tag: &str) -> [String; 2] {
    [format!("{tag}:q"), format!("{tag}:q:conc")]
}

/// The account's hold expiries: zset request id → expiry (Redis ms).
pub(crate) fn holdexp(id: &str) -> String {
    format!("{{a:{id}}}:holdexp")
}

/// An account's usage events of one month (a stream; entry fields `a` the account, then `e`
/// once per event of the batch that wrote the entry).
pub(crate) fn events(id: &str, month: &str) -> String {
    format!("{{a:{id}}}:ev:{month}")
}

/// `SCAN` pattern (after the prefix) of every account's usage stream of `month`.
pub(crate) fn events_pattern(month: &str) -> String {
    format!("{{a:*}}:ev:{month}")
}

/// `SCAN` pattern (after the prefix) of every account's usage stream of every month.
pub(crate) const EVENTS_PATTERN: &str = "{a:*}:ev:*";

/// The account and month of a usage stream key (after the prefix).
pub(crate) fn events_of(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("{a:")?;
    let (id, month) = rest.rsplit_once("}:ev:")?;
    Some((id, month))
}

/// A coldkey's hash tag, `{c:<ss58>}`.
pub(crate) fn coldkey_tag(ss58: &str) -> String {
    format!("{{c:{ss58}}}")
}

/// A coldkey's link claim: the account it is linked to (JSON, no expiry).
pub(crate) fn coldkey_link(ss58: &str) -> String {
    format!("{}:link", coldkey_tag(ss58))
}

/// The set of link nonces a coldkey has used.
pub(crate) fn coldkey_nonces(ss58: &str) -> String {
    format!("{}:nonces", coldkey_tag(ss58))
}

/// The set of coldkeys linked to an account.
pub(crate) fn account_coldkeys(id: &str) -> String {
    format!("{{a:{id}}}:coldkeys")
}

/// `SCAN` pattern (after the prefix) of every account's key ending in `suffix` (`bal`, `held`,
/// `debits`, `credits`); [`account_of`] reads the id back.
pub(crate) fn account_pattern(suffix: &str) -> String {
    format!("{{a:*}}:{suffix}")
}

/// The account id of `key` (after the prefix) when it is that account's `suffix` key.
pub(crate) fn account_of<'k>(key: &'k str, suffix: &str) -> Option<&'k str> {
    key.strip_prefix("{a:")?
        .strip_suffix(suffix)?
        .strip_suffix("}:")
}

/// The account id of an account tag (`{a:<id>}`).
pub(crate) fn account_of_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix("{a:")?.strip_suffix('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back() {
        assert_eq!(account_of(&balance("acme"), "bal"), Some("acme"));
        assert_eq!(account_of(&debits("a-b"), "debits"), Some("a-b"));
        assert_eq!(account_of(&balance("acme"), "held"), None);
        assert_eq!(account_of("{s:7}:bal", "bal"), None);
        assert_eq!(account_of_tag(&account_tag("x1")), Some("x1"));
        assert_eq!(
            events_of(&events("x:1", "2026-11")),
            Some(("x:1", "2026-11"))
        );
    }

    #[test]
    fn every_key_of_a_scope_shares_its_tag() {
        for k in quota(&subnet_tag(7)) {
            assert!(k.starts_with("{s:7}:q"), "{k}");
        }
        assert!(replay_mark("5F", "n", "x").starts_with(&account_tag("5F")));
        assert!(callers("2026-11-25").starts_with(STATS_TAG));
        assert!(coldkey_link("5F").starts_with(&coldkey_tag("5F")));
        assert!(coldkey_nonces("5F").starts_with(&coldkey_tag("5F")));
        assert!(account_coldkeys("acme").starts_with(&account_tag("acme")));
        assert_eq!(rollup(STATS_TAG, "2026-11-25"), "{stats}:use:2026-11-25");
    }
}
