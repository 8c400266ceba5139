//! The OpenAPI document and a self-contained human-readable docs page.
//!
//! The page is rendered from the same OpenAPI document (no CDN scripts: it works offline and
//! behind strict CSPs) and lists every error code with an anchor, which is what the `type`
//! of a problem object points at.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::OpenApi;

use crate::error::ErrorCode;

/// The OpenAPI 3.1 description of the public API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Affine Reasoning API",
        description = "Reasoning answers from the current winner of Bittensor's Affine subnet. Errors are RFC 9457 problem+json with a stable `code`.",
    ),
    paths(
        crate::http::reason::reason,
        crate::http::session::session,
        crate::http::account::account,
        crate::http::usage::usage,
        crate::http::usage::stats,
        crate::http::usage::export,
        crate::http::chat::chat_completions,
        crate::http::responses::responses,
        crate::http::chat::models,
        crate::http::admin::put_account,
        crate::http::admin::get_account,
        crate::http::admin::credit,
        crate::http::admin::revoke_token,
        crate::http::coldkeys::link,
        crate::http::coldkeys::list,
        crate::http::coldkeys::unlink,
        crate::http::admin_winner::pin_winner,
        crate::http::admin_winner::unpin_winner,
        crate::http::chain::status,
        crate::http::chain::hotkey,
        crate::http::chain::list_deposits,
        crate::http::chain::assign_deposit,
        crate::http::winner::winner,
        crate::http::health::healthz,
        crate::http::health::readyz,
        crate::http::health::metrics,
    ),
    components(schemas(
        crate::api::ReasonRequest,
        crate::api::Message,
        crate::api::Role,
        crate::api::ReasonResponse,
        crate::api::ReasonDoneSchema,
        crate::api::StreamDelta,
        crate::api::WinnerResponse,
        crate::error::Problem,
        crate::error::ErrorCode,
        crate::http::session::Session,
        crate::http::account::AccountView,
        crate::http::chat::ModelList,
        crate::http::chat_schema::ChatCompletionRequest,
        crate::http::responses::ResponsesMessage,
        crate::http::chat::ModelEntry,
        crate::error::OpenAiErrorBody,
        crate::http::account::Remaining,
        crate::http::account::SubnetQuota,
        crate::quota::plans::Plan,
        crate::accounts::Account,
        crate::accounts::AccountUpdate,
        crate::http::admin::CreditRequest,
        crate::http::admin::Credit,
        crate::http::admin::RevokeRequest,
        crate::http::admin::Revoked,
        crate::http::usage::UsageReport,
        crate::http::usage::UsageDay,
        crate::http::usage::Stats,
        crate::http::usage::StatsDay,
        crate::http::usage::ExportFormat,
        crate::store::Rollup,
        crate::http::admin_winner::PinRequest,
        crate::http::chain::ChainStatus,
        crate::http::chain::SubnetSync,
        crate::chain::rpc::EndpointStatus,
        crate::http::chain::HotkeyView,
        crate::http::chain::MembershipView,
        crate::http::chain::DepositSync,
        crate::http::chain::DepositList,
        crate::http::chain::AssignRequest,
        crate::chain::deposits::Deposit,
        crate::chain::deposits::DepositStatus,
        crate::accounts::coldkeys::ColdkeyLink,
        crate::http::coldkeys::LinkRequest,
        crate::http::coldkeys::ColdkeyList,
    )),
    modifiers(&Security),
    tags(
        (name = "reason", description = "The Reasoning API"),
        (name = "openai", description = "OpenAI-compatible chat completions for existing SDKs"),
        (name = "auth", description = "Signed requests and session tokens"),
        (name = "admin", description = "Operators: accounts and tokens (bearer token with the `admin` scope)"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "public", description = "Public, unauthenticated information"),
    )
)]
pub struct ApiDoc;

