//! Starting a configured silo: storage providers, the membership table,
//! the cluster member, the dashboard and the health endpoints, in that
//! order, so that a failure stops the start before the silo joins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actor_cluster::{ClusterSilo, MembershipTable, SqlMembership};
use actor_core::SiloBuilder;
use actor_core::prelude::*;
use actor_persistence::{
    MemoryStorage, PostgresStorage, RedisStorage, SiloBuilderStorageExt, SqliteStorage,
};
use dashboard::{DashboardConfig, SiloBuilderDashboardExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{SiloConfig, redact};
use crate::error::{Error, Result};
use crate::ledger::{self, RecordFile};

/// A silo started from a [`SiloConfig`], member of its cluster.
pub struct RunningSilo {
    member: Arc<ClusterSilo>,
    health: Option<SocketAddr>,
    leaving: Arc<AtomicBool>,
    health_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningSilo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSilo")
            .field("member", &self.member)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl RunningSilo {
    /// Opens the storage providers and the membership table, joins the
    /// cluster, then serves the dashboard (if on) and the health
    /// endpoints.
    pub async fn start(config: &SiloConfig) -> Result<RunningSilo> {
        let addrs = config.addresses()?;
        let timings = config.cluster_config()?;
        let recorder = match &config.record_file {
            Some(p) => Some(Arc::new(RecordFile::open(p)?)),
            None => None,
        };
        let mut builder = Silo::builder().name(config.name.clone());
        builder = ledger::register(builder, recorder);
        let mut has_default = false;
        for (name, s) in &config.storage {
            has_default |= name == actor_persistence::DEFAULT_STORAGE;
            builder = add_storage(builder, name, s).await?;
        }
        if !has_default {
            builder = builder.with_default_storage(MemoryStorage::new());
        }
        if let Some(addr) = addrs.dashboard {
            builder = builder.with_dashboard(DashboardConfig::default().bind(addr));
        }
        let table: Arc<dyn MembershipTable> = Arc::new(
            SqlMembership::connect(
                &config.membership.url,
                config.cluster_id.clone(),
                config.connect_timeout(),
            )
            .await?,
        );
        let listener = TcpListener::bind(addrs.listen)
            .await
            .map_err(|source| Error::Bind {
                what: "silo link",
                addr: addrs.listen.to_string(),
                source,
            })?;
        // Bind the health port before joining: a port in use is a
        // configuration mistake, better found before the table says Active.
        let health_listener = match addrs.health {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind {
                        what: "health endpoints",
                        addr: addr.to_string(),
                        source,
                    })?,
            ),
            None => None,
        };
        let member = Arc::new(ClusterSilo::start(builder, listener, table, timings).await?);
        let leaving = Arc::new(AtomicBool::new(false));
        let (health, health_task) = match health_listener {
            Some(l) => {
                let addr = l.local_addr().map_err(|source| Error::Bind {
                    what: "health endpoints",
                    addr: String::new(),
                    source,
                })?;
                let probe = Probe {
                    member: Arc::downgrade(&member),
                    leaving: leaving.clone(),
                };
                (
                    Some(addr),
                    Some(tokio::spawn(crate::health::serve(l, probe))),
                )
            }
            None => (None, None),
        };
        tracing::info!(silo = %member.address(), "silo serving");
        Ok(RunningSilo {
            member,
            health,
            leaving,
            health_task,
        })
    }

    /// The cluster member.
    pub fn member(&self) -> &ClusterSilo {
        &self.member
    }

    /// Where the health endpoints listen, if they do.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health
    }

    /// The dashboard's URL, if it is on.
    pub fn dashboard_url(&self) -> Option<String> {
        dashboard::Dashboard::of(self.member.silo()).map(|d| d.url())
    }

    /// Leaves the cluster gracefully (`/readyz` answers 503 from the
    /// start of the leave).
    pub async fn leave(self) -> Result<()> {
        self.leaving.store(true, Ordering::SeqCst);
        let mut member = self.member;
        // The health endpoints hold the member only for one request.
        let member = loop {
            match Arc::try_unwrap(member) {
                Ok(m) => break m,
                Err(m) => {
                    member = m;
                    tokio::task::yield_now().await;
                }
            }
        };
        let r = member.leave().await;
        if let Some(t) = self.health_task {
            t.abort();
        }
        Ok(r?)
    }
}

/// What the health endpoints read.
#[derive(Clone)]
pub(crate) struct Probe {
    pub(crate) member: std::sync::Weak<ClusterSilo>,
    pub(crate) leaving: Arc<AtomicBool>,
}

impl Probe {
    /// Ready: serving, a member of the active view, not leaving.
    pub(crate) fn ready(&self) -> std::result::Result<(), &'static str> {
        if self.leaving.load(Ordering::SeqCst) {
            return Err("leaving the cluster");
        }
        let Some(m) = self.member.upgrade() else {
            return Err("leaving the cluster");
        };
        if !m.is_serving() {
            return Err("not serving (declared dead, or its lease ran out)");
        }
        if !m.active_members().contains(&m.address().endpoint) {
            return Err("not yet in the active view");
        }
        Ok(())
    }

    /// Alive: not stopped by a dead declaration (a graceful leave still
    /// counts as alive until the process exits).
    pub(crate) fn alive(&self) -> std::result::Result<(), &'static str> {
        if self.leaving.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.member.upgrade() {
            Some(m) if !m.is_serving() => Err("stopped serving: restart the process"),
            _ => Ok(()),
        }
    }
}

async fn add_storage(
    builder: SiloBuilder,
    name: &str,
    s: &crate::config::StorageConfig,
) -> Result<SiloBuilder> {
    let err = |source| Error::Storage {
        name: name.to_owned(),
        source,
    };
    let url = s.url.as_str();
    Ok(if url == "memory" {
        builder.with_storage(name, MemoryStorage::new())
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        let mut b = SqliteStorage::builder(path);
        if let Some(p) = &s.table_prefix {
            b = b.table_prefix(p);
        }
        builder.with_storage(name, b.open().await.map_err(err)?)
    } else if url.starts_with("postgres") {
        let mut b = PostgresStorage::builder(url);
        if let Some(p) = &s.table_prefix {
            b = b.table_prefix(p);
        }
        builder.with_storage(name, b.connect().await.map_err(err)?)
    } else if url.starts_with("redis") {
        let mut b = RedisStorage::builder(url);
        if let Some(p) = &s.table_prefix {
            b = b.key_prefix(p);
        }
        builder.with_storage(name, b.connect().await.map_err(err)?)
    } else {
        return Err(Error::Invalid {
            field: format!("storage.{name}.url"),
            message: format!("`{}` is not a storage URL", redact(url)),
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silo_leaving_or_gone_is_not_ready_but_still_alive() {
        let leaving = Arc::new(AtomicBool::new(false));
        let probe = Probe {
            member: std::sync::Weak::new(),
            leaving: leaving.clone(),
        };
        // The member is gone (its leave took it): not ready.
        assert_eq!(probe.ready(), Err("leaving the cluster"));
        assert_eq!(probe.alive(), Ok(()));
        leaving.store(true, Ordering::SeqCst);
        assert_eq!(probe.ready(), Err("leaving the cluster"));
        assert_eq!(probe.alive(), Ok(()));
    }
}
