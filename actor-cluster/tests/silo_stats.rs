//! The SiloStats RPC and the ClusterView extension: a member reads the
//! table and its peers' reports; an unreachable or stopped peer is a
//! clear error within the timeout, not a hang.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{
    ClusterSilo, ClusterView, Error, InMemoryMembership, MembershipTable, SiloStatus, StatsExtras,
};
use actor_core::prelude::*;
use tokio::net::TcpListener;

/// Counts.
#[derive(Default)]
pub struct Counter {
    n: u64,
}
impl Grain for Counter {
    const TYPE_NAME: &'static str = "stats.counter";
}

#[grain_methods]
impl Counter {
    /// Adds one.
    pub async fn add(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

async fn member(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    let mut builder = Silo::builder().name(name).grain::<Counter>();
    builder
        .extension_mut::<StatsExtras>()
        .add("test.answer", || serde_json::json!(42));
    common::member(builder, table).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_each_others_reports() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = member("a", &table).await;
    let b = member("b", &table).await;
    let view = ClusterView::of(a.silo()).expect("every ClusterSilo has a view");
    assert_eq!(view.me(), a.address());
    let snap = view.membership().await.unwrap();
    assert_eq!(snap.with_status(SiloStatus::Active).count(), 2);

    // Calls made on b's own grains show in the report a gets from b.
    let start = Instant::now();
    let mut on_b = 0;
    for k in 0..20 {
        let g = b.silo().get_grain::<Counter>(format!("k{k}"));
        if b.owner_of(g.id()) == b.address().endpoint {
            g.add().await.unwrap();
            on_b += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    assert!(on_b > 0, "some of 20 keys land on b");
    let report = view
        .peer_report(&b.address().endpoint, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.name, "b");
    assert_eq!(
        report.endpoint.as_deref(),
        Some(b.address().endpoint.as_str())
    );
    assert_eq!(
        report
            .metrics
            .grain_type("stats.counter")
            .unwrap()
            .method("add")
            .unwrap()
            .calls,
        on_b
    );
    assert_eq!(report.activations, on_b);
    assert!(report.process.cpus >= 1);
    assert_eq!(report.extras["test.answer"], 42);

    // A peer that stopped serving answers with an error, quickly.
    b.set_answering(false);
    let err = view
        .peer_report(&b.address().endpoint, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SiloUnavailable { .. }), "{err}");
    b.set_answering(true);
    a.leave().await.unwrap();
    b.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_an_error_within_the_timeout() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = member("a", &table).await;
    let view = ClusterView::of(a.silo()).unwrap();
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let err = view
        .peer_report(&closed.to_string(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("unavailable"), "{err}");
    let err = view
        .peer_report("not an endpoint", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(_) | Error::SiloUnavailable { .. }),
        "{err}"
    );
    a.leave().await.unwrap();
}
