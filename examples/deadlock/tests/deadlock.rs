//! The call cycle fails fast with an error naming it, or completes with
//! call-chain reentrancy; the silo keeps serving either way.

use std::time::{Duration, Instant};

use actor_core::{DEFAULT_CALL_TIMEOUT, Error, GrainId};
use example_deadlock::{
    Reentrancy, build_silo, straight_chain, three_grain_cycle, two_grain_cycle,
};

/// Far below the 30 s a real deadlock would take to time out.
const BOUND: Duration = Duration::from_secs(5);

fn ids(names: &[&'static str]) -> Vec<GrainId> {
    names.iter().map(|t| GrainId::new(*t, 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_fails_at_once_with_a_deadlock_naming_it() {
    let silo = build_silo(Reentrancy::Off).await.unwrap();
    assert_eq!(silo.call_timeout(), DEFAULT_CALL_TIMEOUT);

    let started = Instant::now();
    let outcome = tokio::time::timeout(BOUND, two_grain_cycle(&silo))
        .await
        .expect("the cycle hung instead of failing fast");
    let took = started.elapsed();

    let error = outcome.expect_err("a non-reentrant cycle must not complete");
    let Error::Deadlock { cycle, method } = &error else {
        panic!("expected a deadlock, got {error:?}");
    };
    assert_eq!(cycle, &ids(&["a", "b", "a"]));
    assert_eq!(method, "visit");
    assert!(error.to_string().contains("a/1 -> b/1 -> a/1"), "{error}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_grain_cycle_names_all_three() {
    let silo = build_silo(Reentrancy::Off).await.unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(BOUND, three_grain_cycle(&silo))
        .await
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(&error, Error::Deadlock { cycle, .. } if *cycle == ids(&["a", "b", "c", "a"])),
        "{error:?}"
    );
    assert!(error.to_string().contains("a/1 -> b/1 -> c/1 -> a/1"));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_chain_reentrancy_completes_the_cycles() {
    let silo = build_silo(Reentrancy::CallChain).await.unwrap();
    let trail = tokio::time::timeout(BOUND, two_grain_cycle(&silo))
        .await
        .unwrap();
    assert_eq!(trail, Ok(ids(&["a", "b", "a"])));
    let trail = tokio::time::timeout(BOUND, three_grain_cycle(&silo))
        .await
        .unwrap();
    assert_eq!(trail, Ok(ids(&["a", "b", "c", "a"])));
    silo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_silo_still_serves_after_a_deadlock() {
    let silo = build_silo(Reentrancy::Off).await.unwrap();
    tokio::time::timeout(BOUND, async {
        assert!(two_grain_cycle(&silo).await.is_err());
        // The grains on the cycle are not stuck: a chain without a cycle
        // goes through them, and the cycle fails fast again.
        assert_eq!(straight_chain(&silo).await, Ok(ids(&["a", "b", "c"])));
        assert!(matches!(
            two_grain_cycle(&silo).await,
            Err(Error::Deadlock { .. })
        ));
    })
    .await
    .expect("the silo stopped serving after a deadlock");
    let visits = silo.metrics();
    let a = visits.grain_type("a").unwrap();
    assert_eq!(a.activations, 1);
    silo.shutdown().await;
}
