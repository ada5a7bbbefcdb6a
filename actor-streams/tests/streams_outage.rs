//! Broker outages through a TCP proxy, on RabbitMQ and JetStream: while
//! the proxy is cut (connections dropped, new ones refused) or frozen
//! (connections open, nothing passes), publishes fail with `Unavailable`;
//! once it is restored, publishes succeed again and consumption resumes,
//! and every publish that was acknowledged is delivered (the
//! `StreamHistory` oracle). With CI=true a missing broker fails.

mod common;

use std::time::Duration;

use actor_core::prelude::*;
use actor_streams::{
    Ack, Delivery, DeliveryPolicy, Error, NatsStreams, RabbitStreams, SiloBuilderStreamsExt,
    StreamId, StreamProducer, StreamProvider, Streams,
};
use actor_testkit::StreamHistory;
use common::Proxy;

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

async fn reachable(addr: &str) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => true,
        Err(e) if !require_service() => {
            eprintln!("skipping: {addr} unavailable: {e}");
            false
        }
        Err(e) => panic!("{addr} is required with CI=true: {e}"),
    }
}

#[derive(Default)]
struct Sink;

impl Grain for Sink {
    const TYPE_NAME: &'static str = "sink";
}

impl Handler<Delivery<i64>> for Sink {
    async fn handle(&mut self, d: Delivery<i64>, ctx: &GrainContext<Self>) -> Ack {
        if let Some(h) = ctx.silo().extension::<StreamHistory>() {
            h.delivered(ctx.id(), &d.stream, d.token.producer, d.token.seq);
        }
        Ok(())
    }
}

impl GrainMethods for Sink {
    fn register(m: &mut Methods<Self>) {
        m.add::<Delivery<i64>, _>();
    }
}

/// Publishes `n` items, recording each in the oracle; answers how many
/// were refused, and checks that every refusal is `Unavailable`.
async fn publish(h: &StreamHistory, p: &StreamProducer<i64>, n: usize, next: &mut u64) -> usize {
    let mut refused = 0;
    for _ in 0..n {
        *next += 1;
        h.publishing(p.stream(), p.producer_id(), *next);
        match p.publish(&(*next as i64)).await {
            Ok(t) => {
                assert_eq!(t.seq, *next);
                h.acked(p.stream(), t.producer, t.seq);
            }
            Err(e) => {
                assert!(matches!(e, Error::Unavailable { .. }), "{e}");
                refused += 1;
            }
        }
    }
    refused
}

/// Publishes until one publish succeeds (the broker is back), for at most
/// 30 s.
async fn until_back(h: &StreamHistory, p: &StreamProducer<i64>, next: &mut u64) {
    for _ in 0..300 {
        if publish(h, p, 1, next).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("publishes never succeeded again");
}

async fn outage<P: StreamProvider + Clone>(provider: P, proxy: &std::sync::Arc<Proxy>) {
    let h = StreamHistory::new();
    let silo = Silo::builder()
        .grain::<Sink>()
        .extension(h.clone())
        .with_streams(
            Streams::builder()
                .provider("broker", provider)
                .implicit::<Sink, i64>("numbers")
                .delivery(DeliveryPolicy::default().retry_backoff(Duration::from_millis(20))),
        )
        .start()
        .await
        .unwrap();
    let p = Streams::provider(&silo, "broker")
        .unwrap()
        .producer::<i64>(StreamId::new("numbers", 1));
    let mut next = 0;
    assert_eq!(publish(&h, &p, 20, &mut next).await, 0);

    // Cut: every publish is refused, quickly.
    proxy.cut();
    let started = std::time::Instant::now();
    let refused = publish(&h, &p, 3, &mut next).await;
    assert_eq!(refused, 3, "publishes through a cut proxy are refused");
    assert!(started.elapsed() < Duration::from_secs(30));
    proxy.restore().await;
    until_back(&h, &p, &mut next).await;
    assert_eq!(publish(&h, &p, 20, &mut next).await, 0);

    // Freeze: connections stay open and silent; a publish is refused
    // within the provider's timeout, not hung.
    proxy.freeze();
    let started = std::time::Instant::now();
    assert_eq!(publish(&h, &p, 1, &mut next).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    proxy.cut();
    proxy.restore().await;
    until_back(&h, &p, &mut next).await;
    assert_eq!(publish(&h, &p, 20, &mut next).await, 0);

    // Consumption resumed: every acknowledged item arrives.
    for _ in 0..300 {
        if h.missing() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Err(v) = h.check() {
        panic!("{} violations, first: {}", v.len(), v[0]);
    }
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outage_refuses_publishes_and_loses_nothing_acknowledged() {
    if !reachable("127.0.0.1:5672").await {
        return;
    }
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let prefix = format!("outage-{}", uuid::Uuid::new_v4());
    let provider = RabbitStreams::new(format!("amqp://guest:guest@{}/%2f", proxy.addr))
        .queue_prefix(prefix.clone())
        .partitions(1)
        .prefetch(4)
        .timeout(Duration::from_secs(2));
    outage(provider, &proxy).await;
    let conn = lapin::Connection::connect(
        actor_streams::DEFAULT_RABBITMQ_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for q in [format!("{prefix}.0"), format!("{prefix}.dead")] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_outage_refuses_publishes_and_loses_nothing_acknowledged() {
    if !reachable("127.0.0.1:4222").await {
        return;
    }
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let name = format!("o{}", uuid::Uuid::new_v4().simple());
    let provider = NatsStreams::new(format!("nats://{}", proxy.addr))
        .stream_name(&name)
        .partitions(1)
        .prefetch(4)
        .ack_wait(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    outage(provider.clone(), &proxy).await;
    let client = async_nats::connect(actor_streams::DEFAULT_NATS_URL)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(provider.jetstream_name()).await;
    let _ = js
        .delete_stream(format!("{}_DEAD", provider.jetstream_name()))
        .await;
}
