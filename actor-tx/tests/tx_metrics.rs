//! The transaction counters as the silo's plug-in metrics (what
//! actor-telemetry exports and the dashboard shows): commits, aborts by
//! reason (a user abort decided by the root before any commit included),
//! lock waits.

mod common;

use actor_core::prelude::*;
use actor_tx::{MemoryTxStorage, SiloBuilderTransactionsExt, metric_names, run_transaction};
use common::{Account, AccountRef};

fn reading(silo: &Silo, name: &str, reason: Option<&str>) -> i64 {
    let m = silo.metrics();
    m.plugin(name)
        .filter(|p| reason.is_none_or(|r| p.attribute(metric_names::ABORT_REASON) == Some(r)))
        .map(|p| p.value)
        .sum()
}

#[tokio::test]
async fn commits_aborts_by_reason_and_lock_waits_are_silo_metrics() {
    let silo = Account::register(Silo::builder().with_transactions(MemoryTxStorage::new()))
        .start()
        .await
        .unwrap();
    let names: Vec<String> = silo
        .extension::<actor_core::MetricSources>()
        .unwrap()
        .descriptors()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    for n in [
        metric_names::COMMITTED,
        metric_names::ABORTED,
        metric_names::IN_DOUBT,
        metric_names::LOCK_WAITS,
        metric_names::LOCK_WAIT_TIME,
    ] {
        assert!(names.iter().any(|x| x == n), "{n} declared: {names:?}");
    }
    assert_eq!(reading(&silo, metric_names::COMMITTED, None), 0);

    let (a, b) = (
        silo.get_grain::<Account>("a"),
        silo.get_grain::<Account>("b"),
    );
    a.deposit_alone(10).await.unwrap().unwrap();
    run_transaction(&silo, || async {
        a.change(-5).await??;
        b.change(5).await??;
        Ok(())
    })
    .await
    .unwrap();
    // An overdraw: the root aborts before any commit.
    run_transaction(&silo, || async {
        b.change(50).await??;
        a.change(-50).await??;
        Ok(())
    })
    .await
    .unwrap_err();

    assert_eq!(
        reading(&silo, metric_names::COMMITTED, None),
        2,
        "seed and transfer"
    );
    assert_eq!(reading(&silo, metric_names::ABORTED, Some("user")), 1);
    assert_eq!(
        reading(&silo, metric_names::ABORTED, None),
        1,
        "no other abort"
    );
    assert_eq!(reading(&silo, metric_names::IN_DOUBT, None), 0);
    assert!(reading(&silo, metric_names::LOCK_WAITS, None) >= 5);
    assert!(reading(&silo, metric_names::LOCK_WAIT_TIME, None) >= 0);
    silo.shutdown().await;
}
