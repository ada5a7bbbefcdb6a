//! TestCluster: silos over both transports, the lifecycle helpers, and
//! each fault injector, with the oracles watching.

use std::time::{Duration, Instant};

use actor_cluster::MembershipTable;
use actor_core::prelude::*;
use actor_persistence::{ETag, StateKey, StorageProvider};
use actor_testkit::{
    ActivationOracle, CallHistory, FaultMode, LinkAction, LinkRule, TestCluster, Transport,
    WriteHistory,
};

/// A grain that tells the oracle when it comes and goes, and the history
/// which calls it ran.
struct Tracked {
    oracle: ActivationOracle,
    history: CallHistory,
    n: u64,
}

impl Grain for Tracked {
    const TYPE_NAME: &'static str = "tracked";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.oracle.activated(ctx.id(), ctx.silo().name());
        Ok(())
    }
    async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, _: actor_core::DeactivationReason) {
        self.oracle.deactivated(ctx.id(), ctx.silo().name());
    }
}

#[grain_methods]
impl Tracked {
    /// Runs call `op`; how many calls this activation ran.
    pub(crate) async fn touch(&mut self, op: u64, ctx: &GrainContext<Self>) -> u64 {
        self.history.observe(ctx.id(), op);
        self.n += 1;
        self.n
    }
}

struct Harness {
    cluster: TestCluster,
    oracle: ActivationOracle,
    history: CallHistory,
}

async fn cluster(silos: usize, transport: Transport) -> Harness {
    let oracle = ActivationOracle::strict();
    let history = CallHistory::new();
    let (o, h) = (oracle.clone(), history.clone());
    let cluster = TestCluster::builder()
        .silos(silos)
        .transport(transport)
        .oracle(oracle.clone())
        .configure(move |_, silo| {
            let (o, h) = (o.clone(), h.clone());
            silo.grain_with(move |_| Tracked {
                oracle: o.clone(),
                history: h.clone(),
                n: 0,
            })
        })
        .build()
        .await
        .expect("the cluster starts");
    Harness {
        cluster,
        oracle,
        history,
    }
}

impl Harness {
    /// One call to grain `key` made from `from` (the client if `None`).
    async fn touch(&self, from: Option<usize>, key: i64) -> actor_core::Result<u64> {
        let grain = match from {
            None => self.cluster.get_grain::<Tracked>(key),
            Some(i) => self.cluster.local(i).get_grain::<Tracked>(key),
        }
        .with_timeout(Duration::from_secs(3));
        let op = self.history.invoke(grain.id());
        let result = grain.touch(op).await;
        self.history.complete_with(op, &result);
        result
    }

