//! OTLP export received by an in-test collector (the OTLP trace and metrics
//! gRPC services from opentelemetry-proto, served by tonic on loopback):
//! a call that hops from a grain on one silo to a grain on another arrives
//! as one trace with the right parent links, the metrics arrive under
//! their documented names with the silo's numbers, and a dead collector
//! neither fails nor slows calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{DEFAULT_MAX_FRAME, LinkListener, LinkService, StaticRouter};
use actor_core::prelude::*;
use actor_core::{TRACEPARENT, TraceContext};
use actor_telemetry::collector::{Collector, ReceivedSpan as Received, str_attr};
use actor_telemetry::{SiloBuilderTelemetryExt, Telemetry, names};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::status;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

// ---------------------------------------------------------------- grains

/// Grain A: relays to a `Back` grain.
#[derive(Default)]
struct Front;
impl Grain for Front {
    const TYPE_NAME: &'static str = "front";
}

impl GrainMethods for Front {
    fn register(m: &mut Methods<Self>) {
        m.add::<Relay, _>();
    }
}

#[derive(Serialize, Deserialize)]
struct Relay {
    to: i64,
    fail: bool,
}
impl Message for Relay {
    type Reply = Result<String, String>;
    const NAME: &'static str = "relay";
    fn is_error(r: &Self::Reply) -> bool {
        r.is_err()
    }
}
impl Handler<Relay> for Front {
    async fn handle(&mut self, r: Relay, ctx: &GrainContext<Self>) -> Result<String, String> {
        let back = ctx.get_grain::<Back>(r.to);
        back.ask(Work { fail: r.fail })
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Grain B: answers, or fails when asked to.
#[derive(Default)]
struct Back;
impl Grain for Back {
    const TYPE_NAME: &'static str = "back";
}

impl GrainMethods for Back {
    fn register(m: &mut Methods<Self>) {
        m.add::<Work, _>();
    }
}

#[derive(Serialize, Deserialize)]
struct Work {
    fail: bool,
}
impl Message for Work {
    type Reply = Result<String, String>;
    const NAME: &'static str = "work";
    fn is_error(r: &Self::Reply) -> bool {
        r.is_err()
    }
}
impl Handler<Work> for Back {
    async fn handle(&mut self, w: Work, ctx: &GrainContext<Self>) -> Result<String, String> {
        if w.fail {
            Err("asked to fail".to_owned())
        } else {
            Ok(ctx.silo().name().to_owned())
        }
    }
}

/// Waits (bounded) until `done` holds.
async fn wait_for(c: &Collector, what: &str, done: impl Fn(&Collector) -> bool) {
    assert!(
        c.wait_for(Duration::from_secs(20), done).await,
        "timed out waiting for {what}"
    );
}

// --------------------------------------------------------------- cluster

struct Member {
    silo: Silo,
    telemetry: Telemetry,
    router: Arc<StaticRouter>,
    _server: tokio::task::JoinHandle<()>,
}

/// Two silos joined by gRPC links, each exporting to `endpoint` as its own
/// service instance.
async fn two_silos(endpoint: &str) -> Vec<Member> {
    cluster(Some(endpoint)).await
}

/// Two silos joined by gRPC links; telemetry off without an endpoint.
async fn cluster(endpoint: Option<&str>) -> Vec<Member> {
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let endpoints: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let name = format!("silo-{}", i + 1);
        let mut telemetry = Telemetry::builder().from_env(false);
        if let Some(endpoint) = endpoint {
            telemetry = telemetry.endpoint(endpoint);
        }
        let telemetry = telemetry
            .service_name("telemetry-test")
            .instance(name.clone())
            .export_interval(Duration::from_millis(200))
            .export_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let router = StaticRouter::new(endpoints[i].clone(), endpoints.clone());
        let silo = Silo::builder()
            .name(name)
            .grain::<Front>()
            .grain::<Back>()
            .router(router.clone())
            .with_telemetry(&telemetry)
            .start()
            .await
            .unwrap();
        router.attach(&silo);
        telemetry.observe(&silo);
        let server = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME)
            .serve(LinkListener::tcp(listener).unwrap());
        members.push(Member {
            silo,
            telemetry,
            router,
            _server: server,
        });
    }
    members
}

/// A key of grain type `T` that the router places on `member`.
fn key_on<T: Grain>(members: &[Member], member: usize) -> i64 {
    (0..10_000)
        .find(|k| members[member].router.owns(&GrainId::new(T::TYPE_NAME, *k)))
        .expect("some key lands on each silo")
}

