//! Run with: cargo bench -p benches --bench streams
//!
//! actor-streams against its floors, in one run: the memory provider
//! against actor-core's own `tell` of the same items to the same kind of
//! grain, and the RabbitMQ and JetStream providers against the raw broker
//! client (lapin, async-nats) doing the same publish (confirmed), consume
//! and ack. Each scenario publishes N items in batches of 64 while the
//! consumer runs, and reports throughput (items/s, publish start to last
//! item consumed) and the per-item latency from publish to the consumer's
//! turn (p50, p99). Needs the project machines' RabbitMQ and NATS; a
//! missing broker skips its rows. Prints a Markdown table and writes it to
//! `target/benchmarks/streams.md`. `STREAMS_BENCH_SCALE=0.2` shortens it.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actor_core::prelude::*;
use actor_streams::{
    Ack, DEFAULT_NATS_URL, DEFAULT_RABBITMQ_URL, Delivery, MemoryStreams, NatsStreams,
    RabbitStreams, SiloBuilderStreamsExt, StreamId, StreamProvider, Streams,
};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

const BATCH: usize = 64;

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Latencies and a count, shared by a consumer and the bench.
#[derive(Default)]
struct Meter {
    count: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

impl Meter {
    fn record(&self, stamp: u64) {
        let lat = now_ns().saturating_sub(stamp);
        self.latencies.lock().push(lat);
        self.count.fetch_add(1, Ordering::Release);
    }

