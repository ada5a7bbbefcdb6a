//! Partitions follow the cluster: on a 2-silo TestCluster pulling a real
//! broker, a third silo joins mid-stream and the agents of the partitions
//! it owns move to it; an ownership set with `Streams::set_ownership`
//! overrides the cluster's view. Throughout, no partition may be pulled by
//! two silos at once (checked on the agents' `partition opened` /
//! `partition closed` events, in the order they happened), and every
//! acknowledged publish is delivered at least once in order
//! (`StreamHistory`). With CI=true a missing broker fails.
//!
//! Single pulling holds by construction (see `actor_streams::agent` and
//! docs/streams.md): a partition is read only inside its agent's one
//! activation, opened only where the silo owns the partition; a silo that
//! joins activates nothing before every member has applied its view, the
//! old silo closes the partition and deactivates, and the directory lets
//! the agent go, for the owner to activate it, only after that. The
//! overlaps are counted from the first event, while the first two silos
//! form the cluster too. Before the joining silo was fenced ahead of its
//! start hooks, these tests found a partition opened by the joining silo
//! while the old owner still had it open in two runs of three (its keeper
//! had registered the agent in its one-member view).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_NATS_URL, DEFAULT_RABBITMQ_URL, Delivery, DeliveryPolicy, NatsStreams,
    PULL_EVENTS, RabbitStreams, SiloBuilderStreamsExt, StreamId, StreamProvider, Streams,
};
use actor_testkit::{StreamHistory, TestCluster};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// One pull event: provider, partition, silo, opened (else closed).
type PullEvent = (String, u32, String, bool);

/// The agents' pull events of the whole process, in the order they were
/// logged (a lock orders them).
#[derive(Clone, Default)]
struct PullLog(Arc<Mutex<Vec<PullEvent>>>);

impl PullLog {
    /// The process's log (installed once as the global subscriber).
    fn get() -> PullLog {
        static LOG: OnceLock<PullLog> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = PullLog::default();
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::FilterFn::new(|m| {
                    m.target() == PULL_EVENTS
                        || (std::env::var_os("PULL_DEBUG").is_some()
                            && (m.target().starts_with("actor_streams")
                                || m.target().starts_with("actor_cluster")))
                }))
                .with(log.clone())
                .init();
            log
        })
        .clone()
    }

    fn of(&self, provider: &str) -> Vec<PullEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == provider)
            .cloned()
            .collect()
    }

    /// Every time a silo opened a partition of `provider` another silo
    /// had open.
    fn overlaps(&self, provider: &str) -> Vec<String> {
        overlaps(&self.of(provider))
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }
}

/// The checker: a partition opened by a silo while another silo has it
/// open is an overlap (with the event's index).
fn overlaps(events: &[PullEvent]) -> Vec<(usize, String)> {
    let mut open: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, (_, p, silo, opened)) in events.iter().enumerate() {
        let holders = open.entry(*p).or_default();
        if *opened {
            if let Some(other) = holders.iter().find(|s| *s != silo) {
                bad.push((
                    i,
                    format!("event {i}: {silo} opened partition {p} while {other} had it open"),
                ));
            }
            holders.insert(silo.clone());
        } else {
            holders.remove(silo);
        }
    }
    bad
}

#[derive(Default)]
struct Fields {
    silo: Option<String>,
    provider: Option<String>,
    partition: Option<u32>,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        match f.name() {
            "silo" => self.silo = Some(v.to_owned()),
            "provider" => self.provider = Some(v.to_owned()),
            _ => {}
        }
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        if f.name() == "partition" {
            self.partition = u32::try_from(v).ok();
        }
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        if f.name() == "partition" {
            self.partition = u32::try_from(v).ok();
        }
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        match f.name() {
            "message" => self.message = format!("{v:?}"),
            "provider" => self.provider = Some(format!("{v}", v = DisplayDebug(v))),
            "silo" => self.silo = Some(format!("{v}", v = DisplayDebug(v))),
            _ => {}
        }
    }
}

