//! When Redis goes away, quota admission follows `quota.on_store_failure` and never hangs.
//! Uses a throwaway `redis-server` on a free port (the shared one is never stopped).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use affine_gateway::config::{Secret, StoreFailure};
use chutes_sim::SimConfig;
use common::*;

struct Throwaway {
    child: Child,
    port: u16,
}

impl Throwaway {
    fn start() -> Throwaway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "throwaway redis did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Throwaway { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn call(h: &Harness) -> reqwest::Response {
    h.reason(r#"{"input":"x","max_tokens":16}"#).await
}

async fn gateway_losing_redis(policy: StoreFailure) -> (Harness, Throwaway) {
    let redis = Throwaway::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.redis.url = Some(Secret::new(url));
        c.redis.command_timeout_ms = 200;
        c.quota.on_store_failure = policy;
    })
    .await;
    assert_eq!(call(&h).await.status(), 200, "works while Redis is up");
    (h, redis)
}

#[tokio::test]
async fn fail_open_admits_and_counts() {
    let (h, mut redis) = gateway_losing_redis(StoreFailure::FailOpen).await;
    redis.stop();
    let started = Instant::now();
    let res = call(&h).await;
    assert_eq!(res.status(), 200, "admitted without the quota store");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    let m = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: f64 = m
        .lines()
        .find(|l| l.starts_with("agw_quota_store_errors_total "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(errors >= 1.0, "{m}");
    // The Redis-down alert's input: the failed admission is a Redis error of its operation.
    let redis_errors: f64 = m
        .lines()
        .find(|l| l.starts_with(r#"agw_redis_errors_total{op="quota_admit"} "#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(redis_errors >= 1.0, "{m}");
    assert_eq!(
        h.http.get(h.url("/readyz")).send().await.unwrap().status(),
        503
    );
}

#[tokio::test]
async fn fail_closed_refuses_quickly() {
    let (h, mut redis) = gateway_losing_redis(StoreFailure::FailClosed).await;
    redis.stop();
    let started = Instant::now();
    let res = call(&h).await;
    assert!(res.headers().contains_key("retry-after"));
    expect_problem(res, 503, "store_unavailable").await;
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
}

#[tokio::test]
async fn reads_and_writes_that_need_redis_say_store_unavailable() {
    let (h, mut redis) = gateway_losing_redis(StoreFailure::FailOpen).await;
    redis.stop();
    // The caller is still authenticated from the account cache; its balance and quota are not.
    let res = h
        .http
        .get(h.url("/v1/account"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    expect_problem(res, 503, "store_unavailable").await;
    let res = h
        .http
        .post(h.url(&format!("/admin/v1/accounts/{TEST_ACCOUNT}/credits")))
        .bearer_auth(admin_token())
        .json(&serde_json::json!({"amount_rao": 5, "reference": "tx-down"}))
        .send()
        .await
        .unwrap();
    expect_problem(res, 503, "store_unavailable").await;
}
