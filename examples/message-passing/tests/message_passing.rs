//! The producer's calls reach the consumer in order, and each call waits
//! for its reply before the next one is sent.

use std::time::Duration;

use example_message_passing::{build_silo, run_scenario};

const WORK: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn consumer_receives_every_item_in_order() {
    let silo = build_silo(WORK).await.unwrap();
    let summary = tokio::time::timeout(LIMIT, run_scenario(&silo, "p", "c", 25))
        .await
        .expect("scenario timed out")
        .unwrap();

    let seqs: Vec<u64> = summary.deliveries.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (0..25).collect::<Vec<_>>());
    for d in &summary.deliveries {
        assert_eq!(d.payload, format!("item-{}", d.seq));
    }
    silo.shutdown().await;
}

#[tokio::test]
async fn each_reply_arrives_before_the_next_send() {
    let silo = build_silo(WORK).await.unwrap();
    let summary = tokio::time::timeout(LIMIT, run_scenario(&silo, "p", "c", 25))
        .await
        .expect("scenario timed out")
        .unwrap();

    // Consumer side: every item came from a producer that already held the
    // reply to the item before it.
    assert!(
        summary
            .deliveries
            .iter()
            .all(|d| d.caller_had_previous_reply),
        "{:?}",
        summary.deliveries
    );
    // Producer side: reply n answers item n, and the consumer had processed
    // exactly n + 1 items when it answered.
    assert_eq!(summary.round_trips.len(), 25);
    for (i, trip) in summary.round_trips.iter().enumerate() {
        assert_eq!(trip.ack.seq, i as u64);
        assert_eq!(trip.ack.processed, i as u64 + 1);
        // The caller waited for the consumer's work, not just for a queue.
        assert!(
            trip.elapsed >= WORK,
            "round trip {i} took {:?}",
            trip.elapsed
        );
    }
    silo.shutdown().await;
}

#[tokio::test]
async fn a_second_run_continues_the_same_consumer() {
    // The consumer is one virtual grain: a second producer calling it by
    // the same key sees the state the first one left.
    let silo = build_silo(Duration::ZERO).await.unwrap();
    let first = tokio::time::timeout(LIMIT, run_scenario(&silo, "p1", "shared", 10))
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(LIMIT, run_scenario(&silo, "p2", "shared", 10))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(first.deliveries.len(), 10);
    assert_eq!(second.deliveries.len(), 20);
    assert_eq!(second.round_trips.last().unwrap().ack.processed, 20);
    // The first item of the second run was sent with no earlier reply
    // (`last_ack` = None) while the consumer had already processed item 9,
    // so only that delivery is out of step.
    let out_of_step: Vec<usize> = second
        .deliveries
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.caller_had_previous_reply)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(out_of_step, vec![10]);
    silo.shutdown().await;
}
