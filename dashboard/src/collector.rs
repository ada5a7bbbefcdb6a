//! The collector: once per refresh it reads this silo's report and, in a
//! cluster, the membership table and every live peer's report (in
//! parallel, each within the peer timeout); turns cumulative counters into
//! per-second rates by differencing with the previous sample; and
//! publishes one [`DashboardSnapshot`] for the pages and the API.
//! A peer that does not answer is shown unreachable, never guessed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::__private::now_millis;
use actor_cluster::{ClusterView, MembershipEntry, SiloReport, SiloStatus};
use actor_core::Silo;
use tokio::time::Instant;

use crate::config::DashboardConfig;
use crate::hot::{HotGrain, HotGrains};
use crate::model::*;

/// The key under which a silo reports its hottest grains to peers.
pub(crate) const HOT_KEY: &str = "dashboard.hot_grains";
const MAX_EVENTS: usize = 500;
const MAX_REMINDERS: usize = 500;

/// The upper bound (ms) of the `q` quantile of power-of-two ns buckets.
pub(crate) fn quantile_ms(buckets: &[u64], q: f64) -> f64 {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return 0.0;
    }
    let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return 2f64.powi(i as i32 + 1) / 1e6;
        }
    }
    f64::INFINITY
}

fn add_into(acc: &mut Vec<u64>, b: &[u64]) {
    if acc.len() < b.len() {
        acc.resize(b.len(), 0);
    }
    for (a, x) in acc.iter_mut().zip(b) {
        *a += x;
    }
}

fn sub_buckets(now: &[u64], before: Option<&Vec<u64>>) -> Vec<u64> {
    match before {
        Some(b) => now
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(b.get(i).copied().unwrap_or(0)))
            .collect(),
        None => now.to_vec(),
    }
}

/// Cumulative figures of one method on one silo.
#[derive(Clone, Default)]
struct MethodSample {
    calls: u64,
    errors: u64,
    sum_ns: u64,
    buckets: Vec<u64>,
}

struct Sample {
    at: Instant,
    cpu_seconds: f64,
    methods: HashMap<(String, String), MethodSample>,
}

impl Sample {
    fn of(report: &SiloReport, at: Instant) -> Self {
        let mut methods = HashMap::new();
        for t in &report.metrics.grain_types {
            for m in &t.methods {
                methods.insert(
                    (t.grain_type.clone(), m.method.clone()),
                    MethodSample {
                        calls: m.calls,
                        errors: m.errors,
                        sum_ns: m.latency.sum_ns,
                        buckets: m.latency.buckets.clone(),
                    },
                );
            }
        }
        Sample {
            at,
            cpu_seconds: report.process.cpu_seconds,
            methods,
        }
    }
}

/// One silo as the collector found it this round.
struct Found {
    key: String,
    name: String,
    row: Option<MembershipEntry>,
    is_self: bool,
    report: Result<SiloReport, String>,
}

#[derive(Default)]
struct MethodAcc {
    calls: u64,
    errors: u64,
    calls_ps: f64,
    sum_ns: u64,
    buckets: Vec<u64>,
}

#[derive(Default)]
struct TypeAcc {
    activations: u64,
    by_silo: BTreeMap<String, u64>,
    calls_ps: f64,
    errors_ps: f64,
    mailbox: u64,
    failures: u64,
    methods: BTreeMap<String, MethodAcc>,
}

pub(crate) struct Collector {
    silo: Silo,
    hot: Arc<HotGrains>,
    config: DashboardConfig,
    prev: HashMap<String, Sample>,
    last_roll: Instant,
    history: VecDeque<HistoryPoint>,
    events: VecDeque<MembershipEvent>,
    /// Per row (`endpoint@generation`): status and suspicion times seen.
    seen_rows: HashMap<String, (SiloStatus, Vec<i64>)>,
    streams: crate::streams::StreamsTracker,
    transactions: crate::transactions::TransactionsTracker,
}

