//! Accounts: who may call, on which plan, billed how (docs/API.md §6).
//!
//! An account is a hotkey (id = its SS58 address) or an enterprise (id = a slug). The record
//! lives in the store under the account's hash tag, `{a:<id>}:acct`, beside everything else
//! scoped to the account (replay marks, quota buckets, balance, holds), so one script can
//! admit a request in one round trip. The balance is not part of the record: only credits and
//! usage change it, through their own keys.

pub(crate) mod cache;
pub(crate) mod coldkeys;
pub(crate) mod money;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::ss58;
use crate::error::{ApiError, ErrorCode};
use crate::store::{Store, StoreError};

/// Built-in plan names (the configuration may add more).
pub const BUILTIN_PLANS: &[&str] = &["public", "subnet", "enterprise"];

/// The plan of hotkeys that are not registered, when unregistered callers are allowed.
pub const PUBLIC_PLAN: &str = "public";

/// Hotkey or enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A Bittensor hotkey, authenticated by signed requests (or session tokens).
    Hotkey,
    /// An enterprise, authenticated by bearer tokens.
    Enterprise,
}

impl AccountKind {
    /// The kind an id's shape implies: an SS58 address is a hotkey, a slug an enterprise.
    pub fn of_id(id: &str) -> Option<AccountKind> {
        if ss58::is_valid42(id) {
            Some(AccountKind::Hotkey)
        } else if is_slug(id) {
            Some(AccountKind::Enterprise)
        } else {
            None
        }
    }

    /// Lowercase name, for logs and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Hotkey => "hotkey",
            AccountKind::Enterprise => "enterprise",
        }
    }
}

/// How usage is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Billing {
    /// Requests reserve their worst-case cost from a prepaid balance.
    Prepaid,
    /// Usage is debited afterwards, down to `-credit_limit_rao`.
    Postpaid,
}

/// An account as stored (without its balance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The id.
    pub id: String,
    /// Hotkey or enterprise.
    pub kind: AccountKind,
    /// The subnet a hotkey calls for, if any.
    pub netuid: Option<u16>,
    /// The plan name.
    pub plan: String,
    /// Prepaid or postpaid.
    pub billing: Billing,
    /// How far a postpaid account may go below zero, in rao.
    pub credit_limit_rao: u64,
    /// A disabled account is refused with 403 `account_disabled`.
    pub disabled: bool,
}

/// An account as the admin API shows it (docs/API.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// SS58 address for hotkeys, `[a-z0-9-]{3,64}` for enterprises.
    #[schema(example = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")]
    pub id: String,
    /// `hotkey` or `enterprise`.
    pub kind: AccountKind,
    /// The subnet (netuid) a hotkey belongs to; null outside any subnet and for enterprises.
    pub netuid: Option<u16>,
    /// Plan name.
    #[schema(example = "subnet")]
    pub plan: String,
    /// `prepaid` or `postpaid`.
    pub billing: Billing,
    /// Postpaid accounts may reach `-credit_limit_rao`.
    pub credit_limit_rao: u64,
    /// Balance in rao (credits minus usage); changed only by credits and usage.
    pub balance_rao: i64,
    /// Disabled accounts are refused.
    pub disabled: bool,
}

/// `PUT /admin/v1/accounts/{id}`: every field optional; omitted fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// Accepted only when equal to the path's id (so a GET body can be sent back); not part
    /// of the documented schema.
    #[serde(default)]
    #[schema(ignore)]
    pub id: Option<String>,
    /// Must match the id's shape when given.
    #[serde(default)]
    pub kind: Option<AccountKind>,
    /// The hotkey's subnet; `null` clears it. Hotkey accounts only: an enterprise account with
    /// a netuid is refused (400 `invalid_request`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u16>, minimum = 0, maximum = 65535)]
    pub netuid: Option<Option<u16>>,
    /// A known plan name.
    #[serde(default)]
    pub plan: Option<String>,
    /// `prepaid` or `postpaid`.
    #[serde(default)]
    pub billing: Option<Billing>,
    /// Credit limit of a postpaid account, rao: a JSON integer (no fraction, no exponent).
    #[serde(default, deserialize_with = "money::optional")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub credit_limit_rao: Option<u64>,
    /// Disable or re-enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Refused with a clear message (only credits and usage change the balance); not part of
    /// the documented schema.
    #[serde(default)]
    #[schema(ignore)]
    pub balance_rao: Option<serde_json::Value>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u16>>, D::Error> {
    let n = crate::api::reason::whole::opt_u32(d)?;
    n.map(|v| {
        u16::try_from(v).map_err(|_| serde::de::Error::custom(format!("netuid {v} is above 65535")))
    })
    .transpose()
    .map(Some)
}

