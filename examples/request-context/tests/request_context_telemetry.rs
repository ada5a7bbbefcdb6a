//! With telemetry on, a request to the web front of the two-silo cluster
//! arrives at an OTLP collector as one trace that continues the HTTP
//! caller's `traceparent`: front silo -> account on the other silo ->
//! audit log back on the front silo, each span the child of the one before.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::{TRACEPARENT, TraceContext};
use actor_telemetry::Telemetry;
use actor_telemetry::collector::proto::tonic::metrics::v1::metric::Data;
use actor_telemetry::collector::{Collector, str_attr};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use example_request_context::{ROLE_HEADER, start_pair_with};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_across_two_silos_is_one_exported_trace() {
    let (collector, endpoint) = Collector::start().await.unwrap();
    let telemetry = Telemetry::builder()
        .from_env(false)
        .endpoint(endpoint)
        .instance("example")
        .export_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let pair = start_pair_with(ClusterConfig::default(), &telemetry)
        .await
        .unwrap();
    let account = pair.accounts_on_back(1).remove(0);

    let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let outer: TraceContext = header.parse().unwrap();
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(format!("/accounts/{account}"))
        .header(ROLE_HEADER, "admin")
        .header(TRACEPARENT, header)
        .body(Body::empty())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), pair.router().oneshot(request))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let trace_id = outer.trace_id.to_bytes().to_vec();
    let in_trace = |c: &Collector| {
        c.spans()
            .into_iter()
            .filter(|s| s.span.trace_id == trace_id)
            .collect::<Vec<_>>()
    };
    assert!(
        collector
            .wait_for(Duration::from_secs(20), |c| in_trace(c).len() >= 2)
            .await,
        "the request's spans never arrived: {:#?}",
        collector.spans()
    );
    let spans = in_trace(&collector);
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.span.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
    };
    let delete = find("account/delete_account");
    let record = find("audit/record");
    assert_eq!(delete.span.parent_span_id, outer.span_id.to_bytes());
    assert_eq!(record.span.parent_span_id, delete.span.span_id);
    assert_eq!(
        str_attr(&delete.span.attributes, "grain.key").as_deref(),
        Some(account.as_str())
    );
    assert_eq!(spans.len(), 2, "one span per grain call: {spans:#?}");

    // Both silos' metrics arrive too.
    let calls_of = |c: &Collector, silo: &str| {
        c.metric("example", actor_telemetry::names::CALLS)
            .and_then(|m| match m.data {
                Some(Data::Sum(s)) => Some(s),
                _ => None,
            })
            .is_some_and(|s| {
                s.data_points
                    .iter()
                    .any(|p| str_attr(&p.attributes, "silo.name").as_deref() == Some(silo))
            })
    };
    let (front, back) = (
        pair.front.silo().name().to_owned(),
        pair.back.silo().name().to_owned(),
    );
    assert!(
        collector
            .wait_for(Duration::from_secs(20), |c| calls_of(c, &front)
                && calls_of(c, &back))
            .await,
        "no grains.calls from both silos"
    );

    pair.leave().await.unwrap();
    telemetry.shutdown().await;
}
