// Over 800 lines on purpose: a cluster silo's lifecycle (join, serve,
// renew its lease, vote, leave) and its membership agent share the silo's
// state; the parts that stand alone are fence.rs, membership.rs,
// directory/ and link/.
//! A silo in a cluster: it joins the membership table, serves its link,
//! heartbeats, probes its peers, votes on suspects and keeps its view of
//! ownership (`crate::fence`) equal to the active silos in the table.
//!
//! Failure detection follows Orleans' protocol: a peer that misses
//! `missed_probes` probes in a row gets a timestamped suspicion vote in the
//! table; when fresh votes reach `votes_to_kill` (or every other active
//! silo, in a small cluster) the voter declares it dead in the same
//! compare-and-set write. A silo that reads itself dead stops serving at
//! once. While the table cannot be read or written, nobody joins and
//! nobody is declared dead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use actor_core::{Silo, SiloBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::directory::{Directory, DirectoryRouting, serve_member};
use crate::error::{Error, Result};
use crate::fence::Ownership;
use crate::link::{LinkService, Prober};
use crate::membership::{MembershipEntry, MembershipTable, SiloAddress, SiloStatus, Suspicion};
use crate::stats::{ClusterView, StatsService};
use crate::transport::{ConnectionLimits, Connector, LinkListener};

/// The wall clock of membership (generations, heartbeats, votes), in
/// milliseconds since the Unix epoch. The default reads the system clock;
/// a simulator injects its own so that runs replay.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl WallClock {
    /// A clock reading `now`.
    pub fn new(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now))
    }

    /// The time now, in milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        (self.0)()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new(crate::membership::now_millis)
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WallClock({})", self.now_millis())
    }
}

/// Timings of membership and failure detection. The defaults declare a
/// silo that stopped answering dead in about 3 s, and take 3 missed
/// probes of 1 s each, so a loaded machine does not cause false deaths;
/// its grains answer elsewhere about a second later (the lease of 2 s
/// has run out by then: see [`lease`](ClusterConfig::lease)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// How often each silo probes its peers and re-reads the table.
    pub probe_interval: Duration,
    /// How long a probe may take before it counts as missed.
    pub probe_timeout: Duration,
    /// Missed probes in a row before a silo votes against a peer.
    pub missed_probes: u32,
    /// Fresh votes that declare a silo dead (capped at the number of other
    /// active silos).
    pub votes_to_kill: usize,
    /// How long a vote stays fresh.
    pub vote_expiry: Duration,
    /// The longest time between two of a silo's I-am-alive heartbeats,
    /// which renew its lease (it writes one every eighth of a lease, or
    /// this often if that is shorter).
    pub i_am_alive_interval: Duration,
    /// A silo's membership lease, renewed by each heartbeat the table
    /// accepted (counted from before it was sent; the table accepts none
    /// once the silo is declared dead). A silo serves (activates,
    /// registers, routes) in the first two thirds of its lease, lets its
    /// grains go in the last third, and starts no turn past it (callers
    /// look its grains up again). The others activate a dead silo's
    /// grains 1.25 leases after they first read its last heartbeat, when
    /// that lease has surely run out: no grain ever runs in two places
    /// (the argument is in docs/cluster-protocol.md). A table that cannot
    /// be written for two thirds of a lease stops a silo serving.
    pub lease: Duration,
    /// Frame size limit of silo links.
    pub max_frame: usize,
    /// The most calls this silo accepts in flight from its links (from
    /// other silos and from clients through its gateway): requests whose
    /// reply has not been sent yet. A call past it is answered at once
    /// with `actor_core::Error::Overloaded` and does not run, so a call
    /// storm costs bounded memory and the silo keeps answering probes;
    /// probes and directory traffic never count. Default
    /// [`DEFAULT_MAX_CALLS_IN_FLIGHT`](crate::DEFAULT_MAX_CALLS_IN_FLIGHT)
    /// (20,000); see docs/runtime-semantics.md, "Overload".
    pub max_calls_in_flight: usize,
    /// The placement strategy of each grain type (hash-based unless set;
    /// see [`Placements`](crate::Placements) and
    /// [`with_placement`](ClusterConfig::with_placement)).
    pub placement: crate::placement::Placements,
    /// The endpoint other silos and clients reach this silo at, when it is
    /// not the listener's own address (a proxy or NAT in between). `None`:
    /// the listener's address.
    pub advertise: Option<String>,
    /// The wall clock of membership rows and votes.
    pub clock: WallClock,
    /// Limits on the connections the silo serves: per peer address, and
    /// how long a connection may take to start speaking HTTP/2 or stay
    /// silent (see [`ConnectionLimits`]; these replace the limits of the
    /// [`LinkListener`] given to [`ClusterSilo::start_on`]).
    pub connections: ConnectionLimits,
    /// Mutual TLS on every connection the silo serves and opens (links,
    /// probes, directory and stats calls, and its gateway's clients), or
    /// `None` for plain TCP. See [`with_tls`](ClusterConfig::with_tls).
    pub tls: Option<crate::TlsConfig>,
    /// Test-only: turns the activation fence off (no view acks, no leases,
    /// no holds), so that a test can show its oracle catches the duplicate
    /// activations that follow. Never set it elsewhere.
    #[doc(hidden)]
    pub unfenced_for_tests: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            missed_probes: 3,
            votes_to_kill: 2,
            vote_expiry: Duration::from_secs(30),
            i_am_alive_interval: Duration::from_secs(5),
            lease: Duration::from_secs(2),
            max_frame: crate::link::DEFAULT_MAX_FRAME,
            max_calls_in_flight: crate::link::DEFAULT_MAX_CALLS_IN_FLIGHT,
            placement: crate::placement::Placements::default(),
            advertise: None,
            clock: WallClock::default(),
            connections: ConnectionLimits::default(),
            tls: None,
            unfenced_for_tests: false,
        }
    }
}

