//! The router and its layer stack — the one place the order is written down.
//!
//! Layers, outermost first (a request passes them top to bottom, its response bottom to top):
//!
//! 1. `drop_invalid_request_id` (map_request) — removes an `X-Request-Id` we may not echo,
//!    so the next layer generates a fresh one. First, because everything below logs or
//!    returns the id.
//! 2. `SetRequestId` (tower-http) — fills a missing `X-Request-Id` with a new UUID.
//! 3. `PropagateRequestId` (tower-http) — copies the id onto every response, including
//!    errors produced by the layers below.
//! 4. `Trace` (tower-http) — one span per request carrying the request id; one debug-level
//!    log line per response with status and latency (the info-level access line is layer 6's).
//!    Outside the error renderer so it sees final statuses.
//! 5. `render_problems` ([`crate::error`]) — turns an [`ApiError`] left in a response into
//!    problem+json (or the OpenAI error shape on `/v1/chat/completions`) with the request id.
//!    Outside every layer that can fail, so none of them has to know the body format.
//! 6. `track` (this file, applied per route) — Prometheus request count (with the error
//!    `code` the handler left in the response extensions, read before layer 5 renders it),
//!    latency, gateway overhead (latency minus the upstream wait the handlers record through
//!    [`crate::metrics::upstream_wait`]) and in-flight gauge, labelled by the matched route
//!    template (bounded label values); and the access log line (target `access`: request id,
//!    route, status, code, latency, account, its kind and plan from the
//!    [`crate::auth::AccessSubject`] the auth layer puts on the response, model).
//!    Inside it, two more layers, in this order:
//!    - `ip_guard` (this file): the per client IP flood guard ([`crate::quota::local`]) on
//!      every route, `/v1/stats` and the health routes included, so floods cost neither
//!      signature work, nor a body read, nor Redis. The client IP is the TCP peer, or the
//!      address trusted proxies name in `X-Forwarded-For` / `Forwarded`
//!      ([`crate::http::client_ip`], `server.trusted_proxies`).
//!    - `body_deadline` (this file): wraps the request body once so every read of it (the
//!      JSON extractor, the signature check) fails after `server.body_read_timeout_secs`; the
//!      answer is then 408 `request_timeout`.
//! 7. Timeout (tower) — the total request timeout (`request_timeout_secs`), mapped to 504
//!    `upstream_timeout`: nothing but the provider can take that long. It bounds the time to
//!    the response head; a stream's body is bounded by the upstream timeouts instead.
//! 8. `DefaultBodyLimit` (axum) — the body size limit (`max_body_bytes`). It is enforced where
//!    the body is read, by [`crate::http::extract::JsonBody`], which maps it to 413
//!    `body_too_large`; routes without a body never read one.
//! 9. Authentication ([`crate::auth::middleware`], a route layer per group: `require_reason`,
//!    `require_admin`, `require_signature`; health, metrics, docs, stats and winner stay
//!    public).
//!    After the body limit because signatures hash the body, which it reads within that limit;
//!    before anything that costs money or touches quotas. It puts the `Caller` (or
//!    `Operator`) into the request extensions, which the handlers (and through them the
//!    limiter and the meter) read.
//! 10. The handler. Quota admission happens inside it, right after parsing: it needs the
//!     validated request (its `max_tokens` and input size make the token estimate) and the
//!     caller's plan; it is the only Redis work before the upstream call besides the auth
//!     round trip, and its `RateLimit` headers go on every answer of the route.

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::middleware as auth;
use crate::error::{ApiError, ErrorCode, render_problems};
use crate::http::request_id::{X_REQUEST_ID, drop_invalid_request_id};
use crate::http::{
    AppState, account, admin, admin_winner, chain, chat, coldkeys, docs, health, reason, responses,
    session, usage, winner,
};