    async fn wait(&self, n: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.count.load(Ordering::Acquire) < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        true
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut v = self.latencies.lock().clone();
        v.sort_unstable();
        if v.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        (at(0.50), at(0.99))
    }
}

/// The stream consumer: records each item's latency.
#[derive(Default)]
struct StreamSink;

impl Grain for StreamSink {
    const TYPE_NAME: &'static str = "bench.stream_sink";
}

impl Handler<Delivery<u64>> for StreamSink {
    async fn handle(&mut self, d: Delivery<u64>, ctx: &GrainContext<Self>) -> Ack {
        if let Some(m) = ctx.silo().extension::<Arc<Meter>>() {
            m.record(d.item);
        }
        Ok(())
    }
}

impl GrainMethods for StreamSink {
    fn register(m: &mut Methods<Self>) {
        m.add::<Delivery<u64>, _>();
    }
}

/// The floor of the memory provider: the same item as a one-way message.
#[derive(Default)]
struct TellSink;

impl Grain for TellSink {
    const TYPE_NAME: &'static str = "bench.tell_sink";
}

#[derive(Serialize, Deserialize)]
struct Stamp(u64);

impl Message for Stamp {
    type Reply = ();
    const NAME: &'static str = "stamp";
}

impl Handler<Stamp> for TellSink {
    async fn handle(&mut self, Stamp(s): Stamp, ctx: &GrainContext<Self>) {
        if let Some(m) = ctx.silo().extension::<Arc<Meter>>() {
            m.record(s);
        }
    }
}

impl GrainMethods for TellSink {
    fn register(m: &mut Methods<Self>) {
        m.add::<Stamp, _>();
    }
}

struct Row {
    scenario: String,
    ours: Option<Figures>,
    floor: Option<Figures>,
    target: f64,
}

#[derive(Clone, Copy)]
struct Figures {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn stream_silo<P: StreamProvider>(provider: P, meter: Arc<Meter>) -> Silo {
    Silo::builder()
        .grain::<StreamSink>()
        .grain::<TellSink>()
        .extension(meter)
        .with_streams(
            Streams::builder()
                .provider("p", provider)
                .implicit::<StreamSink, u64>("bench"),
        )
        .start()
        .await
        .expect("silo starts")
}

/// Publishes `n` stamps through provider "p" in batches; waits until the
/// consumer has them all.
async fn run_stream(silo: &Silo, meter: &Meter, n: u64, batch: usize) -> Option<Figures> {
    let producer = Streams::provider(silo, "p")
        .unwrap()
        .producer::<u64>(StreamId::new("bench", 1));
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let k = (batch as u64).min(n - sent);
        let items: Vec<u64> = (0..k).map(|_| now_ns()).collect();
        producer.publish_batch(&items).await.ok()?;
        sent += k;
    }
    if !meter.wait(n, Duration::from_secs(120)).await {
        eprintln!("timed out: {} of {n}", meter.count.load(Ordering::Relaxed));
        return None;
    }
    let secs = started.elapsed().as_secs_f64();
    let (p50_us, p99_us) = meter.percentiles();
    Some(Figures {
        rate: n as f64 / secs,
        p50_us,
        p99_us,
    })
}

async fn memory(n: u64, batch: usize) -> (Figures, Figures) {
    let meter = Arc::new(Meter::default());
    let silo = stream_silo(MemoryStreams::new(), meter.clone()).await;
    // Warm up: activations and allocations.
    run_stream(&silo, &meter, 1000, batch).await;
    let meter = Arc::new(Meter::default());
    let silo2 = stream_silo(MemoryStreams::new(), meter.clone()).await;
    run_stream(&silo2, &meter, 1000, batch).await;
    meter.count.store(0, Ordering::SeqCst);
    meter.latencies.lock().clear();
    let ours = run_stream(&silo2, &meter, n, batch).await.unwrap();
    silo.shutdown().await;
    silo2.shutdown().await;

    // The floor: the same items told one by one to a grain.
    let meter = Arc::new(Meter::default());
    let silo = stream_silo(MemoryStreams::new(), meter.clone()).await;
    let sink = silo.get_grain::<TellSink>(1);
    for _ in 0..1000 {
        sink.tell(Stamp(now_ns())).unwrap();
    }
    meter.wait(1000, Duration::from_secs(30)).await;
    meter.count.store(0, Ordering::SeqCst);
    meter.latencies.lock().clear();
    let started = Instant::now();
    for i in 0..n {
        sink.tell(Stamp(now_ns())).unwrap();
        if i % batch as u64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    meter.wait(n, Duration::from_secs(120)).await;
    let secs = started.elapsed().as_secs_f64();
    let (p50_us, p99_us) = meter.percentiles();
    silo.shutdown().await;
    (
        ours,
        Figures {
            rate: n as f64 / secs,
            p50_us,
            p99_us,
        },
    )
}

async fn rabbitmq(n: u64) -> Option<(Option<Figures>, Option<Figures>)> {
    let conn = lapin::Connection::connect(DEFAULT_RABBITMQ_URL, Default::default())
        .await
        .ok()?;
    let prefix = format!("bench-{}", uuid::Uuid::new_v4());
    let provider = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(prefix.clone())
        .partitions(1)
        .prefetch(BATCH as u16);
    let meter = Arc::new(Meter::default());
    let silo = stream_silo(provider, meter.clone()).await;
    run_stream(&silo, &meter, 500, BATCH).await;
    meter.count.store(0, Ordering::SeqCst);
    meter.latencies.lock().clear();
    let ours = run_stream(&silo, &meter, n, BATCH).await;
    silo.shutdown().await;

    // The floor: lapin alone, the same confirms, prefetch and acks.
    let floor = raw_rabbit(&conn, &format!("{prefix}.raw"), n).await;
    let ch = conn.create_channel().await.ok()?;
    for q in [
        format!("{prefix}.0"),
        format!("{prefix}.dead"),
        format!("{prefix}.raw"),
    ] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
    Some((ours, floor))
}

async fn raw_rabbit(conn: &lapin::Connection, queue: &str, n: u64) -> Option<Figures> {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let publ = conn.create_channel().await.ok()?;
    publ.confirm_select(ConfirmSelectOptions::default())
        .await
        .ok()?;
    publ.queue_declare(
        queue.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .ok()?;
    let cons = conn.create_channel().await.ok()?;
    cons.basic_qos(BATCH as u16, BasicQosOptions::default())
        .await
        .ok()?;
    let mut consumer = cons
        .basic_consume(
            queue.into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .ok()?;
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let stamp = u64::from_le_bytes(d.data[..8].try_into().unwrap());
            m.record(stamp);
            let _ = d.ack(BasicAckOptions::default()).await;
        }
    });
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = (BATCH as u64).min(n - sent);
        let mut confirms = Vec::new();
        for _ in 0..k {
            let body = now_ns().to_le_bytes();
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            confirms.push(
                publ.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .ok()?,
            );
        }
        for c in confirms {
            c.await.ok()?;
        }
        sent += k;
    }
    let ok = meter.wait(n, Duration::from_secs(120)).await;
    let secs = started.elapsed().as_secs_f64();
    reader.abort();
    ok.then(|| {
        let (p50_us, p99_us) = meter.percentiles();
        Figures {
            rate: n as f64 / secs,
            p50_us,
            p99_us,
        }
    })
}

