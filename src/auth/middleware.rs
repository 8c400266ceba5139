//! The authentication layer: one credential per request, verified before anything costs money.
//!
//! Order of work, cheapest refusal first: count the credentials (exactly one), verify it with
//! CPU only (signature or token; garbage is refused without touching the store), then one
//! store round trip that sets the replay mark and reads the account. Signed requests need the
//! body's exact bytes, so for them the body is read here (bounded by the body limit), after
//! every header check has passed, and put back for the handler; bearer requests leave the body
//! untouched.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::IntCounterVec;

use super::caller::{AccessSubject, Caller, Credential, Operator};
use super::jwt::{JwtKeys, Scope, TokenError};
use super::revocation::Revocations;
use super::verdict::{Refusal, Scheme};
use super::{btauth, epistula};
use crate::accounts::cache::{AccountCache, Cached};
use crate::accounts::{self, AccountKind, AccountRecord, Billing, PUBLIC_PLAN};
use crate::error::{ApiError, ErrorCode};
use crate::store::Store;

/// Everything authentication needs, built once at start. Cheap to clone (one `Arc`): the
/// application state and the middleware's [`AuthState`] share one account cache, one
/// revocation mirror and one clock.
#[derive(Debug, Clone)]
pub struct Authenticator(Arc<AuthParts>);

/// The parts of an [`Authenticator`].
#[derive(Debug)]
pub struct AuthParts {
    /// Token keys.
    pub jwt: JwtKeys,
    /// The gateway's own hotkey: signed requests must be bound to it.
    pub receiver: String,
    /// Whether unregistered hotkeys may call on the `public` plan.
    pub allow_unregistered: bool,
    /// Revoked token ids.
    pub revocations: Arc<Revocations>,
    /// Recently read account records.
    pub accounts: AccountCache,
    /// The clock signed requests are judged by.
    pub clock: Clock,
    /// Subnet membership from the metagraph, when chain features are on: it places hotkeys
    /// without an account record.
    pub(crate) membership: Option<Arc<crate::chain::membership::Membership>>,
}

impl Authenticator {
    /// Wraps the parts.
    pub fn new(parts: AuthParts) -> Self {
        Authenticator(Arc::new(parts))
    }
}

impl Deref for Authenticator {
    type Target = AuthParts;
    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

/// What the authentication middleware reads: its own slice of the application state
/// (`FromRef`), so authentication does not depend on the HTTP layer's state type.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// Keys, receiver hotkey, revocations, account cache, clock.
    pub authenticator: Authenticator,
    /// Where replay marks are set and accounts read.
    pub store: Store,
    /// `agw_auth_failures_total`, by error code.
    pub failures: IntCounterVec,
    /// The body limit a signed request's body is read within (`max_body_bytes`).
    pub max_body_bytes: usize,
    /// How much longer than its freshness window a replay mark lives
    /// (`auth.replica_clock_skew_secs`).
    pub replica_clock_skew: Duration,
}

/// The clock signed requests' freshness is judged by: the system clock, shifted by an offset
/// that only tests set (to run replicas whose clocks differ on one machine).
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Unix time now, as this replica sees it.
    pub fn now(&self) -> Duration {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let offset = self.offset_ms.load(Ordering::Relaxed);
        let shift = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            system.saturating_add(shift)
        } else {
            system.saturating_sub(shift)
        }
    }

    /// Shifts this replica's clock by `offset_ms` (negative: behind). For tests.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

/// A signed request whose headers passed; its signature over the body is still to check.
enum Pending<'a> {
    BtAuth(btauth::HeadersChecked<'a>),
    Epistula(epistula::HeadersChecked<'a>),
}

/// What a route group requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// A caller of the Reasoning API: signed request or token with the `reason` scope.
    Reason,
    /// An operator: token with the `admin` scope.
    Admin,
    /// A signed request only (`POST /v1/auth/session`).
    Signature,
}

/// Middleware for Reasoning API routes.
pub async fn require_reason(
    st: State<AuthState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authenticate(st, req, next, Required::Reason).await
}

/// Middleware for `/admin` routes.
pub async fn require_admin(
    st: State<AuthState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authenticate(st, req, next, Required::Admin).await
}

/// Middleware for routes that take only signed requests.
pub async fn require_signature(
    st: State<AuthState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authenticate(st, req, next, Required::Signature).await
}

fn err(code: ErrorCode, detail: &'static str) -> ApiError {
    ApiError::new(code, detail)
}