    /// Calls grain `key` until a call is acknowledged (after a silo left,
    /// the first calls may still go its way and fail as unavailable).
    async fn touch_eventually(&self, from: Option<usize>, key: i64) -> u64 {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match self.touch(from, key).await {
                Ok(n) => return n,
                Err(e) => assert!(Instant::now() < until, "grain {key} never answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the silo that owns `key` now.
    fn owner(&self, key: i64) -> usize {
        let id = GrainId::new(Tracked::TYPE_NAME, key);
        let i = self.cluster.running()[0];
        let endpoint = self.cluster.silo(i).owner_of(&id);
        self.cluster
            .running()
            .into_iter()
            .find(|j| self.cluster.silo(*j).address().endpoint == endpoint)
            .expect("the owner runs")
    }

    /// A key owned by silo `i`.
    fn key_on(&self, i: usize) -> i64 {
        (0..1000).find(|k| self.owner(*k) == i).expect("some key")
    }

    fn check(&self) {
        self.oracle.check().expect("single activation");
        self.history
            .check()
            .expect("every acknowledged call ran once");
    }
}

#[tokio::test]
async fn grains_answer_through_the_client_over_both_transports() {
    for transport in [Transport::Memory, Transport::Loopback] {
        let h = cluster(2, transport).await;
        for k in 0..20 {
            assert_eq!(h.touch(None, k).await, Ok(1), "{transport:?}");
        }
        assert_eq!(h.touch(Some(1), 3).await, Ok(2));
        assert_eq!(h.cluster.total_activations(), 20);
        assert!(
            h.cluster.activation_counts().iter().all(|c| *c > 0),
            "both silos host grains: {:?}",
            h.cluster.activation_counts()
        );
        assert!(h.cluster.deactivate_all(Duration::from_secs(5)).await);
        assert_eq!(h.cluster.total_activations(), 0);
        assert_eq!(h.touch(None, 3).await, Ok(1), "activated afresh");
        h.check();
    }
}

#[tokio::test]
async fn a_killed_silo_is_declared_dead_and_its_grains_come_back_elsewhere() {
    let mut h = cluster(3, Transport::Memory).await;
    let key = h.key_on(2);
    assert_eq!(h.touch(None, key).await, Ok(1));
    h.cluster.kill_silo(2).unwrap();
    h.cluster
        .wait_until_stable(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(h.cluster.running(), [0, 1]);
    let dead = h.cluster.table().read_all().await.unwrap();
    assert!(
        dead.with_status(actor_cluster::SiloStatus::Dead).count() == 1,
        "the others declared it dead"
    );
    let n = h.touch_eventually(None, key).await;
    assert_eq!(n, 1, "a new activation (the old one died with its silo)");
    assert!(
        h.oracle
            .events()
            .iter()
            .any(|e| e.to_string() == "silo-2 crashed")
    );
    h.check();
}

#[tokio::test]
async fn silos_stop_gracefully_join_and_restart() {
    let mut h = cluster(2, Transport::Memory).await;
    let key = h.key_on(1);
    assert_eq!(h.touch(None, key).await, Ok(1));
    h.cluster.stop_silo(1).await.unwrap();
    assert!(
        h.oracle
            .events()
            .iter()
            .any(|e| e.to_string().ends_with("deactivated on silo-1")),
        "a graceful stop deactivates: {:?}",
        h.oracle.events()
    );
    h.cluster
        .wait_until_stable(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(h.touch_eventually(None, key).await, 1);
    let extra = h.cluster.start_silo().await.unwrap();
    assert_eq!(extra, 2);
    h.cluster
        .wait_until_stable(Duration::from_secs(10))
        .await
        .unwrap();
    h.cluster.restart_silo(0).await.unwrap();
    assert_eq!(h.cluster.running(), [0, 2]);
    for k in 0..10 {
        h.touch_eventually(None, k).await;
    }
    assert!(h.cluster.restart_silo(9).await.is_err(), "no such silo");
    assert!(h.cluster.kill_silo(1).is_err(), "already stopped");
    h.check();
}

#[tokio::test]
async fn an_isolated_silo_lets_its_grains_go_before_they_move() {
    let h = cluster(3, Transport::Memory).await;
    let key = h.key_on(2);
    assert_eq!(h.touch(None, key).await, Ok(1));
    h.cluster.isolate(2);
    let until = Instant::now() + Duration::from_secs(15);
    // The survivors declare it dead and, once its lease has run out, host
    // its grain; the isolated silo deactivates it first.
    let n = loop {
        if let Ok(n) = h.touch(Some(0), key).await {
            break n;
        }
        assert!(Instant::now() < until, "the grain never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(n, 1);
    assert!(
        h.oracle
            .events()
            .iter()
            .any(|e| e.to_string() == "silo-2 declared dead"),
        "{:?}",
        h.oracle.events()
    );
    assert_eq!(h.cluster.silo(2).silo().activation_count(), 0);
    h.check();
}

#[tokio::test]
async fn a_one_way_partition_blocks_one_direction_only() {
    let h = cluster(3, Transport::Memory).await;
    let on_1 = h.key_on(1);
    let on_0 = h.key_on(0);
    // Both grains active before the cut: this is about the links. (A
    // grain's first activation during the cut can wait for the fence: an
    // owner that cannot probe a silo cannot learn that it applied a new
    // view, e.g. the one with 0's suspicion vote against 1, and holds
    // fresh registrations until the call's deadline.)
    assert_eq!(h.touch(Some(0), on_1).await, Ok(1));
    assert_eq!(h.touch(Some(1), on_0).await, Ok(1));
    h.cluster.partition_oneway(0, 1);
    let from_0 = h.touch(Some(0), on_1).await;
    assert!(
        matches!(from_0, Err(actor_core::Error::SiloUnavailable { .. })),
        "{from_0:?}"
    );
    assert_eq!(h.touch(Some(1), on_0).await, Ok(2), "1 still reaches 0");
    h.cluster.heal();
    let until = Instant::now() + Duration::from_secs(5);
    while h.touch(Some(0), on_1).await.is_err() {
        assert!(Instant::now() < until, "healed links never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.check();
}

#[tokio::test]
async fn link_rules_delay_and_drop_messages() {
    let h = cluster(2, Transport::Memory).await;
    let on_1 = h.key_on(1);
    assert_eq!(h.touch(Some(0), on_1).await, Ok(1));
    let rule = |action| LinkRule {
        from: Some("silo-0".into()),
        to: Some("silo-1".into()),
        action,
    };
    h.cluster
        .add_link_rule(rule(LinkAction::Delay(Duration::from_millis(300))));
    let started = Instant::now();
    assert_eq!(h.touch(Some(0), on_1).await, Ok(2));
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed");
    h.cluster.network().clear_rules();
    h.cluster.add_link_rule(rule(LinkAction::Drop));
    assert!(h.touch(Some(0), on_1).await.is_err(), "dropped");
    h.cluster.network().clear_rules();
    let until = Instant::now() + Duration::from_secs(5);
    while h.touch(Some(0), on_1).await.is_err() {
        assert!(Instant::now() < until, "the link never came back");
    }
    h.check();
}

#[tokio::test]
async fn a_failing_or_conflicting_membership_table_keeps_silos_out_until_it_heals() {
    let mut h = cluster(2, Transport::Memory).await;
    h.cluster.membership_faults().set(FaultMode::Fail);
    assert!(
        h.cluster.start_silo().await.is_err(),
        "no join while the table fails"
    );
    assert!(h.cluster.membership_faults().injected() > 0);
    h.cluster.membership_faults().set(FaultMode::Conflict);
    let switch = h.cluster.membership_faults().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        switch.heal();
    });
    // The join retries through the conflicts and gets in once they stop.
    let i = h.cluster.start_silo().await.unwrap();
    h.cluster
        .wait_until_stable(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(h.cluster.running(), [0, 1, i]);
    h.check();
}

#[tokio::test]
async fn the_storage_fails_conflicts_and_stalls_on_demand() {
    let h = cluster(1, Transport::Memory).await;
    let storage = h.cluster.storage();
    let faults = h.cluster.storage_faults();
    let key = StateKey::new(&GrainId::new("account", 1), "state");
    let writes = WriteHistory::new();

    writes.write_started("account/1", 1);
    let etag: ETag = storage.write(&key, b"[1]", None).await.unwrap();
    writes.write_acked("account/1", 1);

    faults.set(FaultMode::Fail);
    let err = storage
        .write(&key, b"[1,2]", Some(&etag))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(storage.read(&key).await.unwrap_err().is_unavailable());

    faults.set(FaultMode::Conflict);
    let err = storage
        .write(&key, b"[1,2]", Some(&etag))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");

    faults.set(FaultMode::Stall);
    let stalled = tokio::time::timeout(Duration::from_millis(200), storage.read(&key)).await;
    assert!(stalled.is_err(), "a stalled read does not finish");
    faults.heal();

    let read = writes.read_started("account/1");
    let stored = storage.read(&key).await.unwrap().unwrap();
    let values: Vec<u64> = serde_json::from_slice(&stored.data).unwrap();
    writes.read_finished(read, &values);
    writes.check().expect("the refused writes changed nothing");
    assert_eq!(faults.injected(), 4);
}
