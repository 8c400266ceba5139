//! The limiter's store operations behave the same on Redis and in memory. The memory half runs
//! on paused time: waiting for a lease to expire costs no real time there.

use std::time::Duration;

mod common;

use affine_gateway::store::{Limit, ScopeSpec, Store};
use common::quota_ops::QuotaOps;
use tokio::time::Instant;

async fn redis() -> Store {
    common::shared_redis_store().await
}

fn memory() -> Store {
    Store::memory("agw-test:")
}

fn scope(tag: &str, rpm: u64, tpm: u64, conc: u64) -> ScopeSpec {
    ScopeSpec {
        tag: format!("{{a:{tag}}}"),
        rpm,
        tpm,
        tpd: tpm * 100,
        max_concurrent: conc,
    }
}

const LEASE: Duration = Duration::from_secs(30);

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(start_paused = true)]
            async fn memory() {
                super::$name(&super::memory()).await;
            }
            #[tokio::test]
            async fn redis() {
                let s = super::redis().await;
                super::$name(&s).await;
                s.delete_all_prefixed().await.unwrap();
            }
            #[tokio::test]
            async fn cluster() {
                let cluster = super::common::TestRedis::cluster();
                let s = cluster.store().await;
                super::$name(&s).await;
                s.delete_all_prefixed().await.unwrap();
            }
        }
    };
}

async fn requests_per_minute_are_exact(s: &Store) {
    let sc = [scope("rpm", 10, 1_000_000, 100)];
    for i in 0..10 {
        let d = s
            .quota_admit(&sc, &format!("r{i}"), 1, LEASE)
            .await
            .unwrap();
        assert!(d.refused.is_none(), "request {i}");
        assert_eq!(d.scopes[0].rpm.remaining, 9 - i);
    }
    let d = s.quota_admit(&sc, "r10", 1, LEASE).await.unwrap();
    let (i, limit, wait) = d.refused.unwrap();
    assert_eq!((i, limit), (0, Limit::RequestsPerMinute));
    // One request per 6 s comes back; nothing comes back before.
    assert!(
        wait > Duration::from_millis(5_000) && wait <= Duration::from_millis(6_000),
        "{wait:?}"
    );
    assert_eq!(
        d.scopes[0].in_flight, 10,
        "the refused request took no lease"
    );
}
both!(requests_per_minute_are_exact);

async fn admission_is_all_or_nothing_across_scopes(s: &Store) {
    let subnet = ScopeSpec {
        tag: "{s:7}".into(),
        ..scope("x", 1, 1_000, 10)
    };
    let acct = scope("aon", 10, 1_000, 10);
    let both = [subnet.clone(), acct.clone()];
    assert!(
        s.quota_admit(&both, "a", 100, LEASE)
            .await
            .unwrap()
            .refused
            .is_none()
    );
    let d = s.quota_admit(&both, "b", 100, LEASE).await.unwrap();
    assert_eq!(
        d.refused.map(|r| (r.0, r.1)),
        Some((0, Limit::RequestsPerMinute))
    );
    // The account scope was not charged for the refused request.
    let v = s.quota_peek(&[acct]).await.unwrap();
    assert_eq!(v[0].rpm.remaining, 9);
    assert_eq!(v[0].tpm.remaining, 900);
    assert_eq!(v[0].in_flight, 1);
}
both!(admission_is_all_or_nothing_across_scopes);

async fn settlement_reconciles_tokens_once(s: &Store) {
    let sc = [scope("tok", 100, 10_000, 10)];
    assert!(
        s.quota_admit(&sc, "t1", 4_000, LEASE)
            .await
            .unwrap()
            .refused
            .is_none()
    );
    let left = s.quota_peek(&sc).await.unwrap()[0].tpm.remaining;
    assert!((6_000..6_050).contains(&left), "{left}");
    // Only 300 were used: 3 700 come back, once.
    assert!(s.quota_settle(&sc, "t1", 3_700, false).await.unwrap());
    assert!(!s.quota_settle(&sc, "t1", 3_700, false).await.unwrap());
    let v = s.quota_peek(&sc).await.unwrap()[0];
    assert!((9_700..9_750).contains(&v.tpm.remaining), "{v:?}");
    assert_eq!(v.in_flight, 0);
    // A request larger than the whole bucket waits a full period.
    let d = s.quota_admit(&sc, "big", 20_000, LEASE).await.unwrap();
    assert_eq!(
        d.refused.map(|r| (r.1, r.2)),
        Some((Limit::TokensPerMinute, Duration::from_secs(60)))
    );
}
both!(settlement_reconciles_tokens_once);

async fn concurrency_leases_are_released_and_expire(s: &Store) {
    let sc = [scope("conc", 1_000, 1_000_000, 2)];
    assert!(
        s.quota_admit(&sc, "c1", 1, LEASE)
            .await
            .unwrap()
            .refused
            .is_none()
    );
    assert!(
        s.quota_admit(&sc, "c2", 1, Duration::from_millis(150))
            .await
            .unwrap()
            .refused
            .is_none()
    );
    let d = s.quota_admit(&sc, "c3", 1, LEASE).await.unwrap();
    assert_eq!(d.refused.map(|r| r.1), Some(Limit::Concurrency));
    assert!(s.quota_settle(&sc, "c1", 0, false).await.unwrap());
    assert!(
        s.quota_admit(&sc, "c3", 1, LEASE)
            .await
            .unwrap()
            .refused
            .is_none()
    );
    // c2's lease was never renewed: it expires and its slot comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = s.quota_admit(&sc, "c4", 1, LEASE).await.unwrap();
        if d.refused.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired lease never freed its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Renewing keeps a lease alive.
    s.quota_renew(&sc, "c3", LEASE).await.unwrap();
    assert_eq!(s.quota_peek(&sc).await.unwrap()[0].in_flight, 2);
}
both!(concurrency_leases_are_released_and_expire);

async fn concurrent_admissions_never_overshoot(s: &Store) {
    let sc = vec![scope("race", 50, 1_000_000, 1_000)];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (s, sc) = (s.clone(), sc.clone());
        tasks.push(tokio::spawn(async move {
            s.quota_admit(&sc, &format!("q{i}"), 1, LEASE)
                .await
                .unwrap()
                .refused
                .is_none()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 50);
}
both!(concurrent_admissions_never_overshoot);
