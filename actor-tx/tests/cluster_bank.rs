//! The bank on a 3-silo cluster: concurrent transfers from several
//! callers, an auditor summing every balance in read-only transactions,
//! the serializability checker over the whole history, and the deadlock
//! of two transactions taking locks in opposite order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_testkit::TestCluster;
use actor_testkit::serializability::TransactionHistory;
use actor_tx::{
    AbortReason, Error, MemoryTxStorage, Priority, SiloBuilderTransactionsExt, TransactionOptions,
    run_transaction, run_transaction_with,
};
use common::{Account, AccountRef, Observed, Rng, record};
use parking_lot::Mutex;

const ACCOUNTS: usize = 6;
const START: i64 = 100;

async fn bank(silos: usize) -> TestCluster {
    let storage = MemoryTxStorage::new();
    TestCluster::builder()
        .silos(silos)
        .configure(move |_, b| Account::register(b.with_transactions(storage.clone())))
        .build()
        .await
        .unwrap()
}

fn name(i: usize) -> String {
    format!("acct-{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_the_total_and_are_serializable() {
    let cluster = bank(3).await;
    let client = common::own_client(&cluster, 3).await;
    let history = Arc::new(TransactionHistory::new());
    for i in 0..ACCOUNTS {
        let a = client.get_grain::<Account>(name(i).as_str());
        assert_eq!(a.deposit_alone(START).await.unwrap().unwrap(), START);
    }
    let total = START * ACCOUNTS as i64;
    let options = TransactionOptions::default().timeout(Duration::from_secs(10));

    let mut callers = Vec::new();
    for caller in 0..4u64 {
        let (client, history, options) = (client.clone(), history.clone(), options.clone());
        callers.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x9e37_79b9 + caller);
            let (mut committed, mut aborted) = (0, 0);
            for _ in 0..12 {
                let from = rng.below(ACCOUNTS as u64) as usize;
                let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = 1 + rng.below(60) as i64;
                let (a, b) = (
                    client.get_grain::<Account>(name(from).as_str()),
                    client.get_grain::<Account>(name(to).as_str()),
                );
                // Retried by hand, keeping the first attempt's age, so that
                // every attempt is recorded in the history.
                let options = options.clone().priority(Priority::now());
                for attempt in 0..40u32 {
                    let (a, b) = (a.clone(), b.clone());
                    let seen = Arc::new(Mutex::new((String::new(), Vec::<Observed>::new())));
                    let s = seen.clone();
                    let result = run_transaction_with(&client, &options, || async move {
                        s.lock().0 = actor_tx::current_transaction().unwrap().to_string();
                        let out = a.change(-amount).await?;
                        s.lock().1.push(out?);
                        let into = b.change(amount).await??;
                        s.lock().1.push(into);
                        Ok(())
                    })
                    .await;
                    let (tx, seen) = seen.lock().clone();
                    record(&history, &tx, result.is_ok(), &seen);
                    match result {
                        Ok(()) => {
                            committed += 1;
                            break;
                        }
                        Err(e) if e.is_in_doubt() => panic!("no fault here, yet in doubt: {e}"),
                        Err(e) if e.is_retryable() => {
                            tokio::time::sleep(Duration::from_millis(1 << attempt.min(6))).await
                        }
                        Err(e) => {
                            // An overdraw: a user abort.
                            assert!(
                                matches!(e.abort_reason(), Some(AbortReason::User(_))),
                                "{e}"
                            );
                            aborted += 1;
                            break;
                        }
                    }
                }
            }
            (committed, aborted)
        }));
    }

    // The auditor: the total, read in read-only transactions meanwhile.
    let auditor = {
        let (client, history) = (client.clone(), history.clone());
        tokio::spawn(async move {
            let mut audits = 0;
            for _ in 0..15 {
                let seen = Arc::new(Mutex::new((String::new(), Vec::<Observed>::new())));
                let s = seen.clone();
                let c = client.clone();
                let result = run_transaction(&client, || async move {
                    s.lock().0 = actor_tx::current_transaction().unwrap().to_string();
                    let mut sum = 0;
                    for i in 0..ACCOUNTS {
                        let o = c.get_grain::<Account>(name(i).as_str()).balance().await??;
                        sum += o.balance;
                        s.lock().1.push(o);
                    }
                    Ok(sum)
                })
                .await;
                let (tx, seen) = seen.lock().clone();
                record(&history, &tx, result.is_ok(), &seen);
                match result {
                    Ok(sum) => {
                        assert_eq!(sum, total, "a committed audit saw money appear or vanish");
                        audits += 1;
                    }
                    Err(e) => assert!(e.is_retryable(), "{e}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            audits
        })
    };

    let (mut committed, mut aborted) = (0, 0);
    for c in callers {
        let (c, a) = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .unwrap()
            .unwrap();
        committed += c;
        aborted += a;
    }
    let audits = auditor.await.unwrap();
    assert!(committed > 0, "no transfer committed");
    eprintln!("committed {committed}, overdraws aborted {aborted}, audits {audits}");

    // The final total, and the whole history serializable.
    let sum = actor_tx::retry_transaction(
        &client,
        &TransactionOptions::default(),
        &actor_tx::RetryPolicy::default(),
        || {
            let c = client.clone();
            async move {
                let mut sum = 0;
                for i in 0..ACCOUNTS {
                    sum += c
                        .get_grain::<Account>(name(i).as_str())
                        .balance()
                        .await??
                        .balance;
                }
                Ok(sum)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(sum, total);
    let (recorded, ok) = history.counts();
    assert!(
        recorded > ok,
        "some attempts aborted (conflicts or overdraws)"
    );
    if let Err(v) = history.check() {
        panic!("not serializable: {v}");
    }

    // No lock stays held (confirmations finish after the answer).
    for i in 0..ACCOUNTS {
        let id = GrainId::new("account", name(i).as_str());
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = actor_tx::lock_status(&client, &id, "balance")
                .await
                .unwrap();
            if status.is_free() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{id}: lock still held: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_lock_order_ends_in_a_retryable_abort_not_a_timeout() {
    let cluster = bank(3).await;
    let client = common::own_client(&cluster, 3).await;
    let (x, y) = (
        client.get_grain::<Account>("x"),
        client.get_grain::<Account>("y"),
    );
    x.deposit_alone(50).await.unwrap().unwrap();
    y.deposit_alone(50).await.unwrap().unwrap();
    // Long lock and transaction timeouts: only wait-die can end this soon.
    let slow = TransactionOptions::default()
        .timeout(Duration::from_secs(120))
        .lock_timeout(Duration::from_secs(120));
    let older = slow.clone().priority(Priority { micros: 1, tie: 0 });
    let younger = slow.priority(Priority { micros: 2, tie: 0 });
    let (x_locked, y_locked) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );

    let t1 = {
        let (client, x, y, x_locked, y_locked) = (
            client.clone(),
            x.clone(),
            y.clone(),
            x_locked.clone(),
            y_locked.clone(),
        );
        tokio::spawn(async move {
            let waiting = y_locked.notified();
            run_transaction_with(&client, &older, || async move {
                x.change(-1).await??;
                x_locked.notify_one();
                waiting.await;
                y.change(1).await??; // waits: the holder is younger
                Ok(())
            })
            .await
        })
    };
    let t2 = {
        let (client, x, y) = (client.clone(), x.clone(), y.clone());
        tokio::spawn(async move {
            x_locked.notified().await;
            run_transaction_with(&client, &younger, || async move {
                y.change(-2).await??;
                y_locked.notify_one();
                x.change(2).await??; // dies: the holder is older
                Ok(())
            })
            .await
        })
    };
    let bound = Duration::from_secs(20);
    let r2 = tokio::time::timeout(bound, t2)
        .await
        .expect("the younger transaction must not wait")
        .unwrap();
    let r1 = tokio::time::timeout(bound, t1)
        .await
        .expect("the older transaction must finish")
        .unwrap();
    match r2 {
        Err(Error::Aborted {
            reason: AbortReason::LockConflict { state },
            ..
        }) => {
            assert!(state.contains("account/s:x"), "{state}")
        }
        other => panic!("expected a wait-die abort, got {other:?}"),
    }
    r1.unwrap();
    // Read back (retried: the older transfer's confirmations may still
    // hold its locks for a moment).
    let (bx, by) = actor_tx::retry_transaction(
        &client,
        &TransactionOptions::default(),
        &actor_tx::RetryPolicy::default(),
        || {
            let c = client.clone();
            async move {
                Ok((
                    c.get_grain::<Account>("x").balance().await??.balance,
                    c.get_grain::<Account>("y").balance().await??.balance,
                ))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!((bx, by), (49, 51), "only the older transfer happened");
}