/// Builds the complete application: routes and layers.
pub fn router(state: AppState) -> Router {
    let request_timeout = state.config.request_timeout();
    let max_body = state.config.max_body_bytes;
    // Route groups by what they require (layer 9 below). The auth layers get their own slice
    // of the state, taken once here rather than on every request.
    let auth_state = auth::AuthState::from_ref(&state);
    let reason_routes = Router::new()
        .route("/v1/reason", post(reason::reason))
        .route("/v1/account", get(account::account))
        .route("/v1/account/coldkeys", post(coldkeys::link))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/models", get(chat::models))
        .route("/v1/usage", get(usage::usage))
        .route_layer(middleware::from_fn_with_state(
            auth_state.clone(),
            auth::require_reason,
        ));
    let session_routes = Router::new()
        .route("/v1/auth/session", post(session::session))
        .route_layer(middleware::from_fn_with_state(
            auth_state.clone(),
            auth::require_signature,
        ));
    let admin_routes = Router::new()
        .route(
            "/admin/v1/accounts/{id}",
            put(admin::put_account).get(admin::get_account),
        )
        .route("/admin/v1/accounts/{id}/credits", post(admin::credit))
        .route("/admin/v1/accounts/{id}/coldkeys", get(coldkeys::list))
        .route(
            "/admin/v1/accounts/{id}/coldkeys/{coldkey}",
            delete(coldkeys::unlink),
        )
        .route("/admin/v1/tokens/revoke", post(admin::revoke_token))
        .route("/admin/v1/chain", get(chain::status))
        .route("/admin/v1/chain/hotkeys/{ss58}", get(chain::hotkey))
        .route("/admin/v1/deposits", get(chain::list_deposits))
        .route(
            "/admin/v1/deposits/{reference}/assign",
            post(chain::assign_deposit),
        )
        .route("/admin/v1/usage/export", get(usage::export))
        .route(
            "/admin/v1/winner",
            put(admin_winner::pin_winner).delete(admin_winner::unpin_winner),
        )
        .route_layer(middleware::from_fn_with_state(
            auth_state.clone(),
            auth::require_admin,
        ));
    let mut routes = Router::new()
        .merge(reason_routes)
        .merge(session_routes)
        .merge(admin_routes)
        .route("/v1/winner", get(winner::winner))
        .route("/v1/stats", get(usage::stats))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    // With `server.metrics_listen` the metrics are served there alone (see `metrics_router`).
    if state.config.server.metrics_listen.is_none() {
        routes = routes.route("/metrics", get(health::metrics));
    }
    let routes = routes
        .route("/openapi.json", get(docs::openapi))
        .route("/docs", get(docs::docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), track))
                .layer(middleware::from_fn_with_state(state.clone(), ip_guard))
                .layer(middleware::from_fn_with_state(
                    state.config.server.body_read_timeout(),
                    body_deadline,
                ))
                .layer(HandleErrorLayer::new(timed_out))
                .timeout(request_timeout)
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state);
    routes.layer(
        ServiceBuilder::new()
            .map_request(drop_invalid_request_id)
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .layer(TraceLayer::new_for_http().make_span_with(make_span))
            .layer(middleware::from_fn(render_problems)),
    )
}

/// The router of `server.metrics_listen`: `GET /metrics` and nothing else (404 without a
/// body elsewhere). No layers: it is meant for Prometheus alone, which the network (a
/// NetworkPolicy, a firewall) ensures, and serving it must stay cheap when the main port is
/// flooded.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

fn make_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %crate::http::request_id::of(req.headers()),
    )
}

