// One file on purpose: a course port reads top to bottom beside the
// exercise it ports.
//! # Course exercise 06: a durable outbox drained by several silos
//!
//! **The original** (EventsOutOfProcessByDatabase) writes events into an
//! *outbox table* in the same database transaction as the business change,
//! and a background worker polls the table and hands each row to its
//! consumer. The lesson: the event is durable as soon as the business
//! change is, so a crash loses nothing, and the delivery is retried until
//! it succeeds. The catch comes with scale: two workers polling one table
//! both pick up the same row unless they lock rows (`SELECT ... FOR UPDATE
//! SKIP LOCKED`) or use optimistic concurrency, and a worker that dies
//! after delivering but before marking the row done makes the next worker
//! deliver it again. Delivery is *at least once*; *exactly once
//! processing* needs an idempotent consumer.
//!
//! **The grain version** keeps the outbox in grain state. An [`Outbox`]
//! grain (a partition of the outbox, keyed by an integer) holds its pending
//! messages in a [`PersistentState`] on a shared SQLite file; a producer's
//! [`append`](OutboxRef::append) is acknowledged only after the write. A
//! durable reminder ([`actor_persistence::ReminderService`], in the same
//! file) is the worker: every [`DISPATCH_EVERY`] it wakes the outbox, which
//! delivers its pending messages in order to their [`Consumer`] grains and
//! then **marks them done by compare-and-set**: the state write carries
//! the ETag the outbox loaded, so a second copy of the outbox (a silo
//! declared dead that is still running, say) cannot overwrite it; the
//! loser's write fails, its activation is reset, and it reloads. The
//! consumer is **idempotent**: it records the id of every message it
//! processed in its own persisted state, in the same write as the effect
//! (a balance), and answers [`Delivery::Duplicate`] without effect to a
//! message it has seen.
//!
//! Several silos ([`Member`]s of one cluster: `actor-cluster` silos sharing
//! a membership table and the SQLite file) share the work without
//! coordinating: each grain lives on one silo (its owner by rendezvous
//! hashing) and each silo's reminder service fires only the reminders of
//! the grains it owns. When a silo dies, the survivors take over its
//! outboxes, whose reminders they now fire, and deliver what the dead silo
//! had not marked done; the consumers drop the repeats. (Repeats also come
//! from producers: an append whose answer was lost, say because the
//! outbox was moving to a survivor, is retried and may add a message that
//! was already delivered.) [`play`] runs it:
//! producers on every silo append messages, one silo is killed half way,
//! and every message is processed exactly once ([`Outcome::check`]).
//!
//! The in-process [`DeliveryStats`] only count what happened for the
//! printout; the checks read the consumers' stored state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actor_cluster::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};
use actor_core::prelude::*;
use actor_persistence::{
    PersistentState, ReminderService, ReminderTick, SiloBuilderRemindersExt, SiloBuilderStorageExt,
    SqlReminders, SqliteStorage, StateKey, StorageProvider,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The outbox's reminder name.
pub const REMINDER: &str = "dispatch";
/// How often an outbox is woken to deliver (its reminder's period).
pub const DISPATCH_EVERY: Duration = Duration::from_millis(200);
/// How often a silo's reminder service looks for due reminders.
pub const REMINDER_POLL: Duration = Duration::from_millis(50);
/// Most messages an outbox delivers per wake-up (bounds a turn).
pub const BATCH: usize = 5;
/// How long an outbox waits for a consumer before leaving the message for
/// its next wake-up.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The name of every grain's stored state.
pub const STATE_NAME: &str = "state";

/// A storage or reminder failure a grain passes on to its caller.
pub type StorageError = actor_persistence::Error;

// ---------------------------------------------------------------------------
// Messages and the outbox
// ---------------------------------------------------------------------------

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Unique id, chosen by the producer (the consumer deduplicates on it).
    pub id: String,
    /// The key of the [`Consumer`] it is for.
    pub consumer: i64,
    /// The payload: an amount the consumer adds to its balance.
    pub amount: i64,
}

/// An outbox partition's stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxState {
    /// Messages not yet marked done, oldest first.
    pub pending: Vec<OutboxMessage>,
    /// How many were marked done so far.
    pub done: u64,
}

