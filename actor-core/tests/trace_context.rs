//! W3C trace context: every turn has one; a call made in a turn is a child
//! of that turn's span, also across silos (through `EncodedCall`); an
//! external caller's `traceparent` in the request context is honoured and
//! a malformed one is ignored without failing the call.

mod common;

use std::sync::{Arc, Mutex};

use actor_core::prelude::*;
use actor_core::{CallInfo, EncodedCall, IncomingCallFilter, SpanId, TRACEPARENT, TraceContext};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Node;
impl Grain for Node {
    const TYPE_NAME: &'static str = "node";
}

impl GrainMethods for Node {
    fn register(m: &mut Methods<Self>) {
        m.add::<Hop, _>().add::<OnBehalf, _>();
    }
}

/// Visits `path` in order; answers each hop's `TraceContext::current()`.
#[derive(Serialize, Deserialize)]
struct Hop {
    path: Vec<i64>,
}
impl Message for Hop {
    type Reply = Vec<String>;
    const NAME: &'static str = "hop";
}
impl Handler<Hop> for Node {
    async fn handle(&mut self, mut hop: Hop, ctx: &GrainContext<Self>) -> Vec<String> {
        let mine = TraceContext::current().expect("a turn has a trace context");
        let mut seen = vec![mine.to_string()];
        if !hop.path.is_empty() {
            let next = hop.path.remove(0);
            seen.extend(ctx.get_grain::<Node>(next).ask(hop).await.unwrap());
        }
        seen
    }
}

/// Calls `to` as a child of `parent` (in `TraceContext::scope`), then
/// `to` again as a child of this turn.
#[derive(Serialize, Deserialize)]
struct OnBehalf {
    parent: String,
    to: i64,
}
impl Message for OnBehalf {
    type Reply = ();
    const NAME: &'static str = "on_behalf";
}
impl Handler<OnBehalf> for Node {
    async fn handle(&mut self, m: OnBehalf, ctx: &GrainContext<Self>) {
        let parent: TraceContext = m.parent.parse().unwrap();
        let next = ctx.get_grain::<Node>(m.to);
        parent.scope(next.ask(Hop { path: vec![] })).await.unwrap();
        next.ask(Hop { path: vec![] }).await.unwrap();
    }
}

/// What an incoming filter saw of one turn: grain key, own context, parent.
type Turn = (i64, TraceContext, Option<SpanId>);

/// What the incoming filters saw, per turn.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Turn>>>);
impl IncomingCallFilter for Seen {
    fn on_request(&self, call: &CallInfo<'_>) -> Result<(), String> {
        let key = call.grain.key.as_int().unwrap();
        self.0
            .lock()
            .unwrap()
            .push((key, call.trace, call.parent_span));
        Ok(())
    }
}

