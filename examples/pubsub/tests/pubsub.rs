//! The exercise's claims: one typed publish reaches every consumer type
//! declared for the namespace, each region's consumers only get their
//! region's orders, in order, and an explicit subscriber gets what was
//! published while it was subscribed.

use example_pubsub::{OrderSubmitted, play, silo};

#[tokio::test]
async fn every_consumer_type_gets_every_order_of_its_region() {
    let silo = silo().await.unwrap();
    let out = play(&silo).await.unwrap();
    assert_eq!(out.eu_invoices, (5, 1500));
    assert_eq!(out.eu_shipping, [1, 2, 3, 4, 5]);
    assert_eq!(out.us_shipping, [10, 11]);
    assert_eq!(
        out.audited,
        [
            ("eu".to_owned(), 1),
            ("eu".to_owned(), 2),
            ("eu".to_owned(), 3)
        ]
    );
    silo.shutdown().await;
}

#[test]
fn the_message_type_is_the_contract() {
    // What travels is the typed message; its name is stable.
    use actor_streams::StreamItem;
    assert_eq!(OrderSubmitted::NAME, "stream:order_submitted");
}
