// Over 800 lines on purpose: the simulated hosts share the simulated
// world's wire types; the builder and the nemesis are in sim/world.rs,
// the built-in workload in sim/builtin.rs, the oracles in oracle.rs.
//! Deterministic simulation: the cluster, your grains and your workload
//! under turmoil.
//!
//! Each silo is a turmoil host running the production [`ClusterSilo`]:
//! its tonic link server on a simulated TCP listener, its links and probes
//! over simulated TCP streams, its membership agent on the simulator's
//! clock ([`WallClock`] from `turmoil::since_epoch`, tokio time paused and
//! stepped by turmoil). The membership table and the silos' default grain
//! storage are the in-memory ones, served by a host named `db` over
//! simulated TCP, so a silo can be partitioned from them like from a real
//! database. Client hosts run a workload through a [`ClusterClient`], and
//! a [`Nemesis`], driven by the same seed, crashes, restarts and
//! partitions silos and holds their messages.
//!
//! [`Simulation`] runs **your** grain types and workload in that world:
//!
//! ```no_run
//! use actor_core::prelude::*;
//! use actor_testkit::sim::{SimActivations, Simulation, seeds_from_env};
//!
//! /// A grain of yours, reporting its activations to the oracle.
//! struct Counter { n: u64, activations: SimActivations }
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//!     async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
//!         self.activations.activated(ctx);
//!         Ok(())
//!     }
//!     async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, why: actor_core::DeactivationReason) {
//!         self.activations.deactivated(ctx, why);
//!     }
//! }
//! #[grain_methods]
//! impl Counter {
//!     pub async fn add(&mut self, n: u64) -> u64 { self.n += n; self.n }
//! }
//!
//! Simulation::builder()
//!     .silo(|silo, builder| {
//!         let activations = silo.activations();
//!         builder.grain_with(move |_| Counter { n: 0, activations: activations.clone() })
//!     })
//!     .workload(|sim| async move {
//!         let mut rng = sim.rng(0);
//!         while sim.during_chaos() {
//!             let grain = sim.client().get_grain::<Counter>(rng.below(8) as i64);
//!             let _ = grain.add(1).await; // may fail under the nemesis
//!             tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//!         }
//!         sim.after_chaos().await;
//!         for key in 0..8i64 {
//!             sim.client().get_grain::<Counter>(key).add(0).await?;
//!         }
//!         Ok(())
//!     })
//!     .build()
//!     .check(seeds_from_env(4)); // panics with each failing seed and its replay line
//! ```
//!
//! Every run is checked by the strict [`ActivationOracle`] (fed by
//! [`SimActivations`]), the [`CallHistory`] and the [`WriteHistory`] (fed
//! by whoever uses them), and your [invariants](SimulationBuilder::invariant).
//! The same seed gives the same run: [`SimReport::trace`] is the event
//! trace, equal across replays in fresh processes. A failing seed is
//! printed with the line that replays it (`SIM_SEED=<seed> SIM_SEEDS=1`).
//! The built-in workload ([`run`], [`SimConfig`]) is one user of
//! [`Simulation`].

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{
    BoxedIo, Connector, LinkListener, MembershipEntry, MembershipSnapshot, MembershipTable,
    RowEtag, SiloAddress, TableVersion, WallClock,
};
use actor_core::prelude::*;
use actor_persistence::{ETag, StateKey, StorageProvider, StoredState};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[cfg(doc)]
use crate::oracle::{ActivationOracle, CallHistory, WriteHistory};
use crate::oracle::{DuplicateActivation, HistoryViolation, WriteViolation};
#[cfg(doc)]
use actor_cluster::{ClusterClient, ClusterSilo};

mod builtin;
mod world;

pub use builtin::{SimConfig, run, run_seeds};
pub use world::{
    Nemesis, SERVICE_PORT, SimActivations, SimClient, SimSilo, Simulation, SimulationBuilder,
    WorkloadResult, request,
};

