//! Stream counters per namespace, read with
//! [`Streams::metrics`](crate::Streams::metrics).
//!
//! Plain atomics, bumped on the publish and delivery paths; a snapshot is
//! a copy of them. Consumer lag per partition is reported by the pulling
//! agents of persistent providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
