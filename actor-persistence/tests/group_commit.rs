//! Group commit of the SQL providers (SQLite: on by default; PostgreSQL:
//! off by default, turned on here): updates issued at the same time are
//! committed together, each with its own ETag check. Run against the real databases (with CI=true a missing
//! PostgreSQL fails).

mod common;

use std::sync::Arc;

use actor_core::GrainId;
use actor_persistence::{ETag, Error, PostgresStorage, SqliteStorage, StateKey, StorageProvider};
use common::{Fixture, unique};
use futures::future::join_all;

/// Rows written at once: more than one batch is likely to hold.
const ROWS: usize = 48;

fn keys(n: usize) -> Vec<StateKey> {
    let grain = unique("gc");
    (0..n)
        .map(|i| {
            StateKey::new(
                &GrainId::new("group-commit", format!("{grain}-{i}").as_str()),
                "state",
            )
        })
        .collect()
}

async fn created(p: &Arc<dyn StorageProvider>, keys: &[StateKey]) -> Vec<ETag> {
    join_all(keys.iter().map(|k| p.write(k, b"0", None)))
        .await
        .into_iter()
        .map(|r| r.expect("first write"))
        .collect()
}

/// Many concurrent updates of distinct rows all commit, each with its own
/// new ETag, and read back as written; a stale writer among them fails
/// alone, with the row's actual ETag, and the row keeps the others' write.
async fn concurrent_updates_commit_each_and_a_stale_one_fails_alone(p: Arc<dyn StorageProvider>) {
    let ks = keys(ROWS);
    let first = created(&p, &ks).await;
    // Round one moves every row on; round two sends the fresh ETag for
    // every row but row 0, which gets its first (now stale) ETag.
    let round_one: Vec<ETag> = join_all(
        ks.iter()
            .zip(&first)
            .map(|(k, e)| p.write(k, b"1", Some(e))),
    )
    .await
    .into_iter()
    .map(|r| r.expect("an update with the current ETag commits"))
    .collect();
    let outcomes = join_all(ks.iter().enumerate().map(|(i, k)| {
        let expected = if i == 0 { &first[0] } else { &round_one[i] };
        let data = format!("2-{i}");
        let p = p.clone();
        async move { p.write(k, data.as_bytes(), Some(expected)).await }
    }))
    .await;
    for (i, out) in outcomes.iter().enumerate() {
        if i == 0 {
            match out {
                Err(Error::Conflict {
                    expected, actual, ..
                }) => {
                    assert_eq!(expected.as_ref(), Some(&first[0]));
                    assert_eq!(
                        actual.as_ref(),
                        Some(&round_one[0]),
                        "the row's actual ETag"
                    );
                }
                other => panic!("the stale write must conflict, got {other:?}"),
            }
        } else {
            let etag = out
                .as_ref()
                .expect("a current write commits beside a stale one");
            let row = p.read(&ks[i]).await.unwrap().expect("the row");
            assert_eq!(row.data, format!("2-{i}").as_bytes());
            assert_eq!(&row.etag, etag);
        }
    }
    let row0 = p.read(&ks[0]).await.unwrap().unwrap();
    assert_eq!(
        (row0.data.as_slice(), &row0.etag),
        (&b"1"[..], &round_one[0])
    );
}

/// Two writers of one row with the same ETag at the same time (two
/// activations of one grain): exactly one commits, the other conflicts,
/// even though both were queued together.
async fn racing_writes_of_one_row_let_exactly_one_win(p: Arc<dyn StorageProvider>) {
    let ks = keys(8);
    let first = created(&p, &ks).await;
    let mut writes = Vec::new();
    for (k, e) in ks.iter().zip(&first) {
        for who in ["a", "b"] {
            let p = p.clone();
            writes.push(async move { (k, who, p.write(k, who.as_bytes(), Some(e)).await) });
        }
    }
    let outcomes = join_all(writes).await;
    for k in &ks {
        let mine: Vec<_> = outcomes.iter().filter(|(key, _, _)| *key == k).collect();
        let won: Vec<_> = mine.iter().filter(|(_, _, r)| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "exactly one write of {k} commits: {mine:?}");
        let lost = mine.iter().find(|(_, _, r)| r.is_err()).unwrap();
        assert!(
            matches!(lost.2, Err(Error::Conflict { .. })),
            "{:?}",
            lost.2
        );
        let row = p.read(k).await.unwrap().unwrap();
        assert_eq!(
            row.data,
            won[0].1.as_bytes(),
            "the winner's write is stored"
        );
        assert_eq!(&row.etag, won[0].2.as_ref().unwrap());
    }
}

