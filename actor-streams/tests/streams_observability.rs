//! Observability of streams: the figures per namespace (published,
//! delivered, redelivered, dead-lettered, in flight) and per partition
//! (items held, acked, consumer lag) are in the silo's metrics snapshot,
//! reach an OTLP collector through actor-telemetry and show on the
//! dashboard's Streams page; and the trace of a publish continues into
//! each consumer's turn on every provider, for implicit consumers (the
//! typed path) and explicit subscriptions (the encoded path), from a
//! producer grain's turn or from an external caller's `traceparent`.
//! With CI=true a missing broker fails the broker tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{CallInfo, IncomingCallFilter, SpanId, TRACEPARENT, TraceContext};
use actor_streams::{
    Ack, DEFAULT_NATS_URL, DEFAULT_RABBITMQ_URL, Delivery, DeliveryError, DeliveryPolicy,
    MemoryStreams, NatsStreams, RabbitStreams, SiloBuilderStreamsExt, StreamId, Streams,
    metric_names as names,
};
use actor_telemetry::collector::{Collector, str_attr};
use actor_telemetry::{SiloBuilderTelemetryExt, Telemetry};
use dashboard::{Dashboard, DashboardConfig, SiloBuilderDashboardExt};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn require_service() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Keeps what it gets. A negative item fails its turn; an item of 1000
/// or more takes `item - 1000` ms first (a slow consumer).
#[derive(Default)]
struct Sink {
    got: Vec<i64>,
}

impl Grain for Sink {
    const TYPE_NAME: &'static str = "sink";
}

impl Handler<Delivery<i64>> for Sink {
    async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
        if d.item < 0 {
            return Err(DeliveryError::from("negative items are refused"));
        }
        if d.item >= 1000 {
            tokio::time::sleep(Duration::from_millis((d.item - 1000) as u64)).await;
        }
        self.got.push(d.item);
        Ok(())
    }
}

#[grain_methods(also_handles(Delivery<i64>))]
impl Sink {
    async fn got(&self) -> Vec<i64> {
        self.got.clone()
    }

    /// Subscribes this sink explicitly to `(namespace, key)` of `provider`.
    async fn follow(
        &self,
        provider: String,
        namespace: String,
        key: i64,
        ctx: &GrainContext<Self>,
    ) -> Result<(), String> {
        let p = Streams::provider(ctx.silo(), &provider).map_err(|e| e.to_string())?;
        p.subscribe::<Sink, i64>(&ctx.this(), StreamId::new(namespace, key))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Publishes from a turn of its own and answers that turn's trace context.
#[derive(Default)]
struct Producer;

impl Grain for Producer {
    const TYPE_NAME: &'static str = "producer";
}

#[grain_methods]
impl Producer {
    async fn publish(
        &self,
        provider: String,
        namespace: String,
        key: i64,
        items: Vec<i64>,
        ctx: &GrainContext<Self>,
    ) -> Result<String, String> {
        let p = Streams::provider(ctx.silo(), &provider).map_err(|e| e.to_string())?;
        p.producer::<i64>(StreamId::new(namespace, key))
            .publish_batch(&items)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TraceContext::current()
            .expect("a turn has a trace context")
            .to_string())
    }
}

/// The deliveries sinks received: sink key, the turn's trace context and
/// its parent span.
#[derive(Clone, Default)]
struct Turns(Arc<Mutex<Vec<Turn>>>);

/// A delivery's sink key, trace context and parent span.
type Turn = (i64, TraceContext, Option<SpanId>);

impl IncomingCallFilter for Turns {
    fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
        if call.grain.grain_type.as_str() == "sink" && call.method.starts_with("stream:") {
            let key = call.grain.key.as_int().unwrap_or(-1);
            self.0
                .lock()
                .unwrap()
                .push((key, call.trace, call.parent_span));
        }
        Ok(())
    }
}

impl Turns {
    fn of(&self, key: i64) -> Vec<(TraceContext, Option<SpanId>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.0 == key)
            .map(|t| (t.1, t.2))
            .collect()
    }
}

