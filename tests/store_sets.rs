//! Durable claims and sets (`Store::set_nx`, `del_if_eq`, `sadd`, `srem`, `smembers`): one
//! behaviour suite, run against the in-memory backend and the shared Redis, like
//! `tests/store.rs`. Each test works under its own random prefix and removes its keys at the
//! end, checking through the store that nothing of that prefix is left.

mod common;

use affine_gateway::store::{Store, StoreError};

fn memory_store() -> Store {
    Store::memory(&format!("agw-test:{}:", uuid::Uuid::new_v4().simple()))
}

async fn finish(s: &Store) {
    s.delete_all_prefixed().await.expect("cleanup");
    assert_eq!(s.delete_all_prefixed().await.expect("second cleanup"), 0);
}

async fn set_nx_claims_once_without_expiry(s: &Store) {
    assert!(s.set_nx("{c:k}:link", b"a").await.unwrap());
    assert!(!s.set_nx("{c:k}:link", b"b").await.unwrap());
    assert_eq!(
        s.get("{c:k}:link").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(s.pttl("{c:k}:link").await.unwrap(), None);
    // Of many concurrent claims, exactly one wins, and its value is the one stored.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (
                i,
                s.set_nx("{c:race}:link", i.to_string().as_bytes())
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, won) = t.await.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        s.get("{c:race}:link").await.unwrap(),
        Some(winners[0].to_string().into_bytes())
    );
}

async fn del_if_eq_deletes_only_the_expected_value(s: &Store) {
    assert!(!s.del_if_eq("{c:k}:link", b"a").await.unwrap());
    s.set("{c:k}:link", b"a", None).await.unwrap();
    assert!(!s.del_if_eq("{c:k}:link", b"b").await.unwrap());
    assert!(!s.del_if_eq("{c:k}:link", b"").await.unwrap());
    assert_eq!(
        s.get("{c:k}:link").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert!(s.del_if_eq("{c:k}:link", b"a").await.unwrap());
    assert_eq!(s.get("{c:k}:link").await.unwrap(), None);
    assert!(!s.del_if_eq("{c:k}:link", b"a").await.unwrap());
}

async fn sets_add_remove_and_list(s: &Store) {
    let k = "{a:acme}:coldkeys";
    assert!(s.smembers(k).await.unwrap().is_empty());
    assert!(!s.srem(k, "x").await.unwrap());
    assert!(s.sadd(k, "b").await.unwrap());
    assert!(s.sadd(k, "a").await.unwrap());
    assert!(!s.sadd(k, "a").await.unwrap());
    assert!(s.sadd(k, "with space:and\"quote").await.unwrap());
    assert_eq!(
        s.smembers(k).await.unwrap(),
        vec!["a", "b", "with space:and\"quote"]
    );
    assert_eq!(s.pttl(k).await.unwrap(), None);
    assert!(s.srem(k, "a").await.unwrap());
    assert!(!s.srem(k, "a").await.unwrap());
    assert_eq!(
        s.smembers(k).await.unwrap(),
        vec!["b", "with space:and\"quote"]
    );
    // The last member takes the key with it, as in Redis.
    assert!(s.srem(k, "b").await.unwrap());
    assert!(s.srem(k, "with space:and\"quote").await.unwrap());
    assert!(!s.del(k).await.unwrap());
}

async fn sadd_is_atomic_under_concurrency(s: &Store) {
    // 50 tasks add the same nonce: exactly one is told it was new.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.sadd("{c:k}:nonces", "n1").await.unwrap()
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        fresh += usize::from(t.await.unwrap());
    }
    assert_eq!(fresh, 1);
    assert_eq!(s.smembers("{c:k}:nonces").await.unwrap(), vec!["n1"]);
}

async fn set_ops_on_a_plain_value_are_refused(s: &Store) {
    s.set("plain", b"v", None).await.unwrap();
    assert!(matches!(
        s.sadd("plain", "m").await,
        Err(StoreError::Protocol(_))
    ));
    assert!(matches!(
        s.smembers("plain").await,
        Err(StoreError::Protocol(_))
    ));
    assert_eq!(s.get("plain").await.unwrap().as_deref(), Some(&b"v"[..]));
}

async fn prefixes_isolate_sets(s: &Store) {
    let other = s.with_key_prefix(&format!("{}other:", s.key_prefix()));
    assert!(s.sadd("{a:x}:coldkeys", "m").await.unwrap());
    assert!(s.set_nx("{c:k}:link", b"a").await.unwrap());
    assert!(other.smembers("{a:x}:coldkeys").await.unwrap().is_empty());
    assert!(other.set_nx("{c:k}:link", b"b").await.unwrap());
    assert!(!other.del_if_eq("{c:k}:link", b"a").await.unwrap());
    assert_eq!(
        s.get("{c:k}:link").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
}

macro_rules! behaviour_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let s = super::memory_store();
                    super::$name(&s).await;
                    super::finish(&s).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::common::shared_redis_store().await;
                    super::$name(&s).await;
                    super::finish(&s).await;
                }
            )*
        }
        $crate::cluster_suite!($($name),*);
    };
}

behaviour_suite!(
    set_nx_claims_once_without_expiry,
    del_if_eq_deletes_only_the_expected_value,
    sets_add_remove_and_list,
    sadd_is_atomic_under_concurrency,
    set_ops_on_a_plain_value_are_refused,
    prefixes_isolate_sets,
);
