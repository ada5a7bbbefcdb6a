//! Silos die: a dead holder's lease frees the lock; a lock grain that
//! moves to a survivor settles before it grants, so mutual exclusion
//! holds across the move.

use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo};
use example_distributed_lock::{
    LockConfig, holder_dies, lock_key_on, lock_moves, start_cluster, wait_for_members,
};

const BOUND: Duration = Duration::from_secs(60);

async fn three(max_lease: Duration) -> Vec<ClusterSilo> {
    let silos = start_cluster(
        &["a", "b", "c"],
        ClusterConfig::fast(),
        LockConfig { max_lease },
    )
    .await
    .unwrap();
    let members: Vec<_> = silos.iter().collect();
    wait_for_members(&members, 3, Duration::from_secs(30))
        .await
        .unwrap();
    silos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_frees_the_lock() {
    let silos = three(Duration::from_secs(2)).await;
    let [a, b, c] = &silos[..] else {
        unreachable!()
    };
    // The lock grain lives on a survivor; the holder on c.
    let key = lock_key_on(a, &a.address().endpoint, "scanner");
    let lease = Duration::from_secs(1);
    let died = tokio::time::timeout(BOUND, holder_dies(c, b.silo(), &key, lease))
        .await
        .expect("timed out")
        .unwrap();
    let last = died.dead.last_granted_send.unwrap();
    // Refused while the dead holder's lease lived, granted after it ran out.
    assert!(died.next.held > 0);
    assert!(died.next.at >= last + lease, "freed before the lease ended");
    assert!(died.next.at - died.killed_at < Duration::from_secs(10));
    assert_eq!(died.dead.lock_silo.as_deref(), Some("a"));
    assert_eq!(died.next.lease.lock_silo, "a", "the lock grain stayed");
    assert!(died.next.lease.token > died.dead.token.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_silo_dies_with_the_lock_grain() {
    let max_lease = Duration::from_secs(2);
    let silos = three(max_lease).await;
    let [a, b, c] = &silos[..] else {
        unreachable!()
    };
    // Holder and lock grain both on c.
    let key = lock_key_on(a, &c.address().endpoint, "plotter");
    let lease = Duration::from_secs(1);
    let died = tokio::time::timeout(BOUND, holder_dies(c, b.silo(), &key, lease))
        .await
        .expect("timed out")
        .unwrap();
    assert_eq!(died.dead.lock_silo.as_deref(), Some("c"));
    let moved_to = died.next.lease.lock_silo.as_str();
    assert!(moved_to == "a" || moved_to == "b", "{moved_to}");
    // The new activation knew nothing and settled first.
    assert!(died.next.settling > 0);
    assert!(died.next.at >= died.killed_at + max_lease);
    assert!(died.next.lease.token > died.dead.token.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_grain_moving_never_lets_a_second_holder_in() {
    // The holder's lease outlasts the cluster's failover (about 2.5 s with
    // the fast timings): without settling, the new activation would grant
    // while the holder still uses the resource.
    let lease = Duration::from_secs(4);
    let silos = three(lease).await;
    let [a, b, c] = &silos[..] else {
        unreachable!()
    };
    let key = lock_key_on(a, &b.address().endpoint, "ledger");
    let moved = tokio::time::timeout(BOUND, lock_moves(b, a.silo(), c.silo(), &key, lease))
        .await
        .expect("timed out")
        .unwrap();
    assert_eq!(moved.max_inside, 1, "two holders inside at once");
    assert_eq!(moved.stale_tokens, 0);
    let keeper_left = moved.keeper.lost_at.unwrap();
    assert!(moved.next.at >= keeper_left);
    assert!(moved.keeper.failed_renewals > 0);
    assert_eq!(moved.keeper.lock_silo.as_deref(), Some("b"));
    assert_ne!(moved.next.lease.lock_silo, "b");
    assert!(moved.next.settling > 0, "the new activation settled");
    assert!(moved.next.lease.token > moved.keeper.token.unwrap());
}