impl Collector {
    pub(crate) fn new(silo: Silo, hot: Arc<HotGrains>, config: DashboardConfig) -> Self {
        Collector {
            silo,
            hot,
            config,
            prev: HashMap::new(),
            last_roll: Instant::now(),
            history: VecDeque::new(),
            events: VecDeque::new(),
            seen_rows: HashMap::new(),
            streams: Default::default(),
            transactions: Default::default(),
        }
    }

    /// Gathers one snapshot.
    pub(crate) async fn tick(&mut self) -> DashboardSnapshot {
        let now = Instant::now();
        let me = self.silo.name().to_owned();
        let local_hot = self.hot.roll(&me, now - self.last_roll);
        self.last_roll = now;
        let silo = self.silo.clone();
        let silo = &silo;
        let view = ClusterView::of(silo);
        let mut found = Vec::new();
        let mut table_error = None;
        match view {
            None => found.push(Found {
                key: me.clone(),
                name: me.clone(),
                row: None,
                is_self: true,
                report: Ok(SiloReport::of(silo)),
            }),
            Some(view) => {
                match tokio::time::timeout(self.config.peer_timeout, view.membership()).await {
                    Ok(Ok(snap)) => {
                        let rows: Vec<MembershipEntry> =
                            snap.entries.into_iter().map(|(e, _)| e).collect();
                        self.track_membership(&rows);
                        let timeout = self.config.peer_timeout;
                        let reports = futures::future::join_all(rows.iter().map(|row| {
                            let is_self = row.silo == *view.me();
                            async move {
                                if is_self {
                                    Ok(SiloReport::of(silo))
                                } else if row.status == SiloStatus::Dead {
                                    Err("declared dead".to_owned())
                                } else {
                                    view.peer_report(&row.silo.endpoint, timeout)
                                        .await
                                        .map_err(|e| e.to_string())
                                }
                            }
                        }))
                        .await;
                        for (row, report) in rows.into_iter().zip(reports) {
                            found.push(Found {
                                key: row.silo.to_string(),
                                name: row.name.clone(),
                                is_self: row.silo == *view.me(),
                                row: Some(row),
                                report,
                            });
                        }
                    }
                    Ok(Err(e)) => table_error = Some(e.to_string()),
                    Err(_) => table_error = Some("the membership table did not answer".into()),
                }
                if let Some(e) = table_error.take() {
                    // Blind: show this silo alone, flagged.
                    tracing::warn!(error = %e, "dashboard cannot read the membership table");
                    found.push(Found {
                        key: view.me().to_string(),
                        name: me.clone(),
                        row: None,
                        is_self: true,
                        report: Ok(SiloReport::of(silo)),
                    });
                }
            }
        }
        self.build(found, local_hot, view.is_some(), now).await
    }

    fn track_membership(&mut self, rows: &[MembershipEntry]) {
        let now = now_millis();
        for row in rows {
            let address = row.silo.to_string();
            let status_name = status_str(row.status);
            let votes: Vec<i64> = row.suspicions.iter().map(|s| s.at_millis).collect();
            match self.seen_rows.get(&address) {
                None => {
                    self.event(row.start_millis, row, "joined", None);
                    for s in &row.suspicions {
                        self.event(s.at_millis, row, "suspected", Some(format!("by {}", s.by)));
                    }
                    if row.status != SiloStatus::Joining && row.status != SiloStatus::Active {
                        self.event(
                            now,
                            row,
                            status_name,
                            Some("already so when the dashboard started".into()),
                        );
                    }
                }
                Some((status, seen_votes)) => {
                    let (status, seen_votes) = (*status, seen_votes.clone());
                    for s in &row.suspicions {
                        if !seen_votes.contains(&s.at_millis) {
                            self.event(s.at_millis, row, "suspected", Some(format!("by {}", s.by)));
                        }
                    }
                    if status != row.status {
                        self.event(now, row, status_name, None);
                    }
                }
            }
            self.seen_rows.insert(address, (row.status, votes));
        }
    }

