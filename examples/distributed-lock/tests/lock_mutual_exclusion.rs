//! Workers on three silos contend for one lock: never two inside the
//! resource at once, tokens always growing, one lock grain activation.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use actor_core::GrainId;
use example_distributed_lock::{LockConfig, contend, start_cluster, wait_for_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirers_on_three_silos_never_hold_the_lock_at_once() {
    let lock = LockConfig {
        max_lease: Duration::from_secs(2),
    };
    let silos = start_cluster(&["a", "b", "c"], ClusterConfig::fast(), lock)
        .await
        .unwrap();
    let members: Vec<_> = silos.iter().collect();
    wait_for_members(&members, 3, Duration::from_secs(30))
        .await
        .unwrap();
    let all: Vec<_> = silos.iter().map(|s| s.silo().clone()).collect();

    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        contend(
            &all,
            "printer",
            3,
            4,
            Duration::from_secs(2),
            Duration::from_millis(5),
        ),
    )
    .await
    .expect("contention timed out")
    .unwrap();
    assert_eq!(seen.turns, 36);
    assert_eq!(seen.max_inside, 1, "two holders inside at once");
    assert_eq!(seen.stale_tokens, 0);
    assert_eq!(seen.overruns, 0, "no turn outlasted its lease");
    assert_eq!(seen.holders.len(), 9, "every worker got its turns");

    // The arbiter is one activation in the whole cluster.
    let id = GrainId::new("lock", "printer");
    let live = silos.iter().filter(|s| s.silo().is_active(&id)).count();
    assert_eq!(live, 1);
}
