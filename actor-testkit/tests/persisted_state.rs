//! The lost-write checker on a grain's persisted state: every write the
//! grain acknowledged survives a crash of its silo and storage failures;
//! and a grain that only pretends to persist is caught.

use std::time::{Duration, Instant};

use actor_core::prelude::*;
use actor_persistence::PersistentState;
use actor_testkit::{FaultMode, TestCluster, WriteHistory};

/// A ledger of appended values, kept in storage (or, when `forgetful`,
/// only in memory: the bad variant).
struct Ledger {
    state: Option<PersistentState<Vec<u64>>>,
    memory: Vec<u64>,
    forgetful: bool,
}

impl Grain for Ledger {
    const TYPE_NAME: &'static str = "ledger";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.state = Some(PersistentState::load(ctx, "values").await?);
        Ok(())
    }
}

#[grain_methods]
impl Ledger {
    /// Appends `v`; acknowledged only once stored.
    pub(crate) async fn append(&mut self, v: u64, ctx: &GrainContext<Self>) -> Result<(), String> {
        if self.forgetful {
            self.memory.push(v);
            return Ok(());
        }
        let state = self.state.as_mut().expect("loaded on activation");
        state.state_mut().push(v);
        state.write_or_reset(ctx).await.map_err(|e| e.to_string())
    }

    /// The values as this activation sees them.
    pub(crate) async fn values(&self) -> Vec<u64> {
        if self.forgetful {
            return self.memory.clone();
        }
        self.state
            .as_ref()
            .map(|s| s.state().clone())
            .unwrap_or_default()
    }
}

/// Appends 1..=30 to one ledger, with storage failing for a while and the
/// ledger's silo killed halfway; then reads it back. The checker's verdict.
async fn run(forgetful: bool) -> WriteHistory {
    let mut cluster = TestCluster::builder()
        .silos(3)
        .configure(move |_, silo| {
            silo.grain_with(move |_| Ledger {
                state: None,
                memory: Vec::new(),
                forgetful,
            })
        })
        .build()
        .await
        .unwrap();
    let writes = WriteHistory::new();
    let ledger = cluster
        .get_grain::<Ledger>("books")
        .with_timeout(Duration::from_secs(3));
    for v in 1..=30u64 {
        if v == 10 {
            cluster.storage_faults().set(FaultMode::Fail);
        }
        if v == 14 {
            cluster.storage_faults().heal();
        }
        if v == 20 {
            let holder = (0..3)
                .find(|i| cluster.activation_counts()[*i] == 1)
                .expect("the ledger is active somewhere");
            cluster.kill_silo(holder).unwrap();
            cluster
                .wait_until_stable(Duration::from_secs(10))
                .await
                .unwrap();
        }
        writes.write_started("books", v);
        if let Ok(Ok(())) = ledger.append(v).await {
            writes.write_acked("books", v);
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let read = writes.read_started("books");
        match ledger.values().await {
            Ok(values) => {
                writes.read_finished(read, &values);
                return writes;
            }
            Err(e) => assert!(Instant::now() < until, "the ledger never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_storage_failures_and_a_crash() {
    let writes = run(false).await;
    writes.check().expect("no acknowledged write lost");
}

#[tokio::test]
async fn a_grain_that_does_not_persist_is_caught_losing_writes() {
    let writes = run(true).await;
    let lost = writes
        .check()
        .expect_err("the crash lost what was only in memory");
    assert!(
        lost.iter()
            .any(|v| matches!(v, actor_testkit::WriteViolation::Lost { .. })),
        "{lost:?}"
    );
}
