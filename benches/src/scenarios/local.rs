//! Local scenarios: one process, one silo, no I/O. Ask latency and
//! throughput, tell throughput, activation rate and idle memory, each with
//! its raw tokio floor and the peers in the same run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::runner::{self, Entry, Plan, Targets, Workload};
use crate::Config;
use crate::report::{Better, Rule, Scenario, meminfo_kib};
use crate::subjects::{
    Flavor, STATE_BYTES, Subject, actix::Actix, floor::Floor, kameo::Kameo, ours::Ours,
    ractor::Ractor,
};
use crate::workloads::{self, Sample};

/// actor-core, the floor, then the peers.
fn all<W: Workload>(w: &W) -> Vec<Entry> {
    vec![
        Entry::new::<Ours, W>(w),
        Entry::new::<Floor, W>(w),
        Entry::new::<Kameo, W>(w),
        Entry::new::<Ractor, W>(w),
        Entry::new::<Actix, W>(w),
    ]
}

#[derive(Clone)]
struct AskLatency {
    flavor: Flavor,
    calls: u64,
}
impl Workload for AskLatency {
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        Ok(workloads::ask_latency::<S>(self.flavor, self.calls))
    }
}

#[derive(Clone)]
struct AskThroughput {
    callers: u64,
    actors: u64,
    total: u64,
}
impl Workload for AskThroughput {
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        Ok(workloads::ask_throughput::<S>(
            Flavor::MultiThread,
            self.callers,
            self.actors,
            self.total,
        ))
    }
}

#[derive(Clone)]
struct TellThroughput {
    messages: u64,
    /// Told round-robin.
    actors: u64,
}
impl Workload for TellThroughput {
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        Ok(workloads::tell_throughput::<S>(
            Flavor::MultiThread,
            self.messages,
            self.actors,
        ))
    }
}

#[derive(Clone)]
struct ActivationRate {
    count: u64,
    creators: u64,
    /// The idle-memory scenarios' bytes per actor, where they ran first.
    seen: Rc<RefCell<HashMap<&'static str, f64>>>,
}
impl Workload for ActivationRate {
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        fits_in_memory::<S>(&self.seen, self.count)?;
        Ok(workloads::activation_rate::<S>(
            Flavor::MultiThread,
            self.count,
            self.creators,
        ))
    }
}

/// Bytes per idle actor; remembers each subject's figure so that a larger
/// count can first check that it fits in the machine's free memory.
#[derive(Clone)]
#[cfg_attr(feature = "mimalloc", allow(dead_code))]
struct IdleMemory {
    count: u64,
    seen: Rc<RefCell<HashMap<&'static str, f64>>>,
}
impl Workload for IdleMemory {
    #[cfg(not(feature = "mimalloc"))]
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        fits_in_memory::<S>(&self.seen, self.count)?;
        let v = workloads::idle_memory::<S>(self.count);
        self.seen.borrow_mut().insert(S::NAME, v.value);
        Ok(v)
    }

    /// The bytes are counted by the counting allocator, which the
    /// `mimalloc` feature replaces.
    #[cfg(feature = "mimalloc")]
    fn run<S: Subject>(&self) -> Result<Sample, String> {
        Err("built with the mimalloc feature: no counting allocator".to_owned())
    }
}

/// Whether `count` actors of subject `S` fit in the machine's available
/// memory, by its bytes per idle actor measured earlier in the run (if it
/// was): an error saying why not.
fn fits_in_memory<S: Subject>(
    seen: &RefCell<HashMap<&'static str, f64>>,
    count: u64,
) -> Result<(), String> {
    let known = seen.borrow().get(S::NAME).copied();
    if let (Some(per_actor), Some(avail_kib)) = (known, meminfo_kib("MemAvailable")) {
        // Allocator overhead and the process's own peak on top.
        let need = per_actor * count as f64 * 1.5;
        let avail = avail_kib as f64 * 1024.0;
        if need > avail * 0.6 {
            return Err(format!(
                "{count} actors need about {:.1} GiB, {:.1} GiB available",
                need / f64::from(1 << 30),
                avail / f64::from(1 << 30)
            ));
        }
    }
    Ok(())
}

