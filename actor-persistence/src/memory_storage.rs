//! In-process storage: a map behind a lock. For tests, examples and
//! simulations; nothing survives the process.
//!
//! Each operation takes the lock once, so compare-and-set is trivially
//! atomic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::event_store::{EventStore, Snapshot, StoredEvent};
use crate::provider::{BoxFuture, StateKey, StorageProvider, StoredState};

/// Storage (and an [`EventStore`]) in process memory. Clones share the same records, so one
/// `MemoryStorage` given to two silos (one after the other) plays a
/// database that outlives a silo.
///
/// [`set_available(false)`](MemoryStorage::set_available) makes every
/// operation fail with [`Error::Unavailable`], to test how grains behave
/// during a storage outage.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Stream {
    events: Vec<Vec<u8>>,
    snapshot: Option<Snapshot>,
}

#[derive(Default)]
struct Inner {
    records: Mutex<HashMap<StateKey, StoredState>>,
    streams: Mutex<HashMap<StateKey, Stream>>,
    down: AtomicBool,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates an outage (`false`) or its end (`true`).
    pub fn set_available(&self, available: bool) {
        self.inner.down.store(!available, Ordering::SeqCst);
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.inner.records.lock().len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<()> {
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable {
                provider: "memory".into(),
                url: "memory:".into(),
                reason: "simulated outage (MemoryStorage::set_available(false))".into(),
            });
        }
        Ok(())
    }

    fn read_now(&self, key: &StateKey) -> Result<Option<StoredState>> {
        self.check()?;
        Ok(self.inner.records.lock().get(key).cloned())
    }

    fn write_now(&self, key: &StateKey, data: &[u8], expected: Option<&ETag>) -> Result<ETag> {
        self.check()?;
        let mut records = self.inner.records.lock();
        let actual = records.get(key).map(|r| &r.etag);
        if actual != expected {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected: expected.cloned(),
                actual: actual.cloned(),
            });
        }
        let etag = ETag::generate();
        records.insert(
            key.clone(),
            StoredState {
                data: data.to_vec(),
                etag: etag.clone(),
            },
        );
        Ok(etag)
    }

    fn clear_now(&self, key: &StateKey, expected: Option<&ETag>) -> Result<()> {
        self.check()?;
        let mut records = self.inner.records.lock();
        let actual = records.get(key).map(|r| &r.etag);
        if actual != expected {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected: expected.cloned(),
                actual: actual.cloned(),
            });
        }
        records.remove(key);
        Ok(())
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("records", &self.len())
            .finish_non_exhaustive()
    }
}

impl StorageProvider for MemoryStorage {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(std::future::ready(self.read_now(key)))
    }

    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<ETag>> {
        Box::pin(std::future::ready(self.write_now(key, data, expected)))
    }

    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(self.clear_now(key, expected)))
    }
}

impl EventStore for MemoryStorage {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn read_events<'a>(
        &'a self,
        stream: &'a StateKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
        let out = self.check().map(|()| {
            let streams = self.inner.streams.lock();
            let Some(s) = streams.get(stream) else {
                return Vec::new();
            };
            s.events
                .iter()
                .enumerate()
                .skip(usize::try_from(after).unwrap_or(usize::MAX))
                .map(|(i, data)| StoredEvent {
                    version: i as u64 + 1,
                    data: data.clone(),
                })
                .collect()
        });
        Box::pin(std::future::ready(out))
    }

    fn version<'a>(&'a self, stream: &'a StateKey) -> BoxFuture<'a, Result<u64>> {
        let out = self.check().map(|()| {
            self.inner
                .streams
                .lock()
                .get(stream)
                .map_or(0, |s| s.events.len() as u64)
        });
        Box::pin(std::future::ready(out))
    }

    fn append<'a>(
        &'a self,
        stream: &'a StateKey,
        expected: u64,
        events: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<u64>> {
        let out = self.check().and_then(|()| {
            let mut streams = self.inner.streams.lock();
            let s = streams.entry(stream.clone()).or_default();
            let actual = s.events.len() as u64;
            if actual != expected {
                return Err(Error::VersionConflict {
                    stream: stream.to_string(),
                    expected,
                    actual,
                });
            }
            s.events.extend(events.iter().cloned());
            Ok(s.events.len() as u64)
        });
        Box::pin(std::future::ready(out))
    }

    fn read_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let out = self.check().map(|()| {
            self.inner
                .streams
                .lock()
                .get(stream)
                .and_then(|s| s.snapshot.clone())
        });
        Box::pin(std::future::ready(out))
    }

    fn write_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
        snapshot: &'a Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        let out = self.check().map(|()| {
            let mut streams = self.inner.streams.lock();
            let s = streams.entry(stream.clone()).or_default();
            if s.snapshot
                .as_ref()
                .is_none_or(|old| old.version < snapshot.version)
            {
                s.snapshot = Some(snapshot.clone());
            }
        });
        Box::pin(std::future::ready(out))
    }
}