impl ClusterConfig {
    /// Serves and dials under mutual TLS with `tls`: a peer whose
    /// certificate the cluster's CA did not sign, that has expired, or
    /// that lacks the required name is refused in the handshake, before
    /// it can call, probe or register anything (see docs/security.md).
    /// It applies on top of whatever transport the silo is given.
    pub fn with_tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Timings for tests on loopback: probes every 100 ms, dead in about
    /// half a second.
    pub fn fast() -> Self {
        ClusterConfig {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(300),
            missed_probes: 3,
            votes_to_kill: 2,
            vote_expiry: Duration::from_secs(10),
            i_am_alive_interval: Duration::from_millis(500),
            lease: Duration::from_secs(1),
            max_frame: crate::link::DEFAULT_MAX_FRAME,
            max_calls_in_flight: crate::link::DEFAULT_MAX_CALLS_IN_FLIGHT,
            placement: crate::placement::Placements::default(),
            advertise: None,
            clock: WallClock::default(),
            connections: ConnectionLimits::default(),
            tls: None,
            unfenced_for_tests: false,
        }
    }
}

/// A running silo that is a member of a cluster.
pub struct ClusterSilo {
    silo: Silo,
    address: SiloAddress,
    ownership: Arc<Ownership>,
    directory: Arc<Directory>,
    table: Arc<dyn MembershipTable>,
    serving: Arc<AtomicBool>,
    clock: WallClock,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterSilo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSilo")
            .field("address", &self.address)
            .field("serving", &self.is_serving())
            .finish_non_exhaustive()
    }
}

impl ClusterSilo {
    /// Starts `builder`'s silo as a member of the cluster whose table is
    /// `table`, serving its link on `listener`: joins (a `Joining` row),
    /// serves, then turns `Active`. Fails without joining if the table
    /// cannot be reached.
    pub async fn start(
        builder: SiloBuilder,
        listener: TcpListener,
        table: Arc<dyn MembershipTable>,
        config: ClusterConfig,
    ) -> Result<ClusterSilo> {
        let listener = LinkListener::tcp(listener)?;
        ClusterSilo::start_on(builder, listener, crate::transport::tcp(), table, config).await
    }

