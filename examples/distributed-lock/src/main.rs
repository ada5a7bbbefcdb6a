//! Run with: cargo run -p example-distributed-lock
//!
//! Starts three silos (`a`, `b`, `c`) in one cluster in this process, then
//! plays three scenes: workers on all three silos take turns on one lock;
//! the silo hosting the lock grain dies while the holder lives (the new
//! activation settles before it grants); the holder's silo dies (its lease
//! frees the lock). Uses the fast test timings of the cluster so that the
//! whole run takes a few seconds.

use std::time::Duration;

use actor_cluster::ClusterConfig;
use example_distributed_lock::{
    LockConfig, LockGrain, LockGrainRef, contend, holder_dies, lock_key_on, lock_moves,
    start_cluster, wait_for_members,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lock = LockConfig {
        max_lease: Duration::from_secs(3),
    };
    let silos = start_cluster(&["a", "b", "c"], ClusterConfig::fast(), lock).await?;
    let [a, b, c] = &silos[..] else {
        unreachable!("three silos were started")
    };
    wait_for_members(&[a, b, c], 3, Duration::from_secs(30)).await?;
    println!(
        "silos a, b, c in one cluster; the maximum lease (and settling time) is {:?}\n",
        lock.max_lease
    );

    // Where the lock grains live decides which silo to kill below.
    let key = "printer";
    let ledger = lock_key_on(a, &b.address().endpoint, "ledger");
    let scanner = lock_key_on(a, &a.address().endpoint, "scanner");
    for k in [key, ledger.as_str(), scanner.as_str()] {
        let status = a.silo().get_grain::<LockGrain>(k).status().await?;
        println!(
            "lock `{k}` activated on silo {}: settles {} ms before its first grant",
            status.silo, status.settling_ms
        );
    }
    println!("(a new activation cannot know what an earlier one granted)\n");

    // 1. Mutual exclusion across silos.
    let all = [a.silo().clone(), b.silo().clone(), c.silo().clone()];
    let seen = contend(
        &all,
        key,
        2,
        3,
        Duration::from_secs(2),
        Duration::from_millis(10),
    )
    .await?;
    let mut holders: Vec<_> = seen.holders.iter().cloned().collect();
    holders.sort();
    println!("1. six workers on three silos take lock `{key}` three times each");
    println!(
        "   {} turns by {}; at most {} inside the resource at once; {} stale tokens, {} overruns\n",
        seen.turns,
        holders.join(", "),
        seen.max_inside,
        seen.stale_tokens,
        seen.overruns
    );
    anyhow::ensure!(seen.max_inside == 1, "two holders were inside at once");

    // 2. The lock grain's silo (b) dies; its holder on a lives on.
    let key = ledger;
    let lease = Duration::from_secs(3);
    println!(
        "2. a/keeper holds `{key}`, whose grain lives on b, renewing a {lease:?} lease; b is killed"
    );
    let moved = lock_moves(b, a.silo(), c.silo(), &key, lease).await?;
    let since = |t: std::time::Instant| t.saturating_duration_since(moved.killed_at);
    println!(
        "   a/keeper (token {}) left the resource {:.1?} after the kill, when its lease ran out ({} renewals failed)",
        moved.keeper.token.unwrap_or_default(),
        since(moved.keeper.lost_at.expect("the keeper let go")),
        moved.keeper.failed_renewals
    );
    println!(
        "   c/contender got it {:.1?} after the kill from the lock grain's new activation on {} (token {}), \
         after {} failed calls and {} `settling` refusals; at most {} inside at once\n",
        since(moved.next.at),
        moved.next.lease.lock_silo,
        moved.next.lease.token,
        moved.next.failed,
        moved.next.settling,
        moved.max_inside
    );
    anyhow::ensure!(moved.max_inside == 1, "two holders were inside at once");
    wait_for_members(&[a, c], 2, Duration::from_secs(30)).await?;

    // 3. The holder's silo (c) dies; the lock grain lives on a.
    let key = scanner;
    let lease = Duration::from_secs(1);
    println!(
        "3. c/keeper holds `{key}`, whose grain lives on a, renewing a {lease:?} lease; c is killed"
    );
    let died = holder_dies(c, a.silo(), &key, lease).await?;
    let last = died
        .dead
        .last_granted_send
        .expect("the keeper held the lock");
    println!(
        "   a/contender got it {:.1?} after the kill and {:.1?} after c's last renewal was sent \
         (token {} after {}), after {} `held` refusals",
        died.next.at.saturating_duration_since(died.killed_at),
        died.next.at.saturating_duration_since(last),
        died.next.lease.token,
        died.dead.token.unwrap_or_default(),
        died.next.held
    );
    println!(
        "   (never before the {lease:?} lease ran out; the rest is the cluster detecting c's death)"
    );
    anyhow::ensure!(died.next.at >= last + lease, "the lock was freed early");
    Ok(())
}
