//! The benchmark suite of the grains runtime: `actor-core` measured side by
//! side with its physical floor (raw tokio channels doing the same work)
//! and with the Rust actor peers (kameo, ractor, actix), all in one process
//! run, every scenario repeated and reported as medians with ratios.
//!
//! Run with: `cargo run --release -p benches -- [--quick]`
//!
//! The binary prints the tables and writes the same figures as JSON to
//! `target/benchmarks/latest.json`; `BENCHMARKS.md` at the repository root
//! holds the figures of the last full run and how to read them.
//!
//! Three groups of scenarios:
//! - **local**: one silo, no I/O; every workload is written once over an
//!   internal `Subject` trait (one implementation each for actor-core, the
//!   raw floor, kameo, ractor and actix), so every subject runs exactly the
//!   same code;
//! - **remote**: a silo calling grains on a silo in a second process (this
//!   binary, started with `--remote-peer`) over actor-cluster's link,
//!   against raw tonic (one bidirectional stream, and unary calls) and
//!   rio-rs (its server in the second process), and first calls that
//!   activate grains there;
//! - **storage**: persisted writes through `PersistentState` on SQLite and
//!   PostgreSQL, against the provider's own statement run with raw sqlx.

mod report;
mod scenarios;
mod subjects;
mod workloads;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use report::{
    AbsoluteTarget, Better, Comparison, Figures, Kind, Machine, NotMeasured, Report, Rule,
    Scenario, Skipped, meminfo_kib,
};

/// How much a run measures.
#[derive(Debug, Clone)]
pub struct Config {
    /// `quick`, `full` or `tiny`, as reported.
    pub mode: String,
    /// Timed runs per scenario (each subject once per run).
    pub runs: usize,
    /// Sequential calls per latency sample.
    pub latency_calls: u64,
    /// Calls per throughput sample.
    pub throughput_calls: u64,
    /// One-way messages per tell sample.
    pub tell_messages: u64,
    /// Activation-rate scenarios: (new actors per sample, runs).
    pub activation: Vec<(u64, usize)>,
    /// Idle-memory scenarios: (actors, runs).
    pub memory: Vec<(u64, usize)>,
    /// Calls per remote latency sample (throughput samples make four
    /// times as many; remote activation samples activate this many
    /// grains).
    pub remote_calls: u64,
    /// Persisted writes per storage sample.
    pub storage_writes: u64,
    /// The executable that serves as the remote peer process when started
    /// with `--remote-peer` (the `benches` binary); without one, the remote
    /// scenarios are reported as not measured.
    pub peer_exe: Option<std::path::PathBuf>,
    /// Only scenarios whose name contains this.
    pub only: Option<String>,
}

impl Config {
    /// The report mode: every figure the issue asks for, activation rate
    /// and idle memory at 10,000, 100,000 and 1,000,000 actors. A few
    /// minutes on two cores.
    pub fn full() -> Config {
        Config {
            mode: "full".to_owned(),
            runs: 9,
            latency_calls: 200_000,
            throughput_calls: 400_000,
            tell_messages: 1_000_000,
            activation: vec![(10_000, 9), (100_000, 9), (1_000_000, 3)],
            memory: vec![(10_000, 3), (100_000, 3), (1_000_000, 2)],
            remote_calls: 20_000,
            storage_writes: 8_000,
            peer_exe: None,
            only: None,
        }
    }

    /// The check mode: the same scenarios with fewer runs and smaller
    /// counts, activation rate and idle memory at 10,000 and 100,000 only.
    /// About two minutes.
    pub fn quick() -> Config {
        Config {
            mode: "quick".to_owned(),
            runs: 5,
            latency_calls: 50_000,
            throughput_calls: 100_000,
            tell_messages: 200_000,
            activation: vec![(10_000, 5), (100_000, 5)],
            memory: vec![(10_000, 2), (100_000, 2)],
            remote_calls: 5_000,
            storage_writes: 2_000,
            peer_exe: None,
            only: None,
        }
    }

    /// A smoke run for tests (debug builds): every scenario, one run,
    /// tiny counts. Its figures mean nothing.
    pub fn tiny() -> Config {
        Config {
            mode: "tiny".to_owned(),
            runs: 1,
            latency_calls: 200,
            throughput_calls: 2_000,
            tell_messages: 2_000,
            activation: vec![(640, 1)],
            memory: vec![(1_000, 1)],
            remote_calls: 200,
            storage_writes: 64,
            peer_exe: None,
            only: None,
        }
    }
}

/// Serves as the remote scenarios' peer process (what `benches
/// --remote-peer` runs): a silo, a raw tonic echo server and a rio-rs
/// server on loopback, until stdin closes.
pub fn serve_remote_peer() -> Result<(), String> {
    scenarios::remote::serve_peer()
}

/// The flag that makes the `benches` binary the remote peer process.
pub const REMOTE_PEER_FLAG: &str = scenarios::remote::PEER_FLAG;

/// Runs one workload once against one subject and returns its figure
/// (in the scenario's unit) and CPU time per operation: what a profiler
/// runs (see `--profile` and BENCHMARKS.md). `subject` is one of
/// `actor-core`, `floor`, `kameo`, `ractor`, `actix` (remote workloads,
/// `remote/...`: `actor-core`, `stream`, `unary`, `rio-rs`, with this
/// executable as the peer process); `count` sizes the run (calls,
/// messages or actors).
pub fn profile(workload: &str, subject: &str, count: u64) -> Result<(f64, Option<f64>), String> {
    let sample = if workload.starts_with("remote/") {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        scenarios::remote::profile(workload, subject, count, &exe)?
    } else {
        scenarios::local::profile(workload, subject, count)?
    };
    Ok((sample.value, sample.cpu_ns_per_op))
}

/// Runs every scenario `config` selects and returns the report; progress
/// goes to stderr.
pub fn run(config: &Config, command: &str) -> Report {
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut scenarios = scenarios::local::run(config);
    let mut not_measured = Vec::new();
    if cfg!(feature = "mimalloc") {
        for (count, _) in &config.memory {
            let scenario = format!("activation/idle_memory_{}", scenarios::local::human(*count));
            if config.only.as_deref().is_none_or(|o| scenario.contains(o)) {
                not_measured.push(NotMeasured {
                    scenario,
                    reason: "built with the mimalloc feature: the counting allocator \
                             that measures idle memory is not installed"
                        .to_owned(),
                });
            }
        }
    }
    match scenarios::remote::run(config) {
        Ok(remote) => scenarios.extend(remote),
        Err(reason) => not_measured.push(NotMeasured {
            scenario: "remote/*".to_owned(),
            reason,
        }),
    }
    let (storage, missing) = scenarios::storage::run(config);
    scenarios.extend(storage);
    not_measured.extend(missing);
    Report {
        mode: config.mode.clone(),
        command: command.to_owned(),
        machine: Machine::current(),
        started_unix_s,
        duration_s: started.elapsed().as_secs_f64(),
        scenarios,
        not_measured,
    }
}
