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

async fn redis_harness(redis: &TestRedis) -> Harness {
    Harness::start_with(SimConfig::default(), |c| redis.configure(c)).await
}

// The replay and revocation cases, on the single Redis and on the cluster: `…::single`, `…::cluster`.
single_and_cluster!(
    btauth_request_is_accepted_once_across_replicas,
    epistula_request_is_accepted_once_across_replicas,
    a_replay_on_a_replica_whose_clock_is_behind_is_refused,
    a_revoked_token_is_refused_on_another_replica_within_a_second,
);

async fn btauth_request_is_accepted_once_across_replicas(redis: &TestRedis) {
    let h = redis_harness(redis).await;
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

async fn epistula_request_is_accepted_once_across_replicas(redis: &TestRedis) {
    let h = redis_harness(redis).await;
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

async fn a_revoked_token_is_refused_on_another_replica_within_a_second(redis: &TestRedis) {
    let h = redis_harness(redis).await;
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

/// Issue #11 item 2: the two-byte-prefix spelling of a key is not a second identity.
#[tokio::test]
async fn the_two_byte_ss58_spelling_of_a_key_is_refused_everywhere() {
    let h = redis_harness(&TestRedis::single()).await;
    let second = h.replica().await;
    let base = h.gw.url();
    let key = alice(Crypto::Sr25519);
    let KeyPair::Sr25519(pair) = &key else {
        unreachable!()
    };
    let alias = two_byte_ss58(&key.public());
    assert_ne!(alias, ALICE);
    let (account, format) = {
        use sp_core::crypto::{AccountId32, Ss58Codec};
        AccountId32::from_ss58check_with_version(&alias).expect("sp-core decodes the alias")
    };
    assert_eq!(
        (account.as_ref() as &[u8], u16::from(format)),
        (&key.public()[..], 42),
        "the alias is the same key on the same network"
    );

    // The account is disabled under its canonical address.
    let res = put_account(&h.http, &base, ALICE, r#"{"disabled":true}"#).await;
    assert_eq!(res.status(), 201);
    // Epistula does not sign `Epistula-Signed-By`: swapping in the alias must not make the
    // same signed request a new one (a second replay mark) nor escape the disabled account.
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut headers = epistula_headers(
        pair,
        BODY.as_bytes(),
        DEV_HOTKEY,
        &uuid,
        now_ns() / 1_000_000,
    );
    let res = send_btauth(&h.http, &base, "/v1/reason", BODY, headers.clone()).await;
    expect_problem(res, 403, "account_disabled").await;
    for (name, value) in headers.iter_mut() {
        if *name == "Epistula-Signed-By" {
            *value = alias.clone();
        }
    }
    let res = send_btauth(&h.http, &second.url(), "/v1/reason", BODY, headers).await;
    let body = expect_problem(res, 401, "auth_malformed").await;
    assert!(
        body["detail"].as_str().unwrap().contains("canonical"),
        "{body}"
    );
    // btauth/1 signs the hotkey, but the alias is refused before the signature anyway.
    let mut headers = signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns());
    for (name, value) in headers.iter_mut() {
        if *name == "X-Bittensor-Hotkey" {
            *value = alias.clone();
        }
    }
    let res = send_btauth(&h.http, &base, "/v1/reason", BODY, headers).await;
    expect_problem(res, 401, "auth_malformed").await;
    // And no second account for the same key.
    let res = put_account(&h.http, &base, &alias, "{}").await;
    expect_problem(res, 400, "invalid_request").await;
    assert!(
        h.sim.requests().is_empty(),
        "no request under either spelling reached the upstream"
    );
    assert!(!affine_gateway::auth::ss58::is_valid42(&alias));
}

/// Issue #11 item 4: a replica whose clock is behind must not accept again a signed request
/// another replica accepted, once the first replica's view of its window has passed.
async fn a_replay_on_a_replica_whose_clock_is_behind_is_refused(redis: &TestRedis) {
    let h = redis_harness(redis).await;
    let behind = h.replica().await;
    // Within the documented bound (auth.replica_clock_skew_secs, 5 s by default).
    behind.state.auth.clock.set_offset_ms(-3_000);
    let key = alice(Crypto::Sr25519);
    // Near the end of its 10 s window on the first replica's clock, so that replica's view of
    // the window ends in half a second; on the replica 3 s behind it is fresh 3 s longer.
    let nonce = now_ns() - 9_500_000_000;
    let headers = signed(&key, "/v1/reason", BODY, DEV_HOTKEY, nonce);
    let res = send_btauth(&h.http, &h.gw.url(), "/v1/reason", BODY, headers.clone()).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // Until the request goes stale on the lagging replica, every attempt there is a replay.
    let started = Instant::now();
    let mut replays = 0;
    loop {
        let res = send_btauth(&h.http, &behind.url(), "/v1/reason", BODY, headers.clone()).await;
        assert_ne!(
            res.status(),
            200,
            "accepted a second time after {:?} ({replays} replays refused before)",
            started.elapsed()
        );
        let body: serde_json::Value = res.json().await.unwrap();
        match body["code"].as_str() {
            Some("replayed_request") => replays += 1,
            Some("stale_request") => break,
            other => panic!("unexpected refusal {other:?}: {body}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never went stale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        replays > 0,
        "the lagging replica saw the request while fresh"
    );
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "went stale only after the first replica's window"
    );
}

/// Issue #11 item 8: Epistula binds neither method nor path, so it cannot buy a session.
#[tokio::test]
async fn an_epistula_request_cannot_buy_a_session() {
    let h = Harness::start(SimConfig::default()).await;
    let KeyPair::Sr25519(pair) = alice(Crypto::Sr25519) else {
        unreachable!()
    };
    // A request signed for /v1/reason, seen by a proxy and redeemed at the session route.
    let uuid = uuid::Uuid::new_v4().to_string();
    let headers = epistula_headers(
        &pair,
        BODY.as_bytes(),
        DEV_HOTKEY,
        &uuid,
        now_ns() / 1_000_000,
    );
    let res = send_btauth(
        &h.http,
        &h.gw.url(),
        "/v1/auth/session",
        BODY,
        headers.clone(),
    )
    .await;
    let body = expect_problem(res, 401, "auth_malformed").await;
    assert!(
        body["detail"].as_str().unwrap().contains("btauth/1 only"),
        "{body}"
    );
    // The same request is still good where it was meant to go.
    let res = send_btauth(&h.http, &h.gw.url(), "/v1/reason", BODY, headers).await;
    assert_eq!(res.status(), 200);
}

/// Issue #11 item 11: the cheap header checks run before the body is read. Each request
/// announces a large body and sends only its first bytes; a gateway that read the body first
/// would wait for the rest instead of answering.
#[tokio::test]
async fn signed_requests_with_bad_headers_are_refused_without_reading_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start(SimConfig::default()).await;
    let key = alice(Crypto::Sr25519);
    let KeyPair::Sr25519(pair) = alice(Crypto::Sr25519) else {
        unreachable!()
    };
    let s = 1_000_000_000u128;
    let uuid = uuid::Uuid::new_v4().to_string();
    let cases = [
        (
            signed(&key, "/v1/reason", BODY, ALICE, now_ns()),
            "wrong_receiver",
        ),
        (
            signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns() - 60 * s),
            "stale_request",
        ),
        (
            epistula_headers(&pair, BODY.as_bytes(), ALICE, &uuid, now_ns() / 1_000_000),
            "wrong_receiver",
        ),
        (
            {
                let mut headers = signed(&key, "/v1/reason", BODY, DEV_HOTKEY, now_ns());
                for (name, value) in headers.iter_mut() {
                    if *name == "X-Bittensor-Hotkey" {
                        value.push('x');
                    }
                }
                headers
            },
            "auth_malformed",
        ),
    ];
    let addr = h.gw.url().trim_start_matches("http://").to_string();
    for (headers, code) in cases {
        let mut head = format!(
            "POST /v1/reason HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n{\"input\":\"");
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&answer).contains(code) {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "{code}: no answer without the body: {text:?}");
        assert!(text.starts_with("HTTP/1.1 401"), "{code}: {text}");
        assert!(text.contains(code), "{code}: {text}");
    }
}

/// Issue #11 item 9: a revocation sent with an `exp` in the past is not forgotten at the next
/// poll while the token still works.
#[tokio::test]
async fn a_revocation_with_a_past_exp_outlives_the_next_poll() {
    let h = redis_harness(&TestRedis::single()).await;
    let second = h.replica().await;
    let (tok, claims) = keys().issue(
        TEST_ACCOUNT,
        &[Scope::Reason],
        Duration::from_secs(600),
        affine_gateway::auth::jwt::now_secs(),
    );
    let call = |base: String| {
        let http = h.http.clone();
        let tok = tok.clone();
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
    assert_eq!(call(h.gw.url()).await.status(), 200);
    // The operator gets `exp` wrong (an hour ago); the token really expires in 10 minutes.
    let wrong_exp = affine_gateway::auth::jwt::now_secs() - 3600;
    let res = h
        .http
        .post(h.url("/admin/v1/tokens/revoke"))
        .bearer_auth(admin_token())
        .header("content-type", "application/json")
        .body(format!(r#"{{"jti":"{}","exp":{wrong_exp}}}"#, claims.jti))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    expect_problem(call(h.gw.url()).await, 401, "token_revoked").await;
    // What the next poll does on this replica: reload the set from the store.
    let st = &h.gw.state;
    st.auth
        .revocations
        .refresh(&st.store, affine_gateway::auth::jwt::now_secs())
        .await
        .unwrap();
    expect_problem(call(h.gw.url()).await, 401, "token_revoked").await;
    // And the other replica learns it from its own poll.
    eventually(
        Duration::from_secs(2),
        "the revocation on the replica",
        || {
            let res = call(second.url());
            async move { (res.await.status() == 401).then_some(()) }
        },
    )
    .await;
    expect_problem(call(second.url()).await, 401, "token_revoked").await;
}

// issue #16: rotating the JWT secret without downtime. Replicas that accept the previous
// secret beside the new one take tokens of both (caller and admin tokens alike); once the
// previous secret is removed, only tokens of the new one.
#[tokio::test]
async fn a_jwt_rotation_accepts_old_and_new_tokens_then_only_new_ones() {
    use affine_gateway::auth::jwt::{JwtKeys, now_secs};
    use affine_gateway::config::Secret;
    const NEW_SECRET: &str = "rotated-secret-rotated-secret-0123456789";
    // The harness's accounts and tokens are signed with TEST_JWT_SECRET: the old secret.
    let h = Harness::start_with(SimConfig::default(), |c| {
        TestRedis::single().configure(c);
        c.jwt_secret = Some(Secret::new(NEW_SECRET.to_string()));
        c.jwt_secret_previous = Some(Secret::new(TEST_JWT_SECRET.to_string()));
    })
    .await;
    let new_keys = JwtKeys::new(NEW_SECRET.as_bytes(), Duration::ZERO);
    let new_token = |scopes: &[Scope], sub: &str| {
        new_keys
            .issue(sub, scopes, Duration::from_secs(600), now_secs())
            .0
    };
    let (old_reason, old_admin) = (h.token.clone(), admin_token());
    let (new_reason, new_admin) = (
        new_token(&[Scope::Reason], TEST_ACCOUNT),
        new_token(&[Scope::Admin], "ops"),
    );
    let reason = |base: String, token: String| {
        h.http
            .post(format!("{base}/v1/reason"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
    };
    let admin = |base: String, token: String| {
        h.http
            .get(format!("{base}/admin/v1/accounts/{TEST_ACCOUNT}"))
            .bearer_auth(token)
            .send()
    };

    // During the rotation: both secrets, on both kinds of token.
    for token in [&old_reason, &new_reason] {
        let res = reason(h.gw.url(), token.clone()).await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    for token in [&old_admin, &new_admin] {
        let res = admin(h.gw.url(), token.clone()).await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    // Tokens the gateway issues itself (sessions) are signed with the new secret.
    let key = alice(Crypto::Sr25519);
    let headers = signed(&key, "/v1/auth/session", "", DEV_HOTKEY, now_ns());
    let res = send_btauth(&h.http, &h.gw.url(), "/v1/auth/session", "", headers).await;
    assert_eq!(res.status(), 200);
    let session: serde_json::Value = res.json().await.unwrap();
    let session = session["token"].as_str().unwrap().to_string();
    assert!(
        new_keys.verify(&session).is_ok(),
        "session signed with the new secret"
    );

    // After it: a replica without the previous secret, on the same store.
    let mut cfg = h.cfg.clone();
    cfg.jwt_secret_previous = None;
    cfg.metering.journal_path = format!("{}-after", cfg.metering.journal_path);
    let after = affine_gateway::server::Running::start(cfg).await.unwrap();
    let res = reason(after.url(), old_reason.clone()).await.unwrap();
    expect_problem(res, 401, "token_invalid").await;
    let res = admin(after.url(), old_admin.clone()).await.unwrap();
    expect_problem(res, 401, "token_invalid").await;
    let res = reason(after.url(), new_reason.clone()).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = admin(after.url(), new_admin.clone()).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = reason(after.url(), session).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}
