//! Live metrics of a silo: calls, errors and latency per method;
//! activations and mailbox depth per grain type. Plain atomics, read by
//! [`Silo::metrics`](crate::Silo::metrics) into a serializable snapshot
//! (what the dashboard and exporters read).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

const BUCKETS: usize = 40;

/// A latency histogram with power-of-two nanosecond buckets: bucket `i`
/// counts durations in `[2^i, 2^(i+1))` ns (the last one is open-ended).
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = (63 - (ns | 1).leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        LatencySnapshot {
            count: buckets.iter().sum(),
            sum_ns: self.sum_ns.load(Relaxed),
            buckets,
        }
    }
}

/// Calls, errors and latency of one method of one grain type.
pub(crate) struct MethodMetrics {
    calls: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

impl MethodMetrics {
    pub(crate) fn record(&self, elapsed: Duration, error: bool) {
        self.calls.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        self.latency.record(elapsed);
    }

    /// A call that failed without running (deadlock, timeout in queue,
    /// rejected, failed activation).
    pub(crate) fn record_error(&self) {
        self.calls.fetch_add(1, Relaxed);
        self.errors.fetch_add(1, Relaxed);
    }
}

/// Counters of one grain type on one silo.
pub(crate) struct TypeMetrics {
    name: &'static str,
    activations: AtomicI64,
    activated: AtomicU64,
    deactivated: AtomicU64,
    activation_failures: AtomicU64,
    mailbox: AtomicI64,
    methods: DashMap<&'static str, Arc<MethodMetrics>, foldhash::fast::RandomState>,
}

impl TypeMetrics {
    pub(crate) fn new(name: &'static str) -> Self {
        TypeMetrics {
            name,
            activations: AtomicI64::new(0),
            activated: AtomicU64::new(0),
            deactivated: AtomicU64::new(0),
            activation_failures: AtomicU64::new(0),
            mailbox: AtomicI64::new(0),
            methods: DashMap::default(),
        }
    }

    pub(crate) fn method(&self, name: &'static str) -> Arc<MethodMetrics> {
        if let Some(m) = self.methods.get(name) {
            return m.clone();
        }
        self.methods
            .entry(name)
            .or_insert_with(|| {
                Arc::new(MethodMetrics {
                    calls: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency: Histogram::new(),
                })
            })
            .clone()
    }

    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Relaxed);
        self.activated.fetch_add(1, Relaxed);
    }

    pub(crate) fn deactivated(&self) {
        self.activations.fetch_sub(1, Relaxed);
        self.deactivated.fetch_add(1, Relaxed);
    }

    pub(crate) fn activation_failed(&self) {
        self.activation_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn queued(&self, delta: i64) {
        self.mailbox.fetch_add(delta, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GrainTypeStats {
        let mut methods: Vec<MethodStats> = self
            .methods
            .iter()
            .map(|e| MethodStats {
                method: e.key().to_string(),
                calls: e.calls.load(Relaxed),
                errors: e.errors.load(Relaxed),
                latency: e.latency.snapshot(),
            })
            .collect();
        methods.sort_by(|a, b| a.method.cmp(&b.method));
        GrainTypeStats {
            grain_type: self.name.to_owned(),
            activations: self.activations.load(Relaxed).max(0) as u64,
            activated_total: self.activated.load(Relaxed),
            deactivated_total: self.deactivated.load(Relaxed),
            activation_failures: self.activation_failures.load(Relaxed),
            mailbox_depth: self.mailbox.load(Relaxed).max(0) as u64,
            methods,
        }
    }
}

/// A point-in-time copy of a silo's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The silo's name.
    pub silo: String,
    /// One entry per registered grain type, sorted by name.
    pub grain_types: Vec<GrainTypeStats>,
}

impl MetricsSnapshot {
    /// The entry of one grain type.
    pub fn grain_type(&self, name: &str) -> Option<&GrainTypeStats> {
        self.grain_types.iter().find(|t| t.grain_type == name)
    }

    /// Live activations over all types.
    pub fn total_activations(&self) -> u64 {
        self.grain_types.iter().map(|t| t.activations).sum()
    }

    /// Calls over all types and methods.
    pub fn total_calls(&self) -> u64 {
        self.grain_types
            .iter()
            .flat_map(|t| &t.methods)
            .map(|m| m.calls)
            .sum()
    }
}

/// Metrics of one grain type on one silo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GrainTypeStats {
    /// The grain type name.
    pub grain_type: String,
    /// Live activations now.
    pub activations: u64,
    /// Activations created since the silo started.
    pub activated_total: u64,
    /// Activations deactivated or dropped since the silo started.
    pub deactivated_total: u64,
    /// Activations whose factory or `on_activate` failed.
    pub activation_failures: u64,
    /// Calls queued and not yet started, over all activations.
    pub mailbox_depth: u64,
    /// Per-method figures, sorted by name.
    pub methods: Vec<MethodStats>,
}

impl GrainTypeStats {
    /// The entry of one method.
    pub fn method(&self, name: &str) -> Option<&MethodStats> {
        self.methods.iter().find(|m| m.method == name)
    }
}

/// Metrics of one method of one grain type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MethodStats {
    /// The method (message) name.
    pub method: String,
    /// Calls answered or failed.
    pub calls: u64,
    /// Calls that failed (runtime errors, and replies the message type
    /// classes as errors).
    pub errors: u64,
    /// Turn latency.
    pub latency: LatencySnapshot,
}

/// A copy of a latency histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Recorded durations.
    pub count: u64,
    /// Their sum in nanoseconds.
    pub sum_ns: u64,
    /// Bucket `i` counts durations in `[2^i, 2^(i+1))` ns.
    pub buckets: Vec<u64>,
}

impl LatencySnapshot {
    /// The mean, or zero if empty.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count).unwrap_or(0))
    }

    /// An upper bound of the `q` quantile (0.0..=1.0): the top of the
    /// bucket that holds it. Zero if empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(1u64.checked_shl(i as u32 + 1).unwrap_or(u64::MAX));
            }
        }
        Duration::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn quantile_bounds_the_true_quantile(mut ns in proptest::collection::vec(1u64..10_000_000_000, 1..200), q in 0.0f64..=1.0) {
            let h = Histogram::new();
            for n in &ns { h.record(Duration::from_nanos(*n)); }
            let s = h.snapshot();
            prop_assert_eq!(s.count, ns.len() as u64);
            ns.sort();
            let rank = ((q * ns.len() as f64).ceil() as usize).max(1);
            let truth = ns[rank - 1];
            let est = s.quantile(q).as_nanos() as u64;
            // The estimate is the top of the true value's bucket.
            prop_assert!(est > truth && est <= truth.saturating_mul(2).max(2), "{} vs {}", est, truth);
        }
    }
}
