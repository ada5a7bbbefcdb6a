//! The storage provider contract, one generic suite run against every
//! provider: memory, SQLite, PostgreSQL and Redis.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_core::GrainId;
use actor_persistence::{
    ETag, Error, PostgresStorage, RedisStorage, SqliteStorage, StateKey, StorageProvider,
};
use common::{Fixture, TEST_BOUND, unique};

fn key(name: &str) -> StateKey {
    StateKey::new(&GrainId::new("contract", unique("g").as_str()), name)
}

fn conflict(e: &Error) -> (Option<ETag>, Option<ETag>) {
    match e {
        Error::Conflict {
            expected, actual, ..
        } => (expected.clone(), actual.clone()),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---- the suite: each case takes any provider ----

async fn round_trip(p: Arc<dyn StorageProvider>) {
    let k = key("state");
    assert_eq!(p.read(&k).await.unwrap(), None);
    let e1 = p.write(&k, b"{\"n\":1}", None).await.unwrap();
    let r = p.read(&k).await.unwrap().expect("written record");
    assert_eq!(r.data, b"{\"n\":1}");
    assert_eq!(r.etag, e1);
    let e2 = p.write(&k, b"{\"n\":2}", Some(&e1)).await.unwrap();
    assert_ne!(e1, e2, "every write gets a new ETag");
    let r = p.read(&k).await.unwrap().unwrap();
    assert_eq!((r.data.as_slice(), &r.etag), (&b"{\"n\":2}"[..], &e2));
    // Empty data is data, not "no record".
    let e3 = p.write(&k, b"", Some(&e2)).await.unwrap();
    let r = p.read(&k).await.unwrap().unwrap();
    assert_eq!((r.data.len(), r.etag), (0, e3));
}

async fn conflict_on_stale_etag(p: Arc<dyn StorageProvider>) {
    let k = key("state");
    let e1 = p.write(&k, b"1", None).await.unwrap();
    let e2 = p.write(&k, b"2", Some(&e1)).await.unwrap();

    let err = p.write(&k, b"stale", Some(&e1)).await.unwrap_err();
    assert_eq!(conflict(&err), (Some(e1.clone()), Some(e2.clone())));
    assert!(err.to_string().contains(e1.as_str()), "{err}");

    let err = p.write(&k, b"create", None).await.unwrap_err();
    assert_eq!(conflict(&err), (None, Some(e2.clone())));

    let missing = key("other");
    let err = p.write(&missing, b"x", Some(&e2)).await.unwrap_err();
    assert_eq!(conflict(&err), (Some(e2.clone()), None));
    assert_eq!(p.read(&missing).await.unwrap(), None);

    let r = p.read(&k).await.unwrap().unwrap();
    assert_eq!(
        (r.data.as_slice(), r.etag),
        (&b"2"[..], e2),
        "a refused write changes nothing"
    );
}

async fn clear(p: Arc<dyn StorageProvider>) {
    let k = key("state");
    p.clear(&k, None)
        .await
        .expect("clearing nothing is a no-op");
    let e1 = p.write(&k, b"1", None).await.unwrap();

    let err = p.clear(&k, None).await.unwrap_err();
    assert_eq!(conflict(&err), (None, Some(e1.clone())));
    let err = p.clear(&k, Some(&ETag::from("not-it"))).await.unwrap_err();
    assert_eq!(
        conflict(&err),
        (Some(ETag::from("not-it")), Some(e1.clone()))
    );
    assert!(
        p.read(&k).await.unwrap().is_some(),
        "a refused clear changes nothing"
    );

    p.clear(&k, Some(&e1)).await.unwrap();
    assert_eq!(p.read(&k).await.unwrap(), None);
    let err = p.clear(&k, Some(&e1)).await.unwrap_err();
    assert_eq!(conflict(&err), (Some(e1.clone()), None));

    // No ABA: the old ETag does not match a re-created record.
    let e2 = p.write(&k, b"again", None).await.unwrap();
    assert_ne!(e1, e2);
    assert!(
        p.write(&k, b"stale", Some(&e1))
            .await
            .unwrap_err()
            .is_conflict()
    );
}

async fn concurrent_writers(p: Arc<dyn StorageProvider>) {
    const WRITERS: usize = 20;
    let k = key("state");
    let e0 = p.write(&k, b"start", None).await.unwrap();

    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (p, k, e0) = (p.clone(), k.clone(), e0.clone());
            tokio::spawn(async move {
                let data = format!("writer {i}").into_bytes();
                p.write(&k, &data, Some(&e0)).await.map(|etag| (data, etag))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(w) => winners.push(w),
            Err(e) => assert!(e.is_conflict(), "a loser gets a conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of {WRITERS} writers wins");
    let (data, etag) = winners.pop().unwrap();
    let r = p.read(&k).await.unwrap().unwrap();
    assert_eq!(
        (r.data, r.etag),
        (data, etag),
        "the winner's write is stored"
    );

    // Concurrent creation: exactly one creates the record.
    let k = key("created");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (p, k) = (p.clone(), k.clone());
            tokio::spawn(async move { p.write(&k, format!("{i}").as_bytes(), None).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(created, 1);
}

async fn large_state(p: Arc<dyn StorageProvider>) {
    let k = key("big");
    // 1 MiB of every byte value (not valid UTF-8: providers store bytes).
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let e1 = p.write(&k, &big, None).await.unwrap();
    let r = p.read(&k).await.unwrap().unwrap();
    assert_eq!(r.data.len(), big.len());
    assert!(r.data == big, "1 MiB round-trips byte for byte");
    let mut bigger = big.clone();
    bigger.extend_from_slice(&big);
    let e2 = p.write(&k, &bigger, Some(&e1)).await.unwrap();
    assert_eq!(p.read(&k).await.unwrap().unwrap().data.len(), 2 * big.len());
    assert!(
        p.write(&k, &big, Some(&e1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    p.clear(&k, Some(&e2)).await.unwrap();
}

async fn unicode_keys(p: Arc<dyn StorageProvider>) {
    let run = unique("u");
    let ids = [
        GrainId::new("счётчик", format!("ключ 🔑 {run}").as_str()),
        GrainId::new("счётчик", format!("ключ/🔑 {run}").as_str()),
        GrainId::new("счётчик/ключ", format!("🔑 {run}").as_str()),
        GrainId::new("カウンター", (7, format!("拡張 {run}").as_str())),
    ];
    let names = ["état/名前", "état", "名前%2F", ""];
    let mut written = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            let k = StateKey::new(id, name);
            let data = format!("{{\"v\":\"{i}-{j} ✓\"}}");
            p.write(&k, data.as_bytes(), None).await.unwrap();
            written.push((k, data));
        }
    }
    // Every key names its own record: none overwrote another.
    for (k, data) in &written {
        let r = p
            .read(k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{k} lost"));
        assert_eq!(String::from_utf8(r.data).unwrap(), *data, "{k}");
    }
}

async fn states_are_independent(p: Arc<dyn StorageProvider>) {
    let id = GrainId::new("contract", unique("g").as_str());
    let (a, b) = (StateKey::new(&id, "a"), StateKey::new(&id, "b"));
    let other = StateKey::new(&GrainId::new("contract-other", id.key.clone()), "a");
    let ea = p.write(&a, b"a", None).await.unwrap();
    p.write(&b, b"b", None).await.unwrap();
    p.write(&other, b"o", None).await.unwrap();
    p.clear(&a, Some(&ea)).await.unwrap();
    assert_eq!(p.read(&a).await.unwrap(), None);
    assert_eq!(p.read(&b).await.unwrap().unwrap().data, b"b");
    assert_eq!(p.read(&other).await.unwrap().unwrap().data, b"o");
}

// ---- instantiation per provider ----

macro_rules! contract {
    ($provider:ident, $fixture:expr) => {
        mod $provider {
            use super::*;

            async fn run<F: std::future::Future<Output = ()>>(
                case: impl FnOnce(Arc<dyn StorageProvider>) -> F,
            ) {
                let Some(fixture) = $fixture else { return };
                tokio::time::timeout(TEST_BOUND, case(fixture.storage.clone()))
                    .await
                    .expect("the case finished in time");
                fixture.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn round_trip() {
                run(super::round_trip).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn conflict_on_stale_etag() {
                run(super::conflict_on_stale_etag).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn clear() {
                run(super::clear).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers() {
                run(super::concurrent_writers).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_state() {
                run(super::large_state).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unicode_keys() {
                run(super::unicode_keys).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn states_are_independent() {
                run(super::states_are_independent).await
            }
        }
    };
}

contract!(memory, Some(Fixture::memory()));
contract!(sqlite, Some(Fixture::sqlite().await));
contract!(postgres, Fixture::postgres().await);
contract!(redis, Fixture::redis().await);

// ---- a missing service: a clear, quick error naming the address ----

fn assert_unavailable(e: &Error, address: &str, took: Duration) {
    assert!(e.is_unavailable(), "expected unavailable, got {e:?}");
    let s = e.to_string();
    assert!(s.contains(address), "the error names {address}: {s}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn missing_postgres_is_a_clear_unavailable_error() {
    let started = Instant::now();
    let e = PostgresStorage::builder("postgres://postgres:secret@127.0.0.1:1/test")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_unavailable(&e, "127.0.0.1:1", started.elapsed());
    assert!(
        !e.to_string().contains("secret"),
        "passwords are redacted: {e}"
    );
}

#[tokio::test]
async fn missing_redis_is_a_clear_unavailable_error() {
    let started = Instant::now();
    let e = RedisStorage::builder("redis://127.0.0.1:1")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_unavailable(&e, "127.0.0.1:1", started.elapsed());
}

#[tokio::test]
async fn unopenable_sqlite_file_is_a_clear_unavailable_error() {
    let started = Instant::now();
    let e = SqliteStorage::open("/nonexistent-directory/for/grains.db")
        .await
        .unwrap_err();
    assert_unavailable(
        &e,
        "/nonexistent-directory/for/grains.db",
        started.elapsed(),
    );
}

#[tokio::test]
async fn bad_table_prefix_is_refused_before_any_sql() {
    let e = SqliteStorage::builder("/tmp/never-created.db")
        .table_prefix("x; DROP TABLE y")
        .open()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}