/// Maps a signature refusal to its contract code.
fn refusal_error(r: Refusal) -> ApiError {
    match r {
        Refusal::Malformed => err(
            ErrorCode::AuthMalformed,
            "the signature headers are malformed",
        ),
        Refusal::NonCanonicalHotkey => err(
            ErrorCode::AuthMalformed,
            "the sender's SS58 address is not in its canonical form: send the one-byte prefix-42 spelling of the key",
        ),
        Refusal::BadSignature => err(ErrorCode::BadSignature, "the signature does not verify"),
        Refusal::Stale => err(
            ErrorCode::StaleRequest,
            "the signed request is outside its freshness window (check the client's clock)",
        ),
        Refusal::WrongReceiver => err(
            ErrorCode::WrongReceiver,
            "the request must be signed for this gateway's hotkey (see GET /v1/winner's docs: GATEWAY_HOTKEY)",
        ),
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::from_store(&e, "cannot authenticate")
}

/// `Bearer <token>` (scheme case-insensitive, RFC 9110).
fn bearer_token(v: &HeaderValue) -> Result<&str, ApiError> {
    let s = v.to_str().map_err(|_| {
        err(
            ErrorCode::AuthMalformed,
            "the Authorization header is not ASCII",
        )
    })?;
    match s.split_once(' ') {
        Some((scheme, tok)) if scheme.eq_ignore_ascii_case("bearer") && !tok.trim().is_empty() => {
            Ok(tok.trim())
        }
        _ => Err(err(
            ErrorCode::AuthMalformed,
            "use `Authorization: Bearer <token>`",
        )),
    }
}

/// Authenticates, counting refusals by code (`agw_auth_failures_total`) and copying who called
/// onto the response for the access log.
async fn authenticate(
    State(st): State<AuthState>,
    req: Request,
    next: Next,
    need: Required,
) -> Result<Response, ApiError> {
    let result = verify_and_run(&st, req, next, need).await;
    if let Err(e) = &result {
        st.failures.with_label_values(&[e.code.as_str()]).inc();
    }
    result
}

/// Runs `next` with `req` and marks the response with `subject`.
async fn run_as(next: Next, req: Request, subject: AccessSubject) -> Response {
    let mut res = next.run(req).await;
    res.extensions_mut().insert(subject);
    res
}

async fn verify_and_run(
    st: &AuthState,
    req: Request,
    next: Next,
    need: Required,
) -> Result<Response, ApiError> {
    let auth = &st.authenticator;
    let h = req.headers();
    let signed_bt = btauth::present(h);
    let signed_ep = epistula::present(h);
    let bearer = h.get(AUTHORIZATION);
    match signed_bt as u8 + signed_ep as u8 + bearer.is_some() as u8 {
        0 => {
            return Err(err(
                ErrorCode::AuthMissing,
                "authenticate with btauth/1 or Epistula v2 signature headers, or `Authorization: Bearer <token>`",
            ));
        }
        1 => {}
        _ => {
            return Err(err(
                ErrorCode::AuthMalformed,
                "send exactly one credential: btauth/1 headers, Epistula headers, or a bearer token",
            ));
        }
    }

    if let Some(v) = bearer {
        if need == Required::Signature {
            return Err(err(
                ErrorCode::Forbidden,
                "this route takes a signed request (btauth/1 or Epistula v2), not a token",
            ));
        }
        let claims = auth.jwt.verify(bearer_token(v)?).map_err(|e| match e {
            TokenError::Expired => err(ErrorCode::TokenExpired, "the token has expired"),
            TokenError::Invalid => err(
                ErrorCode::TokenInvalid,
                "the bearer token is not a valid token of this gateway",
            ),
        })?;
        if auth.revocations.is_revoked(&claims.jti) {
            return Err(err(ErrorCode::TokenRevoked, "the token has been revoked"));
        }
        let mut req = req;
        if need == Required::Admin {
            if !claims.has(Scope::Admin) {
                return Err(err(
                    ErrorCode::Forbidden,
                    "this route needs a token with the `admin` scope",
                ));
            }
            let operator = Operator {
                sub: claims.sub,
                jti: claims.jti,
            };
            let subject = AccessSubject::of_operator(&operator);
            req.extensions_mut().insert(operator);
            return Ok(run_as(next, req, subject).await);
        }
        if !claims.has(Scope::Reason) {
            return Err(err(
                ErrorCode::Forbidden,
                "this route needs a token with the `reason` scope",
            ));
        }
        let record = match auth.accounts.get(&claims.sub) {
            Cached::Fresh(r) => r,
            cached => match accounts::load(&st.store, &claims.sub).await {
                Ok(r) => {
                    auth.accounts.put(&claims.sub, r.clone());
                    r.map(Arc::new)
                }
                // The store is down, but this caller was known a moment ago.
                Err(e) => match cached {
                    Cached::Stale(r) => r,
                    _ => return Err(e),
                },
            },
        };
        let caller = caller_for(
            auth,
            &claims.sub,
            record.as_deref(),
            Credential::Token { jti: claims.jti },
        )?;
        let subject = AccessSubject::of_caller(&caller);
        req.extensions_mut().insert(caller);
        return Ok(run_as(next, req, subject).await);
    }

    if need == Required::Admin {
        return Err(err(
            ErrorCode::Forbidden,
            "admin routes need a bearer token with the `admin` scope",
        ));
    }
    if need == Required::Signature && signed_ep {
        // Epistula signs neither method nor path: a fresh Epistula request seen on its way to
        // any route could otherwise be redeemed here for a session token.
        return Err(err(
            ErrorCode::AuthMalformed,
            "POST /v1/auth/session takes btauth/1 only (Epistula signs neither the method nor the path)",
        ));
    }
    let (parts, body) = req.into_parts();
    let now = auth.clock.now();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // Every check that needs no body runs before the body is read: garbage with a large (or
    // never-ending) body costs no body read.
    let pending = if signed_bt {
        btauth::check_headers(
            parts.method.as_str(),
            path,
            &parts.headers,
            &auth.receiver,
            now.as_nanos(),
        )
        .map(Pending::BtAuth)
    } else {
        epistula::check_headers(&parts.headers, &auth.receiver, now.as_millis())
            .map(Pending::Epistula)
    }
    .map_err(refusal_error)?;
    let bytes = axum::body::to_bytes(body, st.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                "the request body is larger than this gateway accepts (GATEWAY_MAX_BODY_BYTES)",
            )
        })?;
    let signed = match pending {
        Pending::BtAuth(p) => p.verify_body(&bytes),
        Pending::Epistula(p) => p.verify_body(&bytes),
    }
    .map_err(refusal_error)?;
    let (tag, credential) = match signed.scheme {
        Scheme::BtAuth => (
            "n",
            Credential::BtAuth {
                nonce: signed.replay_id.clone(),
            },
        ),
        Scheme::Epistula => (
            "u",
            Credential::Epistula {
                uuid: signed.replay_id.clone(),
            },
        ),
    };
    let mark = crate::store::keys::replay_mark(&signed.hotkey, tag, &signed.replay_id);
    let adm = st
        .store
        .admit_auth(
            &accounts::record_key(&signed.hotkey),
            // Another replica judges freshness by its own clock: the mark outlives our window
            // by the clock difference replicas are allowed.
            Some((&mark, signed.mark_ttl + st.replica_clock_skew)),
        )
        .await
        .map_err(store_error)?;
    if !adm.fresh {
        return Err(err(
            ErrorCode::ReplayedRequest,
            "this signed request was already used; sign every request with a new nonce",
        ));
    }
    let record = adm
        .account
        .as_deref()
        .map(AccountRecord::decode)
        .transpose()?;
    auth.accounts.put(&signed.hotkey, record.clone());
    let caller = caller_for(auth, &signed.hotkey, record.as_ref(), credential)?;
    let mut req = Request::from_parts(parts, Body::from(bytes));
    let subject = AccessSubject::of_caller(&caller);
    req.extensions_mut().insert(caller);
    Ok(run_as(next, req, subject).await)
}

