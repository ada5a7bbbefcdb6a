//! At-least-once under silo kills on a 3-silo TestCluster, on the real
//! RabbitMQ and JetStream: while a producer publishes, the silo holding a
//! partition agent is killed, then another; every acknowledged publish
//! is delivered at least once, first deliveries keep each producer's order,
//! and repeats are flagged by their tokens (the `StreamHistory` oracle of
//! actor-testkit). Also: the partitions' agents are spread over the silos,
//! each pulled by exactly one of them. With CI=true a missing broker fails.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_NATS_URL, DEFAULT_RABBITMQ_URL, Dedup, Delivery, DeliveryPolicy, NatsStreams,
    RabbitStreams, SiloBuilderStreamsExt, StreamId, StreamProvider, Streams,
};
use actor_testkit::{StreamHistory, TestCluster};

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records each accepted item in the oracle; counts repeats with a Dedup.
#[derive(Default)]
struct Recorder {
    dedup: Dedup,
    repeats: u64,
}

impl Grain for Recorder {
    const TYPE_NAME: &'static str = "recorder";
}

impl Handler<Delivery<i64>> for Recorder {
    async fn handle(&mut self, d: Delivery<i64>, ctx: &GrainContext<Self>) -> Ack {
        if let Some(h) = ctx.silo().extension::<StreamHistory>() {
            h.delivered(ctx.id(), &d.stream, d.token.producer, d.token.seq);
        }
        if !self.dedup.first_time(&d.stream, &d.token) {
            self.repeats += 1;
        }
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Recorder {
    #[read_only]
    async fn repeats(&self) -> u64 {
        self.repeats
    }
}

async fn cluster<P: StreamProvider + Clone>(provider: P, history: &StreamHistory) -> TestCluster {
    let h = history.clone();
    TestCluster::builder()
        .silos(3)
        .cluster_config(ClusterConfig::fast())
        .configure(move |_, b| {
            b.grain::<Recorder>().extension(h.clone()).with_streams(
                Streams::builder()
                    .provider("broker", provider.clone())
                    .implicit::<Recorder, i64>("numbers")
                    .delivery(
                        DeliveryPolicy::default()
                            .retry_backoff(Duration::from_millis(20))
                            .turn_timeout(Duration::from_secs(5)),
                    ),
            )
        })
        .build()
        .await
        .expect("the cluster starts")
}

/// The silos (by index) whose streams pull at least one partition now.
fn pulling(cluster: &TestCluster) -> Vec<(usize, Vec<u32>)> {
    cluster
        .running()
        .into_iter()
        .filter_map(|i| {
            let parts: Vec<u32> = Streams::of(cluster.local(i))
                .unwrap()
                .metrics()
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect();
            (!parts.is_empty()).then_some((i, parts))
        })
        .collect()
}

async fn at_least_once_under_kills<P: StreamProvider + Clone>(provider: P, partitions: u32) {
    let history = StreamHistory::new();
    let mut cluster = cluster(provider, &history).await;

    // Every partition gets its agent, each on exactly one silo.
    let mut spread = Vec::new();
    for _ in 0..200 {
        spread = pulling(&cluster);
        let mut all: Vec<u32> = spread.iter().flat_map(|(_, p)| p.clone()).collect();
        all.sort_unstable();
        if all == (0..partitions).collect::<Vec<_>>() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all: Vec<u32> = spread.iter().flat_map(|(_, p)| p.clone()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..partitions).collect::<Vec<_>>(),
        "one agent per partition: {spread:?}"
    );

    // A producer on silo 0 (never killed) publishes on four streams.
    let silo0 = cluster.local(0).clone();
    let h = history.clone();
    let producer = tokio::spawn(async move {
        let broker = Streams::provider(&silo0, "broker").unwrap();
        let streams: Vec<_> = (0..4)
            .map(|k| broker.producer::<i64>(StreamId::new("numbers", k)))
            .collect();
        let mut failed = 0;
        for n in 0..150i64 {
            for p in &streams {
                h.publishing(p.stream(), p.producer_id(), n as u64 + 1);
                match p.publish(&n).await {
                    Ok(t) => h.acked(p.stream(), t.producer, t.seq),
                    Err(_) => failed += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        failed
    });

    // Mid-stream: kill a silo that pulls partitions (not silo 0), later the
    // other one.
    let wait_acked = |n: usize| {
        let h = history.clone();
        async move {
            for _ in 0..600 {
                if h.counts().0 >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_acked(120).await;
    let victim = pulling(&cluster)
        .into_iter()
        .map(|(i, _)| i)
        .find(|i| *i != 0)
        .unwrap_or(1);
    cluster.kill_silo(victim).unwrap();
    wait_acked(360).await;
    let second = if victim == 1 { 2 } else { 1 };
    cluster.kill_silo(second).unwrap();

    let failed = producer.await.unwrap();
    assert_eq!(
        failed, 0,
        "the broker stayed up: every publish was acknowledged"
    );
    for _ in 0..600 {
        if history.missing() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (acked, deliveries, repeats) = history.counts();
    assert_eq!(acked, 600);
    if let Err(v) = history.check() {
        panic!(
            "{} violations (acked {acked}, deliveries {deliveries}), first: {}",
            v.len(),
            v[0]
        );
    }
    eprintln!("acked {acked}, deliveries {deliveries}, repeats {repeats}");
    // Silo 0 pulls everything now.
    assert_eq!(pulling(&cluster).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_delivers_every_acknowledged_item_through_two_silo_kills() {
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
    let prefix = format!("cluster-{}", uuid::Uuid::new_v4());
    let provider = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(prefix.clone())
        .partitions(4)
        .prefetch(8);
    at_least_once_under_kills(provider, 4).await;
    let ch = conn.create_channel().await.unwrap();
    for q in (0..4)
        .map(|p| format!("{prefix}.{p}"))
        .chain([format!("{prefix}.dead")])
    {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_delivers_every_acknowledged_item_through_two_silo_kills() {
    let client = match async_nats::connect(DEFAULT_NATS_URL).await {
        Ok(c) => c,
        Err(e) if !require_service() => return eprintln!("skipping: NATS unavailable: {e}"),
        Err(e) => panic!("NATS is required with CI=true: {e}"),
    };
    let name = format!("c{}", uuid::Uuid::new_v4().simple());
    let provider = NatsStreams::new(DEFAULT_NATS_URL)
        .stream_name(&name)
        .partitions(4)
        .prefetch(8)
        .ack_wait(Duration::from_secs(2));
    at_least_once_under_kills(provider.clone(), 4).await;
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(provider.jetstream_name()).await;
    let _ = js
        .delete_stream(format!("{}_DEAD", provider.jetstream_name()))
        .await;
}
