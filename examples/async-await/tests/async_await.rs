//! Many calls in flight from one client; the consumer grain still runs
//! one turn at a time, and every reply is right.

use std::collections::HashSet;
use std::time::Duration;

use actor_core::prelude::*;
use example_async_await::{Square, Squared, TurnProbe, build_silo, run_scenario};

const CALLS: u64 = 1_000;
const LIMIT: Duration = Duration::from_secs(10);

async fn check_one_turn_at_a_time() {
    let probe = TurnProbe::new();
    let silo = build_silo(probe.clone()).await.unwrap();
    let s = tokio::time::timeout(LIMIT, run_scenario(&silo, &probe, "c", CALLS))
        .await
        .expect("scenario timed out")
        .unwrap();

    // The client really had many calls outstanding...
    assert!(
        s.max_in_flight > 1,
        "only {} call(s) in flight",
        s.max_in_flight
    );
    // ...yet one activation ran them, one turn at a time.
    assert_eq!(s.max_concurrent_turns, 1);
    assert_eq!(s.activations, 1);

    // Every reply answers its own call, correctly.
    assert_eq!(s.replies.len(), CALLS as usize);
    for (n, r) in s.replies.iter().enumerate() {
        assert_eq!(r.input, n as u64);
        assert_eq!(r.output, r.input * r.input);
    }
    // Each call had a turn of its own.
    let turns: HashSet<u64> = s.replies.iter().map(|r| r.turn).collect();
    assert_eq!(turns, (1..=CALLS).collect());
    assert_eq!(s.totals.turns, CALLS);
    assert_eq!(s.totals.sum, (0..CALLS).sum::<u64>());
    silo.shutdown().await;
}

// One thread holds all thousand calls: awaiting a reply blocks no thread.
#[tokio::test(flavor = "current_thread")]
async fn one_thread_many_calls_one_turn_at_a_time() {
    check_one_turn_at_a_time().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_many_calls_one_turn_at_a_time() {
    check_one_turn_at_a_time().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_one_sender_start_in_the_order_sent() {
    // The calls are queued in the order join_all first polls them, which
    // is the order they were made: turn n answers call n - 1.
    let probe = TurnProbe::new();
    let silo = build_silo(probe.clone()).await.unwrap();
    let s = tokio::time::timeout(LIMIT, run_scenario(&silo, &probe, "ordered", 200))
        .await
        .unwrap()
        .unwrap();
    let turns: Vec<u64> = s.replies.iter().map(|r| r.turn).collect();
    assert_eq!(turns, (1..=200).collect::<Vec<_>>());
    silo.shutdown().await;
}

// The control: the same probe does see overlapping turns when a grain
// lets them interleave, so the `== 1` above is a real measurement.
struct Interleaving {
    probe: std::sync::Arc<TurnProbe>,
}

impl Grain for Interleaving {
    const TYPE_NAME: &'static str = "interleaving";
    fn options() -> GrainOptions {
        GrainOptions::new().reentrant()
    }
}

impl GrainMethods for Interleaving {
    fn register(m: &mut Methods<Self>) {
        m.add::<Square, _>();
    }
}

impl SharedHandler<Square> for Interleaving {
    async fn handle(&self, Square(n): Square, _ctx: &GrainContext<Self>) -> Squared {
        let _turn = self.probe.enter();
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        Squared {
            input: n,
            output: n * n,
            turn: 0,
        }
    }
}

#[tokio::test]
async fn the_probe_sees_overlap_in_a_reentrant_grain() {
    let probe = TurnProbe::new();
    let p = probe.clone();
    let silo = Silo::builder()
        .grain_with::<Interleaving>(move |_| Interleaving { probe: p.clone() })
        .start()
        .await
        .unwrap();
    let g = silo.get_grain::<Interleaving>("x");
    let replies = tokio::time::timeout(
        LIMIT,
        futures::future::join_all((0..100).map(|n| g.ask(Square(n)))),
    )
    .await
    .unwrap();
    assert!(replies.iter().all(|r| r.is_ok()));
    assert!(probe.max_concurrent_turns() > 1);
    silo.shutdown().await;
}
