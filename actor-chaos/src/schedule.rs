//! The nemesis's schedule: which fault, on which silo, for how long, in
//! order, drawn from the seed alone. Faults run one at a time with a
//! settling gap between them, so that each figure belongs to one fault.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` a silo, keep it down a few seconds, restart it.
    Kill,
    /// SIGSTOP a silo for longer than the lease, then SIGCONT.
    Pause,
    /// Cut a silo off from everything (its namespace's link goes down, or
    /// its proxy stops), then heal.
    Partition,
    /// Load every CPU with busy processes; nobody should be declared dead.
    CpuLoad,
}

impl FaultKind {
    /// Every kind, in the order of the flag's help.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::CpuLoad,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::CpuLoad => "cpu-load",
        }
    }

    /// Parses `kill,pause,partition,cpu-load`.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>> {
        s.split(',')
            .filter(|w| !w.is_empty())
            .map(|w| {
                FaultKind::ALL
                    .into_iter()
                    .find(|k| k.name() == w.trim())
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "unknown fault `{w}`: use kill, pause, partition, cpu-load"
                        ))
                    })
            })
            .collect()
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// The silo's index (unused by `cpu-load`).
    pub silo: usize,
    /// How long the silo stays down, paused, cut off, or the CPU loaded,
    /// in milliseconds.
    pub hold_ms: u64,
    /// The quiet time after the fault ends, before the next one, in
    /// milliseconds.
    pub settle_ms: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::CpuLoad => write!(f, "cpu-load for {} ms", self.hold_ms),
            k => write!(f, "{} s{} for {} ms", k.name(), self.silo, self.hold_ms),
        }?;
        write!(f, ", then {} ms quiet", self.settle_ms)
    }
}

/// Draws `count` faults over `silos` silos from `seed`: the kinds cycle
/// through `kinds` (so a short run has each), the targets and durations
/// are random. `lease` bounds a pause from below (a pause shorter than
/// the lease tests nothing).
pub fn generate(
    seed: u64,
    kinds: &[FaultKind],
    count: usize,
    silos: usize,
    lease: Duration,
) -> Vec<Fault> {
    let mut rng = Rng::new(seed ^ 0x005e_ed0f_fa17);
    let lease = lease.as_millis() as u64;
    let mut order: Vec<FaultKind> = kinds.to_vec();
    // A seeded shuffle, so that a seed also decides the order.
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (0..count)
        .map(|i| {
            let kind = order[i % order.len().max(1)];
            let silo = rng.below(silos as u64) as usize;
            let hold_ms = match kind {
                FaultKind::Kill => rng.between(1_000, 4_000),
                FaultKind::Pause => lease + rng.between(2_000, 4_000),
                FaultKind::Partition => lease + rng.between(3_000, 6_000),
                FaultKind::CpuLoad => rng.between(8_000, 12_000),
            };
            Fault {
                kind,
                silo,
                hold_ms,
                settle_ms: rng.between(6_000, 9_000),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_with_every_kind() {
        let lease = Duration::from_secs(5);
        let a = generate(42, &FaultKind::ALL, 8, 3, lease);
        assert_eq!(a, generate(42, &FaultKind::ALL, 8, 3, lease));
        assert_ne!(a, generate(43, &FaultKind::ALL, 8, 3, lease));
        for k in FaultKind::ALL {
            assert!(a.iter().any(|f| f.kind == k), "{k:?} in {a:?}");
        }
        assert!(a.iter().all(|f| f.silo < 3));
        assert!(
            a.iter()
                .filter(|f| f.kind == FaultKind::Pause)
                .all(|f| f.hold_ms > 5_000)
        );
    }

    #[test]
    fn fault_lists_parse_and_bad_names_are_refused() {
        assert_eq!(
            FaultKind::parse_list("kill,cpu-load").unwrap(),
            vec![FaultKind::Kill, FaultKind::CpuLoad]
        );
        let e = FaultKind::parse_list("kill,flood").unwrap_err();
        assert!(e.to_string().contains("flood"));
    }
}
