// Over 800 lines on purpose: `run` assembles one simulated world (the db
// host, the silos, the clients, the services, the nemesis and the oracles
// over the same handles); the built-in workload is in builtin.rs.
//! The simulation builder: your grain types on every simulated silo,
//! your workload on simulated clients, the nemesis, the built-in oracles
//! and your own invariants, over seeds that replay.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable,
};
use actor_core::prelude::*;
use actor_core::{DeactivationReason, SiloBuilder};
use actor_persistence::{MemoryStorage, SiloBuilderStorageExt, StorageProvider};
use futures::future::LocalBoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{
    EPOCH_MILLIS, LINK_PORT, RemoteStorage, RemoteTable, SimConnector, SimReport, SimRng, SimTrace,
    TICK_MS, serve_db, silo_name, sim_clock, sim_listener,
};
use crate::faults::{FaultSwitch, FaultyMembership};
use crate::oracle::{ActivationOracle, CallHistory, WriteHistory};

/// The port every [`SimulationBuilder::service`] host serves on.
pub const SERVICE_PORT: u16 = 7000;
/// When the nemesis starts acting (simulated time since the start).
const NEMESIS_START: Duration = Duration::from_secs(3);

/// What a workload returns: `Err` fails the run (with the error in
/// [`SimReport::error`]).
pub type WorkloadResult = Result<(), Box<dyn std::error::Error>>;

type Configure<S> = dyn Fn(&SimSilo<S>, SiloBuilder) -> SiloBuilder + Send + Sync;
type WorkloadFn<S> = dyn Fn(SimClient<S>) -> LocalBoxFuture<'static, WorkloadResult> + Send + Sync;
type InvariantFn<S> = dyn Fn(&S) -> Result<(), String> + Send + Sync;
type ServiceFn<S> = dyn Fn(S, Vec<u8>) -> LocalBoxFuture<'static, Vec<u8>> + Send + Sync;

/// Which faults the nemesis injects. It acts from 3 s of simulated time
/// for [`SimulationBuilder::chaos`], at random moments drawn from the
/// seed, then heals everything (repairs links, releases held messages,
/// restarts crashed silos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nemesis {
    crashes: bool,
    partitions: bool,
    holds: bool,
}

impl Default for Nemesis {
    fn default() -> Self {
        Nemesis::all()
    }
}

impl Nemesis {
    /// Every fault: crashes and restarts, partitions (a silo isolated
    /// from everyone, the table, the services and the clients included;
    /// or two silos cut from each other), held messages between two silos,
    /// and repairs.
    pub fn all() -> Self {
        Nemesis {
            crashes: true,
            partitions: true,
            holds: true,
        }
    }

    /// No faults: a calm run.
    pub fn none() -> Self {
        Nemesis {
            crashes: false,
            partitions: false,
            holds: false,
        }
    }

    /// Whether it crashes silos (a process killed: its tasks and
    /// connections gone, its memory lost) and restarts them.
    pub fn crashes(mut self, on: bool) -> Self {
        self.crashes = on;
        self
    }

    /// Whether it partitions silos.
    pub fn partitions(mut self, on: bool) -> Self {
        self.partitions = on;
        self
    }

    /// Whether it holds the messages between two silos (a long stall of
    /// the link, delivered when released).
    pub fn holds(mut self, on: bool) -> Self {
        self.holds = on;
        self
    }

    fn is_calm(&self) -> bool {
        !(self.crashes || self.partitions || self.holds)
    }
}

