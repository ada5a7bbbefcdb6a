//! The storage provider contract: read, compare-and-set write, and
//! compare-and-set clear of one record per (grain type, grain id, state
//! name).
//!
//! Every provider keeps the same contract, checked by the crate's contract
//! test suite against each of them: a write or clear succeeds only if the
//! caller's expected ETag is the stored one (or, expecting none, if there
//! is no record); of concurrent writers holding the same ETag exactly one
//! wins; a refused write changes nothing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actor_core::GrainId;

use crate::error::Result;
use crate::etag::ETag;

/// A boxed, sendable future, as the object-safe async methods of
/// [`StorageProvider`] and [`EventStore`](crate::EventStore) return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names one stored record: the grain's type, the grain's id in its stable
/// storage form (`GrainId::storage_key`, such as `counter/i:42`) and the
/// state's name within the grain.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    grain_type: Arc<str>,
    grain_id: Arc<str>,
    name: Arc<str>,
}

impl StateKey {
    /// The record of state `name` of grain `id`.
    pub fn new(id: &GrainId, name: &str) -> Self {
        StateKey {
            grain_type: id.grain_type.as_str().into(),
            // Tagged, so the integer key 42 and the string key "42" are
            // different records.
            grain_id: id.storage_key().into(),
            name: name.into(),
        }
    }

    /// The grain type name (`Grain::TYPE_NAME`).
    pub fn grain_type(&self) -> &str {
        &self.grain_type
    }

    /// The grain id as stored: `GrainId::storage_key`, such as
    /// `counter/i:42` or `counter/s:alice`.
    pub fn grain_id(&self) -> &str {
        &self.grain_id
    }

    /// The grain's key as stored (such as `i:42`): the stored grain id
    /// without its `type/` prefix.
    pub fn grain_key(&self) -> &str {
        &self.grain_id[self.grain_type.len() + 1..]
    }

    /// The state's name within the grain (a grain may have several).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state `{}` of {}", self.name, self.grain_id)
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A record as read from storage: its bytes and its current ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// The stored bytes (UTF-8 JSON when written by
    /// [`PersistentState`](crate::PersistentState)).
    pub data: Vec<u8>,
    /// The record's ETag, to pass back as the expected ETag of the next
    /// write or clear.
    pub etag: ETag,
}

/// Grain state storage: one record per [`StateKey`], each write a
/// compare-and-set on the record's [`ETag`].
///
/// The trait is object-safe (methods return [`BoxFuture`]) so that a silo
/// holds named providers as `Arc<dyn StorageProvider>`.
///
/// # Contract
///
/// - [`read`](Self::read) returns the record and its ETag, or `None` if
///   there is none.
/// - [`write`](Self::write) with `expected = Some(etag)` replaces the
///   record only if it exists with that ETag; with `expected = None` it
///   creates the record only if there is none. Otherwise it fails with
///   [`Error::Conflict`](crate::Error::Conflict) and changes nothing. On
///   success it returns the record's new ETag, never one used before.
/// - [`clear`](Self::clear) deletes the record under the same rule
///   (`expected = None` and no record is a successful no-op).
/// - Of several concurrent writes or clears with the same expected ETag,
///   exactly one succeeds.
/// - A service that cannot be reached fails with
///   [`Error::Unavailable`](crate::Error::Unavailable), naming its address;
///   a write that fails that way may or may not have been applied.
pub trait StorageProvider: Send + Sync + 'static {
    /// A short description for logs and errors, such as
    /// `sqlite:/var/lib/app/grains.db` (no passwords).
    fn describe(&self) -> String;

    /// Reads the record, if any.
    fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>>;

    /// Writes `data` if the stored ETag is `expected` (`None`: no record);
    /// returns the new ETag.
    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<ETag>>;

    /// Deletes the record if the stored ETag is `expected` (`None`: no
    /// record, a no-op).
    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<P: StorageProvider + ?Sized> StorageProvider for Arc<P> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn read<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<Option<StoredState>>> {
        (**self).read(key)
    }
    fn write<'a>(
        &'a self,
        key: &'a StateKey,
        data: &'a [u8],
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<ETag>> {
        (**self).write(key, data, expected)
    }
    fn clear<'a>(
        &'a self,
        key: &'a StateKey,
        expected: Option<&'a ETag>,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).clear(key, expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_grain_ids_storage_form() {
        let k = StateKey::new(&GrainId::new("counter", 42), "count");
        assert_eq!(k.grain_type(), "counter");
        assert_eq!(k.grain_id(), "counter/i:42");
        assert_eq!(k.name(), "count");
        assert_eq!(k.grain_key(), "i:42");
        assert_eq!(k.to_string(), "state `count` of counter/i:42");
        // The string key "42" is another record.
        assert_ne!(StateKey::new(&GrainId::new("counter", "42"), "count"), k);
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<Arc<dyn StorageProvider>>) {}
        takes(None);
    }
}
