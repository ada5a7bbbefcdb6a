//! The public types a user holds across `.await` or hands to tasks are
//! `Send` and `Sync` (as tokio's tests/async_send_sync.rs checks its own).

use actor_streams::*;

fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Streams>();
    send_sync::<StreamsBuilder>();
    send_sync::<ProviderHandle>();
    send_sync::<StreamProducer<i64>>();
    send_sync::<SubscriptionHandle<i64>>();
    send_sync::<MemoryStreams>();
    send_sync::<RabbitStreams>();
    send_sync::<NatsStreams>();
    send_sync::<MemorySubscriptions>();
    send_sync::<SqlSubscriptions>();
    send_sync::<Error>();
    send_sync::<Delivery<i64>>();
    send_sync::<Dedup>();
    send_sync::<StreamId>();
    send_sync::<SequenceToken>();
    send_sync::<RawItem>();
    send_sync::<DeadLetter>();
    send_sync::<StreamMetrics>();
    send_sync::<DeliveryPolicy>();
}

#[test]
fn publishing_is_a_send_future() {
    fn send<F: std::future::Future + Send>(_: F) {}
    fn check(p: &StreamProducer<i64>, h: ProviderHandle) {
        send(p.publish(&1));
        send(p.publish_batch(&[1, 2]));
        send(async move {
            let _ = h.producer::<String>(StreamId::new("n", 1));
        });
    }
    let _ = check;
}
