//! The Transactions page: actor-tx's counters (committed, aborted by
//! reason, in doubt, lock waits), read from the plug-in metrics of each
//! silo's report (`transactions.*`, see `actor_tx::metric_names`), summed
//! over the silos that answered. The dashboard does not depend on
//! actor-tx: a silo without transactions reports none of these names and
//! the page says so.
//!
//! Per-second rates and the mean lock wait difference each silo's
//! counters with its previous report, as the grain figures do.

use std::collections::{BTreeMap, HashMap};

use actor_cluster::SiloReport;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

// actor-tx's names (actor_tx::metric_names).
const COMMITTED: &str = "transactions.committed";
const ABORTED: &str = "transactions.aborted";
const IN_DOUBT: &str = "transactions.in_doubt";
const LOCK_WAITS: &str = "transactions.lock.waits";
const LOCK_WAIT_TIME: &str = "transactions.lock.wait_time";
const ABORT_REASON: &str = "transaction.abort_reason";

/// The Transactions page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransactionsView {
    /// Whether any answering silo reports transaction figures.
    pub enabled: bool,
    /// Over all answering silos.
    pub total: TransactionFigures,
    /// Aborts by reason (`lock_conflict`, `lock_timeout`, `timeout`,
    /// `participant_failed`, `user`), over all answering silos.
    pub aborted_by_reason: Vec<AbortReasonView>,
    /// Per silo that reports them, by name.
    pub silos: Vec<TransactionSiloView>,
}

/// Transaction figures of one silo, or of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransactionFigures {
    /// Committed since the silos started (read-write transactions, counted
    /// by their manager).
    pub committed_total: u64,
    /// Committed per second over the last window.
    pub committed_per_sec: f64,
    /// Aborted since the silos started, for any reason.
    pub aborted_total: u64,
    /// Aborted per second over the last window.
    pub aborted_per_sec: f64,
    /// In doubt since the silos started.
    pub in_doubt_total: u64,
    /// In doubt per second over the last window.
    pub in_doubt_per_sec: f64,
    /// Locks granted since the silos started.
    pub lock_waits_total: u64,
    /// The mean wait for a lock granted in the last window, in
    /// milliseconds (since the start when there is no window yet; 0 with
    /// no lock granted).
    pub lock_wait_mean_ms: f64,
}

/// Aborts of one reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AbortReasonView {
    /// The reason's label.
    pub reason: String,
    /// Since the silos started.
    pub total: u64,
    /// Per second over the last window.
    pub per_sec: f64,
}

/// One silo's transaction figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransactionSiloView {
    /// The silo.
    pub silo: String,
    /// Its figures.
    pub figures: TransactionFigures,
}

/// Cumulative counters of one silo.
#[derive(Clone, Default)]
struct Counts {
    committed: u64,
    aborted: BTreeMap<String, u64>,
    in_doubt: u64,
    lock_waits: u64,
    lock_wait_us: u64,
}

impl Counts {
    fn aborted_total(&self) -> u64 {
        self.aborted.values().sum()
    }
}

/// The previous round's counters, per silo key.
#[derive(Default)]
pub(crate) struct TransactionsTracker {
    prev: HashMap<String, (Instant, Counts)>,
}

/// One round: fed each answering silo's report, then finished.
pub(crate) struct TransactionsRound {
    silos: BTreeMap<String, TransactionFigures>,
    reasons: BTreeMap<String, AbortReasonView>,
    seen: HashMap<String, (Instant, Counts)>,
    /// Lock waits and their time in the window, over all silos.
    window_waits: (u64, u64),
}

impl TransactionsTracker {
    /// Starts a round.
    pub(crate) fn round(&self) -> TransactionsRound {
        TransactionsRound {
            silos: BTreeMap::new(),
            reasons: BTreeMap::new(),
            seen: HashMap::new(),
            window_waits: (0, 0),
        }
    }

