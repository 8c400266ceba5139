//! The client: credentials, automatic sessions, bounded retries and one method per caller
//! endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use affine_reason_auth::{Crypto, KeyPair, Scheme, signing};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Mutex;

use crate::error::{ApiError, Error, header_str};
use crate::rate_limit::RateLimit;
use crate::responses::{Response, ResponseStream, ResponsesRequest};
use crate::retry::RetryPolicy;
use crate::stream::{ChatStream, ReasonStream};
use crate::types::{
    Account, ChatCompletion, ColdkeyLink, Cost, Models, ReasonRequest, ReasonResult, Session,
    Stats, UsageReport, Winner,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    keypair: Option<KeyPair>,
    receiver: Option<String>,
    scheme: Scheme,
    session: Option<bool>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Calls with a bearer token (an enterprise token, or a session token you manage).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Signs with this hotkey (sr25519 or ed25519; see [`KeyPair`]'s loaders).
    pub fn keypair(mut self, keypair: KeyPair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// The gateway's own hotkey (SS58), which signed requests are bound to
    /// (`GATEWAY_HOTKEY`). Required with a keypair.
    pub fn receiver(mut self, receiver: impl Into<String>) -> Self {
        self.receiver = Some(receiver.into());
        self
    }

    /// The scheme of per-request signatures: [`Scheme::BtAuth`] (the default) or
    /// [`Scheme::Epistula`] (sr25519 only). Sessions are always exchanged with btauth/1 (the
    /// gateway refuses Epistula there), so the scheme matters only with `.session(false)`.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Automatic sessions (default on for signed clients): sign once at
    /// `POST /v1/auth/session`, send the token until shortly before it expires, then sign
    /// again. Off: every request is signed.
    pub fn session(mut self, on: bool) -> Self {
        self.session = Some(on);
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A timeout for each HTTP attempt (default none; streams may be long).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses this HTTP client (its TLS, proxy and pool settings) instead of a new one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Checks the configuration and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let base = Url::parse(self.base_url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.query().is_some() {
            return Err(Error::Config(
                "base URL must be http(s) without a query".to_owned(),
            ));
        }
        let credential = match (self.token, self.keypair) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "a token or a keypair, not both: the gateway takes exactly one credential"
                        .to_owned(),
                ));
            }
            (Some(token), None) => Credential::Bearer(token),
            (None, Some(key)) => {
                let receiver = self.receiver.ok_or_else(|| {
                    Error::Config("a signed client needs .receiver(<gateway hotkey>)".to_owned())
                })?;
                if !affine_reason_auth::ss58::is_valid42(&receiver) {
                    return Err(Error::Config(
                        "receiver must be a canonical prefix-42 SS58 address".to_owned(),
                    ));
                }
                let sessions = self.session.unwrap_or(true);
                if !sessions && self.scheme == Scheme::Epistula && key.crypto() != Crypto::Sr25519 {
                    return Err(Error::Config("Epistula signs with sr25519 only".to_owned()));
                }
                Credential::Signed {
                    key: Box::new(key),
                    receiver,
                    scheme: self.scheme,
                    sessions,
                }
            }
            (None, None) => Credential::None,
        };
        let http = match self.http {
            Some(http) => http,
            None => {
                // reqwest is built without a bundled crypto provider; ring is the one this
                // crate brings. An application that installed another keeps it.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("affine-reason-rust/", env!("CARGO_PKG_VERSION")));
                if let Some(timeout) = self.timeout {
                    builder = builder.timeout(timeout);
                }
                builder.build()?
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                http,
                credential,
                retry: self.retry,
                session: Mutex::new(None),
                session_exchanges: AtomicU64::new(0),
            }),
        })
    }
}

/// A client of the Affine Reasoning API. Cheap to clone (one `Arc`); clones share the
/// session.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    http: reqwest::Client,
    credential: Credential,
    retry: RetryPolicy,
    /// The current session token; the lock is held while one is exchanged, so concurrent
    /// calls wait for one signed session request instead of each signing their own.
    session: Mutex<Option<CachedSession>>,
    session_exchanges: AtomicU64,
}

#[derive(Debug)]
enum Credential {
    None,
    Bearer(String),
    Signed {
        // Boxed: an sr25519 pair is large, and the other variants small.
        key: Box<KeyPair>,
        receiver: String,
        scheme: Scheme,
        sessions: bool,
    },
}

