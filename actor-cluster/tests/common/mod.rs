//! Test helpers shared by the cluster tests.
#![allow(dead_code, unreachable_pub)]

pub mod oracle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::future::Future;
use std::time::Duration;

use actor_cluster::{
    ClusterConfig, ClusterSilo, InMemoryMembership, MembershipEntry, MembershipSnapshot,
    MembershipTable, RowEtag, SiloAddress, TableVersion,
};
use actor_core::SiloBuilder;
use futures::future::BoxFuture;

/// `f`, or a panic naming the test as hung after `bound`: every test
/// here ends by itself.
pub async fn bounded<F: Future>(bound: Duration, f: F) -> F::Output {
    tokio::time::timeout(bound, f)
        .await
        .expect("test timed out")
}

/// A cluster silo of `builder` on a free loopback port over `table`, with
/// the tests' fast timings.
pub async fn member(builder: SiloBuilder, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    ClusterSilo::start(
        builder,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap()
}

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