/// A simulation of your own grains and workload under the nemesis; build
/// it with [`Simulation::builder`] (or [`Simulation::with_state`] for
/// per-run state of your own), run it with [`run`](Simulation::run),
/// [`run_seeds`](Simulation::run_seeds) or [`check`](Simulation::check).
///
/// Each run is a fresh world: turmoil hosts `silo-0..` running the
/// production [`ClusterSilo`] with the grain types you register, a host
/// `db` serving the membership table and the silos' default grain
/// storage (memory, behind simulated TCP: partitionable, and it survives
/// silo crashes as a database would), your [services](SimulationBuilder::service)
/// on hosts of their own, and client hosts (`client`, `client-1`, ..)
/// each running your workload through a [`ClusterClient`]. A seed fixes
/// the network's latencies, the nemesis and the random numbers your
/// workload draws from [`SimClient::rng`]: the same seed is the same run.
pub struct Simulation<S = ()> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Simulation<S> {
    fn clone(&self) -> Self {
        Simulation {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    silos: usize,
    clients: usize,
    chaos: Duration,
    settle: Duration,
    time_limit: Duration,
    nemesis: Nemesis,
    cluster: ClusterConfig,
    call_timeout: Duration,
    unfenced: bool,
    state: Box<dyn Fn(u64) -> S + Send + Sync>,
    setup: Vec<Box<dyn Fn(u64) + Send + Sync>>,
    configure: Vec<Arc<Configure<S>>>,
    workload: Option<Arc<WorkloadFn<S>>>,
    invariants: Vec<(String, Box<InvariantFn<S>>)>,
    step_invariants: Vec<(String, Box<InvariantFn<S>>)>,
    services: Vec<(String, Arc<ServiceFn<S>>)>,
}

/// Builds a [`Simulation`].
pub struct SimulationBuilder<S = ()> {
    inner: Inner<S>,
}

impl Simulation<()> {
    /// A simulation without state of its own (3 silos, 1 client, 8 s of
    /// chaos under every fault).
    pub fn builder() -> SimulationBuilder<()> {
        Simulation::with_state(|_| ())
    }
}

impl<S: Clone + 'static> Simulation<S> {
    /// A simulation whose runs each get a fresh `state(seed)`, shared by
    /// the silos' configuration, the workloads, the services and the
    /// invariants of that run (put your recorders in it: a history, the
    /// transfers a client saw committed). Built on the run's thread; it
    /// need not be `Send`.
    pub fn with_state(state: impl Fn(u64) -> S + Send + Sync + 'static) -> SimulationBuilder<S> {
        SimulationBuilder {
            inner: Inner {
                silos: 3,
                clients: 1,
                chaos: Duration::from_secs(8),
                settle: Duration::from_secs(5),
                time_limit: Duration::from_secs(60),
                nemesis: Nemesis::all(),
                cluster: ClusterConfig::fast(),
                call_timeout: Duration::from_secs(2),
                unfenced: false,
                state: Box::new(state),
                setup: Vec::new(),
                configure: Vec::new(),
                workload: None,
                invariants: Vec::new(),
                step_invariants: Vec::new(),
                services: Vec::new(),
            },
        }
    }

    /// Runs seed `seed` on this thread.
    pub fn run(&self, seed: u64) -> SimReport {
        run(&self.inner, seed)
    }

    /// Runs `seeds` on `threads` threads (each run is single-threaded and
    /// independent), printing each failing seed with the line that
    /// replays it; the reports in seed order.
    pub fn run_seeds(&self, seeds: std::ops::Range<u64>, threads: usize) -> Vec<SimReport> {
        super::run_seeds_with(seeds, threads, |seed| self.run(seed))
    }

    /// Runs `seeds` (see [`seeds_from_env`](super::seeds_from_env)) on up
    /// to 4 threads and panics if any failed, listing each failure, how to
    /// replay it and where its event trace was written (the system's
    /// temporary directory, `sim-seed-<seed>.trace`); the reports
    /// otherwise, for further checks of your own.
    pub fn check(&self, seeds: std::ops::Range<u64>) -> Vec<SimReport> {
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(|n| format!(" {n} -- --exact"))
            .unwrap_or_default();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let count = seeds.end - seeds.start;
        let reports = self.run_seeds(seeds, threads);
        let failed: Vec<String> = reports
            .iter()
            .filter(|r| !r.passed())
            .map(|r| {
                // The whole trace, to read beside the replay.
                let path = std::env::temp_dir().join(format!("sim-seed-{}.trace", r.seed));
                let saved = match std::fs::write(&path, r.trace.join("\n") + "\n") {
                    Ok(()) => format!("\n    trace: {}", path.display()),
                    Err(_) => String::new(),
                };
                format!(
                    "{}\n    replay: SIM_SEED={} SIM_SEEDS=1 cargo test{test}{saved}",
                    r.failure(),
                    r.seed
                )
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {count} seeds failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
        reports
    }
}

impl<S: Clone + 'static> SimulationBuilder<S> {
    /// How many silos (default 3).
    pub fn silos(mut self, n: usize) -> Self {
        self.inner.silos = n.max(1);
        self
    }

    /// How many client hosts run the workload (default 1), each with its
    /// own [`ClusterClient`] and [`SimClient::index`].
    pub fn clients(mut self, n: usize) -> Self {
        self.inner.clients = n.max(1);
        self
    }

    /// How long the nemesis acts (simulated time, default 8 s, from 3 s
    /// after the start).
    pub fn chaos(mut self, chaos: Duration) -> Self {
        self.inner.chaos = chaos;
        self
    }

    /// How long [`SimClient::after_chaos`] waits after the nemesis healed
    /// everything, for failure detection and leases to settle (default
    /// 5 s).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.inner.settle = settle;
        self
    }

    /// How much simulated time a run may take after the chaos before it
    /// fails as unfinished (default 60 s).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.inner.time_limit = limit;
        self
    }

