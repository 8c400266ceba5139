//! Coldkey links over HTTP (issue #14 item 3): `POST /v1/account/coldkeys`, the admin list and
//! unlink, and `GET /v1/account`'s `coldkeys`, on the memory and the Redis backend. Signatures
//! come from sp-core dev keys and from `tests/vectors/coldkey_link.json`, made by the
//! bittensor SDK for the harness's gateway hotkey (the dev hotkey) and account `tester`.

mod common;

use affine_gateway::auth::jwt::Scope;
use affine_gateway::config::DEV_HOTKEY;
use chutes_sim::SimConfig;
use common::{Harness, TEST_ACCOUNT, admin_token, expect_problem, put_account, token, use_redis};
use serde_json::{Value, json};
use sp_core::{Pair, sr25519};

/// A second enterprise account, for links that must not cross accounts.
const OTHER: &str = "other-acct";

fn link_message(account: &str, nonce: &str) -> String {
    format!("affine-gateway:link-coldkey:{account}:{DEV_HOTKEY}:{nonce}")
}

/// The SS58 address of dev key `uri` and its link request body for `account`.
fn signed_body(uri: &str, account: &str, nonce: &str) -> (String, Value) {
    let pair = sr25519::Pair::from_string(uri, None).expect("dev uri");
    let coldkey = affine_gateway::auth::ss58::encode42(&pair.public().0);
    let sig = pair.sign(link_message(account, nonce).as_bytes());
    let body = json!({"coldkey": coldkey, "nonce": nonce, "signature": format!("0x{}", hex::encode(sig.0))});
    (coldkey, body)
}

fn vector(name: &str) -> Value {
    let v: Value = serde_json::from_str(include_str!("vectors/coldkey_link.json")).unwrap();
    assert_eq!(v["gateway_hotkey"], DEV_HOTKEY);
    let c = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("vector {name}"))
        .clone();
    assert_eq!(c["account"], TEST_ACCOUNT);
    json!({"coldkey": c["coldkey"], "nonce": c["nonce"], "signature": c["signature"]})
}

async fn post_link(h: &Harness, bearer: &str, body: &Value) -> reqwest::Response {
    h.http
        .post(h.url("/v1/account/coldkeys"))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

async fn admin_list(h: &Harness, account: &str) -> Vec<Value> {
    let res = h
        .http
        .get(h.url(&format!("/admin/v1/accounts/{account}/coldkeys")))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["coldkeys"].as_array().expect("coldkeys list").clone()
}

async fn admin_unlink(h: &Harness, account: &str, coldkey: &str) -> reqwest::Response {
    h.http
        .delete(h.url(&format!("/admin/v1/accounts/{account}/coldkeys/{coldkey}")))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap()
}

async fn other_account(h: &Harness) -> String {
    let res = put_account(&h.http, &h.gw.url(), OTHER, r#"{"billing":"prepaid"}"#).await;
    assert!(res.status().is_success(), "{}", res.status());
    token(OTHER, &[Scope::Reason], 600)
}

async fn link_is_created_and_shown_on_the_account(h: &Harness) {
    let (coldkey, body) = signed_body("//Charlie", TEST_ACCOUNT, "first-1");
    let res = post_link(h, &h.token, &body).await;
    assert_eq!(res.status(), 201);
    let link: Value = res.json().await.unwrap();
    assert_eq!(link["coldkey"], coldkey.as_str());
    assert_eq!(link["account"], TEST_ACCOUNT);
    let at = link["linked_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{at}"
    );
    let view: Value = h
        .http
        .get(h.url("/v1/account"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["coldkeys"], json!([link]));
}

async fn sdk_vectors_are_accepted_and_other_account_refused(h: &Harness) {
    for name in ["alice_raw_ok", "mnemonic_wrapped_ok"] {
        let body = vector(name);
        let res = post_link(h, &h.token, &body).await;
        assert_eq!(res.status(), 201, "{name}");
        let link: Value = res.json().await.unwrap();
        assert_eq!(link["coldkey"], body["coldkey"], "{name}");
    }
    for name in [
        "other_account_refused",
        "other_gateway_refused",
        "tampered_nonce_refused",
    ] {
        let problem = expect_problem(
            post_link(h, &h.token, &vector(name)).await,
            400,
            "invalid_request",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("does not verify"), "{name}: {detail}");
        assert!(!detail.contains("0x"), "no signature echoed: {detail}");
    }
    assert_eq!(admin_list(h, TEST_ACCOUNT).await.len(), 2);
}

async fn a_coldkey_links_to_one_account_only(h: &Harness) {
    let other = other_account(h).await;
    let (coldkey, body) = signed_body("//Dave", TEST_ACCOUNT, "d-1");
    assert_eq!(post_link(h, &h.token, &body).await.status(), 201);
    let (_, elsewhere) = signed_body("//Dave", OTHER, "d-2");
    let problem = expect_problem(
        post_link(h, &other, &elsewhere).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another account"),
        "{problem}"
    );
    assert!(admin_list(h, OTHER).await.is_empty());
    let mine = admin_list(h, TEST_ACCOUNT).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["coldkey"], coldkey.as_str());
}

async fn relinking_the_same_account_is_idempotent(h: &Harness) {
    let (_, body) = signed_body("//Eve", TEST_ACCOUNT, "e-1");
    let res = post_link(h, &h.token, &body).await;
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    let (_, again) = signed_body("//Eve", TEST_ACCOUNT, "e-2");
    let res = post_link(h, &h.token, &again).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), first);
    assert_eq!(admin_list(h, TEST_ACCOUNT).await, vec![first]);
}

