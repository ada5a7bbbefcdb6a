//! The figures of a run, printed one per line and written as JSON.

use std::time::Duration;

use serde::Serialize;

use crate::driver::PhaseCalls;
use crate::harness::ChaosConfig;
use crate::oracle::{Duplicate, LostWrite, percentile};
use crate::schedule::{Fault, FaultKind};

/// What one fault did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultFigures {
    /// The fault.
    pub fault: Fault,
    /// Its phase's name.
    pub label: String,
    /// When it began, in Unix milliseconds.
    pub start_ms: i64,
    /// When it ended (restart, SIGCONT, heal, load stopped).
    pub end_ms: i64,
    /// From the fault to the silo's dead declaration (its last vote).
    pub detect_ms: Option<i64>,
    /// From the fault to the first acknowledged append of each sampled
    /// grain that was on the silo.
    pub moved_ms: Vec<i64>,
    /// Sampled grains that did not answer within 60 s.
    pub moved_unanswered: usize,
    /// After a partition: from the heal to every silo active and a
    /// sample of grains answering.
    pub recovery_ms: Option<i64>,
    /// Silos declared dead during a CPU load that no fault explains.
    pub false_deaths: usize,
}

impl FaultFigures {
    pub(crate) fn new(fault: Fault, label: String) -> Self {
        FaultFigures {
            fault,
            label,
            start_ms: 0,
            end_ms: 0,
            detect_ms: None,
            moved_ms: Vec::new(),
            moved_unanswered: 0,
            recovery_ms: None,
            false_deaths: 0,
        }
    }

    pub(crate) fn summary(&self) -> String {
        let ms = |v: Option<i64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
        format!(
            "{}: declared dead after {}, moved grains answered p50 {} max {} ({} sampled, {} unanswered), recovery {}",
            self.label,
            ms(self.detect_ms),
            ms(percentile(&self.moved_ms, 50.0)),
            ms(self.moved_ms.iter().copied().max()),
            self.moved_ms.len() + self.moved_unanswered,
            self.moved_unanswered,
            ms(self.recovery_ms),
        )
    }
}

/// The percentiles of one figure, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: Option<i64>,
    /// 99th percentile.
    pub p99: Option<i64>,
    /// Largest.
    pub max: Option<i64>,
}

