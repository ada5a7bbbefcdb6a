//! The memory provider on one silo: implicit activation by the first item,
//! per-stream order, several consumer types on one namespace, dead letters
//! for failing and undecodable items, refused publishes.

use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, Delivery, DeliveryPolicy, Error, MemoryStreams, SiloBuilderStreamsExt, StreamId, Streams,
};

/// Records what it receives, in order, for the test to read.
#[derive(Default)]
struct Recorder {
    seen: Vec<i64>,
    activations_seen: u32,
}

impl Grain for Recorder {
    const TYPE_NAME: &'static str = "recorder";
    async fn on_activate(&mut self, _ctx: &GrainContext<Self>) -> Result<(), BoxError> {
        self.activations_seen += 1;
        Ok(())
    }
}

type BoxError = actor_core::BoxError;

impl Handler<Delivery<i64>> for Recorder {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        self.seen.push(d.item);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Recorder {
    async fn seen(&self) -> Vec<i64> {
        self.seen.clone()
    }
}

/// A second consumer type on the same namespace: sums.
#[derive(Default)]
struct Summer {
    sum: i64,
}

impl Grain for Summer {
    const TYPE_NAME: &'static str = "summer";
}

impl Handler<Delivery<i64>> for Summer {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        self.sum += d.item;
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Summer {
    async fn sum(&self) -> i64 {
        self.sum
    }
}

/// Fails every odd item.
#[derive(Default)]
struct Picky;

impl Grain for Picky {
    const TYPE_NAME: &'static str = "picky";
}

impl Handler<Delivery<i64>> for Picky {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        if d.item % 2 == 1 {
            Err(format!("odd item {} refused (attempt {})", d.item, d.attempt).into())
        } else {
            Ok(())
        }
    }
}

impl GrainMethods for Picky {
    fn register(m: &mut Methods<Self>) {
        m.add::<Delivery<i64>, _>();
    }
}

async fn silo() -> Silo {
    Silo::builder()
        .grain::<Recorder>()
        .grain::<Summer>()
        .grain::<Picky>()
        .with_streams(
            Streams::builder()
                .provider("mem", MemoryStreams::new().max_item_bytes(1024))
                .implicit::<Recorder, i64>("numbers")
                .implicit::<Summer, i64>("numbers")
                .implicit::<Picky, i64>("picky")
                // "typed" is consumed as i64; strings published there do
                // not decode.
                .implicit::<Recorder, i64>("typed")
                .delivery(
                    DeliveryPolicy::default()
                        .max_attempts(3)
                        .retry_backoff(Duration::from_millis(1)),
                ),
        )
        .start()
        .await
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_first_item_activates_the_implicit_consumer_with_the_streams_key() {
    let silo = silo().await;
    assert_eq!(silo.activation_count(), 0);
    let mem = Streams::provider(&silo, "mem").unwrap();
    mem.producer::<i64>(StreamId::new("numbers", 42))
        .publish(&5)
        .await
        .unwrap();
    let rec = silo.get_grain::<Recorder>(42);
    eventually("the recorder to see the item", || {
        let rec = rec.clone();
        async move { rec.seen().await.unwrap() == vec![5] }
    })
    .await;
    // Both consumer types of the namespace got it; the other key did not.
    assert_eq!(silo.get_grain::<Summer>(42).sum().await.unwrap(), 5);
    assert!(
        silo.get_grain::<Recorder>(43)
            .seen()
            .await
            .unwrap()
            .is_empty()
    );
    let m = Streams::of(&silo).unwrap().metrics();
    let ns = m
        .namespaces
        .iter()
        .find(|n| n.namespace == "numbers")
        .unwrap();
    assert_eq!(ns.published, 1);
    assert_eq!(ns.delivered, 2);
    silo.shutdown().await;
}

#[tokio::test]
async fn each_stream_keeps_its_order_with_interleaved_producers_and_streams() {
    let silo = silo().await;
    let mem = Streams::provider(&silo, "mem").unwrap();
    let streams: Vec<_> = (0..4)
        .map(|k| Arc::new(mem.producer::<i64>(StreamId::new("numbers", k))))
        .collect();
    // Four producers at once, one per stream, mixing single items and
    // batches.
    let mut tasks = Vec::new();
    for p in streams {
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            while n < 300 {
                if n % 3 == 0 {
                    p.publish_batch(&[n, n + 1, n + 2]).await.unwrap();
                    n += 3;
                } else {
                    p.publish(&n).await.unwrap();
                    n += 1;
                }
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<i64> = (0..300).collect();
    for k in 0..4 {
        let rec = silo.get_grain::<Recorder>(k);
        eventually("all 300 items", || {
            let rec = rec.clone();
            async move { rec.seen().await.unwrap().len() >= 300 }
        })
        .await;
        assert_eq!(rec.seen().await.unwrap(), want, "stream {k} out of order");
    }
    silo.shutdown().await;
}

#[tokio::test]
async fn a_consumer_that_keeps_failing_dead_letters_the_item_and_goes_on() {
    let silo = silo().await;
    let mem = Streams::provider(&silo, "mem").unwrap();
    let p = mem.producer::<i64>(StreamId::new("picky", 1));
    p.publish_batch(&[2, 3, 4]).await.unwrap();
    let streams = Streams::of(&silo).unwrap().clone();
    eventually("the odd item in dead letters", || {
        let streams = streams.clone();
        async move { !streams.dead_letters().await.unwrap().is_empty() }
    })
    .await;
    let dead = streams.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.attempts, 3);
    assert_eq!(d.consumer, GrainId::new("picky", 1));
    assert!(
        d.error.contains("odd item 3 refused (attempt 3)"),
        "{}",
        d.error
    );
    // The item is kept: its bytes decode to what was published.
    let item: i64 = silo.decode(&d.payload).unwrap();
    assert_eq!(item, 3);
    assert_eq!(d.token.seq, 2);
    let m = streams.metrics();
    let ns = m
        .namespaces
        .iter()
        .find(|n| n.namespace == "picky")
        .unwrap();
    assert_eq!((ns.delivered, ns.redelivered, ns.dead_lettered), (2, 2, 1));
    silo.shutdown().await;
}

#[tokio::test]
async fn an_item_that_does_not_decode_is_dead_lettered_at_once() {
    let silo = silo().await;
    let mem = Streams::provider(&silo, "mem").unwrap();
    // A producer with the wrong type for the namespace's consumer.
    mem.producer::<String>(StreamId::new("typed", 1))
        .publish(&"not a number".to_owned())
        .await
        .unwrap();
    mem.producer::<i64>(StreamId::new("typed", 1))
        .publish(&7)
        .await
        .unwrap();
    let rec = silo.get_grain::<Recorder>(1);
    eventually("the good item after the bad one", || {
        let rec = rec.clone();
        async move { rec.seen().await.unwrap() == vec![7] }
    })
    .await;
    let dead = Streams::of(&silo).unwrap().dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "a decode error is not retried");
    assert!(
        dead[0].error.contains("does not decode"),
        "{}",
        dead[0].error
    );
    silo.shutdown().await;
}

#[tokio::test]
async fn an_oversized_item_is_refused_at_publish() {
    let silo = silo().await;
    let mem = Streams::provider(&silo, "mem").unwrap();
    let p = mem.producer::<String>(StreamId::new("numbers", 1));
    let err = p.publish(&"x".repeat(2000)).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1024, .. }), "{err}");
    assert!(err.to_string().contains("was not published"), "{err}");
    silo.shutdown().await;
}

