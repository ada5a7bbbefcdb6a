//! Pulling agents: how the items of a persistent provider's partitions
//! reach consumers.
//!
//! Each partition is pulled by one grain, the partition's agent
//! (`streams.agent`, keyed by provider and partition), placed by the
//! cluster's placement over the live silos. A keeper task on every silo
//! sends the agents that silo owns (the cluster's view says so, or the
//! [`Ownership`] set on the silo's streams) a one-way keep-alive twice a
//! second; only owners call agents.
//!
//! No partition is pulled by two silos at once, by construction:
//! - a partition's reader lives only in its agent's activation: opened in
//!   a turn while the silo owns the partition, checked again before every
//!   round of pulls, and closed when the silo no longer owns it or the
//!   activation ends (`on_deactivate`);
//! - the agent, being a grain, has one activation in the cluster (the
//!   directory's fenced single activation): a silo activates a grain only
//!   while its fence is open (every member has applied its view, so the
//!   silo that runs the agent has claimed it at its new directory owner;
//!   dead silos' leases have run out; its own lease holds), a joining
//!   silo included, from before its start hooks (this keeper) run;
//! - so when a silo joins, the old silo keeps the agent registered, sees
//!   in its new view that it no longer owns the partition, closes it and
//!   deactivates. The directory lets the agent go only once that
//!   activation has ended (two of the old silo's sweeps; keep-alives that
//!   reach the agent there meanwhile find it not the owner, and it leaves
//!   without opening), and only then does the owner's keep-alive activate
//!   it at the owner, which opens the partition: after the old silo
//!   closed it. When the silo holding an agent dies, the new activation
//!   waits for the dead silo's lease to run out (its turns stop there).
//!
//! An agent logs `partition opened` and `partition closed` (target
//! [`PULL_EVENTS`], fields `silo`, `provider`, `partition`) when its silo
//! starts and stops pulling a partition.
//!
//! An agent's turn reads at most `prefetch` items from its partition,
//! delivers them in order (each awaiting its consumers' turns), and acks
//! each only after its delivery ended; the broker holds the rest. A silo
//! that stops leaves its unacked items to the broker, which delivers them
//! again to the partition's next agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use actor_core::{GrainKey, Silo};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::dispatch::{self, Outcome};
use crate::error::{Error, Result};
use crate::id::{SequenceToken, StreamId};
use crate::item::RawItem;
use crate::metrics::PartitionStats;
use crate::provider::{BoxFuture, StreamProvider};
use crate::streams::Streams;
use crate::subscription::Subscription;

/// Decides whether this silo should host a grain (in a cluster: whether it
/// owns the grain's id now, e.g. `ClusterSilo::owner_of(id) == endpoint`).
pub type Ownership = Arc<dyn Fn(&GrainId) -> bool + Send + Sync>;

/// The `tracing` target of the `partition opened` and `partition closed`
/// events (debug level).
pub const PULL_EVENTS: &str = "actor_streams::pull";

/// How often each silo's keeper reminds every agent to pull.
const KEEP_EVERY: Duration = Duration::from_millis(500);
/// How long a subscription list read from the store is used.
const SUBSCRIPTIONS_TTL: Duration = Duration::from_secs(1);

/// The partitions of a persistent provider.
pub trait PartitionSource: Send + Sync + 'static {
    /// How many partitions there are.
    fn count(&self) -> u32;
    /// How many items an agent takes from the broker at once (the bound of
    /// items in flight per partition).
    fn prefetch(&self) -> usize;
    /// Starts pulling `partition`.
    fn open(&self, partition: u32) -> BoxFuture<'_, Result<Box<dyn PartitionReader>>>;
    /// The items of `stream` kept from `offset` on, oldest first, for a
    /// subscription that starts from a token. Only for providers that
    /// rewind.
    fn replay<'a>(
        &'a self,
        stream: &'a StreamId,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<RawItem>>> {
        let _ = (stream, offset);
        Box::pin(async move {
            Err(Error::RewindUnsupported {
                provider: "this provider".into(),
                token: offset.to_string(),
            })
        })
    }
}

/// An item received from a partition.
#[derive(Debug)]
pub struct Received {
    /// The broker's tag, to ack it.
    pub tag: u64,
    /// Whether the broker delivered it before (an earlier agent did not
    /// ack it).
    pub redelivered: bool,
    /// The item, or why its bytes are not an item (a foreign producer, a
    /// changed format): such a message goes to the dead-letter queue.
    pub item: std::result::Result<RawItem, String>,
    /// The message as received.
    pub body: Vec<u8>,
}