    /// Ends a round: the view, and this round's counters kept for the
    /// next (silos that did not answer drop out).
    pub(crate) fn finish(&mut self, round: TransactionsRound) -> TransactionsView {
        self.prev = round.seen;
        let mut total = TransactionFigures::default();
        for f in round.silos.values() {
            total.committed_total += f.committed_total;
            total.committed_per_sec += f.committed_per_sec;
            total.aborted_total += f.aborted_total;
            total.aborted_per_sec += f.aborted_per_sec;
            total.in_doubt_total += f.in_doubt_total;
            total.in_doubt_per_sec += f.in_doubt_per_sec;
            total.lock_waits_total += f.lock_waits_total;
        }
        total.lock_wait_mean_ms = mean_ms(round.window_waits.0, round.window_waits.1);
        TransactionsView {
            enabled: !round.silos.is_empty(),
            total,
            aborted_by_reason: round.reasons.into_values().collect(),
            silos: round
                .silos
                .into_iter()
                .map(|(silo, figures)| TransactionSiloView { silo, figures })
                .collect(),
        }
    }

    /// Adds the figures of one silo's `report` (`key` names the silo
    /// across rounds) at `now`.
    pub(crate) fn add(
        &self,
        round: &mut TransactionsRound,
        key: &str,
        silo: &str,
        report: &SiloReport,
        now: Instant,
    ) {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut c = Counts::default();
        let mut any = false;
        for m in &report.metrics.plugins {
            match m.name.as_str() {
                COMMITTED => c.committed += count(m.value),
                ABORTED => {
                    let reason = m.attribute(ABORT_REASON).unwrap_or("unknown");
                    *c.aborted.entry(reason.to_owned()).or_default() += count(m.value);
                }
                IN_DOUBT => c.in_doubt += count(m.value),
                LOCK_WAITS => c.lock_waits += count(m.value),
                LOCK_WAIT_TIME => c.lock_wait_us += count(m.value),
                _ => continue,
            }
            any = true;
        }
        if !any {
            return;
        }
        // The window: since this silo's previous report, if any (a silo
        // restarted with lower counters gives no rate this round).
        let before = self
            .prev
            .get(key)
            .map(|(at, b)| ((now - *at).as_secs_f64(), b))
            .filter(|(dt, b)| *dt > 1e-3 && b.committed <= c.committed);
        let rate = |now: u64, then: u64, dt: f64| now.saturating_sub(then) as f64 / dt;
        let mut f = TransactionFigures {
            committed_total: c.committed,
            aborted_total: c.aborted_total(),
            in_doubt_total: c.in_doubt,
            lock_waits_total: c.lock_waits,
            ..TransactionFigures::default()
        };
        let (waits, wait_us) = match before {
            Some((dt, b)) => {
                f.committed_per_sec = rate(c.committed, b.committed, dt);
                f.aborted_per_sec = rate(c.aborted_total(), b.aborted_total(), dt);
                f.in_doubt_per_sec = rate(c.in_doubt, b.in_doubt, dt);
                (
                    c.lock_waits.saturating_sub(b.lock_waits),
                    c.lock_wait_us.saturating_sub(b.lock_wait_us),
                )
            }
            None => (c.lock_waits, c.lock_wait_us),
        };
        f.lock_wait_mean_ms = mean_ms(waits, wait_us);
        round.window_waits.0 += waits;
        round.window_waits.1 += wait_us;
        for (reason, n) in &c.aborted {
            let view = round
                .reasons
                .entry(reason.clone())
                .or_insert_with(|| AbortReasonView {
                    reason: reason.clone(),
                    ..AbortReasonView::default()
                });
            view.total += n;
            if let Some((dt, b)) = before {
                view.per_sec += rate(*n, b.aborted.get(reason).copied().unwrap_or(0), dt);
            }
        }
        // Two rows of one silo name (a restarted silo seen twice) add up.
        let slot = round.silos.entry(silo.to_owned()).or_default();
        let mean_weight = |x: &TransactionFigures| x.lock_waits_total as f64;
        let merged_mean = if slot.lock_waits_total + f.lock_waits_total == 0 {
            f.lock_wait_mean_ms
        } else {
            (slot.lock_wait_mean_ms * mean_weight(slot) + f.lock_wait_mean_ms * mean_weight(&f))
                / (mean_weight(slot) + mean_weight(&f))
        };
        slot.committed_total += f.committed_total;
        slot.committed_per_sec += f.committed_per_sec;
        slot.aborted_total += f.aborted_total;
        slot.aborted_per_sec += f.aborted_per_sec;
        slot.in_doubt_total += f.in_doubt_total;
        slot.in_doubt_per_sec += f.in_doubt_per_sec;
        slot.lock_waits_total += f.lock_waits_total;
        slot.lock_wait_mean_ms = merged_mean;
        round.seen.insert(key.to_owned(), (now, c));
    }
}