#[tokio::test]
async fn configuration_mistakes_are_clear_errors() {
    let silo = silo().await;
    let err = Streams::provider(&silo, "nope").unwrap_err();
    assert!(matches!(err, Error::UnknownProvider { .. }), "{err}");
    assert!(err.to_string().contains("registered: mem"), "{err}");
    silo.shutdown().await;

    // An implicit consumer whose grain type is not registered.
    let err = Silo::builder()
        .with_streams(
            Streams::builder()
                .provider("mem", MemoryStreams::new())
                .implicit::<Recorder, i64>("numbers"),
        )
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`recorder` is the implicit consumer"),
        "{err}"
    );

    // Two providers of one name.
    let err = Silo::builder()
        .with_streams(
            Streams::builder()
                .provider("mem", MemoryStreams::new())
                .provider("mem", MemoryStreams::new()),
        )
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("two stream providers are named `mem`"),
        "{err}"
    );

    // No streams at all.
    let bare = Silo::builder().start().await.unwrap();
    assert!(matches!(
        Streams::provider(&bare, "mem"),
        Err(Error::NotConfigured)
    ));
    bare.shutdown().await;
}

#[tokio::test]
async fn two_silos_in_one_process_keep_their_own_streams() {
    let a = silo().await;
    let b = silo().await;
    Streams::provider(&a, "mem")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 1))
        .publish(&1)
        .await
        .unwrap();
    let rec = a.get_grain::<Recorder>(1);
    eventually("silo a's recorder", || {
        let rec = rec.clone();
        async move { rec.seen().await.unwrap() == vec![1] }
    })
    .await;
    assert!(b.get_grain::<Recorder>(1).seen().await.unwrap().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}