/// Declares the three credentials of docs/API.md §3 and applies them to the protected routes.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "btauth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Bittensor-Signature",
                "btauth/1 (bittensor.http_auth): X-Bittensor-Version, -Hotkey, -Nonce, -Receiver, -Signature, optional -Crypto",
            ))),
        );
        components.add_security_scheme(
            "epistula",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Epistula-Request-Signature",
                "Epistula v2: Epistula-Version, -Timestamp, -Uuid, -Signed-By, -Signed-For, -Request-Signature",
            ))),
        );
        let caller = vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("btauth", Vec::<String>::new()),
            SecurityRequirement::new("epistula", Vec::<String>::new()),
        ];
        // `POST /v1/auth/session` takes btauth/1 only: Epistula binds neither method nor path.
        let signed = vec![caller[1].clone()];
        let admin = vec![SecurityRequirement::new("bearer", Vec::<String>::new())];
        for (path, item) in doc.paths.paths.iter_mut() {
            let openai = matches!(
                path.as_str(),
                "/v1/chat/completions" | "/v1/models" | "/v1/responses"
            );
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                // Every route can answer these; document them once here rather than on each.
                let mut codes: Vec<(&str, &str)> = vec![
                    ("405", "method_not_allowed"),
                    (
                        "500",
                        "internal: a bug in the gateway, or data the store refused",
                    ),
                ];
                if path != "/healthz"
                    && path != "/readyz"
                    && !path.starts_with("/openapi")
                    && path != "/docs"
                    && path != "/metrics"
                    && path != "/v1/winner"
                    && path != "/v1/stats"
                {
                    codes.extend([
                        ("401", "auth_missing, auth_malformed, bad_signature, stale_request, replayed_request, wrong_receiver, token_invalid, token_expired, token_revoked"),
                        ("403", "forbidden, unregistered_hotkey, account_disabled"),
                        ("429", "rate_limited (per-IP flood guard or plan), quota_exceeded, concurrency_limited; with Retry-After and the rate-limit headers of docs/API.md"),
                    ]);
                }
                if matches!(
                    path.as_str(),
                    "/v1/reason" | "/v1/chat/completions" | "/v1/responses"
                ) {
                    codes.push((
                        "402",
                        "insufficient_balance: the worst-case cost does not fit the balance (prepaid: minus holds; postpaid: down to the credit limit)",
                    ));
                }
                if matches!(
                    path.as_str(),
                    "/v1/reason" | "/v1/chat/completions" | "/v1/responses"
                ) {
                    // The inference routes' own 503 causes, listed before the store's so they win.
                    codes.extend([
                        ("502", "upstream_error"),
                        (
                            "503",
                            "no_winner, upstream_unavailable, store_unavailable, price_unavailable (a provider-priced plan before the provider price is known)",
                        ),
                        ("504", "upstream_timeout"),
                    ]);
                    if openai {
                        codes.push(("404", "not_found: a `model` that is not served here"));
                    }
                }
                if path.starts_with("/v1/") || path.starts_with("/admin/") {
                    codes.push((
                        "503",
                        "store_unavailable: Redis is unreachable and the request needs it (with Retry-After)",
                    ));
                }
                if op.request_body.is_some() {
                    codes.extend([
                        ("400", "invalid_request, invalid_json, unknown_field"),
                        ("408", "request_timeout: the body did not arrive in time"),
                        ("413", "body_too_large"),
                        ("415", "unsupported_media_type"),
                    ]);
                }
                for (code, what) in codes {
                    if !op.responses.responses.contains_key(code) {
                        let (ct, schema) = if openai {
                            ("application/json", "OpenAiErrorBody")
                        } else {
                            ("application/problem+json", "Problem")
                        };
                        let resp = utoipa::openapi::ResponseBuilder::new()
                            .description(what)
                            .content(
                                ct,
                                utoipa::openapi::Content::new(Some(
                                    utoipa::openapi::Ref::from_schema_name(schema),
                                )),
                            )
                            .build();
                        op.responses.responses.insert(code.to_string(), resp.into());
                    }
                }
            }
            // Streamed answers share the 200 of the whole ones, as text/event-stream.
            if matches!(
                path.as_str(),
                "/v1/reason" | "/v1/chat/completions" | "/v1/responses"
            ) && let Some(op) = item.post.as_mut()
                && let Some(utoipa::openapi::RefOr::T(ok)) = op.responses.responses.get_mut("200")
            {
                // Each event as schema tools see it: its name and its data (JSON text:
                // StreamDelta, ReasonDoneSchema or Problem). The OpenAI streams' events (chat
                // chunks, `response.*` events) are left open: `[DONE]` is not JSON.
                let content = if path == "/v1/reason" {
                    use utoipa::openapi::schema::{ObjectBuilder, Type};
                    let event = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["reasoning", "output", "done", "error"]));
                    let data = ObjectBuilder::new().schema_type(Type::String).description(Some(
                            "JSON: StreamDelta for reasoning/output, ReasonDoneSchema for done, Problem for error",
                        ));
                    let ev = ObjectBuilder::new()
                            .schema_type(Type::Object)
                            .property("event", event)
                            .property("data", data)
                            .description(Some("one server-sent event (with \"stream\": true): deltas, then one `done` or one `error`"));
                    utoipa::openapi::Content::new(Some(ev))
                } else {
                    utoipa::openapi::Content::new(
                        None::<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
                    )
                };
                ok.content
                    .insert("text/event-stream".to_string(), content.into());
            }
            let reqs = if path.starts_with("/admin/") {
                &admin
            } else if path == "/v1/auth/session" {
                &signed
            } else if matches!(
                path.as_str(),
                "/v1/reason"
                    | "/v1/account"
                    | "/v1/chat/completions"
                    | "/v1/responses"
                    | "/v1/models"
            ) {
                &caller
            } else {
                continue;
            };
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(reqs.clone());
            }
        }
    }
}

