//! The authenticated identity that travels with a request (a request extension).

use crate::accounts::{AccountKind, Billing};

/// How the caller proved who it is; the id part is what replay protection or revocation keys on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A btauth/1 signed request, with its nonce.
    BtAuth {
        /// Unix nanoseconds, as sent.
        nonce: String,
    },
    /// An Epistula v2 signed request, with its uuid.
    Epistula {
        /// As sent.
        uuid: String,
    },
    /// A bearer token.
    Token {
        /// The token id.
        jti: String,
    },
}

/// A caller of the Reasoning API: the account quotas and metering apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Account id: the hotkey's SS58 address or the enterprise slug.
    pub account_id: String,
    /// Hotkey or enterprise.
    pub kind: AccountKind,
    /// The hotkey's subnet, if registered with one.
    pub netuid: Option<u16>,
    /// Plan name.
    pub plan: String,
    /// Prepaid or postpaid.
    pub billing: Billing,
    /// How far a postpaid account may go below zero, rao.
    pub credit_limit_rao: u64,
    /// False for a hotkey that has no account and calls on the `public` plan.
    pub registered: bool,
    /// The account that pays, when not this one: the sponsor of an implicit subnet member
    /// (`[subnet_gates."<netuid>"] bill_to`). Quotas stay the caller's own.
    pub bill_to: Option<String>,
    /// How it authenticated.
    pub credential: Credential,
}

/// An operator on the admin API (a bearer token with the `admin` scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's subject.
    pub sub: String,
    /// The token id.
    pub jti: String,
}

/// Who made a request, copied onto its response by the authentication layer so the access log
/// (written outside that layer, in [`crate::http::stack`]) can say it. Never a metric label:
/// account ids are unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSubject {
    /// Account id, or the operator's token subject.
    pub account: String,
    /// `hotkey`, `enterprise` or `operator`.
    pub kind: &'static str,
    /// Plan name (empty for operators).
    pub plan: String,
}

impl AccessSubject {
    /// The subject of a Reasoning API caller.
    pub fn of_caller(c: &Caller) -> Self {
        AccessSubject {
            account: c.account_id.clone(),
            kind: c.kind.as_str(),
            plan: c.plan.clone(),
        }
    }

    /// The subject of an operator.
    pub fn of_operator(o: &Operator) -> Self {
        AccessSubject {
            account: o.sub.clone(),
            kind: "operator",
            plan: String::new(),
        }
    }
}