async fn a_nonce_never_links_twice(h: &Harness) {
    let (coldkey, body) = signed_body("//Ferdie", TEST_ACCOUNT, "f-1");
    assert_eq!(post_link(h, &h.token, &body).await.status(), 201);
    // Unlinked by an operator, the captured request cannot link it again.
    assert_eq!(admin_unlink(h, TEST_ACCOUNT, &coldkey).await.status(), 204);
    let problem = expect_problem(post_link(h, &h.token, &body).await, 400, "invalid_request").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("nonce"),
        "{problem}"
    );
    assert!(admin_list(h, TEST_ACCOUNT).await.is_empty());
    // A fresh signature does.
    let (_, fresh) = signed_body("//Ferdie", TEST_ACCOUNT, "f-2");
    assert_eq!(post_link(h, &h.token, &fresh).await.status(), 201);
}

async fn admin_lists_and_unlinks(h: &Harness) {
    let (a, body_a) = signed_body("//One", TEST_ACCOUNT, "n");
    let (b, body_b) = signed_body("//Two", TEST_ACCOUNT, "n");
    assert_eq!(post_link(h, &h.token, &body_a).await.status(), 201);
    assert_eq!(post_link(h, &h.token, &body_b).await.status(), 201);
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    let listed: Vec<String> = admin_list(h, TEST_ACCOUNT)
        .await
        .iter()
        .map(|l| l["coldkey"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, want);
    // Not linked to that account: 404, and nothing changes.
    expect_problem(admin_unlink(h, OTHER, &a).await, 404, "not_found").await;
    assert_eq!(admin_list(h, TEST_ACCOUNT).await.len(), 2);
    assert_eq!(admin_unlink(h, TEST_ACCOUNT, &a).await.status(), 204);
    expect_problem(admin_unlink(h, TEST_ACCOUNT, &a).await, 404, "not_found").await;
    let left = admin_list(h, TEST_ACCOUNT).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["coldkey"], b.as_str());
    expect_problem(
        admin_unlink(h, TEST_ACCOUNT, "nope").await,
        400,
        "invalid_request",
    )
    .await;
    // The admin routes want the admin scope.
    let res = h
        .http
        .get(h.url(&format!("/admin/v1/accounts/{TEST_ACCOUNT}/coldkeys")))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

async fn malformed_requests_are_refused(h: &Harness) {
    let (_, good) = signed_body("//Charlie", TEST_ACCOUNT, "m-1");
    let mut extra = good.clone();
    extra["account"] = json!(OTHER);
    expect_problem(post_link(h, &h.token, &extra).await, 400, "unknown_field").await;
    for (field, value) in [
        (
            "coldkey",
            json!("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"),
        ),
        ("nonce", json!("has space")),
        ("nonce", json!("x".repeat(65))),
        (
            "signature",
            json!(good["signature"].as_str().unwrap()[2..].to_string()),
        ),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let problem =
            expect_problem(post_link(h, &h.token, &bad).await, 400, "invalid_request").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{field}: {problem}"
        );
    }
    // Unauthenticated: 401, nothing linked.
    let res = h
        .http
        .post(h.url("/v1/account/coldkeys"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(admin_list(h, TEST_ACCOUNT).await.is_empty());
    // The malformed attempts did not spend the nonce.
    assert_eq!(post_link(h, &h.token, &good).await.status(), 201);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::Harness::start(super::SimConfig::default()).await;
                    super::$name(&h).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::Harness::start_with(super::SimConfig::default(), super::use_redis).await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

on_both_backends!(
    link_is_created_and_shown_on_the_account,
    sdk_vectors_are_accepted_and_other_account_refused,
    a_coldkey_links_to_one_account_only,
    relinking_the_same_account_is_idempotent,
    a_nonce_never_links_twice,
    admin_lists_and_unlinks,
    malformed_requests_are_refused,
);
