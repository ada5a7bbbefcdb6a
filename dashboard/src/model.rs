//! What the dashboard shows, as serde types: the pages and the JSON API
//! serve the same [`DashboardSnapshot`], built once per refresh.
//!
//! Counters named `*_total` count since each silo started (summed over the
//! silos that answered); `*_per_sec` and `window_*` figures cover the last
//! refresh interval. Latencies are in milliseconds; a percentile is the
//! upper bound of its histogram bucket (power-of-two nanoseconds), as in
//! actor-core's metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::hot::HotGrain;

/// Everything the dashboard shows at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DashboardSnapshot {
    /// When it was built, milliseconds since the Unix epoch.
    pub at_millis: i64,
    /// The silo serving the dashboard.
    pub served_by: String,
    /// Whether the silo is a cluster member (else single-silo figures).
    pub clustered: bool,
    /// The refresh interval in milliseconds.
    pub refresh_millis: u64,
    /// Cluster-wide totals.
    pub overview: Overview,
    /// Every silo: live ones with their figures, dead ones from the table.
    pub silos: Vec<SiloView>,
    /// Every grain type, over all silos.
    pub grain_types: Vec<GrainTypeView>,
    /// The busiest grains over the last few refreshes, over all silos.
    pub hottest_grains: Vec<HotGrain>,
    /// Methods by p99 latency, slowest first.
    pub slowest_methods: Vec<MethodView>,
    /// Joins, suspicions and deaths, oldest first.
    pub membership_history: Vec<MembershipEvent>,
    /// Durable reminders.
    pub reminders: RemindersView,
    /// Stream namespaces and partitions.
    pub streams: crate::streams::StreamsView,
    /// Transactions: committed, aborted by reason, in doubt, lock waits.
    pub transactions: crate::transactions::TransactionsView,
    /// One point per refresh over the history span, oldest first.
    pub history: Vec<HistoryPoint>,
}

/// Cluster-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Overview {
    /// Silos in the table (or 1 without a cluster).
    pub silos: usize,
    /// Active silos.
    pub silos_active: usize,
    /// Silos declared dead.
    pub silos_dead: usize,
    /// Live activations over all answering silos.
    pub activations: u64,
    /// Calls since the silos started.
    pub calls_total: u64,
    /// Failed calls since the silos started.
    pub errors_total: u64,
    /// Calls per second over the last window.
    pub calls_per_sec: f64,
    /// Failed calls per second over the last window.
    pub errors_per_sec: f64,
    /// Errors / calls over the last window (0 without calls).
    pub error_rate: f64,
    /// Mean latency over the last window, ms.
    pub avg_latency_ms: f64,
    /// p99 latency over the last window, ms.
    pub p99_latency_ms: f64,
}

/// One silo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiloView {
    /// Its name.
    pub name: String,
    /// Its link endpoint, in a cluster.
    pub endpoint: Option<String>,
    /// `active`, `joining`, `shutting_down` or `dead` (`active` without a
    /// cluster).
    pub status: String,
    /// Whether it answered for this snapshot.
    pub reachable: bool,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Whether this is the silo serving the dashboard.
    pub is_self: bool,
    /// When it started, ms since the epoch (in a cluster).
    pub start_millis: Option<i64>,
    /// Its last I-am-alive heartbeat, ms since the epoch (in a cluster).
    pub i_am_alive_millis: Option<i64>,
    /// Suspicion votes against it in the table.
    pub suspicions: usize,
    /// Live activations.
    pub activations: u64,
    /// Live activations by grain type.
    pub activations_by_type: BTreeMap<String, u64>,
    /// Calls since it started.
    pub calls_total: u64,
    /// Failed calls since it started.
    pub errors_total: u64,
    /// Calls per second over the last window.
    pub calls_per_sec: f64,
    /// CPU use of its process over the last window, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of its process, bytes.
    pub rss_bytes: Option<u64>,
    /// Logical CPUs of its machine.
    pub cpus: Option<u32>,
}

/// One grain type over all silos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GrainTypeView {
    /// The type name.
    pub grain_type: String,
    /// Live activations over all silos.
    pub activations: u64,
    /// Live activations per silo (by silo name).
    pub activations_by_silo: BTreeMap<String, u64>,
    /// Calls since the silos started.
    pub calls_total: u64,
    /// Failed calls since the silos started.
    pub errors_total: u64,
    /// Calls per second over the last window.
    pub calls_per_sec: f64,
    /// Failed calls per second over the last window.
    pub errors_per_sec: f64,
    /// Calls waiting in mailboxes now.
    pub mailbox_depth: u64,
    /// Activations whose construction or `on_activate` failed.
    pub activation_failures: u64,
    /// Per method, by name.
    pub methods: Vec<MethodView>,
}

/// One method of one grain type over all silos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MethodView {
    /// The grain type.
    pub grain_type: String,
    /// The method (message) name.
    pub method: String,
    /// Calls since the silos started.
    pub calls_total: u64,
    /// Failed calls since the silos started.
    pub errors_total: u64,
    /// Calls per second over the last window.
    pub calls_per_sec: f64,
    /// Mean latency since the silos started, ms.
    pub avg_latency_ms: f64,
    /// p99 latency since the silos started, ms.
    pub p99_latency_ms: f64,
}

/// A change in the membership table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MembershipEvent {
    /// When, ms since the epoch (as the table says, or when seen).
    pub at_millis: i64,
    /// The silo's name.
    pub silo: String,
    /// The silo's `endpoint@generation`.
    pub address: String,
    /// `joined`, `active`, `suspected`, `shutting_down` or `dead`.
    pub event: String,
    /// More about it (who suspected it, ...).
    pub detail: Option<String>,
}

/// The reminders page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemindersView {
    /// Whether the silo has a reminder service.
    pub enabled: bool,
    /// How many reminders are stored.
    pub count: usize,
    /// The first of them by due time (at most 500).
    pub reminders: Vec<ReminderView>,
    /// Why they could not be read, if so.
    pub error: Option<String>,
}

/// One durable reminder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReminderView {
    /// The grain it wakes.
    pub grain: String,
    /// Its name.
    pub name: String,
    /// Next due time, ms since the epoch.
    pub due_millis: i64,
    /// Period in ms (0: fires once).
    pub period_millis: i64,
}

/// One point of the charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// When, ms since the epoch.
    pub at_millis: i64,
    /// Live activations.
    pub activations: u64,
    /// Calls per second.
    pub calls_per_sec: f64,
    /// Failed calls per second.
    pub errors_per_sec: f64,
    /// Mean latency, ms.
    pub avg_latency_ms: f64,
    /// p99 latency, ms.
    pub p99_latency_ms: f64,
}
