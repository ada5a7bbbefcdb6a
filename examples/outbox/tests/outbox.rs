//! The outbox: messages appended on several silos are processed exactly
//! once (counted from the consumers' stored state), with or without a silo
//! killed half way; two copies of one outbox cannot both mark a message
//! done, and a consumer ignores a repeat.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actor_persistence::ReminderTick;
use example_outbox::{
    ConsumerRef, ConsumerState, Delivery, DeliveryStats, Outbox, OutboxMessage, OutboxRef, Outcome,
    STATE_NAME, Scenario, play, silo_builder,
};

const BOUND: Duration = Duration::from_secs(120);

/// Every consumer's stored state, read with sqlx straight from the file.
async fn stored_consumers(db: &Path) -> BTreeMap<String, ConsumerState> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT grain_id, CAST(payload AS TEXT) FROM grain_state \
         WHERE grain_type = 'consumer' AND state_name = ?1",
    )
    .bind(STATE_NAME)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, json)| (id, serde_json::from_str(&json).unwrap()))
        .collect()
}

/// Counts, per message id, how often the consumers' stored state records
/// it, and checks it against the outcome.
async fn assert_exactly_once(db: &Path, outcome: &Outcome, messages: usize) {
    outcome.check().unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for state in stored_consumers(db).await.values() {
        for id in &state.processed {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), messages, "every message processed");
    assert!(
        counts.values().all(|n| *n == 1),
        "each message processed exactly once: {counts:?}"
    );
    assert_eq!(counts, outcome.processed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_silos_process_every_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let scenario = Scenario {
        kill_one: false,
        ..Scenario::default()
    };
    let outcome = tokio::time::timeout(BOUND, play(&db, &scenario, |l| println!("{l}")))
        .await
        .expect("in time")
        .expect("the scenario ran");
    assert_exactly_once(&db, &outcome, scenario.messages).await;
    assert_eq!(outcome.killed, None);
    // Each silo owns one outbox partition and drained it.
    assert_eq!(
        outcome.dispatched_by.keys().collect::<Vec<_>>(),
        ["silo-a", "silo-b", "silo-c"],
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_processed_exactly_once_when_a_silo_dies_mid_way() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let scenario = Scenario::default();
    let outcome = tokio::time::timeout(BOUND, play(&db, &scenario, |l| println!("{l}")))
        .await
        .expect("in time")
        .expect("the scenario ran");
    assert_exactly_once(&db, &outcome, scenario.messages).await;
    let killed = outcome.killed.clone().expect("a silo was killed");
    assert!(outcome.killed_outbox.is_some());
    // The survivors took the dead silo's outbox over: they marked done at
    // least the messages appended to it after the kill (a third of the
    // second half), whatever the dead silo managed before.
    let by_survivors: u64 = outcome
        .killed_outbox_done_by
        .iter()
        .filter(|(silo, _)| **silo != killed)
        .map(|(_, n)| n)
        .sum();
    let after_kill = (scenario.messages - scenario.messages / 2) as u64 / 3;
    assert!(by_survivors >= after_kill, "{outcome:?}");
}

/// Two silos over one database, each with a copy of outbox 1 and of the
/// consumers (as a silo declared dead but still running would have):
/// both deliver the same messages; the consumers process each once, and
/// the second copy's "mark done" loses the compare-and-set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_an_outbox_deliver_each_message_once() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("split.db");
        let stats = DeliveryStats::default();
        let x = silo_builder("x", &db, stats.clone())
            .await
            .unwrap()
            .start()
            .await
            .unwrap();
        let y = silo_builder("y", &db, stats.clone())
            .await
            .unwrap()
            .start()
            .await
            .unwrap();
        let messages: Vec<OutboxMessage> = (0..4)
            .map(|i| OutboxMessage {
                id: format!("m{i}"),
                consumer: i % 2,
                amount: 10,
            })
            .collect();
        let tick = || ReminderTick {
            name: "dispatch".into(),
            due_millis: 0,
        };
        let (ox, oy) = (x.get_grain::<Outbox>(1), y.get_grain::<Outbox>(1));
        assert_eq!(ox.append(messages.clone()).await.unwrap().unwrap(), 4);
        // Both copies have loaded the 4 pending messages; y's consumer 0
        // is loaded too (empty), and goes stale.
        assert_eq!(oy.outbox().await.unwrap().pending.len(), 4);
        assert_eq!(
            y.get_grain::<example_outbox::Consumer>(0)
                .ledger()
                .await
                .unwrap(),
            ConsumerState::default()
        );

        // x delivers and marks all four done.
        ox.ask(tick()).await.unwrap();
        assert_eq!(ox.outbox().await.unwrap().pending.len(), 0);
        assert_eq!(stats.duplicates.load(Ordering::Relaxed), 0);

        // y's copy delivers again: its stale consumer 0 cannot store (its
        // write loses the compare-and-set), so y stops there and marks
        // nothing.
        oy.ask(tick()).await.unwrap();
        assert_eq!(stats.failed_deliveries.load(Ordering::Relaxed), 1);
        assert_eq!(oy.outbox().await.unwrap().pending.len(), 4);
        // Next time, consumer 0 has reloaded: every message is a repeat;
        // y's "mark done" loses to x's.
        oy.ask(tick()).await.unwrap();
        assert_eq!(stats.duplicates.load(Ordering::Relaxed), 4);
        assert_eq!(stats.mark_conflicts.load(Ordering::Relaxed), 1);
        // Reset, y's copy reloads: nothing pending.
        assert_eq!(oy.outbox().await.unwrap().pending.len(), 0);

        let stored = stored_consumers(&db).await;
        let all: Vec<&String> = stored.values().flat_map(|s| &s.processed).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(
            all.iter().collect::<BTreeSet<_>>().len(),
            4,
            "each message once: {stored:?}"
        );
        assert_eq!(stored.values().map(|s| s.balance).sum::<i64>(), 40);
        x.shutdown().await;
        y.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_ignores_a_message_it_has_processed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consumer.db");
    let silo = silo_builder("solo", &db, DeliveryStats::default())
        .await
        .unwrap()
        .start()
        .await
        .unwrap();
    let consumer = silo.get_grain::<example_outbox::Consumer>(7);
    let m = OutboxMessage {
        id: "once".into(),
        consumer: 7,
        amount: 5,
    };
    assert_eq!(
        consumer.process(m.clone()).await.unwrap().unwrap(),
        Delivery::Processed
    );
    assert!(silo.deactivate_all(Duration::from_secs(5)).await);
    // A fresh activation remembers it: the ids are stored with the effect.
    assert_eq!(
        consumer.process(m).await.unwrap().unwrap(),
        Delivery::Duplicate
    );
    let ledger = consumer.ledger().await.unwrap();
    assert_eq!((ledger.processed.len(), ledger.balance), (1, 5));
    silo.shutdown().await;
}

#[test]
fn the_check_catches_double_and_missing_processing() {
    let sent: BTreeSet<String> = ["a", "b"].map(String::from).into();
    let good = Outcome {
        sent: sent.clone(),
        sent_total: 3,
        processed: BTreeMap::from([("a".into(), 1), ("b".into(), 1)]),
        balance_total: 3,
        left_pending: 0,
        killed: None,
        processed_by: BTreeMap::new(),
        dispatched_by: BTreeMap::new(),
        duplicates: 0,
        mark_conflicts: 0,
        killed_outbox: None,
        killed_outbox_done_by: BTreeMap::new(),
    };
    good.check().unwrap();
    let mut twice = good.clone();
    twice.processed.insert("a".into(), 2);
    assert!(twice.check().is_err());
    let mut lost = good.clone();
    lost.processed.remove("b");
    assert!(lost.check().is_err());
    let mut effect_twice = good.clone();
    effect_twice.balance_total = 4;
    assert!(effect_twice.check().is_err());
    let mut pending = good;
    pending.left_pending = 1;
    assert!(pending.check().is_err());
}
