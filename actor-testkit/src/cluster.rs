//! [`TestCluster`]: N silos of one cluster in this process, a client, a
//! shared in-memory membership table and memory storage, with helpers to
//! start, stop, kill and restart silos and to inject faults.
//!
//! The silos are real [`ClusterSilo`]s: the membership agent, the fenced
//! router and the gRPC silo link run as in production; only the byte
//! streams (in-memory pipes or loopback TCP) and the services (membership
//! table, storage) are test doubles that can fail on demand.

use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable, SiloStatus,
};
use actor_core::{Grain, GrainKey, GrainRef, Silo, SiloBuilder};
use actor_persistence::{MemoryStorage, SiloBuilderStorageExt, StorageProvider};

use crate::error::{Result, TestClusterError};
use crate::faults::{FaultSwitch, FaultyMembership, FaultyStorage};
use crate::network::{LinkRule, Network, Transport};
use crate::oracle::ActivationOracle;

type Configure = Arc<dyn Fn(usize, SiloBuilder) -> SiloBuilder + Send + Sync>;

/// Configures a [`TestCluster`]. Defaults: 2 silos, in-memory transport,
/// fast failure detection ([`ClusterConfig::fast`]), memory storage as the
/// default storage provider, a client.
pub struct TestClusterBuilder {
    silos: usize,
    transport: Transport,
    config: ClusterConfig,
    configure: Configure,
    storage: Arc<dyn StorageProvider>,
    oracle: Option<ActivationOracle>,
    client: bool,
    settle: Duration,
}

impl std::fmt::Debug for TestClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClusterBuilder")
            .field("silos", &self.silos)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Default for TestClusterBuilder {
    fn default() -> Self {
        TestClusterBuilder {
            silos: 2,
            transport: Transport::Memory,
            config: ClusterConfig::fast(),
            configure: Arc::new(|_, b| b),
            storage: Arc::new(MemoryStorage::new()),
            oracle: None,
            client: true,
            settle: Duration::from_secs(20),
        }
    }
}

impl TestClusterBuilder {
    /// How many silos start (default 2).
    pub fn silos(mut self, n: usize) -> Self {
        self.silos = n;
        self
    }

    /// Which byte streams links run over (default in-memory).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Membership and failure-detection timings (default
    /// [`ClusterConfig::fast`]).
    pub fn cluster_config(mut self, config: ClusterConfig) -> Self {
        self.config = config;
        self
    }

    /// Configures every silo: called with the silo's index and a builder
    /// already named (`silo-<index>`) and given the default storage. Add
    /// grains, extensions and options here.
    pub fn configure(
        mut self,
        f: impl Fn(usize, SiloBuilder) -> SiloBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Arc::new(f);
        self
    }

    /// The default storage provider every silo shares (default a fresh
    /// [`MemoryStorage`]); it is wrapped so that
    /// [`TestCluster::storage_faults`] can make it fail.
    pub fn storage(mut self, provider: impl StorageProvider) -> Self {
        self.storage = Arc::new(provider);
        self
    }

    /// An oracle the cluster tells about crashes, restarts and silos
    /// declared dead (the grains report their own activations to it).
    pub fn oracle(mut self, oracle: ActivationOracle) -> Self {
        self.oracle = Some(oracle);
        self
    }

    /// Whether to connect a [`ClusterClient`] (default yes).
    pub fn client(mut self, on: bool) -> Self {
        self.client = on;
        self
    }

    /// How long [`build`](Self::build) and restarts wait for the cluster to
    /// settle (default 20 s).
    pub fn settle_within(mut self, timeout: Duration) -> Self {
        self.settle = timeout;
        self
    }

    /// Starts the silos, waits until they all see each other, connects the
    /// client.
    pub async fn build(self) -> Result<TestCluster> {
        let network = Network::new(self.transport);
        let table = InMemoryMembership::new();
        let table_faults = FaultSwitch::new();
        let oracle = self.oracle.clone();
        let base = FaultyMembership::new(Arc::new(table.clone()), table_faults.clone()).on_death(
            move |entry| {
                if let Some(o) = &oracle {
                    o.declared_dead(&entry.name);
                }
            },
        );
        let storage_faults = FaultSwitch::new();
        let storage = FaultyStorage::new(self.storage, storage_faults.clone());
        let mut cluster = TestCluster {
            network,
            table,
            base,
            table_faults,
            storage_faults,
            storage,
            config: self.config,
            configure: self.configure,
            oracle: self.oracle,
            settle: self.settle,
            slots: Vec::new(),
            client: None,
        };
        for _ in 0..self.silos {
            cluster.start_silo().await?;
        }
        cluster.wait_until_stable(self.settle).await?;
        if self.client {
            let gateways = cluster.endpoints();
            let client = ClusterClient::connect_via(
                cluster.network.connector("client"),
                gateways,
                Duration::from_millis(500),
            )
            .await
            .map_err(|e| TestClusterError::Client(e.to_string()))?;
            cluster.client = Some(client);
        }
        Ok(cluster)
    }
}