/// The document as JSON, built once.
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
    })
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /docs`.
pub async fn docs() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(render_page))
}

fn render_page() -> String {
    let doc = ApiDoc::openapi();
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>Affine Reasoning API</title><style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}code,pre{background:#f4f4f4;padding:.1rem .3rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}</style></head><body>");
    let _ = write!(
        h,
        "<h1>Affine Reasoning API <small>{}</small></h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p><h2>Endpoints</h2><table><tr><th>Method</th><th>Path</th><th>Summary</th></tr>",
        env!("CARGO_PKG_VERSION"),
        esc(doc.info.description.as_deref().unwrap_or(""))
    );
    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ] {
            if let Some(op) = op {
                let _ = write!(
                    h,
                    "<tr><td>{method}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(path),
                    esc(op
                        .summary
                        .as_deref()
                        .or(op.description.as_deref())
                        .unwrap_or(""))
                );
            }
        }
    }
    h.push_str("</table><h2 id=\"errors\">Errors</h2><p>Every error is <code>application/problem+json</code> with <code>type</code>, <code>title</code>, <code>status</code>, <code>detail</code>, a stable <code>code</code> and the <code>request_id</code>.</p><table><tr><th>Code</th><th>Status</th><th>Meaning</th></tr>");
    for code in ErrorCode::ALL {
        let _ = write!(
            h,
            "<tr id=\"error-{0}\"><td><code>{0}</code></td><td>{1}</td><td>{2}</td></tr>",
            code.as_str(),
            code.status().as_u16(),
            esc(code.title())
        );
    }
    h.push_str("</table></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_31_with_the_reason_path() {
        let v: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert!(v["paths"]["/v1/reason"]["post"].is_object());
        assert!(v["components"]["schemas"]["ReasonRequest"].is_object());
    }

    #[test]
    fn page_has_an_anchor_per_error_code() {
        let page = render_page();
        for c in ErrorCode::ALL {
            assert!(page.contains(&format!("id=\"error-{}\"", c.as_str())));
        }
    }
}
