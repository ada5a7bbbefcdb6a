//! What a silo needs to host transactional state: the storage, the sweep
//! period, the metrics and (for tests) a hook at each protocol step. A
//! silo extension installed by [`SiloBuilderTransactionsExt`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actor_core::{Silo, SiloBuilder};

use crate::error::Error;
use crate::id::TxId;
use crate::resource::{CommitReply, TxResource};
use crate::storage::{BoxFuture, TransactionalStorage};

/// How often a participant that holds locks checks them for expired
/// transactions: the slack of the recovery bound (see the crate docs).
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_millis(200);

/// A step of the manager's side of the commit protocol, where a test hook
/// may stop it (to kill the silo right there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// The manager has the commit request; nobody is prepared yet.
    BeforePrepare,
    /// Every other participant answered its prepare; no commit record yet.
    AfterPrepare,
    /// The commit record is durable; the caller is not told yet.
    AfterCommitRecord,
    /// The caller is told; at most the first participant has confirmed.
    DuringConfirmation,
}

/// A hook run at each [`Step`] on the manager's silo; the protocol goes on
/// when its future completes (a future that never completes stops it
/// there, as a crash would).
pub type StepHook = Arc<dyn Fn(Step, TxId) -> BoxFuture<'static, ()> + Send + Sync>;

/// Counters of one silo's transactions: the outcomes of the commits whose
/// manager ran here (read-only transactions have none and are not
/// counted), the aborts decided before any commit (counted by the first
/// participant told), and the lock waits of its participants.
#[derive(Debug, Default)]
pub struct TxMetrics {
    committed: AtomicU64,
    aborted: [AtomicU64; 5],
    in_doubt: AtomicU64,
    lock_waits: AtomicU64,
    lock_wait_micros: AtomicU64,
}

/// A copy of [`TxMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxMetricsSnapshot {
    /// Transactions committed.
    pub committed: u64,
    /// Aborted, by reason label ([`AbortReason::label`](crate::AbortReason::label)).
    pub aborted: Vec<(&'static str, u64)>,
    /// In doubt.
    pub in_doubt: u64,
    /// Locks granted.
    pub lock_waits: u64,
    /// Total time spent waiting for them, in microseconds.
    pub lock_wait_micros: u64,
}

const LABELS: [&str; 5] = [
    "lock_conflict",
    "lock_timeout",
    "timeout",
    "participant_failed",
    "user",
];

/// The names of the transaction figures among a silo's plug-in metrics
/// ([`Silo::metrics`](actor_core::Silo::metrics)), which actor-telemetry
/// exports over OTLP and the dashboard shows: all counters since the silo
/// started, as [`TxMetrics`] counts them (read-only transactions are not
/// counted).
pub mod metric_names {
    use actor_core::MetricDescriptor;

    /// Transactions committed (`{transaction}`).
    pub const COMMITTED: &str = "transactions.committed";
    /// Transactions aborted, one reading per [`ABORT_REASON`] (`{transaction}`).
    pub const ABORTED: &str = "transactions.aborted";
    /// Transactions whose outcome the manager could not learn (`{transaction}`).
    pub const IN_DOUBT: &str = "transactions.in_doubt";
    /// Locks granted (`{lock}`).
    pub const LOCK_WAITS: &str = "transactions.lock.waits";
    /// Time spent waiting for the locks granted, in microseconds (`us`).
    pub const LOCK_WAIT_TIME: &str = "transactions.lock.wait_time";
    /// The attribute of [`ABORTED`]: the reason's label
    /// ([`AbortReason::label`](crate::AbortReason::label)).
    pub const ABORT_REASON: &str = "transaction.abort_reason";

    /// The descriptors, as actor-tx registers them.
    pub fn descriptors() -> Vec<MetricDescriptor> {
        vec![
            MetricDescriptor::counter(COMMITTED, "{transaction}", "Transactions committed"),
            MetricDescriptor::counter(ABORTED, "{transaction}", "Transactions aborted, by reason"),
            MetricDescriptor::counter(
                IN_DOUBT,
                "{transaction}",
                "Transactions whose outcome the manager could not learn",
            ),
            MetricDescriptor::counter(LOCK_WAITS, "{lock}", "Transactional locks granted"),
            MetricDescriptor::counter(
                LOCK_WAIT_TIME,
                "us",
                "Time spent waiting for the transactional locks granted",
            ),
        ]
    }
}

impl TxMetricsSnapshot {
    /// Pushes these counters as plug-in metrics ([`metric_names`]).
    pub fn read_into(&self, out: &mut Vec<actor_core::PluginMetric>) {
        use actor_core::PluginMetric;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        out.push(PluginMetric::new(
            metric_names::COMMITTED,
            clamp(self.committed),
        ));
        for (reason, n) in &self.aborted {
            out.push(
                PluginMetric::new(metric_names::ABORTED, clamp(*n))
                    .with(metric_names::ABORT_REASON, *reason),
            );
        }
        out.push(PluginMetric::new(
            metric_names::IN_DOUBT,
            clamp(self.in_doubt),
        ));
        out.push(PluginMetric::new(
            metric_names::LOCK_WAITS,
            clamp(self.lock_waits),
        ));
        out.push(PluginMetric::new(
            metric_names::LOCK_WAIT_TIME,
            clamp(self.lock_wait_micros),
        ));
    }
}

