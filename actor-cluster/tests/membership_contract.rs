//! One contract for every membership table: the in-memory fake, SQLite
//! and PostgreSQL (127.0.0.1:5432, database `test`). With `CI=true` a
//! missing PostgreSQL fails the suite instead of skipping it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::__private::now_millis;
use actor_cluster::{
    Error, InMemoryMembership, MembershipEntry, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    SqlMembership, Suspicion, TableVersion,
};
use proptest::prelude::*;

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// A table in a fresh SQLite file; the directory goes with the guard.
async fn sqlite() -> (SqlMembership, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("membership.db");
    let table = SqlMembership::connect(
        &format!("sqlite://{}", path.display()),
        "test-cluster",
        Duration::from_secs(5),
    )
    .await
    .expect("SQLite file table");
    (table, dir)
}

async fn postgres() -> Option<SqlMembership> {
    match SqlMembership::connect(POSTGRES, unique("cluster"), Duration::from_secs(5)).await {
        Ok(t) => Some(t),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping the PostgreSQL membership contract: {e}");
            None
        }
        Err(e) => panic!("CI=true and PostgreSQL is unavailable: {e}"),
    }
}

fn entry(endpoint: &str, generation: i64) -> MembershipEntry {
    MembershipEntry::joining(SiloAddress::new(endpoint, generation), endpoint)
}