/// A partition of the outbox (type name `outbox`, keyed by an integer).
pub struct Outbox {
    state: PersistentState<OutboxState>,
    /// Whether this activation made sure its reminder exists.
    armed: bool,
    stats: DeliveryStats,
}

impl Grain for Outbox {
    const TYPE_NAME: &'static str = "outbox";
}

#[grain_methods(also_handles(ReminderTick))]
impl Outbox {
    /// Appends `messages` durably (acknowledged only once stored) and
    /// answers how many are pending. A message whose id is already pending
    /// is not added twice (a producer retrying after a timeout).
    pub async fn append(
        &mut self,
        messages: Vec<OutboxMessage>,
        ctx: &GrainContext<Self>,
    ) -> Result<usize, StorageError> {
        if !self.armed {
            // The reminder first: stored messages must always have a
            // worker. It stays for the life of the outbox, like the
            // original's poller (cancelling it would race with appends
            // made by another copy of this grain).
            ReminderService::of(ctx.silo())?
                .register(ctx.id(), REMINDER, Duration::ZERO, DISPATCH_EVERY)
                .await?;
            self.armed = true;
        }
        let known: BTreeSet<String> = self.state.pending.iter().map(|m| m.id.clone()).collect();
        self.state
            .pending
            .extend(messages.into_iter().filter(|m| !known.contains(&m.id)));
        self.state.write_or_reset(ctx).await?;
        Ok(self.state.pending.len())
    }

    /// The outbox as this activation sees it.
    #[read_only]
    pub async fn outbox(&self) -> OutboxState {
        self.state.state().clone()
    }
}

impl Handler<ReminderTick> for Outbox {
    async fn handle(&mut self, _tick: ReminderTick, ctx: &GrainContext<Self>) {
        self.dispatch(ctx).await;
    }
}

impl Outbox {
    /// Delivers up to [`BATCH`] pending messages in order, stopping at the
    /// first that fails, then marks the delivered ones done with one
    /// compare-and-set write.
    async fn dispatch(&mut self, ctx: &GrainContext<Self>) {
        let silo = ctx.silo().name().to_owned();
        let mut delivered = 0;
        for message in self.state.pending.iter().take(BATCH) {
            let consumer = ctx
                .get_grain::<Consumer>(message.consumer)
                .with_timeout(DELIVERY_TIMEOUT);
            match consumer.process(message.clone()).await {
                Ok(Ok(_)) => delivered += 1,
                Ok(Err(e)) => {
                    self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(outbox = %ctx.id(), message = %message.id, error = %e, "consumer could not store; retrying later");
                    break;
                }
                Err(e) => {
                    self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(outbox = %ctx.id(), message = %message.id, error = %e, "delivery failed; retrying later");
                    break;
                }
            }
        }
        if delivered == 0 {
            return;
        }
        self.state.pending.drain(..delivered);
        self.state.done += delivered as u64;
        match self.state.write_or_reset(ctx).await {
            Ok(()) => {
                let partition = match ctx.key() {
                    GrainKey::Int(k) => *k,
                    _ => -1,
                };
                *self
                    .stats
                    .dispatched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((silo, partition))
                    .or_default() += delivered as u64;
            }
            Err(e) => {
                // Another copy of this outbox wrote first (or storage is
                // out): nothing is marked done here; this activation is
                // reset and whoever holds the current state delivers again.
                self.stats.mark_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(outbox = %ctx.id(), error = %e, "marking messages done failed; they will be delivered again");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The consumer
// ---------------------------------------------------------------------------

/// A consumer's stored state: the effect (a balance) and the ids of the
/// messages that produced it, written together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerState {
    /// Ids of the processed messages, in processing order.
    pub processed: Vec<String>,
    /// The sum of their amounts.
    pub balance: i64,
}

/// What a consumer did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Processed now.
    Processed,
    /// Seen before: ignored.
    Duplicate,
}

/// A consumer (type name `consumer`, keyed by an integer).
pub struct Consumer {
    state: PersistentState<ConsumerState>,
    stats: DeliveryStats,
}

impl Grain for Consumer {
    const TYPE_NAME: &'static str = "consumer";
}

#[grain_methods]
impl Consumer {
    /// Processes `message` unless it was processed before. The id and the
    /// effect are stored in one write; only then is the delivery
    /// acknowledged.
    pub async fn process(
        &mut self,
        message: OutboxMessage,
        ctx: &GrainContext<Self>,
    ) -> Result<Delivery, StorageError> {
        if self.state.processed.contains(&message.id) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Delivery::Duplicate);
        }
        self.state.processed.push(message.id);
        self.state.balance += message.amount;
        self.state.write_or_reset(ctx).await?;
        self.stats
            .add(&self.stats.processed_by, ctx.silo().name(), 1);
        Ok(Delivery::Processed)
    }