struct Slot {
    name: String,
    endpoint: String,
    view: FaultyMembership,
    silo: Option<ClusterSilo>,
}

/// Silos of one cluster in this process. Dropping it stops them.
pub struct TestCluster {
    network: Network,
    table: InMemoryMembership,
    base: FaultyMembership,
    table_faults: FaultSwitch,
    storage_faults: FaultSwitch,
    storage: FaultyStorage,
    config: ClusterConfig,
    configure: Configure,
    oracle: Option<ActivationOracle>,
    settle: Duration,
    slots: Vec<Slot>,
    client: Option<ClusterClient>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("silos", &self.names())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// A builder with the defaults (2 silos, in memory).
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// The client (panics if the builder turned it off).
    pub fn client(&self) -> &ClusterClient {
        self.client
            .as_ref()
            .expect("this test cluster was built without a client")
    }

    /// A typed reference to a grain, called through the client.
    pub fn get_grain<G: Grain>(&self, key: impl Into<GrainKey>) -> GrainRef<G> {
        self.client().get_grain(key)
    }

    /// Silo `i` (panics if it is not running).
    pub fn silo(&self, i: usize) -> &ClusterSilo {
        self.try_silo(i)
            .unwrap_or_else(|| panic!("silo #{i} is not running"))
    }

    /// Silo `i`, if it is running.
    pub fn try_silo(&self, i: usize) -> Option<&ClusterSilo> {
        self.slots.get(i).and_then(|s| s.silo.as_ref())
    }

    /// The local silo of silo `i`, for grain references made there.
    pub fn local(&self, i: usize) -> &Silo {
        self.silo(i).silo()
    }

