//! Plays the scenario on a fresh SQLite file and checks what the exercise
//! is about: the total never changes, an overdraw aborts both sides, and
//! concurrent transfers commit.

use std::sync::Arc;

use actor_tx::SqliteTxStorage;
use example_transactions::{Scenario, play, start_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_keep_the_total_and_an_overdraw_aborts_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteTxStorage::open(dir.path().join("bank.db"))
        .await
        .unwrap();
    let silos = start_cluster(2, Arc::new(storage)).await.unwrap();
    let scenario = Scenario {
        transfers: 10,
        ..Scenario::default()
    };
    let report = play(&silos, &scenario).await.unwrap();
    assert_eq!(report.initial_total, 800);
    assert_eq!(report.final_total, report.initial_total, "{report:?}");
    assert!(report.overdraw_left_both_unchanged, "{report:?}");
    assert!(report.committed > 0, "{report:?}");
    assert_eq!(report.in_doubt, 0, "no fault was injected: {report:?}");
    let all: usize = report.committed
        + report.overdraws
        + report.in_doubt
        + report.aborted.iter().map(|(_, n)| n).sum::<usize>();
    assert_eq!(
        all,
        scenario.clients * scenario.transfers,
        "every transfer has an outcome"
    );
}