    fn event(&mut self, at: i64, row: &MembershipEntry, what: &str, detail: Option<String>) {
        self.events.push_back(MembershipEvent {
            at_millis: at,
            silo: row.name.clone(),
            address: row.silo.to_string(),
            event: what.to_owned(),
            detail,
        });
        self.events.make_contiguous().sort_by_key(|e| e.at_millis);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    async fn build(
        &mut self,
        found: Vec<Found>,
        local_hot: Vec<HotGrain>,
        clustered: bool,
        now: Instant,
    ) -> DashboardSnapshot {
        let mut silos = Vec::new();
        let mut types: BTreeMap<String, TypeAcc> = BTreeMap::new();
        let mut hottest: Vec<HotGrain> = Vec::new();
        let mut window_buckets: Vec<u64> = Vec::new();
        let mut window_sum_ns = 0u64;
        let mut ov = Overview::default();
        let mut next_prev = HashMap::new();
        let mut streams = self.streams.round();
        let mut transactions = self.transactions.round();
        for f in found {
            ov.silos += 1;
            let status = f
                .row
                .as_ref()
                .map(|r| status_str(r.status))
                .unwrap_or("active");
            match status {
                "active" => ov.silos_active += 1,
                "dead" => ov.silos_dead += 1,
                _ => {}
            }
            let mut view = SiloView {
                name: f.name.clone(),
                endpoint: f.row.as_ref().map(|r| r.silo.endpoint.clone()),
                status: status.to_owned(),
                reachable: f.report.is_ok(),
                error: f.report.as_ref().err().cloned(),
                is_self: f.is_self,
                start_millis: f.row.as_ref().map(|r| r.start_millis),
                i_am_alive_millis: f.row.as_ref().map(|r| r.i_am_alive_millis),
                suspicions: f.row.as_ref().map_or(0, |r| r.suspicions.len()),
                activations: 0,
                activations_by_type: BTreeMap::new(),
                calls_total: 0,
                errors_total: 0,
                calls_per_sec: 0.0,
                cpu_percent: None,
                rss_bytes: None,
                cpus: None,
            };
            let Ok(report) = f.report else {
                silos.push(view);
                continue;
            };
            self.streams
                .add(&mut streams, &f.key, &f.name, &report, now);
            self.transactions
                .add(&mut transactions, &f.key, &f.name, &report, now);
            let sample = Sample::of(&report, now);
            let prev = self.prev.get(&f.key);
            let dt = prev
                .map(|p| (now - p.at).as_secs_f64())
                .filter(|d| *d > 1e-3);
            view.activations = report.activations;
            view.rss_bytes = Some(report.process.rss_bytes).filter(|b| *b > 0);
            view.cpus = Some(report.process.cpus);
            if let (Some(p), Some(dt)) = (prev, dt) {
                view.cpu_percent =
                    Some(((report.process.cpu_seconds - p.cpu_seconds) / dt * 100.0).max(0.0));
            }
            for t in &report.metrics.grain_types {
                let acc = types.entry(t.grain_type.clone()).or_default();
                acc.activations += t.activations;
                *acc.by_silo.entry(f.name.clone()).or_default() += t.activations;
                acc.mailbox += t.mailbox_depth;
                acc.failures += t.activation_failures;
                view.activations_by_type
                    .insert(t.grain_type.clone(), t.activations);
                for m in &t.methods {
                    let key = (t.grain_type.clone(), m.method.clone());
                    let before = prev.and_then(|p| p.methods.get(&key));
                    let (d_calls, d_errors) = match before {
                        Some(b) => (
                            m.calls.saturating_sub(b.calls),
                            m.errors.saturating_sub(b.errors),
                        ),
                        None => (m.calls, m.errors),
                    };
                    let ma = acc.methods.entry(m.method.clone()).or_default();
                    ma.calls += m.calls;
                    ma.errors += m.errors;
                    ma.sum_ns += m.latency.sum_ns;
                    add_into(&mut ma.buckets, &m.latency.buckets);
                    view.calls_total += m.calls;
                    view.errors_total += m.errors;
                    if let Some(dt) = dt {
                        ma.calls_ps += d_calls as f64 / dt;
                        acc.calls_ps += d_calls as f64 / dt;
                        acc.errors_ps += d_errors as f64 / dt;
                        view.calls_per_sec += d_calls as f64 / dt;
                        ov.errors_per_sec += d_errors as f64 / dt;
                        let wb = sub_buckets(&m.latency.buckets, before.map(|b| &b.buckets));
                        add_into(&mut window_buckets, &wb);
                        window_sum_ns += m
                            .latency
                            .sum_ns
                            .saturating_sub(before.map_or(0, |b| b.sum_ns));
                    }
                }
            }
            if f.is_self {
                hottest.extend(local_hot.iter().cloned());
            } else if let Some(v) = report.extras.get(HOT_KEY)
                && let Ok(list) = serde_json::from_value::<Vec<HotGrain>>(v.clone())
            {
                hottest.extend(list);
            }
            ov.activations += view.activations;
            ov.calls_total += view.calls_total;
            ov.errors_total += view.errors_total;
            ov.calls_per_sec += view.calls_per_sec;
            next_prev.insert(f.key, sample);
            silos.push(view);
        }
        self.prev = next_prev;
        // Stable order for pages and clients: by name, older rows first.
        silos.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.start_millis.cmp(&b.start_millis))
        });
        let window_count: u64 = window_buckets.iter().sum();
        ov.error_rate = if ov.calls_per_sec > 0.0 {
            (ov.errors_per_sec / ov.calls_per_sec).min(1.0)
        } else {
            0.0
        };
        ov.avg_latency_ms = if window_count > 0 {
            window_sum_ns as f64 / window_count as f64 / 1e6
        } else {
            0.0
        };
        ov.p99_latency_ms = quantile_ms(&window_buckets, 0.99);

        let grain_types: Vec<GrainTypeView> = types
            .into_iter()
            .map(|(name, acc)| GrainTypeView {
                methods: acc
                    .methods
                    .iter()
                    .map(|(m, a)| method_view(&name, m, a))
                    .collect(),
                grain_type: name,
                activations: acc.activations,
                activations_by_silo: acc.by_silo,
                calls_total: acc.methods.values().map(|m| m.calls).sum(),
                errors_total: acc.methods.values().map(|m| m.errors).sum(),
                calls_per_sec: acc.calls_ps,
                errors_per_sec: acc.errors_ps,
                mailbox_depth: acc.mailbox,
                activation_failures: acc.failures,
            })
            .collect();
        let mut slowest: Vec<MethodView> = grain_types
            .iter()
            .flat_map(|t| t.methods.iter().cloned())
            .filter(|m| m.calls_total > 0)
            .collect();
        slowest.sort_by(|a, b| {
            b.p99_latency_ms
                .total_cmp(&a.p99_latency_ms)
                .then(b.avg_latency_ms.total_cmp(&a.avg_latency_ms))
        });
        slowest.truncate(20);
        hottest.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.grain.cmp(&b.grain)));
        hottest.truncate(20);

        let at_millis = now_millis();
        self.history.push_back(HistoryPoint {
            at_millis,
            activations: ov.activations,
            calls_per_sec: ov.calls_per_sec,
            errors_per_sec: ov.errors_per_sec,
            avg_latency_ms: ov.avg_latency_ms,
            p99_latency_ms: ov.p99_latency_ms,
        });
        let keep_from = at_millis - self.config.history.as_millis() as i64;
        while self
            .history
            .front()
            .is_some_and(|p| p.at_millis < keep_from)
        {
            self.history.pop_front();
        }
        DashboardSnapshot {
            at_millis,
            served_by: self.silo.name().to_owned(),
            clustered,
            refresh_millis: self.config.refresh.as_millis() as u64,
            overview: ov,
            silos,
            grain_types,
            hottest_grains: hottest,
            slowest_methods: slowest,
            membership_history: self.events.iter().cloned().collect(),
            reminders: self.reminders().await,
            streams: self.streams.finish(streams),
            transactions: self.transactions.finish(transactions),
            history: self.history.iter().cloned().collect(),
        }
    }

    #[cfg(feature = "reminders")]
    async fn reminders(&self) -> RemindersView {
        let Some(service) = self.silo.extension::<actor_persistence::ReminderService>() else {
            return RemindersView::default();
        };
        match tokio::time::timeout(self.config.peer_timeout, service.all()).await {
            Ok(Ok(mut all)) => {
                all.sort_by(|a, b| {
                    a.due_millis
                        .cmp(&b.due_millis)
                        .then_with(|| a.name.cmp(&b.name))
                });
                let count = all.len();
                all.truncate(MAX_REMINDERS);
                RemindersView {
                    enabled: true,
                    count,
                    reminders: all
                        .into_iter()
                        .map(|r| ReminderView {
                            grain: r.grain.to_string(),
                            name: r.name,
                            due_millis: r.due_millis,
                            period_millis: r.period_millis,
                        })
                        .collect(),
                    error: None,
                }
            }
            Ok(Err(e)) => RemindersView {
                enabled: true,
                error: Some(e.to_string()),
                ..RemindersView::default()
            },
            Err(_) => RemindersView {
                enabled: true,
                error: Some("the reminder table did not answer".into()),
                ..RemindersView::default()
            },
        }
    }

    #[cfg(not(feature = "reminders"))]
    async fn reminders(&self) -> RemindersView {
        RemindersView::default()
    }
}

