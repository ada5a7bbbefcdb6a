//! The Streams page: actor-streams' figures per namespace and per
//! partition, read from the plug-in metrics of each silo's report
//! (`streams.*`, see `actor_streams::metric_names`), summed over the silos
//! that answered. The dashboard does not depend on actor-streams: a silo
//! without streams reports none of these names and the page says so.
//!
//! Per-second rates difference each silo's counters with its previous
//! report, as the grain figures do.

use std::collections::{BTreeMap, HashMap};

use actor_cluster::SiloReport;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

// actor-streams' names (actor_streams::metric_names).
const PUBLISHED: &str = "streams.published";
const DELIVERED: &str = "streams.delivered";
const REDELIVERED: &str = "streams.redelivered";
const DEAD_LETTERED: &str = "streams.dead_lettered";
const IN_FLIGHT: &str = "streams.in_flight";
const PARTITION_IN_FLIGHT: &str = "streams.partition.in_flight";
const PARTITION_LAG: &str = "streams.partition.lag";
const PARTITION_ACKED: &str = "streams.partition.acked";
const NAMESPACE: &str = "stream.namespace";
const PROVIDER: &str = "stream.provider";
const PARTITION: &str = "stream.partition";

/// The Streams page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamsView {
    /// Whether any answering silo reports stream figures.
    pub enabled: bool,
    /// Per namespace, by name, over all answering silos.
    pub namespaces: Vec<StreamNamespaceView>,
    /// Per partition pulled somewhere, by provider and partition, then
    /// silo. A partition pulled by two silos at once shows twice.
    pub partitions: Vec<StreamPartitionView>,
}

/// One stream namespace over all silos.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamNamespaceView {
    /// The namespace.
    pub namespace: String,
    /// Items published since the silos started.
    pub published_total: u64,
    /// Deliveries consumers acknowledged since the silos started.
    pub delivered_total: u64,
    /// Deliveries tried again since the silos started.
    pub redelivered_total: u64,
    /// Items sent to dead letters since the silos started.
    pub dead_lettered_total: u64,
    /// Deliveries running now.
    pub in_flight: i64,
    /// Items published per second over the last window.
    pub published_per_sec: f64,
    /// Deliveries acknowledged per second over the last window.
    pub delivered_per_sec: f64,
    /// The silos that report the namespace, by name.
    pub silos: Vec<String>,
}

/// One partition of a persistent provider, as the silo pulling it reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamPartitionView {
    /// The provider's name.
    pub provider: String,
    /// The partition.
    pub partition: u32,
    /// The silo whose agent pulls it.
    pub silo: String,
    /// Items the agent holds unacked.
    pub in_flight: u64,
    /// Items the broker holds beyond those (consumer lag), when it says.
    pub lag: Option<u64>,
    /// Items the agent acked since it was activated.
    pub acked: u64,
}

/// Cumulative counters of one namespace on one silo.
#[derive(Clone, Copy, Default)]
struct Counts {
    published: u64,
    delivered: u64,
}

/// The previous round's counters, per silo key and namespace.
#[derive(Default)]
pub(crate) struct StreamsTracker {
    prev: HashMap<String, (Instant, HashMap<String, Counts>)>,
}

/// One round: fed each answering silo's report, then finished.
pub(crate) struct StreamsRound {
    namespaces: BTreeMap<String, StreamNamespaceView>,
    partitions: Vec<StreamPartitionView>,
    seen: HashMap<String, (Instant, HashMap<String, Counts>)>,
    enabled: bool,
}

impl StreamsTracker {
    /// Starts a round.
    pub(crate) fn round(&self) -> StreamsRound {
        StreamsRound {
            namespaces: BTreeMap::new(),
            partitions: Vec::new(),
            seen: HashMap::new(),
            enabled: false,
        }
    }

    /// Ends a round: the view, and this round's counters kept for the
    /// next (silos that did not answer drop out).
    pub(crate) fn finish(&mut self, mut round: StreamsRound) -> StreamsView {
        round.partitions.sort_by(|a, b| {
            (&a.provider, a.partition, &a.silo).cmp(&(&b.provider, b.partition, &b.silo))
        });
        self.prev = round.seen;
        StreamsView {
            enabled: round.enabled,
            namespaces: round.namespaces.into_values().collect(),
            partitions: round.partitions,
        }
    }

