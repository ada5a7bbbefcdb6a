//! The built-in workload, one user of [`Simulation`]: a grain type that
//! appends each call's op id to its persisted state, callers that call
//! random grains during the chaos, and, once healed, a call to every grain
//! and a read-back of its stored ops (for the lost-write oracle).

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::ClusterClient;
use actor_core::prelude::*;
use actor_persistence::PersistentState;

use super::{SimActivations, SimClient, SimReport, SimRng, SimTrace, Simulation, WorkloadResult};
use crate::oracle::{CallHistory, CallOutcome, WriteHistory};

/// What one simulated run of the built-in workload does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// The seed of the network, the workload and the nemesis.
    pub seed: u64,
    /// How many silos.
    pub silos: usize,
    /// How many grains the workload calls.
    pub grains: i64,
    /// How many concurrent callers.
    pub callers: usize,
    /// How long the nemesis runs (simulated time); the run then heals
    /// everything, waits for the cluster to settle and calls every grain.
    pub chaos: Duration,
    /// Whether the nemesis acts at all.
    pub nemesis: bool,
    /// Test-only: turn the activation fence off (the broken variant the
    /// oracle must catch).
    pub unfenced: bool,
}

impl SimConfig {
    /// Three silos, 12 grains, 3 callers, 8 s of chaos.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            silos: 3,
            grains: 12,
            callers: 3,
            chaos: Duration::from_secs(8),
            nemesis: true,
            unfenced: false,
        }
    }

    /// The broken variant: the same run with the fence turned off.
    pub fn unfenced(mut self) -> Self {
        self.unfenced = true;
        self
    }

    /// Without the nemesis.
    pub fn calm(mut self) -> Self {
        self.nemesis = false;
        self
    }

    /// The built-in workload as a [`Simulation`] (the seed is `run`'s).
    pub fn simulation(&self) -> Simulation {
        let config = self.clone();
        Simulation::builder()
            .silos(self.silos)
            .chaos(self.chaos)
            .nemesis(if self.nemesis {
                super::Nemesis::all()
            } else {
                super::Nemesis::none()
            })
            .unfenced(self.unfenced)
            .silo(|silo, builder| {
                let (activations, history) = (silo.activations(), silo.history().clone());
                builder.grain_with(move |_| Tracked {
                    activations: activations.clone(),
                    history: history.clone(),
                    ops: None,
                })
            })
            .workload(move |ctx| workload(ctx, config.clone()))
            .build()
    }
}

/// Runs one simulation of the built-in workload.
pub fn run(config: &SimConfig) -> SimReport {
    config.simulation().run(config.seed)
}

/// Runs `seeds` of the built-in workload on `threads` threads (each run
/// is single-threaded and independent), printing each failing seed; the
/// reports in seed order.
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    threads: usize,
    config: impl Fn(u64) -> SimConfig + Send + Sync,
) -> Vec<SimReport> {
    super::run_seeds_with(seeds, threads, |seed| run(&config(seed)))
}

/// The grain the workload calls: it reports its activations to the
/// oracle and each call it runs to the history.
struct Tracked {
    activations: SimActivations,
    history: CallHistory,
    /// The ops this grain ran and stored.
    ops: Option<PersistentState<Vec<u64>>>,
}

impl Grain for Tracked {
    const TYPE_NAME: &'static str = "tracked";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        // An activation that cannot load its state fails (and is never
        // deactivated): it only counts once it is up.
        self.ops = Some(PersistentState::load(ctx, "ops").await?);
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
impl Tracked {
    /// Runs call `op` and stores it; how many ops are stored.
    pub(crate) async fn touch(&mut self, op: u64, ctx: &GrainContext<Self>) -> Result<u64, String> {
        self.history.observe(ctx.id(), op);
        let ops = self.ops.as_mut().ok_or("not loaded")?;
        ops.state_mut().push(op);
        ops.write_or_reset(ctx).await.map_err(|e| e.to_string())?;
        Ok(ops.state().len() as u64)
    }

    /// The ops stored.
    pub(crate) async fn ops(&self) -> Vec<u64> {
        self.ops
            .as_ref()
            .map(|s| s.state().clone())
            .unwrap_or_default()
    }
}

/// Callers through the client during the chaos, then, once the nemesis
/// stopped and the cluster settled, one call to every grain.
async fn workload(ctx: SimClient, config: SimConfig) -> WorkloadResult {
    let w = Arc::new(Workload {
        client: ctx.client().clone(),
        history: ctx.history().clone(),
        writes: ctx.writes().clone(),
        trace: ctx.tracer(),
    });
    let until = tokio::time::Instant::now() + config.chaos;
    let mut callers = Vec::new();
    for c in 0..config.callers {
        let w = w.clone();
        let mut rng: SimRng = ctx.rng(c as u64);
        let grains = config.grains;
        callers.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < until {
                let key = rng.below(grains as u64) as i64;
                call(&w, key).await;
                let pause = 10 + rng.below(60);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    for c in callers {
        let _ = c.await;
    }
    // The nemesis heals everything at `chaos`; give failure detection and
    // leases time to settle, then every grain must answer again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for key in 0..config.grains {
        let mut answered = false;
        for _ in 0..10 {
            if call(&w, key).await && read_back(&w, key).await {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !answered {
            return Err(format!("grain {key} does not answer after healing").into());
        }
    }
    Ok(())
}

/// One call of the workload; whether it was acknowledged.
async fn call(w: &Workload, key: i64) -> bool {
    let grain = w
        .client
        .get_grain::<Tracked>(key)
        .with_timeout(Duration::from_secs(2));
    let id = GrainId::new(Tracked::TYPE_NAME, key);
    let op = w.history.invoke(&id);
    w.writes.write_started(&id, op);
    let result = grain.touch(op).await;
    // A grain error (its write failed) leaves the outcome unknown: the
    // op ran, and its write may or may not have been stored.
    let acked = matches!(result, Ok(Ok(_)));
    w.history.complete(
        op,
        if acked {
            CallOutcome::Ok
        } else {
            CallOutcome::Unknown
        },
    );
    match &result {
        Ok(Ok(n)) => {
            w.writes.write_acked(&id, op);
            w.trace.event(format!("call #{op} to {key}: ok {n}"));
        }
        Ok(Err(_)) => w.trace.event(format!("call #{op} to {key}: write failed")),
        Err(e) => w
            .trace
            .event(format!("call #{op} to {key}: {}", error_kind(e))),
    }
    acked
}

/// Reads grain `key`'s stored ops for the lost-write checker.
async fn read_back(w: &Workload, key: i64) -> bool {
    let grain = w
        .client
        .get_grain::<Tracked>(key)
        .with_timeout(Duration::from_secs(2));
    let id = GrainId::new(Tracked::TYPE_NAME, key);
    let start = w.writes.read_started(&id);
    match grain.ops().await {
        Ok(ops) => {
            w.trace.event(format!("read {key}: {} ops", ops.len()));
            w.writes.read_finished(start, &ops);
            true
        }
        Err(e) => {
            w.trace.event(format!("read {key}: {}", error_kind(&e)));
            false
        }
    }
}

/// What the workload's callers share.
struct Workload {
    client: Arc<ClusterClient>,
    history: CallHistory,
    writes: WriteHistory,
    trace: SimTrace,
}

fn error_kind(e: &actor_core::Error) -> &'static str {
    match e {
        actor_core::Error::Timeout { .. } => "timeout",
        actor_core::Error::SiloUnavailable { .. } => "unavailable",
        _ => "error",
    }
}
