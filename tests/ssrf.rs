//! Server-side request forgery through the provider: the gateway calls only the configured
//! (or validated, discovered) upstream URL and never follows a redirect elsewhere.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use affine_gateway::config::Secret;
use affine_gateway::server::Running;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::any;
use common::*;

async fn serve(app: Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_provider_redirect_is_not_followed() {
    affine_gateway::upstream::client::install_crypto_provider();
    // The "internal" host the redirect points at counts what reaches it, and the key it saw.
    let hits = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (h2, k2) = (hits.clone(), keys.clone());
    let internal = serve(Router::new().fallback(any(move |headers: HeaderMap| {
        h2.fetch_add(1, Ordering::SeqCst);
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            k2.lock()
                .unwrap()
                .push(v.to_str().unwrap_or("").to_string());
        }
        async { StatusCode::OK }
    })))
    .await;
    let target = format!("http://{internal}/v1/chat/completions");
    let redirector = serve(Router::new().fallback(any(move || {
        let target = target.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
    })))
    .await;

    let mut cfg = affine_gateway::config::Config::default();
    cfg.upstream.url = format!("http://{redirector}/v1");
    cfg.upstream.api_key = Some(Secret::new(TEST_KEY.to_string()));
    cfg.upstream.retry.max_retries = 0;
    cfg.winner.model = Some("org/model".into());
    cfg.winner.affine_api_url = format!("http://{redirector}/api/v1");
    cfg.jwt_secret = Some(Secret::new(TEST_JWT_SECRET.to_string()));
    cfg.metering.journal_path = std::env::temp_dir()
        .join(format!("agw-ssrf-{}", uuid::Uuid::new_v4().simple()))
        .display()
        .to_string();
    let gw = Running::start(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let res = put_account(
        &http,
        &gw.url(),
        TEST_ACCOUNT,
        r#"{"billing":"postpaid","credit_limit_rao":1000000}"#,
    )
    .await;
    assert!(res.status().is_success());
    let token = token(
        TEST_ACCOUNT,
        &[affine_gateway::auth::jwt::Scope::Reason],
        60,
    );
    for stream in [false, true] {
        let res = http
            .post(format!("{}/v1/reason", gw.url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({"input": "hi", "stream": stream}))
            .send()
            .await
            .unwrap();
        expect_problem(res, 502, "upstream_error").await;
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect target was called"
    );
    assert!(keys.lock().unwrap().is_empty());
}
