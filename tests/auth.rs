//! Authentication over HTTP: signed requests (btauth/1, Epistula v2) with replay protection
//! across replicas sharing Redis, bearer tokens, scopes, revocation, sessions, accounts.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use affine_gateway::auth::jwt::Scope;
use affine_gateway::auth::signing::{Crypto, KeyPair, btauth_headers, epistula_headers};
use affine_gateway::config::DEV_HOTKEY;
use chutes_sim::SimConfig;
use common::*;

const BODY: &str = r#"{"input":"2+2?","max_tokens":32}"#;
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn alice(crypto: Crypto) -> KeyPair {
    KeyPair::from_uri("//Alice", crypto).unwrap()
}

/// Sends `body` to `base` + `path`, signed with btauth/1 over `signed_path`/`signed_body`.
async fn send_btauth(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &str,
    headers: Vec<(&'static str, String)>,
) -> reqwest::Response {
    let mut rb = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    rb.send().await.unwrap()
}

fn signed(
    key: &KeyPair,
    path: &str,
    body: &str,
    receiver: &str,
    nonce: u128,
) -> Vec<(&'static str, String)> {
    btauth_headers(key, "POST", path, body.as_bytes(), receiver, nonce)
}

async fn redis_harness(tweak: impl FnOnce(&mut affine_gateway::config::Config)) -> Harness {
    Harness::start_with(SimConfig::default(), |c| {
        use_redis(c);
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn btauth_request_is_accepted_once_across_replicas() {
    let h = redis_harness(|_| {}).await;
    let second = h.replica().await;
    for crypto in [Crypto::Sr25519, Crypto::Ed25519] {
        let key = alice(crypto);
        let headers = signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns());
        let res = send_btauth(&h.http, &h.gw.url(), "/v1/reason", BODY, headers.clone()).await;
        assert_eq!(
            res.status(),
            200,
            "{crypto:?}: {}",
            res.text().await.unwrap()
        );
        // The very same signed request against the other replica is a replay.
        let res = send_btauth(&h.http, &second.url(), "/v1/reason", BODY, headers).await;
        expect_problem(res, 401, "replayed_request").await;
    }
}

#[tokio::test]
async fn epistula_request_is_accepted_once_across_replicas() {
    let h = redis_harness(|_| {}).await;
    let second = h.replica().await;
    let KeyPair::Sr25519(pair) = alice(Crypto::Sr25519) else {
        unreachable!()
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    let headers = epistula_headers(
        &pair,
        BODY.as_bytes(),
        DEV_HOTKEY,
        &uuid,
        now_ns() / 1_000_000,
    );
    let res = send_btauth(&h.http, &h.gw.url(), "/v1/reason", BODY, headers.clone()).await;
    assert_eq!(res.status(), 200);
    let res = send_btauth(&h.http, &second.url(), "/v1/reason", BODY, headers).await;
    expect_problem(res, 401, "replayed_request").await;
}

#[tokio::test]
async fn bad_signed_requests_get_their_codes() {
    let h = Harness::start(SimConfig::default()).await;
    let key = alice(Crypto::Sr25519);
    let base = h.gw.url();
    let now = now_ns();
    let s = 1_000_000_000u128;
    // tampered body
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        r#"{"input":"2+3?"}"#,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now),
    )
    .await;
    expect_problem(res, 401, "bad_signature").await;
    // wrong path (signed for another route)
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        BODY,
        signed(&key, "/v1/chat/completions", BODY, DEV_HOTKEY, now + 1),
    )
    .await;
    expect_problem(res, 401, "bad_signature").await;
    // query string is part of the signed path
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason?x=1",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now + 2),
    )
    .await;
    expect_problem(res, 401, "bad_signature").await;
    // stale (11 s old) and from the future (3 s ahead)
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now - 11 * s),
    )
    .await;
    expect_problem(res, 401, "stale_request").await;
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now + 3 * s),
    )
    .await;
    expect_problem(res, 401, "stale_request").await;
    // bound to another receiver
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, ALICE, now + 3),
    )
    .await;
    expect_problem(res, 401, "wrong_receiver").await;
    // garbage signature header
    let mut headers = signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now + 4);
    headers.retain(|(k, _)| *k != "X-Bittensor-Signature");
    headers.push(("X-Bittensor-Signature", "0xnothex".into()));
    let res = send_btauth(&h.http, &base, "/v1/reason", BODY, headers).await;
    expect_problem(res, 401, "auth_malformed").await;
    assert!(
        h.sim.requests().is_empty(),
        "no refused request reached the upstream"
    );
}