impl Spread {
    fn of(v: &[i64]) -> Spread {
        Spread {
            n: v.len(),
            p50: percentile(v, 50.0),
            p99: percentile(v, 99.0),
            max: v.iter().copied().max(),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<i64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
        write!(
            f,
            "p50 {} p99 {} max {} (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The command that replays the run.
    pub replay: String,
    /// `namespaces` or `loopback-proxies`.
    pub network: String,
    /// Why namespaces were not used, if they were not.
    pub network_fallback: Option<String>,
    /// The silos' endpoints.
    pub silo_endpoints: Vec<String>,
    /// Silos, grains, workers.
    pub silos: usize,
    /// Ledger grains.
    pub grains: usize,
    /// Concurrent calls.
    pub workers: usize,
    /// The schedule.
    pub schedule: Vec<Fault>,
    /// Wall time of the run, in seconds.
    pub duration_s: f64,
    /// Overlapping activations of one grain (must be 0).
    pub duplicate_activations: usize,
    /// The first few.
    pub duplicate_examples: Vec<Duplicate>,
    /// Turns that started before another activation of their grain began
    /// and ended after (their writes are fenced at the storage; not
    /// duplicates: see [`duplicates`](crate::duplicates)).
    pub straggling_turns: usize,
    /// The first few.
    pub straggler_examples: Vec<Duplicate>,
    /// Appends acknowledged to the driver.
    pub acknowledged_writes: u64,
    /// Acknowledged appends missing from the database (must be 0).
    pub lost_writes: usize,
    /// The first few.
    pub lost_examples: Vec<LostWrite>,
    /// Calls per phase.
    pub phases: Vec<PhaseCalls>,
    /// Per fault.
    pub faults: Vec<FaultFigures>,
    /// kill -9 to dead declaration.
    pub kill_to_dead_ms: Spread,
    /// kill -9 to the first acknowledged call of each moved grain.
    pub kill_to_moved_ms: Spread,
    /// SIGSTOP to dead declaration.
    pub pause_to_dead_ms: Spread,
    /// SIGSTOP to the first acknowledged call of each moved grain.
    pub pause_to_moved_ms: Spread,
    /// Cut to dead declaration.
    pub partition_to_dead_ms: Spread,
    /// Heal to recovery.
    pub partition_recovery_ms: Spread,
    /// Silos declared dead that no fault explains.
    pub false_deaths: usize,
    /// Of those, during a CPU load.
    pub false_deaths_under_cpu_load: usize,
    /// Silo processes that exited by themselves (declared dead) and were
    /// restarted.
    pub self_exits_restarted: usize,
    /// Notable events.
    pub events: Vec<String>,
    /// Duplicates 0 and lost writes 0.
    pub passed: bool,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &ChaosConfig,
        endpoints: &[String],
        schedule: Vec<Fault>,
        took: Duration,
        duplicates: Vec<Duplicate>,
        stragglers: Vec<Duplicate>,
        acknowledged: u64,
        lost: Vec<LostWrite>,
        phases: Vec<PhaseCalls>,
        faults: Vec<FaultFigures>,
        false_deaths: usize,
        false_under_load: usize,
        restarts: usize,
        events: Vec<String>,
    ) -> Report {
        let collect = |kind: FaultKind, f: fn(&FaultFigures) -> Vec<i64>| -> Spread {
            let v: Vec<i64> = faults
                .iter()
                .filter(|x| x.fault.kind == kind)
                .flat_map(f)
                .collect();
            Spread::of(&v)
        };
        let detect = |x: &FaultFigures| x.detect_ms.into_iter().collect();
        let moved = |x: &FaultFigures| x.moved_ms.clone();
        let recovery = |x: &FaultFigures| x.recovery_ms.into_iter().collect();
        Report {
            seed: config.seed,
            replay: config.replay_command(),
            network: String::new(),
            network_fallback: None,
            silo_endpoints: endpoints.to_vec(),
            silos: config.silos,
            grains: config.grains,
            workers: config.workers,
            schedule,
            duration_s: took.as_secs_f64(),
            duplicate_activations: duplicates.len(),
            duplicate_examples: duplicates.into_iter().take(5).collect(),
            straggling_turns: stragglers.len(),
            straggler_examples: stragglers.into_iter().take(5).collect(),
            acknowledged_writes: acknowledged,
            lost_writes: lost.len(),
            lost_examples: lost.iter().take(5).cloned().collect(),
            phases,
            kill_to_dead_ms: collect(FaultKind::Kill, detect),
            kill_to_moved_ms: collect(FaultKind::Kill, moved),
            pause_to_dead_ms: collect(FaultKind::Pause, detect),
            pause_to_moved_ms: collect(FaultKind::Pause, moved),
            partition_to_dead_ms: collect(FaultKind::Partition, detect),
            partition_recovery_ms: collect(FaultKind::Partition, recovery),
            faults,
            false_deaths,
            false_deaths_under_cpu_load: false_under_load,
            self_exits_restarted: restarts,
            events,
            passed: lost.is_empty() && acknowledged > 0,
        }
        .finish()
    }

    fn finish(mut self) -> Report {
        self.passed = self.passed && self.duplicate_activations == 0;
        self
    }

    /// Prints one line per figure, and the seed and schedule if it
    /// failed.
    pub fn print(&self, config: &ChaosConfig) {
        println!("chaos: network: {} {:?}", self.network, self.silo_endpoints);
        if let Some(why) = &self.network_fallback {
            println!("chaos: network fallback: {why}");
        }
        println!(
            "chaos: duplicate activations: {} (must be 0)",
            self.duplicate_activations
        );
        println!(
            "chaos: turns that started before their grain moved and ended after (writes fenced, not duplicates): {}",
            self.straggling_turns
        );
        println!(
            "chaos: lost acknowledged writes: {} of {} (must be 0)",
            self.lost_writes, self.acknowledged_writes
        );
        for p in &self.phases {
            println!(
                "chaos: calls in {}: {} succeeded, {} failed, {} timed out",
                p.phase, p.succeeded, p.failed, p.timed_out
            );
        }
        println!(
            "chaos: kill -9 to dead declaration: {}",
            self.kill_to_dead_ms
        );
        println!(
            "chaos: kill -9 to first call answered by a moved grain: {}",
            self.kill_to_moved_ms
        );
        println!(
            "chaos: SIGSTOP to dead declaration: {}",
            self.pause_to_dead_ms
        );
        println!(
            "chaos: SIGSTOP to first call answered by a moved grain: {}",
            self.pause_to_moved_ms
        );
        println!(
            "chaos: partition to dead declaration: {}",
            self.partition_to_dead_ms
        );
        println!(
            "chaos: partition heal to recovery: {}",
            self.partition_recovery_ms
        );
        println!(
            "chaos: false death declarations: {} ({} under full CPU load)",
            self.false_deaths, self.false_deaths_under_cpu_load
        );
        println!(
            "chaos: silos that exited by themselves and were restarted: {}",
            self.self_exits_restarted
        );
        println!("chaos: run took {:.1} s", self.duration_s);
        if self.passed {
            println!("chaos: PASSED (seed {})", self.seed);
        } else {
            println!("chaos: FAILED with seed {}; schedule:", self.seed);
            for f in &self.schedule {
                println!("chaos:   {f}");
            }
            for d in &self.duplicate_examples {
                println!("chaos:   duplicate: {d:?}");
            }
            for l in &self.lost_examples {
                println!("chaos:   lost: {l:?}");
            }
            println!("chaos: replay with: {}", config.replay_command());
        }
    }
}
