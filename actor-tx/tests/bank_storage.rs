//! The bank on each durable provider (SQLite file, PostgreSQL at
//! 127.0.0.1:5432): concurrent transfers on two silos keep the total, and
//! after every silo restarts on the same storage the committed balances
//! are all there. Without PostgreSQL its case is skipped with a note,
//! unless `CI=true`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_testkit::TestCluster;
use actor_tx::{
    PostgresTxStorage, RetryPolicy, SiloBuilderTransactionsExt, SqliteTxStorage,
    TransactionOptions, TransactionalStorage, retry_transaction,
};
use common::{Account, AccountRef, Rng};

const ACCOUNTS: usize = 4;

async fn cluster(storage: Arc<dyn TransactionalStorage>) -> TestCluster {
    TestCluster::builder()
        .silos(2)
        .configure(move |_, b| Account::register(b.with_transactions(storage.clone())))
        .build()
        .await
        .unwrap()
}

async fn total(client: &actor_cluster::ClusterClient, run: &str) -> Vec<i64> {
    retry_transaction(
        client,
        &TransactionOptions::default(),
        &RetryPolicy::default(),
        || async {
            let mut all = Vec::new();
            for i in 0..ACCOUNTS {
                let a = client.get_grain::<Account>(format!("{run}-{i}").as_str());
                all.push(a.balance().await??.balance);
            }
            Ok(all)
        },
    )
    .await
    .unwrap()
}

async fn bank(storage: Arc<dyn TransactionalStorage>) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let c = cluster(storage.clone()).await;
    let client = common::own_client(&c, 2).await;
    for i in 0..ACCOUNTS {
        let a = client.get_grain::<Account>(format!("{run}-{i}").as_str());
        a.deposit_alone(50).await.unwrap().unwrap();
    }
    let mut tasks = Vec::new();
    for caller in 0..3u64 {
        let (client, run) = (client.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(7 + caller);
            for _ in 0..6 {
                let from = rng.below(ACCOUNTS as u64) as usize;
                let to = (from + 1) % ACCOUNTS;
                let amount = 1 + rng.below(30) as i64;
                let (a, b) = (
                    client.get_grain::<Account>(format!("{run}-{from}").as_str()),
                    client.get_grain::<Account>(format!("{run}-{to}").as_str()),
                );
                let policy = RetryPolicy {
                    attempts: 50,
                    ..RetryPolicy::default()
                };
                let r = retry_transaction(&client, &TransactionOptions::default(), &policy, || {
                    let (a, b) = (a.clone(), b.clone());
                    async move {
                        a.change(-amount).await??;
                        b.change(amount).await??;
                        Ok(())
                    }
                })
                .await;
                if let Err(e) = r {
                    assert!(!e.is_in_doubt() && !e.is_retryable(), "{e}");
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    let before = total(&client, &run).await;
    assert_eq!(
        before.iter().sum::<i64>(),
        50 * ACCOUNTS as i64,
        "{before:?}"
    );
    drop(client);
    drop(c);

    // A new cluster on the same storage reads the committed balances.
    let c = cluster(storage).await;
    let client = common::own_client(&c, 2).await;
    assert_eq!(total(&client, &run).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bank() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTxStorage::open(dir.path().join("bank.db"))
        .await
        .unwrap();
    bank(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bank() {
    let url = "postgres://postgres@127.0.0.1:5432/test";
    match PostgresTxStorage::connect_with_prefix(url, "tx_test").await {
        Ok(s) => bank(Arc::new(s)).await,
        Err(e) if !common::ci() => eprintln!("skipping: PostgreSQL unavailable ({e})"),
        Err(e) => panic!("CI=true and PostgreSQL is unavailable: {e}"),
    }
}
