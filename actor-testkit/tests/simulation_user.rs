//! Users' own grains and workloads under the simulation
//! (`actor_testkit::sim::Simulation`): a grain type of the test's own with
//! persisted state, a workload of its own on two clients, the built-in
//! oracles fed by it and invariants of its own; and the failure paths: a
//! broken invariant, a broken step invariant, a failing workload, a
//! workload that never ends, a broken grain caught by the oracles, and a
//! seed that replays.
//!
//! `SIM_SEEDS` sets how many seeds the main test runs (default 3, for CI),
//! `SIM_SEED` the first (default 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actor_core::prelude::*;
use actor_persistence::PersistentState;
use actor_testkit::CallOutcome;
use actor_testkit::sim::{self, Nemesis, SimActivations, SimClient, Simulation, seeds_from_env};
use parking_lot::Mutex;

const CI_SEEDS: u64 = 3;
const GRAINS: i64 = 6;

/// A user's grain: a persisted list of the op ids it ran. `broken` makes
/// it acknowledge without storing (a lost write the oracle must catch).
struct Ledger {
    entries: Option<PersistentState<Vec<u64>>>,
    activations: SimActivations,
    history: actor_testkit::CallHistory,
    broken: bool,
}

impl Grain for Ledger {
    const TYPE_NAME: &'static str = "ledger";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        self.entries = Some(PersistentState::load(ctx, "entries").await?);
        self.activations.activated(ctx);
        Ok(())
    }
    async fn on_deactivate(
        &mut self,
        ctx: &GrainContext<Self>,
        why: actor_core::DeactivationReason,
    ) {
        self.activations.deactivated(ctx, why);
    }
}

#[grain_methods]
impl Ledger {
    /// Appends `op` and stores it.
    async fn append(&mut self, op: u64, ctx: &GrainContext<Self>) -> Result<usize, String> {
        self.history.observe(ctx.id(), op);
        let entries = self.entries.as_mut().ok_or("not loaded")?;
        entries.state_mut().push(op);
        if !self.broken {
            entries
                .write_or_reset(ctx)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(entries.state().len())
    }

    /// The stored entries.
    async fn entries(&self) -> Vec<u64> {
        self.entries
            .as_ref()
            .map(|s| s.state().clone())
            .unwrap_or_default()
    }
}

/// The run's state of the user: what the clients saw.
#[derive(Clone, Default)]
struct Seen {
    acked: Arc<AtomicUsize>,
    read_back: Arc<Mutex<Vec<(i64, usize)>>>,
}

async fn append(sim: &SimClient<Seen>, key: i64) -> bool {
    let grain = sim
        .client()
        .get_grain::<Ledger>(key)
        .with_timeout(Duration::from_secs(2));
    let id = GrainId::new(Ledger::TYPE_NAME, key);
    let op = sim.history().invoke(&id);
    sim.writes().write_started(&id, op);
    let result = grain.append(op).await;
    let acked = matches!(result, Ok(Ok(_)));
    sim.history().complete(
        op,
        if acked {
            CallOutcome::Ok
        } else {
            CallOutcome::Unknown
        },
    );
    if acked {
        sim.writes().write_acked(&id, op);
        sim.state().acked.fetch_add(1, Ordering::SeqCst);
    }
    sim.trace(format!(
        "append #{op} to {key}: {}",
        if acked { "ok" } else { "unknown" }
    ));
    acked
}

async fn read_back(sim: &SimClient<Seen>, key: i64) -> bool {
    let grain = sim
        .client()
        .get_grain::<Ledger>(key)
        .with_timeout(Duration::from_secs(2));
    let id = GrainId::new(Ledger::TYPE_NAME, key);
    let start = sim.writes().read_started(&id);
    match grain.entries().await {
        Ok(entries) => {
            sim.writes().read_finished(start, &entries);
            sim.state().read_back.lock().push((key, entries.len()));
            true
        }
        Err(_) => false,
    }
}

/// Appends to random ledgers during the chaos; once healed, every ledger
/// answers and is read back.
async fn workload(sim: SimClient<Seen>) -> actor_testkit::sim::WorkloadResult {
    let mut rng = sim.rng(0);
    while sim.during_chaos() {
        append(&sim, rng.below(GRAINS as u64) as i64).await;
        tokio::time::sleep(Duration::from_millis(10 + rng.below(50))).await;
    }
    sim.after_chaos().await;
    for key in 0..GRAINS {
        let mut ok = false;
        for _ in 0..10 {
            if append(&sim, key).await && read_back(&sim, key).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !ok {
            return Err(format!("ledger {key} does not answer after healing").into());
        }
    }
    Ok(())
}

fn ledgers(broken: bool) -> actor_testkit::sim::SimulationBuilder<Seen> {
    Simulation::with_state(|_| Seen::default())
        .clients(2)
        .silo(move |silo, builder| {
            let (activations, history) = (silo.activations(), silo.history().clone());
            builder.grain_with(move |_| Ledger {
                entries: None,
                activations: activations.clone(),
                history: history.clone(),
                broken,
            })
        })
        .workload(workload)
}

#[test]
fn user_grains_keep_their_guarantees_under_the_nemesis() {
    let reports = ledgers(false)
        .invariant("both clients read every ledger back", |s: &Seen| {
            let n = s.read_back.lock().len();
            if n == 2 * GRAINS as usize {
                Ok(())
            } else {
                Err(format!("{n} read-backs"))
            }
        })
        .build()
        .check(seeds_from_env(CI_SEEDS));
    let acked: usize = reports.iter().map(|r| r.calls.0).sum();
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    assert!(
        acked > 50 * reports.len(),
        "only {acked} calls acknowledged"
    );
    assert!(faults >= reports.len(), "{faults} faults");
}

/// A short calm run: quick, for the failure-path tests.
fn calm(
    b: actor_testkit::sim::SimulationBuilder<Seen>,
) -> actor_testkit::sim::SimulationBuilder<Seen> {
    b.nemesis(Nemesis::none())
        .chaos(Duration::from_secs(1))
        .settle(Duration::from_secs(1))
}

#[test]
fn a_broken_invariant_fails_the_run_with_its_seed_and_how_to_replay_it() {
    let sim = calm(ledgers(false))
        .invariant("never holds", |_: &Seen| Err("as designed".into()))
        .build();
    let report = sim.run(7);
    assert!(!report.passed());
    assert_eq!(report.invariants, ["never holds: as designed"]);
    assert!(report.failure().contains("seed 7"), "{}", report.failure());
    // `check` panics with each failing seed and the line that replays it.
    let panic =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.check(7..8))).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("1 of 1 seeds failed"), "{message}");
    assert!(message.contains("never holds: as designed"), "{message}");
    assert!(
        message.contains("replay: SIM_SEED=7 SIM_SEEDS=1 cargo test"),
        "{message}"
    );
}

