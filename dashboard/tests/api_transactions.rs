//! The Transactions section: a silo hosting actor-tx's transactional
//! state reports its commits, aborts by reason and lock waits on
//! `/api/transactions` (and in the snapshot); a silo without transactions
//! says it has none.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actor_core::prelude::*;
use actor_tx::{MemoryTxStorage, SiloBuilderTransactionsExt, TransactionalState, run_transaction};
use common::*;
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};

struct Account {
    balance: TransactionalState<i64>,
}

impl Grain for Account {
    const TYPE_NAME: &'static str = "test.account";
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
}

#[grain_methods]
impl Account {
    #[transaction(join)]
    async fn add(&self, n: i64) -> actor_tx::Result<i64> {
        let b = self
            .balance
            .perform_update(|b| {
                *b += n;
                *b
            })
            .await?;
        if b < 0 {
            return Err(actor_tx::abort("overdraw"));
        }
        Ok(b)
    }
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_aborts_by_reason_and_lock_waits_are_shown() {
    let silo = Silo::builder()
        .name("bank")
        .with_transactions(MemoryTxStorage::new())
        .grain_with_async(|ctx| async move {
            Ok(Account {
                balance: TransactionalState::load(&ctx, "balance").await?,
            })
        })
        .with_dashboard(
            DashboardConfig::default()
                .bind(local())
                .refresh(Duration::from_millis(100)),
        )
        .start()
        .await
        .unwrap();
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    for _ in 0..3 {
        run_transaction(&silo, || async {
            a.add(10).await??;
            b.add(-1).await.ok();
            Ok(())
        })
        .await
        .unwrap_err(); // b would be overdrawn: a user abort, both sides undone
    }
    for _ in 0..4 {
        run_transaction(&silo, || async {
            a.add(5).await??;
            Ok(())
        })
        .await
        .unwrap();
    }

    let tx = eventually(
        "the section counts every outcome",
        Duration::from_secs(10),
        || async {
            let r = get(addr, "/api/transactions").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let t = r.json();
            (t["total"]["committed_total"] == 4 && t["total"]["aborted_total"] == 3).then_some(t)
        },
    )
    .await;
    assert_eq!(tx["enabled"], true);
    assert_eq!(tx["total"]["in_doubt_total"], 0);
    assert!(
        tx["total"]["lock_waits_total"].as_u64().unwrap() >= 7,
        "{tx}"
    );
    assert!(tx["total"]["lock_wait_mean_ms"].as_f64().unwrap() >= 0.0);
    let reasons = tx["aborted_by_reason"].as_array().unwrap();
    let user = reasons.iter().find(|r| r["reason"] == "user").unwrap();
    assert_eq!(user["total"], 3, "{tx}");
    assert_eq!(
        reasons
            .iter()
            .map(|r| r["total"].as_u64().unwrap())
            .sum::<u64>(),
        3,
        "no abort but the overdraws: {tx}"
    );
    assert_eq!(tx["silos"][0]["silo"], "bank");
    assert_eq!(tx["silos"][0]["figures"]["committed_total"], 4);
    // The snapshot carries the same section, and the index lists it.
    let snap = get(addr, "/api/overview").await;
    assert_eq!(snap.status, 200);
    let index = get(addr, "/api").await;
    assert!(index.body.contains("/api/transactions"), "{}", index.body);
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_without_transactions_shows_none() {
    let silo = Silo::builder()
        .name("plain")
        .grain::<Probe>()
        .with_dashboard(
            DashboardConfig::default()
                .bind(local())
                .refresh(Duration::from_millis(100)),
        )
        .start()
        .await
        .unwrap();
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let tx = eventually("a snapshot is served", Duration::from_secs(10), || async {
        let r = get(addr, "/api/transactions").await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!(tx["enabled"], false, "{tx}");
    assert_eq!(tx["silos"].as_array().unwrap().len(), 0);
    silo.shutdown().await;
}
