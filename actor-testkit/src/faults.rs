//! Faults in the services a cluster depends on: a membership table and a
//! storage provider that fail, report conflicts or stall on demand. Both
//! wrap a real implementation behind its trait, so everything else about
//! it (compare-and-set, etags) stays true.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use actor_cluster::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    TableVersion,
};
use actor_persistence::{ETag, StateKey, StorageProvider, StoredState};
use futures::future::BoxFuture;

/// How a faulty service answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum FaultMode {
    /// Passes every call through.
    #[default]
    Healthy = 0,
    /// Fails every call as unavailable.
    Fail = 1,
    /// Refuses every write as a conflict (someone else wrote first);
    /// reads pass.
    Conflict = 2,
    /// Holds every call until the mode changes.
    Stall = 3,
}

impl FaultMode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => FaultMode::Fail,
            2 => FaultMode::Conflict,
            3 => FaultMode::Stall,
            _ => FaultMode::Healthy,
        }
    }
}

/// The switch of a faulty service: set its mode, count what it refused.
/// Cloning shares the switch.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch {
    mode: Arc<AtomicU8>,
    injected: Arc<AtomicU64>,
}

impl FaultSwitch {
    /// A healthy switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the service answers from now on.
    pub fn set(&self, mode: FaultMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Back to [`FaultMode::Healthy`].
    pub fn heal(&self) {
        self.set(FaultMode::Healthy);
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        FaultMode::from_u8(self.mode.load(Ordering::SeqCst))
    }

    /// How many calls a fault failed, refused or stalled so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Waits out a stall; then the mode the call meets.
    async fn gate(&self) -> FaultMode {
        let mut counted = false;
        loop {
            let mode = self.mode();
            if mode != FaultMode::Healthy && !counted {
                self.injected.fetch_add(1, Ordering::SeqCst);
                counted = true;
                // A real service answers after a round trip: let other
                // tasks run, or a caller that retries a refusal in a loop
                // would starve the rest of a single-threaded runtime.
                tokio::task::yield_now().await;
            }
            if mode != FaultMode::Stall {
                return mode;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

type DeathHook = Arc<dyn Fn(&MembershipEntry) + Send + Sync>;

/// A membership table that fails, conflicts or stalls on demand: the
/// cluster-wide [`FaultSwitch`] applies to every view, and each view
/// (one per silo) can also be cut off alone, as a silo partitioned from
/// the database is.
#[derive(Clone)]
pub struct FaultyMembership {
    inner: Arc<dyn MembershipTable>,
    switch: FaultSwitch,
    cut: Arc<AtomicBool>,
    on_death: Option<DeathHook>,
}

impl std::fmt::Debug for FaultyMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyMembership")
            .field("mode", &self.switch.mode())
            .field("cut", &self.cut.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl FaultyMembership {
    /// Wraps `inner`, controlled by `switch`.
    pub fn new(inner: Arc<dyn MembershipTable>, switch: FaultSwitch) -> Self {
        FaultyMembership {
            inner,
            switch,
            cut: Arc::new(AtomicBool::new(false)),
            on_death: None,
        }
    }

    /// Another view of the same table, with its own cut-off flag.
    pub fn view(&self) -> Self {
        FaultyMembership {
            cut: Arc::new(AtomicBool::new(false)),
            ..self.clone()
        }
    }

    /// Calls `hook` with each row this view successfully writes as dead
    /// (oracles learn of deaths this way).
    pub fn on_death(mut self, hook: impl Fn(&MembershipEntry) + Send + Sync + 'static) -> Self {
        self.on_death = Some(Arc::new(hook));
        self
    }

    /// Cuts this view off from the table (every call fails) or restores it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// The cluster-wide switch.
    pub fn switch(&self) -> &FaultSwitch {
        &self.switch
    }

    async fn admit(&self, write: bool) -> actor_cluster::Result<bool> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(unavailable("this silo is cut off from the table"));
        }
        match self.switch.gate().await {
            FaultMode::Healthy | FaultMode::Stall => Ok(true),
            FaultMode::Fail => Err(unavailable("membership table failure injected")),
            FaultMode::Conflict => Ok(!write),
        }
    }
}

fn unavailable(why: &str) -> actor_cluster::Error {
    actor_cluster::Error::TableUnavailable {
        url: format!("faulty ({why})"),
        source: sqlx::Error::PoolTimedOut,
    }
}

impl MembershipTable for FaultyMembership {
    fn read_all(&self) -> BoxFuture<'_, actor_cluster::Result<MembershipSnapshot>> {
        Box::pin(async move {
            self.admit(false).await?;
            self.inner.read_all().await
        })
    }

    fn insert(
        &self,
        entry: MembershipEntry,
        expected: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            if !self.admit(true).await? {
                return Ok(false);
            }
            self.inner.insert(entry, expected).await
        })
    }

    fn update(
        &self,
        entry: MembershipEntry,
        etag: RowEtag,
        expected: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            if !self.admit(true).await? {
                return Ok(false);
            }
            let dead = (entry.status == SiloStatus::Dead).then(|| entry.clone());
            let won = self.inner.update(entry, etag, expected).await?;
            if won && let (Some(e), Some(hook)) = (dead, &self.on_death) {
                hook(&e);
            }
            Ok(won)
        })
    }

    fn update_i_am_alive(
        &self,
        silo: &SiloAddress,
        at_millis: i64,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        let silo = silo.clone();
        Box::pin(async move {
            if !self.admit(true).await? {
                return Ok(false);
            }
            self.inner.update_i_am_alive(&silo, at_millis).await
        })
    }

    fn cleanup_defunct(&self, before_millis: i64) -> BoxFuture<'_, actor_cluster::Result<u64>> {
        Box::pin(async move {
            if !self.admit(true).await? {
                return Ok(0);
            }
            self.inner.cleanup_defunct(before_millis).await
        })
    }
}