#[tokio::test]
async fn missing_double_and_bad_tokens_are_refused() {
    let h = Harness::start(SimConfig::default()).await;
    let post = |tok: Option<String>| {
        let mut rb = h
            .http
            .post(h.url("/v1/reason"))
            .header("content-type", "application/json")
            .body(BODY);
        if let Some(t) = tok {
            rb = rb.header("authorization", t);
        }
        rb.send()
    };
    expect_problem(post(None).await.unwrap(), 401, "auth_missing").await;
    expect_problem(
        post(Some("Basic abc".into())).await.unwrap(),
        401,
        "auth_malformed",
    )
    .await;
    expect_problem(
        post(Some("Bearer not.a.jwt".into())).await.unwrap(),
        401,
        "token_invalid",
    )
    .await;
    let foreign = affine_gateway::auth::jwt::JwtKeys::new(&[9u8; 32], Duration::ZERO)
        .issue(
            TEST_ACCOUNT,
            &[Scope::Reason],
            Duration::from_secs(60),
            affine_gateway::auth::jwt::now_secs(),
        )
        .0;
    expect_problem(
        post(Some(format!("Bearer {foreign}"))).await.unwrap(),
        401,
        "token_invalid",
    )
    .await;
    let expired = keys()
        .issue(
            TEST_ACCOUNT,
            &[Scope::Reason],
            Duration::from_secs(5),
            affine_gateway::auth::jwt::now_secs() - 60,
        )
        .0;
    expect_problem(
        post(Some(format!("Bearer {expired}"))).await.unwrap(),
        401,
        "token_expired",
    )
    .await;
    // A token for an account that does not exist.
    let ghost = token("ghost-co", &[Scope::Reason], 60);
    expect_problem(
        post(Some(format!("Bearer {ghost}"))).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // Two credentials at once.
    let key = alice(Crypto::Sr25519);
    let mut rb = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body(BODY);
    for (k, v) in signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns()) {
        rb = rb.header(k, v);
    }
    expect_problem(rb.send().await.unwrap(), 401, "auth_malformed").await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_scope() {
    let h = Harness::start(SimConfig::default()).await;
    let get = |tok: String| {
        h.http
            .get(h.url(&format!("/admin/v1/accounts/{TEST_ACCOUNT}")))
            .bearer_auth(tok)
            .send()
    };
    expect_problem(get(h.token.clone()).await.unwrap(), 403, "forbidden").await;
    let res = get(admin_token()).await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["id"], TEST_ACCOUNT);
    assert_eq!(v["kind"], "enterprise");
    assert_eq!(v["billing"], "postpaid");
    assert_eq!(v["balance_rao"], 0);
    assert_eq!(v["disabled"], false);
    // A signed request is no admin credential either.
    let key = alice(Crypto::Sr25519);
    let mut rb = h
        .http
        .get(h.url(&format!("/admin/v1/accounts/{TEST_ACCOUNT}")));
    for (k, v) in btauth_headers(
        &key,
        "GET",
        &format!("/admin/v1/accounts/{TEST_ACCOUNT}"),
        b"",
        DEV_HOTKEY,
        now_ns(),
    ) {
        rb = rb.header(k, v);
    }
    expect_problem(rb.send().await.unwrap(), 403, "forbidden").await;
    // And a reason-only token cannot reach /v1/reason with admin alone.
    let admin_only = admin_token();
    let res = h
        .http
        .post(h.url("/v1/reason"))
        .bearer_auth(admin_only)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, "forbidden").await;
}