pub(crate) fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Runs workload `w` once against the subject named `subject`.
fn by_subject<W: Workload>(w: &W, subject: &str) -> Result<Sample, String> {
    match subject {
        "actor-core" => w.run::<Ours>(),
        "floor" => w.run::<Floor>(),
        "kameo" => w.run::<Kameo>(),
        "ractor" => w.run::<Ractor>(),
        "actix" => w.run::<Actix>(),
        other => Err(format!(
            "unknown subject `{other}` (actor-core, floor, kameo, ractor, actix)"
        )),
    }
}

/// One workload, once, against one subject, sized by `count` (calls,
/// messages or actors): for profilers. `workload` is a scenario name
/// without its size: `ask_latency/current_thread`,
/// `ask_latency/multi_thread`, `ask_throughput/{C}_caller(s)_{A}_grain(s)`,
/// `tell_throughput/{A}_grain(s)` (told round-robin), `activation/rate`,
/// `activation/idle_memory`.
pub(crate) fn profile(workload: &str, subject: &str, count: u64) -> Result<Sample, String> {
    let bad = || format!("unknown workload `{workload}`");
    match workload {
        "ask_latency/current_thread" => by_subject(
            &AskLatency {
                flavor: Flavor::CurrentThread,
                calls: count,
            },
            subject,
        ),
        "ask_latency/multi_thread" => by_subject(
            &AskLatency {
                flavor: Flavor::MultiThread,
                calls: count,
            },
            subject,
        ),
        "activation/rate" => by_subject(
            &ActivationRate {
                count,
                creators: 64,
                seen: Rc::default(),
            },
            subject,
        ),
        "activation/idle_memory" => by_subject(
            &IdleMemory {
                count,
                seen: Rc::default(),
            },
            subject,
        ),
        w if w.starts_with("tell_throughput/") => {
            let actors = w
                .strip_prefix("tell_throughput/")
                .and_then(|r| {
                    r.strip_suffix("_grain")
                        .or_else(|| r.strip_suffix("_grains"))
                })
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            by_subject(
                &TellThroughput {
                    messages: count,
                    actors,
                },
                subject,
            )
        }
        w => {
            let shape = w.strip_prefix("ask_throughput/").ok_or_else(bad)?;
            let (callers, rest) = shape
                .split_once("_callers_")
                .or_else(|| shape.split_once("_caller_"))
                .ok_or_else(bad)?;
            let actors = rest
                .strip_suffix("_grains")
                .or_else(|| rest.strip_suffix("_grain"))
                .ok_or_else(bad)?;
            by_subject(
                &AskThroughput {
                    callers: callers.parse().map_err(|_| bad())?,
                    actors: actors.parse().map_err(|_| bad())?,
                    total: count,
                },
                subject,
            )
        }
    }
}