async fn timed_out(_: tower::BoxError) -> ApiError {
    // The only error the inner stack produces is the timeout's `Elapsed`.
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "the request took longer than the gateway's total request timeout",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

/// The per client IP flood guard, on every route: refuses floods before any signature work,
/// Redis round trip or body read. The client is the TCP peer, or what trusted proxies say it
/// is ([`crate::http::client_ip`]). A router served without connection info (embedded in a
/// test through `oneshot`) has no peer to limit and is not guarded.
async fn ip_guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let client = st.trusted_proxies.client_ip(peer.ip(), req.headers());
    if let Err(wait) = st.ip_guard.check(client) {
        st.metrics
            .quota_rejections
            .with_label_values(&["ip_flood"])
            .inc();
        return ApiError::new(
            ErrorCode::RateLimited,
            "too many requests from this address",
        )
        .with_retry_after(crate::quota::headers::retry_after_secs(wait))
        .into_response();
    }
    next.run(req).await
}

/// Bounds the time the request body may take to arrive (`server.body_read_timeout_secs`),
/// for every reader of it: [`crate::http::extract::JsonBody`] and the signature check in
/// [`crate::auth::middleware`] alike. The body is wrapped once here; when its deadline
/// passes, the read fails, and whatever the reader made of that failure is replaced by 408
/// `request_timeout` (hyper then closes the connection, whose body was not read to its end).
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let (req, expired) = crate::http::extract::with_body_deadline(req, limit);
    let res = next.run(req).await;
    if expired.load(std::sync::atomic::Ordering::Acquire) {
        return ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
        .into_response();
    }
    res
}

/// Decrements the in-flight gauge however the request ends, including when the client goes
/// away and the request's future is dropped mid-way.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(g: &prometheus::IntGauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times requests by matched route template, measures the gateway's overhead, and
/// writes the access log line.
///
/// The error `code` label and log field come from the [`ApiError`] the handler (or a layer
/// below) left in the response extensions: this layer runs before [`render_problems`] turns
/// it into a body. Requests whose client went away before the answer are neither counted nor
/// logged here (there is no status to count).
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let request_id = crate::http::request_id::of(req.headers()).to_owned();
    let started = Instant::now();
    let in_flight = InFlight::enter(&st.metrics.in_flight);
    let (res, upstream_wait) = crate::metrics::upstream_wait::measure(next.run(req)).await;
    drop(in_flight);
    let elapsed = started.elapsed();
    let route = route.as_deref().unwrap_or("unmatched");
    let status = res.status();
    let code = res
        .extensions()
        .get::<ApiError>()
        .map_or("none", |e| e.code.as_str());
    let m = &st.metrics;
    m.http_requests
        .with_label_values(&[route, method.as_str(), status.as_str(), code])
        .inc();
    m.http_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    m.overhead
        .with_label_values(&[route])
        .observe(elapsed.saturating_sub(upstream_wait).as_secs_f64());
    access_log(&AccessLine {
        request_id: &request_id,
        method: method.as_str(),
        route,
        status: status.as_u16(),
        code,
        elapsed,
        upstream_wait,
        res: &res,
    });
    res
}

/// What one access log line says.
struct AccessLine<'a> {
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
    code: &'static str,
    elapsed: std::time::Duration,
    upstream_wait: std::time::Duration,
    res: &'a Response,
}

/// One line per request (target `access`). Only fields the gateway chose: no headers, no
/// bodies, so no credentials or signatures can reach the log. The route is the template, not
/// the raw path; the account id is logged (it is not a secret) but never used as a label.
fn access_log(l: &AccessLine<'_>) {
    let subject = l.res.extensions().get::<crate::auth::AccessSubject>();
    let model = l
        .res
        .headers()
        .get(crate::http::pipeline::X_AFFINE_MODEL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info!(
        target: "access",
        request_id = l.request_id,
        method = l.method,
        route = l.route,
        status = l.status,
        code = l.code,
        latency_ms = l.elapsed.as_secs_f64() * 1e3,
        upstream_ms = l.upstream_wait.as_secs_f64() * 1e3,
        account = subject.map_or("", |s| s.account.as_str()),
        account_kind = subject.map_or("", |s| s.kind),
        plan = subject.map_or("", |s| s.plan.as_str()),
        model,
        "request"
    );
}
