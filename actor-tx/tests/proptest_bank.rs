//! Property: any set of concurrent transfers (random accounts, amounts,
//! and callers) on one silo keeps the total, leaves no lock held, and
//! yields a serializable history.

mod common;

use std::sync::Arc;

use actor_core::prelude::*;
use actor_testkit::serializability::TransactionHistory;
use actor_tx::{
    MemoryTxStorage, Priority, SiloBuilderTransactionsExt, TransactionOptions, run_transaction_with,
};
use common::{Account, AccountRef, Observed, record};
use parking_lot::Mutex;
use proptest::prelude::*;

const ACCOUNTS: u8 = 4;

async fn play(plan: Vec<Vec<(u8, u8, i64)>>) -> Result<(), TestCaseError> {
    let silo = Account::register(Silo::builder().with_transactions(MemoryTxStorage::new()))
        .start()
        .await
        .unwrap();
    for i in 0..ACCOUNTS {
        silo.get_grain::<Account>(format!("p{i}").as_str())
            .deposit_alone(20)
            .await
            .unwrap()
            .unwrap();
    }
    let history = Arc::new(TransactionHistory::new());
    let mut callers = Vec::new();
    for transfers in plan {
        let (silo, history) = (silo.clone(), history.clone());
        callers.push(tokio::spawn(async move {
            for (from, to, amount) in transfers {
                let to = if to == from { (to + 1) % ACCOUNTS } else { to };
                let options = TransactionOptions::default().priority(Priority::now());
                for _ in 0..30 {
                    let (a, b) = (
                        silo.get_grain::<Account>(format!("p{from}").as_str()),
                        silo.get_grain::<Account>(format!("p{to}").as_str()),
                    );
                    let seen = Arc::new(Mutex::new((String::new(), Vec::<Observed>::new())));
                    let s = seen.clone();
                    let r = run_transaction_with(&silo, &options, || async move {
                        s.lock().0 = actor_tx::current_transaction().unwrap().to_string();
                        let o = a.change(-amount).await?;
                        s.lock().1.push(o?);
                        let o = b.change(amount).await??;
                        s.lock().1.push(o);
                        Ok(())
                    })
                    .await;
                    let (tx, seen) = seen.lock().clone();
                    record(&history, &tx, r.is_ok(), &seen);
                    match r {
                        Err(e) if e.is_retryable() => tokio::task::yield_now().await,
                        _ => break,
                    }
                }
            }
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let id = GrainId::new("account", format!("p{i}").as_str());
        // Confirmations run after the answer: wait for them.
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            let s = actor_tx::lock_status(&silo, &id, "balance").await.unwrap();
            if s.is_free() {
                break s;
            }
            prop_assert!(
                tokio::time::Instant::now() < until,
                "{id}: lock still held: {s:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let balance: common::Balance =
            serde_json::from_str(status.committed.as_deref().unwrap()).unwrap();
        prop_assert!(balance.amount >= 0, "{id} overdrawn: {}", balance.amount);
        total += balance.amount;
    }
    prop_assert_eq!(total, 20 * i64::from(ACCOUNTS));
    if let Err(v) = history.check() {
        return Err(TestCaseError::fail(format!("not serializable: {v}")));
    }
    silo.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn concurrent_transfers_keep_the_invariants(
        plan in proptest::collection::vec(
            proptest::collection::vec((0..ACCOUNTS, 0..ACCOUNTS, 1i64..30), 1..5), 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(play(plan))?;
    }
}