    /// The silos' names, by index (`silo-0`, ...), stopped ones included.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// The name of silo `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.slots[i].name
    }

    /// The indexes of the running silos.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].silo.is_some())
            .collect()
    }

    fn endpoints(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.silo.is_some())
            .map(|s| s.endpoint.clone())
            .collect()
    }

    /// The network, for finer faults than the helpers here.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The shared membership table (without faults), to inspect.
    pub fn table(&self) -> &InMemoryMembership {
        &self.table
    }

    /// The switch of the membership table: fail, conflict or stall it for
    /// every silo.
    pub fn membership_faults(&self) -> &FaultSwitch {
        &self.table_faults
    }

    /// The switch of the default storage: fail, conflict or stall it.
    pub fn storage_faults(&self) -> &FaultSwitch {
        &self.storage_faults
    }

    /// The default storage provider the silos share (with its faults).
    pub fn storage(&self) -> &FaultyStorage {
        &self.storage
    }

    /// Starts one more silo (named `silo-<n>`); its index.
    pub async fn start_silo(&mut self) -> Result<usize> {
        let i = self.slots.len();
        let name = format!("silo-{i}");
        self.slots.push(Slot {
            name,
            endpoint: String::new(),
            view: self.base.view(),
            silo: None,
        });
        self.launch(i, None).await?;
        Ok(i)
    }

    async fn launch(&mut self, i: usize, endpoint: Option<String>) -> Result<()> {
        let name = self.slots[i].name.clone();
        let fail = |reason: String| TestClusterError::Start {
            silo: name.clone(),
            reason,
        };
        self.network.revive(&name);
        let listener = self
            .network
            .listen(&name, endpoint.as_deref())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let endpoint = listener.endpoint().to_owned();
        let builder = SiloBuilder::new()
            .name(name.clone())
            .with_default_storage(self.storage.clone());
        let builder = (self.configure)(i, builder);
        let view = self.base.view();
        if let Some(o) = &self.oracle {
            o.started(&name);
        }
        let silo = ClusterSilo::start_on(
            builder,
            listener,
            self.network.connector(&name),
            Arc::new(view.clone()),
            self.config.clone(),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        let slot = &mut self.slots[i];
        slot.endpoint = endpoint;
        slot.view = view;
        slot.silo = Some(silo);
        Ok(())
    }

    /// Stops silo `i` gracefully: it leaves the table, deactivating its
    /// grains first.
    pub async fn stop_silo(&mut self, i: usize) -> Result<()> {
        let silo = self.take(i)?;
        silo.leave().await.map_err(|e| TestClusterError::Start {
            silo: self.slots[i].name.clone(),
            reason: format!("leaving: {e}"),
        })
    }

    /// Kills silo `i` abruptly, as a crash: no deactivation, no goodbye,
    /// its links cut. The others find out by probing.
    pub fn kill_silo(&mut self, i: usize) -> Result<()> {
        let silo = self.take(i)?;
        let name = &self.slots[i].name;
        silo.kill();
        self.network.crash(name);
        if let Some(o) = &self.oracle {
            o.crashed(name);
        }
        Ok(())
    }

    /// Restarts silo `i` on its endpoint with a new generation (killing it
    /// first if it runs), and waits until the cluster settles.
    pub async fn restart_silo(&mut self, i: usize) -> Result<()> {
        if i >= self.slots.len() {
            return Err(TestClusterError::NoSuchSilo(i));
        }
        if self.slots[i].silo.is_some() {
            self.kill_silo(i)?;
        }
        let endpoint = self.slots[i].endpoint.clone();
        self.launch(i, Some(endpoint)).await?;
        self.wait_until_stable(self.settle).await
    }

    fn take(&mut self, i: usize) -> Result<ClusterSilo> {
        self.slots
            .get_mut(i)
            .and_then(|s| s.silo.take())
            .ok_or(TestClusterError::NoSuchSilo(i))
    }

    /// Waits until every running, serving silo is active in the table and
    /// each of them places grains over exactly that set.
    pub async fn wait_until_stable(&self, timeout: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let why = self.unstable_because().await;
            let Some(why) = why else { return Ok(()) };
            if tokio::time::Instant::now() >= until {
                return Err(TestClusterError::Unstable(why));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn unstable_because(&self) -> Option<String> {
        let mut expected: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.silo.as_ref().is_some_and(|c| c.is_serving()))
            .map(|s| s.endpoint.clone())
            .collect();
        expected.sort();
        let snap = match self.table.read_all().await {
            Ok(s) => s,
            Err(e) => return Some(format!("table: {e}")),
        };
        let mut active: Vec<String> = snap
            .with_status(SiloStatus::Active)
            .map(|e| e.silo.endpoint.clone())
            .collect();
        active.sort();
        if active != expected {
            return Some(format!("table has {active:?}, running {expected:?}"));
        }
        for s in &self.slots {
            if let Some(c) = s.silo.as_ref().filter(|c| c.is_serving()) {
                let mut seen = c.active_members();
                seen.sort();
                if seen != expected {
                    return Some(format!("{} sees {seen:?}, running {expected:?}", s.name));
                }
            }
        }
        None
    }

    /// Deactivates every grain on every running silo (running
    /// `on_deactivate`); whether all went within `timeout`.
    pub async fn deactivate_all(&self, timeout: Duration) -> bool {
        let mut all = true;
        for s in self.slots.iter().filter_map(|s| s.silo.as_ref()) {
            all &= s.silo().deactivate_all(timeout).await;
        }
        all
    }

    /// Activations per silo, by index (0 for a stopped silo).
    pub fn activation_counts(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|s| s.silo.as_ref().map_or(0, |c| c.silo().activation_count()))
            .collect()
    }

    /// Activations in the whole cluster.
    pub fn total_activations(&self) -> usize {
        self.activation_counts().iter().sum()
    }

    /// Cuts links both ways between the silos of `a` and those of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let names = |v: &[usize]| v.iter().map(|i| self.slots[*i].name.clone()).collect();
        let (a, b): (Vec<String>, Vec<String>) = (names(a), names(b));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        self.network.partition(&a, &b);
    }

    /// Cuts links opened by silo `from` to silo `to` (`to` still reaches
    /// `from`).
    pub fn partition_oneway(&self, from: usize, to: usize) {
        self.network
            .partition_oneway(&self.slots[from].name, &self.slots[to].name);
    }

    /// Isolates silo `i` from every other silo, the client and the table,
    /// while it runs on.
    pub fn isolate(&self, i: usize) {
        let name = self.slots[i].name.clone();
        let others: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.name != name)
            .map(|s| s.name.clone())
            .chain(["client".to_owned()])
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        self.network.partition(&[&name], &others);
        self.slots[i].view.set_cut(true);
    }

    /// Cuts silo `i` off from the membership table (or restores it).
    pub fn cut_from_table(&self, i: usize, cut: bool) {
        self.slots[i].view.set_cut(cut);
    }

    /// Lifts every partition and table cut-off (rules stay; crashed silos
    /// stay down).
    pub fn heal(&self) {
        self.network.heal();
        for s in &self.slots {
            s.view.set_cut(false);
        }
    }

    /// Adds a delay or drop rule on links.
    pub fn add_link_rule(&self, rule: LinkRule) {
        self.network.add_rule(rule);
    }
}