/// Whether `id` is an enterprise slug: 3 to 64 of `[a-z0-9-]`.
pub fn is_slug(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The store key of an account record.
pub fn record_key(id: &str) -> String {
    crate::store::keys::account_record(id)
}

/// The store key of an account balance (rao, integer).
pub fn balance_key(id: &str) -> String {
    crate::store::keys::balance(id)
}

fn bad(detail: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}

fn unavailable(e: StoreError) -> ApiError {
    ApiError::from_store(&e, "the account could not be read or written")
}

impl AccountRecord {
    /// Decodes a stored record; a record that does not decode is treated as a store fault.
    pub fn decode(bytes: &[u8]) -> Result<AccountRecord, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| {
            tracing::error!(error = %e, "undecodable account record");
            ApiError::new(ErrorCode::Internal, "an account record is corrupt")
        })
    }

    /// Applies an update to `current` (or to the defaults of a new account `id`) and validates
    /// the result. `plans` are the known plan names.
    pub fn apply(
        id: &str,
        current: Option<AccountRecord>,
        upd: AccountUpdate,
        plan_known: impl Fn(&str) -> bool,
    ) -> Result<AccountRecord, ApiError> {
        let Some(kind_of_id) = AccountKind::of_id(id) else {
            return Err(bad(format!(
                "`{id}` is neither an SS58 hotkey (prefix 42) nor an enterprise id ([a-z0-9-], 3 to 64 characters)"
            )));
        };
        if let Some(body_id) = &upd.id
            && body_id != id
        {
            return Err(bad("`id` in the body differs from the id in the path"));
        }
        if upd.balance_rao.is_some() {
            return Err(bad(
                "`balance_rao` cannot be set: it changes only through credits and usage",
            ));
        }
        if let Some(k) = upd.kind
            && k != kind_of_id
        {
            return Err(bad(format!(
                "`kind` is {} but the id `{id}` is a {} id",
                k.as_str(),
                kind_of_id.as_str()
            )));
        }
        let mut rec = current.unwrap_or_else(|| AccountRecord {
            id: id.to_string(),
            kind: kind_of_id,
            netuid: None,
            plan: match kind_of_id {
                AccountKind::Hotkey => PUBLIC_PLAN.to_string(),
                AccountKind::Enterprise => "enterprise".to_string(),
            },
            billing: Billing::Prepaid,
            credit_limit_rao: 0,
            disabled: false,
        });
        if let Some(n) = upd.netuid {
            rec.netuid = n;
        }
        if let Some(p) = upd.plan {
            rec.plan = p;
        }
        if let Some(b) = upd.billing {
            rec.billing = b;
        }
        if let Some(c) = upd.credit_limit_rao {
            rec.credit_limit_rao = c;
        }
        if let Some(d) = upd.disabled {
            rec.disabled = d;
        }
        if rec.kind == AccountKind::Enterprise && rec.netuid.is_some() {
            return Err(bad("`netuid` applies to hotkey accounts only"));
        }
        if !plan_known(&rec.plan) {
            return Err(bad(format!("unknown plan `{}`", rec.plan)));
        }
        if i64::try_from(rec.credit_limit_rao).is_err() {
            return Err(bad("`credit_limit_rao` is too large"));
        }
        Ok(rec)
    }

    /// The API view, with a balance.
    pub fn with_balance(self, balance_rao: i64) -> Account {
        Account {
            id: self.id,
            kind: self.kind,
            netuid: self.netuid,
            plan: self.plan,
            billing: self.billing,
            credit_limit_rao: self.credit_limit_rao,
            balance_rao,
            disabled: self.disabled,
        }
    }
}

/// Reads an account record.
pub async fn load(store: &Store, id: &str) -> Result<Option<AccountRecord>, ApiError> {
    match store.get(&record_key(id)).await.map_err(unavailable)? {
        Some(b) => AccountRecord::decode(&b).map(Some),
        None => Ok(None),
    }
}

/// Reads an account's balance (0 when it never had one).
pub async fn balance(store: &Store, id: &str) -> Result<i64, ApiError> {
    match store.get(&balance_key(id)).await.map_err(unavailable)? {
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "a balance is corrupt")),
        None => Ok(0),
    }
}

/// Writes an account record.
pub async fn save(store: &Store, rec: &AccountRecord) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(rec)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "could not encode the account"))?;
    store
        .set(&record_key(&rec.id), &bytes, None)
        .await
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn known(p: &str) -> bool {
        BUILTIN_PLANS.contains(&p)
    }

    fn upd(json: &str) -> AccountUpdate {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_accounts_take_defaults_and_kind_from_the_id() {
        let r = AccountRecord::apply(ALICE, None, upd("{}"), known).unwrap();
        assert_eq!(r.kind, AccountKind::Hotkey);
        assert_eq!(r.billing, Billing::Prepaid);
        assert_eq!(r.plan, "public");
        assert!(!r.disabled && r.credit_limit_rao == 0 && r.netuid.is_none());
        let r = AccountRecord::apply("acme-labs", None, upd(r#"{"billing":"postpaid"}"#), known)
            .unwrap();
        assert_eq!(r.kind, AccountKind::Enterprise);
        assert_eq!(r.billing, Billing::Postpaid);
    }

    #[test]
    fn omitted_fields_keep_their_value_and_null_clears_netuid() {
        let r = AccountRecord::apply(ALICE, None, upd(r#"{"netuid":12,"plan":"subnet"}"#), known)
            .unwrap();
        let r2 = AccountRecord::apply(ALICE, Some(r.clone()), upd(r#"{"disabled":true}"#), known)
            .unwrap();
        assert_eq!(r2.netuid, Some(12));
        assert_eq!(r2.plan, "subnet");
        assert!(r2.disabled);
        let r3 = AccountRecord::apply(ALICE, Some(r2), upd(r#"{"netuid":null}"#), known).unwrap();
        assert_eq!(r3.netuid, None);
    }

    #[test]
    fn invalid_updates_are_refused() {
        for (id, body) in [
            ("Acme", "{}"),
            ("ab", "{}"),
            ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQX", "{}"),
            (ALICE, r#"{"plan":"gold"}"#),
            (ALICE, r#"{"kind":"enterprise"}"#),
            ("acme", r#"{"netuid":3}"#),
            ("acme", r#"{"id":"other"}"#),
            ("acme", r#"{"balance_rao":5}"#),
        ] {
            assert!(
                AccountRecord::apply(id, None, upd(body), known).is_err(),
                "{id} {body}"
            );
        }
        assert!(serde_json::from_str::<AccountUpdate>(r#"{"plna":"x"}"#).is_err());
        assert!(serde_json::from_str::<AccountUpdate>(r#"{"netuid":70000}"#).is_err());
    }
}