/// A partition being pulled. Dropping it gives its unacked items back to
/// the broker.
pub trait PartitionReader: Send + Sync + 'static {
    /// Waits up to `wait` for items, at most `max`.
    fn next(&mut self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Received>>>;
    /// Acknowledges an item: the broker forgets it.
    fn ack(&mut self, tag: u64) -> BoxFuture<'_, Result<()>>;
    /// Sends a message that is not an item to the dead-letter queue with
    /// its error, then acks it.
    fn dead_letter<'a>(
        &'a mut self,
        received: &'a Received,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Items the broker holds for the partition beyond those received, if
    /// it says.
    fn lag(&self) -> Option<u64> {
        None
    }
}

/// The agent grain of one partition (registered by `with_streams`; not for
/// direct use).
#[derive(Default)]
pub(crate) struct PartitionAgent {
    reader: Option<Box<dyn PartitionReader>>,
    pulling: bool,
    retry_at: Option<Instant>,
    subscriptions: HashMap<StreamId, (Instant, u64, Arc<Vec<Subscription>>)>,
    acked: u64,
}

impl Grain for PartitionAgent {
    const TYPE_NAME: &'static str = "streams.agent";

    async fn on_deactivate(&mut self, ctx: &GrainContext<Self>, _: actor_core::DeactivationReason) {
        // Its partition is no longer pulled here.
        if let Some((name, partition)) = parse_key(ctx.key()) {
            self.close(ctx.silo(), &name, partition, "deactivated");
            if let Ok(streams) = Streams::of(ctx.silo()) {
                streams
                    .metrics_registry()
                    .partitions
                    .remove(&(name, partition));
            }
        }
        self.reader = None;
    }
}

/// The key of the agent of `partition` of provider `name`.
pub(crate) fn agent_key(name: &str, partition: u32) -> GrainKey {
    GrainKey::from(format!("{name}|{partition}"))
}

fn parse_key(key: &GrainKey) -> Option<(String, u32)> {
    let (name, p) = key.as_str()?.rsplit_once('|')?;
    Some((name.to_owned(), p.parse().ok()?))
}

/// Keep pulling.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeepPulling;

impl Message for KeepPulling {
    type Reply = ();
    const NAME: &'static str = "streams.keep_pulling";
}

/// One pull (a timer tick).
#[derive(Serialize, Deserialize)]
pub(crate) struct Pull;

impl Message for Pull {
    type Reply = ();
    const NAME: &'static str = "streams.pull";
}

/// Reload the subscriptions of a stream.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReloadStream(pub(crate) StreamId);

impl Message for ReloadStream {
    type Reply = ();
    const NAME: &'static str = "streams.reload_stream";
}

impl GrainMethods for PartitionAgent {
    fn register(m: &mut Methods<Self>) {
        m.add::<KeepPulling, _>()
            .add::<Pull, _>()
            .add::<ReloadStream, _>();
    }
}

impl Handler<KeepPulling> for PartitionAgent {
    async fn handle(&mut self, _: KeepPulling, ctx: &GrainContext<Self>) {
        ctx.delay_deactivation(KEEP_EVERY * 8);
        if !self.pulling {
            self.pulling = true;
            ctx.register_timer(Duration::ZERO, Duration::from_millis(1), || Pull);
        }
    }
}

impl Handler<ReloadStream> for PartitionAgent {
    async fn handle(&mut self, ReloadStream(stream): ReloadStream, _: &GrainContext<Self>) {
        self.subscriptions.remove(&stream);
    }
}

