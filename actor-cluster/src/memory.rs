//! An in-memory membership table: the fake for tests and the simulator,
//! with the same compare-and-set rules as the SQL tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::error::Result;
use crate::membership::{
    MembershipEntry, MembershipSnapshot, MembershipTable, RowEtag, SiloAddress, SiloStatus,
    TableVersion,
};

#[derive(Default)]
struct State {
    version: i64,
    rows: BTreeMap<SiloAddress, (MembershipEntry, i64)>,
}

/// A membership table held in memory. Clones share the same table, so
/// several silos in one process can use it as their common table.
#[derive(Clone, Default)]
pub struct InMemoryMembership {
    state: Arc<Mutex<State>>,
}

impl InMemoryMembership {
    /// An empty table at version 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for InMemoryMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("InMemoryMembership")
            .field("version", &s.version)
            .field("rows", &s.rows.len())
            .finish()
    }
}

impl MembershipTable for InMemoryMembership {
    fn read_all(&self) -> BoxFuture<'_, Result<MembershipSnapshot>> {
        let s = self.state.lock();
        let snapshot = MembershipSnapshot {
            version: TableVersion(s.version),
            entries: s
                .rows
                .values()
                .map(|(e, etag)| (e.clone(), RowEtag(*etag)))
                .collect(),
        };
        Box::pin(async move { Ok(snapshot) })
    }

    fn insert(
        &self,
        entry: MembershipEntry,
        expected: TableVersion,
    ) -> BoxFuture<'_, Result<bool>> {
        let mut s = self.state.lock();
        let won = s.version == expected.0 && !s.rows.contains_key(&entry.silo);
        if won {
            s.version += 1;
            s.rows.insert(entry.silo.clone(), (entry, 1));
        }
        Box::pin(async move { Ok(won) })
    }

    fn update(
        &self,
        entry: MembershipEntry,
        etag: RowEtag,
        expected: TableVersion,
    ) -> BoxFuture<'_, Result<bool>> {
        let mut s = self.state.lock();
        let current = s.rows.get(&entry.silo).map(|(_, e)| *e);
        let won = s.version == expected.0 && current == Some(etag.0);
        if won {
            s.version += 1;
            let mut entry = entry;
            if let Some((cur, _)) = s.rows.get(&entry.silo) {
                entry.i_am_alive_millis = entry.i_am_alive_millis.max(cur.i_am_alive_millis);
            }
            s.rows.insert(entry.silo.clone(), (entry, etag.0 + 1));
        }
        Box::pin(async move { Ok(won) })
    }

    fn update_i_am_alive(&self, silo: &SiloAddress, at_millis: i64) -> BoxFuture<'_, Result<bool>> {
        let mut s = self.state.lock();
        let found = match s.rows.get_mut(silo) {
            Some((e, _)) if e.status != SiloStatus::Dead => {
                e.i_am_alive_millis = if e.i_am_alive_millis >= at_millis {
                    e.i_am_alive_millis + 1
                } else {
                    at_millis
                };
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(found) })
    }

    fn cleanup_defunct(&self, before_millis: i64) -> BoxFuture<'_, Result<u64>> {
        let mut s = self.state.lock();
        let before = s.rows.len();
        s.rows.retain(|_, (e, _)| {
            !(e.status == SiloStatus::Dead && e.i_am_alive_millis < before_millis)
        });
        let removed = (before - s.rows.len()) as u64;
        Box::pin(async move { Ok(removed) })
    }
}