#[derive(Debug)]
struct CachedSession {
    token: String,
    refresh_at: Instant,
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No credential (public routes).
    Public,
    /// The client's credential (a session token for signed clients with sessions on).
    Caller,
    /// Signed with btauth/1 whatever the client's settings (the session exchange).
    BtAuthOnly,
}

/// A linked coldkey and whether this call made the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The link.
    pub link: ColdkeyLink,
    /// `true` when made now (201), `false` when it already existed for this account (200).
    pub created: bool,
}

impl Client {
    /// Starts building a client for the gateway at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            keypair: None,
            receiver: None,
            scheme: Scheme::BtAuth,
            session: None,
            retry: RetryPolicy::default(),
            timeout: None,
            http: None,
        }
    }

    /// `POST /v1/reason`, whole. Not retried automatically unless
    /// [`RetryPolicy::non_idempotent`] is set.
    pub async fn reason(&self, req: impl Into<ReasonRequest>) -> Result<ReasonResult, Error> {
        let mut req = req.into();
        req.stream = None;
        let body = reason_body(&req)?;
        let (res, attempts) = self.post("/v1/reason", body).await?;
        let request_id = header_str(res.headers(), "x-request-id");
        let rate_limit = RateLimit::from_headers(res.headers());
        let mut result: ReasonResult = decode(res).await?;
        result.request_id = request_id;
        result.rate_limit = rate_limit;
        result.attempts = attempts;
        Ok(result)
    }

    /// `POST /v1/reason` streamed: a [`Stream`](futures_core::Stream) of
    /// [`Event`](crate::Event)s. A refusal before the stream began is an `Err` here (and may
    /// be retried like [`Client::reason`]); nothing is retried once the stream started.
    /// Dropping the stream closes the connection.
    pub async fn reason_stream(
        &self,
        req: impl Into<ReasonRequest>,
    ) -> Result<ReasonStream, Error> {
        let mut req = req.into();
        req.stream = Some(true);
        let body = reason_body(&req)?;
        let (res, attempts) = self.post("/v1/reason", body).await?;
        Ok(ReasonStream::new(res, attempts))
    }

    /// `POST /v1/responses`, whole: the `response` object (a reasoning item, when there is
    /// one, and the message item; usage and cost). Not retried automatically unless
    /// [`RetryPolicy::non_idempotent`] is set.
    pub async fn responses(&self, req: impl Into<ResponsesRequest>) -> Result<Response, Error> {
        let mut req = req.into();
        req.stream = None;
        // `stream` through `.field` would turn the answer into events this call cannot read.
        req.extra.remove("stream");
        let body = responses_body(&req)?;
        let (res, attempts) = self.post("/v1/responses", body).await?;
        let request_id = header_str(res.headers(), "x-request-id");
        let rate_limit = RateLimit::from_headers(res.headers());
        let mut result: Response = decode(res).await?;
        result.request_id = request_id;
        result.rate_limit = rate_limit;
        result.attempts = attempts;
        Ok(result)
    }

    /// `POST /v1/responses` streamed: a [`Stream`](futures_core::Stream) of
    /// [`ResponseEvent`](crate::ResponseEvent)s ending with `Completed`, `Incomplete` or
    /// `Failed`. A refusal before the stream began is an `Err` here; nothing is retried once
    /// the stream started. Dropping the stream closes the connection.
    pub async fn responses_stream(
        &self,
        req: impl Into<ResponsesRequest>,
    ) -> Result<ResponseStream, Error> {
        let mut req = req.into();
        req.stream = Some(true);
        req.extra.remove("stream");
        let body = responses_body(&req)?;
        let (res, attempts) = self.post("/v1/responses", body).await?;
        Ok(ResponseStream::new(res, attempts))
    }

    /// `POST /v1/chat/completions`, whole: the provider's `chat.completion` as it came.
    /// `body` is an OpenAI request (`model` is `affine-winner` or a listed id); `stream` is
    /// forced off.
    pub async fn chat_completions(
        &self,
        mut body: serde_json::Value,
    ) -> Result<ChatCompletion, Error> {
        set_stream(&mut body, false)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Decode(e.to_string()))?;
        let (res, _) = self.post("/v1/chat/completions", bytes).await?;
        let headers = res.headers().clone();
        let body = decode(res).await?;
        Ok(ChatCompletion {
            body,
            cost: header_str(&headers, "x-affine-cost-rao")
                .and_then(|v| v.parse().ok())
                .map(Cost::from_rao),
            model: header_str(&headers, "x-affine-model"),
            request_id: header_str(&headers, "x-request-id"),
            rate_limit: RateLimit::from_headers(&headers),
        })
    }

    /// `POST /v1/chat/completions` streamed: the `chat.completion.chunk` objects.
    pub async fn chat_completions_stream(
        &self,
        mut body: serde_json::Value,
    ) -> Result<ChatStream, Error> {
        set_stream(&mut body, true)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Decode(e.to_string()))?;
        let (res, _) = self.post("/v1/chat/completions", bytes).await?;
        Ok(ChatStream::new(res))
    }

    /// `GET /v1/models`: `affine-winner` and the winner's id, with prices on your plan.
    pub async fn models(&self) -> Result<Models, Error> {
        self.get("/v1/models", &[], Auth::Caller).await
    }

    /// `GET /v1/winner` (public): the model serving now.
    pub async fn winner(&self) -> Result<Winner, Error> {
        self.get("/v1/winner", &[], Auth::Public).await
    }

    /// `GET /v1/account`: your account, limits, what is left, balance and holds.
    pub async fn account(&self) -> Result<Account, Error> {
        self.get("/v1/account", &[], Auth::Caller).await
    }

    /// `GET /v1/usage`: your usage per UTC day (`YYYY-MM-DD`, both included; the gateway's
    /// default range when `None`).
    pub async fn usage(&self, from: Option<&str>, to: Option<&str>) -> Result<UsageReport, Error> {
        self.get("/v1/usage", &range(from, to), Auth::Caller).await
    }

    /// `GET /v1/stats` (public): serving totals per day.
    pub async fn stats(&self, from: Option<&str>, to: Option<&str>) -> Result<Stats, Error> {
        self.get("/v1/stats", &range(from, to), Auth::Public).await
    }

    /// `POST /v1/auth/session`: trades one btauth/1-signed request for a bearer token.
    /// Signed clients with sessions on do this themselves; the new token replaces theirs.
    pub async fn session(&self) -> Result<Session, Error> {
        let mut cached = self.inner.session.lock().await;
        let session = self.exchange_session().await?;
        if self.uses_sessions() {
            *cached = Some(cache(&session));
        }
        Ok(session)
    }

    /// How many session exchanges this client (and its clones) made.
    pub fn session_exchanges(&self) -> u64 {
        self.inner.session_exchanges.load(Ordering::Relaxed)
    }

    /// `POST /v1/account/coldkeys`: links `coldkey` to your account, signing the link
    /// message with it (sr25519). `account_id` is your account id (your hotkey's SS58 for
    /// signed clients: `None` uses it; bearer clients must name it); `gateway_hotkey` is the
    /// gateway's hotkey (the client's receiver when `None`).
    pub async fn link_coldkey(
        &self,
        coldkey: &KeyPair,
        account_id: Option<&str>,
        gateway_hotkey: Option<&str>,
    ) -> Result<Linked, Error> {
        let (own_id, receiver) = match &self.inner.credential {
            Credential::Signed { key, receiver, .. } => (Some(key.ss58()), Some(receiver.clone())),
            _ => (None, None),
        };
        let account = account_id
            .map(str::to_owned)
            .or(own_id)
            .ok_or_else(|| Error::Config("link_coldkey needs the account id".to_owned()))?;
        let gateway = gateway_hotkey
            .map(str::to_owned)
            .or(receiver)
            .ok_or_else(|| Error::Config("link_coldkey needs the gateway hotkey".to_owned()))?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signature =
            affine_reason_auth::coldkey::sign_link(coldkey, &account, &gateway, &nonce)?;
        self.link_coldkey_signed(&coldkey.ss58(), &nonce, &signature)
            .await
    }

    /// `POST /v1/account/coldkeys` with a signature made elsewhere (a wallet): see
    /// [`affine_reason_auth::coldkey::link_message`] for what the coldkey signs.
    pub async fn link_coldkey_signed(
        &self,
        coldkey: &str,
        nonce: &str,
        signature: &str,
    ) -> Result<Linked, Error> {
        let body = serde_json::to_vec(&serde_json::json!({
            "coldkey": coldkey, "nonce": nonce, "signature": signature,
        }))
        .map_err(|e| Error::Decode(e.to_string()))?;
        let (res, _) = self.post("/v1/account/coldkeys", body).await?;
        let created = res.status() == StatusCode::CREATED;
        Ok(Linked {
            link: decode(res).await?,
            created,
        })
    }

    fn uses_sessions(&self) -> bool {
        matches!(
            self.inner.credential,
            Credential::Signed { sessions: true, .. }
        )
    }

    /// POSTs `body` to `path` as the caller: not idempotent, so retried only where the retry
    /// policy allows non-idempotent retries.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<(reqwest::Response, u32), Error> {
        self.send(Method::POST, path, &[], Some(body), false, Auth::Caller)
            .await
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth,
    ) -> Result<T, Error> {
        let (res, _) = self
            .send(Method::GET, path, query, None, true, auth)
            .await?;
        decode(res).await
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends with retries; returns the successful answer and how many attempts it took.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        idempotent: bool,
        auth: Auth,
    ) -> Result<(reqwest::Response, u32), Error> {
        let url = self.url(path, query);
        let retry = &self.inner.retry;
        let mut attempts = 0u32;
        let mut renewed = false;
        loop {
            attempts += 1;
            let (headers, via_session) = self
                .auth_headers(auth, &method, &url, body.as_deref().unwrap_or_default())
                .await?;
            let mut req = self.inner.http.request(method.clone(), url.clone());
            req = req.headers(headers);
            if let Some(body) = &body {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let res = req.send().await?;
            let status = res.status();
            if status.is_success() {
                return Ok((res, attempts));
            }
            let headers = res.headers().clone();
            let bytes = res.bytes().await?;
            let err = ApiError::from_response(status.as_u16(), &headers, &bytes);
            // A session token the gateway no longer takes (expired early by a clock
            // difference, revoked): sign a new session once, then repeat the call.
            if via_session
                && status == StatusCode::UNAUTHORIZED
                && !renewed
                && matches!(
                    err.code.as_str(),
                    "token_expired" | "token_revoked" | "token_invalid"
                )
            {
                renewed = true;
                *self.inner.session.lock().await = None;
                attempts -= 1;
                continue;
            }
            if let Some(wait) = retry.wait(&err, attempts, idempotent) {
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(err.into());
        }
    }

    /// The credential headers of one attempt; the flag says a session token was used.
    async fn auth_headers(
        &self,
        auth: Auth,
        method: &Method,
        url: &Url,
        body: &[u8],
    ) -> Result<(HeaderMap, bool), Error> {
        let mut headers = HeaderMap::new();
        let (key, receiver, scheme, sessions) = match (&self.inner.credential, auth) {
            (_, Auth::Public) | (Credential::None, _) => return Ok((headers, false)),
            (Credential::Bearer(token), Auth::Caller) => {
                headers.insert(AUTHORIZATION, bearer(token)?);
                return Ok((headers, false));
            }
            (Credential::Bearer(_), Auth::BtAuthOnly) => {
                return Err(Error::Config("sessions need a keypair".to_owned()));
            }
            (
                Credential::Signed {
                    key,
                    receiver,
                    scheme,
                    sessions,
                },
                _,
            ) => (key, receiver, *scheme, *sessions),
        };
        if auth == Auth::Caller && sessions {
            let token = self.session_token().await?;
            headers.insert(AUTHORIZATION, bearer(&token)?);
            return Ok((headers, true));
        }
        let scheme = if auth == Auth::BtAuthOnly {
            Scheme::BtAuth
        } else {
            scheme
        };
        let signed = match (scheme, &**key) {
            (Scheme::Epistula, KeyPair::Sr25519(pair)) => signing::epistula_headers(
                pair,
                body,
                receiver,
                &uuid::Uuid::new_v4().to_string(),
                unix_now().as_millis(),
            ),
            (Scheme::Epistula, KeyPair::Ed25519(_)) => {
                return Err(Error::Config("Epistula signs with sr25519 only".to_owned()));
            }
            (Scheme::BtAuth, key) => {
                let target = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_owned(),
                };
                signing::btauth_headers(
                    key,
                    method.as_str(),
                    &target,
                    body,
                    receiver,
                    unix_now().as_nanos(),
                )
            }
        };
        for (name, value) in signed {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| Error::Config(format!("{name} is not a header value")))?;
            headers.insert(name, value);
        }
        Ok((headers, false))
    }

    /// The session token, exchanging a new one when there is none or it is about to expire.
    async fn session_token(&self) -> Result<String, Error> {
        let mut cached = self.inner.session.lock().await;
        if let Some(s) = cached.as_ref()
            && Instant::now() < s.refresh_at
        {
            return Ok(s.token.clone());
        }
        let session = self.exchange_session().await?;
        let token = session.token.clone();
        *cached = Some(cache(&session));
        Ok(token)
    }

    /// One signed `POST /v1/auth/session`. Issuing a token changes nothing on the gateway,
    /// so a 429/503 here is retried like an idempotent call.
    ///
    /// A boxed `Send` future with its type written out: `send` reaches this function again
    /// (through the session token of `Auth::Caller`), and only a declared type breaks that
    /// cycle for the compiler.
    fn exchange_session(&self) -> BoxFuture<'_, Result<Session, Error>> {
        Box::pin(async move {
            self.inner.session_exchanges.fetch_add(1, Ordering::Relaxed);
            let (res, _) = self
                .send(
                    Method::POST,
                    "/v1/auth/session",
                    &[],
                    Some(Vec::new()),
                    true,
                    Auth::BtAuthOnly,
                )
                .await?;
            decode(res).await
        })
    }
}

