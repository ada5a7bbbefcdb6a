//! The exercise's claims: nothing is active before the first item, the
//! first item activates the consumer with the stream's key, and it gets
//! every int in order, exactly once.

use example_streams::{Consumer, ConsumerRef, play, silo};

#[tokio::test]
async fn the_first_item_activates_the_consumer_and_it_gets_every_int_in_order() {
    let silo = silo().await.unwrap();
    let out = play(&silo, 7, 15).await.unwrap();
    assert_eq!(out.activations_before, 0);
    assert_eq!(out.received, (1..=15).collect::<Vec<_>>());
    // Other keys' consumers never heard of stream 7.
    let other = silo.get_grain::<Consumer>(8);
    assert!(other.received().await.unwrap().is_empty());
    silo.shutdown().await;
}

#[tokio::test]
async fn two_producers_feed_their_own_consumers() {
    let silo = silo().await.unwrap();
    let (a, b) = tokio::join!(play(&silo, 1, 8), play(&silo, 2, 5));
    assert_eq!(a.unwrap().received, (1..=8).collect::<Vec<_>>());
    assert_eq!(b.unwrap().received, (1..=5).collect::<Vec<_>>());
    silo.shutdown().await;
}
