//! Test helpers shared by the cluster tests.
#![allow(dead_code, unreachable_pub)]

pub mod oracle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actor_cluster::{
    InMemoryMembership, MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress,
    TableVersion,
};
use futures::future::BoxFuture;

/// A view of a shared in-memory membership table that can be cut off:
/// every call fails as unavailable while `cut` is set (a table outage, or
/// one silo partitioned from the table).
#[derive(Clone)]
pub struct Cuttable {
    pub inner: InMemoryMembership,
    pub cut: Arc<AtomicBool>,
}

impl Cuttable {
    pub fn new(inner: InMemoryMembership) -> Self {
        Cuttable {
            inner,
            cut: Arc::new(AtomicBool::new(false)),
        }
    }

    fn check(&self) -> actor_cluster::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(actor_cluster::Error::TableUnavailable {
                url: "cut".into(),
                source: sqlx::Error::PoolTimedOut,
            });
        }
        Ok(())
    }
}

impl MembershipTable for Cuttable {
    fn read_all(&self) -> BoxFuture<'_, actor_cluster::Result<MembershipSnapshot>> {
        Box::pin(async move {
            self.check()?;
            self.inner.read_all().await
        })
    }
    fn insert(
        &self,
        e: MembershipEntry,
        v: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            self.check()?;
            self.inner.insert(e, v).await
        })
    }
    fn update(
        &self,
        e: MembershipEntry,
        t: RowEtag,
        v: TableVersion,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        Box::pin(async move {
            self.check()?;
            self.inner.update(e, t, v).await
        })
    }
    fn update_i_am_alive(
        &self,
        s: &SiloAddress,
        at: i64,
    ) -> BoxFuture<'_, actor_cluster::Result<bool>> {
        let s = s.clone();
        Box::pin(async move {
            self.check()?;
            self.inner.update_i_am_alive(&s, at).await
        })
    }
    fn cleanup_defunct(&self, b: i64) -> BoxFuture<'_, actor_cluster::Result<u64>> {
        Box::pin(async move {
            self.check()?;
            self.inner.cleanup_defunct(b).await
        })
    }
}