impl Handler<Pull> for PartitionAgent {
    async fn handle(&mut self, _: Pull, ctx: &GrainContext<Self>) {
        let silo = ctx.silo().clone();
        let Ok(streams) = Streams::of(&silo) else {
            return;
        };
        let Some((name, partition)) = parse_key(ctx.key()) else {
            return;
        };
        if silo.is_stopping() || !streams.owns(&silo, ctx.id()) {
            // Another silo owns this partition now (or this one stops):
            // give the unacked items back and let the next keep-alive
            // activate the agent at its owner.
            tracing::trace!(target: PULL_EVENTS, silo = silo.name(), provider = %name, partition, "not the owner here; leaving");
            self.close(&silo, &name, partition, "not the owner");
            streams
                .metrics_registry()
                .partitions
                .remove(&(name, partition));
            ctx.deactivate_on_idle();
            return;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Ok(provider) = streams.find(&name) else {
            return;
        };
        let Some(source) = provider.partitions() else {
            return;
        };
        if self.reader.is_none() {
            match source.open(partition).await {
                Ok(r) => {
                    self.reader = Some(r);
                    self.retry_at = None;
                    tracing::debug!(target: PULL_EVENTS, silo = silo.name(), provider = %name, partition, "partition opened");
                }
                Err(e) => {
                    tracing::warn!(provider = %name, partition, error = %e, "cannot open the partition; retrying in 1 s");
                    self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    return;
                }
            }
        }
        let prefetch = source.prefetch().max(1);
        let key = (name.clone(), partition);
        // Several batches per turn while items keep coming (the timer's
        // pause is then paid once per turn, not once per batch).
        for round in 0..8 {
            // Each round pulls only while this silo owns the partition: an
            // agent whose silo applied a view that gives it away stops
            // here, and the next turn closes the partition.
            if round > 0 && (silo.is_stopping() || !streams.owns(&silo, ctx.id())) {
                break;
            }
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let wait = if round == 0 {
                Duration::from_millis(200)
            } else {
                Duration::from_millis(5)
            };
            let batch = match reader.next(prefetch, wait).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(provider = %name, partition, error = %e, "partition read failed; reopening in 1 s");
                    self.close(&silo, &name, partition, "read failed");
                    self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            streams
                .metrics_registry()
                .partitions
                .entry(key.clone())
                .or_insert_with(|| PartitionStats {
                    provider: name.clone(),
                    partition,
                    ..Default::default()
                })
                .in_flight = batch.len() as u64;
            if self.process(&silo, streams, &name, partition, batch).await {
                // The channel's remaining unacked items go back to the
                // broker.
                self.close(&silo, &name, partition, "delivery left items unacked");
            }
        }
        if let Some(reader) = self.reader.as_ref() {
            let lag = reader.lag();
            let mut s = streams
                .metrics_registry()
                .partitions
                .entry(key)
                .or_insert_with(|| PartitionStats {
                    provider: name.clone(),
                    partition,
                    ..Default::default()
                });
            s.in_flight = 0;
            s.acked = self.acked;
            s.lag = lag;
        }
        ctx.delay_deactivation(KEEP_EVERY * 8);
    }
}

impl PartitionAgent {
    /// Drops the reader, if any (its unacked items go back to the broker),
    /// and says so.
    fn close(&mut self, silo: &Silo, provider: &str, partition: u32, why: &'static str) {
        if self.reader.take().is_some() {
            tracing::debug!(target: PULL_EVENTS, silo = silo.name(), provider, partition, why, "partition closed");
        }
    }

    /// Delivers a batch in order, acking each item after its delivery:
    /// runs of items of one stream go to each consumer one item after the
    /// other (`deliver_in_order`), the consumers side by side. Answers
    /// whether the reader must be dropped (an item is left unacked).
    async fn process(
        &mut self,
        silo: &Silo,
        streams: &Streams,
        name: &str,
        partition: u32,
        batch: Vec<Received>,
    ) -> bool {
        let mut i = 0;
        while i < batch.len() {
            let reader = self.reader.as_mut().expect("open while items are held");
            let first = match &batch[i].item {
                Ok(item) => item,
                Err(e) => {
                    tracing::warn!(provider = %name, partition, error = %e, "message is not a stream item; dead-lettered");
                    if let Err(e) = reader.dead_letter(&batch[i], e).await {
                        tracing::warn!(error = %e, "cannot dead-letter a message; it stays on the broker");
                        return true;
                    }
                    i += 1;
                    continue;
                }
            };
            let redelivered = batch[i].redelivered;
            let mut j = i + 1;
            while j < batch.len()
                && batch[j].redelivered == redelivered
                && batch[j]
                    .item
                    .as_ref()
                    .is_ok_and(|it| it.stream == first.stream)
            {
                j += 1;
            }
            let items: Vec<RawItem> = batch[i..j]
                .iter()
                .filter_map(|r| r.item.as_ref().ok().cloned())
                .collect();
            let subs = self.subscriptions_of(streams, name, &first.stream).await;
            let attempt = if redelivered { 2 } else { 1 };
            // A silo that stops (or is killed) mid-delivery gives the
            // items back at once rather than when the consumers' turns end.
            let delivered = tokio::select! {
                o = dispatch::deliver_in_order(silo, streams, name, &items, &subs, attempt) => o,
                () = stopping(silo) => Outcome::Unacked,
            };
            if delivered == Outcome::Unacked {
                return true;
            }
            let reader = self.reader.as_mut().expect("open while items are held");
            for received in &batch[i..j] {
                if let Err(e) = reader.ack(received.tag).await {
                    tracing::warn!(error = %e, "ack failed; the broker will deliver the item again");
                    return true;
                }
                self.acked += 1;
            }
            i = j;
        }
        false
    }

