//! A service that goes away mid-run (connections closed, or a network that
//! goes silent): operations fail with a clear unavailable error (never a
//! false success), in bounded time, and work again once the service is
//! back. The services sit behind a TCP proxy that the tests cut, freeze
//! and restore.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_core::GrainId;
use actor_persistence::{PostgresStorage, RedisStorage, StateKey, StorageProvider};
use common::{Proxy, TEST_BOUND, missing, unique};

async fn play_outage(p: Arc<dyn StorageProvider>, proxy: Arc<Proxy>, silent: bool) {
    let k = StateKey::new(&GrainId::new("outage", unique("g").as_str()), "state");
    let e1 = p.write(&k, b"before", None).await.unwrap();

    if silent {
        proxy.freeze();
    } else {
        proxy.cut();
    }
    let started = Instant::now();
    let e = p.write(&k, b"during", Some(&e1)).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert!(e.to_string().contains(&proxy.addr.to_string()), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(p.read(&k).await.unwrap_err().is_unavailable());

    proxy.cut();
    proxy.restore().await;
    // The client reconnects by itself; allow it a few tries.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        match p.read(&k).await {
            Ok(r) => break r.expect("the record is still there"),
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_unavailable(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no recovery after the outage: {e}"),
        }
    };
    assert_eq!(stored.data, b"before", "the failed write was not applied");
    assert_eq!(stored.etag, e1);
    p.write(&k, b"after", Some(&e1)).await.unwrap();
}

async fn postgres_outage(silent: bool) {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = format!("postgres://postgres@{}/test", proxy.addr);
    let prefix = unique("t");
    let p = match PostgresStorage::builder(&url)
        .table_prefix(&prefix)
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(2))
        .connect()
        .await
    {
        Ok(p) => p,
        Err(e) => return missing("PostgreSQL", &e),
    };
    tokio::time::timeout(TEST_BOUND, play_outage(Arc::new(p.clone()), proxy, silent))
        .await
        .expect("bounded");
    for t in ["state", "events", "snapshots"] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}_{t}"))
            .execute(p.pool())
            .await;
    }
}

async fn redis_outage(silent: bool) {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let url = format!("redis://{}", proxy.addr);
    let r = match RedisStorage::builder(&url)
        .key_prefix(format!("{}:", unique("test")))
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .connect()
        .await
    {
        Ok(r) => r,
        Err(e) => return missing("Redis", &e),
    };
    tokio::time::timeout(TEST_BOUND, play_outage(Arc::new(r.clone()), proxy, silent))
        .await
        .expect("bounded");
    let mut conn = r.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", r.key_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_closed_connections_fail_writes_then_recover() {
    postgres_outage(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_silent_network_fails_writes_in_bounded_time() {
    postgres_outage(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_closed_connections_fail_writes_then_recover() {
    redis_outage(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_silent_network_fails_writes_in_bounded_time() {
    redis_outage(true).await
}
