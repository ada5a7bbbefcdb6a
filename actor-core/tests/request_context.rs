//! RequestContext: set by the caller, seen in the turn and in nested calls,
//! never leaking between concurrent requests, never flowing back.

use std::time::Duration;

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Relay;
impl Grain for Relay {
    const TYPE_NAME: &'static str = "relay";
    fn options() -> GrainOptions {
        // Interleave so that concurrent requests share one activation and
        // one task: values must still not mix.
        GrainOptions::new().reentrant()
    }
}

impl GrainMethods for Relay {
    fn register(m: &mut Methods<Self>) {
        m.add::<Trace, _>();
    }
}

/// Returns the value of "k" seen at each hop, the outermost first.
#[derive(Serialize, Deserialize)]
struct Trace {
    hops: Vec<i64>,
    set_here: Option<String>,
}
impl Message for Trace {
    type Reply = Vec<Option<String>>;
    const NAME: &'static str = "trace";
}
impl SharedHandler<Trace> for Relay {
    async fn handle(&self, mut t: Trace, ctx: &GrainContext<Self>) -> Vec<Option<String>> {
        let mine = RequestContext::get("k");
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Still our own value after yielding to other interleaved turns.
        assert_eq!(RequestContext::get("k"), mine);
        if let Some(v) = t.set_here.take() {
            RequestContext::set("k", v);
        }
        let mut out = vec![mine];
        if !t.hops.is_empty() {
            let next = t.hops.remove(0);
            out.extend(ctx.get_grain::<Relay>(next).ask(t).await.unwrap());
        }
        out
    }
}

async fn silo() -> Silo {
    Silo::builder().grain::<Relay>().start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_each_see_their_own_value() {
    let silo = silo().await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let g = silo.get_grain::<Relay>(i % 3);
        tasks.push(tokio::spawn(async move {
            let seen = RequestContext::new()
                .with("k", i.to_string())
                .scope(g.ask(Trace {
                    hops: vec![(i + 1) % 3],
                    set_here: None,
                }))
                .await
                .unwrap();
            (i, seen)
        }));
    }
    for t in tasks {
        let (i, seen) = t.await.unwrap();
        assert_eq!(seen, vec![Some(i.to_string()), Some(i.to_string())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_propagate_three_grains_deep() {
    let silo = silo().await;
    let seen = RequestContext::new()
        .with("k", "deep")
        .scope(silo.get_grain::<Relay>(1).ask(Trace {
            hops: vec![2, 3],
            set_here: None,
        }))
        .await
        .unwrap();
    assert_eq!(seen, vec![Some("deep".to_string()); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_changes_reach_its_calls_but_not_its_caller() {
    let silo = silo().await;
    let g = silo.get_grain::<Relay>(1);
    let (seen, after) = RequestContext::new()
        .with("k", "outer")
        .scope(async {
            let seen = g
                .ask(Trace {
                    hops: vec![2],
                    set_here: Some("inner".into()),
                })
                .await
                .unwrap();
            (seen, RequestContext::get("k"))
        })
        .await;
    assert_eq!(seen, vec![Some("outer".into()), Some("inner".into())]);
    assert_eq!(after.as_deref(), Some("outer"));
    // Outside any scope there is no context at all.
    assert_eq!(RequestContext::get("k"), None);
    assert!(!RequestContext::set("k", "v"));
    let plain = g
        .ask(Trace {
            hops: vec![],
            set_here: None,
        })
        .await
        .unwrap();
    assert_eq!(plain, vec![None]);
}

#[test]
fn context_values_are_copy_on_write() {
    let a = RequestContext::new().with("x", "1");
    let mut b = a.clone();
    b.insert("x", "2");
    b.insert("y", "3");
    assert_eq!(a.value("x"), Some("1"));
    assert_eq!(b.value("x"), Some("2"));
    assert_eq!(b.iter().count(), 2);
    assert_eq!(b.remove("y").as_deref(), Some("3"));
    assert!(RequestContext::new().is_empty());
}