    async fn subscriptions_of(
        &mut self,
        streams: &Streams,
        provider: &str,
        stream: &StreamId,
    ) -> Arc<Vec<Subscription>> {
        let version = streams.subscriptions_version();
        if let Some((at, v, subs)) = self.subscriptions.get(stream)
            && at.elapsed() < SUBSCRIPTIONS_TTL
            && *v == version
        {
            return subs.clone();
        }
        let subs = match streams.store().of_stream(provider, stream).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(%stream, error = %e, "cannot load subscriptions; using the last known");
                return self
                    .subscriptions
                    .get(stream)
                    .map(|(_, _, s)| s.clone())
                    .unwrap_or_default();
            }
        };
        self.subscriptions
            .insert(stream.clone(), (Instant::now(), version, subs.clone()));
        subs
    }
}

/// Resolves once `silo` is stopping.
async fn stopping(silo: &Silo) {
    while !silo.is_stopping() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the keeper of provider `name`'s `count` agents on `silo`: it
/// keeps alive the agents this silo owns. Only the owner calls an agent,
/// so that an agent left on a silo that no longer owns it is called only
/// by keep-alives it leaves at once (without opening its partition): the
/// directory then lets it go there (a grain kept active stays where it is
/// registered), and the owner's next keep-alive activates it at the owner.
pub(crate) fn start_keeper(silo: Silo, name: String, count: u32) {
    tokio::spawn(async move {
        loop {
            if silo.is_stopping() {
                return;
            }
            let Ok(streams) = Streams::of(&silo) else {
                return;
            };
            for p in 0..count {
                let key = agent_key(&name, p);
                if !streams.owns(&silo, &GrainId::new(PartitionAgent::TYPE_NAME, key.clone())) {
                    continue;
                }
                let agent = silo.get_grain::<PartitionAgent>(key);
                if agent.tell(KeepPulling).is_err() && silo.is_stopping() {
                    return;
                }
            }
            tokio::time::sleep(KEEP_EVERY).await;
        }
    });
}

/// Tells the agent of `stream`'s partition to reload its subscriptions.
#[cfg_attr(
    not(any(feature = "rabbitmq", feature = "jetstream")),
    allow(dead_code)
)]
pub(crate) fn reload(silo: &Silo, name: &str, count: u32, stream: &StreamId) {
    let agent = silo.get_grain::<PartitionAgent>(agent_key(name, stream.partition(count)));
    let _ = agent.tell(ReloadStream(stream.clone()));
}

/// Delivers the kept items of `sub`'s stream from `token` on to `sub`
/// alone (a subscription that starts from a token).
pub(crate) async fn replay(
    silo: &Silo,
    name: &str,
    provider: &dyn StreamProvider,
    sub: &Subscription,
    token: SequenceToken,
) -> Result<()> {
    let streams = Streams::of(silo)?;
    let (Some(source), Some(offset)) = (provider.partitions(), token.offset) else {
        return Err(Error::RewindUnsupported {
            provider: name.to_owned(),
            token: token.to_string(),
        });
    };
    let items = source.replay(&sub.stream, offset).await?;
    let only = std::slice::from_ref(sub);
    for item in &items {
        // Only this subscription: the implicit consumers and the other
        // subscriptions had these items already.
        dispatch::deliver_to(silo, streams, name, item, only).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An agent's key names its provider and partition, whatever the
        /// provider's name holds (even `|`).
        #[test]
        fn agent_keys_round_trip(name in "[a-z|._-]{1,12}", partition in any::<u32>()) {
            prop_assert_eq!(parse_key(&agent_key(&name, partition)), Some((name, partition)));
        }

        /// Every stream lands on exactly one agent: the agent of its
        /// partition, the same one for every silo that computes it.
        #[test]
        fn each_stream_has_one_agent(key in any::<i64>(), ns in "[a-z]{1,8}", parts in 1u32..32) {
            let s = StreamId::new(ns, key);
            let agent = agent_key("p", s.partition(parts));
            let agents: Vec<_> = (0..parts).map(|p| agent_key("p", p)).collect();
            prop_assert_eq!(agents.iter().filter(|a| **a == agent).count(), 1);
        }
    }
}