    /// Like [`start`](ClusterSilo::start) over any transport: serves its
    /// link on `listener` and reaches the other silos through `connector`
    /// (in-memory pipes, a simulated network, a fault-injecting wrapper).
    pub async fn start_on(
        builder: SiloBuilder,
        listener: LinkListener,
        connector: Arc<dyn Connector>,
        table: Arc<dyn MembershipTable>,
        config: ClusterConfig,
    ) -> Result<ClusterSilo> {
        let endpoint = match &config.advertise {
            Some(e) => e.clone(),
            None => listener.endpoint().to_owned(),
        };
        let (listener, connector) = match &config.tls {
            Some(tls) => (listener.with_tls(tls)?, tls.connector(connector)?),
            None => (listener, connector),
        };
        let clock = config.clock.clone();
        let address = SiloAddress::new(endpoint.clone(), clock.now_millis());
        let ownership = Arc::new(Ownership::new(endpoint.clone(), vec![endpoint.clone()]));
        // Fenced from the start: nothing is activated here before this
        // silo has a view that every member has applied. The lease starts
        // expired and is granted with the first view: until then the
        // view's only member is this silo, which would otherwise own
        // (and activate) every grain it is asked for while it joins (the
        // simulator found such a duplicate on a restart). Fenced before
        // the silo starts, not after: its start hooks run plug-ins' tasks
        // (a stream provider's keeper calls its partition agents at once),
        // and a call in between would register the grain in this silo's
        // one-member partition, which keeps it after the first view if
        // this silo still owns it there, while the old owner runs it too
        // (streams_rebalance.rs found partitions pulled twice that way).
        if !config.unfenced_for_tests {
            ownership.enable_fencing(tokio::time::Instant::now(), serve_grace(config.lease));
        }
        let serving = Arc::new(AtomicBool::new(true));
        let directory = Directory::new(
            address.clone(),
            ownership.clone(),
            connector.clone(),
            config.placement.clone(),
            config.probe_timeout.max(Duration::from_millis(500)),
            config.max_frame,
            serving.clone(),
        );
        let silo = builder
            .router(Arc::new(DirectoryRouting(directory.clone())))
            // No turn runs past this silo's lease: a silo paused (or cut
            // off) longer than its lease runs nothing queued when it
            // resumes, before its agent has read whether it is dead.
            .turn_fence(ownership.turn_fence())
            // For tools (the dashboard): membership and peers' reports.
            .extension(ClusterView::new(
                address.clone(),
                table.clone(),
                ownership.clone(),
                connector.clone(),
            ))
            .start()
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        directory.attach(&silo);

        if config.tls.is_some() {
            // A silo the members would refuse writes no row (the
            // members would only have to vote it out).
            let trial = config.probe_timeout.max(Duration::from_secs(2));
            if let Err(e) = crate::tls::check_members(&*table, &connector, trial).await {
                silo.halt();
                return Err(e);
            }
        }
        let mut entry = MembershipEntry::joining(address.clone(), silo.name());
        entry.start_millis = clock.now_millis();
        entry.i_am_alive_millis = entry.start_millis;
        insert_retrying(&*table, entry).await?;
        let applied = Arc::new(AtomicI64::new(0));
        let service = LinkService::new(silo.clone(), config.max_frame)
            .with_max_calls_in_flight(config.max_calls_in_flight)
            .with_liveness(address.generation, serving.clone())
            .with_applied_view(applied.clone())
            .with_gateways({
                // The directory's view, not the fence's: it changes last,
                // so a client never learns of a change its gateway does
                // not route by yet.
                let directory = directory.clone();
                move || directory.members()
            })
            .with_admission({
                let directory = directory.clone();
                move |id| directory.hosts_or_takes(id)
            });
        let stats = StatsService::new(silo.clone(), serving.clone());
        let listener = listener.with_limits(config.connections);
        let server = serve_member(service, directory.clone(), stats, listener);
        // The first lease: a heartbeat the table accepted (so this silo
        // was not dead when it landed), counted from before it was sent:
        // a reply that was delayed (or read by a process that was paused)
        // must not stretch it.
        let mut renewed_at = None;
        let joined = async {
            set_own_status(&*table, &address, SiloStatus::Active, &clock).await?;
            let issued = tokio::time::Instant::now();
            if table
                .update_i_am_alive(&address, clock.now_millis())
                .await?
            {
                renewed_at = Some(issued);
            }
            table.read_all().await
        };
        let snap = joined.await;
        let read_end = tokio::time::Instant::now();
        let snap = match snap {
            Ok(snap) => snap,
            Err(e) => {
                // Release the endpoint and the silo: a retry (or another
                // silo) may bind it again (the simulator found a restart
                // that could not, the failed attempt still holding it).
                server.abort();
                serving.store(false, Ordering::SeqCst);
                silo.halt();
                return Err(e);
            }
        };
        ownership.set_view(
            snap.with_status(SiloStatus::Active)
                .map(|e| e.silo.endpoint.clone())
                .collect(),
            snap.version.0,
        );
        let active: Vec<SiloAddress> = snap
            .with_status(SiloStatus::Active)
            .map(|e| e.silo.clone())
            .collect();
        directory.apply_view(&active, config.lease / 2).await;
        applied.store(snap.version.0, Ordering::SeqCst);
        // A silo declared dead by votes shortly before this one joined may
        // still serve its grains until its lease runs out; the members that
        // saw it die hold their activations for that long, and so must a
        // joiner that never saw it (the simulator found the gap). Its last
        // heartbeat is in this read, so its lease is over 1.25 leases from
        // now. Which deaths are recent is judged by wall clocks, with a
        // window (the vote expiry, 30 s by default) far wider than their
        // skew: holding costs a joiner little.
        let now_ms = clock.now_millis();
        let recent =
            i64::try_from(config.vote_expiry.max(config.lease * 2).as_millis()).unwrap_or(i64::MAX);
        let recently_dead = snap.entries.iter().any(|(e, _)| {
            e.status == SiloStatus::Dead
                && !e.suspicions.is_empty()
                && (now_ms - e.i_am_alive_millis <= recent
                    || e.suspicions.iter().any(|v| now_ms - v.at_millis <= recent))
        });
        if recently_dead {
            ownership.hold_until(read_end + hold_after_death(config.lease));
        }
        if let Some(issued) = renewed_at {
            ownership.renew_lease(issued + config.lease);
        }
        let loads = {
            let directory = directory.clone();
            let every = config.probe_interval;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    directory.exchange_loads().await;
                }
            })
        };
        let sweeper = {
            let directory = directory.clone();
            let every = config.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    directory.sweep().await;
                }
            })
        };
        let renewer = tokio::spawn(renew_leases(
            table.clone(),
            address.clone(),
            ownership.clone(),
            silo.clone(),
            config.clone(),
        ));
        let agent = Agent {
            applied,
            seen: snap
                .entries
                .iter()
                .map(|(e, _)| (e.silo.clone(), (e.i_am_alive_millis, read_end)))
                .collect(),
            dead: snap
                .entries
                .iter()
                .filter(|(e, _)| e.status == SiloStatus::Dead && !e.suspicions.is_empty())
                .map(|(e, _)| e.silo.clone())
                .collect(),
            active: active.clone(),
            last_version: snap.version.0,
            me: address.clone(),
            table: table.clone(),
            ownership: ownership.clone(),
            directory: directory.clone(),
            silo: silo.clone(),
            serving: serving.clone(),
            config,
            prober: Prober::with_connector(connector),
            misses: HashMap::new(),
        };
        let agent = tokio::spawn(agent.run());
        Ok(ClusterSilo {
            silo,
            address,
            ownership,
            directory,
            table,
            serving,
            clock,
            tasks: vec![server, agent, renewer, loads, sweeper],
        })
    }

    /// The silo, for grain references and metrics.
    pub fn silo(&self) -> &Silo {
        &self.silo
    }

    /// This silo's address (endpoint and generation).
    pub fn address(&self) -> &SiloAddress {
        &self.address
    }

    /// The active silos this silo places grains on now.
    pub fn active_members(&self) -> Vec<String> {
        self.ownership.members()
    }

    /// The endpoint that owns `id`'s directory partition in this silo's
    /// current view, by rendezvous hashing: also where the default
    /// [`HashPlacement`](crate::HashPlacement) activates `id` if it is
    /// not active anywhere. An activation placed earlier stays where it
    /// is when silos join; see [`location_of`](ClusterSilo::location_of).
    pub fn owner_of(&self, id: &actor_core::GrainId) -> String {
        self.ownership.owner(id)
    }

    /// Where this silo last saw `id`'s activation: this silo's endpoint if
    /// it hosts it, another's if its directory cache names one, `None` if
    /// it does not know (it finds out on the next call).
    pub fn location_of(&self, id: &actor_core::GrainId) -> Option<String> {
        self.directory.location(id)
    }

    /// How many registrations this silo's directory partition holds.
    pub fn directory_partition_len(&self) -> usize {
        self.directory.partition_len()
    }

    /// Whether the silo still answers calls and probes.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Leaves gracefully: `ShuttingDown` in the table, grains deactivated,
    /// then `Dead`, and the link closed.
    pub async fn leave(self) -> Result<()> {
        let clock = &self.clock;
        set_own_status(&*self.table, &self.address, SiloStatus::ShuttingDown, clock).await?;
        self.silo.shutdown().await;
        self.serving.store(false, Ordering::SeqCst);
        let result = set_own_status(&*self.table, &self.address, SiloStatus::Dead, clock).await;
        for t in &self.tasks {
            t.abort();
        }
        result
    }

    /// Stops (or resumes) answering calls and probes from other silos,
    /// while the silo itself goes on: a network partition as the others see
    /// it. For fault-injection tests and tools.
    pub fn set_answering(&self, on: bool) {
        self.serving.store(on, Ordering::SeqCst);
    }

    /// Stops the silo abruptly, as a crash would: it answers nothing more,
    /// writes nothing more to the table, and its grains can call no one
    /// (the local silo is halted: no `on_deactivate`). (For tests and tools; the
    /// others must find out by probing.)
    pub fn kill(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.silo.halt();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for ClusterSilo {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn insert_retrying(table: &dyn MembershipTable, entry: MembershipEntry) -> Result<()> {
    loop {
        let snap = table.read_all().await?;
        if table.insert(entry.clone(), snap.version).await? {
            return Ok(());
        }
        if snap.entry(&entry.silo).is_some() {
            return Err(Error::Config(format!(
                "{} is already in the table",
                entry.silo
            )));
        }
    }
}

async fn set_own_status(
    table: &dyn MembershipTable,
    me: &SiloAddress,
    status: SiloStatus,
    clock: &WallClock,
) -> Result<()> {
    loop {
        let snap = table.read_all().await?;
        let Some((entry, etag)) = snap.entry(me).cloned() else {
            return Err(Error::Config(format!("{me} has no row in the table")));
        };
        if entry.status == SiloStatus::Dead && status != SiloStatus::Dead {
            return Err(Error::Config(format!("{me} was declared dead")));
        }
        let mut entry = entry;
        entry.status = status;
        entry.i_am_alive_millis = clock.now_millis();
        if table.update(entry, etag, snap.version).await? {
            return Ok(());
        }
    }
}

/// How long after first reading a dead silo's last heartbeat the others
/// wait before they activate its grains: its lease (a lease after that
/// heartbeat was sent, which was before it was read) plus a quarter, for
/// clocks that run at different rates.
fn hold_after_death(lease: Duration) -> Duration {
    lease + lease / 4
}

/// The end of a silo's lease in which it no longer serves (activates,
/// registers or routes) but still runs the last turns of the grains it
/// lets go.
fn serve_grace(lease: Duration) -> Duration {
    lease / 3
}

/// Renews this silo's lease: a heartbeat every eighth of a lease (or
/// every `i_am_alive_interval`, if shorter), each counted from before it
/// was sent and accepted only while the silo is not declared dead. Apart
/// from the membership agent, so that probing, claims and votes never
/// delay it, and several may be in flight, so that a slow table still
/// renews it. A silo that has not renewed its lease for two thirds of it
/// stops serving and lets its grains go, so that their last turns
/// (`on_deactivate`) run while it may still run turns; past its lease it
/// runs none (`TurnFence`).
async fn renew_leases(
    table: Arc<dyn MembershipTable>,
    me: SiloAddress,
    ownership: Arc<Ownership>,
    silo: Silo,
    config: ClusterConfig,
) {
    let lease = config.lease;
    let every = (lease / 8)
        .min(config.i_am_alive_interval)
        .max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Dropped (and so aborted) with this task.
    let mut beats = tokio::task::JoinSet::new();
    let mut deactivated = false;
    loop {
        ticker.tick().await;
        while beats.try_join_next().is_some() {}
        let issued = tokio::time::Instant::now();
        let at = config.clock.now_millis();
        let (table, me2, ownership2) = (table.clone(), me.clone(), ownership.clone());
        beats.spawn(async move {
            match tokio::time::timeout(lease, table.update_i_am_alive(&me2, at)).await {
                Ok(Ok(true)) => ownership2.renew_lease(issued + lease),
                // Declared dead (or its row is gone): the agent reads it
                // and stops serving; the lease runs out meanwhile.
                Ok(Ok(false)) => {
                    tracing::debug!(silo = %me2, "the table refused this silo's heartbeat")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the membership lease"),
                Err(_) => tracing::warn!("the membership table did not answer a heartbeat"),
            }
        });
        if ownership.lease_valid() {
            deactivated = false;
        } else if !deactivated {
            deactivated = true;
            tracing::error!(silo = %me, "membership lease running out: deactivating every grain");
            let silo = silo.clone();
            let grace = serve_grace(lease);
            tokio::spawn(async move { silo.deactivate_all(grace).await });
        }
    }
}

struct Agent {
    applied: Arc<AtomicI64>,
    /// Each silo's heartbeat stamp as last read, and when this silo first
    /// read it (the end of that read: the heartbeat landed before).
    seen: HashMap<SiloAddress, (i64, tokio::time::Instant)>,
    /// The silos already seen declared dead by votes.
    dead: std::collections::HashSet<SiloAddress>,
    /// The active silos of the last read.
    active: Vec<SiloAddress>,
    /// The table version of the last read.
    last_version: i64,
    me: SiloAddress,
    table: Arc<dyn MembershipTable>,
    ownership: Arc<Ownership>,
    directory: Arc<Directory>,
    silo: Silo,
    serving: Arc<AtomicBool>,
    config: ClusterConfig,
    prober: Prober,
    misses: HashMap<SiloAddress, u32>,
}

impl Agent {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.probe_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Read again at once, without waiting for the tick: after this
        // silo declared a peer dead, or a peer reported a newer view.
        let mut read_now = false;
        loop {
            if !std::mem::take(&mut read_now) {
                ticker.tick().await;
            }
            let round = tokio::time::Instant::now();
            let read = tokio::time::timeout(self.config.lease, self.table.read_all()).await;
            let read_end = tokio::time::Instant::now();
            let snap = match read {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    // Keep the last view: no joins, no deaths while blind.
                    tracing::warn!(error = %e, "cannot read the membership table");
                    continue;
                }
                Err(_) => {
                    tracing::warn!("the membership table did not answer");
                    continue;
                }
            };
            match snap.entry(&self.me) {
                Some((e, _)) if e.status == SiloStatus::Dead => {
                    tracing::error!(silo = %self.me, "this silo was declared dead; it stops serving");
                    self.serving.store(false, Ordering::SeqCst);
                    self.silo.shutdown().await;
                    return;
                }
                None => {
                    tracing::error!(silo = %self.me, "this silo's row is gone; it stops serving");
                    self.serving.store(false, Ordering::SeqCst);
                    self.silo.shutdown().await;
                    return;
                }
                Some(_) => {}
            }
            self.last_version = snap.version.0;
            let active: Vec<SiloAddress> = snap
                .with_status(SiloStatus::Active)
                .map(|e| e.silo.clone())
                .collect();
            // Silos declared dead may still run grains until their lease
            // runs out: hold new activations until then. Set before the
            // view changes, so no registration slips in between.
            if let Some(until) = self.leases_of_the_dead(&snap, &active, read_end) {
                self.ownership.hold_until(until);
            }
            self.active = active.clone();
            let endpoints: Vec<String> = active.iter().map(|a| a.endpoint.clone()).collect();
            if endpoints != self.ownership.members() {
                tracing::info!(silo = %self.me, members = ?endpoints, "membership changed");
                self.ownership.set_view(endpoints, snap.version.0);
            }
            // Activations stay where they are; grains whose directory
            // partition moved are claimed at their new owner before this
            // silo reports the view applied (see the crate docs).
            // Claims get half a lease, so this silo's own lease (renewed
            // apart, every third of a lease) cannot run out while it waits.
            self.directory
                .apply_view(&active, self.config.lease / 2)
                .await;
            self.applied.store(snap.version.0, Ordering::SeqCst);
            read_now = self.probe(&active).await;
            if !read_now {
                read_now = self
                    .await_acks(&active, round + self.config.probe_interval)
                    .await;
            }
        }
    }

    /// Notes every row's heartbeat stamp (and when it was first read), and
    /// returns until when new activations must wait for the leases of
    /// silos this read shows dead for the first time (none: `None`). A
    /// dead silo's last heartbeat landed before its declaration (the
    /// table refuses later ones), so before the first read that showed
    /// its stamp; its lease ran out a lease after it was sent.
    fn leases_of_the_dead(
        &mut self,
        snap: &crate::membership::MembershipSnapshot,
        active: &[SiloAddress],
        read_end: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        for (e, _) in &snap.entries {
            let seen = self
                .seen
                .entry(e.silo.clone())
                .or_insert((e.i_am_alive_millis, read_end));
            if seen.0 != e.i_am_alive_millis {
                *seen = (e.i_am_alive_millis, read_end);
            }
        }
        let hold = hold_after_death(self.config.lease);
        let mut until: Option<tokio::time::Instant> = None;
        for (e, _) in &snap.entries {
            // A silo that left by itself ran its grains down first; one
            // declared dead by votes may be running them still.
            if e.status == SiloStatus::Dead
                && !e.suspicions.is_empty()
                && self.dead.insert(e.silo.clone())
            {
                let t = self.seen[&e.silo].1 + hold;
                until = until.max(Some(t));
            }
        }
        // A silo active in the last read whose row is gone now (declared
        // dead and cleaned up in between): its last heartbeat is unknown,
        // but before this read.
        if self
            .active
            .iter()
            .any(|a| !active.contains(a) && snap.entry(a).is_none())
        {
            until = until.max(Some(read_end + hold));
        }
        self.seen.retain(|a, _| snap.entry(a).is_some());
        self.dead.retain(|a| snap.entry(a).is_some());
        until
    }

    /// Until `until` (the next round), asks the members that have not
    /// reported this silo's view applied again every 50 ms, so that the
    /// fence opens as soon as they have. Returns whether one reported a
    /// newer table than this silo read (read it again now).
    async fn await_acks(&mut self, active: &[SiloAddress], until: tokio::time::Instant) -> bool {
        let nap = Duration::from_millis(50).min(self.config.probe_interval / 4);
        let from = self.me.to_string();
        loop {
            if self.ownership.newest_ack() > self.last_version {
                return true;
            }
            let waiting = self.ownership.waiting_for_acks();
            if waiting.is_empty() || tokio::time::Instant::now() + nap >= until {
                return false;
            }
            tokio::time::sleep(nap).await;
            let peers: Vec<&SiloAddress> = active
                .iter()
                .filter(|a| waiting.contains(&a.endpoint))
                .collect();
            let results = futures::future::join_all(peers.iter().map(|p| {
                self.prober
                    .probe(&p.endpoint, &from, self.config.probe_timeout)
            }))
            .await;
            for (peer, result) in peers.into_iter().zip(results) {
                if let Ok((generation, applied)) = result
                    && generation == peer.generation
                {
                    self.ownership.set_acked(&peer.endpoint, applied);
                }
            }
        }
    }

    /// Probes every active peer, votes on those that missed too many
    /// probes in a row. Returns whether it found one dead (read the
    /// table again now).
    async fn probe(&mut self, active: &[SiloAddress]) -> bool {
        let mut found_dead = false;
        let peers: Vec<&SiloAddress> = active.iter().filter(|a| **a != self.me).collect();
        let from = self.me.to_string();
        let results = futures::future::join_all(peers.iter().map(|p| {
            self.prober
                .probe(&p.endpoint, &from, self.config.probe_timeout)
        }))
        .await;
        self.misses.retain(|k, _| active.contains(k));
        for (peer, result) in peers.into_iter().zip(results) {
            // A different generation on the endpoint means the silo we
            // knew is gone: treat it as a miss too.
            if let Ok((generation, applied)) = result
                && generation == peer.generation
            {
                self.ownership.set_acked(&peer.endpoint, applied);
                self.misses.remove(peer);
                continue;
            }
            let misses = self.misses.entry(peer.clone()).or_insert(0);
            *misses += 1;
            if *misses >= self.config.missed_probes {
                match self.vote(peer, active.len()).await {
                    Ok(true) => {
                        self.misses.remove(peer);
                        self.prober.forget(&peer.endpoint);
                        found_dead = true;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, suspect = %peer, "cannot vote"),
                }
            }
        }
        found_dead
    }

    /// Adds this silo's vote against `suspect`; declares it dead when the
    /// fresh votes suffice. Returns whether it is now dead.
    async fn vote(&self, suspect: &SiloAddress, active: usize) -> Result<bool> {
        for _ in 0..5 {
            let snap = self.table.read_all().await?;
            let Some((entry, etag)) = snap.entry(suspect).cloned() else {
                return Ok(true);
            };
            if entry.status == SiloStatus::Dead {
                return Ok(true);
            }
            let now = self.config.clock.now_millis();
            let mut entry = entry;
            entry.suspicions.retain(|s| s.by != self.me);
            entry.suspicions.push(Suspicion {
                by: self.me.clone(),
                at_millis: now,
            });
            let fresh = entry.fresh_suspicions(now, self.config.vote_expiry);
            let others = active.saturating_sub(1).max(1);
            let dead = fresh >= self.config.votes_to_kill.min(others);
            if dead {
                entry.status = SiloStatus::Dead;
            }
            if self.table.update(entry, etag, snap.version).await? {
                if dead {
                    tracing::warn!(silo = %self.me, dead = %suspect, votes = fresh, "declared a silo dead");
                }
                return Ok(dead);
            }
        }
        Ok(false)
    }
}