/// A storage provider that fails, refuses writes as conflicts or stalls on
/// demand, in front of a real one.
#[derive(Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn StorageProvider>,
    switch: FaultSwitch,
}

impl std::fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStorage")
            .field("inner", &self.inner.describe())
            .field("mode", &self.switch.mode())
            .finish()
    }
}

impl FaultyStorage {
    /// Wraps `inner`, controlled by `switch`.
    pub fn new(inner: Arc<dyn StorageProvider>, switch: FaultSwitch) -> Self {
        FaultyStorage { inner, switch }
    }

    /// The switch.
    pub fn switch(&self) -> &FaultSwitch {
        &self.switch
    }

    fn unavailable(&self) -> actor_persistence::Error {
        actor_persistence::Error::Unavailable {
            provider: "faulty".into(),
            url: self.inner.describe(),
            reason: "storage failure injected".into(),
        }
    }
}

impl StorageProvider for FaultyStorage {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    fn read<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, actor_persistence::Result<Option<StoredState>>> {
        Box::pin(async move {
            match self.switch.gate().await {
                FaultMode::Fail => Err(self.unavailable()),
                _ => self.inner.read(key).await,
            }
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, actor_persistence::Result<ETag>> {
        Box::pin(async move {
            match self.switch.gate().await {
                FaultMode::Fail => Err(self.unavailable()),
                FaultMode::Conflict => Err(actor_persistence::Error::Conflict {
                    key: key.to_string(),
                    expected: expected.cloned(),
                    actual: None,
                }),
                _ => self.inner.write(key, data, expected).await,
            }
        })
    }

    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, actor_persistence::Result<()>> {
        Box::pin(async move {
            match self.switch.gate().await {
                FaultMode::Fail => Err(self.unavailable()),
                FaultMode::Conflict => Err(actor_persistence::Error::Conflict {
                    key: key.to_string(),
                    expected: expected.cloned(),
                    actual: None,
                }),
                _ => self.inner.clear(key, expected).await,
            }
        })
    }
}