/// Builds the caller from the stored account, or the `public` default for an unregistered
/// hotkey when that is allowed.
fn caller_for(
    auth: &Authenticator,
    id: &str,
    record: Option<&AccountRecord>,
    credential: Credential,
) -> Result<Caller, ApiError> {
    match record {
        Some(rec) => {
            if rec.disabled {
                return Err(err(ErrorCode::AccountDisabled, "this account is disabled"));
            }
            Ok(Caller {
                account_id: rec.id.clone(),
                kind: rec.kind,
                netuid: rec.netuid,
                plan: rec.plan.clone(),
                billing: rec.billing,
                credit_limit_rao: rec.credit_limit_rao,
                registered: true,
                bill_to: None,
                credential,
            })
        }
        None if AccountKind::of_id(id) == Some(AccountKind::Hotkey) => {
            if let Some(m) = &auth.membership {
                use crate::chain::membership::Grant;
                match m.grant(id, crate::clock::now_ms()) {
                    Grant::Member {
                        netuid,
                        plan,
                        bill_to,
                    } => {
                        return Ok(Caller {
                            account_id: id.to_string(),
                            kind: AccountKind::Hotkey,
                            netuid: Some(netuid),
                            plan,
                            billing: Billing::Prepaid,
                            credit_limit_rao: 0,
                            registered: true,
                            bill_to,
                            credential,
                        });
                    }
                    Grant::Unknown { netuid } => {
                        return Err(ApiError::new(
                            ErrorCode::MembershipUnknown,
                            format!(
                                "the gateway's view of subnet {netuid}'s metagraph is too old to check its gate; retry later"
                            ),
                        ));
                    }
                    Grant::Refused { why, .. } => {
                        return Err(ApiError::new(ErrorCode::MembershipRequired, why));
                    }
                    Grant::None => {}
                }
            }
            if !auth.allow_unregistered {
                return Err(err(
                    ErrorCode::UnregisteredHotkey,
                    "this hotkey is not registered with the gateway",
                ));
            }
            Ok(Caller {
                account_id: id.to_string(),
                kind: AccountKind::Hotkey,
                netuid: None,
                plan: PUBLIC_PLAN.to_string(),
                billing: Billing::Prepaid,
                credit_limit_rao: 0,
                registered: false,
                bill_to: None,
                credential,
            })
        }
        None => Err(err(
            ErrorCode::Forbidden,
            "the token's account does not exist",
        )),
    }
}
