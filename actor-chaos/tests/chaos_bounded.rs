//! The bounded chaos run of the test suite: 3 silo processes on
//! PostgreSQL, a few hundred ledger grains, then a kill -9, a pause past
//! the lease and a partition (in that order of kinds, on seeded targets).
//! It asserts the oracles only (no duplicate activation, no lost
//! acknowledged write), never a timing: the figures are printed.
//!
//! Needs PostgreSQL on 127.0.0.1:5432: with CI=true its absence fails the
//! test, otherwise the test is skipped with a message. `CHAOS_SEED`
//! replays a seed.

use std::time::Duration;

use actor_chaos::{ChaosConfig, FaultKind};

const DATABASE: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_up() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:5432".parse().unwrap(), Duration::from_secs(2))
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_a_pause_and_a_partition_lose_nothing_and_never_activate_twice() {
    if !postgres_up() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL is not running on 127.0.0.1:5432 (CI=true: the chaos test needs it)"
        );
        eprintln!("skipped: PostgreSQL is not running on 127.0.0.1:5432");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = ChaosConfig::new(
        vec![env!("CARGO_BIN_EXE_chaos").to_owned(), "silo".into()],
        dir.path().to_owned(),
    );
    config.silos = 3;
    config.grains = 300;
    config.workers = 16;
    config.faults = vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];
    config.fault_count = 3;
    config.database_url = DATABASE.into();
    config.seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let seed = config.seed;
    let report = tokio::time::timeout(Duration::from_secs(400), actor_chaos::run(config))
        .await
        .expect("the bounded run ends")
        .expect("the run could be carried out");
    assert!(report.acknowledged_writes > 0, "{report:#?}");
    assert_eq!(
        report.duplicate_activations, 0,
        "seed {seed}: duplicate activations: {:#?}",
        report.duplicate_examples
    );
    assert_eq!(
        report.lost_writes, 0,
        "seed {seed}: lost acknowledged writes: {:#?}",
        report.lost_examples
    );
    assert!(report.passed, "{report:#?}");
}

/// A silo paused far past its lease (17 s: the others declare it dead
/// and move its grains within about 4 s) runs no turn when it resumes
/// before it learns it was declared dead: its turns are fenced by its own
/// lease (`actor_core::TurnFence`), counted from before the heartbeat
/// that granted it. Before that fence, seed 3 found 29 overlapping
/// activations. Turns already running when the process froze (awaiting
/// their storage write) end after the resume: they started before the
/// grain moved, a write they issue after the resume is refused (past the
/// lease) and one they sent before landed before the new activation
/// loaded; the oracle counts them as stragglers, not duplicates, and the
/// lost-writes oracle checks that none of them overwrote anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_past_the_fence_never_activates_twice() {
    if !postgres_up() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL is not running on 127.0.0.1:5432 (CI=true: the chaos test needs it)"
        );
        eprintln!("skipped: PostgreSQL is not running on 127.0.0.1:5432");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = ChaosConfig::new(
        vec![env!("CARGO_BIN_EXE_chaos").to_owned(), "silo".into()],
        dir.path().to_owned(),
    );
    config.grains = 300;
    config.workers = 16;
    config.faults = vec![FaultKind::Pause];
    config.fault_count = 2;
    config.pause = Some(Duration::from_secs(17));
    config.database_url = DATABASE.into();
    config.seed = 3;
    let report = tokio::time::timeout(Duration::from_secs(400), actor_chaos::run(config))
        .await
        .expect("the run ends")
        .expect("the run could be carried out");
    assert_eq!(
        report.duplicate_activations, 0,
        "{:#?}",
        report.duplicate_examples
    );
    assert_eq!(report.lost_writes, 0, "{:#?}", report.lost_examples);
    assert!(report.acknowledged_writes > 0, "{report:#?}");
    assert!(report.passed, "{report:#?}");
}
