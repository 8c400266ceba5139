//! The usage event: one record per admitted request, as exported (docs/API.md §9.4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One usage event. Field order is the export's column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The gateway's id of the request (`rsn_…`, `chatcmpl-…`): the settlement's idempotency key.
    pub request_id: String,
    /// The account charged.
    pub account: String,
    /// The caller's subnet.
    pub netuid: Option<u16>,
    /// The caller's plan.
    pub plan: String,
    /// The model that served (or was to serve) the request.
    pub model: String,
    /// Its revision.
    pub revision: Option<String>,
    /// Input tokens (the provider's count, or the gateway's estimate when `estimated`).
    pub input_tokens: u64,
    /// Output tokens, reasoning included.
    pub output_tokens: u64,
    /// The price applied, rao per 1M input tokens.
    pub input_rao_per_mtok: u64,
    /// The price applied, rao per 1M output tokens.
    pub output_rao_per_mtok: u64,
    /// Rao charged.
    pub cost_rao: u64,
    /// `ok`, `failed` (nothing delivered), `client_closed` (the caller left mid-stream),
    /// `interrupted` (the provider failed mid-stream) or `unsettled` (the hold expired).
    pub status: String,
    /// True when the token counts are the gateway's, not the provider's.
    pub estimated: bool,
    /// RFC 3339 UTC, when the gateway accepted the request.
    pub started_at: String,
    /// RFC 3339 UTC, when it was settled.
    pub finished_at: String,
    /// The request's `metadata`.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The export's CSV header (the JSON fields, in order).
pub const CSV_HEADER: &[&str] = &[
    "request_id",
    "account",
    "netuid",
    "plan",
    "model",
    "revision",
    "input_tokens",
    "output_tokens",
    "input_rao_per_mtok",
    "output_rao_per_mtok",
    "cost_rao",
    "status",
    "estimated",
    "started_at",
    "finished_at",
    "metadata",
];

impl UsageEvent {
    /// The CSV record: nulls are empty cells, `metadata` is JSON text.
    pub fn csv_record(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        vec![
            self.request_id.clone(),
            self.account.clone(),
            opt(self.netuid.map(|n| n.to_string())),
            self.plan.clone(),
            self.model.clone(),
            opt(self.revision.clone()),
            self.input_tokens.to_string(),
            self.output_tokens.to_string(),
            self.input_rao_per_mtok.to_string(),
            self.output_rao_per_mtok.to_string(),
            self.cost_rao.to_string(),
            self.status.clone(),
            self.estimated.to_string(),
            self.started_at.clone(),
            self.finished_at.clone(),
            opt(self
                .metadata
                .as_ref()
                .and_then(|m| serde_json::to_string(m).ok())),
        ]
    }

    /// The event to record if the request's hold expires unsettled: status `unsettled`, the
    /// worst case as its token counts, and the placeholders the store fills in (the cost,
    /// per the expiry policy, and the time of expiry).
    pub fn expiry_template(&self) -> String {
        let mut e = self.clone();
        e.status = "unsettled".into();
        e.estimated = true;
        e.cost_rao = 0;
        e.finished_at = "__FINISHED__".into();
        let json = serde_json::to_string(&e).unwrap_or_default();
        // Strings are escaped in JSON, so the unescaped `"cost_rao":0,` can only be the field.
        json.replacen("\"cost_rao\":0,", "\"cost_rao\":\"__COST__\",", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> UsageEvent {
        UsageEvent {
            request_id: "rsn_1".into(),
            account: "acme".into(),
            netuid: Some(12),
            plan: "gold".into(),
            model: "org/m".into(),
            revision: None,
            input_tokens: 10,
            output_tokens: 20,
            input_rao_per_mtok: 1,
            output_rao_per_mtok: 2,
            cost_rao: 0,
            status: "ok".into(),
            estimated: false,
            started_at: "2026-11-25T00:00:00.000Z".into(),
            finished_at: "2026-11-25T00:00:01.000Z".into(),
            metadata: Some(BTreeMap::from([(
                "note".to_string(),
                "\"cost_rao\":0,".to_string(),
            )])),
        }
    }

    #[test]
    fn expiry_template_marks_the_field_not_a_lookalike_in_metadata() {
        let t = event().expiry_template();
        assert_eq!(t.matches("__COST__").count(), 1);
        let filled = t.replacen("\"__COST__\"", "77", 1).replacen(
            "__FINISHED__",
            "2026-11-25T01:00:00.000Z",
            1,
        );
        let back: UsageEvent = serde_json::from_str(&filled).unwrap();
        assert_eq!(back.cost_rao, 77);
        assert_eq!(back.status, "unsettled");
        assert_eq!(back.metadata, event().metadata);
    }

    #[test]
    fn csv_record_follows_the_header() {
        let r = event().csv_record();
        assert_eq!(r.len(), CSV_HEADER.len());
        assert_eq!(r[2], "12");
        assert_eq!(r[5], "");
        assert_eq!(r[15], r#"{"note":"\"cost_rao\":0,"}"#);
    }
}