/// The port silos serve their link on.
const LINK_PORT: u16 = 9000;
/// The port of the membership service on host `db`.
const DB_PORT: u16 = 5432;
/// Simulated time at the start of every run (fixed, so runs replay).
const EPOCH_MILLIS: u64 = 1_700_000_000_000;
/// One simulation step.
const TICK_MS: u64 = 2;

/// What one simulated run found.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Every event in order, with its simulated time: nemesis actions, call
    /// outcomes, activations. Equal for equal seeds.
    pub trace: Vec<String>,
    /// Grains live on two silos at once.
    pub duplicates: Vec<DuplicateActivation>,
    /// Calls lost, duplicated or misplaced.
    pub history: Vec<HistoryViolation>,
    /// Acknowledged writes missing from the stored state, or stored
    /// twice.
    pub writes: Vec<WriteViolation>,
    /// The user's invariants that failed, as `name: why`.
    pub invariants: Vec<String>,
    /// Acknowledged, failed and unknown calls.
    pub calls: (usize, usize, usize),
    /// Nemesis actions taken.
    pub faults: usize,
    /// The simulation itself failed (a host or the workload errored, or
    /// the run did not finish in time).
    pub error: Option<String>,
}

impl SimReport {
    /// Whether the run kept every guarantee.
    pub fn passed(&self) -> bool {
        self.duplicates.is_empty()
            && self.history.is_empty()
            && self.writes.is_empty()
            && self.invariants.is_empty()
            && self.error.is_none()
    }

    /// A short description of what went wrong.
    pub fn failure(&self) -> String {
        let mut s = format!("seed {}:", self.seed);
        if let Some(e) = &self.error {
            s.push_str(&format!(" error: {e};"));
        }
        for d in self.duplicates.iter().take(3) {
            s.push_str(&format!(" {d};"));
        }
        for h in self.history.iter().take(3) {
            s.push_str(&format!(" {h};"));
        }
        for w in self.writes.iter().take(3) {
            s.push_str(&format!(" {w};"));
        }
        for i in self.invariants.iter().take(3) {
            s.push_str(&format!(" {i};"));
        }
        s
    }
}

/// A small seeded generator (splitmix64): the workload and the nemesis
/// draw from it, so a seed fixes them.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The seeds to run: `SIM_SEEDS` of them (default `default_count`)
/// starting at `SIM_SEED` (default 1).
pub fn seeds_from_env(default_count: u64) -> std::ops::Range<u64> {
    let read = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
    let first: u64 = read("SIM_SEED").unwrap_or(1);
    let count: u64 = read("SIM_SEEDS").unwrap_or(default_count);
    first..first + count
}

/// Marks the lines [`print_trace`] prints.
const TRACE_LINE: &str = "trace| ";

/// Prints `report`'s trace, one marked line per event, then `passed` or
/// what failed: the body of the ignored test that
/// [`trace_in_a_fresh_process`] runs (read its output when a seed fails).
pub fn print_trace(report: &SimReport) {
    for line in &report.trace {
        println!("{TRACE_LINE}{line}");
    }
    if report.passed() {
        println!("passed");
    } else {
        println!("{}", report.failure());
    }
}

/// The trace of seed `seed` as a user replays it: runs the ignored test
/// `test` of this test binary (one that runs seed `SIM_SEED` and calls
/// [`print_trace`]) in a process of its own, with `SIM_SEED=<seed>
/// SIM_SEEDS=1`. Two runs in one process are not comparable: something
/// process-wide that the first initializes shifts the second (see the
/// testing guide).
///
/// # Panics
///
/// If the process cannot be started or its test fails.
pub fn trace_in_a_fresh_process(test: &str, seed: u64) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SIM_SEED", seed.to_string())
        .env("SIM_SEEDS", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("the test binary runs again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(TRACE_LINE))
        .map(str::to_owned)
        .collect()
}

/// Panics naming the first event at which two traces of `seed` differ,
/// or their lengths if one is a prefix of the other.
pub fn assert_same_trace(seed: u64, first: &[String], again: &[String]) {
    if let Some((i, (a, b))) = first
        .iter()
        .zip(again)
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!("seed {seed} diverged at event {i}: `{a}` then `{b}`");
    }
    assert_eq!(
        first.len(),
        again.len(),
        "seed {seed}: one run's trace is a prefix of the other's"
    );
}

