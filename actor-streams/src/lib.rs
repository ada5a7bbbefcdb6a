//! # actor-streams: streams for grains
//!
//! A stream is named by `(namespace, key)` ([`StreamId`]); producers
//! publish items of a serde type on it through a named provider, and
//! consumer grains receive them as [`Delivery<T>`] messages, one turn per
//! item, in order. Consumers subscribe two ways:
//!
//! - **implicitly**: a grain type declared for a namespace
//!   ([`StreamsBuilder::implicit`]) is activated with the stream's key by
//!   the first item and receives every item of that namespace's streams,
//!   wherever placement puts it in the cluster (Orleans'
//!   `[ImplicitStreamSubscription]`);
//! - **explicitly**: a grain subscribes to one stream
//!   ([`ProviderHandle::subscribe`]) and gets a [`SubscriptionHandle`]. The
//!   subscription is one row in a [`SubscriptionStore`] (memory, SQLite,
//!   PostgreSQL), identified by (provider, stream, consumer): subscribing
//!   again returns the same handle, so a reactivated grain resumes its
//!   subscription instead of adding a duplicate.
//!
//! Providers:
//!
//! | provider | where items wait | delivery |
//! |---|---|---|
//! | [`MemoryStreams`] | the stream grain's mailbox, in the cluster | best effort, ordered per stream |
//! | [`RabbitStreams`] | durable RabbitMQ queues, one per partition | at least once, ordered per stream, acked after the consumer's turn |
//! | [`NatsStreams`] | a NATS JetStream stream, a durable pull consumer per partition | at least once, ordered per stream, acked after the turn, redelivered after `ack_wait`, rewind from a token |
//!
//! A persistent provider's partitions are pulled by agents, one grain per
//! partition, so the cluster's placement spreads them over the live silos
//! and its single activation keeps a partition from being pulled by two
//! silos at once (save for a moment while a silo joins: see
//! `docs/streams.md`); when a silo dies or joins, its partitions' agents
//! move to their owners (see [`PartitionSource`],
//! [`Streams::set_ownership`]).
//!
//! Producers are grains, code holding a silo ([`ProviderHandle::producer`])
//! or an external [`ClusterClient`](actor_cluster::ClusterClient)
//! ([`ClusterClientStreamsExt::stream_producer`], which publishes through
//! a silo of the cluster).
//!
//! Every item carries a [`SequenceToken`] written by its producer; a
//! consumer drops redeliveries with [`Dedup`]. A consumer whose turn keeps
//! failing has the item dead-lettered with its error (kept in the
//! subscription store, [`Streams::dead_letters`]), never silently skipped.
//! `docs/streams.md` in the repository says what each provider
//! guarantees.
//!
//! ## A tour
//!
//! ```
//! use actor_core::prelude::*;
//! use actor_streams::{Ack, Delivery, MemoryStreams, SiloBuilderStreamsExt, StreamId, Streams};
//!
//! // A consumer: it handles `Delivery<i64>` and lists it.
//! #[derive(Default)]
//! struct Sum { total: i64 }
//! impl Grain for Sum { const TYPE_NAME: &'static str = "sum"; }
//!
//! impl Handler<Delivery<i64>> for Sum {
//!     async fn handle(&mut self, d: Delivery<i64>, _ctx: &GrainContext<Self>) -> Ack {
//!         self.total += d.item;
//!         Ok(())
//!     }
//! }
//!
//! #[grain_methods(also_handles(Delivery<i64>))]
//! impl Sum {
//!     pub async fn total(&self) -> i64 { self.total }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let silo = Silo::builder()
//!     .grain::<Sum>()
//!     .with_streams(
//!         Streams::builder()
//!             .provider("memory", MemoryStreams::new())
//!             // Every stream of namespace "numbers" feeds the `Sum` of its key.
//!             .implicit::<Sum, i64>("numbers"),
//!     )
//!     .start()
//!     .await?;
//!
//! let numbers = Streams::provider(&silo, "memory")?;
//! let producer = numbers.producer::<i64>(StreamId::new("numbers", 7));
//! producer.publish_batch(&[1, 2, 3]).await?;
//!
//! // The first item activated `Sum` 7; it sees every item, in order.
//! let sum = silo.get_grain::<Sum>(7);
//! while sum.total().await? < 6 {
//!     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//! }
//! silo.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Implicit declarations are fixed at start
//!
//! The consumers of a namespace are part of the silo's configuration and
//! cannot be added or removed while it runs. Whichever silo delivers an
//! item (the stream grain's, or the partition agent's) computes its
//! implicit consumers from its own declarations, with no coordination: a
//! declaration removed on one silo at run time would still be honoured by
//! the others, and items would reach the consumer or not depending on
//! where its stream happens to be delivered. Change declarations with a
//! deploy, and use explicit subscriptions for consumers that come and go.
//!
//! ## Feature flags
//!
//! - `sqlite` (default): [`SqlSubscriptions`] on SQLite.
//! - `postgres`: [`SqlSubscriptions`] on PostgreSQL.
//! - `rabbitmq` (default): [`RabbitStreams`], RabbitMQ through lapin.
//! - `jetstream` (default): [`NatsStreams`], NATS JetStream through async-nats.

mod agent;
mod client;
mod dispatch;
mod error;
mod id;
mod item;
#[cfg(feature = "jetstream")]
mod jetstream;
mod memory;
mod metrics;
mod provider;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_subscriptions;
mod streams;
mod subscription;

pub use agent::{Ownership, PULL_EVENTS, PartitionReader, PartitionSource, Received};
pub use client::{ClientProducer, ClusterClientStreamsExt};
pub use dispatch::DeliveryPolicy;
pub use error::{Error, Result};
pub use id::{Dedup, SequenceToken, StreamId};
pub use item::{Ack, Delivery, DeliveryError, RawItem, StreamItem};
#[cfg(feature = "jetstream")]
pub use jetstream::{DEFAULT_NATS_URL, NatsStreams};
pub use memory::MemoryStreams;
pub use metrics::{NamespaceStats, PartitionStats, StreamMetrics, names as metric_names};
pub use provider::{BoxFuture, StreamProvider};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{DEFAULT_RABBITMQ_URL, RabbitStreams};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql_subscriptions::SqlSubscriptions;
pub use streams::{
    ProviderHandle, SiloBuilderStreamsExt, StreamProducer, Streams, StreamsBuilder,
    SubscriptionHandle,
};
pub use subscription::{
    DeadLetter, MemorySubscriptions, Subscription, SubscriptionId, SubscriptionStore,
};

/// The names a stream user needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Ack, Dedup, Delivery, MemoryStreams, SiloBuilderStreamsExt, StreamId, StreamItem, Streams,
    };
}