/// When to exchange a new session: shortly before `expires_at` (a tenth of the lifetime, at
/// most a minute), measured on this machine's clock.
fn cache(session: &Session) -> CachedSession {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let left = OffsetDateTime::parse(&session.expires_at, &Rfc3339)
        .ok()
        .map(|at| at - OffsetDateTime::now_utc())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO);
    let margin = (left / 10).min(Duration::from_secs(60));
    CachedSession {
        token: session.token.clone(),
        refresh_at: Instant::now() + left.saturating_sub(margin),
    }
}

fn bearer(token: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Config("the token is not a valid header value".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn range<'a>(from: Option<&'a str>, to: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
    let mut q = Vec::new();
    if let Some(from) = from {
        q.push(("from", from));
    }
    if let Some(to) = to {
        q.push(("to", to));
    }
    q
}

fn reason_body(req: &ReasonRequest) -> Result<Vec<u8>, Error> {
    if req.input.is_none() {
        return Err(Error::Config("a reason request needs an input".to_owned()));
    }
    serde_json::to_vec(req).map_err(|e| Error::Decode(e.to_string()))
}

fn responses_body(req: &ResponsesRequest) -> Result<Vec<u8>, Error> {
    if req.input.is_none() {
        return Err(Error::Config(
            "a responses request needs an input".to_owned(),
        ));
    }
    serde_json::to_vec(req).map_err(|e| Error::Decode(e.to_string()))
}

fn set_stream(body: &mut serde_json::Value, stream: bool) -> Result<(), Error> {
    body.as_object_mut()
        .ok_or_else(|| Error::Config("a chat completions body is a JSON object".to_owned()))?
        .insert("stream".to_owned(), serde_json::Value::Bool(stream));
    Ok(())
}

async fn decode<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> Result<T, Error> {
    let bytes = res.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

    fn alice() -> KeyPair {
        KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key")
    }

    #[test]
    fn misconfigurations_are_refused_at_build() {
        let both = Client::builder("http://127.0.0.1:1")
            .token("t")
            .keypair(alice())
            .receiver(BOB)
            .build();
        assert!(matches!(both, Err(Error::Config(_))));
        let no_receiver = Client::builder("http://127.0.0.1:1")
            .keypair(alice())
            .build();
        assert!(matches!(no_receiver, Err(Error::Config(_))));
        let ed = KeyPair::from_uri("//Alice", Crypto::Ed25519).expect("dev key");
        let ed_epistula = Client::builder("http://127.0.0.1:1")
            .keypair(ed)
            .receiver(BOB)
            .scheme(Scheme::Epistula)
            .session(false)
            .build();
        assert!(matches!(ed_epistula, Err(Error::Config(_))));
        assert!(matches!(
            Client::builder("ftp://x").build(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_queries() {
        let client = Client::builder("http://127.0.0.1:1/api/")
            .build()
            .expect("client");
        let url = client.url("/v1/usage", &[("from", "2026-01-01")]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/api/v1/usage?from=2026-01-01"
        );
    }

    #[test]
    fn sessions_refresh_before_they_expire() {
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(900);
        let session = Session {
            token: "t".into(),
            expires_at: at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("format"),
        };
        let c = cache(&session);
        let left = c.refresh_at - Instant::now();
        assert!(left <= Duration::from_secs(840) && left > Duration::from_secs(830));
        let expired = Session {
            token: "t".into(),
            expires_at: "2000-01-01T00:00:00Z".into(),
        };
        assert!(cache(&expired).refresh_at <= Instant::now());
    }
}