    /// The consumer as this activation sees it.
    #[read_only]
    pub async fn ledger(&self) -> ConsumerState {
        self.state.state().clone()
    }
}

// ---------------------------------------------------------------------------
// Counters for the printout
// ---------------------------------------------------------------------------

/// In-process counters shared by the silos of [`play`] (for the printout;
/// the checks read stored state). Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct DeliveryStats(Arc<StatsInner>);

/// The counters behind [`DeliveryStats`].
#[derive(Debug, Default)]
pub struct StatsInner {
    /// Messages processed, per silo where the consumer ran.
    pub processed_by: Mutex<BTreeMap<String, u64>>,
    /// Messages marked done, per silo where the outbox ran and outbox
    /// partition.
    pub dispatched: Mutex<BTreeMap<(String, i64), u64>>,
    /// Deliveries a consumer ignored as already processed.
    pub duplicates: AtomicU64,
    /// Deliveries that failed (consumer unreachable, or its write failed).
    pub failed_deliveries: AtomicU64,
    /// Outbox writes marking messages done that lost the compare-and-set.
    pub mark_conflicts: AtomicU64,
}

impl std::ops::Deref for DeliveryStats {
    type Target = StatsInner;
    fn deref(&self) -> &StatsInner {
        &self.0
    }
}

impl DeliveryStats {
    fn add(&self, map: &Mutex<BTreeMap<String, u64>>, silo: &str, n: u64) {
        *map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(silo.to_owned())
            .or_default() += n;
    }

