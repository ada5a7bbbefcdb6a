//! Stateless workers in a cluster are local to each silo, as in Orleans
//! (issue 17, item 6): a call from a silo that registers the type runs on
//! that silo's own pool of activations, whatever the grain directory's
//! placement would pick for the id, and is never entered in the
//! directory. Before, they went through the directory like any grain:
//! one pool per cluster, on the id's hash owner.

use actor_core::prelude::*;
use actor_testkit::TestCluster;

struct Worker;

impl Grain for Worker {
    const TYPE_NAME: &'static str = "worker";
    fn options() -> GrainOptions {
        GrainOptions::new().stateless_worker(2)
    }
}

#[grain_methods]
impl Worker {
    /// The silo this activation runs on.
    async fn whereami(&self, ctx: &GrainContext<Self>) -> String {
        ctx.silo().name().to_owned()
    }
}

/// A single-activation grain beside it: still placed by the directory.
#[derive(Default)]
struct Single;

impl Grain for Single {
    const TYPE_NAME: &'static str = "single";
}

#[grain_methods]
impl Single {
    /// The silo this activation runs on.
    async fn whereami(&self, ctx: &GrainContext<Self>) -> String {
        ctx.silo().name().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_worker_runs_on_the_callers_silo() {
    let cluster = TestCluster::builder()
        .silos(3)
        .configure(|_, silo| silo.grain_with(|_| Worker).grain::<Single>())
        .build()
        .await
        .expect("the cluster starts");
    let keys = 0..12i64;
    for i in 0..3 {
        let silo = cluster.local(i);
        for key in keys.clone() {
            let at = silo.get_grain::<Worker>(key).whereami().await.unwrap();
            assert_eq!(at, silo.name(), "worker {key} called from {}", silo.name());
        }
    }
    // The single-activation grains of the same keys are spread by
    // placement: one silo, whoever calls.
    let mut elsewhere = 0;
    for key in keys {
        let first = cluster
            .local(0)
            .get_grain::<Single>(key)
            .whereami()
            .await
            .unwrap();
        for i in 1..3 {
            let at = cluster
                .local(i)
                .get_grain::<Single>(key)
                .whereami()
                .await
                .unwrap();
            assert_eq!(at, first, "grain single/{key} answered from two silos");
        }
        elsewhere += usize::from(first != cluster.local(0).name());
    }
    assert!(
        elsewhere > 0,
        "placement put every grain on silo 0: the test shows nothing"
    );
}
