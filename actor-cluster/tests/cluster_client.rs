//! The external client reaches grains on every silo through a gateway,
//! learns the other gateways, and fails over when its gateway dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable,
};
use actor_core::prelude::*;
use tokio::net::TcpListener;

/// A grain that counts and says where it runs.
#[derive(Default)]
pub struct Where {
    n: u64,
}

impl Grain for Where {
    const TYPE_NAME: &'static str = "where";
}

#[grain_methods]
impl Where {
    /// Counts; answers the count and the silo.
    pub async fn visit(&mut self, ctx: &GrainContext<Self>) -> (u64, String) {
        self.n += 1;
        (self.n, ctx.silo().name().to_owned())
    }
}

async fn start(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    ClusterSilo::start(
        Silo::builder().name(name).grain::<Where>(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap()
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_calls_every_silo_and_fails_over() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = start("a", &table).await;
    let b = start("b", &table).await;
    let c = start("c", &table).await;
    eventually("all see three", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|s| s.active_members().len() == 3)
    })
    .await;

    // Given one gateway, the client learns all three.
    let client = ClusterClient::connect(
        vec![a.address().endpoint.clone()],
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(client.gateways().len(), 3);

    let mut seen = std::collections::HashSet::new();
    let calls: Vec<_> = (0..300)
        .map(|k| {
            let g = client.get_grain::<Where>(k);
            tokio::spawn(async move { g.visit().await })
        })
        .collect();
    for c in calls {
        let (n, silo) = c.await.unwrap().unwrap();
        assert_eq!(n, 1);
        seen.insert(silo);
    }
    assert_eq!(seen.len(), 3, "grains on every silo: {seen:?}");
    let total: usize = [&a, &b, &c]
        .iter()
        .map(|s| s.silo().activation_count())
        .sum();
    assert_eq!(total, 300, "one activation per grain");

    // The gateway a dies; the client goes on through the others.
    a.kill();
    eventually("the client forgets a", Duration::from_secs(10), || {
        client.gateways().len() == 2
    })
    .await;
    let started = Instant::now();
    for k in 0..300 {
        let (_, silo) = client.get_grain::<Where>(k).visit().await.unwrap();
        assert_ne!(silo, "a");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // An unknown gateway list is a clear error.
    let err = ClusterClient::connect(vec!["127.0.0.1:1".into()], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, actor_cluster::Error::SiloUnavailable { .. }),
        "{err}"
    );
}