    /// Which faults the nemesis injects (default [`Nemesis::all`]).
    pub fn nemesis(mut self, nemesis: Nemesis) -> Self {
        self.inner.nemesis = nemesis;
        self
    }

    /// The cluster's configuration (default [`ClusterConfig::fast`]); its
    /// clock is replaced by the simulator's.
    pub fn cluster_config(mut self, config: ClusterConfig) -> Self {
        self.inner.cluster = config;
        self
    }

    /// The silos' call timeout (default 2 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.inner.call_timeout = timeout;
        self
    }

    /// Test-only: the activation fence off, the broken variant the
    /// single-activation oracle must catch.
    #[doc(hidden)]
    pub fn unfenced(mut self, unfenced: bool) -> Self {
        self.inner.unfenced = unfenced;
        self
    }

    /// Runs `setup(seed)` on the run's thread before each run: install
    /// the simulation hooks of a library that keeps its own clock or
    /// randomness here (for actor-tx:
    /// `actor_tx::__private::simulate_on_this_thread(Some((sim::clock_millis, seed)))`).
    pub fn setup(mut self, setup: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.inner.setup.push(Box::new(setup));
        self
    }

    /// Configures every silo, at each (re)start: register your grain
    /// types and whatever else they need on `builder`, which is already
    /// named (`silo-<index>`), has the call timeout and has the simulated
    /// `db` host's memory storage as its default storage provider. Called
    /// again on every restart, so a crash loses what the silo kept in
    /// memory. Several calls configure in order.
    pub fn silo(
        mut self,
        configure: impl Fn(&SimSilo<S>, SiloBuilder) -> SiloBuilder + Send + Sync + 'static,
    ) -> Self {
        self.inner.configure.push(Arc::new(configure));
        self
    }

    /// The workload each client host runs once its [`ClusterClient`] is
    /// connected (about 2 s in). Its `Err` fails the run. Typical shape:
    /// call grains while [`SimClient::during_chaos`], then
    /// [`SimClient::after_chaos`], then check that every grain answers and
    /// read back what you need for the invariants.
    pub fn workload<F, Fut>(mut self, workload: F) -> Self
    where
        F: Fn(SimClient<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WorkloadResult> + 'static,
    {
        self.inner.workload = Some(Arc::new(move |c| Box::pin(workload(c))));
        self
    }

    /// An invariant checked once the run is over: `Err(why)` fails the
    /// run, reported as `name: why`.
    pub fn invariant(
        mut self,
        name: impl Into<String>,
        check: impl Fn(&S) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.inner.invariants.push((name.into(), Box::new(check)));
        self
    }

    /// An invariant checked after every simulation step (every 2 ms of
    /// simulated time; keep it cheap): the first `Err(why)` stops the run
    /// there and fails it, reported with the simulated time.
    pub fn step_invariant(
        mut self,
        name: impl Into<String>,
        check: impl Fn(&S) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.inner
            .step_invariants
            .push((name.into(), Box::new(check)));
        self
    }

    /// A service of your own on a host named `host` (a database, an
    /// external API), answering JSON requests on [`SERVICE_PORT`]: call it
    /// with [`request`](super::request) from a grain or a workload. The
    /// nemesis cuts it off from an isolated silo like the table; it never
    /// crashes it. `handle(state, request)` answers each request.
    pub fn service<Req, Resp, F, Fut>(mut self, host: impl Into<String>, handle: F) -> Self
    where
        Req: DeserializeOwned + 'static,
        Resp: Serialize + 'static,
        F: Fn(S, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resp> + 'static,
    {
        let handle = Arc::new(handle);
        let erased: Arc<ServiceFn<S>> = Arc::new(move |state: S, bytes: Vec<u8>| {
            let handle = handle.clone();
            Box::pin(async move {
                match serde_json::from_slice::<Req>(&bytes) {
                    Ok(req) => serde_json::to_vec(&handle(state, req).await).unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }) as LocalBoxFuture<'static, Vec<u8>>
        });
        self.inner.services.push((host.into(), erased));
        self
    }

    /// The simulation.
    pub fn build(self) -> Simulation<S> {
        Simulation {
            inner: Arc::new(self.inner),
        }
    }
}

/// A simulated silo being configured ([`SimulationBuilder::silo`]).
pub struct SimSilo<S = ()> {
    index: usize,
    name: String,
    state: S,
    activations: SimActivations,
    history: CallHistory,
    writes: WriteHistory,
}

impl<S> SimSilo<S> {
    /// Its index, `0..silos`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its name and host name, `silo-<index>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The single-activation oracle's handle: hand it to your grains and
    /// call [`SimActivations::activated`] in `on_activate` and
    /// [`SimActivations::deactivated`] in `on_deactivate`.
    pub fn activations(&self) -> SimActivations {
        self.activations.clone()
    }

    /// The run's call history (the built-in call oracle): handlers call
    /// [`CallHistory::observe`] with the op id their caller got from
    /// [`CallHistory::invoke`].
    pub fn history(&self) -> &CallHistory {
        &self.history
    }

    /// The run's write history (the built-in lost-write oracle).
    pub fn writes(&self) -> &WriteHistory {
        &self.writes
    }

    /// The run's event trace.
    pub fn trace(&self) -> SimTrace {
        self.activations.trace.clone()
    }
}

/// What a grain reports to the single-activation oracle (strict: no grain
/// live on two silos at the same simulated moment, dead or not) and to the
/// trace. Cheap to clone; `Send + Sync`. Give each grain instance a clone
/// of its own (the factory's `activations.clone()`): an instance that was
/// activated and is dropped without `on_deactivate` (after a panic, or a
/// turn cut off at its silo's lease end) reports its end when it is
/// dropped, since its state is gone then.
pub struct SimActivations {
    oracle: ActivationOracle,
    trace: SimTrace,
    /// This instance's grain, silo and the silo's incarnation while it
    /// is up.
    up: std::sync::Mutex<Option<(String, String, usize)>>,
}

impl Clone for SimActivations {
    /// Reports to the same oracle and trace, for another grain instance.
    fn clone(&self) -> Self {
        SimActivations {
            oracle: self.oracle.clone(),
            trace: self.trace.clone(),
            up: std::sync::Mutex::new(None),
        }
    }
}

impl Drop for SimActivations {
    fn drop(&mut self) {
        let up = self.up.get_mut().map(Option::take).unwrap_or_default();
        // Not traced: a crashed silo drops its idle grains in its
        // tables' hash order, which differs from run to run.
        if let Some((grain, silo, incarnation)) = up {
            self.oracle.dropped(&grain, &silo, incarnation);
        }
    }
}

impl std::fmt::Debug for SimActivations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimActivations").finish_non_exhaustive()
    }
}