/// Runs the local scenarios whose name contains `config.only` (all by
/// default).
pub(crate) fn run(config: &Config) -> Vec<Scenario> {
    let mut out = Vec::new();
    let wanted = |name: &str| config.only.as_deref().is_none_or(|o| name.contains(o));
    let mut go = |plan: Plan, entries: Vec<Entry>| {
        if wanted(&plan.name) {
            out.push(runner::run(plan, entries, "local"));
        }
    };

    let latency_targets = Targets {
        floor: Some((Rule::AtMost, 1.5)),
        peers: Some((Rule::AtMost, 1.0)),
        absolute: None,
    };
    for (flavor, label, how) in [
        (
            Flavor::CurrentThread,
            "current_thread",
            "a current-thread tokio runtime",
        ),
        (
            Flavor::MultiThread,
            "multi_thread",
            "a 2-worker multi-thread tokio runtime",
        ),
    ] {
        go(
            Plan {
                name: format!("ask_latency/{label}"),
                description: format!(
                    "One caller task asks one actor {} times in sequence on {how} \
                     (the caller is a spawned task, not block_on); floor: an unbounded \
                     tokio mpsc to a task that answers on a tokio oneshot.",
                    config.latency_calls
                ),
                unit: "ns/call",
                better: Better::Lower,
                runs: config.runs,
                targets: latency_targets.clone(),
                floor_name: "floor: tokio mpsc+oneshot",
            },
            all(&AskLatency {
                flavor,
                calls: config.latency_calls,
            }),
        );
    }

    // One hot grain under 64 and 1,000 callers, and 1,000 grains under 1,
    // 8, 64 and 1,000 callers (how throughput grows with calls in flight).
    let shapes = [
        (64, 1),
        (1000, 1),
        (1, 1000),
        (8, 1000),
        (64, 1000),
        (1000, 1000),
    ];
    for (callers, actors) in shapes {
        let targets = if (callers, actors) == (1000, 1000) {
            Targets {
                floor: Some((Rule::AtLeast, 0.9)),
                ..Targets::default()
            }
        } else {
            Targets::default()
        };
        let plural = |n: u64| if n > 1 { "s" } else { "" };
        go(
            Plan {
                name: format!(
                    "ask_throughput/{callers}_caller{}_{actors}_grain{}",
                    plural(callers),
                    plural(actors)
                ),
                description: format!(
                    "{callers} caller task(s) ask in sequence, spread over {actors} \
                     already-active actor(s), {} calls in all, on a 2-worker multi-thread \
                     runtime; floor: the same shape over raw mpsc+oneshot.",
                    config.throughput_calls
                ),
                unit: "calls/s",
                better: Better::Higher,
                runs: config.runs,
                targets,
                floor_name: "floor: tokio mpsc+oneshot",
            },
            all(&AskThroughput {
                callers,
                actors,
                total: config.throughput_calls,
            }),
        );
    }

    for actors in [1, 100] {
        let (name, shape, targets) = if actors == 1 {
            (
                "tell_throughput/1_grain".to_owned(),
                "one actor, then asks it once".to_owned(),
                Targets {
                    peers: Some((Rule::AtLeast, 1.0)),
                    ..Targets::default()
                },
            )
        } else {
            (
                format!("tell_throughput/{actors}_grains"),
                format!(
                    "{actors} actors round-robin (message i to actor i % {actors}: the \
                     workload of tqwewe/actor-benchmarks), then asks each once"
                ),
                Targets::default(),
            )
        };
        go(
            Plan {
                name,
                description: format!(
                    "One sender task tells {} one-way messages to {shape}; timed until the \
                     last ask returns (every tell processed), on a 2-worker multi-thread \
                     runtime; floor: an unbounded tokio mpsc per actor.",
                    config.tell_messages
                ),
                unit: "msgs/s",
                better: Better::Higher,
                runs: config.runs,
                targets,
                floor_name: "floor: tokio mpsc",
            },
            all(&TellThroughput {
                messages: config.tell_messages,
                actors,
            }),
        );
    }

    // Idle memory first: its bytes per actor tell the activation-rate
    // scenarios whether 1,000,000 of a subject's actors fit.
    let seen = Rc::new(RefCell::new(HashMap::new()));
    for &(count, runs) in &config.memory {
        if cfg!(feature = "mimalloc") {
            // Counted by the counting allocator, which mimalloc replaces
            // (the run reports them as not measured).
            break;
        }
        go(
            Plan {
                name: format!("activation/idle_memory_{}", human(count)),
                description: format!(
                    "Bytes still allocated per actor after {count} actors were created on \
                     a current-thread runtime, called once each and left idle (counted by \
                     a per-thread counting allocator: requested bytes, malloc's own \
                     overhead excluded; handle slots not counted). Every actor holds a \
                     u64 of user state ({STATE_BYTES} bytes)."
                ),
                unit: "bytes/activation",
                better: Better::Lower,
                runs,
                targets: Targets {
                    absolute: Some((
                        "bytes beyond user state",
                        Rule::AtMost,
                        512.0,
                        STATE_BYTES as f64,
                    )),
                    ..Targets::default()
                },
                floor_name: "floor: tokio task + mpsc",
            },
            all(&IdleMemory {
                count,
                seen: seen.clone(),
            }),
        );
    }

    for &(count, runs) in &config.activation {
        go(
            Plan {
                name: format!("activation/rate_{}", human(count)),
                description: format!(
                    "64 tasks make {count} first calls to new grains between them (peers: \
                     spawn an actor and ask it once; floor: spawn a tokio task with an mpsc \
                     and ask it once), on a 2-worker multi-thread runtime; every actor stays \
                     alive until the sample ends."
                ),
                unit: "activations/s",
                better: Better::Higher,
                runs,
                targets: Targets {
                    absolute: Some(("activations/s", Rule::AtLeast, 500_000.0, 0.0)),
                    ..Targets::default()
                },
                floor_name: "floor: tokio task + mpsc",
            },
            all(&ActivationRate {
                count,
                creators: 64,
                seen: seen.clone(),
            }),
        );
    }
    out
}