/// An update of a row that does not exist is a conflict with no actual
/// ETag, in a batch or alone.
async fn an_update_of_a_missing_row_conflicts(p: Arc<dyn StorageProvider>) {
    let ks = keys(4);
    let stale = ETag::generate();
    let outcomes = join_all(ks.iter().map(|k| p.write(k, b"x", Some(&stale)))).await;
    for out in outcomes {
        match out {
            Err(Error::Conflict { actual: None, .. }) => {}
            other => panic!("expected a conflict without a row, got {other:?}"),
        }
    }
}

async fn suite(f: Fixture) {
    concurrent_updates_commit_each_and_a_stale_one_fails_alone(f.storage.clone()).await;
    racing_writes_of_one_row_let_exactly_one_win(f.storage.clone()).await;
    an_update_of_a_missing_row_conflicts(f.storage.clone()).await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit() {
    suite(Fixture::sqlite().await).await;
}

/// The fixture's tables through a provider with group commit `on` (off
/// by default on PostgreSQL).
async fn postgres_with(f: &Fixture, on: bool) -> PostgresStorage {
    let table = f.postgres.clone().unwrap().state_table();
    PostgresStorage::builder(common::postgres_url())
        .table_prefix(table.trim_end_matches("_state"))
        .group_commit(on)
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit() {
    if let Some(f) = Fixture::postgres().await {
        let p: Arc<dyn StorageProvider> = Arc::new(postgres_with(&f, true).await);
        concurrent_updates_commit_each_and_a_stale_one_fails_alone(p.clone()).await;
        racing_writes_of_one_row_let_exactly_one_win(p.clone()).await;
        an_update_of_a_missing_row_conflicts(p).await;
        f.cleanup().await;
    }
}

/// With group commit off, the same semantics hold, one statement per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::builder(dir.path().join("g.db").to_string_lossy())
        .group_commit(false)
        .open()
        .await
        .unwrap();
    let p: Arc<dyn StorageProvider> = Arc::new(s);
    concurrent_updates_commit_each_and_a_stale_one_fails_alone(p.clone()).await;
    racing_writes_of_one_row_let_exactly_one_win(p.clone()).await;
    an_update_of_a_missing_row_conflicts(p).await;
}

/// How many transactions committed the rows of `ks` last.
async fn transactions_of(pg: &PostgresStorage, ks: &[StateKey]) -> i64 {
    let grain_ids: Vec<&str> = ks.iter().map(|k| k.grain_id()).collect();
    sqlx::query_scalar(&format!(
        "SELECT count(DISTINCT xmin::text) FROM {} WHERE grain_id = ANY($1)",
        pg.state_table()
    ))
    .bind(&grain_ids)
    .fetch_one(pg.pool())
    .await
    .unwrap()
}

/// Off (PostgreSQL's default), each update is a transaction of its own (which is also what shows
/// that the count below can tell batched writes from single ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_group_commit_writes_one_transaction_each() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let pg = postgres_with(&f, false).await;
    let p: Arc<dyn StorageProvider> = Arc::new(pg.clone());
    let ks = keys(ROWS);
    let first = created(&p, &ks).await;
    for r in join_all(
        ks.iter()
            .zip(&first)
            .map(|(k, e)| p.write(k, b"1", Some(e))),
    )
    .await
    {
        r.expect("an update with the current ETag commits");
    }
    assert_eq!(transactions_of(&pg, &ks).await, ROWS as i64);
    racing_writes_of_one_row_let_exactly_one_win(p).await;
    f.cleanup().await;
}

/// The updates really share transactions: rows updated by writes issued
/// together carry few distinct transaction ids (`xmin`), where one
/// transaction per write would give one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_updates_issued_together_share_transactions() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    // A pool of two connections: more updates wait than there are
    // writers, so batches form.
    let table = f.postgres.clone().unwrap().state_table();
    let pg = PostgresStorage::builder(common::postgres_url())
        .table_prefix(table.trim_end_matches("_state"))
        .max_connections(2)
        .group_commit(true)
        .connect()
        .await
        .unwrap();
    let p: Arc<dyn StorageProvider> = Arc::new(pg.clone());
    let ks = keys(ROWS);
    let first = created(&p, &ks).await;
    for r in join_all(
        ks.iter()
            .zip(&first)
            .map(|(k, e)| p.write(k, b"1", Some(e))),
    )
    .await
    {
        r.expect("an update with the current ETag commits");
    }
    let distinct = transactions_of(&pg, &ks).await;
    assert!(
        (1..=(ROWS as i64) / 2).contains(&distinct),
        "{ROWS} updates issued together were committed in {distinct} transactions"
    );
    f.cleanup().await;
}