fn mean_ms(waits: u64, micros: u64) -> f64 {
    if waits == 0 {
        0.0
    } else {
        micros as f64 / waits as f64 / 1000.0
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

    fn plain(name: &str, value: i64) -> serde_json::Value {
        serde_json::json!({ "name": name, "attributes": {}, "value": value })
    }

    fn aborted(reason: &str, value: i64) -> serde_json::Value {
        serde_json::json!({ "name": ABORTED, "attributes": { ABORT_REASON: reason }, "value": value })
    }

    fn silo(committed: i64, conflicts: i64, waits: i64, wait_us: i64) -> serde_json::Value {
        serde_json::json!([
            plain(COMMITTED, committed),
            aborted("lock_conflict", conflicts),
            aborted("user", 1),
            plain(IN_DOUBT, 0),
            plain(LOCK_WAITS, waits),
            plain(LOCK_WAIT_TIME, wait_us),
            // Not a transaction figure: ignored.
            plain("streams.published", 99),
        ])
    }

    #[test]
    fn figures_add_up_over_silos_and_rates_difference_rounds() {
        let mut t = TransactionsTracker::default();
        let t0 = Instant::now();
        let mut r = t.round();
        t.add(
            &mut r,
            "a@1",
            "a",
            &report("a", silo(10, 2, 20, 40_000)),
            t0,
        );
        t.add(&mut r, "b@1", "b", &report("b", silo(5, 0, 10, 0)), t0);
        let v = t.finish(r);
        assert!(v.enabled);
        assert_eq!(v.total.committed_total, 15);
        assert_eq!(v.total.aborted_total, 4, "2 conflicts and 2 user aborts");
        assert_eq!(v.total.committed_per_sec, 0.0, "no earlier round, no rate");
        // 40 ms over 30 waits, since the start.
        assert!((v.total.lock_wait_mean_ms - 40.0 / 30.0).abs() < 1e-9);
        let reasons: Vec<_> = v
            .aborted_by_reason
            .iter()
            .map(|r| (r.reason.as_str(), r.total))
            .collect();
        assert_eq!(reasons, [("lock_conflict", 2), ("user", 2)]);
        assert_eq!(
            v.silos.iter().map(|s| s.silo.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!((v.silos[0].figures.lock_wait_mean_ms - 2.0).abs() < 1e-9);

        // Two seconds later `a` committed 20 more, 4 more conflicts, and
        // 10 more lock waits of 5 ms each; `b` is gone.
        let mut r = t.round();
        t.add(
            &mut r,
            "a@1",
            "a",
            &report("a", silo(30, 6, 30, 90_000)),
            t0 + Duration::from_secs(2),
        );
        let v = t.finish(r);
        assert_eq!(v.total.committed_total, 30);
        assert!((v.total.committed_per_sec - 10.0).abs() < 1e-9);
        assert!((v.total.aborted_per_sec - 2.0).abs() < 1e-9);
        assert!((v.aborted_by_reason[0].per_sec - 2.0).abs() < 1e-9);
        assert_eq!(v.aborted_by_reason[1].per_sec, 0.0);
        assert!((v.total.lock_wait_mean_ms - 5.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v.silos.len(), 1);
    }

    #[test]
    fn a_silo_without_transactions_shows_none() {
        let mut t = TransactionsTracker::default();
        let mut r = t.round();
        t.add(
            &mut r,
            "a",
            "a",
            &report("a", serde_json::json!([plain("streams.published", 3)])),
            Instant::now(),
        );
        assert_eq!(t.finish(r), TransactionsView::default());
    }
}
