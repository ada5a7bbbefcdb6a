//! The `remote/cluster3_*` scenarios: a cluster of three silo processes
//! (the remote scenarios' peer and two more started here) called by an
//! external client, beside the 2-process figure and the stream floor over
//! the same processes; then one process is killed and each figure is
//! measured again on the two survivors.

use std::path::Path;
use std::sync::Arc;

use super::{PAYLOAD, Peer, Shape, Subject, sample};
use crate::Config;
use crate::report::{Better, Scenario};
use crate::scenarios::runner::{self, Entry, Plan, Targets};
use crate::subjects::Role;

/// The 2-process figure beside the cluster scenarios.
const TWO_PROCESSES: &str = "actor-core, 2 processes";

/// The entries of a `remote/cluster3_*` scenario: actor-core calling
/// grains spread over the `cluster`'s processes (the subject), the stream
/// floor over the same processes, and actor-core calling grains of the
/// first of them only (the 2-process figure), sampled in turn.
fn entries(cluster: &Arc<[Arc<Peer>]>, shape: Shape) -> Vec<Entry> {
    let ours = cluster.clone();
    let floor = cluster.clone();
    let two: Arc<[Arc<Peer>]> = Arc::from([cluster[0].clone()]);
    vec![
        Entry::from_fn(Subject::Ours.name(), Role::Ours, None, move || {
            Ok(sample(&ours, Subject::Ours, shape)
                .unwrap_or_else(|e| panic!("actor-core on the cluster: {e}")))
        }),
        Entry::from_fn(
            Subject::Stream.name(),
            Role::Floor,
            Some("one raw tonic bidi stream per silo process, calls spread evenly over them"),
            move || sample(&floor, Subject::Stream, shape),
        ),
        Entry::from_fn(
            TWO_PROCESSES,
            Role::Peer,
            Some("the same caller and calls onto one silo process (the remote/ask_* setup)"),
            move || sample(&two, Subject::Ours, shape),
        ),
    ]
}

/// The cluster scenarios' names: before and after one silo is killed,
/// throughput and p99 at 64 and 1,000 in flight.
pub(super) fn names() -> Vec<(String, bool, u64, bool)> {
    let mut names = Vec::new();
    for killed in [false, true] {
        for in_flight in [64, 1000] {
            for p99 in [false, true] {
                let figure = if p99 {
                    "ask_latency_p99"
                } else {
                    "ask_throughput"
                };
                let stage = if killed { "_after_kill" } else { "" };
                names.push((
                    format!("remote/cluster3{stage}_{figure}_{in_flight}_in_flight"),
                    killed,
                    in_flight,
                    p99,
                ));
            }
        }
    }
    names
}

/// The `remote/cluster3_*` scenarios: `first` (the remote scenarios' peer)
/// and two more peer processes started here make a 3-silo cluster; each
/// figure is measured with all three, then one of the two started here is
/// killed and each is measured again with the survivors.
pub(super) fn run(
    config: &Config,
    exe: &Path,
    first: &Arc<Peer>,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Scenario>, String> {
    let names = names();
    if !names.iter().any(|(n, ..)| wanted(n)) {
        return Ok(Vec::new());
    }
    // Dropped (stdin closed, then killed) on every way out of here.
    let mut more = vec![Arc::new(Peer::start(exe)?), Arc::new(Peer::start(exe)?)];
    let mut cluster: Arc<[Arc<Peer>]> =
        Arc::from([first.clone(), more[0].clone(), more[1].clone()]);
    let mut out = Vec::new();
    let calls = config.remote_calls * 4;
    for (name, killed, in_flight, p99) in names {
        if killed && cluster.len() == 3 {
            drop(cluster);
            let victim = more.pop().expect("two peers started here");
            Arc::try_unwrap(victim)
                .map_err(|_| "the peer to kill is still in use".to_owned())?
                .kill()?;
            cluster = Arc::from([first.clone(), more[0].clone()]);
        }
        if !wanted(&name) {
            continue;
        }
        let stage = if killed {
            "a cluster of three silo processes after one of them was killed (SIGKILL, no \
             shutdown) and the caller's static router given the two survivors (the killed \
             silo's grains are placed on them and activated there by the warm-up calls; the \
             membership protocol's failure detection is not part of this figure)"
        } else {
            "a cluster of three silo processes (this binary with --remote-peer), each owning \
             the grains the caller's static router places on it"
        };
        let (figure, unit, better, shape) = if p99 {
            (
                "p99 of the latency of each call",
                "µs/call",
                Better::Lower,
                Shape::LoadedLatency {
                    in_flight,
                    calls,
                    percentile: 0.99,
                },
            )
        } else {
            (
                "calls per second",
                "calls/s",
                Better::Higher,
                Shape::Throughput { in_flight, calls },
            )
        };
        let plan = Plan {
            name,
            description: format!(
                "{figure} when {in_flight} caller tasks on a silo in this process that owns \
                 none of the called grains (an external client) each ask their own grain in \
                 sequence, {calls} calls in all, {PAYLOAD}-byte payload, on {stage}; floor: \
                 the same calls on one raw tonic bidirectional stream per silo process; \
                 beside them the same caller onto one silo process ({TWO_PROCESSES})."
            ),
            unit,
            better,
            runs: config.runs,
            targets: Targets::default(),
            floor_name: "floor: tonic bidi stream",
        };
        out.push(runner::run(plan, entries(&cluster, shape), "remote"));
    }
    Ok(out)
}