fn method_view(grain_type: &str, method: &str, a: &MethodAcc) -> MethodView {
    let count: u64 = a.buckets.iter().sum();
    MethodView {
        grain_type: grain_type.to_owned(),
        method: method.to_owned(),
        calls_total: a.calls,
        errors_total: a.errors,
        calls_per_sec: a.calls_ps,
        avg_latency_ms: if count > 0 {
            a.sum_ns as f64 / count as f64 / 1e6
        } else {
            0.0
        },
        p99_latency_ms: quantile_ms(&a.buckets, 0.99),
    }
}

fn status_str(s: SiloStatus) -> &'static str {
    match s {
        SiloStatus::Joining => "joining",
        SiloStatus::Active => "active",
        SiloStatus::ShuttingDown => "shutting_down",
        SiloStatus::Dead => "dead",
    }
}

/// Runs the collector every refresh until the silo stops; the latest
/// snapshot goes to `tx`.
pub(crate) async fn run(
    mut collector: Collector,
    tx: tokio::sync::watch::Sender<Option<Arc<DashboardSnapshot>>>,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if collector.silo.is_stopping() {
            return; // dropping `tx` ends live streams and the server
        }
        let snap = collector.tick().await;
        if tx.send(Some(Arc::new(snap))).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn quantile_matches_actor_core(ns in proptest::collection::vec(1u64..10_000_000_000, 1..100), q in 0.0f64..=1.0) {
            // Build the same buckets actor-core does and compare bounds.
            let mut buckets = vec![0u64; 40];
            for n in &ns {
                let i = (63 - (n | 1).leading_zeros() as usize).min(39);
                buckets[i] += 1;
            }
            let mut sorted = ns.clone();
            sorted.sort();
            let rank = ((q * ns.len() as f64).ceil() as usize).max(1);
            let truth_ms = sorted[rank - 1] as f64 / 1e6;
            let est = quantile_ms(&buckets, q);
            prop_assert!(est > truth_ms && est <= (truth_ms * 2.0).max(2e-6), "{} vs {}", est, truth_ms);
        }
    }

    /// A report of a silo with `calls[t][m]` calls (and a tenth as
    /// errors) on method `m` of type `t`, built through serde as a peer's
    /// report arrives.
    fn report(name: &str, calls: &[Vec<u64>], activations: u64) -> SiloReport {
        let types: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(t, methods)| {
                serde_json::json!({
                    "grain_type": format!("t{t}"),
                    "activations": activations,
                    "activated_total": activations,
                    "deactivated_total": 0,
                    "activation_failures": 0,
                    "mailbox_depth": 0,
                    "methods": methods.iter().enumerate().map(|(m, n)| {
                        let mut buckets = vec![0u64; 40];
                        buckets[20] = *n; // ~1 ms each
                        serde_json::json!({
                            "method": format!("m{m}"),
                            "calls": n,
                            "errors": n / 10,
                            "latency": { "count": n, "sum_ns": n * 1_500_000, "buckets": buckets },
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": name,
            "endpoint": null,
            "activations": activations * calls.len() as u64,
            "metrics": { "silo": name, "grain_types": types },
            "process": { "cpu_seconds": 1.0, "rss_bytes": 1000, "cpus": 2 },
            "extras": {},
        }))
        .unwrap()
    }

    fn found(i: usize, r: Result<SiloReport, String>) -> Found {
        Found {
            key: format!("s{i}"),
            name: format!("s{i}"),
            row: None,
            is_self: i == 0,
            report: r,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Totals add up across silos, types and methods; unreachable
        /// silos count as silos but add no figures; rates are the
        /// increase over the elapsed time.
        #[test]
        fn totals_and_rates_add_up(
            silos in proptest::collection::vec(
                (proptest::collection::vec(proptest::collection::vec(0u64..1000, 1..4), 1..4), 0u64..50, any::<bool>()),
                1..5),
            extra in 0u64..500,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let silo = Silo::builder().name("s0").start().await.unwrap();
                let mut c = Collector::new(silo.clone(), Arc::default(), DashboardConfig::default());
                let t0 = Instant::now();
                let mk = |bump: u64| silos.iter().enumerate().map(|(i, (calls, acts, reachable))| {
                    if *reachable || i == 0 {
                        let mut calls = calls.clone();
                        calls[0][0] += bump;
                        found(i, Ok(report(&format!("s{i}"), &calls, *acts)))
                    } else {
                        found(i, Err("no answer".into()))
                    }
                }).collect::<Vec<_>>();
                let first = c.build(mk(0), Vec::new(), true, t0).await;
                let live: Vec<_> = silos.iter().enumerate().filter(|(i, s)| s.2 || *i == 0).map(|(_, s)| s).collect();
                let total: u64 = live.iter().flat_map(|s| s.0.iter().flatten()).sum();
                let errors: u64 = live.iter().flat_map(|s| s.0.iter().flatten()).map(|n| n / 10).sum();
                prop_assert_eq!(first.overview.silos, silos.len());
                prop_assert_eq!(first.overview.calls_total, total);
                prop_assert_eq!(first.overview.errors_total, errors);
                prop_assert_eq!(first.grain_types.iter().map(|t| t.calls_total).sum::<u64>(), total);
                prop_assert_eq!(first.silos.iter().map(|s| s.calls_total).sum::<u64>(), total);
                prop_assert_eq!(first.silos.iter().filter(|s| !s.reachable).count(), silos.len() - live.len());
                let acts: u64 = live.iter().map(|s| s.1 * s.0.len() as u64).sum();
                prop_assert_eq!(first.overview.activations, acts);
                prop_assert_eq!(first.grain_types.iter().map(|t| t.activations).sum::<u64>(), acts);
                // No earlier sample: no rate yet.
                prop_assert_eq!(first.overview.calls_per_sec, 0.0);

                // Two seconds later every live silo has `extra` more calls
                // on t0.m0.
                let second = c.build(mk(extra), Vec::new(), true, t0 + Duration::from_secs(2)).await;
                prop_assert_eq!(second.overview.calls_total, total + extra * live.len() as u64);
                let want = (extra * live.len() as u64) as f64 / 2.0;
                prop_assert!((second.overview.calls_per_sec - want).abs() < 1e-6, "{} vs {}", second.overview.calls_per_sec, want);
                if extra > 0 {
                    // Every new call took ~1 ms: the window's p99 bucket top.
                    prop_assert!((second.overview.p99_latency_ms - 2f64.powi(21) / 1e6).abs() < 1e-9);
                    prop_assert!((second.overview.avg_latency_ms - 1.5).abs() < 1e-9);
                }
                prop_assert_eq!(second.history.len(), 2);
                silo.shutdown().await;
                Ok(())
            })?;
        }
    }

    #[test]
    fn empty_histograms_give_zero() {
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
        assert_eq!(quantile_ms(&[0, 0, 0], 0.5), 0.0);
    }

    #[test]
    fn bucket_differences_never_underflow() {
        assert_eq!(sub_buckets(&[5, 1], Some(&vec![2, 3, 4])), vec![3, 0]);
        let mut acc = vec![1];
        add_into(&mut acc, &[1, 2]);
        assert_eq!(acc, vec![2, 2]);
    }
}
