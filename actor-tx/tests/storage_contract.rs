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

#[tokio::test]
async fn memory_keeps_the_contract() {
    contract(Arc::new(MemoryTxStorage::new())).await;
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTxStorage::open(dir.path().join("tx.db"))
        .await
        .unwrap();
    contract(Arc::new(s.clone())).await;
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
        Ok(s) => contract(Arc::new(s)).await,
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
