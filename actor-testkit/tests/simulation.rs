//! The cluster's guarantees under deterministic simulation (turmoil):
//! many seeds of kills, restarts, partitions and held messages, with the
//! single-activation oracle and the call history checking every run.
//!
//! `SIM_SEEDS` sets how many seeds run (default 200), `SIM_SEED` the first
//! (default 1). A failing seed is printed; replay it with
//! `SIM_SEED=<seed> SIM_SEEDS=1 cargo test -p actor-testkit --test simulation`.

use actor_testkit::sim::{SimConfig, run, run_seeds, seeds_from_env};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

#[test]
fn one_seed_smoke() {
    let r = run(&SimConfig::new(7));
    for l in &r.trace {
        println!("{l}");
    }
    println!("{:?} faults {}", r.calls, r.faults);
    assert!(r.passed(), "{}", r.failure());
}