/// Simulated milliseconds since the Unix epoch inside a simulation (the
/// simulator's clock), `None` outside one: the clock to give a library
/// that keeps its own ([`SimulationBuilder::setup`]).
pub fn clock_millis() -> Option<i64> {
    turmoil::since_epoch().map(|d| d.as_millis() as i64)
}

/// Runs `run(seed)` for `seeds` on `threads` threads, printing each
/// failing seed; the reports in seed order.
pub(crate) fn run_seeds_with(
    seeds: std::ops::Range<u64>,
    threads: usize,
    run: impl Fn(u64) -> SimReport + Sync,
) -> Vec<SimReport> {
    let next = Mutex::new(seeds.clone());
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let Some(seed) = next.lock().next() else {
                        return;
                    };
                    let report = run(seed);
                    if !report.passed() {
                        eprintln!(
                            "simulation failed: {} (replay: SIM_SEED={seed} SIM_SEEDS=1)",
                            report.failure()
                        );
                    }
                    reports.lock().push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner();
    reports.sort_by_key(|r| r.seed);
    reports
}

/// The event trace of a run, shared by its hosts (one thread): each event
/// with its simulated time in milliseconds.
#[derive(Clone, Default)]
pub struct SimTrace(Arc<Mutex<Vec<String>>>);

impl std::fmt::Debug for SimTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SimTrace")
            .field(&self.0.lock().len())
            .finish()
    }
}

impl SimTrace {
    /// Records an event now (inside a simulated host).
    pub fn event(&self, what: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        self.0.lock().push(format!("{at:>6} {}", what.into()));
    }