impl SimActivations {
    /// Call at the end of `on_activate` (once the activation is up).
    pub fn activated<G: Grain>(&self, ctx: &GrainContext<G>) {
        self.oracle.activated(ctx.id(), ctx.silo().name());
        if let Ok(mut up) = self.up.lock() {
            let silo = ctx.silo().name();
            *up = Some((
                ctx.id().to_string(),
                silo.to_owned(),
                self.oracle.incarnation(silo),
            ));
        }
        self.trace
            .event(format!("{} up on {}", ctx.id(), ctx.silo().name()));
    }

    /// Call in `on_deactivate`.
    pub fn deactivated<G: Grain>(&self, ctx: &GrainContext<G>, _: DeactivationReason) {
        if let Ok(mut up) = self.up.lock() {
            *up = None;
        }
        self.oracle.deactivated(ctx.id(), ctx.silo().name());
        self.trace
            .event(format!("{} down on {}", ctx.id(), ctx.silo().name()));
    }
}

/// A simulated client running the workload ([`SimulationBuilder::workload`]).
pub struct SimClient<S = ()> {
    index: usize,
    seed: u64,
    state: S,
    client: Arc<ClusterClient>,
    trace: SimTrace,
    history: CallHistory,
    writes: WriteHistory,
    heal_at: Duration,
    settle: Duration,
}

