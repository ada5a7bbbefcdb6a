//! The transactional storage contract, on every provider: compare-and-set
//! rows, first-writer-wins outcomes, and a commit record that is written
//! with its state or not at all. PostgreSQL is the local server
//! (127.0.0.1:5432); without it the PostgreSQL case is skipped with a note,
//! unless `CI=true`.

mod common;

use std::sync::Arc;

use actor_tx::{
    MemoryTxStorage, Outcome, PostgresTxStorage, Refused, SqliteTxStorage, TransactionalStorage,
    TxId,
};

async fn contract(s: Arc<dyn TransactionalStorage>) {
    let who = s.describe();
    let state = format!("account/s:{}/balance", uuid::Uuid::new_v4().simple());
    assert_eq!(s.load(&state).await.unwrap(), None, "{who}");

    // Create, then compare-and-set.
    let e1 = s.store(&state, None, b"one", None).await.unwrap().unwrap();
    assert_eq!(
        s.store(&state, None, b"again", None).await.unwrap(),
        Err(Refused::Stale),
        "{who}"
    );
    let e2 = s
        .store(&state, Some(&e1), b"two", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.store(&state, Some(&e1), b"stale", None).await.unwrap(),
        Err(Refused::Stale),
        "{who}: a stale ETag is refused"
    );
    let row = s.load(&state).await.unwrap().unwrap();
    assert_eq!(
        (row.etag.as_str(), row.payload.as_slice()),
        (e2.as_str(), &b"two"[..])
    );

    // A commit record goes with its state write...
    let t1 = TxId::new();
    let e3 = s
        .store(&state, Some(&e2), b"three", Some(t1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.outcome(t1).await.unwrap(),
        Some(Outcome::Committed),
        "{who}"
    );
    // ...and neither happens when the state write is stale.
    let t2 = TxId::new();
    assert_eq!(
        s.store(&state, Some(&e2), b"four", Some(t2)).await.unwrap(),
        Err(Refused::Stale)
    );
    assert_eq!(
        s.outcome(t2).await.unwrap(),
        None,
        "{who}: the outcome insert rolled back"
    );
    // A transaction already decided aborted cannot commit, and its write
    // does not happen.
    let t3 = TxId::new();
    assert_eq!(
        s.decide(t3, Outcome::Aborted).await.unwrap(),
        Outcome::Aborted
    );
    assert_eq!(
        s.store(&state, Some(&e3), b"five", Some(t3)).await.unwrap(),
        Err(Refused::Decided(Outcome::Aborted))
    );
    assert_eq!(
        s.load(&state).await.unwrap().unwrap().payload,
        b"three",
        "{who}"
    );

    // First writer wins.
    assert_eq!(
        s.decide(t1, Outcome::Aborted).await.unwrap(),
        Outcome::Committed,
        "{who}"
    );
    let t4 = TxId::new();
    let (a, b) = tokio::join!(
        s.decide(t4, Outcome::Committed),
        s.decide(t4, Outcome::Aborted)
    );
    assert_eq!(a.unwrap(), b.unwrap(), "{who}: racing decisions agree");

    s.forget(t1).await.unwrap();
    assert_eq!(s.outcome(t1).await.unwrap(), None);
}

/// Writes issued together share batches (the SQL providers' group
/// commit): each is still answered on its own, a stale write or a
/// decided commit record in a batch spoils none of the others, and a
/// stale write's commit record does not stay.
async fn concurrent_writes_are_answered_one_by_one(s: Arc<dyn TransactionalStorage>) {
    let who = s.describe();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let n = 48;
    let keys: Vec<String> = (0..n).map(|i| format!("batch/{run}/{i}")).collect();
    let first = futures::future::join_all(keys.iter().map(|k| s.store(k, None, b"0", None))).await;
    let etags: Vec<String> = first.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let aborted = TxId::new();
    s.decide(aborted, Outcome::Aborted).await.unwrap();
    // Every third write is stale, every fourth carries a commit record,
    // one of them for a transaction already decided aborted.
    let txs: Vec<TxId> = (0..n).map(|_| TxId::new()).collect();
    let writes = (0..n).map(|i| {
        let expected = if i % 3 == 0 {
            "no-such-etag"
        } else {
            etags[i].as_str()
        };
        let commit = match i {
            4 => Some(aborted),
            i if i % 4 == 0 => Some(txs[i]),
            _ => None,
        };
        let payload = format!("v{i}");
        let s = s.clone();
        let key = keys[i].clone();
        let expected = expected.to_owned();
        async move {
            s.store(&key, Some(&expected), payload.as_bytes(), commit)
                .await
                .unwrap()
        }
    });
    let results = futures::future::join_all(writes).await;
    for (i, r) in results.iter().enumerate() {
        let row = s.load(&keys[i]).await.unwrap().unwrap();
        if i == 4 {
            assert_eq!(
                r,
                &Err(Refused::Decided(Outcome::Aborted)),
                "{who} write {i}"
            );
            assert_eq!(row.payload, b"0", "{who}: a refused commit writes nothing");
        } else if i % 3 == 0 {
            assert_eq!(r, &Err(Refused::Stale), "{who} write {i}");
            assert_eq!(row.payload, b"0", "{who} write {i}");
            if i % 4 == 0 {
                assert_eq!(
                    s.outcome(txs[i]).await.unwrap(),
                    None,
                    "{who}: a stale write's commit record is not kept"
                );
            }
        } else {
            assert_eq!(r.as_ref().ok(), Some(&row.etag), "{who} write {i}");
            assert_eq!(row.payload, format!("v{i}").as_bytes(), "{who} write {i}");
            if i % 4 == 0 {
                assert_eq!(
                    s.outcome(txs[i]).await.unwrap(),
                    Some(Outcome::Committed),
                    "{who}"
                );
            }
        }
    }
    // Forgetting many at once.
    let committed: Vec<TxId> = (0..n)
        .filter(|i| i % 4 == 0 && i % 3 != 0 && *i != 4)
        .map(|i| txs[i])
        .collect();
    assert!(!committed.is_empty());
    futures::future::join_all(committed.iter().map(|t| s.forget(*t)))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    for t in committed {
        assert_eq!(s.outcome(t).await.unwrap(), None, "{who}");
    }
}

#[tokio::test]
async fn memory_keeps_the_contract() {
    contract(Arc::new(MemoryTxStorage::new())).await;
    concurrent_writes_are_answered_one_by_one(Arc::new(MemoryTxStorage::new())).await;
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTxStorage::open(dir.path().join("tx.db"))
        .await
        .unwrap();
    contract(Arc::new(s.clone())).await;
    concurrent_writes_are_answered_one_by_one(Arc::new(s.clone())).await;
    // Reopened, the data is still there.
    drop(s);
    let s = SqliteTxStorage::open(dir.path().join("tx.db"))
        .await
        .unwrap();
    assert!(s.describe().starts_with("sqlite:"));
}

#[tokio::test]
async fn postgres_keeps_the_contract() {
    // Shared tables; the keys and transaction ids of each run are unique.
    let url = "postgres://postgres@127.0.0.1:5432/test";
    match PostgresTxStorage::connect_with_prefix(url, "tx_test").await {
        Ok(s) => {
            contract(Arc::new(s.clone())).await;
            concurrent_writes_are_answered_one_by_one(Arc::new(s)).await;
        }
        Err(e) if !common::ci() => eprintln!("skipping: PostgreSQL unavailable ({e})"),
        Err(e) => panic!("CI=true and PostgreSQL is unavailable: {e}"),
    }
}

#[tokio::test]
async fn a_bad_table_prefix_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteTxStorage::open_with_prefix(dir.path().join("x.db"), "no spaces")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("table prefix"), "{err}");
}

#[tokio::test]
async fn an_unreachable_postgres_names_its_address() {
    let err = PostgresTxStorage::connect("postgres://postgres:secret@127.0.0.1:1/test")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "the password never shows: {text}");
}
