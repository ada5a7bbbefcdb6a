//! Publishing from an external `ClusterClient` on a 2-silo cluster over
//! real TCP: items published by the client reach the implicit consumers in
//! order, every acknowledged publish is delivered (StreamHistory), on the
//! memory provider and on RabbitMQ; the refusals come back to the client
//! as the silo's errors (unknown provider, oversized item, broker down),
//! and a cluster that is gone fails the publish with `Unavailable`. With
//! CI=true a missing broker fails.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::prelude::*;
use actor_streams::{
    Ack, ClusterClientStreamsExt, DEFAULT_RABBITMQ_URL, Delivery, Error, MemoryStreams,
    RabbitStreams, SiloBuilderStreamsExt, StreamId, Streams, metric_names,
};
use actor_testkit::{StreamHistory, TestCluster, Transport};

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records each accepted item in the oracle, and keeps the items.
#[derive(Default)]
struct Recorder {
    got: Vec<i64>,
}

impl Grain for Recorder {
    const TYPE_NAME: &'static str = "recorder";
}

impl Handler<Delivery<i64>> for Recorder {
    async fn handle(&mut self, d: Delivery<i64>, ctx: &GrainContext<Self>) -> Ack {
        if let Some(h) = ctx.silo().extension::<StreamHistory>() {
            h.delivered(ctx.id(), &d.stream, d.token.producer, d.token.seq);
        }
        self.got.push(d.item);
        Ok(())
    }
}

impl Handler<Delivery<String>> for Recorder {
    async fn handle(&mut self, _: Delivery<String>, _: &GrainContext<Self>) -> Ack {
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>, Delivery<String>))]
impl Recorder {
    async fn got(&self) -> Vec<i64> {
        self.got.clone()
    }
}

async fn cluster(rabbit: Option<RabbitStreams>, history: &StreamHistory) -> TestCluster {
    let h = history.clone();
    TestCluster::builder()
        .silos(2)
        .transport(Transport::Loopback)
        .cluster_config(ClusterConfig::fast())
        .client(true)
        .configure(move |_, b| {
            let mut streams = Streams::builder()
                .provider("memory", MemoryStreams::new().max_item_bytes(1024))
                .provider(
                    "down",
                    RabbitStreams::new("amqp://guest:guest@127.0.0.1:1/%2f")
                        .timeout(Duration::from_secs(1)),
                )
                .implicit::<Recorder, i64>("numbers")
                .implicit::<Recorder, String>("words");
            if let Some(r) = &rabbit {
                streams = streams.provider("rabbit", r.clone());
            }
            b.grain::<Recorder>()
                .extension(h.clone())
                .with_streams(streams)
        })
        .build()
        .await
        .expect("the cluster starts")
}

/// The client publishes `n` items on each of 4 streams of `provider`;
/// every one is delivered, in order per stream.
async fn client_items_are_delivered(
    cluster: &TestCluster,
    history: &StreamHistory,
    provider: &str,
    n: i64,
) {
    let client = cluster.client();
    let producers: Vec<_> = (0..4)
        .map(|k| client.stream_producer::<i64>(provider, StreamId::new("numbers", k)))
        .collect();
    for i in 0..n {
        for p in &producers {
            history.publishing(p.stream(), p.producer_id(), i as u64 + 1);
            let t = p.publish(&i).await.unwrap();
            assert_eq!(t.producer, p.producer_id());
            assert_eq!(t.seq, i as u64 + 1, "the client numbers its items");
            history.acked(p.stream(), t.producer, t.seq);
        }
    }
    // A batch too.
    let tokens = producers[0].publish_batch(&[n, n + 1]).await.unwrap();
    assert_eq!(
        tokens.iter().map(|t| t.seq).collect::<Vec<_>>(),
        [n as u64 + 1, n as u64 + 2]
    );
    for t in &tokens {
        history.acked(producers[0].stream(), t.producer, t.seq);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while history.missing() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{provider}: {} acknowledged items never delivered",
            history.missing()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(v) = history.check() {
        panic!("{provider}: {} violations, first: {}", v.len(), v[0]);
    }
    let first = cluster.get_grain::<Recorder>(0).got().await.unwrap();
    let want: Vec<i64> = (0..n + 2).collect();
    assert_eq!(first, want, "{provider}: in order");
    // The silos that published count the items.
    let published: i64 = cluster
        .running()
        .into_iter()
        .filter_map(|i| {
            cluster
                .local(i)
                .metrics()
                .plugin(metric_names::PUBLISHED)
                .find(|m| m.attribute(metric_names::NAMESPACE) == Some("numbers"))
                .map(|m| m.value)
        })
        .sum();
    assert!(published >= 4 * n + 2, "{provider}: published {published}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publishes_on_the_memory_provider_and_its_refusals_come_back() {
    let history = StreamHistory::new();
    let cluster = cluster(None, &history).await;
    client_items_are_delivered(&cluster, &history, "memory", 30).await;

    let client = cluster.client();
    let unknown = client
        .stream_producer::<i64>("nope", StreamId::new("numbers", 9))
        .publish(&1)
        .await;
    assert!(
        matches!(&unknown, Err(Error::UnknownProvider { name, .. }) if name == "nope"),
        "{unknown:?}"
    );
    let big = client
        .stream_producer::<String>("memory", StreamId::new("words", 1))
        .publish(&"x".repeat(4096))
        .await;
    assert!(
        matches!(&big, Err(Error::TooLarge { limit: 1024, .. })),
        "{big:?}"
    );
    let down = client
        .stream_producer::<i64>("down", StreamId::new("numbers", 9))
        .publish(&1)
        .await;
    assert!(matches!(&down, Err(Error::Unavailable { .. })), "{down:?}");
    // The oversized item and the failed publishes reached nobody.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cluster
            .get_grain::<Recorder>(9)
            .got()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publish_to_a_cluster_that_is_gone_is_unavailable() {
    let history = StreamHistory::new();
    let mut cluster = cluster(None, &history).await;
    let p = cluster
        .client()
        .stream_producer::<i64>("memory", StreamId::new("numbers", 1));
    p.publish(&1).await.unwrap();
    for i in cluster.running() {
        cluster.kill_silo(i).unwrap();
    }
    let gone = tokio::time::timeout(Duration::from_secs(60), p.publish(&2))
        .await
        .expect("the publish fails within its call deadline");
    assert!(matches!(&gone, Err(Error::Unavailable { .. })), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publishes_on_rabbitmq_every_acknowledged_item_delivered() {
    let conn = match lapin::Connection::connect(
        DEFAULT_RABBITMQ_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) if !require_service() => return eprintln!("skipping: RabbitMQ unavailable: {e}"),
        Err(e) => panic!("RabbitMQ is required with CI=true: {e}"),
    };
    let prefix = format!("client-{}", uuid::Uuid::new_v4());
    let rabbit = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(prefix.clone())
        .partitions(2)
        .prefetch(8);
    let history = StreamHistory::new();
    let cluster = cluster(Some(rabbit), &history).await;
    client_items_are_delivered(&cluster, &history, "rabbit", 20).await;
    drop(cluster);
    let ch = conn.create_channel().await.unwrap();
    for q in (0..2)
        .map(|p| format!("{prefix}.{p}"))
        .chain([format!("{prefix}.dead")])
    {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}
