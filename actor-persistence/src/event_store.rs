//! The event log contract behind journaled grains: append with an
//! expected version (compare-and-set), read from a version on, and keep
//! the latest snapshot.
//!
//! Versions count events: a stream at version `n` holds events `1..=n`.
//! Events are never rewritten or removed; a snapshot is a cache of the
//! state at some version and may always be ignored.

use crate::error::Result;
use crate::provider::{BoxFuture, StateKey};

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its position in the stream, from 1.
    pub version: u64,
    /// The event (UTF-8 JSON when written by a [`Journal`](crate::Journal)).
    pub data: Vec<u8>,
}

/// The state of a stream after its first `version` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// How many events the snapshot includes.
    pub version: u64,
    /// The state (UTF-8 JSON when written by a [`Journal`](crate::Journal)).
    pub data: Vec<u8>,
}

/// Storage for event-sourced grains: one append-only stream of events per
/// [`StateKey`] (grain type, grain id, journal name), plus its latest
/// snapshot. Object-safe, like [`StorageProvider`](crate::StorageProvider).
///
/// # Contract
///
/// - [`append`](Self::append) stores `events` as versions
///   `expected + 1 ..= expected + events.len()` only if the stream is at
///   version `expected`; otherwise it fails with
///   [`Error::VersionConflict`](crate::Error::VersionConflict) and stores
///   nothing. Of concurrent appends at the same version exactly one wins.
///   An append is all or nothing.
/// - [`read_events`](Self::read_events) returns the events after version
///   `after`, in order, without gaps.
/// - [`write_snapshot`](Self::write_snapshot) keeps the snapshot only if it
///   is newer than the stored one.
pub trait EventStore: Send + Sync + 'static {
    /// A short description for logs and errors (no passwords).
    fn describe(&self) -> String;

    /// The events after version `after`, in version order.
    fn read_events<'a>(
        &'a self,
        stream: &'a StateKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>>>;

    /// The stream's version (0: no events).
    fn version<'a>(&'a self, stream: &'a StateKey) -> BoxFuture<'a, Result<u64>>;

    /// Appends `events` if the stream is at version `expected`; returns the
    /// new version.
    fn append<'a>(
        &'a self,
        stream: &'a StateKey,
        expected: u64,
        events: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<u64>>;

    /// The latest snapshot, if any.
    fn read_snapshot<'a>(&'a self, stream: &'a StateKey)
    -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Stores `snapshot` unless a newer one is stored.
    fn write_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
        snapshot: &'a Snapshot,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<E: EventStore + ?Sized> EventStore for std::sync::Arc<E> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn read_events<'a>(
        &'a self,
        stream: &'a StateKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
        (**self).read_events(stream, after)
    }
    fn version<'a>(&'a self, stream: &'a StateKey) -> BoxFuture<'a, Result<u64>> {
        (**self).version(stream)
    }
    fn append<'a>(
        &'a self,
        stream: &'a StateKey,
        expected: u64,
        events: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<u64>> {
        (**self).append(stream, expected, events)
    }
    fn read_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        (**self).read_snapshot(stream)
    }
    fn write_snapshot<'a>(
        &'a self,
        stream: &'a StateKey,
        snapshot: &'a Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).write_snapshot(stream, snapshot)
    }
}
