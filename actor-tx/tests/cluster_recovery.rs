//! A silo dies at each step of the commit protocol: before any prepare,
//! after the prepares, after the commit record, during confirmation. The
//! surviving silos finish or abort the transaction, every participant
//! ends equal to the outcome the caller saw, and no lock stays held past
//! the documented bound (the transaction's deadline plus a sweep).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use actor_testkit::TestCluster;
use actor_tx::{
    MemoryTxStorage, SiloBuilderTransactionsExt, Step, StepHook, TransactionOptions,
    TransactionsConfig, run_transaction, run_transaction_with,
};
use common::{Account, AccountRef};

/// Kills the manager's silo at `step` of one transfer of 10 from `a` to
/// `b`, and answers what the caller saw and the balances afterwards.
async fn crash_at(step: Step) -> (Result<(), actor_tx::Error>, i64, i64) {
    let storage = MemoryTxStorage::new();
    let armed = Arc::new(AtomicBool::new(false));
    let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut cluster = {
        let (armed, stopped_tx) = (armed.clone(), stopped_tx.clone());
        TestCluster::builder()
            .silos(3)
            .configure(move |i, b| {
                let (armed, stopped_tx) = (armed.clone(), stopped_tx.clone());
                let hook: StepHook = Arc::new(move |at, _tx| {
                    let hit = at == step && armed.swap(false, Ordering::SeqCst);
                    let stopped_tx = stopped_tx.clone();
                    Box::pin(async move {
                        if hit {
                            let _ = stopped_tx.send(i);
                            // The silo is killed here: the protocol never goes on.
                            std::future::pending::<()>().await;
                        }
                    })
                });
                let config = TransactionsConfig::new(storage.clone())
                    .sweep_every(Duration::from_millis(50))
                    .on_step(hook);
                Account::register(b.with_transactions_config(config))
            })
            .build()
            .await
            .unwrap()
    };
    let client = common::own_client(&cluster, 3).await;
    let (a, b) = (
        client.get_grain::<Account>("a"),
        client.get_grain::<Account>("b"),
    );
    a.deposit_alone(100).await.unwrap().unwrap();
    b.deposit_alone(100).await.unwrap().unwrap();

    armed.store(true, Ordering::SeqCst);
    let options = TransactionOptions::default()
        .timeout(Duration::from_secs(2))
        .lock_timeout(Duration::from_secs(2));
    let transfer = {
        let (client, a, b) = (client.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            run_transaction_with(&client, &options, || async move {
                a.change(-10).await??;
                b.change(10).await??;
                Ok(())
            })
            .await
        })
    };
    let victim = tokio::time::timeout(Duration::from_secs(20), stopped.recv())
        .await
        .expect("the protocol reached the step")
        .unwrap();
    cluster.kill_silo(victim).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(40), transfer)
        .await
        .expect("the caller gets an outcome")
        .unwrap();
    cluster
        .wait_until_stable(Duration::from_secs(20))
        .await
        .unwrap();

    // Every lock of the transaction is released within the bound.
    for key in ["a", "b"] {
        let id = GrainId::new("account", key);
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match actor_tx::lock_status(&client, &id, "balance").await {
                Ok(s) if s.is_free() => break,
                other => assert!(
                    tokio::time::Instant::now() < until,
                    "{step:?}: lock of {id} still held: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let c = client.clone();
    let (ba, bb) = actor_tx::retry_transaction(
        &client,
        &TransactionOptions::default(),
        &actor_tx::RetryPolicy::default(),
        || {
            let c = c.clone();
            async move {
                Ok((
                    c.get_grain::<Account>("a").balance().await??.balance,
                    c.get_grain::<Account>("b").balance().await??.balance,
                ))
            }
        },
    )
    .await
    .unwrap();
    // The other state of the same grains agrees with the balance.
    let audit = run_transaction(&client, || async { a.audit().await? })
        .await
        .unwrap();
    assert_eq!(audit, if ba == 90 { vec![-10] } else { vec![] }, "{step:?}");
    (seen, ba, bb)
}

fn committed(seen: &Result<(), actor_tx::Error>, a: i64, b: i64) -> bool {
    assert_eq!(a + b, 200, "money appeared or vanished: {a} + {b}");
    match seen {
        Ok(()) => assert_eq!((a, b), (90, 110), "the caller saw a commit"),
        Err(e) if e.is_in_doubt() => assert!((a, b) == (90, 110) || (a, b) == (100, 100)),
        Err(e) => {
            assert!(e.is_aborted(), "{e}");
            assert_eq!((a, b), (100, 100), "the caller saw an abort: {e}");
        }
    }
    a == 90
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_dies_before_prepare() {
    let (seen, a, b) = crash_at(Step::BeforePrepare).await;
    assert!(
        !committed(&seen, a, b),
        "nothing was prepared: it must abort"
    );
    assert!(seen.unwrap_err().is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_dies_after_the_prepares() {
    let (seen, a, b) = crash_at(Step::AfterPrepare).await;
    assert!(!committed(&seen, a, b), "no commit record: it must abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_dies_after_the_commit_record() {
    let (seen, a, b) = crash_at(Step::AfterCommitRecord).await;
    assert!(
        committed(&seen, a, b),
        "the commit record is durable: it must commit"
    );
    assert!(seen.is_ok(), "the caller reads the outcome back: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_dies_during_confirmation() {
    let (seen, a, b) = crash_at(Step::DuringConfirmation).await;
    assert!(
        seen.is_ok(),
        "the caller was told before the crash: {seen:?}"
    );
    assert!(committed(&seen, a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_participant_dies_and_its_successor_commits() {
    let storage = MemoryTxStorage::new();
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let go = Arc::new(tokio::sync::Notify::new());
    let armed = Arc::new(AtomicBool::new(false));
    let mut cluster = {
        let (armed, reached_tx, go) = (armed.clone(), reached_tx.clone(), go.clone());
        TestCluster::builder()
            .silos(3)
            .configure(move |_, b| {
                let (armed, reached_tx, go) = (armed.clone(), reached_tx.clone(), go.clone());
                let hook: StepHook = Arc::new(move |at, _tx| {
                    let hit = at == Step::AfterPrepare && armed.swap(false, Ordering::SeqCst);
                    let (reached_tx, go) = (reached_tx.clone(), go.clone());
                    Box::pin(async move {
                        if hit {
                            // Hold the manager here while the test kills a
                            // prepared participant's silo, then go on.
                            let waiting = go.notified();
                            let _ = reached_tx.send(());
                            waiting.await;
                        }
                    })
                });
                let config = TransactionsConfig::new(storage.clone())
                    .sweep_every(Duration::from_millis(50))
                    .on_step(hook);
                Account::register(b.with_transactions_config(config))
            })
            .build()
            .await
            .unwrap()
    };
    // Two accounts whose balance participants live on different silos.
    let owner = |key: &str| {
        let id = GrainId::new(
            "actor-tx.state",
            format!("account/s:{key}/balance").as_str(),
        );
        cluster.silo(0).owner_of(&id)
    };
    let a_key = "pa-0".to_owned();
    let b_key = (1..)
        .map(|i| format!("pa-{i}"))
        .find(|k| owner(k) != owner(&a_key))
        .unwrap();
    let victim_name = owner(&b_key);
    let victim = (0..3)
        .find(|i| cluster.silo(*i).address().endpoint == victim_name)
        .unwrap();

    let client = common::own_client(&cluster, 3).await;
    let (a, b) = (
        client.get_grain::<Account>(a_key.as_str()),
        client.get_grain::<Account>(b_key.as_str()),
    );
    a.deposit_alone(100).await.unwrap().unwrap();
    armed.store(true, Ordering::SeqCst);
    let transfer = {
        let (client, a, b) = (client.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let options = TransactionOptions::default().timeout(Duration::from_secs(5));
            run_transaction_with(&client, &options, || async move {
                a.change(-10).await??; // a's balance: the manager
                b.change(10).await??;
                Ok(())
            })
            .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), reached.recv())
        .await
        .expect("the prepares finished")
        .unwrap();
    cluster.kill_silo(victim).unwrap();
    go.notify_one();
    let seen = tokio::time::timeout(Duration::from_secs(30), transfer)
        .await
        .expect("the caller gets an outcome")
        .unwrap();
    assert!(
        seen.is_ok(),
        "every participant was prepared: it commits ({seen:?})"
    );
    cluster
        .wait_until_stable(Duration::from_secs(20))
        .await
        .unwrap();
    // The participant's successor (on another silo) finds its prepare
    // record and applies the commit.
    let id = GrainId::new("account", b_key.as_str());
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match actor_tx::lock_status(&*client, &id, "balance").await {
            Ok(s) if s.is_free() => break,
            other => assert!(tokio::time::Instant::now() < until, "still held: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client.clone();
    let (ba, bb) = actor_tx::retry_transaction(
        &*client,
        &TransactionOptions::default(),
        &actor_tx::RetryPolicy::default(),
        || {
            let c = c.clone();
            let (ak, bk) = (a_key.clone(), b_key.clone());
            async move {
                Ok((
                    c.get_grain::<Account>(ak.as_str())
                        .balance()
                        .await??
                        .balance,
                    c.get_grain::<Account>(bk.as_str())
                        .balance()
                        .await??
                        .balance,
                ))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!((ba, bb), (90, 10));
}