    /// Adds the figures of one silo's `report` (`key` names the silo
    /// across rounds) at `now`.
    pub(crate) fn add(
        &self,
        round: &mut StreamsRound,
        key: &str,
        silo: &str,
        report: &SiloReport,
        now: Instant,
    ) {
        let mut counts: HashMap<String, Counts> = HashMap::new();
        let mut partitions: BTreeMap<(String, u32), StreamPartitionView> = BTreeMap::new();
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        for m in &report.metrics.plugins {
            if !m.name.starts_with("streams.") {
                continue;
            }
            round.enabled = true;
            if let Some(ns) = m.attribute(NAMESPACE) {
                let view =
                    round
                        .namespaces
                        .entry(ns.to_owned())
                        .or_insert_with(|| StreamNamespaceView {
                            namespace: ns.to_owned(),
                            ..StreamNamespaceView::default()
                        });
                if !view.silos.iter().any(|s| s == silo) {
                    view.silos.push(silo.to_owned());
                }
                let c = counts.entry(ns.to_owned()).or_default();
                match m.name.as_str() {
                    PUBLISHED => {
                        view.published_total += count(m.value);
                        c.published = count(m.value);
                    }
                    DELIVERED => {
                        view.delivered_total += count(m.value);
                        c.delivered = count(m.value);
                    }
                    REDELIVERED => view.redelivered_total += count(m.value),
                    DEAD_LETTERED => view.dead_lettered_total += count(m.value),
                    IN_FLIGHT => view.in_flight += m.value,
                    _ => {}
                }
            } else if let (Some(provider), Some(partition)) = (
                m.attribute(PROVIDER),
                m.attribute(PARTITION).and_then(|p| p.parse::<u32>().ok()),
            ) {
                let view = partitions
                    .entry((provider.to_owned(), partition))
                    .or_insert_with(|| StreamPartitionView {
                        provider: provider.to_owned(),
                        partition,
                        silo: silo.to_owned(),
                        ..StreamPartitionView::default()
                    });
                match m.name.as_str() {
                    PARTITION_IN_FLIGHT => view.in_flight = count(m.value),
                    PARTITION_LAG => view.lag = Some(count(m.value)),
                    PARTITION_ACKED => view.acked = count(m.value),
                    _ => {}
                }
            }
        }
        round.partitions.extend(partitions.into_values());
        if let Some((at, before)) = self.prev.get(key) {
            let dt = (now - *at).as_secs_f64();
            if dt > 1e-3 {
                for (ns, c) in &counts {
                    let b = before.get(ns).copied().unwrap_or_default();
                    if let Some(view) = round.namespaces.get_mut(ns) {
                        view.published_per_sec +=
                            c.published.saturating_sub(b.published) as f64 / dt;
                        view.delivered_per_sec +=
                            c.delivered.saturating_sub(b.delivered) as f64 / dt;
                    }
                }
            }
        }
        round.seen.insert(key.to_owned(), (now, counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A report of a silo whose plug-in figures are `plugins`, built
    /// through serde as a peer's report arrives.
    fn report(name: &str, plugins: serde_json::Value) -> SiloReport {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "endpoint": null,
            "activations": 0,
            "metrics": { "silo": name, "grain_types": [], "plugins": plugins },
            "process": { "cpu_seconds": 1.0, "rss_bytes": 1000, "cpus": 2 },
            "extras": {},
        }))
        .unwrap()
    }

    fn ns(name: &str, ns: &str, value: i64) -> serde_json::Value {
        serde_json::json!({ "name": name, "attributes": { NAMESPACE: ns }, "value": value })
    }

    fn part(name: &str, provider: &str, p: &str, value: i64) -> serde_json::Value {
        serde_json::json!({ "name": name, "attributes": { PROVIDER: provider, PARTITION: p }, "value": value })
    }

    #[test]
    fn figures_add_up_over_silos_and_rates_difference_rounds() {
        let mut t = StreamsTracker::default();
        let t0 = Instant::now();
        let a = |published| {
            report(
                "a",
                serde_json::json!([
                    ns(PUBLISHED, "orders", published),
                    ns(DELIVERED, "orders", 5),
                    ns(IN_FLIGHT, "orders", 2),
                    ns(DEAD_LETTERED, "orders", 1),
                    part(PARTITION_IN_FLIGHT, "rabbit", "3", 4),
                    part(PARTITION_LAG, "rabbit", "3", 40),
                    part(PARTITION_ACKED, "rabbit", "3", 9),
                    // Not a stream figure, nor one it knows: ignored.
                    { "name": "other.thing", "attributes": { NAMESPACE: "orders" }, "value": 99 },
                    part(PARTITION_ACKED, "rabbit", "not a number", 1),
                ]),
            )
        };
        let b = report(
            "b",
            serde_json::json!([
                ns(PUBLISHED, "orders", 7),
                ns(DELIVERED, "orders", 3),
                ns(REDELIVERED, "orders", 2),
                part(PARTITION_IN_FLIGHT, "rabbit", "0", 1),
            ]),
        );
        let mut r = t.round();
        t.add(&mut r, "a@1", "a", &a(10), t0);
        t.add(&mut r, "b@1", "b", &b, t0);
        let v = t.finish(r);
        assert!(v.enabled);
        assert_eq!(v.namespaces.len(), 1);
        let o = &v.namespaces[0];
        assert_eq!(
            (o.published_total, o.delivered_total, o.redelivered_total),
            (17, 8, 2)
        );
        assert_eq!((o.dead_lettered_total, o.in_flight), (1, 2));
        assert_eq!(o.silos, ["a", "b"]);
        assert_eq!(o.published_per_sec, 0.0, "no earlier round, no rate");
        let parts: Vec<_> = v
            .partitions
            .iter()
            .map(|p| (p.partition, p.silo.as_str(), p.in_flight, p.lag, p.acked))
            .collect();
        assert_eq!(parts, [(0, "b", 1, None, 0), (3, "a", 4, Some(40), 9)]);

        // Two seconds later `a` has published 20 more; `b` is gone.
        let mut r = t.round();
        t.add(&mut r, "a@1", "a", &a(30), t0 + Duration::from_secs(2));
        let v = t.finish(r);
        assert_eq!(v.namespaces[0].published_total, 30);
        assert!((v.namespaces[0].published_per_sec - 10.0).abs() < 1e-9);
        assert_eq!(v.namespaces[0].delivered_per_sec, 0.0);
        assert_eq!(v.namespaces[0].silos, ["a"]);
    }

    #[test]
    fn a_silo_without_streams_shows_none() {
        let mut t = StreamsTracker::default();
        let mut r = t.round();
        t.add(
            &mut r,
            "a",
            "a",
            &report("a", serde_json::json!([])),
            Instant::now(),
        );
        assert_eq!(t.finish(r), StreamsView::default());
    }
}
