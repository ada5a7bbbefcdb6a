// Over 800 lines on purpose: the simulated hosts, the nemesis and the
// replay share the simulated world's types; its oracles are in oracle.rs.
//! Deterministic simulation: the cluster under turmoil.
//!
//! Each silo is a turmoil host running the production [`ClusterSilo`]:
//! its tonic link server on a simulated TCP listener, its links and probes
//! over simulated TCP streams, its membership agent on the simulator's
//! clock ([`WallClock`] from `turmoil::since_epoch`, tokio time paused and
//! stepped by turmoil). The membership table is the in-memory one, served
//! by a host named `db` over simulated TCP, so a silo can be partitioned
//! from it like from a real database. A client host runs a workload
//! through a [`ClusterClient`], and a
//! nemesis, driven by the same seed, crashes, restarts and partitions
//! silos and holds their messages.
//!
//! The [`ActivationOracle`] (strict) and the [`CallHistory`] check every
//! run. The same seed gives the same run: [`SimReport::trace`] is the
//! event trace, equal across replays. A failing seed is printed by
//! [`run_seeds`]; replay it with `SIM_SEED=<seed> SIM_SEEDS=1`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use actor_cluster::{
    BoxedIo, ClusterClient, ClusterConfig, ClusterSilo, Connector, InMemoryMembership,
    LinkListener, MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress,
    TableVersion, WallClock,
};
use actor_core::prelude::*;
use actor_persistence::{
    ETag, MemoryStorage, PersistentState, SiloBuilderStorageExt, StateKey, StorageProvider,
    StoredState,
};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::faults::{FaultSwitch, FaultyMembership};
use crate::oracle::{
    ActivationOracle, CallHistory, CallOutcome, DuplicateActivation, HistoryViolation,
    WriteHistory, WriteViolation,
};

/// The port silos serve their link on.
const LINK_PORT: u16 = 9000;
/// The port of the membership service on host `db`.
const DB_PORT: u16 = 5432;
/// Simulated time at the start of every run (fixed, so runs replay).
const EPOCH_MILLIS: u64 = 1_700_000_000_000;
/// One simulation step.
const TICK_MS: u64 = 2;

/// What one simulated run does.
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
}

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
    /// Acknowledged, failed and unknown calls.
    pub calls: (usize, usize, usize),
    /// Nemesis actions taken.
    pub faults: usize,
    /// The simulation itself failed (a host errored, or the run did not
    /// finish in time).
    pub error: Option<String>,
}