async fn jetstream(n: u64) -> Option<(Option<Figures>, Option<Figures>)> {
    let client = async_nats::connect(DEFAULT_NATS_URL).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let name = format!("b{}", uuid::Uuid::new_v4().simple());
    let provider = NatsStreams::new(DEFAULT_NATS_URL)
        .stream_name(&name)
        .partitions(1)
        .prefetch(BATCH);
    let meter = Arc::new(Meter::default());
    let silo = stream_silo(provider.clone(), meter.clone()).await;
    run_stream(&silo, &meter, 500, BATCH).await;
    meter.count.store(0, Ordering::SeqCst);
    meter.latencies.lock().clear();
    let ours = run_stream(&silo, &meter, n, BATCH).await;
    silo.shutdown().await;
    let _ = js.delete_stream(provider.jetstream_name()).await;
    let _ = js
        .delete_stream(format!("{}_DEAD", provider.jetstream_name()))
        .await;

    let floor = raw_jetstream(&js, &format!("{name}RAW"), n).await;
    let _ = js.delete_stream(format!("{name}RAW")).await;
    Some((ours, floor))
}

async fn raw_jetstream(js: &async_nats::jetstream::Context, name: &str, n: u64) -> Option<Figures> {
    use async_nats::jetstream::{consumer, stream};
    let subject = format!("{}.raw", name.to_lowercase());
    let s = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .ok()?;
    let pull: consumer::PullConsumer = s
        .get_or_create_consumer(
            "raw",
            consumer::pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: BATCH as i64,
                ..Default::default()
            },
        )
        .await
        .ok()?;
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let reader = tokio::spawn(async move {
        loop {
            let Ok(mut batch) = pull
                .fetch()
                .max_messages(BATCH)
                .expires(Duration::from_millis(200))
                .messages()
                .await
            else {
                continue;
            };
            while let Some(Ok(msg)) = batch.next().await {
                let stamp = u64::from_le_bytes(msg.message.payload[..8].try_into().unwrap());
                m.record(stamp);
                let _ = msg.ack().await;
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = (BATCH as u64).min(n - sent);
        let mut acks = Vec::new();
        for _ in 0..k {
            acks.push(
                js.publish(subject.clone(), now_ns().to_le_bytes().to_vec().into())
                    .await
                    .ok()?,
            );
        }
        for a in acks {
            a.await.ok()?;
        }
        sent += k;
    }
    let ok = meter.wait(n, Duration::from_secs(120)).await;
    let secs = started.elapsed().as_secs_f64();
    reader.abort();
    ok.then(|| {
        let (p50_us, p99_us) = meter.percentiles();
        Figures {
            rate: n as f64 / secs,
            p50_us,
            p99_us,
        }
    })
}

fn show(f: Option<Figures>) -> String {
    match f {
        Some(f) => format!("{:.0} | {:.0} / {:.0}", f.rate, f.p50_us, f.p99_us),
        None => "n/a | n/a".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scale: f64 = std::env::var("STREAMS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: f64| ((base * scale) as u64).max(500);
    let mut rows = Vec::new();

    let (ours, floor) = memory(n(100_000.0), BATCH).await;
    rows.push(Row {
        scenario: format!("memory provider, batches of {BATCH} / tell"),
        ours: Some(ours),
        floor: Some(floor),
        target: 0.8,
    });
    let (ours, floor) = memory(n(50_000.0), 1).await;
    rows.push(Row {
        scenario: "memory provider, one item per publish / tell".into(),
        ours: Some(ours),
        floor: Some(floor),
        target: 0.8,
    });
    match rabbitmq(n(20_000.0)).await {
        Some((ours, floor)) => rows.push(Row {
            scenario: "RabbitMQ provider / lapin".into(),
            ours,
            floor,
            target: 0.8,
        }),
        None => eprintln!("RabbitMQ unavailable: skipped"),
    }
    match jetstream(n(20_000.0)).await {
        Some((ours, floor)) => rows.push(Row {
            scenario: "JetStream provider / async-nats".into(),
            ours,
            floor,
            target: 0.8,
        }),
        None => eprintln!("NATS unavailable: skipped"),
    }

    let mut md = String::from(
        "| scenario | ours items/s | ours p50 / p99 µs | floor items/s | floor p50 / p99 µs | ratio | target |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let ratio = match (r.ours, r.floor) {
            (Some(o), Some(f)) => format!("{:.2}x", o.rate / f.rate),
            _ => "n/a".into(),
        };
        let met = match (r.ours, r.floor) {
            (Some(o), Some(f)) if o.rate / f.rate >= r.target => "met",
            (Some(_), Some(_)) => "missed",
            _ => "n/a",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {ratio} | >= {:.1}x ({met}) |\n",
            r.scenario,
            show(r.ours),
            show(r.floor),
            r.target
        ));
    }
    print!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/benchmarks");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("streams.md"), md);
}