impl TxMetrics {
    pub(crate) fn lock_waited(&self, d: Duration) {
        self.lock_waits.fetch_add(1, Ordering::Relaxed);
        self.lock_wait_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn aborted(&self, reason: &crate::AbortReason) {
        let i = LABELS
            .iter()
            .position(|l| *l == reason.label())
            .unwrap_or(3);
        self.aborted[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn commit_reply(&self, r: &CommitReply) {
        match r {
            CommitReply::Committed => {
                self.committed.fetch_add(1, Ordering::Relaxed);
            }
            CommitReply::Aborted(reason) => self.aborted(reason),
            CommitReply::InDoubt(_) => {
                self.in_doubt.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> TxMetricsSnapshot {
        TxMetricsSnapshot {
            committed: self.committed.load(Ordering::Relaxed),
            aborted: LABELS
                .iter()
                .zip(&self.aborted)
                .map(|(l, n)| (*l, n.load(Ordering::Relaxed)))
                .collect(),
            in_doubt: self.in_doubt.load(Ordering::Relaxed),
            lock_waits: self.lock_waits.load(Ordering::Relaxed),
            lock_wait_micros: self.lock_wait_micros.load(Ordering::Relaxed),
        }
    }
}

/// A silo's transaction runtime (its extension).
pub struct TxRuntime {
    pub(crate) storage: Arc<dyn TransactionalStorage>,
    pub(crate) sweep_every: Duration,
    pub(crate) hook: Option<StepHook>,
    pub(crate) metrics: Arc<TxMetrics>,
}

impl std::fmt::Debug for TxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRuntime")
            .field("storage", &self.storage.describe())
            .field("sweep_every", &self.sweep_every)
            .finish_non_exhaustive()
    }
}

impl TxRuntime {
    pub(crate) fn of(silo: &Silo) -> Result<Arc<TxRuntime>, Error> {
        silo.extension::<Arc<TxRuntime>>()
            .cloned()
            .ok_or(Error::NotConfigured)
    }

    pub(crate) async fn step(&self, step: Step, tx: TxId) {
        if let Some(h) = &self.hook {
            h(step, tx).await;
        }
    }

    /// This silo's transaction counters.
    pub fn metrics(&self) -> &TxMetrics {
        &self.metrics
    }
}

/// Options of a silo's transactions, for [`SiloBuilderTransactionsExt::with_transactions_config`].
#[derive(Clone)]
pub struct TransactionsConfig {
    storage: Arc<dyn TransactionalStorage>,
    sweep_every: Duration,
    hook: Option<StepHook>,
}

impl std::fmt::Debug for TransactionsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionsConfig")
            .field("storage", &self.storage.describe())
            .field("sweep_every", &self.sweep_every)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl TransactionsConfig {
    /// Transactions over `storage`, which every silo of the cluster must
    /// share.
    pub fn new(storage: impl TransactionalStorage) -> Self {
        TransactionsConfig {
            storage: Arc::new(storage),
            sweep_every: DEFAULT_SWEEP_EVERY,
            hook: None,
        }
    }

    /// How often participants holding locks look for expired transactions
    /// (default [`DEFAULT_SWEEP_EVERY`]).
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every.max(Duration::from_millis(1));
        self
    }

    /// Runs `hook` at each [`Step`] of the commits this silo manages: for
    /// fault-injection tests.
    pub fn on_step(mut self, hook: StepHook) -> Self {
        self.hook = Some(hook);
        self
    }
}

/// Transactions on a [`SiloBuilder`]: installs the runtime and registers
/// the participant grain type.
///
/// ```
/// use actor_core::Silo;
/// use actor_tx::{MemoryTxStorage, SiloBuilderTransactionsExt};
/// let builder = Silo::builder().with_transactions(MemoryTxStorage::new());
/// # let _ = builder;
/// ```
pub trait SiloBuilderTransactionsExt: Sized {
    /// Hosts transactional state stored in `storage`.
    fn with_transactions(self, storage: impl TransactionalStorage) -> Self {
        self.with_transactions_config(TransactionsConfig::new(storage))
    }

    /// Hosts transactional state with these options.
    fn with_transactions_config(self, config: TransactionsConfig) -> Self;
}

impl SiloBuilderTransactionsExt for SiloBuilder {
    fn with_transactions_config(mut self, config: TransactionsConfig) -> Self {
        let rt = Arc::new(TxRuntime {
            storage: config.storage,
            sweep_every: config.sweep_every,
            hook: config.hook,
            metrics: Arc::new(TxMetrics::default()),
        });
        let metrics = rt.metrics.clone();
        self.extension_mut::<actor_core::MetricSources>()
            .add(metric_names::descriptors(), move |out| {
                metrics.snapshot().read_into(out)
            });
        self.extension(rt)
            .grain_with_async(|ctx| async move { TxResource::activate(ctx).await })
    }
}

/// Transaction counters on a running [`Silo`].
pub trait SiloTransactionsExt {
    /// This silo's counters (all zero without transactions configured).
    fn transaction_metrics(&self) -> TxMetricsSnapshot;
}

impl SiloTransactionsExt for Silo {
    fn transaction_metrics(&self) -> TxMetricsSnapshot {
        TxRuntime::of(self)
            .map_or_else(|_| TxMetricsSnapshot::default(), |rt| rt.metrics.snapshot())
    }
}