async fn wait_for_items(silo: &Silo, key: i64, n: usize, secs: u64) -> Vec<i64> {
    let sink = silo.get_grain::<Sink>(key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = sink.got().await.unwrap();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of plug-in figure `name` for namespace `ns` on `silo`.
fn figure(silo: &Silo, name: &str, ns: &str) -> Option<i64> {
    silo.metrics()
        .plugin(name)
        .find(|m| m.attribute(names::NAMESPACE) == Some(ns))
        .map(|m| m.value)
}

/// GET `path` from the dashboard at `addr`: status and JSON body.
async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Waits until the dashboard's `/api/streams` satisfies `done`.
async fn streams_page(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = get_json(addr, "/api/streams").await;
        if status == 200 && done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dashboard never showed {what}: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of `m`'s points whose attribute `attr` is `value`.
fn points(m: &Metric, attr: &str, value: &str) -> Option<i64> {
    let points: Vec<_> = match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.iter().collect(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
        _ => return None,
    };
    let matching: Vec<i64> = points
        .into_iter()
        .filter(|p| str_attr(&p.attributes, attr).as_deref() == Some(value))
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            Some(number_data_point::Value::AsDouble(v)) => Some(v as i64),
            None => None,
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn dashboard_config() -> DashboardConfig {
    DashboardConfig::default()
        .bind("127.0.0.1:0".parse().unwrap())
        .refresh(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_are_in_the_silo_metrics_in_otlp_and_on_the_dashboard() {
    let (collector, endpoint) = Collector::start().await.unwrap();
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .from_env(false)
        .service_name("streams-test")
        .instance("obs-1")
        .export_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let silo = Silo::builder()
        .name("obs-1")
        .grain::<Sink>()
        .with_telemetry(&telemetry)
        .with_dashboard(dashboard_config())
        .with_streams(
            Streams::builder()
                .provider("memory", MemoryStreams::new())
                .implicit::<Sink, i64>("orders")
                .delivery(
                    DeliveryPolicy::default()
                        .max_attempts(2)
                        .retry_backoff(Duration::from_millis(10)),
                ),
        )
        .start()
        .await
        .unwrap();
    telemetry.observe(&silo);
    let orders = Streams::provider(&silo, "memory").unwrap();
    // Nine good items and one that fails twice, then is dead-lettered.
    let items: Vec<i64> = (1..=9).chain([-1]).collect();
    orders
        .producer::<i64>(StreamId::new("orders", 1))
        .publish_batch(&items)
        .await
        .unwrap();
    assert_eq!(wait_for_items(&silo, 1, 9, 20).await.len(), 9);
    let streams = Streams::of(&silo).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while streams.dead_letters().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The silo's own snapshot.
    assert_eq!(figure(&silo, names::PUBLISHED, "orders"), Some(10));
    assert_eq!(figure(&silo, names::DELIVERED, "orders"), Some(9));
    assert_eq!(figure(&silo, names::REDELIVERED, "orders"), Some(1));
    assert_eq!(figure(&silo, names::DEAD_LETTERED, "orders"), Some(1));
    assert_eq!(figure(&silo, names::IN_FLIGHT, "orders"), Some(0));
    assert_eq!(figure(&silo, names::PUBLISHED, "elsewhere"), None);
    let declared: Vec<_> = silo
        .extension::<actor_core::MetricSources>()
        .unwrap()
        .descriptors()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    for name in [
        names::PUBLISHED,
        names::DELIVERED,
        names::REDELIVERED,
        names::DEAD_LETTERED,
        names::IN_FLIGHT,
        names::PARTITION_IN_FLIGHT,
        names::PARTITION_LAG,
        names::PARTITION_ACKED,
    ] {
        assert!(declared.iter().any(|d| d == name), "{name} not declared");
    }

    // OTLP: under the declared names, per namespace and silo.
    let exported = collector
        .wait_for(Duration::from_secs(20), |c| {
            [
                (names::PUBLISHED, 10),
                (names::DELIVERED, 9),
                (names::REDELIVERED, 1),
                (names::DEAD_LETTERED, 1),
                (names::IN_FLIGHT, 0),
            ]
            .iter()
            .all(|(name, want)| {
                c.metric("obs-1", name)
                    .and_then(|m| points(&m, names::NAMESPACE, "orders"))
                    == Some(*want)
            })
        })
        .await;
    assert!(exported, "the stream figures never reached the collector");
    let published = collector.metric("obs-1", names::PUBLISHED).unwrap();
    assert!(
        matches!(&published.data, Some(metric::Data::Sum(s)) if s.is_monotonic),
        "published is a counter: {published:?}"
    );
    assert_eq!(points(&published, "silo.name", "obs-1"), Some(10));
    let in_flight = collector.metric("obs-1", names::IN_FLIGHT).unwrap();
    assert!(
        matches!(&in_flight.data, Some(metric::Data::Gauge(_))),
        "in flight is a gauge: {in_flight:?}"
    );

    // The dashboard: the JSON API, the index of endpoints and the page.
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let page = streams_page(addr, "the orders namespace", |v| {
        v["namespaces"][0]["published_total"] == 10
            && v["namespaces"][0]["delivered_total"] == 9
            && v["namespaces"][0]["dead_lettered_total"] == 1
    })
    .await;
    assert_eq!(page["enabled"], true);
    let ns = &page["namespaces"][0];
    assert_eq!(ns["namespace"], "orders");
    assert_eq!(ns["redelivered_total"], 1);
    assert_eq!(ns["in_flight"], 0);
    assert_eq!(ns["silos"], serde_json::json!(["obs-1"]));
    assert_eq!(page["partitions"], serde_json::json!([]), "memory has none");
    let (_, snap) = get_json(addr, "/api/snapshot").await;
    assert_eq!(snap["streams"]["namespaces"][0]["namespace"], "orders");
    let (_, index) = get(addr, "/api").await;
    assert!(index.contains("/api/streams"), "{index}");
    let (_, html) = get(addr, "/").await;
    assert!(html.contains("page-streams") && html.contains("#streams"));
    let (_, js) = get(addr, "/app.js").await;
    assert!(js.contains("renderStreams") && js.contains("stream-ns-table"));

    silo.shutdown().await;
    telemetry.shutdown().await;
}

/// A silo without streams has no stream figures: the snapshot holds
/// none, and the page says so rather than showing zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_without_streams_shows_no_stream_figures() {
    let silo = Silo::builder()
        .name("plain")
        .grain::<Sink>()
        .with_dashboard(dashboard_config())
        .start()
        .await
        .unwrap();
    assert!(silo.metrics().plugins.is_empty());
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let page = streams_page(addr, "a first snapshot", |v| v.is_object()).await;
    assert_eq!(page["enabled"], false);
    assert_eq!(page["namespaces"], serde_json::json!([]));
    silo.shutdown().await;
}

/// Checks that every delivery to sinks `implicit` (an implicit consumer,
/// the typed path) and `explicit` (an explicit subscription, the encoded
/// path) is a child of the publishing turn.
async fn check_trace(silo: &Silo, turns: &Turns, provider: &str) {
    let (implicit, explicit) = (5, 6);
    silo.get_grain::<Sink>(explicit)
        .follow(provider.into(), "plain".into(), implicit)
        .await
        .unwrap()
        .unwrap();
    let producer = silo.get_grain::<Producer>(1);
    let publish = |ns: &'static str, items: Vec<i64>| {
        let producer = producer.clone();
        let provider = provider.to_owned();
        async move {
            producer
                .publish(provider, ns.into(), implicit, items)
                .await
                .unwrap()
                .unwrap()
                .parse::<TraceContext>()
                .unwrap()
        }
    };
    let to_implicit = publish("traced", vec![1, 2]).await;
    let to_explicit = publish("plain", vec![3]).await;
    assert_ne!(to_implicit.trace_id, to_explicit.trace_id);
    assert_eq!(wait_for_items(silo, implicit, 2, 30).await, [1, 2]);
    assert_eq!(wait_for_items(silo, explicit, 1, 30).await, [3]);
    for (key, publish) in [(implicit, to_implicit), (explicit, to_explicit)] {
        let seen = turns.of(key);
        assert!(!seen.is_empty(), "{provider}: no delivery to sink {key}");
        for (trace, parent) in seen {
            assert_eq!(
                trace.trace_id, publish.trace_id,
                "{provider}: sink {key}'s turn is in the publish's trace"
            );
            assert_eq!(
                parent,
                Some(publish.span_id),
                "{provider}: sink {key}'s turn is a child of the publishing turn"
            );
        }
    }
}

fn traced_silo(turns: &Turns, name: &str) -> actor_core::SiloBuilder {
    Silo::builder()
        .name(name)
        .grain::<Sink>()
        .grain::<Producer>()
        .incoming_filter(turns.clone())
}

fn with_sinks(b: actor_streams::StreamsBuilder) -> actor_streams::StreamsBuilder {
    b.implicit::<Sink, i64>("traced")
        .delivery(DeliveryPolicy::default().retry_backoff(Duration::from_millis(10)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_publish_continues_into_the_consumers_turn_on_memory() {
    let turns = Turns::default();
    let silo = traced_silo(&turns, "traced-memory")
        .with_streams(with_sinks(
            Streams::builder().provider("memory", MemoryStreams::new()),
        ))
        .start()
        .await
        .unwrap();
    check_trace(&silo, &turns, "memory").await;
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_publish_continues_the_callers_traceparent_and_ignores_a_malformed_one() {
    let turns = Turns::default();
    let silo = Silo::builder()
        .name("traced-external")
        .grain::<Sink>()
        .incoming_filter(turns.clone())
        .with_streams(with_sinks(
            Streams::builder().provider("memory", MemoryStreams::new()),
        ))
        .start()
        .await
        .unwrap();
    let memory = Streams::provider(&silo, "memory").unwrap();
    // As an HTTP handler would, with the incoming request's header.
    let outer: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    RequestContext::new()
        .with(TRACEPARENT, outer.to_string())
        .scope(
            memory
                .producer::<i64>(StreamId::new("traced", 7))
                .publish(&1),
        )
        .await
        .unwrap();
    assert_eq!(wait_for_items(&silo, 7, 1, 20).await, [1]);
    assert_eq!(turns.of(7), [(turns.of(7)[0].0, Some(outer.span_id))]);
    assert_eq!(turns.of(7)[0].0.trace_id, outer.trace_id);

    // A malformed one does not fail the publish; the delivery starts a
    // trace of its own.
    RequestContext::new()
        .with(TRACEPARENT, "00-not-a-trace-01")
        .scope(
            memory
                .producer::<i64>(StreamId::new("traced", 8))
                .publish(&2),
        )
        .await
        .unwrap();
    assert_eq!(wait_for_items(&silo, 8, 1, 20).await, [2]);
    let seen = turns.of(8);
    assert_eq!(seen.len(), 1);
    assert_ne!(seen[0].0.trace_id, outer.trace_id);
    silo.shutdown().await;
}

/// A RabbitMQ provider on queues of its own, or `None` (skip) when the
/// broker is missing outside CI; `cleanup` deletes its queues.
async fn rabbit(partitions: u32, prefetch: u16) -> Option<(RabbitStreams, lapin::Connection)> {
    let conn = match lapin::Connection::connect(
        DEFAULT_RABBITMQ_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) if !require_service() => {
            eprintln!("skipping: RabbitMQ at 127.0.0.1:5672 unavailable: {e}");
            return None;
        }
        Err(e) => panic!("RabbitMQ at 127.0.0.1:5672 is required with CI=true: {e}"),
    };
    let provider = RabbitStreams::new(DEFAULT_RABBITMQ_URL)
        .queue_prefix(format!("test-{}", uuid::Uuid::new_v4()))
        .partitions(partitions)
        .prefetch(prefetch);
    Some((provider, conn))
}

async fn rabbit_cleanup(provider: &RabbitStreams, conn: lapin::Connection, partitions: u32) {
    let ch = conn.create_channel().await.unwrap();
    let mut queues: Vec<String> = (0..partitions).map(|p| provider.queue_of(p)).collect();
    let dead = provider.queue_of(0);
    queues.push(format!("{}.dead", dead.rsplit_once('.').unwrap().0));
    for q in queues {
        let _ = ch
            .queue_delete(
                q.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

async fn nats() -> Option<(NatsStreams, async_nats::jetstream::Context)> {
    let client = match async_nats::connect(DEFAULT_NATS_URL).await {
        Ok(c) => c,
        Err(e) if !require_service() => {
            eprintln!("skipping: NATS at 127.0.0.1:4222 unavailable: {e}");
            return None;
        }
        Err(e) => panic!("NATS at 127.0.0.1:4222 is required with CI=true: {e}"),
    };
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let provider = NatsStreams::new(DEFAULT_NATS_URL)
        .stream_name(&name)
        .partitions(2)
        .prefetch(8);
    Some((provider, async_nats::jetstream::new(client)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_publish_continues_into_the_consumers_turn_on_rabbitmq() {
    let Some((provider, conn)) = rabbit(2, 8).await else {
        return;
    };
    let turns = Turns::default();
    let silo = traced_silo(&turns, "traced-rabbit")
        .with_streams(with_sinks(
            Streams::builder().provider("rabbit", provider.clone()),
        ))
        .start()
        .await
        .unwrap();
    check_trace(&silo, &turns, "rabbit").await;
    silo.shutdown().await;
    rabbit_cleanup(&provider, conn, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_publish_continues_into_the_consumers_turn_on_jetstream() {
    let Some((provider, js)) = nats().await else {
        return;
    };
    let turns = Turns::default();
    let silo = traced_silo(&turns, "traced-nats")
        .with_streams(with_sinks(
            Streams::builder().provider("nats", provider.clone()),
        ))
        .start()
        .await
        .unwrap();
    check_trace(&silo, &turns, "nats").await;
    silo.shutdown().await;
    let name = provider.jetstream_name().to_owned();
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_stream(format!("{name}_DEAD")).await;
}

/// A slow consumer on RabbitMQ: the partition's figures say which silo
/// pulls it, that its agent holds at most `prefetch` items and that the
/// broker holds the rest (the lag), in the snapshot and on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_figures_show_the_pulling_silo_the_items_held_and_the_lag() {
    let Some((provider, conn)) = rabbit(1, 2).await else {
        return;
    };
    let silo = Silo::builder()
        .name("obs-rabbit")
        .grain::<Sink>()
        .with_dashboard(dashboard_config())
        .with_streams(
            Streams::builder()
                .provider("rabbit", provider.clone())
                .implicit::<Sink, i64>("slow"),
        )
        .start()
        .await
        .unwrap();
    let rabbit = Streams::provider(&silo, "rabbit").unwrap();
    // 80 items of 25 ms each: two seconds of work behind two in flight
    // (the agent reads the queue's depth about once a second).
    let items = vec![1025; 80];
    rabbit
        .producer::<i64>(StreamId::new("slow", 1))
        .publish_batch(&items)
        .await
        .unwrap();
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    let page = streams_page(addr, "a lagging partition", |v| {
        v["partitions"][0]["lag"].as_u64().is_some_and(|l| l > 0)
    })
    .await;
    let p = &page["partitions"][0];
    assert_eq!(p["provider"], "rabbit");
    assert_eq!(p["partition"], 0);
    assert_eq!(p["silo"], "obs-rabbit");
    assert!(p["in_flight"].as_u64().unwrap() <= 2, "{p}");
    let lag_in_snapshot = silo
        .metrics()
        .plugin(names::PARTITION_LAG)
        .find(|m| m.attribute(names::PROVIDER) == Some("rabbit"))
        .map(|m| m.value);
    assert!(
        lag_in_snapshot.is_some(),
        "the lag is in the silo's snapshot"
    );
    // Once drained, everything was acked and nothing is held.
    assert_eq!(wait_for_items(&silo, 1, 80, 90).await.len(), 80);
    let page = streams_page(addr, "the drained partition", |v| {
        v["partitions"][0]["acked"] == 80 && v["namespaces"][0]["delivered_total"] == 80
    })
    .await;
    assert_eq!(page["partitions"][0]["in_flight"], 0);
    assert_eq!(page["namespaces"][0]["namespace"], "slow");
    silo.shutdown().await;
    rabbit_cleanup(&provider, conn, 1).await;
}
