//! Runs one scenario: every subject once per run, in an order rotated from
//! run to run (so no subject always runs first or last on a noisy
//! machine), then medians, ratios to actor-core and target checks.

use std::time::Instant;

use crate::report::{AbsoluteTarget, Better, Comparison, Figures, Kind, Rule, Scenario, Skipped};
use crate::subjects::{Role, Subject};
use crate::workloads::Sample;

/// A workload, generic over the subject it runs against.
pub(crate) trait Workload: Clone + 'static {
    /// One sample, or why the subject cannot be measured here.
    fn run<S: Subject>(&self) -> Result<Sample, String>;
}

/// One subject bound to a workload.
pub(crate) struct Entry {
    name: &'static str,
    role: Role,
    note: Option<&'static str>,
    run: Box<dyn FnMut() -> Result<Sample, String>>,
}

impl Entry {
    pub(crate) fn new<S: Subject, W: Workload>(w: &W) -> Entry {
        let w = w.clone();
        Entry {
            name: S::NAME,
            role: S::ROLE,
            note: S::NOTE,
            run: Box::new(move || w.run::<S>()),
        }
    }

    /// A subject that is not a [`Subject`] (remote and storage scenarios
    /// measure other things than actors): one sample per call of `run`.
    pub(crate) fn from_fn(
        name: &'static str,
        role: Role,
        note: Option<&'static str>,
        run: impl FnMut() -> Result<Sample, String> + 'static,
    ) -> Entry {
        Entry {
            name,
            role,
            note,
            run: Box::new(run),
        }
    }
}

/// What the Targets ask of a scenario.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// On actor-core's median / the floor's.
    pub(crate) floor: Option<(Rule, f64)>,
    /// On actor-core's median / each peer's.
    pub(crate) peers: Option<(Rule, f64)>,
    /// On actor-core's own median (less `subtract`): (what, rule, target,
    /// subtract).
    pub(crate) absolute: Option<(&'static str, Rule, f64, f64)>,
}

/// A scenario to run.
pub(crate) struct Plan {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    pub(crate) runs: usize,
    pub(crate) targets: Targets,
    /// The floor's name in this scenario (what raw tokio does here).
    pub(crate) floor_name: &'static str,
}

pub(crate) fn run(plan: Plan, mut entries: Vec<Entry>, group: &str) -> Scenario {
    let n = entries.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut skipped: Vec<Option<String>> = vec![None; n];
    let started = Instant::now();
    eprintln!("== {} ({} runs) ==", plan.name, plan.runs);
    for r in 0..plan.runs {
        let mut line = format!("  run {}/{}:", r + 1, plan.runs);
        for j in 0..n {
            let i = (j + r) % n;
            if skipped[i].is_some() {
                continue;
            }
            match (entries[i].run)() {
                Ok(v) => {
                    line.push_str(&format!(" {}={:.0}", entries[i].name, v.value));
                    samples[i].push(v.value);
                    cpu[i].extend(v.cpu_ns_per_op);
                }
                Err(reason) => {
                    line.push_str(&format!(" {}=skipped", entries[i].name));
                    skipped[i] = Some(reason);
                }
            }
        }
        eprintln!("{line}");
    }
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());

    let ours_at = entries
        .iter()
        .position(|e| e.role == Role::Ours)
        .expect("actor-core is in every scenario");
    let ours = Figures::from_samples(samples[ours_at].clone());
    let cpu_median =
        |i: usize| (!cpu[i].is_empty()).then(|| Figures::from_samples(cpu[i].clone()).median);
    let ours_cpu = cpu_median(ours_at);
    let mut comparisons = Vec::new();
    let mut left_out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i == ours_at {
            continue;
        }
        if let Some(reason) = &skipped[i] {
            if samples[i].is_empty() {
                left_out.push(Skipped {
                    subject: e.name.to_owned(),
                    reason: reason.clone(),
                });
                continue;
            }
        }
        let f = Figures::from_samples(samples[i].clone());
        // Runs where both were measured pair up: each run's ratio is taken
        // under the same load, which a busy machine shifts between runs.
        let paired: Vec<f64> = samples[ours_at]
            .iter()
            .zip(&samples[i])
            .map(|(o, t)| o / t)
            .collect();
        let paired_ratio = Figures::from_samples(paired).median;
        let (kind, target, against) = match e.role {
            Role::Floor => (Kind::Floor, plan.targets.floor, plan.floor_name.to_owned()),
            _ => (Kind::Peer, plan.targets.peers, e.name.to_owned()),
        };
        let ratio = ours.median / f.median;
        let their_cpu = cpu_median(i);
        comparisons.push(Comparison {
            against,
            kind,
            note: e.note.map(str::to_owned),
            median: f.median,
            min: f.min,
            max: f.max,
            runs: f.runs,
            ratio,
            paired_ratio,
            cpu_ns_per_op: their_cpu,
            cpu_ratio: ours_cpu.zip(their_cpu).map(|(o, t)| o / t),
            target_ratio: target.map(|t| t.1),
            target_rule: target.map(|t| t.0),
            met: target.map(|(rule, t)| rule.check(ratio, t)),
        });
    }
    let target = plan.targets.absolute.map(|(what, rule, target, subtract)| {
        let value = ours.median - subtract;
        AbsoluteTarget {
            what: what.to_owned(),
            value,
            target,
            rule,
            met: rule.check(value, target),
        }
    });
    entries.clear();
    Scenario {
        name: plan.name,
        group: group.to_owned(),
        description: plan.description,
        unit: plan.unit.to_owned(),
        better: plan.better,
        subject: "actor-core".to_owned(),
        median: ours.median,
        min: ours.min,
        max: ours.max,
        runs: ours.runs,
        samples: ours.samples,
        cpu_ns_per_op: ours_cpu,
        target,
        comparisons,
        skipped: left_out,
    }
}