fn span_named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|r| r.span.name == name).collect()
}

// ----------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hop_call_across_two_silos_is_one_trace() {
    let (collector, endpoint) = Collector::start().await.unwrap();
    let members = two_silos(&endpoint).await;
    let a = key_on::<Front>(&members, 0);
    let b = key_on::<Back>(&members, 1);

    // From outside the cluster, as a client would call: A on silo 1 calls
    // B on silo 2.
    let reply = members[0]
        .silo
        .get_grain::<Front>(a)
        .ask(Relay { to: b, fail: false })
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Ok("silo-2"), "B ran on silo 2");
    assert!(members[0].silo.is_active(&GrainId::new("front", a)));
    assert!(members[1].silo.is_active(&GrainId::new("back", b)));

    wait_for(&collector, "both spans", |c| {
        let s = c.spans();
        !span_named(&s, "front/relay").is_empty() && !span_named(&s, "back/work").is_empty()
    })
    .await;
    let spans = collector.spans();
    let front = span_named(&spans, "front/relay");
    let back = span_named(&spans, "back/work");
    assert_eq!(
        (front.len(), back.len()),
        (1, 1),
        "one span per call: {spans:#?}"
    );
    let (front, back) = (front[0], back[0]);

    // One trace, parent links right, each span reported by its own silo.
    assert_eq!(front.span.trace_id.len(), 16);
    assert_eq!(back.span.trace_id, front.span.trace_id, "one trace");
    assert!(
        front.span.parent_span_id.is_empty(),
        "A's call started the trace"
    );
    assert_eq!(
        back.span.parent_span_id, front.span.span_id,
        "B is A's child"
    );
    assert_ne!(back.span.span_id, front.span.span_id);
    assert_eq!(front.instance, "silo-1");
    assert_eq!(back.instance, "silo-2");

    // Timing: B ran inside A's turn.
    assert!(back.span.start_time_unix_nano >= front.span.start_time_unix_nano);
    assert!(back.span.end_time_unix_nano <= front.span.end_time_unix_nano);
    // Attributes and status.
    assert_eq!(
        str_attr(&front.span.attributes, "rpc.service").as_deref(),
        Some("front")
    );
    assert_eq!(
        str_attr(&front.span.attributes, "rpc.method").as_deref(),
        Some("relay")
    );
    assert_eq!(
        str_attr(&front.span.attributes, "grain.key"),
        Some(a.to_string())
    );
    assert_eq!(str_attr(&front.span.attributes, "grain.caller"), None);
    assert_eq!(
        str_attr(&back.span.attributes, "grain.caller"),
        Some(format!("front/{a}"))
    );
    let code = |s: &Received| s.span.status.as_ref().map_or(0, |s| s.code);
    assert_eq!(code(front), status::StatusCode::Unset as i32);
    assert_eq!(code(back), status::StatusCode::Unset as i32);

    for m in &members {
        m.silo.shutdown().await;
        m.telemetry.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_traceparent_is_continued_and_failures_have_error_status() {
    let (collector, endpoint) = Collector::start().await.unwrap();
    let members = two_silos(&endpoint).await;
    let a = key_on::<Front>(&members, 0);
    let b = key_on::<Back>(&members, 1);

    // An HTTP front end received this header and passes it on.
    let outer: TraceContext = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        .parse()
        .unwrap();
    let reply = RequestContext::new()
        .with(TRACEPARENT, outer.to_string())
        .scope(
            members[0]
                .silo
                .get_grain::<Front>(a)
                .ask(Relay { to: b, fail: true }),
        )
        .await
        .unwrap();
    assert_eq!(reply, Err("asked to fail".to_owned()));

    // A second request whose caller said "not sampled": no spans.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    RequestContext::new()
        .with(TRACEPARENT, unsampled)
        .scope(
            members[0]
                .silo
                .get_grain::<Front>(a)
                .ask(Relay { to: b, fail: false }),
        )
        .await
        .unwrap()
        .unwrap();

    wait_for(&collector, "both spans", |c| {
        let s = c.spans();
        !span_named(&s, "front/relay").is_empty() && !span_named(&s, "back/work").is_empty()
    })
    .await;
    for m in &members {
        m.telemetry.flush().await;
    }
    let spans = collector.spans();
    assert_eq!(
        spans.len(),
        2,
        "the unsampled request exported nothing: {spans:#?}"
    );
    let front = span_named(&spans, "front/relay")[0];
    let back = span_named(&spans, "back/work")[0];
    assert_eq!(front.span.trace_id, outer.trace_id.to_bytes());
    assert_eq!(front.span.parent_span_id, outer.span_id.to_bytes());
    assert_eq!(back.span.trace_id, outer.trace_id.to_bytes());
    assert_eq!(back.span.parent_span_id, front.span.span_id);
    let error = status::StatusCode::Error as i32;
    assert_eq!(back.span.status.as_ref().map(|s| s.code), Some(error));
    assert_eq!(front.span.status.as_ref().map(|s| s.code), Some(error));

    for m in &members {
        m.silo.shutdown().await;
        m.telemetry.shutdown().await;
    }
}

fn sum_points(m: &Metric, attr: &str, value: &str) -> (u64, usize) {
    let points: Vec<_> = match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.iter().collect(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter().collect(),
        other => panic!("{} is not a sum or gauge: {other:?}", m.name),
    };
    let matching: Vec<_> = points
        .into_iter()
        .filter(|p| str_attr(&p.attributes, attr).as_deref() == Some(value))
        .collect();
    let total = matching
        .iter()
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => {
                v as u64
            }
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                v,
            )) => v as u64,
            None => 0,
        })
        .sum();
    (total, matching.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_under_the_documented_names_with_the_silo_numbers() {
    let (collector, endpoint) = Collector::start().await.unwrap();
    let members = two_silos(&endpoint).await;
    let b = key_on::<Back>(&members, 1);
    let fronts: Vec<i64> = (0..10_000)
        .filter(|k| members[0].router.owns(&GrainId::new("front", *k)))
        .take(5)
        .collect();
    // 5 Front activations on silo 1, 4 calls each, 1 in 4 failing.
    for (i, a) in fronts.iter().enumerate() {
        for j in 0..4 {
            let _ = members[0]
                .silo
                .get_grain::<Front>(*a)
                .ask(Relay {
                    to: b,
                    fail: (i * 4 + j) % 4 == 0,
                })
                .await
                .unwrap();
        }
    }
    let local = members[0].silo.metrics();
    let relay = local.grain_type("front").unwrap().method("relay").unwrap();
    assert_eq!((relay.calls, relay.errors), (20, 5));

    let all = [
        names::CALLS,
        names::ERRORS,
        names::CALL_DURATION,
        names::ACTIVATIONS,
        names::MAILBOX_DEPTH,
        names::ACTIVATED,
        names::DEACTIVATED,
        names::ACTIVATION_FAILURES,
    ];
    wait_for(
        &collector,
        "every documented metric with the calls counted",
        |c| {
            all.iter().all(|n| c.metric("silo-1", n).is_some())
                && c.metric("silo-1", names::CALLS)
                    .is_some_and(|m| sum_points(&m, "rpc.method", "relay").0 == 20)
                && c.metric("silo-2", names::CALLS)
                    .is_some_and(|m| sum_points(&m, "rpc.method", "work").0 == 20)
        },
    )
    .await;

    let calls = collector.metric("silo-1", names::CALLS).unwrap();
    assert_eq!(calls.unit, "{call}");
    let (n, points) = sum_points(&calls, "rpc.method", "relay");
    assert_eq!((n, points), (20, 1), "one series: silo-1/front/relay");
    assert_eq!(sum_points(&calls, "silo.name", "silo-1").0, 20);
    let calls_2 = collector.metric("silo-2", names::CALLS).unwrap();
    assert_eq!(
        sum_points(&calls_2, "rpc.method", "work").0,
        20,
        "B answered 20"
    );
    let errors = collector.metric("silo-1", names::ERRORS).unwrap();
    assert_eq!(sum_points(&errors, "rpc.method", "relay").0, 5);
    let errors_2 = collector.metric("silo-2", names::ERRORS).unwrap();
    assert_eq!(sum_points(&errors_2, "rpc.method", "work").0, 5);
    let activations = collector.metric("silo-1", names::ACTIVATIONS).unwrap();
    assert!(matches!(activations.data, Some(metric::Data::Gauge(_))));
    assert_eq!(sum_points(&activations, "grain.type", "front").0, 5);
    let activations_2 = collector.metric("silo-2", names::ACTIVATIONS).unwrap();
    assert_eq!(sum_points(&activations_2, "grain.type", "back").0, 1);
    let created = collector.metric("silo-1", names::ACTIVATED).unwrap();
    assert_eq!(sum_points(&created, "grain.type", "front").0, 5);
    let mailbox = collector.metric("silo-1", names::MAILBOX_DEPTH).unwrap();
    assert_eq!(sum_points(&mailbox, "grain.type", "front"), (0, 1));

    let duration = collector.metric("silo-1", names::CALL_DURATION).unwrap();
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!("{} is not a histogram", duration.name)
    };
    let relay_count: u64 = h
        .data_points
        .iter()
        .filter(|p| str_attr(&p.attributes, "rpc.method").as_deref() == Some("relay"))
        .map(|p| p.count)
        .sum();
    assert_eq!(relay_count, 20);
    let failed: u64 = h
        .data_points
        .iter()
        .filter(|p| {
            str_attr(&p.attributes, "rpc.method").as_deref() == Some("relay")
                && p.attributes.iter().any(|kv| {
                    kv.key == "error"
                        && kv.value
                            == Some(AnyValue {
                                value: Some(any_value::Value::BoolValue(true)),
                            })
                })
        })
        .map(|p| p.count)
        .sum();
    assert_eq!(failed, 5);

    for m in &members {
        m.silo.shutdown().await;
        m.telemetry.shutdown().await;
    }
}

