//! Live metrics count calls, errors, latency, activations and mailbox
//! depth, and serialize for the dashboard.

use std::time::Duration;

use actor_core::prelude::*;
use serde::{Deserialize, Serialize};

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
struct Bump(u64);
impl Message for Bump {
    type Reply = u64;
    const NAME: &'static str = "bump";
}
impl Handler<Bump> for Inner {
    async fn handle(&mut self, Bump(ms): Bump, _: &GrainContext<Self>) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.n += 1;
        self.n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_latency_activations_and_mailbox_depth() {
    let silo = Silo::builder().grain::<Inner>().start().await.unwrap();
    let g = silo.get_grain::<Inner>(1);
    g.ask(Bump(100)).await.unwrap();
    let slow = tokio::spawn({
        let g = g.clone();
        async move { g.ask(Bump(200)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..9 {
        g.tell(Bump(0)).unwrap();
    }
    let m = silo.metrics();
    let t = m.grain_type("inner").unwrap();
    assert_eq!(t.mailbox_depth, 9, "nine calls wait behind the slow turn");
    assert_eq!(t.activations, 1);
    slow.await.unwrap().unwrap();
    assert_eq!(g.ask(Bump(0)).await.unwrap(), 12);
    let m = silo.metrics();
    let t = m.grain_type("inner").unwrap();
    assert_eq!(t.mailbox_depth, 0);
    let bump = t.method("bump").unwrap();
    assert_eq!((bump.calls, bump.errors), (12, 0));
    assert_eq!(bump.latency.count, 12);
    // Two calls took >= 100 ms: the p99 bound says so, the median does not.
    assert!(bump.latency.quantile(0.99) >= Duration::from_millis(100));
    assert!(bump.latency.quantile(0.5) < Duration::from_millis(50));
    assert!(bump.latency.mean() >= Duration::from_millis(20));
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"mailbox_depth\":0"));
}

/// Plug-in figures: every source's readings are in the snapshot, with
/// their descriptors declared once; a silo without sources has none; an
/// old snapshot without the field still decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plug_in_figures_are_in_the_snapshot() {
    use actor_core::{MetricDescriptor, MetricKind, MetricSources, PluginMetric};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    let bare = Silo::builder().start().await.unwrap();
    assert!(bare.metrics().plugins.is_empty());
    bare.shutdown().await;

    let level = Arc::new(AtomicI64::new(3));
    let mut b = Silo::builder().grain::<Inner>();
    {
        let level = level.clone();
        b.extension_mut::<MetricSources>().add(
            [
                MetricDescriptor::gauge("things.level", "{thing}", "things now"),
                MetricDescriptor::counter("things.seen", "{thing}", "things seen"),
            ],
            move |out| {
                out.push(
                    PluginMetric::new("things.level", level.load(Ordering::Relaxed))
                        .with("box", "a"),
                );
                out.push(PluginMetric::new("things.seen", 7).with("box", "a"));
            },
        );
        // A second source declaring a name again adds no descriptor.
        b.extension_mut::<MetricSources>().add(
            [MetricDescriptor::counter("things.seen", "{thing}", "again")],
            |out| out.push(PluginMetric::new("things.seen", 1).with("box", "b")),
        );
    }
    let silo = b.start().await.unwrap();
    let sources = silo.extension::<MetricSources>().unwrap();
    let names: Vec<_> = sources
        .descriptors()
        .iter()
        .map(|d| (d.name.as_str(), d.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("things.level", MetricKind::Gauge),
            ("things.seen", MetricKind::Counter)
        ]
    );
    let m = silo.metrics();
    let level_a: Vec<_> = m.plugin("things.level").collect();
    assert_eq!(level_a.len(), 1);
    assert_eq!(level_a[0].value, 3);
    assert_eq!(level_a[0].attribute("box"), Some("a"));
    assert_eq!(m.plugin("things.seen").map(|p| p.value).sum::<i64>(), 8);
    level.store(-2, Ordering::Relaxed);
    assert_eq!(
        silo.metrics().plugin("things.level").next().unwrap().value,
        -2
    );

    // The snapshot round-trips through JSON (peers' reports), and one
    // written before plug-in figures existed decodes with none.
    let back: actor_core::MetricsSnapshot =
        serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    let old: actor_core::MetricsSnapshot =
        serde_json::from_value(serde_json::json!({"silo": "old", "grain_types": []})).unwrap();
    assert!(old.plugins.is_empty());
    silo.shutdown().await;
}