#[test]
fn a_broken_step_invariant_stops_the_run_where_it_broke() {
    let report = calm(ledgers(false))
        .step_invariant("at most 3 acknowledged", |s: &Seen| {
            let n = s.acked.load(Ordering::SeqCst);
            if n <= 3 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        })
        .build()
        .run(3);
    assert!(!report.passed());
    assert_eq!(report.invariants.len(), 1, "{:?}", report.invariants);
    assert!(
        report.invariants[0].starts_with("at most 3 acknowledged (at ")
            && report.invariants[0].ends_with(" acknowledged"),
        "{:?}",
        report.invariants
    );
    // The run stopped there: the workload never got to its read-backs.
    assert!(report.trace.iter().filter(|l| l.contains(": ok")).count() <= 6);
}

#[test]
fn a_failing_workload_and_an_endless_one_fail_the_run() {
    let failing = calm(Simulation::with_state(|_| Seen::default()))
        .workload(|_| async { Err("the workload gave up".into()) })
        .build()
        .run(1);
    assert!(
        failing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("the workload gave up")),
        "{:?}",
        failing.error
    );
    let endless = calm(Simulation::with_state(|_| Seen::default()))
        .time_limit(Duration::from_secs(5))
        .workload(|_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .build()
        .run(1);
    assert!(!endless.passed());
    assert!(endless.error.is_some(), "{endless:?}");
}

#[test]
fn a_grain_that_loses_acknowledged_writes_is_caught() {
    // Its appends are acknowledged but never stored: a crash (or any
    // reactivation) loses them, and the read-backs after healing show it.
    let mut caught = None;
    for seed in seeds_from_env(CI_SEEDS) {
        let r = ledgers(true).build().run(seed);
        if !r.writes.is_empty() {
            caught = Some(r);
            break;
        }
    }
    let r = caught.expect("no seed caught the lost writes");
    assert!(!r.passed());
    println!("caught at seed {}: {}", r.seed, r.writes[0]);
}

#[test]
fn a_seed_of_a_user_simulation_replays_the_same_run() {
    let seed = seeds_from_env(1).start;
    let first = sim::trace_in_a_fresh_process("print_the_trace_of_a_seed", seed);
    let again = sim::trace_in_a_fresh_process("print_the_trace_of_a_seed", seed);
    assert!(first.len() > 100, "{} events", first.len());
    sim::assert_same_trace(seed, &first, &again);
}

/// Prints the trace of seed `SIM_SEED` (`--ignored --nocapture`).
#[test]
#[ignore]
fn print_the_trace_of_a_seed() {
    let seed = seeds_from_env(1).start;
    let r = ledgers(false).build().run(seed);
    sim::print_trace(&r);
}