    fn snapshot(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
        map.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

// ---------------------------------------------------------------------------
// Silos
// ---------------------------------------------------------------------------

/// The silo `name` with the outbox and consumer grains, grain state and
/// reminders in the SQLite file `db` (its own connections, as a separate
/// process would have). [`Member::start`] makes it a cluster member; start
/// it alone for a lone silo (then nothing fires reminders unless you start
/// the [`ReminderService`]).
pub async fn silo_builder(
    name: &str,
    db: &Path,
    stats: DeliveryStats,
) -> anyhow::Result<actor_core::SiloBuilder> {
    let storage: Arc<dyn StorageProvider> = Arc::new(SqliteStorage::open(db).await?);
    let reminders = Arc::new(SqlReminders::connect(&format!("sqlite://{}", db.display())).await?);
    let consumer_stats = stats.clone();
    Ok(Silo::builder()
        .name(name)
        .with_default_storage(storage)
        .with_reminders(reminders)
        .grain_with_async(move |ctx| {
            let stats = stats.clone();
            async move {
                Ok(Outbox {
                    state: PersistentState::load(&ctx, STATE_NAME).await?,
                    armed: false,
                    stats,
                })
            }
        })
        .grain_with_async(move |ctx| {
            let stats = consumer_stats.clone();
            async move {
                Ok(Consumer {
                    state: PersistentState::load(&ctx, STATE_NAME).await?,
                    stats,
                })
            }
        }))
}

/// A silo of the cluster with its reminder service delivering the
/// reminders of the grains it owns.
pub struct Member {
    name: String,
    cluster: Arc<ClusterSilo>,
    reminders: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("endpoint", &self.cluster.address().endpoint)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Starts silo `name` in the cluster of `membership`, with grain state
    /// and reminders in the SQLite file `db` (its own connections, as a
    /// separate process would have).
    pub async fn start(
        name: &str,
        db: &Path,
        membership: Arc<dyn MembershipTable>,
        config: ClusterConfig,
        stats: DeliveryStats,
    ) -> anyhow::Result<Member> {
        let builder = silo_builder(name, db, stats).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let cluster = Arc::new(ClusterSilo::start(builder, listener, membership, config).await?);
        // Fire the reminders of the grains this silo owns, by the view it
        // has now; a weak reference so that `leave` can take the silo back.
        let me = Arc::downgrade(&cluster);
        let owns: actor_persistence::Ownership = Arc::new(move |id: &GrainId| {
            me.upgrade()
                .is_some_and(|m| m.owner_of(id) == m.address().endpoint)
        });
        let reminders = ReminderService::of(cluster.silo())?.clone().start(
            cluster.silo().clone(),
            owns,
            REMINDER_POLL,
        );
        Ok(Member {
            name: name.to_owned(),
            cluster,
            reminders,
        })
    }

    /// The silo's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The silo, for grain references.
    pub fn silo(&self) -> &Silo {
        self.cluster.silo()
    }

    /// The cluster membership side (address, view, owner of a grain).
    pub fn cluster(&self) -> &ClusterSilo {
        &self.cluster
    }

    /// Whether this silo owns `id` in its current view.
    pub fn owns(&self, id: &GrainId) -> bool {
        self.cluster.owner_of(id) == self.cluster.address().endpoint
    }

    /// Crashes the silo: it stops answering, stops its membership work and
    /// stops firing reminders. (Its activations linger in this process,
    /// like a stalled process would; the compare-and-set writes keep them
    /// from doing harm.)
    pub fn kill(&self) {
        self.cluster.kill();
        self.reminders.abort();
    }

    /// Leaves the cluster gracefully (or, after [`kill`](Self::kill),
    /// shuts what is left of the silo down).
    pub async fn stop(self) {
        self.reminders.abort();
        let _ = self.reminders.await;
        match Arc::try_unwrap(self.cluster) {
            Ok(cluster) if cluster.is_serving() => {
                if let Err(e) = cluster.leave().await {
                    tracing::warn!(silo = %self.name, error = %e, "leaving the cluster failed");
                }
            }
            Ok(cluster) => cluster.silo().shutdown().await,
            Err(cluster) => cluster.silo().shutdown().await,
        }
    }
}

/// The silos of one in-process cluster over one SQLite file.
pub struct Cluster {
    /// The silos, in start order (killed ones included).
    pub members: Vec<Member>,
    storage: Arc<dyn StorageProvider>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts one silo per name over a shared in-memory membership table
    /// and the SQLite file `db`, and waits (at most 20 s) until every silo
    /// sees all of them.
    pub async fn start(
        names: &[&str],
        db: &Path,
        config: ClusterConfig,
        stats: DeliveryStats,
    ) -> anyhow::Result<Cluster> {
        let storage: Arc<dyn StorageProvider> = Arc::new(SqliteStorage::open(db).await?);
        let membership: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
        let mut members = Vec::new();
        for name in names {
            members.push(
                Member::start(name, db, membership.clone(), config.clone(), stats.clone()).await?,
            );
        }
        let cluster = Cluster { members, storage };
        cluster
            .eventually("every silo sees all", Duration::from_secs(20), || {
                let all = cluster
                    .members
                    .iter()
                    .all(|m| m.cluster.active_members().len() == names.len());
                async move { Ok(all) }
            })
            .await?;
        Ok(cluster)
    }

    /// For each silo, the first `per_member` outbox keys it owns: outbox
    /// partitions spread over every silo.
    pub fn outbox_keys(&self, per_member: usize) -> Vec<i64> {
        let mut keys = Vec::new();
        for m in &self.members {
            keys.extend(
                (0..10_000i64)
                    .filter(|k| m.owns(&GrainId::new(Outbox::TYPE_NAME, *k)))
                    .take(per_member),
            );
        }
        keys
    }

    /// The consumers' state as stored (read from the database, activating
    /// nothing).
    pub async fn stored_consumers(
        &self,
        keys: impl IntoIterator<Item = i64>,
    ) -> anyhow::Result<BTreeMap<i64, ConsumerState>> {
        let mut all = BTreeMap::new();
        for k in keys {
            all.insert(k, self.stored(Consumer::TYPE_NAME, k).await?);
        }
        Ok(all)
    }

    /// How many messages the consumers `keys` have processed, as stored.
    pub async fn processed(&self, keys: impl IntoIterator<Item = i64>) -> anyhow::Result<usize> {
        let stored = self.stored_consumers(keys).await?;
        Ok(stored.values().map(|s| s.processed.len()).sum())
    }

    /// The outboxes' state as stored.
    pub async fn stored_outboxes(
        &self,
        keys: impl IntoIterator<Item = i64>,
    ) -> anyhow::Result<BTreeMap<i64, OutboxState>> {
        let mut all = BTreeMap::new();
        for k in keys {
            all.insert(k, self.stored(Outbox::TYPE_NAME, k).await?);
        }
        Ok(all)
    }

    async fn stored<T: serde::de::DeserializeOwned + Default>(
        &self,
        grain_type: &'static str,
        key: i64,
    ) -> anyhow::Result<T> {
        let key = StateKey::new(&GrainId::new(grain_type, key), STATE_NAME);
        Ok(match self.storage.read(&key).await? {
            Some(stored) => serde_json::from_slice(&stored.data)?,
            None => T::default(),
        })
    }

    /// Polls `check` every 50 ms until it holds, at most `within`.
    pub async fn eventually<F, Fut>(
        &self,
        what: &str,
        within: Duration,
        mut check: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let until = Instant::now() + within;
        loop {
            if check().await? {
                return Ok(());
            }
            if Instant::now() >= until {
                anyhow::bail!("timed out after {within:?} waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every silo (graceful leave for the live ones).
    pub async fn stop(self) {
        for m in self.members.into_iter().rev() {
            m.stop().await;
        }
    }
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

/// What [`play`] does.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Silo names.
    pub silos: Vec<String>,
    /// Messages in all.
    pub messages: usize,
    /// Consumers (keys `0..consumers`).
    pub consumers: i64,
    /// Outbox partitions per silo.
    pub partitions_per_silo: usize,
    /// Kill a silo (the owner of the first outbox) half way.
    pub kill_one: bool,
    /// Cluster timings.
    pub config: ClusterConfig,
}

impl Default for Scenario {
    /// Three silos, 60 messages, 4 consumers, one outbox per silo, one
    /// silo killed half way, the fast cluster timings (a dead silo is
    /// replaced within a few seconds).
    fn default() -> Self {
        Scenario {
            silos: vec!["silo-a".into(), "silo-b".into(), "silo-c".into()],
            messages: 60,
            consumers: 4,
            partitions_per_silo: 1,
            kill_one: true,
            config: ClusterConfig::fast(),
        }
    }
}

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The ids of every message appended.
    pub sent: BTreeSet<String>,
    /// The sum of their amounts.
    pub sent_total: i64,
    /// How many times each id is recorded as processed, over every
    /// consumer's stored state.
    pub processed: BTreeMap<String, usize>,
    /// The sum of the consumers' stored balances.
    pub balance_total: i64,
    /// Messages still pending in the stored outboxes at the end.
    pub left_pending: usize,
    /// The silo killed half way, if any.
    pub killed: Option<String>,
    /// Messages processed per silo (where the consumer ran).
    pub processed_by: BTreeMap<String, u64>,
    /// Messages marked done per silo (where the outbox ran).
    pub dispatched_by: BTreeMap<String, u64>,
    /// The outbox partition the killed silo owned, if a silo was killed.
    pub killed_outbox: Option<i64>,
    /// Messages of that partition marked done, per silo: the killed silo
    /// (before it died, or by its lingering activation) and the survivors
    /// that took the partition over.
    pub killed_outbox_done_by: BTreeMap<String, u64>,
    /// Deliveries the consumers ignored as repeats.
    pub duplicates: u64,
    /// Outbox "mark done" writes that lost the compare-and-set.
    pub mark_conflicts: u64,
}

impl Outcome {
    /// Every message processed exactly once, nothing else processed, the
    /// effects added up once each, the outboxes empty.
    pub fn check(&self) -> Result<(), String> {
        let twice: Vec<_> = self.processed.iter().filter(|(_, n)| **n > 1).collect();
        if !twice.is_empty() {
            return Err(format!("processed more than once: {twice:?}"));
        }
        let seen: BTreeSet<String> = self.processed.keys().cloned().collect();
        let lost: Vec<_> = self.sent.difference(&seen).collect();
        if !lost.is_empty() {
            return Err(format!("never processed: {lost:?}"));
        }
        let unknown: Vec<_> = seen.difference(&self.sent).collect();
        if !unknown.is_empty() {
            return Err(format!("processed but never sent: {unknown:?}"));
        }
        if self.balance_total != self.sent_total {
            return Err(format!(
                "the consumers' balances add up to {}, the messages to {}",
                self.balance_total, self.sent_total
            ));
        }
        if self.left_pending != 0 {
            return Err(format!(
                "{} messages still pending in the outboxes",
                self.left_pending
            ));
        }
        Ok(())
    }
}

/// Plays `scenario` on the SQLite file `db` (use a fresh one); `say`
/// receives a line per event. Bounded: every wait has a deadline.
pub async fn play(
    db: &Path,
    scenario: &Scenario,
    mut say: impl FnMut(String),
) -> anyhow::Result<Outcome> {
    let stats = DeliveryStats::default();
    let names: Vec<&str> = scenario.silos.iter().map(String::as_str).collect();
    let cluster = Cluster::start(&names, db, scenario.config.clone(), stats.clone()).await?;
    let partitions = cluster.outbox_keys(scenario.partitions_per_silo);
    say(format!(
        "{} silos up ({}), sharing {}; outbox partitions {partitions:?}, {} per silo by placement",
        names.len(),
        names.join(", "),
        db.display(),
        scenario.partitions_per_silo
    ));

    let messages: Vec<(i64, OutboxMessage)> = (0..scenario.messages)
        .map(|i| {
            let message = OutboxMessage {
                id: format!("m-{i:04}"),
                consumer: i as i64 % scenario.consumers,
                amount: i as i64 + 1,
            };
            (partitions[i % partitions.len()], message)
        })
        .collect();
    let sent: BTreeSet<String> = messages.iter().map(|(_, m)| m.id.clone()).collect();
    let sent_total = messages.iter().map(|(_, m)| m.amount).sum();
    let consumers = 0..scenario.consumers;
    // Producers: one per live silo, each appending its share in small
    // batches, through its own silo, to whichever partition a message
    // belongs to (often on another silo).
    let half = messages.len() / 2;
    produce_all(&cluster, &messages[..half], &[]).await?;
    say(format!(
        "producers appended {half} messages through every silo"
    ));

    let mut killed = None;
    if scenario.kill_one {
        let want = half / 3;
        cluster
            .eventually("some messages processed", Duration::from_secs(20), || {
                let f = cluster.processed(consumers.clone());
                async move { Ok(f.await? >= want) }
            })
            .await?;
        let owner = cluster
            .members
            .iter()
            .position(|m| m.owns(&GrainId::new(Outbox::TYPE_NAME, partitions[0])))
            .unwrap_or(0);
        let victim = &cluster.members[owner];
        victim.kill();
        let done = cluster.processed(consumers.clone()).await?;
        say(format!(
            "killed {} (owner of outbox {}) with {done} of {} processed",
            victim.name(),
            partitions[0],
            messages.len()
        ));
        killed = Some(owner);
    }

    produce_all(&cluster, &messages[half..], killed.as_slice()).await?;
    say(format!(
        "producers appended the other {} messages through the {} live silos",
        messages.len() - half,
        names.len() - killed.iter().count()
    ));

    let total = messages.len();
    cluster
        .eventually(
            "every message is processed",
            Duration::from_secs(40),
            || {
                let f = cluster.processed(consumers.clone());
                async move { Ok(f.await? >= total) }
            },
        )
        .await?;
    cluster
        .eventually("every outbox is empty", Duration::from_secs(20), || {
            let outboxes = cluster.stored_outboxes(partitions.clone());
            async move { Ok(outboxes.await?.values().all(|o| o.pending.is_empty())) }
        })
        .await?;

    let stored = cluster.stored_consumers(consumers.clone()).await?;
    let mut processed: BTreeMap<String, usize> = BTreeMap::new();
    for state in stored.values() {
        for id in &state.processed {
            *processed.entry(id.clone()).or_default() += 1;
        }
    }
    let balance_total = stored.values().map(|s| s.balance).sum();
    let left_pending = cluster
        .stored_outboxes(partitions.clone())
        .await?
        .values()
        .map(|o| o.pending.len())
        .sum();
    for (k, s) in &stored {
        say(format!(
            "consumer {k}: {} messages processed, balance {}",
            s.processed.len(),
            s.balance
        ));
    }
    let dispatched = stats
        .dispatched
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut dispatched_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut killed_outbox_done_by: BTreeMap<String, u64> = BTreeMap::new();
    for ((silo, partition), n) in dispatched {
        *dispatched_by.entry(silo.clone()).or_default() += n;
        if killed.is_some() && partition == partitions[0] {
            *killed_outbox_done_by.entry(silo).or_default() += n;
        }
    }
    let outcome = Outcome {
        sent,
        sent_total,
        processed,
        balance_total,
        left_pending,
        killed: killed.map(|i| cluster.members[i].name().to_owned()),
        processed_by: DeliveryStats::snapshot(&stats.processed_by),
        dispatched_by,
        killed_outbox: killed.map(|_| partitions[0]),
        killed_outbox_done_by,
        duplicates: stats.duplicates.load(Ordering::Relaxed),
        mark_conflicts: stats.mark_conflicts.load(Ordering::Relaxed),
    };
    say(format!(
        "outboxes marked done per silo: {:?}; consumers processed per silo: {:?}",
        outcome.dispatched_by, outcome.processed_by
    ));
    if let Some(partition) = outcome.killed_outbox {
        say(format!(
            "the killed silo's outbox {partition} was marked done by: {:?}",
            outcome.killed_outbox_done_by
        ));
    }
    say(format!(
        "repeated deliveries ignored by the consumers: {}; lost compare-and-sets on an outbox: {}; failed deliveries retried: {}",
        outcome.duplicates,
        outcome.mark_conflicts,
        stats.failed_deliveries.load(Ordering::Relaxed)
    ));
    cluster.stop().await;
    Ok(outcome)
}

/// Appends `messages` (partition, message) with one producer task per live
/// silo (`dead`: indexes of killed silos), in batches of 5.
async fn produce_all(
    cluster: &Cluster,
    messages: &[(i64, OutboxMessage)],
    dead: &[usize],
) -> anyhow::Result<()> {
    let live: Vec<Silo> = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| !dead.contains(i))
        .map(|(_, m)| m.silo().clone())
        .collect();
    let mut producers = tokio::task::JoinSet::new();
    for (p, via) in live.iter().enumerate() {
        // This producer's messages grouped by partition.
        let mut mine: BTreeMap<i64, Vec<OutboxMessage>> = BTreeMap::new();
        for (_, (partition, message)) in messages
            .iter()
            .enumerate()
            .filter(|(i, _)| i % live.len() == p)
        {
            mine.entry(*partition).or_default().push(message.clone());
        }
        let via = via.clone();
        producers.spawn(async move {
            for (partition, all) in mine {
                for chunk in all.chunks(5) {
                    produce(&via, partition, chunk.to_vec()).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = producers.join_next().await {
        result??;
    }
    Ok(())
}

/// Appends `messages` to outbox `partition` through silo `via`, retrying
/// (for at most 30 s) while the outbox's silo is unreachable or being
/// replaced. A retry after an answer that was lost may append a message
/// again; the consumer drops the repeat.
pub async fn produce(
    via: &Silo,
    partition: i64,
    messages: Vec<OutboxMessage>,
) -> anyhow::Result<()> {
    let outbox = via
        .get_grain::<Outbox>(partition)
        .with_timeout(Duration::from_secs(2));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let error = match outbox.append(messages.clone()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            anyhow::bail!("outbox {partition} did not take the messages: {error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