    fn event_at(&self, at: Duration, what: impl Into<String>) {
        self.0
            .lock()
            .push(format!("{:>6} {}", at.as_millis(), what.into()));
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

// ---- The membership table, served by host `db` over simulated TCP ----

#[derive(Serialize, Deserialize)]
enum TableRequest {
    ReadAll,
    Insert(MembershipEntry, TableVersion),
    Update(MembershipEntry, RowEtag, TableVersion),
    IAmAlive(SiloAddress, i64),
    Cleanup(i64),
    StateRead(GrainId, String),
    StateWrite(GrainId, String, Vec<u8>, Option<ETag>),
    StateClear(GrainId, String, Option<ETag>),
}

#[derive(Serialize, Deserialize)]
enum TableReply {
    Snapshot(TableVersion, Vec<(MembershipEntry, RowEtag)>),
    Done(bool),
    Removed(u64),
    Failed(String),
    State(Option<(Vec<u8>, ETag)>),
    Written(ETag),
    Cleared,
    Conflict,
}

pub(crate) async fn serve_db(
    table: Arc<dyn MembershipTable>,
    storage: Arc<dyn StorageProvider>,
) -> std::io::Result<()> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", DB_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let table = table.clone();
        let storage = storage.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(request) = serde_json::from_str::<TableRequest>(&line) else {
                    return;
                };
                let reply = match request {
                    TableRequest::ReadAll => table
                        .read_all()
                        .await
                        .map(|s| TableReply::Snapshot(s.version, s.entries)),
                    TableRequest::Insert(e, v) => table.insert(e, v).await.map(TableReply::Done),
                    TableRequest::Update(e, t, v) => {
                        table.update(e, t, v).await.map(TableReply::Done)
                    }
                    TableRequest::IAmAlive(s, at) => {
                        table.update_i_am_alive(&s, at).await.map(TableReply::Done)
                    }
                    TableRequest::Cleanup(b) => {
                        table.cleanup_defunct(b).await.map(TableReply::Removed)
                    }
                    TableRequest::StateRead(id, name) => {
                        let key = StateKey::new(&id, &name);
                        Ok(state_reply(
                            storage
                                .read(&key)
                                .await
                                .map(|r| TableReply::State(r.map(|s| (s.data, s.etag)))),
                        ))
                    }
                    TableRequest::StateWrite(id, name, data, expected) => {
                        let key = StateKey::new(&id, &name);
                        let written = storage.write(&key, &data, expected.as_ref()).await;
                        Ok(state_reply(written.map(TableReply::Written)))
                    }
                    TableRequest::StateClear(id, name, expected) => {
                        let key = StateKey::new(&id, &name);
                        let cleared = storage.clear(&key, expected.as_ref()).await;
                        Ok(state_reply(cleared.map(|()| TableReply::Cleared)))
                    }
                }
                .unwrap_or_else(|e| TableReply::Failed(e.to_string()));
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn state_reply(r: actor_persistence::Result<TableReply>) -> TableReply {
    match r {
        Ok(reply) => reply,
        Err(e) if e.is_conflict() => TableReply::Conflict,
        Err(e) => TableReply::Failed(e.to_string()),
    }
}

/// A silo's view of the table on host `db`: one request per connection,
/// each bounded in time, so a partition from `db` is an error, not a hang.
pub(crate) struct RemoteTable {
    pub(crate) timeout: Duration,
}

impl RemoteTable {
    async fn call(&self, request: TableRequest) -> actor_cluster::Result<TableReply> {
        let unavailable = |why: String| actor_cluster::Error::TableUnavailable {
            url: format!("sim://db ({why})"),
            source: sqlx::Error::PoolTimedOut,
        };
        let exchange = async {
            let stream = turmoil::net::TcpStream::connect(("db", DB_PORT)).await?;
            let (read, mut write) = stream.into_split();
            let mut out = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
            out.push(b'\n');
            write.write_all(&out).await?;
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await?;
            serde_json::from_str::<TableReply>(&line).map_err(std::io::Error::other)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(TableReply::Failed(e))) => Err(unavailable(e)),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable("timed out".into())),
        }
    }
}

fn unexpected() -> actor_cluster::Error {
    actor_cluster::Error::Config("unexpected reply from the membership service".into())
}

impl MembershipTable for RemoteTable {
    fn read_all(&self) -> BoxFuture<'_, actor_cluster::Result<MembershipSnapshot>> {
        Box::pin(async move {
            match self.call(TableRequest::ReadAll).await? {
                TableReply::Snapshot(version, entries) => {
                    Ok(MembershipSnapshot { version, entries })
                }
                _ => Err(unexpected()),
            }
        })
    }
    fn insert(
        &self,
        e: MembershipEntry,
        v: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            match self.call(TableRequest::Insert(e, v)).await? {
                TableReply::Done(b) => Ok(b),
                _ => Err(unexpected()),
            }
        })
    }
    fn update(
        &self,
        e: MembershipEntry,
        t: RowEtag,
        v: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            match self.call(TableRequest::Update(e, t, v)).await? {
                TableReply::Done(b) => Ok(b),
                _ => Err(unexpected()),
            }
        })
    }
    fn update_i_am_alive(
        &self,
        s: &SiloAddress,
        at: i64,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        let s = s.clone();
        Box::pin(async move {
            match self.call(TableRequest::IAmAlive(s, at)).await? {
                TableReply::Done(b) => Ok(b),
                _ => Err(unexpected()),
            }
        })
    }
    fn cleanup_defunct(&self, b: i64) -> BoxFuture<'_, actor_cluster::Result<u64>> {
        Box::pin(async move {
            match self.call(TableRequest::Cleanup(b)).await? {
                TableReply::Removed(n) => Ok(n),
                _ => Err(unexpected()),
            }
        })
    }
}

