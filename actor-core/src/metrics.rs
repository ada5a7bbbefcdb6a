//! Live metrics of a silo: calls, errors and latency per method;
//! activations and mailbox depth per grain type. Plain atomics, read by
//! [`Silo::metrics`](crate::Silo::metrics) into a serializable snapshot
//! (what the dashboard and exporters read).
//!
//! The counters a call touches are sharded by thread (each shard on its
//! own cache line), so that workers running turns side by side do not
//! fight over one cache line; a snapshot sums the shards. A turn finds its
//! method's counters by a lock-free scan of a short append-only list, not
//! a hash lookup.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const BUCKETS: usize = 40;

/// Shards per counter: enough for the workers of a typical runtime.
/// Threads beyond that share shards (the counters stay atomic).
const SHARDS: usize = 8;

/// This thread's shard.
fn shard() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// A value alone on its cache line (two lines: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

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

    fn add_to(&self, out: &mut LatencySnapshot) {
        for (o, b) in out.buckets.iter_mut().zip(&self.buckets) {
            *o += b.load(Relaxed);
        }
        out.sum_ns += self.sum_ns.load(Relaxed);
    }
}

struct MethodShard {
    calls: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// Calls, errors and latency of one method of one grain type.
pub(crate) struct MethodMetrics {
    shards: Box<[Padded<MethodShard>]>,
}

impl MethodMetrics {
    fn new() -> Self {
        MethodMetrics {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(MethodShard {
                        calls: AtomicU64::new(0),
                        errors: AtomicU64::new(0),
                        latency: Histogram::new(),
                    })
                })
                .collect(),
        }
    }

    pub(crate) fn record(&self, elapsed: Duration, error: bool) {
        let s = &self.shards[shard()].0;
        s.calls.fetch_add(1, Relaxed);
        if error {
            s.errors.fetch_add(1, Relaxed);
        }
        s.latency.record(elapsed);
    }

    /// A call that failed without running (deadlock, timeout in queue,
    /// rejected, failed activation).
    pub(crate) fn record_error(&self) {
        let s = &self.shards[shard()].0;
        s.calls.fetch_add(1, Relaxed);
        s.errors.fetch_add(1, Relaxed);
    }

    fn snapshot(&self, method: &str) -> MethodStats {
        let mut latency = LatencySnapshot {
            count: 0,
            sum_ns: 0,
            buckets: vec![0; BUCKETS],
        };
        let (mut calls, mut errors) = (0, 0);
        for s in self.shards.iter() {
            calls += s.0.calls.load(Relaxed);
            errors += s.0.errors.load(Relaxed);
            s.0.latency.add_to(&mut latency);
        }
        latency.count = latency.buckets.iter().sum();
        MethodStats {
            method: method.to_owned(),
            calls,
            errors,
            latency,
        }
    }
}

/// Methods per block of the append-only method list.
const BLOCK: usize = 16;

