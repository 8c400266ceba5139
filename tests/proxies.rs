//! The client address behind a load balancer: forwarded headers count only from trusted
//! proxies, read from the right.

mod common;

use chutes_sim::SimConfig;
use common::*;

async fn models(h: &Harness, http: &reqwest::Client, forwarded_for: &str) -> u16 {
    http.get(h.url("/v1/models"))
        .bearer_auth(&h.token)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .build()
        .unwrap()
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_limited_apart_and_spoofers_are_not() {
    let h = Harness::start_with(SimConfig::default(), |c| {
        c.server.trusted_proxies = vec!["127.0.0.10/32".into()];
        c.quota.ip_per_second = 1;
        c.quota.ip_burst = 2;
    })
    .await;
    // The load balancer at 127.0.0.10 forwards two clients; each has its own budget, and
    // what a client put to the left of the chain is ignored.
    let lb = from(10);
    assert_eq!(models(&h, &lb, "198.51.100.1").await, 200);
    assert_eq!(models(&h, &lb, "6.6.6.6, 198.51.100.1").await, 200);
    assert_eq!(models(&h, &lb, "7.7.7.7, 198.51.100.1").await, 429);
    assert_eq!(models(&h, &lb, "198.51.100.2").await, 200, "another client");

    // An untrusted peer cannot mint budgets by rotating the header.
    let spoofer = from(11);
    let statuses = [
        models(&h, &spoofer, "203.0.113.1").await,
        models(&h, &spoofer, "203.0.113.2").await,
        models(&h, &spoofer, "203.0.113.3").await,
    ];
    assert_eq!(statuses, [200, 200, 429]);
}