impl SimReport {
    /// Whether the run kept every guarantee.
    pub fn passed(&self) -> bool {
        self.duplicates.is_empty()
            && self.history.is_empty()
            && self.writes.is_empty()
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

/// Runs `seeds` on `threads` threads (each run is single-threaded and
/// independent), printing each failing seed; the reports in seed order.
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    threads: usize,
    config: impl Fn(u64) -> SimConfig + Send + Sync,
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
                    let report = run(&config(seed));
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

/// The event trace of a run, shared by its hosts (one thread).
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    fn push(&self, what: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        self.0.lock().push(format!("{at:>6} {}", what.into()));
    }
}

/// The grain the workload calls: it reports its activations to the
/// oracle and each call it runs to the history.
struct Tracked {
    oracle: ActivationOracle,
    history: CallHistory,
    trace: Trace,
    /// The ops this grain ran and stored.
    ops: Option<PersistentState<Vec<u64>>>,
}

impl Grain for Tracked {
    const TYPE_NAME: &'static str = "tracked";
    async fn on_activate(&mut self, ctx: &GrainContext<Self>) -> Result<(), actor_core::BoxError> {
        // An activation that cannot load its state fails (and is never
        // deactivated): it only counts once it is up.
        self.ops = Some(PersistentState::load(ctx, "ops").await?);
        self.oracle.activated(ctx.id(), ctx.silo().name());
        self.trace
            .push(format!("{} up on {}", ctx.id(), ctx.silo().name()));
        Ok(())
    }
    async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, _: actor_core::DeactivationReason) {
        self.oracle.deactivated(ctx.id(), ctx.silo().name());
        self.trace
            .push(format!("{} down on {}", ctx.id(), ctx.silo().name()));
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

async fn serve_db(
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
struct RemoteTable {
    timeout: Duration,
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
struct RemoteStorage(RemoteTable);

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
    // The workload's grains have integer keys, stored as `i:<n>`.
    let k: i64 = key
        .grain_key()
        .strip_prefix("i:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    (
        GrainId::new(key.grain_type().to_owned(), k),
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

struct SimConnector;

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

async fn sim_listener(name: &str) -> std::io::Result<LinkListener> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", LINK_PORT)).await?;
    let incoming = futures::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| Box::new(s) as BoxedIo);
        Some((accepted, l))
    });
    Ok(LinkListener::new(format!("{name}:{LINK_PORT}"), incoming))
}

fn sim_clock() -> WallClock {
    WallClock::new(|| {
        turmoil::since_epoch()
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(actor_cluster::__private::now_millis)
    })
}

fn silo_name(i: usize) -> String {
    format!("silo-{i}")
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> SimReport {
    // Ids from the run, not from whatever ran on this thread before.
    actor_core::__private::restart_call_ids_on_this_thread();
    let oracle = ActivationOracle::strict();
    let history = CallHistory::new();
    let writes = WriteHistory::new();
    let trace = Trace::default();
    let faults = Arc::new(Mutex::new(0usize));

    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MILLIS))
        .simulation_duration(config.chaos + Duration::from_secs(60))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(5))
        .tcp_capacity(4096)
        .tick_duration(Duration::from_millis(TICK_MS))
        .build();

    // The database host: the in-memory table behind simulated TCP. It
    // tells the oracle about every silo declared dead.
    let table = InMemoryMembership::new();
    {
        let (oracle, trace) = (oracle.clone(), trace.clone());
        let table = FaultyMembership::new(Arc::new(table), FaultSwitch::new()).on_death(move |e| {
            oracle.declared_dead(&e.name);
            trace.push(format!("{} declared dead", e.name));
        });
        let storage: Arc<dyn StorageProvider> = Arc::new(MemoryStorage::new());
        sim.host("db", move || {
            let table: Arc<dyn MembershipTable> = Arc::new(table.clone());
            let storage = storage.clone();
            async move {
                serve_db(table, storage).await?;
                Ok(())
            }
        });
    }

    let mut cluster = ClusterConfig::fast();
    cluster.clock = sim_clock();
    cluster.unfenced_for_tests = config.unfenced;
    for i in 0..config.silos {
        let name = silo_name(i);
        let (oracle, history, trace, cluster) = (
            oracle.clone(),
            history.clone(),
            trace.clone(),
            cluster.clone(),
        );
        sim.host(name.clone(), move || {
            let (name, oracle, history, trace, cluster) = (
                name.clone(),
                oracle.clone(),
                history.clone(),
                trace.clone(),
                cluster.clone(),
            );
            async move {
                // A supervisor: a silo that stops serving (it read itself
                // dead) exits, and the process is started again, as a
                // service manager would.
                loop {
                    oracle.started(&name);
                    trace.push(format!("{name} starts"));
                    // The table may be out of reach (a partition): retry.
                    let silo = loop {
                        let (o, h, t) = (oracle.clone(), history.clone(), trace.clone());
                        let builder = Silo::builder()
                            .name(name.clone())
                            .call_timeout(Duration::from_secs(2))
                            .grain_with(move |_| Tracked {
                                oracle: o.clone(),
                                history: h.clone(),
                                trace: t.clone(),
                                ops: None,
                            });
                        let builder = builder.with_default_storage(RemoteStorage(RemoteTable {
                            timeout: Duration::from_millis(500),
                        }));
                        let table = Arc::new(RemoteTable {
                            timeout: Duration::from_millis(500),
                        });
                        let listener = sim_listener(&name).await?;
                        match ClusterSilo::start_on(
                            builder,
                            listener,
                            Arc::new(SimConnector),
                            table,
                            cluster.clone(),
                        )
                        .await
                        {
                            Ok(silo) => break silo,
                            Err(e) => {
                                trace.push(format!("{name} could not join: {e}"));
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    };
                    trace.push(format!("{name} joined"));
                    while silo.is_serving() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // The process exits: whatever it still held is gone.
                    drop(silo);
                    oracle.crashed(&name);
                    trace.push(format!("{name} stopped serving; restarting"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }

    // The workload: callers through a cluster client, then, once the
    // nemesis stopped and the cluster settled, one call to every grain.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (history, writes, trace, done) =
            (history.clone(), writes.clone(), trace.clone(), done.clone());
        let config = config.clone();
        sim.client("client", async move {
            let gateways: Vec<String> = (0..config.silos)
                .map(|i| format!("{}:{LINK_PORT}", silo_name(i)))
                .collect();
            // Let the silos join first.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let client = loop {
                match ClusterClient::connect_via(
                    Arc::new(SimConnector),
                    gateways.clone(),
                    Duration::from_millis(500),
                )
                .await
                {
                    Ok(client) => break client,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            let w = Arc::new(Workload {
                client,
                history,
                writes,
                trace,
            });
            let until = tokio::time::Instant::now() + config.chaos;
            let mut callers = Vec::new();
            for c in 0..config.callers {
                let w = w.clone();
                let mut rng = SimRng::new(config.seed.wrapping_mul(31).wrapping_add(c as u64));
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
            // The nemesis heals everything at `chaos`; give failure
            // detection and leases time to settle, then every grain must
            // answer again.
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
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
    }

    // The nemesis, between simulation steps.
    let mut rng = SimRng::new(config.seed);
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut cut: Vec<(String, String)> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new();
    let start = Duration::from_secs(3);
    let mut next_action = start + Duration::from_millis(500 + rng.below(1000));
    let mut healed = false;
    let result = loop {
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
        let now = sim.elapsed();
        if !config.nemesis || healed {
            continue;
        }
        if now >= start + config.chaos {
            // Heal: repair links, release messages, restart crashed silos.
            for (a, b) in cut.drain(..) {
                sim.repair(a.as_str(), b.as_str());
            }
            for (a, b) in held.drain(..) {
                sim.release(a.as_str(), b.as_str());
            }
            for i in std::mem::take(&mut down) {
                sim.bounce(silo_name(i));
            }
            trace.push_at(now, "nemesis heals everything");
            healed = true;
            continue;
        }
        if now < next_action {
            continue;
        }
        next_action = now + Duration::from_millis(800 + rng.below(1500));
        *faults.lock() += 1;
        let victim = rng.below(config.silos as u64) as usize;
        let name = silo_name(victim);
        match rng.below(6) {
            0 if down.len() + 1 < config.silos && !down.contains(&victim) => {
                sim.crash(name.as_str());
                oracle.crashed(&name);
                down.insert(victim);
                trace.push_at(now, format!("nemesis crashes {name}"));
            }
            1 if !down.is_empty() => {
                let i = *down
                    .iter()
                    .nth(rng.below(down.len() as u64) as usize)
                    .unwrap();
                down.remove(&i);
                sim.bounce(silo_name(i));
                trace.push_at(now, format!("nemesis restarts {}", silo_name(i)));
            }
            2 => {
                // Cut a silo off from everyone, the table included.
                for peer in (0..config.silos)
                    .map(silo_name)
                    .chain(["db".to_owned(), "client".to_owned()])
                {
                    if peer != name {
                        sim.partition(name.as_str(), peer.as_str());
                        cut.push((name.clone(), peer));
                    }
                }
                trace.push_at(now, format!("nemesis isolates {name}"));
            }
            3 => {
                let other = silo_name((victim + 1) % config.silos);
                sim.partition(name.as_str(), other.as_str());
                cut.push((name.clone(), other.clone()));
                trace.push_at(now, format!("nemesis partitions {name} | {other}"));
            }
            4 => {
                let other = silo_name((victim + 1) % config.silos);
                sim.hold(name.as_str(), other.as_str());
                held.push((name.clone(), other.clone()));
                trace.push_at(now, format!("nemesis holds {name} <-> {other}"));
            }
            _ => {
                for (a, b) in cut.drain(..) {
                    sim.repair(a.as_str(), b.as_str());
                }
                for (a, b) in held.drain(..) {
                    sim.release(a.as_str(), b.as_str());
                }
                trace.push_at(now, "nemesis repairs the network");
            }
        }
    };

    let mut error = result.err();
    if error.is_none() && !done.load(std::sync::atomic::Ordering::SeqCst) {
        error = Some("the workload did not finish".into());
    }
    let report = SimReport {
        seed: config.seed,
        trace: trace.0.lock().clone(),
        duplicates: oracle.violations(),
        history: history.violations(),
        writes: writes.violations(),
        calls: history.counts(),
        faults: *faults.lock(),
        error,
    };
    drop(sim);
    report
}

impl Trace {
    fn push_at(&self, at: Duration, what: impl Into<String>) {
        self.0
            .lock()
            .push(format!("{:>6} {}", at.as_millis(), what.into()));
    }
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
            w.trace.push(format!("call #{op} to {key}: ok {n}"));
        }
        Ok(Err(_)) => w.trace.push(format!("call #{op} to {key}: write failed")),
        Err(e) => w
            .trace
            .push(format!("call #{op} to {key}: {}", error_kind(e))),
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
            w.trace.push(format!("read {key}: {} ops", ops.len()));
            w.writes.read_finished(start, &ops);
            true
        }
        Err(e) => {
            w.trace.push(format!("read {key}: {}", error_kind(&e)));
            false
        }
    }
}

/// What the workload's callers share.
struct Workload {
    client: ClusterClient,
    history: CallHistory,
    writes: WriteHistory,
    trace: Trace,
}

fn error_kind(e: &actor_core::Error) -> &'static str {
    match e {
        actor_core::Error::Timeout { .. } => "timeout",
        actor_core::Error::SiloUnavailable { .. } => "unavailable",
        _ => "error",
    }
}