impl Seen {
    fn take(&self) -> Vec<Turn> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn pair(seen: &Seen) -> [Silo; 2] {
    common::two_silos(|me| {
        Silo::builder()
            .name(format!("silo-{me}"))
            .grain::<Node>()
            .incoming_filter(seen.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_across_silos_is_one_trace_with_parent_links() {
    let seen = Seen::default();
    let [a, _b] = pair(&seen).await;
    // 0 (silo 0) -> 1 (silo 1) -> 3 (silo 1) -> 2 (silo 0)
    let hops = a
        .get_grain::<Node>(0)
        .ask(Hop {
            path: vec![1, 3, 2],
        })
        .await
        .unwrap();
    let turns = seen.take();
    assert_eq!(turns.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1, 3, 2]);
    let trace = turns[0].1.trace_id;
    assert_eq!(turns[0].2, None, "the first call starts the trace");
    for w in turns.windows(2) {
        assert_eq!(w[1].1.trace_id, trace, "one trace");
        assert_eq!(w[1].2, Some(w[0].1.span_id), "parent is the calling turn");
        assert!(w[1].1.is_sampled());
    }
    // The turn sees the same context the filter saw.
    let seen_inside: Vec<String> = turns.iter().map(|t| t.1.to_string()).collect();
    assert_eq!(hops, seen_inside);
    // Span ids are distinct.
    let mut spans: Vec<_> = turns.iter().map(|t| t.1.span_id).collect();
    spans.dedup();
    assert_eq!(spans.len(), 4);

    // The next request from outside is a different trace.
    a.get_grain::<Node>(1)
        .ask(Hop { path: vec![] })
        .await
        .unwrap();
    let again = seen.take();
    assert_ne!(again[0].1.trace_id, trace);
    assert_eq!(again[0].2, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_traceparent_is_the_parent_of_the_first_turn() {
    let seen = Seen::default();
    let [a, _b] = pair(&seen).await;
    // As an axum handler would do with the incoming request's header; the
    // sampled flag is off, and the whole chain keeps it off.
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let outer: TraceContext = header.parse().unwrap();
    for first in [0, 1] {
        RequestContext::new()
            .with(TRACEPARENT, header)
            .scope(a.get_grain::<Node>(first).ask(Hop { path: vec![2, 5] }))
            .await
            .unwrap();
        let turns = seen.take();
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0].1.trace_id, outer.trace_id);
        assert_eq!(turns[0].2, Some(outer.span_id));
        assert_eq!(turns[1].2, Some(turns[0].1.span_id));
        assert_eq!(turns[2].2, Some(turns[1].1.span_id));
        assert!(turns.iter().all(|t| t.1.trace_id == outer.trace_id));
        assert!(turns.iter().all(|t| !t.1.is_sampled()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_is_ignored_and_the_call_succeeds() {
    let seen = Seen::default();
    let [a, _b] = pair(&seen).await;
    for bad in [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let hops = RequestContext::new()
            .with(TRACEPARENT, bad)
            .scope(a.get_grain::<Node>(1).ask(Hop { path: vec![0] }))
            .await
            .unwrap();
        assert_eq!(hops.len(), 2);
        let turns = seen.take();
        assert_eq!(turns[0].2, None, "{bad:?}: a new trace starts");
        assert_eq!(turns[1].2, Some(turns[0].1.span_id));
        assert_ne!(turns[0].1.trace_id.0, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_without_the_trace_field_falls_back_to_the_context() {
    // A transport that only carries the request context (an older peer)
    // still links the trace through the `traceparent` entry.
    let seen = Seen::default();
    let [a, _b] = pair(&seen).await;
    let parent = TraceContext::new_root();
    let mut call = EncodedCall::new(
        GrainId::new("node", 4),
        "hop",
        actor_core::__private::codec::encode(&Hop { path: vec![] }).unwrap(),
        std::time::Duration::from_secs(5),
    );
    call.context = RequestContext::new().with(TRACEPARENT, parent.to_string());
    a.invoke_encoded(call).await.unwrap();
    let turns = seen.take();
    assert_eq!(turns[0].1.trace_id, parent.trace_id);
    assert_eq!(turns[0].2, Some(parent.span_id));
}

#[test]
fn outside_a_turn_there_is_no_current_context() {
    assert_eq!(TraceContext::current(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_a_trace_scope_is_a_child_of_the_given_context() {
    let seen = Seen::default();
    let [a, _b] = pair(&seen).await;
    let producer = TraceContext::new_root();
    // 0 on silo 0 calls 1 (silo 1) and 2 (silo 0), each first on behalf
    // of `producer`, then as itself.
    for to in [1, 2] {
        a.get_grain::<Node>(0)
            .ask(OnBehalf {
                parent: producer.to_string(),
                to,
            })
            .await
            .unwrap();
        let turns = seen.take();
        assert_eq!(turns.iter().map(|t| t.0).collect::<Vec<_>>(), [0, to, to]);
        assert_eq!(turns[1].1.trace_id, producer.trace_id, "the given trace");
        assert_eq!(turns[1].2, Some(producer.span_id), "the given parent");
        assert_eq!(turns[2].1.trace_id, turns[0].1.trace_id, "the scope ends");
        assert_eq!(turns[2].2, Some(turns[0].1.span_id));
        assert_ne!(turns[0].1.trace_id, producer.trace_id);
    }
    // Outside a turn it is the parent as an external traceparent is.
    producer
        .scope(a.get_grain::<Node>(3).ask(Hop { path: vec![] }))
        .await
        .unwrap();
    let turns = seen.take();
    assert_eq!(turns[0].1.trace_id, producer.trace_id);
    assert_eq!(turns[0].2, Some(producer.span_id));
}