impl<S> SimClient<S> {
    /// Which client, `0..clients`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The run's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// This client's connection to the cluster (every silo a gateway).
    pub fn client(&self) -> &Arc<ClusterClient> {
        &self.client
    }

    /// A random generator for stream `stream` of this client, fixed by
    /// the seed: draw everything random from these, never from the OS.
    pub fn rng(&self, stream: u64) -> SimRng {
        SimRng::new(
            self.seed
                .wrapping_mul(31)
                .wrapping_add(stream)
                .wrapping_add((self.index as u64).wrapping_mul(0x0001_0000_0001)),
        )
    }

    /// Adds an event to the run's trace (with the simulated time).
    pub fn trace(&self, what: impl Into<String>) {
        self.trace.event(what);
    }

    /// The run's event trace, to hand to spawned tasks.
    pub fn tracer(&self) -> SimTrace {
        self.trace.clone()
    }

    /// The run's call history (the built-in call oracle).
    pub fn history(&self) -> &CallHistory {
        &self.history
    }

    /// The run's write history (the built-in lost-write oracle).
    pub fn writes(&self) -> &WriteHistory {
        &self.writes
    }

    /// Whether the nemesis may still act (before it heals everything).
    pub fn during_chaos(&self) -> bool {
        turmoil::sim_elapsed().unwrap_or_default() < self.heal_at
    }

    /// Waits until the nemesis healed everything and the cluster had the
    /// settling time ([`SimulationBuilder::settle`]) to recover.
    pub async fn after_chaos(&self) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        let at = self.heal_at + self.settle;
        if now < at {
            tokio::time::sleep(at - now).await;
        }
    }
}

/// Sends `request` to the [service](SimulationBuilder::service) on host
/// `host` and waits at most `timeout` for its answer (one connection per
/// request, so a partition is an error, not a hang).
pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
    host: &str,
    request: &Req,
    timeout: Duration,
) -> std::io::Result<Resp> {
    let exchange = async {
        let stream = turmoil::net::TcpStream::connect((host, SERVICE_PORT)).await?;
        let (read, mut write) = stream.into_split();
        let mut out = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        serde_json::from_str::<Resp>(&line).map_err(std::io::Error::other)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{host} did not answer within {timeout:?}"),
        )),
    }
}

