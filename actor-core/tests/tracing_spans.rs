//! Every call is a `tracing` span (grain type, key, method, caller, W3C
//! trace and span ids) parented to the caller's span.
//!
//! Alone in its binary: a thread-local subscriber's callsite interest
//! would race with tests running on other threads without one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::span::{Attributes, Id};
use tracing::{Subscriber, field::Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    name: String,
    fields: Vec<(String, String)>,
    parent: Option<String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields(Vec<(String, String)>);
impl Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        ));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        attrs.record(&mut f);
        let parent = ctx.span(id).and_then(|s| s.parent()).map(|p| {
            let ext = p.extensions();
            ext.get::<String>()
                .cloned()
                .unwrap_or_else(|| p.name().to_owned())
        });
        let label =
            f.0.iter()
                .find(|(k, _)| k == "method")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| attrs.metadata().name().to_owned());
        let mut seen = self.0.lock().unwrap();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(label);
            span.extensions_mut().insert(seen.len());
        }
        seen.push(Seen {
            name: attrs.metadata().name().to_owned(),
            fields: f.0,
            parent,
        });
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        values.record(&mut f);
        if let Some(at) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<usize>().copied())
        {
            self.0.lock().unwrap()[at].fields.extend(f.0);
        }
    }
}

#[derive(Default)]
struct Outer;
impl Grain for Outer {
    const TYPE_NAME: &'static str = "outer";
}
impl GrainMethods for Outer {
    fn register(m: &mut Methods<Self>) {
        m.add::<Go, _>();
    }
}
#[derive(Default)]
struct Inner {
    n: u64,
}
impl Grain for Inner {
    const TYPE_NAME: &'static str = "inner";
}
impl GrainMethods for Inner {
    fn register(m: &mut Methods<Self>) {
        m.add::<Bump, _>();
    }
}
#[derive(Serialize, Deserialize)]
struct Go;
impl Message for Go {
    type Reply = u64;
    const NAME: &'static str = "go";
}
#[derive(Serialize, Deserialize)]
struct Bump(u64);
impl Message for Bump {
    type Reply = u64;
    const NAME: &'static str = "bump";
}
impl Handler<Go> for Outer {
    async fn handle(&mut self, _: Go, ctx: &GrainContext<Self>) -> u64 {
        ctx.get_grain::<Inner>("in").ask(Bump(1)).await.unwrap()
    }
}
impl Handler<Bump> for Inner {
    async fn handle(&mut self, Bump(ms): Bump, _: &GrainContext<Self>) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.n += 1;
        self.n
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_call_is_a_span_with_grain_type_key_and_method_parented_to_its_caller() {
    let rec = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(rec.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let silo = Silo::builder()
        .grain::<Outer>()
        .grain::<Inner>()
        .start()
        .await
        .unwrap();
    silo.get_grain::<Outer>(7).ask(Go).await.unwrap();
    let seen = rec.0.lock().unwrap().clone();
    let calls: Vec<&Seen> = seen.iter().filter(|s| s.name == "grain_call").collect();
    assert_eq!(calls.len(), 2, "{seen:#?}");
    let field = |s: &Seen, k: &str| {
        s.fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field(calls[0], "grain.type").as_deref(), Some("outer"));
    assert_eq!(field(calls[0], "grain.key").as_deref(), Some("7"));
    assert_eq!(field(calls[0], "method").as_deref(), Some("go"));
    assert_eq!(field(calls[1], "grain.type").as_deref(), Some("inner"));
    assert_eq!(field(calls[1], "grain.key").as_deref(), Some("in"));
    assert_eq!(field(calls[0], "caller"), None);
    assert_eq!(field(calls[1], "caller").as_deref(), Some("outer/7"));
    // The nested call's span is a child of the outer turn's span.
    assert_eq!(calls[1].parent.as_deref(), Some("go"));
    // The W3C ids, for correlating logs across silos: one trace, the
    // nested turn's parent is the outer turn.
    let trace = field(calls[0], "trace_id").expect("trace_id recorded");
    assert_eq!(trace.len(), 32);
    assert_eq!(field(calls[1], "trace_id"), Some(trace));
    assert_eq!(field(calls[0], "parent_id"), None);
    let outer_span = field(calls[0], "span_id").expect("span_id recorded");
    assert_eq!(outer_span.len(), 16);
    assert_eq!(field(calls[1], "parent_id"), Some(outer_span));
}