#[tokio::test]
async fn accounts_are_validated_and_disabled_accounts_refused() {
    let h = Harness::start(SimConfig::default()).await;
    let base = h.gw.url();
    let res = put_account(&h.http, &base, ALICE, r#"{"netuid":12,"plan":"subnet"}"#).await;
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["kind"], "hotkey");
    assert_eq!(v["netuid"], 12);
    assert_eq!(v["billing"], "prepaid");
    let res = put_account(&h.http, &base, ALICE, r#"{"disabled":true}"#).await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["plan"], "subnet", "omitted fields keep their value");
    assert_eq!(v["disabled"], true);
    let key = alice(Crypto::Sr25519);
    let res = send_btauth(
        &h.http,
        &base,
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns()),
    )
    .await;
    expect_problem(res, 403, "account_disabled").await;

    for (id, body, code) in [
        ("Not_A_Slug", "{}", "invalid_request"),
        (ALICE, r#"{"plan":"platinum"}"#, "invalid_request"),
        (ALICE, r#"{"plna":"subnet"}"#, "unknown_field"),
        (ALICE, r#"{"balance_rao":100}"#, "invalid_request"),
        ("acme", r#"{"netuid":1}"#, "invalid_request"),
        ("acme", "{", "invalid_json"),
    ] {
        expect_problem(put_account(&h.http, &base, id, body).await, 400, code).await;
    }
    let res = h
        .http
        .get(h.url("/admin/v1/accounts/nobody-here"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn unregistered_hotkeys_follow_the_policy() {
    let open = Harness::start(SimConfig::default()).await;
    let key = KeyPair::from_uri("//Charlie", Crypto::Sr25519).unwrap();
    let res = send_btauth(
        &open.http,
        &open.gw.url(),
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns()),
    )
    .await;
    assert_eq!(res.status(), 200, "public plan");
    let closed = Harness::start_with(SimConfig::default(), |c| c.allow_unregistered = false).await;
    let res = send_btauth(
        &closed.http,
        &closed.gw.url(),
        "/v1/reason",
        BODY,
        signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns()),
    )
    .await;
    expect_problem(res, 403, "unregistered_hotkey").await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_another_replica_within_a_second() {
    let h = redis_harness(|_| {}).await;
    let second = h.replica().await;
    let keys = keys();
    let (tok, claims) = keys.issue(
        TEST_ACCOUNT,
        &[Scope::Reason],
        Duration::from_secs(600),
        affine_gateway::auth::jwt::now_secs(),
    );
    let call = |base: String, tok: String| {
        let http = h.http.clone();
        async move {
            http.post(format!("{base}/v1/reason"))
                .bearer_auth(tok)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(call(second.url(), tok.clone()).await.status(), 200);
    let res = h
        .http
        .post(h.url("/admin/v1/tokens/revoke"))
        .bearer_auth(admin_token())
        .header("content-type", "application/json")
        .body(format!(r#"{{"jti":"{}"}}"#, claims.jti))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked_at = Instant::now();
    // At once on the replica that took the revocation…
    expect_problem(call(h.gw.url(), tok.clone()).await, 401, "token_revoked").await;
    // …and within a second on the other one.
    loop {
        let res = call(second.url(), tok.clone()).await;
        if res.status() == 401 {
            expect_problem(res, 401, "token_revoked").await;
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn session_exchange_gives_a_short_lived_reason_token() {
    let h = Harness::start_with(SimConfig::default(), |c| c.auth.session_ttl_secs = 1).await;
    let key = alice(Crypto::Sr25519);
    let res = send_btauth(
        &h.http,
        &h.gw.url(),
        "/v1/auth/session",
        "",
        btauth_headers(&key, "POST", "/v1/auth/session", b"", DEV_HOTKEY, now_ns()),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    let tok = v["token"].as_str().unwrap().to_string();
    let exp = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(exp > time::OffsetDateTime::now_utc() - time::Duration::seconds(1));
    let claims = keys().verify(&tok).unwrap();
    assert_eq!(claims.sub, ALICE);
    assert_eq!(claims.scope, "reason");

    let call = || {
        h.http
            .post(h.url("/v1/reason"))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
    };
    assert_eq!(
        call().await.unwrap().status(),
        200,
        "the session token works"
    );
    // A token cannot buy a session.
    let res = h
        .http
        .post(h.url("/v1/auth/session"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, "forbidden").await;
    // After its expiry it is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = call().await.unwrap();
        if res.status() == 401 {
            expect_problem(res, 401, "token_expired").await;
            break;
        }
        assert!(Instant::now() < deadline, "session token still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