async fn serve<S: Clone + 'static>(state: S, handle: Arc<ServiceFn<S>>) -> std::io::Result<()> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", SERVICE_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (state, handle) = (state.clone(), handle.clone());
        tokio::task::spawn_local(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut out = handle(state.clone(), line.into_bytes()).await;
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn client_name(i: usize) -> String {
    if i == 0 {
        "client".to_owned()
    } else {
        format!("client-{i}")
    }
}

fn run<S: Clone + 'static>(inner: &Inner<S>, seed: u64) -> SimReport {
    // Ids from the run, not from whatever ran on this thread before.
    actor_core::__private::restart_call_ids_on_this_thread();
    for setup in &inner.setup {
        setup(seed);
    }
    let state = (inner.state)(seed);
    let oracle = ActivationOracle::strict();
    let history = CallHistory::new();
    let writes = WriteHistory::new();
    let trace = SimTrace::default();
    let faults = Arc::new(Mutex::new(0usize));

    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_MILLIS))
        .simulation_duration(inner.chaos + inner.time_limit)
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(5))
        .tcp_capacity(4096)
        .tick_duration(Duration::from_millis(TICK_MS))
        .build();

    // The database host: the in-memory table and grain storage behind
    // simulated TCP. It tells the oracle about every silo declared dead.
    let table = InMemoryMembership::new();
    {
        let (oracle, trace) = (oracle.clone(), trace.clone());
        let table = FaultyMembership::new(Arc::new(table), FaultSwitch::new()).on_death(move |e| {
            oracle.declared_dead(&e.name);
            trace.event(format!("{} declared dead", e.name));
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

    let mut cluster = inner.cluster.clone();
    cluster.clock = sim_clock();
    cluster.unfenced_for_tests = inner.unfenced;
    for i in 0..inner.silos {
        let name = silo_name(i);
        let (oracle, history, writes, trace, cluster, state) = (
            oracle.clone(),
            history.clone(),
            writes.clone(),
            trace.clone(),
            cluster.clone(),
            state.clone(),
        );
        let call_timeout = inner.call_timeout;
        let configure = inner.configure.clone();
        sim.host(name.clone(), move || {
            let env = SimSilo {
                index: i,
                name: name.clone(),
                state: state.clone(),
                activations: SimActivations {
                    oracle: oracle.clone(),
                    trace: trace.clone(),
                    up: std::sync::Mutex::new(None),
                },
                history: history.clone(),
                writes: writes.clone(),
            };
            let configure = configure.clone();
            // A fresh builder for each attempt to join (a failed join
            // consumes it), configured by the user's closures.
            let builder = move || {
                let mut b = Silo::builder()
                    .name(env.name.clone())
                    .call_timeout(call_timeout);
                for c in &configure {
                    b = c(&env, b);
                }
                b.with_default_storage(RemoteStorage(RemoteTable {
                    timeout: Duration::from_millis(500),
                }))
            };
            let (name, oracle, trace, cluster) =
                (name.clone(), oracle.clone(), trace.clone(), cluster.clone());
            async move {
                // A supervisor: a silo that stops serving (it read itself
                // dead) exits, and the process is started again, as a
                // service manager would.
                loop {
                    oracle.started(&name);
                    trace.event(format!("{name} starts"));
                    // The table may be out of reach (a partition): retry.
                    let silo = loop {
                        let builder = builder();
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
                                trace.event(format!("{name} could not join: {e}"));
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    };
                    trace.event(format!("{name} joined"));
                    while silo.is_serving() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // The process exits: whatever it still held is gone.
                    drop(silo);
                    oracle.crashed(&name);
                    trace.event(format!("{name} stopped serving; restarting"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }

    // The workloads: one per client host, each through a cluster client.
    let done = Arc::new(AtomicUsize::new(0));
    let heal_at = NEMESIS_START + inner.chaos;
    if let Some(workload) = &inner.workload {
        for c in 0..inner.clients {
            let (history, writes, trace, done, state) = (
                history.clone(),
                writes.clone(),
                trace.clone(),
                done.clone(),
                state.clone(),
            );
            let silos = inner.silos;
            let settle = inner.settle;
            let gateways: Vec<String> = (0..silos)
                .map(|i| format!("{}:{LINK_PORT}", silo_name(i)))
                .collect();
            // Connect first (let the silos join), then run the workload.
            let connected = async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                loop {
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
                }
            };
            let ctx = move |client| SimClient {
                index: c,
                seed,
                state,
                client: Arc::new(client),
                trace,
                history,
                writes,
                heal_at,
                settle,
            };
            let run = workload.clone();
            sim.client(client_name(c), async move {
                let client = connected.await;
                run(ctx(client)).await?;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        }
    }

    for (host, handle) in &inner.services {
        let (state, handle) = (state.clone(), handle.clone());
        sim.host(host.as_str(), move || {
            serve_host(state.clone(), handle.clone())
        });
    }

    // The nemesis, between simulation steps.
    let nemesis = inner.nemesis;
    let mut rng = SimRng::new(seed);
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut cut: Vec<(String, String)> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new();
    let start = NEMESIS_START;
    let mut next_action = start + Duration::from_millis(500 + rng.below(1000));
    let mut healed = false;
    let others: Vec<String> = std::iter::once("db".to_owned())
        .chain((0..inner.clients).map(client_name))
        .chain(inner.services.iter().map(|(h, _)| h.clone()))
        .collect();
    let mut broken: Option<String> = None;
    let result = loop {
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
        let now = sim.elapsed();
        for (name, check) in &inner.step_invariants {
            if let Err(why) = check(&state) {
                broken = Some(format!("{name} (at {} ms): {why}", now.as_millis()));
            }
        }
        if broken.is_some() {
            break Ok(());
        }
        if nemesis.is_calm() || healed {
            continue;
        }
        if now >= start + inner.chaos {
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
            trace.event_at(now, "nemesis heals everything");
            healed = true;
            continue;
        }
        if now < next_action {
            continue;
        }
        next_action = now + Duration::from_millis(800 + rng.below(1500));
        *faults.lock() += 1;
        let victim = rng.below(inner.silos as u64) as usize;
        let name = silo_name(victim);
        match rng.below(6) {
            0 if nemesis.crashes && down.len() + 1 < inner.silos && !down.contains(&victim) => {
                sim.crash(name.as_str());
                oracle.crashed(&name);
                down.insert(victim);
                trace.event_at(now, format!("nemesis crashes {name}"));
            }
            1 if nemesis.crashes && !down.is_empty() => {
                let i = *down
                    .iter()
                    .nth(rng.below(down.len() as u64) as usize)
                    .expect("down is not empty");
                down.remove(&i);
                sim.bounce(silo_name(i));
                trace.event_at(now, format!("nemesis restarts {}", silo_name(i)));
            }
            2 if nemesis.partitions => {
                // Cut a silo off from everyone, the table included.
                for peer in (0..inner.silos)
                    .map(silo_name)
                    .chain(others.iter().cloned())
                {
                    if peer != name {
                        sim.partition(name.as_str(), peer.as_str());
                        cut.push((name.clone(), peer));
                    }
                }
                trace.event_at(now, format!("nemesis isolates {name}"));
            }
            3 if nemesis.partitions => {
                let other = silo_name((victim + 1) % inner.silos);
                sim.partition(name.as_str(), other.as_str());
                cut.push((name.clone(), other.clone()));
                trace.event_at(now, format!("nemesis partitions {name} | {other}"));
            }
            4 if nemesis.holds => {
                let other = silo_name((victim + 1) % inner.silos);
                sim.hold(name.as_str(), other.as_str());
                held.push((name.clone(), other.clone()));
                trace.event_at(now, format!("nemesis holds {name} <-> {other}"));
            }
            _ => {
                for (a, b) in cut.drain(..) {
                    sim.repair(a.as_str(), b.as_str());
                }
                for (a, b) in held.drain(..) {
                    sim.release(a.as_str(), b.as_str());
                }
                trace.event_at(now, "nemesis repairs the network");
            }
        }
    };

    let mut error = result.err();
    let expected = if inner.workload.is_some() {
        inner.clients
    } else {
        0
    };
    if error.is_none() && broken.is_none() && done.load(Ordering::SeqCst) < expected {
        error = Some("the workload did not finish".into());
    }
    let mut invariants: Vec<String> = broken.into_iter().collect();
    if invariants.is_empty() {
        for (name, check) in &inner.invariants {
            if let Err(why) = check(&state) {
                invariants.push(format!("{name}: {why}"));
            }
        }
    }
    let report = SimReport {
        seed,
        trace: trace.lines(),
        duplicates: oracle.violations(),
        history: history.violations(),
        writes: writes.violations(),
        invariants,
        calls: history.counts(),
        faults: *faults.lock(),
        error,
    };
    drop(sim);
    report
}

async fn serve_host<S: Clone + 'static>(state: S, handle: Arc<ServiceFn<S>>) -> turmoil::Result {
    serve(state, handle).await?;
    Ok(())
}