async fn contract(table: Arc<dyn MembershipTable>) {
    let empty = table.read_all().await.unwrap();
    assert_eq!(empty.version, TableVersion(0));
    assert!(empty.entries.is_empty());

    // Join: compare-and-set on the table version; one row per silo.
    let a = entry("10.0.0.1:11111", 1);
    assert!(table.insert(a.clone(), TableVersion(0)).await.unwrap());
    assert!(
        !table.insert(a.clone(), TableVersion(1)).await.unwrap(),
        "duplicate row"
    );
    assert!(
        !table
            .insert(entry("10.0.0.2:11111", 1), TableVersion(0))
            .await
            .unwrap(),
        "stale version"
    );
    let s1 = table.read_all().await.unwrap();
    assert_eq!(
        s1.version,
        TableVersion(1),
        "failed writes leave the version alone"
    );
    let (row, etag) = s1.entry(&a.silo).unwrap().clone();
    assert_eq!(row, a);

    // Update: both the row etag and the table version must match.
    let mut active = row.clone();
    active.status = SiloStatus::Active;
    active.gateway = Some("10.0.0.1:30000".into());
    active.suspicions = vec![Suspicion {
        by: SiloAddress::new("10.0.0.9:11111", 3),
        at_millis: 42,
    }];
    assert!(
        table
            .update(active.clone(), etag, s1.version)
            .await
            .unwrap()
    );
    assert!(
        !table
            .update(active.clone(), etag, TableVersion(2))
            .await
            .unwrap(),
        "stale etag"
    );
    let s2 = table.read_all().await.unwrap();
    let (row, etag2) = s2.entry(&a.silo).unwrap().clone();
    assert_ne!(etag2, etag);
    assert!(
        !table
            .update(active.clone(), etag2, s1.version)
            .await
            .unwrap(),
        "stale version"
    );
    assert_eq!(row, active, "every field round-trips");
    assert_eq!(s2.with_status(SiloStatus::Active).count(), 1);

    // Heartbeats touch the row only.
    let t = row.i_am_alive_millis + 1_000;
    assert!(table.update_i_am_alive(&a.silo, t).await.unwrap());
    assert!(
        !table
            .update_i_am_alive(&SiloAddress::new("nowhere:1", 1), 1)
            .await
            .unwrap()
    );
    let s3 = table.read_all().await.unwrap();
    assert_eq!(s3.version, s2.version);
    assert_eq!(s3.entry(&a.silo).unwrap().0.i_am_alive_millis, t);

    // The stamp only grows: a heartbeat with an older (or equal) stamp
    // moves it one on, and an update from a read older than a heartbeat
    // keeps the heartbeat's stamp (the lease rules).
    assert!(table.update_i_am_alive(&a.silo, 5).await.unwrap());
    assert!(table.update_i_am_alive(&a.silo, t + 1).await.unwrap());
    let (before, etag3) = s3.entry(&a.silo).unwrap().clone();
    let s3b = table.read_all().await.unwrap();
    assert_eq!(s3b.entry(&a.silo).unwrap().0.i_am_alive_millis, t + 2);
    assert!(table.update(before, etag3, s3b.version).await.unwrap());
    let s3 = table.read_all().await.unwrap();
    assert_eq!(
        s3.entry(&a.silo).unwrap().0.i_am_alive_millis,
        t + 2,
        "an update never moves the stamp back"
    );

    // A restarted silo on the same endpoint is a new row.
    let a2 = entry("10.0.0.1:11111", 2);
    assert!(table.insert(a2.clone(), s3.version).await.unwrap());

    // Twenty silos join at once from the same read: exactly one wins.
    let seen = table.read_all().await.unwrap();
    let joins: Vec<_> = (0..20)
        .map(|i| {
            let table = table.clone();
            let e = entry(&format!("10.0.1.{i}:11111"), 1);
            let v = seen.version;
            tokio::spawn(async move { table.insert(e, v).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for j in joins {
        winners += j.await.unwrap() as usize;
    }
    assert_eq!(winners, 1, "exactly one concurrent insert wins");
    let after = table.read_all().await.unwrap();
    assert_eq!(after.version.0, seen.version.0 + 1);
    assert_eq!(after.entries.len(), seen.entries.len() + 1);

    // Ten voters update the same row from the same read: exactly one wins.
    let (row, etag) = after.entry(&a2.silo).unwrap().clone();
    let votes: Vec<_> = (0..10)
        .map(|i| {
            let table = table.clone();
            let mut e = row.clone();
            e.suspicions.push(Suspicion {
                by: SiloAddress::new(format!("10.0.2.{i}:1"), 1),
                at_millis: now_millis(),
            });
            let v = after.version;
            tokio::spawn(async move { table.update(e, etag, v).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for v in votes {
        winners += v.await.unwrap() as usize;
    }
    assert_eq!(winners, 1, "exactly one concurrent update wins");
    let voted = table.read_all().await.unwrap();
    assert_eq!(voted.entry(&a2.silo).unwrap().0.suspicions.len(), 1);

    // Dead rows whose heartbeat is old are cleaned up; live ones stay.
    let (row, etag) = voted.entry(&a.silo).unwrap().clone();
    let mut dead = row;
    dead.status = SiloStatus::Dead;
    assert!(table.update(dead, etag, voted.version).await.unwrap());
    // A dead silo renews nothing.
    assert!(!table.update_i_am_alive(&a.silo, 1).await.unwrap());
    assert!(!table.update_i_am_alive(&a.silo, 999_999).await.unwrap());
    assert_eq!(table.cleanup_defunct(t + 3).await.unwrap(), 1);
    let last = table.read_all().await.unwrap();
    assert!(last.entry(&a.silo).is_none());
    assert!(last.entry(&a2.silo).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_table_keeps_the_contract() {
    contract(Arc::new(InMemoryMembership::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_table_keeps_the_contract() {
    let (table, _dir) = sqlite().await;
    contract(Arc::new(table)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_table_keeps_the_contract() {
    if let Some(t) = postgres().await {
        contract(Arc::new(t)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_sharing_a_database_do_not_see_each_other() {
    let Some(a) = postgres().await else { return };
    let b = SqlMembership::connect(POSTGRES, unique("cluster"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(a.insert(entry("x:1", 1), TableVersion(0)).await.unwrap());
    assert!(b.read_all().await.unwrap().entries.is_empty());
    assert!(b.insert(entry("x:1", 1), TableVersion(0)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_table_is_an_error_never_a_success() {
    let started = Instant::now();
    let err = SqlMembership::connect(
        "postgres://postgres@127.0.0.1:1/test",
        "c",
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, Error::TableUnavailable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    let err = SqlMembership::connect("sqlite:///no/such/dir/m.db", "c", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TableUnavailable { .. }), "{err}");

    // A table that goes away after connecting fails its calls.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.db");
    let t = SqlMembership::connect(
        &format!("sqlite://{}", path.display()),
        "c",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    sqlx_drop_tables(&path).await;
    let err = t
        .insert(entry("y:1", 1), TableVersion(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TableUnavailable { .. }), "{err}");
}

async fn sqlx_drop_tables(path: &std::path::Path) {
    let t = SqlMembership::connect(
        &format!("sqlite://{}", path.display()),
        "other",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    drop(t);
    // Remove the tables behind the first handle's back.
    let pool = sqlx_pool(path).await;
    for t in ["membership", "membership_version"] {
        sqlx_exec(&pool, &format!("DROP TABLE {t}")).await;
    }
}

async fn sqlx_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn sqlx_exec(pool: &sqlx::SqlitePool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        silo: u8,
        stale: bool,
    },
    Update {
        silo: u8,
        stale_etag: bool,
        stale_version: bool,
        dead: bool,
    },
    Alive {
        silo: u8,
        at: i64,
    },
    Cleanup {
        before: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(silo, stale)| Op::Insert { silo, stale }),
        (0u8..4, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(silo, stale_etag, stale_version, dead)| Op::Update {
                silo,
                stale_etag,
                stale_version,
                dead
            }
        ),
        (0u8..4, 0i64..100).prop_map(|(silo, at)| Op::Alive { silo, at }),
        (0i64..100).prop_map(|before| Op::Cleanup { before }),
    ]
}

/// An entry with fixed times, so model and table can be compared.
fn fixed(endpoint: &str) -> MembershipEntry {
    let mut e = entry(endpoint, 1);
    e.start_millis = 7;
    e.i_am_alive_millis = 7;
    e
}

async fn apply(t: &dyn MembershipTable, op: &Op) -> String {
    let s = t.read_all().await.unwrap();
    let silo = |n: u8| SiloAddress::new(format!("s{n}:1"), 1);
    let out = match op {
        Op::Insert { silo: n, stale } => {
            let v = if *stale {
                TableVersion(s.version.0 - 1)
            } else {
                s.version
            };
            // (a stale read of version 0 is -1: never current either)
            format!(
                "{:?}",
                t.insert(fixed(&silo(*n).endpoint), v).await.unwrap()
            )
        }
        Op::Update {
            silo: n,
            stale_etag,
            stale_version,
            dead,
        } => {
            let (mut e, etag) = s
                .entry(&silo(*n))
                .cloned()
                .unwrap_or_else(|| (fixed(&silo(*n).endpoint), RowEtag(1)));
            if *dead {
                e.status = SiloStatus::Dead;
            }
            let etag = if *stale_etag {
                RowEtag(etag.0 - 1)
            } else {
                etag
            };
            let v = if *stale_version {
                TableVersion(s.version.0 + 1)
            } else {
                s.version
            };
            format!("{:?}", t.update(e, etag, v).await.unwrap())
        }
        Op::Alive { silo: n, at } => {
            format!("{:?}", t.update_i_am_alive(&silo(*n), *at).await.unwrap())
        }
        Op::Cleanup { before } => format!("{:?}", t.cleanup_defunct(*before).await.unwrap()),
    };
    let after = t.read_all().await.unwrap();
    format!("{out} -> {:?}", after)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The SQLite table behaves exactly like the in-memory one (the
    /// model) on any sequence of operations, stale ones included.
    #[test]
    fn sqlite_matches_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let model = InMemoryMembership::new();
            let (real, _dir) = sqlite().await;
            for o in &ops {
                let want = apply(&model, o).await;
                let got = apply(&real, o).await;
                assert_eq!(got, want, "after {o:?}");
            }
        });
    }
}