/// A `Debug` value shown without the quotes `Debug` puts around strings.
struct DisplayDebug<'a>(&'a dyn std::fmt::Debug);
impl std::fmt::Display for DisplayDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:?}", self.0);
        f.write_str(s.trim_matches('"'))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PullLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if std::env::var_os("PULL_DEBUG").is_some() {
            eprintln!(
                "{:?} {} {:?}",
                std::time::Instant::now(),
                event.metadata().target(),
                event
            );
        }
        let opened = match f.message.as_str() {
            "partition opened" => true,
            "partition closed" => false,
            _ => return,
        };
        if let (Some(silo), Some(provider), Some(partition)) = (f.silo, f.provider, f.partition) {
            self.0
                .lock()
                .unwrap()
                .push((provider, partition, silo, opened));
        }
    }
}

/// Records each accepted item in the oracle.
#[derive(Default)]
struct Recorder;

impl Grain for Recorder {
    const TYPE_NAME: &'static str = "recorder";
}

impl Handler<Delivery<i64>> for Recorder {
    async fn handle(&mut self, d: Delivery<i64>, ctx: &GrainContext<Self>) -> Ack {
        if let Some(h) = ctx.silo().extension::<StreamHistory>() {
            h.delivered(ctx.id(), &d.stream, d.token.producer, d.token.seq);
        }
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Recorder {}

async fn cluster<P: StreamProvider + Clone>(
    name: &'static str,
    provider: P,
    history: &StreamHistory,
    silos: usize,
) -> TestCluster {
    let h = history.clone();
    TestCluster::builder()
        .silos(silos)
        .cluster_config(ClusterConfig::fast())
        .configure(move |_, b| {
            b.grain::<Recorder>().extension(h.clone()).with_streams(
                Streams::builder()
                    .provider(name, provider.clone())
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

/// The partitions each running silo pulls now, by silo index.
fn pulling(cluster: &TestCluster) -> BTreeMap<usize, Vec<u32>> {
    cluster
        .running()
        .into_iter()
        .map(|i| {
            let parts = Streams::of(cluster.local(i))
                .unwrap()
                .metrics()
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect();
            (i, parts)
        })
        .collect()
}

/// Waits until `done` holds for `pulling`, or fails saying `what`.
async fn wait_pulling(
    cluster: &TestCluster,
    what: &str,
    secs: u64,
    done: impl Fn(&BTreeMap<usize, Vec<u32>>) -> bool,
) -> BTreeMap<usize, Vec<u32>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = pulling(cluster);
        if done(&now) {
            return now;
        }
        if tokio::time::Instant::now() > deadline {
            let log = PullLog::get().0.lock().unwrap().clone();
            let tail: Vec<_> = log.iter().rev().take(40).collect();
            panic!("{what}: never happened; pulling {now:?}; last pull events {tail:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every partition pulled, each by one silo.
fn each_once(now: &BTreeMap<usize, Vec<u32>>, partitions: u32) -> bool {
    let mut all: Vec<u32> = now.values().flatten().copied().collect();
    all.sort_unstable();
    all == (0..partitions).collect::<Vec<_>>()
}

fn agent(name: &str, partition: u32) -> GrainId {
    GrainId::new("streams.agent", format!("{name}|{partition}"))
}

/// Publishes `rounds` items on each of 8 streams from silo 0, recording
/// them in `history`; answers how many publishes failed.
fn produce(
    cluster: &TestCluster,
    name: &'static str,
    history: &StreamHistory,
    rounds: i64,
) -> tokio::task::JoinHandle<usize> {
    let silo0 = cluster.local(0).clone();
    let h = history.clone();
    tokio::spawn(async move {
        let broker = Streams::provider(&silo0, name).unwrap();
        let streams: Vec<_> = (0..8)
            .map(|k| broker.producer::<i64>(StreamId::new("numbers", k)))
            .collect();
        let mut failed = 0;
        for n in 0..rounds {
            for p in &streams {
                h.publishing(p.stream(), p.producer_id(), n as u64 + 1);
                match p.publish(&n).await {
                    Ok(t) => h.acked(p.stream(), t.producer, t.seq),
                    Err(_) => failed += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failed
    })
}

async fn all_delivered(history: &StreamHistory, want: usize) {
    for _ in 0..600 {
        if history.missing() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (acked, deliveries, _) = history.counts();
    assert_eq!(acked, want);
    if let Err(v) = history.check() {
        panic!(
            "{} violations (acked {acked}, deliveries {deliveries}), first: {}",
            v.len(),
            v[0]
        );
    }
}

async fn partitions_follow_a_joining_silo<P: StreamProvider + Clone>(
    name: &'static str,
    provider: P,
    partitions: u32,
) {
    let log = PullLog::get();
    let history = StreamHistory::new();
    let mut cluster = cluster(name, provider, &history, 2).await;
    cluster
        .wait_until_stable(Duration::from_secs(30))
        .await
        .unwrap();
    wait_pulling(
        &cluster,
        "every partition pulled by one of 2 silos",
        60,
        |p| each_once(p, partitions),
    )
    .await;
    // Overlaps count from the first event: while the first two silos form
    // the cluster, neither may take a partition the other holds.
    let bad = log.overlaps(name);
    assert!(
        bad.is_empty(),
        "pulled by two silos while the cluster formed: {bad:?}"
    );

    let producer = produce(&cluster, name, &history, 120);
    while history.counts().0 < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = cluster.start_silo().await.unwrap();
    cluster
        .wait_until_stable(Duration::from_secs(30))
        .await
        .unwrap();
    // The partitions the new silo owns in its view: where their agents go.
    let me = cluster.silo(third).address().endpoint.clone();
    let owned: Vec<u32> = (0..partitions)
        .filter(|p| cluster.silo(third).owner_of(&agent(name, *p)) == me)
        .collect();
    assert!(
        !owned.is_empty(),
        "with these endpoints the new silo owns some of the {partitions} partitions"
    );
    let now = wait_pulling(&cluster, "the new silo pulls what it owns", 60, |p| {
        p.get(&third) == Some(&owned) && each_once(p, partitions)
    })
    .await;
    eprintln!("after the join: {now:?}");

    assert_eq!(producer.await.unwrap(), 0, "every publish was acknowledged");
    let bad = log.overlaps(name);
    assert!(bad.is_empty(), "pulled by two silos at once: {bad:?}");
    all_delivered(&history, 8 * 120).await;
    let events = log.of(name);
    let third_name = cluster.name(third).to_owned();
    assert!(
        events
            .iter()
            .any(|e| e.2 == third_name && e.3 && owned.contains(&e.1)),
        "the new silo opened its partitions: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.2 != third_name && !e.3),
        "an old silo gave a partition up: {events:?}"
    );
}

#[test]
fn the_overlap_checker_fails_on_a_partition_pulled_twice() {
    let e = |p: u32, s: &str, o: bool| ("x".to_owned(), p, s.to_owned(), o);
    // A clean hand-over, then the same silo again: fine.
    let good = [
        e(0, "a", true),
        e(1, "b", true),
        e(0, "a", false),
        e(0, "c", true),
        e(0, "c", false),
        e(0, "c", true),
    ];
    assert!(overlaps(&good).is_empty());
    // c opens 0 before a closed it.
    let bad = [e(0, "a", true), e(0, "c", true), e(0, "a", false)];
    let found = overlaps(&bad);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 1);
    assert!(found[0].1.contains("c opened partition 0 while a"));
}

async fn rabbit(partitions: u32) -> Option<(RabbitStreams, String, lapin::Connection)> {
    let conn = match lapin::Connection::connect(
        DEFAULT_RABBITMQ_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) if !require_service() => {
            eprintln!("skipping: RabbitMQ unavailable: {e}");
            return None;
        }
        Err(e) => panic!("RabbitMQ is required with CI=true: {e}"),
    };
    let prefix = format!("rebalance-{}", uuid::Uuid::new_v4());
    let provider = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(prefix.clone())
        .partitions(partitions)
        .prefetch(8);
    Some((provider, prefix, conn))
}

async fn delete_queues(conn: lapin::Connection, prefix: &str, partitions: u32) {
    let ch = conn.create_channel().await.unwrap();
    for q in (0..partitions)
        .map(|p| format!("{prefix}.{p}"))
        .chain([format!("{prefix}.dead")])
    {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

async fn nats(partitions: u32) -> Option<(NatsStreams, async_nats::jetstream::Context)> {
    let client = match async_nats::connect(DEFAULT_NATS_URL).await {
        Ok(c) => c,
        Err(e) if !require_service() => {
            eprintln!("skipping: NATS unavailable: {e}");
            return None;
        }
        Err(e) => panic!("NATS is required with CI=true: {e}"),
    };
    let name = format!("r{}", uuid::Uuid::new_v4().simple());
    let provider = NatsStreams::new(DEFAULT_NATS_URL)
        .stream_name(&name)
        .partitions(partitions)
        .prefetch(8)
        .ack_wait(Duration::from_secs(2));
    Some((provider, async_nats::jetstream::new(client)))
}

async fn delete_stream(js: async_nats::jetstream::Context, provider: &NatsStreams) {
    let _ = js.delete_stream(provider.jetstream_name()).await;
    let _ = js
        .delete_stream(format!("{}_DEAD", provider.jetstream_name()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_partitions_move_to_a_joining_silo_never_pulled_twice() {
    let Some((provider, prefix, conn)) = rabbit(8).await else {
        return;
    };
    partitions_follow_a_joining_silo("rabbit-join", provider, 8).await;
    delete_queues(conn, &prefix, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_partitions_move_to_a_joining_silo_never_pulled_twice() {
    let Some((provider, js)) = nats(8).await else {
        return;
    };
    partitions_follow_a_joining_silo("nats-join", provider.clone(), 8).await;
    delete_stream(js, &provider).await;
}

/// `Streams::set_ownership` overrides the silo's view: an agent on a silo
/// that does not own it gives its partition back, the broker keeps the
/// items, and once the silo owns it again they are pulled and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_an_agent_that_does_not_own_its_partition_gives_it_back() {
    let Some((provider, prefix, conn)) = rabbit(2).await else {
        return;
    };
    let log = PullLog::get();
    let history = StreamHistory::new();
    let silo = Silo::builder()
        .name("owner-test")
        .grain::<Recorder>()
        .extension(history.clone())
        .with_streams(
            Streams::builder()
                .provider("rabbit-own", provider.clone())
                .implicit::<Recorder, i64>("numbers"),
        )
        .start()
        .await
        .unwrap();
    let streams = Streams::of(&silo).unwrap().clone();
    let held = |n: usize| {
        let streams = streams.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while streams.metrics().partitions.len() != n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never {n} partitions pulled: {:?}",
                    streams.metrics().partitions
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    held(2).await;
    streams.set_ownership(Arc::new(|_| false));
    held(0).await;
    let closed = log
        .of("rabbit-own")
        .iter()
        .filter(|e| !e.3)
        .map(|e| e.1)
        .collect::<BTreeSet<_>>();
    assert_eq!(closed, BTreeSet::from([0, 1]), "both partitions closed");

    let broker = Streams::provider(&silo, "rabbit-own").unwrap();
    let producers: Vec<_> = (0..4)
        .map(|k| broker.producer::<i64>(StreamId::new("numbers", k)))
        .collect();
    for n in 0..5 {
        for p in &producers {
            history.publishing(p.stream(), p.producer_id(), n as u64 + 1);
            let t = p.publish(&n).await.unwrap();
            history.acked(p.stream(), t.producer, t.seq);
        }
    }
    // Not owned: nothing is pulled, the broker keeps all 20 items.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(history.counts().1, 0, "nothing delivered while not owned");
    assert!(streams.metrics().partitions.is_empty());

    streams.set_ownership(Arc::new(|_| true));
    all_delivered(&history, 20).await;
    silo.shutdown().await;
    delete_queues(conn, &prefix, 2).await;
}