/// Times `n` sequential two-hop calls.
async fn time_calls(members: &[Member], n: usize) -> Duration {
    let a = key_on::<Front>(members, 0);
    let b = key_on::<Back>(members, 1);
    let front = members[0].silo.get_grain::<Front>(a);
    let started = Instant::now();
    for _ in 0..n {
        front
            .ask(Relay { to: b, fail: false })
            .await
            .unwrap()
            .unwrap();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_neither_fails_nor_slows_calls() {
    // One endpoint refuses connections; the other accepts them and never
    // answers (the worse case: exports hang until their timeout).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = black_hole.accept().await {
            conns.push(c);
        }
    });

    // Baseline: the same cluster without telemetry.
    let baseline = {
        let members = cluster(None).await;
        assert!(!members[0].telemetry.is_enabled());
        time_calls(&members, 50).await; // warm the links
        let t = time_calls(&members, 300).await;
        for m in &members {
            m.silo.shutdown().await;
        }
        t
    };

    for endpoint in [closed, hole] {
        let members = two_silos(&endpoint).await;
        time_calls(&members, 50).await;
        let t = time_calls(&members, 300).await;
        eprintln!("{endpoint}: 300 two-hop calls in {t:?}; without telemetry {baseline:?}");
        // Generous for a loaded 2-core machine, but an export on the call
        // path (a 2 s timeout, or even a connect attempt per call) would
        // blow it by orders of magnitude.
        assert!(
            t < baseline * 3 + Duration::from_millis(500),
            "{endpoint}: 300 calls took {t:?} against {baseline:?} without telemetry"
        );
        // Shutting down gives up on the dead collector within its timeouts.
        let started = Instant::now();
        for m in &members {
            m.silo.shutdown().await;
            m.telemetry.shutdown().await;
        }
        eprintln!("{endpoint}: shutdown in {:?}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{endpoint}: shutdown took {:?}",
            started.elapsed()
        );
    }
    held.abort();
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    for bad in [
        "127.0.0.1:4317",
        "ftp://x",
        "http://",
        "http://host:port",
        "http://a b",
    ] {
        let err = Telemetry::builder()
            .from_env(false)
            .endpoint(bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, actor_telemetry::Error::InvalidEndpoint { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("http://127.0.0.1:4317"), "{err}");
    }
    let off = Telemetry::builder().from_env(false).build().unwrap();
    assert!(!off.is_enabled());
    assert_eq!(off.endpoint(), None);
    let on = Telemetry::builder()
        .from_env(false)
        .endpoint("http://127.0.0.1:4317")
        .build()
        .unwrap();
    assert_eq!(on.endpoint(), Some("http://127.0.0.1:4317"));
    on.shutdown().await;
}

#[test]
fn building_outside_a_runtime_is_a_clear_error() {
    let err = Telemetry::builder()
        .from_env(false)
        .endpoint("http://127.0.0.1:4317")
        .build()
        .unwrap_err();
    assert!(matches!(err, actor_telemetry::Error::NoRuntime), "{err}");
}
