//! `PersistentState<T>`: a grain's typed view of one stored record.
//!
//! The value lives in the activation; storage sees it only on `write`,
//! `read` and `clear`. The ETag of the last read or write travels with the
//! value, so a write from a stale copy is refused by the provider instead
//! of overwriting someone else's state.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use actor_core::{Grain, GrainContext, GrainId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::etag::ETag;
use crate::provider::{StateKey, StorageProvider};
use crate::storage_registry::{DEFAULT_STORAGE, SiloStorageExt, StateContext};

/// One named, typed piece of a grain's state, stored as JSON through a
/// [`StorageProvider`] with an ETag (Orleans' `IPersistentState<T>`).
///
/// Load it before the grain's `on_activate` in an async factory, one per
/// state name:
///
/// ```
/// # use actor_core::prelude::*;
/// # use actor_persistence::{PersistentState, MemoryStorage, SiloBuilderStorageExt};
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Profile { name: String }
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
/// struct Shopper {
///     profile: PersistentState<Profile>,
///     cart: PersistentState<Cart>,
/// }
/// # impl Grain for Shopper { const TYPE_NAME: &'static str = "shopper"; }
/// # impl GrainMethods for Shopper { fn register(_: &mut Methods<Self>) {} }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let silo = Silo::builder()
///     .with_default_storage(MemoryStorage::new())
///     .grain_with_async(|ctx| async move {
///         Ok(Shopper {
///             profile: PersistentState::load(&ctx, "profile").await?,
///             cart: PersistentState::load(&ctx, "cart").await?,
///         })
///     })
///     .start()
///     .await
///     .unwrap();
/// # silo.shutdown().await; }
/// ```
///
/// Then read and change the value through `Deref`/`DerefMut` (or
/// [`state`](Self::state) / [`state_mut`](Self::state_mut)) and
/// [`write`](Self::write) it when it should be durable.
///
/// # Failures
///
/// - A stale write (someone else wrote since this copy was read) fails
///   with [`Error::Conflict`] and changes nothing. This copy stays stale,
///   so every later write fails too until [`read`](Self::read) reloads it.
/// - An outage fails with [`Error::Unavailable`]; the write may or may not
///   have been applied, so the value is unknown as well.
/// - A write issued after its silo's membership lease ran out (a turn
///   that ran on past it) fails with [`Error::Fenced`] and is not sent;
///   one sent before is still checked by its ETag, so it cannot overwrite
///   what a newer activation of the grain wrote.
///
/// In both cases the simplest sound recovery is to drop the activation and
/// let the next call load the state afresh:
/// [`write_or_reset`](Self::write_or_reset) writes and, on any error, asks
/// the runtime to deactivate the grain after this turn. Return the error
/// to the caller (never report success for a write that failed).
pub struct PersistentState<T> {
    key: StateKey,
    provider: Arc<dyn StorageProvider>,
    value: T,
    etag: Option<ETag>,
    /// The silo's turn fence (its lease), checked before each write.
    fence: Option<Arc<actor_core::TurnFence>>,
}

