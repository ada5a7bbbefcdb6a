//! A turn that runs on past its silo's lease (`actor_core::TurnFence`, a
//! cluster silo's membership lease) writes nothing: its write is refused
//! before it is sent, the stored state stays as it was, and the activation
//! is dropped so that the next call (once the silo may run turns again)
//! loads the state afresh.

use std::sync::Arc;
use std::time::Duration;

use actor_core::TurnFence;
use actor_core::prelude::*;
use actor_persistence::{
    Error, MemoryStorage, PersistentState, SiloBuilderStorageExt, StorageProvider,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Count {
    value: u64,
}

struct Slow {
    count: PersistentState<Count>,
    started: Arc<Notify>,
    go: Arc<Notify>,
}

impl Grain for Slow {
    const TYPE_NAME: &'static str = "slow";
}

#[grain_methods]
impl Slow {
    /// Adds one, but only writes once the test lets it go.
    async fn bump(&mut self, ctx: &GrainContext<Self>) -> Result<u64, Error> {
        self.started.notify_one();
        self.go.notified().await;
        self.count.value += 1;
        self.count.write_or_reset(ctx).await?;
        Ok(self.count.value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_issued_past_the_lease_is_refused_and_changes_nothing() {
    let storage = Arc::new(MemoryStorage::new());
    let fence = Arc::new(TurnFence::new());
    fence.close_after(Instant::now() + Duration::from_secs(3600));
    let started = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let silo = Silo::builder()
        .with_default_storage(storage.clone())
        .turn_fence(fence.clone())
        .grain_with_async({
            let (started, go) = (started.clone(), go.clone());
            move |ctx| {
                let (started, go) = (started.clone(), go.clone());
                async move {
                    Ok(Slow {
                        count: PersistentState::load(&ctx, "count").await?,
                        started,
                        go,
                    })
                }
            }
        })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Slow>("a");

    // Inside the lease: stored.
    go.notify_one();
    assert_eq!(g.bump().await.unwrap().unwrap(), 1);
    started.notified().await; // the first turn's

    // The lease runs out while a turn waits to write.
    let call = tokio::spawn({
        let g = g.clone();
        async move { g.bump().await }
    });
    started.notified().await;
    fence.close_after(Instant::now());
    go.notify_one();
    let refused = call.await.unwrap().expect("the turn ran").unwrap_err();
    assert!(matches!(refused, Error::Fenced { .. }), "{refused:?}");
    assert!(refused.to_string().contains("lease ran out"), "{refused}");
    let stored = PersistentState::<Count>::load_with(
        storage.clone() as Arc<dyn StorageProvider>,
        &actor_core::GrainId::new("slow", "a"),
        "count",
    )
    .await
    .unwrap();
    assert_eq!(stored.value, 1, "nothing was written past the lease");

    // Past the lease no turn starts at all.
    let err = g.bump().await.unwrap_err();
    assert!(matches!(err, actor_core::Error::NotHere { .. }), "{err:?}");

    // Renewed: the dropped activation reloads the stored state.
    fence.close_after(Instant::now() + Duration::from_secs(3600));
    go.notify_one();
    assert_eq!(g.bump().await.unwrap().unwrap(), 2);
    silo.shutdown().await;
}