/// An append-only list of methods' counters, read without locks: a block
/// of write-once slots, then the next block once this one is full.
struct MethodBlock {
    slots: [OnceLock<(&'static str, MethodMetrics)>; BLOCK],
    next: OnceLock<Box<MethodBlock>>,
}

impl MethodBlock {
    fn new() -> Self {
        MethodBlock {
            slots: std::array::from_fn(|_| OnceLock::new()),
            next: OnceLock::new(),
        }
    }
}

/// Counters of one grain type on one silo.
pub(crate) struct TypeMetrics {
    name: &'static str,
    activations: AtomicI64,
    activated: AtomicU64,
    deactivated: AtomicU64,
    activation_failures: AtomicU64,
    mailbox: Box<[Padded<AtomicI64>]>,
    methods: MethodBlock,
}

impl TypeMetrics {
    pub(crate) fn new(name: &'static str) -> Self {
        TypeMetrics {
            name,
            activations: AtomicI64::new(0),
            activated: AtomicU64::new(0),
            deactivated: AtomicU64::new(0),
            activation_failures: AtomicU64::new(0),
            mailbox: (0..SHARDS).map(|_| Padded::default()).collect(),
            methods: MethodBlock::new(),
        }
    }

    /// The counters of method `name`, created on its first call.
    pub(crate) fn method(&self, name: &'static str) -> &MethodMetrics {
        let mut block = &self.methods;
        loop {
            for slot in &block.slots {
                // A slot someone else fills first is read again: the same
                // name is never in two slots.
                let (n, m) = match slot.get() {
                    Some(e) => e,
                    None => slot.get_or_init(|| (name, MethodMetrics::new())),
                };
                // Names are `&'static str`s, mostly the same literal.
                if std::ptr::eq(*n, name) || *n == name {
                    return m;
                }
            }
            block = block.next.get_or_init(|| Box::new(MethodBlock::new()));
        }
    }

    fn methods(&self) -> impl Iterator<Item = &(&'static str, MethodMetrics)> {
        let mut block = Some(&self.methods);
        std::iter::from_fn(move || {
            let b = block?;
            block = b.next.get().map(|n| &**n);
            Some(b.slots.iter().filter_map(OnceLock::get))
        })
        .flatten()
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
        self.mailbox[shard()].0.fetch_add(delta, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GrainTypeStats {
        let mut methods: Vec<MethodStats> = self.methods().map(|(n, m)| m.snapshot(n)).collect();
        methods.sort_by(|a, b| a.method.cmp(&b.method));
        let mailbox: i64 = self.mailbox.iter().map(|m| m.0.load(Relaxed)).sum();
        GrainTypeStats {
            grain_type: self.name.to_owned(),
            activations: self.activations.load(Relaxed).max(0) as u64,
            activated_total: self.activated.load(Relaxed),
            deactivated_total: self.deactivated.load(Relaxed),
            activation_failures: self.activation_failures.load(Relaxed),
            mailbox_depth: mailbox.max(0) as u64,
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
    /// Figures added by plug-ins through [`MetricSources`] (the counters
    /// of stream namespaces, say), in the order their sources gave them.
    #[serde(default)]
    pub plugins: Vec<PluginMetric>,
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

    /// The plug-in figures named `name`, one per set of attributes.
    pub fn plugin<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PluginMetric> + 'a {
        self.plugins.iter().filter(move |m| m.name == name)
    }
}

/// How a plug-in's figure behaves over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MetricKind {
    /// Counts up from 0 since the silo started.
    Counter,
    /// A level now, which goes up and down.
    Gauge,
}

/// A plug-in's figure as exporters see it: its name, kind, unit and
/// meaning, declared once when its source is added to [`MetricSources`]
/// (so that an exporter can register it before the first reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricDescriptor {
    /// The name, dotted as OpenTelemetry names are (`streams.published`).
    pub name: String,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The unit, in UCUM as OpenTelemetry writes it (`{item}`, `s`).
    pub unit: String,
    /// What it counts.
    pub description: String,
}

impl MetricDescriptor {
    /// A counter.
    pub fn counter(name: &str, unit: &str, description: &str) -> Self {
        MetricDescriptor {
            name: name.to_owned(),
            kind: MetricKind::Counter,
            unit: unit.to_owned(),
            description: description.to_owned(),
        }
    }

    /// A gauge.
    pub fn gauge(name: &str, unit: &str, description: &str) -> Self {
        MetricDescriptor {
            kind: MetricKind::Gauge,
            ..MetricDescriptor::counter(name, unit, description)
        }
    }
}

/// One reading of a plug-in's figure: a value for one set of attributes
/// (say, `streams.published` for `stream.namespace` = `orders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PluginMetric {
    /// The name of its [`MetricDescriptor`].
    pub name: String,
    /// What the reading is of, by attribute name.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The value (a counter's is never negative).
    pub value: i64,
}

impl PluginMetric {
    /// A reading of `name` without attributes.
    pub fn new(name: &str, value: i64) -> Self {
        PluginMetric {
            name: name.to_owned(),
            attributes: Default::default(),
            value,
        }
    }

    /// This reading with attribute `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }

    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type MetricSource = std::sync::Arc<dyn Fn(&mut Vec<PluginMetric>) + Send + Sync>;

/// The sources of a silo's plug-in figures: a silo extension that
/// plug-ins add to with
/// `builder.extension_mut::<MetricSources>().add(descriptors, read)`.
/// [`Silo::metrics`](crate::Silo::metrics) calls every source, so their
/// readings travel wherever the snapshot goes (exporters, the dashboard,
/// peers' reports). A source should only copy counters: it runs about
/// once a second per reader, never on the call path.
#[derive(Default, Clone)]
pub struct MetricSources {
    descriptors: Vec<MetricDescriptor>,
    sources: Vec<MetricSource>,
}

impl std::fmt::Debug for MetricSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.descriptors.iter().map(|d| &d.name))
            .finish()
    }
}

impl MetricSources {
    /// Adds a source: `read` pushes readings of the figures `descriptors`
    /// declares (a descriptor of a name declared already is not repeated).
    pub fn add(
        &mut self,
        descriptors: impl IntoIterator<Item = MetricDescriptor>,
        read: impl Fn(&mut Vec<PluginMetric>) + Send + Sync + 'static,
    ) -> &mut Self {
        for d in descriptors {
            if !self.descriptors.iter().any(|x| x.name == d.name) {
                self.descriptors.push(d);
            }
        }
        self.sources.push(std::sync::Arc::new(read));
        self
    }

    /// Every figure declared, in the order they were added.
    pub fn descriptors(&self) -> &[MetricDescriptor] {
        &self.descriptors
    }

    /// The readings of every source now.
    pub fn read(&self) -> Vec<PluginMetric> {
        let mut out = Vec::new();
        for s in &self.sources {
            s(&mut out);
        }
        out
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
            let mut s = LatencySnapshot { count: 0, sum_ns: 0, buckets: vec![0; BUCKETS] };
            h.add_to(&mut s);
            s.count = s.buckets.iter().sum();
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