/// Grain state on host `db` (the in-memory storage provider behind
/// simulated TCP), through the same connection-per-request protocol.
pub(crate) struct RemoteStorage(pub(crate) RemoteTable);

impl RemoteStorage {
    async fn call(
        &self,
        key: &StateKey,
        request: TableRequest,
        expected: Option<&ETag>,
    ) -> actor_persistence::Result<TableReply> {
        match self.0.call(request).await {
            Ok(TableReply::Conflict) => Err(actor_persistence::Error::Conflict {
                key: key.to_string(),
                expected: expected.cloned(),
                actual: None,
            }),
            Ok(reply) => Ok(reply),
            Err(e) => Err(actor_persistence::Error::Unavailable {
                provider: "sim".into(),
                url: "sim://db".into(),
                reason: e.to_string(),
            }),
        }
    }
}

fn state_key_parts(key: &StateKey) -> (GrainId, String) {
    // Any grain key, carried as a string key (`i:42`, `s:alice`, ..) of
    // the same type: one record on `db` per record of the silos.
    (
        GrainId::new(key.grain_type().to_owned(), key.grain_key()),
        key.name().to_owned(),
    )
}

impl StorageProvider for RemoteStorage {
    fn describe(&self) -> String {
        "sim://db".into()
    }

    fn read<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> actor_persistence::BoxFuture<'a, actor_persistence::Result<Option<StoredState>>> {
        Box::pin(async move {
            let (id, name) = state_key_parts(key);
            match self
                .call(key, TableRequest::StateRead(id, name), None)
                .await?
            {
                TableReply::State(s) => Ok(s.map(|(data, etag)| StoredState { data, etag })),
                other => Err(bad_state_reply(&other)),
            }
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> actor_persistence::BoxFuture<'a, actor_persistence::Result<ETag>> {
        Box::pin(async move {
            let (id, name) = state_key_parts(key);
            let request = TableRequest::StateWrite(id, name, data.to_vec(), expected.cloned());
            match self.call(key, request, expected).await? {
                TableReply::Written(etag) => Ok(etag),
                other => Err(bad_state_reply(&other)),
            }
        })
    }

    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> actor_persistence::BoxFuture<'a, actor_persistence::Result<()>> {
        Box::pin(async move {
            let (id, name) = state_key_parts(key);
            let request = TableRequest::StateClear(id, name, expected.cloned());
            match self.call(key, request, expected).await? {
                TableReply::Cleared => Ok(()),
                other => Err(bad_state_reply(&other)),
            }
        })
    }
}

fn bad_state_reply(reply: &TableReply) -> actor_persistence::Error {
    let reason = match reply {
        TableReply::Failed(e) => e.clone(),
        _ => "unexpected reply".into(),
    };
    actor_persistence::Error::Unavailable {
        provider: "sim".into(),
        url: "sim://db".into(),
        reason,
    }
}

// ---- Silo links over simulated TCP ----

pub(crate) struct SimConnector;

impl Connector for SimConnector {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
        let endpoint = endpoint.to_owned();
        Box::pin(async move {
            let (host, port) = endpoint
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| std::io::Error::other(format!("bad endpoint {endpoint}")))?;
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

pub(crate) async fn sim_listener(name: &str) -> std::io::Result<LinkListener> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", LINK_PORT)).await?;
    let incoming = futures::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| Box::new(s) as BoxedIo);
        Some((accepted, l))
    });
    Ok(LinkListener::new(format!("{name}:{LINK_PORT}"), incoming))
}

pub(crate) fn sim_clock() -> WallClock {
    WallClock::new(|| {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(actor_cluster::__private::now_millis)
    })
}

pub(crate) fn silo_name(i: usize) -> String {
    format!("silo-{i}")
}
