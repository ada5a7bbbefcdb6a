//! The web front passes an incoming W3C `traceparent` header on: the grain
//! calls of the request continue the caller's trace (front -> account ->
//! audit), and a malformed header starts a new trace without failing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_core::{CallInfo, IncomingCallFilter, SpanId, TRACEPARENT, TraceContext};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use example_request_context::{ROLE_HEADER, router, silo_builder};
use tower::ServiceExt;

type Turn = (String, TraceContext, Option<SpanId>);

/// Records each turn's grain type, trace context and parent span.
#[derive(Clone, Default)]
struct Turns(Arc<Mutex<Vec<Turn>>>);

impl IncomingCallFilter for Turns {
    fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
        self.0.lock().unwrap().push((
            call.grain.grain_type.to_string(),
            call.trace,
            call.parent_span,
        ));
        Ok(())
    }
}

async fn delete_as_admin(app: &axum::Router, account: &str, traceparent: &str) -> StatusCode {
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(format!("/accounts/{account}"))
        .header(ROLE_HEADER, "admin")
        .header(TRACEPARENT, traceparent)
        .body(Body::empty())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
        .await
        .expect("bounded")
        .unwrap();
    response.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_header_is_continued_by_the_grain_calls() {
    let turns = Turns::default();
    let silo = silo_builder("traced")
        .incoming_filter(turns.clone())
        .start()
        .await
        .unwrap();
    let app = router(silo.clone());
    let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let outer: TraceContext = header.parse().unwrap();

    assert_eq!(delete_as_admin(&app, "alice", header).await, StatusCode::OK);
    let seen = std::mem::take(&mut *turns.0.lock().unwrap());
    let account = seen
        .iter()
        .find(|t| t.0 == "account")
        .expect("account turn");
    let audit = seen.iter().find(|t| t.0 == "audit").expect("audit turn");
    assert_eq!(account.1.trace_id, outer.trace_id);
    assert_eq!(account.2, Some(outer.span_id), "child of the HTTP caller");
    assert_eq!(audit.1.trace_id, outer.trace_id);
    assert_eq!(
        audit.2,
        Some(account.1.span_id),
        "child of the account's turn"
    );

    // A malformed header: the request still succeeds, in a trace of its own.
    assert_eq!(
        delete_as_admin(&app, "bob", "00-nonsense").await,
        StatusCode::OK
    );
    let seen = std::mem::take(&mut *turns.0.lock().unwrap());
    let account = seen
        .iter()
        .find(|t| t.0 == "account")
        .expect("account turn");
    assert_eq!(account.2, None);
    assert_ne!(account.1.trace_id, outer.trace_id);
    silo.shutdown().await;
}
