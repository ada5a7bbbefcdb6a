//! Stream counters per namespace, read with
//! [`Streams::metrics`](crate::Streams::metrics).
//!
//! Plain atomics, bumped on the publish and delivery paths; a snapshot is
//! a copy of them. Consumer lag per partition is reported by the pulling
//! agents of persistent providers. The same figures are plug-in metrics of
//! the silo ([`names`]), so they are in `Silo::metrics()`, in what
//! actor-telemetry exports over OTLP and on the dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use actor_core::{MetricDescriptor, PluginMetric};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) in_flight: AtomicI64,
}

/// The counters of one namespace on one silo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamespaceStats {
    /// The namespace.
    pub namespace: String,
    /// Items published through this silo.
    pub published: u64,
    /// Deliveries that a consumer acknowledged, on this silo.
    pub delivered: u64,
    /// Deliveries tried again (after a failed turn or a broker redelivery).
    pub redelivered: u64,
    /// Items sent to dead letters.
    pub dead_lettered: u64,
    /// Deliveries running now.
    pub in_flight: i64,
}

/// The items a partition's agent holds and how far it is behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The provider's name.
    pub provider: String,
    /// The partition.
    pub partition: u32,
    /// Items received from the broker and not yet acked.
    pub in_flight: u64,
    /// Items the broker holds for the partition beyond those (the
    /// consumer lag), when the broker reports it.
    pub lag: Option<u64>,
    /// Items acked by this agent since it started.
    pub acked: u64,
}

/// A snapshot of a silo's stream metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamMetrics {
    /// Per namespace, sorted by name.
    pub namespaces: Vec<NamespaceStats>,
    /// Per partition pulled on this silo.
    pub partitions: Vec<PartitionStats>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    namespaces: DashMap<Arc<str>, Arc<Counters>>,
    pub(crate) partitions: DashMap<(String, u32), PartitionStats>,
}

impl Registry {
    pub(crate) fn of(&self, namespace: &Arc<str>) -> Arc<Counters> {
        if let Some(c) = self.namespaces.get(namespace) {
            return c.clone();
        }
        self.namespaces
            .entry(namespace.clone())
            .or_default()
            .value()
            .clone()
    }

    pub(crate) fn snapshot(&self) -> StreamMetrics {
        let mut ns: BTreeMap<String, NamespaceStats> = BTreeMap::new();
        for e in self.namespaces.iter() {
            let c = e.value();
            ns.insert(
                e.key().to_string(),
                NamespaceStats {
                    namespace: e.key().to_string(),
                    published: c.published.load(Ordering::Relaxed),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    redelivered: c.redelivered.load(Ordering::Relaxed),
                    dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                    in_flight: c.in_flight.load(Ordering::Relaxed),
                },
            );
        }
        let mut partitions: Vec<PartitionStats> =
            self.partitions.iter().map(|e| e.value().clone()).collect();
        partitions.sort_by(|a, b| (&a.provider, a.partition).cmp(&(&b.provider, b.partition)));
        StreamMetrics {
            namespaces: ns.into_values().collect(),
            partitions,
        }
    }
}

/// The names of the streams' figures among a silo's plug-in metrics
/// (`Silo::metrics().plugins`). Namespace figures carry the attribute
/// [`NAMESPACE`](names::NAMESPACE); partition figures carry
/// [`PROVIDER`](names::PROVIDER) and [`PARTITION`](names::PARTITION).
pub mod names {
    /// Items published through the silo (counter).
    pub const PUBLISHED: &str = "streams.published";
    /// Deliveries a consumer acknowledged (counter).
    pub const DELIVERED: &str = "streams.delivered";
    /// Deliveries tried again (counter).
    pub const REDELIVERED: &str = "streams.redelivered";
    /// Items sent to dead letters (counter).
    pub const DEAD_LETTERED: &str = "streams.dead_lettered";
    /// Deliveries running now (gauge).
    pub const IN_FLIGHT: &str = "streams.in_flight";
    /// Items a partition's agent holds unacked (gauge).
    pub const PARTITION_IN_FLIGHT: &str = "streams.partition.in_flight";
    /// Items the broker holds for a partition beyond those, when it says
    /// (gauge): the consumer lag.
    pub const PARTITION_LAG: &str = "streams.partition.lag";
    /// Items a partition's agent acked since it was activated (counter).
    pub const PARTITION_ACKED: &str = "streams.partition.acked";
    /// The attribute naming the namespace.
    pub const NAMESPACE: &str = "stream.namespace";
    /// The attribute naming the provider of a partition.
    pub const PROVIDER: &str = "stream.provider";
    /// The attribute naming the partition.
    pub const PARTITION: &str = "stream.partition";
}

/// The descriptors of the figures [`read_into`] gives.
pub(crate) fn descriptors() -> Vec<MetricDescriptor> {
    vec![
        MetricDescriptor::counter(
            names::PUBLISHED,
            "{item}",
            "Stream items published through the silo",
        ),
        MetricDescriptor::counter(
            names::DELIVERED,
            "{delivery}",
            "Stream deliveries a consumer acknowledged",
        ),
        MetricDescriptor::counter(
            names::REDELIVERED,
            "{delivery}",
            "Stream deliveries tried again",
        ),
        MetricDescriptor::counter(
            names::DEAD_LETTERED,
            "{item}",
            "Stream items sent to dead letters",
        ),
        MetricDescriptor::gauge(
            names::IN_FLIGHT,
            "{delivery}",
            "Stream deliveries running now",
        ),
        MetricDescriptor::gauge(
            names::PARTITION_IN_FLIGHT,
            "{item}",
            "Items a partition agent holds unacked",
        ),
        MetricDescriptor::gauge(
            names::PARTITION_LAG,
            "{item}",
            "Items the broker holds for a partition (consumer lag)",
        ),
        MetricDescriptor::counter(
            names::PARTITION_ACKED,
            "{item}",
            "Items a partition agent acked since it was activated",
        ),
    ]
}

/// Pushes the figures of `m` as plug-in metrics.
pub(crate) fn read_into(m: &StreamMetrics, out: &mut Vec<PluginMetric>) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for n in &m.namespaces {
        for (name, value) in [
            (names::PUBLISHED, clamp(n.published)),
            (names::DELIVERED, clamp(n.delivered)),
            (names::REDELIVERED, clamp(n.redelivered)),
            (names::DEAD_LETTERED, clamp(n.dead_lettered)),
            (names::IN_FLIGHT, n.in_flight),
        ] {
            out.push(PluginMetric::new(name, value).with(names::NAMESPACE, n.namespace.clone()));
        }
    }
    for p in &m.partitions {
        let of = |name, value| {
            PluginMetric::new(name, value)
                .with(names::PROVIDER, p.provider.clone())
                .with(names::PARTITION, p.partition.to_string())
        };
        out.push(of(names::PARTITION_IN_FLIGHT, clamp(p.in_flight)));
        if let Some(lag) = p.lag {
            out.push(of(names::PARTITION_LAG, clamp(lag)));
        }
        out.push(of(names::PARTITION_ACKED, clamp(p.acked)));
    }
}
