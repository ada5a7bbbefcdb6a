//! A turn still waiting when its silo's lease runs out (the silo's
//! `TurnFence` deadline) is cut off there (issue 17, item 6): its caller
//! gets `SiloUnavailable` at the deadline, not when the turn would have
//! ended, nothing after its await point runs, and the activation is
//! dropped (its state may be half-updated), so the next call activates
//! the grain afresh. A lease renewed while the turn waits lets it finish.
//! The clock is tokio's, paused: the sleeps take no real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{Error, TurnFence};
use tokio::time::Instant;

#[derive(Default, Clone)]
struct Counts {
    activations: Arc<AtomicUsize>,
    /// Turns that went on after their wait.
    resumed: Arc<AtomicUsize>,
}

struct Slow {
    counts: Counts,
    /// Raised before the wait, so a half-done turn leaves it changed.
    touched: u32,
}

impl Grain for Slow {
    const TYPE_NAME: &'static str = "slow";
    async fn on_activate(&mut self, _: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.counts.activations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[grain_methods]
impl Slow {
    /// Changes the state, waits `ms`, and answers what it saw.
    async fn wait(&mut self, ms: u64) -> u32 {
        self.touched += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.counts.resumed.fetch_add(1, Ordering::SeqCst);
        self.touched
    }

    /// The state as it is.
    async fn touched(&self) -> u32 {
        self.touched
    }
}

async fn silo(fence: Arc<TurnFence>, counts: &Counts) -> Silo {
    let counts = counts.clone();
    Silo::builder()
        .turn_fence(fence)
        .call_timeout(Duration::from_secs(60))
        .grain_with(move |_| Slow {
            counts: counts.clone(),
            touched: 0,
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_turn_waiting_past_the_lease_is_cut_off_at_the_deadline() {
    let fence = Arc::new(TurnFence::new());
    let counts = Counts::default();
    let silo = silo(fence.clone(), &counts).await;
    let grain = silo.get_grain::<Slow>("a");
    assert_eq!(grain.touched().await.unwrap(), 0);

    let start = Instant::now();
    fence.close_after(start + Duration::from_secs(1));
    let err = grain.wait(10_000).await.unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, Error::SiloUnavailable { .. }), "{err}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "answered after {waited:?}, not at the lease's end"
    );
    // Let the 10 s the turn asked for pass: nothing of it runs on.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        counts.resumed.load(Ordering::SeqCst),
        0,
        "the cut-off turn went on"
    );

    // The lease renewed: the half-done activation is gone, a fresh one
    // answers.
    fence.close_after(Instant::now() + Duration::from_secs(3600));
    assert_eq!(
        grain.touched().await.unwrap(),
        0,
        "the half-updated state survived"
    );
    assert_eq!(counts.activations.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lease_renewed_while_a_turn_waits_lets_it_finish() {
    let fence = Arc::new(TurnFence::new());
    let counts = Counts::default();
    let silo = silo(fence.clone(), &counts).await;
    let grain = silo.get_grain::<Slow>("b");
    fence.close_after(Instant::now() + Duration::from_secs(1));
    // Renewed every 500 ms for a second each time, as heartbeats do.
    let renewer = {
        let fence = fence.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                fence.close_after(Instant::now() + Duration::from_secs(1));
            }
        })
    };
    assert_eq!(grain.wait(5_000).await.unwrap(), 1);
    assert_eq!(grain.wait(5_000).await.unwrap(), 2, "the same activation");
    renewer.abort();
    assert_eq!(counts.resumed.load(Ordering::SeqCst), 2);
    assert_eq!(counts.activations.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn turns_of_a_silo_without_a_deadline_are_never_cut_off() {
    let fence = Arc::new(TurnFence::new());
    let counts = Counts::default();
    let silo = silo(fence, &counts).await;
    let grain = silo.get_grain::<Slow>("c");
    assert_eq!(grain.wait(30_000).await.unwrap(), 1);
    assert_eq!(counts.activations.load(Ordering::SeqCst), 1);
}