impl<T> PersistentState<T>
where
    T: Serialize + DeserializeOwned + Default + Send + Sync + 'static,
{
    /// Loads state `name` of the grain from the silo's default provider
    /// ([`DEFAULT_STORAGE`]). A missing record gives `T::default()`.
    pub async fn load(ctx: &impl StateContext, name: &str) -> Result<Self> {
        Self::load_from(ctx, name, DEFAULT_STORAGE).await
    }

    /// Loads state `name` of the grain from the silo's provider registered
    /// as `provider`.
    pub async fn load_from(ctx: &impl StateContext, name: &str, provider: &str) -> Result<Self> {
        let provider = ctx.silo().storage(provider)?;
        let mut state = Self::load_with(provider, ctx.grain_id(), name).await?;
        state.fence = ctx.silo().turn_fence_handle();
        Ok(state)
    }

    /// Loads state `name` of grain `id` from `provider` directly (no silo:
    /// for tests and tools).
    pub async fn load_with(
        provider: Arc<dyn StorageProvider>,
        id: &GrainId,
        name: &str,
    ) -> Result<Self> {
        let mut state = PersistentState {
            key: StateKey::new(id, name),
            provider,
            value: T::default(),
            etag: None,
            fence: None,
        };
        state.read().await?;
        Ok(state)
    }

    /// Reloads the value and ETag from storage, discarding unsaved changes.
    pub async fn read(&mut self) -> Result<()> {
        match self.provider.read(&self.key).await? {
            Some(stored) => {
                self.value = serde_json::from_slice(&stored.data)
                    .map_err(|e| Error::deserialize::<T>(&self.key, e))?;
                self.etag = Some(stored.etag);
            }
            None => {
                self.value = T::default();
                self.etag = None;
            }
        }
        Ok(())
    }

    /// Stores the value if storage still holds what this copy last read or
    /// wrote; fails with [`Error::Conflict`] otherwise (see the type docs).
    pub async fn write(&mut self) -> Result<()> {
        self.check_fence()?;
        let data =
            serde_json::to_vec(&self.value).map_err(|e| Error::serialize::<T>(&self.key, e))?;
        let etag = self
            .provider
            .write(&self.key, &data, self.etag.as_ref())
            .await?;
        self.etag = Some(etag);
        Ok(())
    }

    /// [`write`](Self::write), and on any error deactivate the grain once
    /// this turn ends, so that the next call reloads the state. Returns the
    /// error for the grain to hand to its caller.
    pub async fn write_or_reset<G: Grain>(&mut self, ctx: &GrainContext<G>) -> Result<()> {
        let outcome = self.write().await;
        if let Err(e) = &outcome {
            tracing::warn!(grain = %ctx.id(), state = self.key.name(), error = %e,
                "state write failed; the activation will be reset");
            ctx.deactivate_on_idle();
        }
        outcome
    }

    /// Deletes the record (under the same ETag check as a write) and resets
    /// the value to `T::default()`.
    pub async fn clear(&mut self) -> Result<()> {
        self.check_fence()?;
        self.provider.clear(&self.key, self.etag.as_ref()).await?;
        self.value = T::default();
        self.etag = None;
        Ok(())
    }
}

impl<T> PersistentState<T> {
    /// Refuses a write once the silo's lease has run out (see the type
    /// docs): the turn that issues it started before, and another silo
    /// may run the grain now.
    fn check_fence(&self) -> Result<()> {
        match &self.fence {
            Some(f) if !f.allows(tokio::time::Instant::now()) => Err(Error::Fenced {
                key: self.key.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The value.
    pub fn state(&self) -> &T {
        &self.value
    }

    /// The value, to change; call [`write`](Self::write) to store it.
    pub fn state_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// Whether storage held a record when this copy was last read or
    /// written.
    pub fn record_exists(&self) -> bool {
        self.etag.is_some()
    }

    /// The ETag of the record as last read or written (`None`: no record).
    pub fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }

    /// The record's key.
    pub fn key(&self) -> &StateKey {
        &self.key
    }
}

impl<T> Deref for PersistentState<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for PersistentState<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for PersistentState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentState")
            .field("key", &self.key)
            .field("provider", &self.provider.describe())
            .field("etag", &self.etag)
            .field("value", &self.value)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStorage;

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Doc {
        n: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[tokio::test]
    async fn write_read_clear_and_stale_copies() {
        let storage: Arc<dyn StorageProvider> = Arc::new(MemoryStorage::new());
        let id = GrainId::new("doc", "a");
        let mut a = PersistentState::<Doc>::load_with(storage.clone(), &id, "s")
            .await
            .unwrap();
        assert!(!a.record_exists());
        a.n = 1;
        a.write().await.unwrap();
        assert!(a.record_exists());

        let mut b = PersistentState::<Doc>::load_with(storage.clone(), &id, "s")
            .await
            .unwrap();
        assert_eq!(b.n, 1);
        assert_eq!(b.etag(), a.etag());
        b.n = 2;
        b.write().await.unwrap();

        a.n = 99;
        let e = a.write().await.unwrap_err();
        assert!(e.is_conflict(), "{e}");
        // Stays stale until reloaded.
        assert!(a.write().await.unwrap_err().is_conflict());
        a.read().await.unwrap();
        assert_eq!(a.n, 2);
        a.clear().await.unwrap();
        assert_eq!(*a.state(), Doc::default());
        assert!(b.write().await.unwrap_err().is_conflict());
    }

    #[tokio::test]
    async fn stored_json_that_does_not_fit_is_a_clear_error() {
        let storage = MemoryStorage::new();
        let id = GrainId::new("doc", "b");
        let key = StateKey::new(&id, "s");
        storage.write(&key, b"{\"n\": \"x\"}", None).await.unwrap();
        let e = PersistentState::<Doc>::load_with(Arc::new(storage), &id, "s")
            .await
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("cannot deserialize"), "{s}");
        assert!(s.contains("Doc"), "{s}");
    }
}
